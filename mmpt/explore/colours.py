"""Colour maps for categories that stay the same across calls, sessions and processes.

Categories are sorted and given colours from fixed palettes written out here: the Okabe-Ito palette
(readable with the common colour-vision deficiencies) for up to eight values, Tableau's tab20 for more,
repeating after twenty. Modalities and the canonical splits always get the same colour. A missing value
(None) is light grey.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

OKABE_ITO: tuple[str, ...] = (
    "#e69f00",
    "#56b4e9",
    "#009e73",
    "#f0e442",
    "#0072b2",
    "#d55e00",
    "#cc79a7",
    "#000000",
)
TAB20: tuple[str, ...] = (
    "#1f77b4",
    "#aec7e8",
    "#ff7f0e",
    "#ffbb78",
    "#2ca02c",
    "#98df8a",
    "#d62728",
    "#ff9896",
    "#9467bd",
    "#c5b0d5",
    "#8c564b",
    "#c49c94",
    "#e377c2",
    "#f7b6d2",
    "#7f7f7f",
    "#c7c7c7",
    "#bcbd22",
    "#dbdb8d",
    "#17becf",
    "#9edae5",
)
MISSING = "#bdbdbd"
FIXED: dict[str, dict[Any, str]] = {
    "modality": {"image": "#0072b2", "text": "#009e73", "audio": "#d55e00"},
    "split": {"train": "#0072b2", "val": "#e69f00", "test": "#cc79a7"},
}


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)  # NaN


def _sort_key(value: Any) -> tuple[int, Any]:
    """Numbers in numeric order, then everything else by its text."""
    if isinstance(value, bool):
        return (1, str(value))
    if isinstance(value, int | float):
        return (0, float(value))
    return (1, str(value))


def category_colours(values: Iterable[Any], by: str | None = None) -> dict[Any, str]:
    """value -> '#rrggbb' for the distinct values, from their sorted order (None -> grey)."""
    values = list(values)
    distinct = {v for v in values if not _is_missing(v)}
    has_missing = any(_is_missing(v) for v in values)
    fixed = FIXED.get(by or "", {})
    rest = sorted((v for v in distinct if v not in fixed), key=_sort_key)
    palette = OKABE_ITO if len(rest) <= len(OKABE_ITO) else TAB20
    colours = {v: fixed[v] for v in sorted(distinct & set(fixed), key=_sort_key)}
    colours.update({v: palette[i % len(palette)] for i, v in enumerate(rest)})
    if has_missing:
        colours[None] = MISSING
    return colours
