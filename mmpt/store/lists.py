"""Read a `texts` / `labels` cell of a manifest, DataFrame or HF dataset as a list of strings.

A cell may hold a list (JSON lines, Parquet, a DataFrame, a numpy array), a JSON list written as text (a CSV
cell such as `["a dog barks", "a dog"]`), or a single string (a one-element list). Blank entries are dropped
and an empty list means "none" (null), so `text` / `label` fall back to nothing rather than to "".
"""

from __future__ import annotations

import json
import math
from typing import Any


class BadList(ValueError):
    """A cell that is not a list of strings; the message says why, in one line."""


def string_list(value: Any) -> list[str] | None:
    """The strings a cell holds, in order, without blank ones; None for a missing or empty cell."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "surrogateescape")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if not text.startswith("["):
            return [value]
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadList(f"is not a valid JSON list ({exc.msg} at character {exc.pos})") from None
    if hasattr(value, "tolist") and not isinstance(value, str):  # numpy array, pyarrow scalar
        value = value.tolist()
    if not isinstance(value, list | tuple):
        raise BadList(f"holds a {type(value).__name__}, not a list of strings")
    out = []
    for item in value:
        if item is None:
            continue
        if isinstance(item, int) and not isinstance(item, bool):  # numeric class ids name a class too
            item = str(item)
        if not isinstance(item, str):
            raise BadList(f"holds a {type(item).__name__} ({item!r:.40}), not only strings")
        if item.strip():
            out.append(item)
    return out or None
