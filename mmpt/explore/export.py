"""Selected rows out of the explorer: a metadata table, files (parquet, csv), a Lance filter, a new dataset or a tag.

Files are written to a temporary name next to the target and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import lance
import numpy as np
import pandas as pd
import pyarrow as pa

from mmpt.embed.columns import is_blob, sql_literal
from mmpt.errors import DataError
from mmpt.store.schema import ID

FORMATS: tuple[str, ...] = ("parquet", "csv", "lance-filter", "lance", "tag")
SELECTIONS_DIR = "_mmpt/selections"  # tag exports keep their filter here, inside the dataset folder
COPY_BATCH = 1024
TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def metadata_columns(schema: pa.Schema) -> list[str]:
    """Columns a selection table holds: everything but blobs and vector (FixedSizeList) columns."""
    return [f.name for f in schema if not is_blob(f) and not pa.types.is_fixed_size_list(f.type)]


def rows_frame(ds: lance.LanceDataset, rows: np.ndarray) -> pd.DataFrame:
    """Metadata of the rows at these positions (in that order) plus their position as column `row`."""
    columns = metadata_columns(ds.schema)
    if len(rows):
        table = ds.take(np.asarray(rows, np.int64).tolist(), columns=columns)
    else:
        table = pa.schema([ds.schema.field(c) for c in columns]).empty_table()
    frame = table.to_pandas()
    frame.insert(len(frame.columns), "row", np.asarray(rows, np.int64))
    return frame


def id_filter(ids: Sequence[str]) -> str:
    """A Lance / DuckDB SQL filter selecting exactly these ids: `id IN ('a', 'b', ...)`."""
    if not ids:
        raise DataError("nothing is selected")
    return f"{ID} IN ({', '.join(sql_literal(i) for i in ids)})"


def _atomic(path: Path, write: Callable[[Path], object]) -> str:
    """Call `write(temp_path)` then rename the temp file onto `path` (same folder, so the rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return str(path)


def write_table(frame: pd.DataFrame, path: str | Path, format: str) -> str:
    """Write a selection table as parquet or csv, atomically; returns the path."""
    if format == "parquet":
        return _atomic(Path(path), lambda p: frame.to_parquet(p, index=False))
    if format == "csv":
        return _atomic(Path(path), lambda p: frame.to_csv(p, index=False))
    raise DataError(f"unknown table format {format!r}; use parquet or csv")


def write_filter(text: str, path: str | Path) -> str:
    """Write a filter expression to a text file, atomically; returns the path."""
    return _atomic(Path(path), lambda p: Path(p).write_text(text + "\n"))


def copy_rows(ds: lance.LanceDataset, rows: np.ndarray, path: str | Path) -> str:
    """A new Lance dataset at `path` holding these rows in full (blobs included, same schema); one commit."""
    from lance.blob import blob_array

    from mmpt.store.write import write_batches

    if Path(path).exists():
        raise DataError(f"{path} already exists; choose a new path for the selected rows")
    schema = ds.schema
    blobs = [f.name for f in schema if is_blob(f)]
    plain = [name for name in schema.names if name not in blobs]

    def batches() -> Iterator[pa.RecordBatch]:
        for start in range(0, len(rows), COPY_BATCH):
            chunk = [int(r) for r in rows[start : start + COPY_BATCH]]
            table = ds.take(chunk, columns=plain)
            arrays = []
            for field in schema:
                if field.name in blobs:
                    values = [b for _, b in ds.read_blobs(field.name, indices=chunk, preserve_order=True)]
                    arrays.append(blob_array(values))
                else:
                    arrays.append(table[field.name].combine_chunks().cast(field.type))
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    write_batches(batches(), path, schema, mode="create")
    return str(path)


def tag_selection(ds: lance.LanceDataset, uri: str, tag: str, ids: Sequence[str]) -> str:
    """Tag the dataset version the explorer reads as `tag` and save the selection's filter next to it.

    `lance.dataset(uri, version=tag).to_table(filter=json.load(open(<uri>/_mmpt/selections/<tag>.json))
    ["filter"])` gives back exactly the selected rows, however the dataset changes later.
    """
    if "://" in uri:
        raise DataError("a tag export keeps its filter inside the dataset folder: it needs a local dataset")
    if not TAG.match(tag):
        raise DataError(f"tag {tag!r} must be letters, digits, '.', '_' or '-'")
    text = id_filter(ids)
    try:
        ds.tags.create(tag, ds.version)
    except (ValueError, OSError) as exc:
        raise DataError(f"cannot create tag {tag!r} on {uri}: {str(exc).splitlines()[0]}") from None
    record = {
        "tag": tag,
        "version": ds.version,
        "rows": len(ids),
        "filter": text,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    target = Path(uri) / SELECTIONS_DIR / f"{tag}.json"
    _atomic(target, lambda p: Path(p).write_text(json.dumps(record, indent=1) + "\n"))
    return tag
