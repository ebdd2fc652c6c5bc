"""Headless row browsing: filter a dataset's rows by split, label, modality and text, page them, show them.

The notebook DatasetPanel and the desktop Data tab are views of this; neither filters, pages nor reads blobs
itself. The small metadata columns are read once (no blobs); blobs are read only for the rows a view shows.
Row positions (0..len-1, scan order) are what every method takes and returns, as in `MmptDataset.read_blobs`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmpt.explore.media import Item, build_item, read_clip, spectrogram_png, thumbnail_png
from mmpt.store.dataset import MmptDataset, open_dataset
from mmpt.store.schema import AUDIO, BLOB_MODALITIES, ID, IMAGE, LABEL, SPLIT, TEXT, sha_column

ANY = "(any)"  # a filter value that means "no constraint" (as do None and "")
MODALITIES = ("image", "audio", "text")  # what the `modality` filter accepts


def _unset(value: str | None) -> bool:
    return value is None or value == "" or value == ANY


class RowBrowser:
    """Filter, count and page the rows of a dataset and read what a view shows of them.

    `frame` has one row per dataset row (index `row` = position) and the columns id, text, label, split and
    the booleans image, audio, has_text. Filters take None, "" or `ANY` to mean "no constraint".
    """

    ANY = ANY
    MODALITIES = MODALITIES

    def __init__(self, dataset: MmptDataset | str | Path) -> None:
        self.dataset = dataset if isinstance(dataset, MmptDataset) else open_dataset(dataset)
        names = self.dataset.schema.names
        columns = [c for c in (ID, TEXT, LABEL, SPLIT, *map(sha_column, BLOB_MODALITIES)) if c in names]
        meta = self.dataset.lance.to_table(columns=columns).to_pandas()
        frame = pd.DataFrame({"id": meta[ID].astype(str)})
        for column in (TEXT, LABEL, SPLIT):
            frame[column] = meta[column] if column in meta else None
        for modality in BLOB_MODALITIES:
            sha = sha_column(modality)
            frame[modality] = meta[sha].notna() if sha in meta else False
        frame["has_text"] = frame[TEXT].notna()
        frame.index.name = "row"
        self.frame = frame

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        return f"RowBrowser({self.dataset.uri!r}, rows={len(self)})"

    # --- filtering ---------------------------------------------------------------------------------
    def choices(self, column: str) -> list[str]:
        """Distinct non-null values of `split` or `label`, sorted (the options of that filter)."""
        if column not in (SPLIT, LABEL):
            raise ValueError(f"choices are for 'split' or 'label', not {column!r}")
        return sorted(str(v) for v in self.frame[column].dropna().unique())

    def filter(
        self,
        split: str | None = None,
        label: str | None = None,
        modality: str | None = None,
        text: str | None = None,
    ) -> np.ndarray:
        """Row positions (int64, ascending) matching every given criterion.

        `modality` keeps rows that have it (image, audio or text); `text` keeps rows whose caption or id
        contains it, ignoring case and surrounding blanks.
        """
        keep = np.ones(len(self.frame), dtype=bool)
        for column, value in ((SPLIT, split), (LABEL, label)):
            if not _unset(value):
                keep &= (self.frame[column] == value).to_numpy(dtype=bool)
        if not _unset(modality):
            if modality not in MODALITIES:
                raise ValueError(f"modality must be one of {', '.join(MODALITIES)}, not {modality!r}")
            keep &= self.frame["has_text" if modality == TEXT else modality].to_numpy(dtype=bool)
        needle = (text or "").strip().lower()
        if needle:
            hit = self.frame[TEXT].fillna("").astype(str).str.lower().str.contains(needle, regex=False)
            hit |= self.frame["id"].str.lower().str.contains(needle, regex=False)
            keep &= hit.to_numpy(dtype=bool)
        return np.flatnonzero(keep).astype(np.int64)

    def rows(self, positions: Iterable[int]) -> pd.DataFrame:
        """The metadata of these rows (`frame` rows, index `row`), in the given order."""
        return self.frame.iloc[np.asarray(list(positions), dtype=np.int64)]

    def counts(self, positions: Iterable[int] | None = None) -> dict[str, int]:
        """How many of these rows (all when None) there are, and how many have each modality."""
        frame = self.frame if positions is None else self.rows(positions)
        return {
            "rows": len(frame),
            "image": int(frame["image"].sum()),
            "audio": int(frame["audio"].sum()),
            "text": int(frame["has_text"].sum()),
        }

    def summary(self, positions: Iterable[int]) -> str:
        """'N of M rows' for a view's status line."""
        return f"{len(np.asarray(list(positions))):,} of {len(self):,} rows"

    # --- paging ------------------------------------------------------------------------------------
    @staticmethod
    def pages(count: int, page_size: int) -> int:
        """Number of pages `count` rows fill (at least 1, so an empty result still has a page to show)."""
        return max(1, math.ceil(count / max(1, page_size)))

    def page(self, positions: np.ndarray, number: int, page_size: int) -> tuple[int, np.ndarray]:
        """(page number clamped to the pages there are, the row positions on that page)."""
        number = max(0, min(int(number), self.pages(len(positions), page_size) - 1))
        start = number * page_size
        return number, np.asarray(positions)[start : start + page_size]

    # --- what a view shows -------------------------------------------------------------------------
    def _blobs(self, modality: str, positions: list[int]) -> list[bytes | None]:
        if modality not in self.dataset.schema.names:
            return [None] * len(positions)
        return self.dataset.read_blobs(modality, positions)

    def items(self, positions: Iterable[int]) -> list[Item]:
        """Item cards (thumbnail PNG, WAV clip, spectrogram PNG, caption, label, split) of these rows.

        A blob that does not decode is noted on its card, never raised.
        """
        positions = [int(p) for p in positions]
        if not positions:
            return []
        images, audios = self._blobs(IMAGE, positions), self._blobs(AUDIO, positions)
        out = []
        for pos, image, audio in zip(positions, images, audios, strict=True):
            row = self.frame.iloc[pos]
            card = Item(
                id=str(row["id"]),
                modality=None,
                row=pos,
                label=_str_or_none(row[LABEL]),
                split=_str_or_none(row[SPLIT]),
                caption=_str_or_none(row[TEXT]),
            )
            out.append(build_item(card, image, audio))
        return out

    def item(self, position: int) -> Item:
        """The item card of one row."""
        return self.items([position])[0]

    def thumbnails(self, positions: Iterable[Any]) -> dict[Any, tuple[bytes | None, bytes | None]]:
        """{position: (image thumbnail PNG, spectrogram PNG)} for a grid; None where absent or undecodable.

        Cheaper than `items`: no WAV is encoded. Keys are the positions as given.
        """
        keys = list(positions)
        rows = [int(k) for k in keys]
        images, audios = self._blobs(IMAGE, rows), self._blobs(AUDIO, rows)
        out: dict[Any, tuple[bytes | None, bytes | None]] = {}
        for key, image, audio in zip(keys, images, audios, strict=True):
            out[key] = (_safe(thumbnail_png, image), _safe(_spectrogram, audio))
        return out


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _spectrogram(audio: bytes) -> bytes:
    return spectrogram_png(*read_clip(audio))


def _safe(render: Callable[[bytes], bytes], data: bytes | None) -> bytes | None:
    """`render(data)`, or None when there is no data or it does not decode (a blank tile; the card says why)."""
    if not data:
        return None
    try:
        return render(data)
    except Exception:  # PIL and soundfile raise many kinds on bad bytes
        return None
