"""The fault suite's tally: hostile inputs tried, kills survived, writer rounds run, invariant violations.

Fault tests call `record(...)` for what they exercised; the session's end writes the totals as JSON to
tests/artefacts/fault-summary.json and prints them (the figures issue notes quote).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

CATEGORIES = ("hostile_inputs", "kills", "writer_rounds", "corruptions")
_counts: Counter[str] = Counter()
_violations: Counter[str] = Counter()


def record(category: str, cases: int = 1, violations: int = 0) -> None:
    """Count `cases` exercised in `category` (one of CATEGORIES) and the invariant violations they showed."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown fault category {category!r}; one of {', '.join(CATEGORIES)}")
    _counts[category] += cases
    _violations[category] += violations


def summary() -> dict[str, dict[str, int]] | None:
    """The totals so far, or None when no fault test ran."""
    if not _counts:
        return None
    return {c: {"cases": _counts[c], "violations": _violations[c]} for c in CATEGORIES}


def write(folder: Path) -> Path | None:
    """Write the summary to folder/fault-summary.json (when any fault test ran); return its path."""
    data = summary()
    if data is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "fault-summary.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
