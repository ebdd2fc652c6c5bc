"""The input stream every ingest source becomes (manifest, folder tree, DataFrame, HF dataset)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa


@dataclass
class Source:
    """An input stream: its name (for messages and ids), metadata column types, row count if known, chunks,
    and the local folder its relative paths resolve against (symlinks below it must stay inside it)."""

    name: str
    metadata: dict[str, pa.DataType]
    total: int | None
    chunks: Callable[[int], Iterator[list[dict[str, Any]]]]
    root: str | None = None
