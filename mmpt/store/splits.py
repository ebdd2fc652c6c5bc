"""Deterministic split assignment: a row's split is a pure function of its id, so re-ingesting never reshuffles."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from mmpt.errors import DataError

# Same names as mmpt.store.schema.SPLITS (a test checks); not imported from there so that validation workers
# start without loading Lance.
SPLITS: tuple[str, ...] = ("train", "val", "test")

DEFAULT_RATIOS: tuple[float, float, float] = (0.8, 0.1, 0.1)

# Spellings of a split accepted in manifests, mapped to the canonical train/val/test.
ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
    "eval": "test",
}


def parse_ratios(ratios: str | Sequence[float] | None) -> tuple[float, float, float]:
    """Turn "0.8,0.1,0.1" (or a 3-sequence) into normalised train/val/test ratios; refuse negatives."""
    if ratios is None:
        return DEFAULT_RATIOS
    if isinstance(ratios, str):
        try:
            values = [float(part) for part in ratios.split(",")]
        except ValueError as exc:
            raise DataError(f"split ratios must be three numbers like 0.8,0.1,0.1, got {ratios!r}") from exc
    else:
        values = [float(v) for v in ratios]
    if len(values) != 3 or any(v < 0 for v in values) or sum(values) <= 0:
        raise DataError(
            f"split ratios must be three non-negative numbers with a positive sum, got {ratios!r}"
        )
    total = sum(values)
    return (values[0] / total, values[1] / total, values[2] / total)


def id_fraction(row_id: str) -> float:
    """A stable number in [0, 1) derived from the id (sha256), independent of Python's hash seed."""
    digest = hashlib.sha256(row_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_for_id(row_id: str, ratios: Sequence[float] = DEFAULT_RATIOS) -> str:
    """The split ("train", "val" or "test") a row with this id falls in under these ratios."""
    x = id_fraction(row_id)
    cumulative = 0.0
    for name, ratio in zip(SPLITS, ratios, strict=True):
        cumulative += ratio
        if x < cumulative:
            return name
    return next(name for name, ratio in reversed(list(zip(SPLITS, ratios, strict=True))) if ratio > 0)


def normalise_split(value: str) -> str | None:
    """Canonical split name for a manifest value ("validation" -> "val"), or None if it is not a split."""
    return ALIASES.get(value.strip().lower())
