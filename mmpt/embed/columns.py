"""Vector columns in the Lance dataset: write embeddings without rewriting blobs, read them back.

Writes go through two Lance operations that touch only the vector column's own data files:
`merge` (a new column, one file per fragment) and per-fragment `update_columns` committed as one
`Update(update_mode="rewrite_columns")` (an existing column, only the fragments holding the given ids).
`merge_insert` is never used: it rewrites whole rows, blobs included. Every write is one commit, made
under the dataset's write lock (mmpt.store.lock: appends and other column writes by mmpt wait for it) and
retried from the latest version when a writer outside mmpt got there first.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import lance
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from lance.commit import CommitConflictError

from mmpt.errors import ConfigError, DataError
from mmpt.store.lock import write_lock
from mmpt.store.schema import ID, LABEL, SPLIT, embedding_column

T = TypeVar("T")
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
FORMATS = ("numpy", "torch", "arrow")


def as_lance(dataset: Any, storage_options: dict[str, str] | None = None) -> lance.LanceDataset:
    """The `lance.LanceDataset` behind a URI/path, an `MmptDataset` (`.lance`) or a Lance dataset."""
    if isinstance(dataset, lance.LanceDataset):
        return dataset
    if hasattr(dataset, "lance"):
        return dataset.lance
    if isinstance(dataset, str | Path):
        try:
            return lance.dataset(str(dataset), storage_options=storage_options)
        except (ValueError, OSError) as exc:
            raise DataError(f"cannot open Lance dataset {dataset}: {exc}") from exc
    raise DataError(f"expected a dataset URI or a Lance dataset, got {type(dataset).__name__}")


def is_blob(field: pa.Field) -> bool:
    """True for Lance blob columns (scans return descriptors for them; DuckDB and Polars cannot read those)."""
    extension = getattr(field.type, "extension_name", "") or ""
    return "blob" in extension or (field.metadata or {}).get(b"lance-encoding:blob") == b"true"


def non_blob_columns(dataset: Any) -> list[str]:
    """Every column except the blobs: the projection to hand DuckDB, Polars or pandas."""
    return [field.name for field in as_lance(dataset).schema if not is_blob(field)]


def check_run_name(run: str) -> str:
    """Reject run names that would make awkward column or tag names (letters, digits, '_' and '-' only)."""
    if not isinstance(run, str) or not RUN_NAME.match(run):
        raise DataError(f"run name {run!r} must be letters, digits, '_' or '-' (it becomes a column name)")
    return run


def run_name(run: str | Path, name: str | None = None) -> str:
    """The name a run's columns carry: `name` if given, else the run folder's name sanitised.

    A checkpoint folder `RUN/checkpoints/step-0000030` is named `<RUN name>-step-0000030`.
    """
    if name is not None:
        return check_run_name(name)
    path = Path(run).resolve()
    base = path.name
    if path.parent.name == "checkpoints" and (path / "model.safetensors").is_file():
        base = f"{path.parent.parent.name}-{path.name}"
    clean = re.sub(r"[^A-Za-z0-9_-]+", "_", base).lstrip("_-")
    if not clean:
        raise ConfigError(f"cannot derive a column name from {str(run)!r}; pass a name (--name)")
    return clean


def as_run_name(run: str | Path) -> str:
    """A run folder (existing path) becomes its derived name; anything else must already be a valid name."""
    return run_name(run) if Path(run).exists() else check_run_name(str(run))


def vector_type(dim: int) -> pa.DataType:
    """Arrow type of a vector column: FixedSizeList<float32, dim>."""
    return pa.list_(pa.float32(), dim)


def as_matrix(vectors: Any, n: int | None = None, dim: int | None = None) -> np.ndarray:
    """Validate and convert vectors to a C-contiguous float32 [N, D] array (finite values only)."""
    arr = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if arr.ndim != 2:
        raise DataError(f"vectors must be a 2-D array [rows, dim], got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise DataError(f"{n} ids but {arr.shape[0]} vectors")
    if dim is not None and arr.shape[1] != dim:
        raise DataError(f"vectors have dimension {arr.shape[1]}, expected {dim}")
    if not np.isfinite(arr).all():
        raise DataError("vectors contain NaN or infinite values")
    return arr


def to_vector_array(matrix: np.ndarray) -> pa.FixedSizeListArray:
    """A float32 [N, D] matrix as an Arrow FixedSizeList array (zero copy)."""
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), pa.float32()), matrix.shape[1])


def to_matrix(array: pa.Array | pa.ChunkedArray, dim: int) -> np.ndarray:
    """A non-null FixedSizeList column as a float32 [N, D] numpy array."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks else pa.array([], vector_type(dim))
    return array.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, dim)


def column_dim(ds: lance.LanceDataset, column: str) -> int | None:
    """The list size of a FixedSizeList column, or None when the dataset has no such column."""
    if column not in ds.schema.names:
        return None
    dtype = ds.schema.field(column).type
    if not pa.types.is_fixed_size_list(dtype):
        raise DataError(f"column {column} is {dtype}, not a FixedSizeList vector column")
    return dtype.list_size


def is_conflict(exc: BaseException) -> bool:
    """True for Lance errors meaning 'another writer committed first': retry from the latest version."""
    if isinstance(exc, CommitConflictError):
        return True
    text = str(exc)
    return isinstance(exc, OSError) and (
        "commit conflict" in text.lower() or "Incompatible transaction" in text
    )


def with_retry(attempt: Callable[[], T], what: str, uri: str, retries: int = 5, lock: bool = False) -> T:
    """Run a whole read-then-commit attempt, redoing it on commit conflicts with jittered backoff.

    With `lock`, each attempt holds the dataset's write lock from its read to its commit.
    """
    for i in range(retries + 1):
        try:
            if lock:
                with write_lock(uri, f"writing {what}"):
                    return attempt()
            return attempt()
        except OSError as exc:
            if not is_conflict(exc):
                raise
            if i == retries:
                raise DataError(
                    f"another writer kept changing {uri} while writing {what}: gave up after "
                    f"{retries + 1} attempts; nothing was written, run again to finish"
                ) from exc
            time.sleep(0.05 * 2**i * (1 + random.random()))
    raise AssertionError("unreachable")


def open_latest(uri: str, storage_options: dict[str, str] | None = None) -> lance.LanceDataset:
    """The newest version of the dataset (each write attempt starts from here)."""
    return lance.dataset(uri, storage_options=storage_options)


def column_fingerprint(ds: lance.LanceDataset, column: str) -> str | None:
    """A digest of the data files that hold a column; changes whenever the column's values are rewritten."""
    field = ds.lance_schema.field(column) if column in ds.schema.names else None
    if field is None:
        return None
    field_id = field.id()
    digest = hashlib.sha1()
    for fragment in sorted(ds.get_fragments(), key=lambda f: f.fragment_id):
        for data_file in fragment.data_files():
            if field_id in data_file.fields:
                digest.update(f"{fragment.fragment_id}:{data_file.path};".encode())
    return digest.hexdigest()[:16]


def _keyed_table(
    ids: Sequence[str], column: str, values: pa.Array, metadata: dict[str, str] | None
) -> pa.Table:
    """(id, column) table with unique ids (the last value of a repeated id wins)."""
    ids_arr = pa.array(list(ids), pa.string())
    if ids_arr.null_count:
        raise DataError("ids must not be null")
    table = pa.table({ID: ids_arr, column: values})
    if len(table) and pc.count_distinct(ids_arr).as_py() != len(table):
        last = {key: i for i, key in enumerate(ids_arr.to_pylist())}
        table = table.take(pa.array(sorted(last.values()), pa.int64()))
    schema = pa.schema([pa.field(ID, pa.string()), pa.field(column, values.type, metadata=metadata)])
    return table.cast(schema)


def _fragments_holding(ds: lance.LanceDataset, ids: pa.Array, strict: bool = True) -> list[int]:
    """Fragment ids of the rows whose id is in `ids`; DataError if some ids are not in the dataset and `strict`."""
    scan = ds.to_table(columns=[ID], with_row_address=True)
    hit = pc.is_in(scan[ID], value_set=ids)
    found = scan.filter(hit)
    if strict and found.num_rows < len(ids):
        missing = pc.filter(ids, pc.invert(pc.is_in(ids, value_set=found[ID]))).to_pylist()
        raise DataError(f"{len(missing)} ids are not in the dataset, e.g. {missing[:3]}")
    addresses = found["_rowaddr"].to_numpy()
    return sorted(set((addresses >> 32).tolist()))


def upsert_column(
    uri: str,
    column: str,
    ids: Sequence[str],
    values: pa.Array,
    *,
    metadata: dict[str, str] | None = None,
    retries: int = 5,
    storage_options: dict[str, str] | None = None,
    skip_missing: bool = False,
) -> int:
    """Set `column` for the given ids in one commit, leaving other rows' values (or nulls) and all blobs alone.

    Ids not in the dataset raise DataError, or are ignored with `skip_missing` (rows deleted meanwhile).
    """
    table = _keyed_table(ids, column, values, metadata)

    def attempt() -> int:
        ds = open_latest(uri, storage_options)
        fragments = _fragments_holding(ds, table[ID].combine_chunks(), strict=not skip_missing)
        if not fragments:
            return ds.version
        if column not in ds.schema.names:
            ds.merge(table, left_on=ID, schema=table.schema)
            return ds.version
        if ds.schema.field(column).type != values.type:
            raise DataError(
                f"column {column} holds {ds.schema.field(column).type}, cannot write {values.type}"
            )
        updated: list[lance.FragmentMetadata] = []
        fields: list[int] = []
        for fid in fragments:
            source = ds.get_fragment(fid)
            assert source is not None, f"fragment {fid} was read from this very version"
            fragment, fields = source.update_columns(table, left_on=ID, right_on=ID)
            updated.append(fragment)
        op = lance.LanceOperation.Update(
            updated_fragments=updated, fields_modified=fields, update_mode="rewrite_columns"
        )
        return lance.LanceDataset.commit(
            uri, op, read_version=ds.version, storage_options=storage_options
        ).version

    return with_retry(attempt, column, uri, retries, lock=True)


def replace_column(
    uri: str,
    column: str,
    ids: Sequence[str],
    values: pa.Array,
    *,
    metadata: dict[str, str] | None = None,
    retries: int = 5,
    storage_options: dict[str, str] | None = None,
) -> int:
    """Replace a whole derived column (and its field metadata): drop it if present, then merge the new values."""
    table = _keyed_table(ids, column, values, metadata)

    def attempt() -> int:
        ds = open_latest(uri, storage_options)
        _fragments_holding(ds, table[ID].combine_chunks())
        if column in ds.schema.names:
            ds.drop_columns([column])
        ds.merge(table, left_on=ID, schema=table.schema)
        return ds.version

    return with_retry(attempt, column, uri, retries, lock=True)


def tag_version(uri: str, tag: str, version: int, storage_options: dict[str, str] | None = None) -> None:
    """Point tag `tag` at `version` (created, or moved if it exists)."""
    tags = open_latest(uri, storage_options).tags
    try:
        tags.create(tag, version)
    except (ValueError, OSError):  # it exists (perhaps just created by a concurrent writer): move it
        tags.update(tag, version)


def run_tag(run: str) -> str:
    """Tag of the newest dataset version holding a run's embeddings: open it with `lance.dataset(uri, version=tag)`."""
    return f"emb-{check_run_name(run)}"


def write_embeddings(
    dataset: Any,
    run: str,
    modality: str,
    ids: Sequence[str],
    vectors: np.ndarray,
    *,
    tag: bool = True,
    retries: int = 5,
    storage_options: dict[str, str] | None = None,
    skip_missing: bool = False,
) -> int:
    """Add or extend `emb_<run>_<modality>` for the given ids in one commit; returns the new dataset version."""
    ds = as_lance(dataset, storage_options)
    column = embedding_column(check_run_name(run), modality)
    if not len(ids):
        raise DataError("no embeddings to write")
    matrix = as_matrix(vectors, n=len(ids), dim=column_dim(ds, column))
    meta = {"mmpt.kind": "embedding", "mmpt.run": run, "mmpt.modality": modality}
    version = upsert_column(
        ds.uri,
        column,
        ids,
        to_vector_array(matrix),
        metadata=meta,
        retries=retries,
        storage_options=storage_options,
        skip_missing=skip_missing,
    )
    if tag:
        tag_version(ds.uri, run_tag(run), version, storage_options)
    return version


def sql_literal(value: str) -> str:
    """A string as a quoted SQL literal for Lance filters."""
    return "'" + str(value).replace("'", "''") + "'"


def vector_filter(
    column: str, split: str | None = None, label: str | None = None, where: str | None = None
) -> str:
    """SQL filter selecting rows that hold a vector in `column`, optionally one split / label / extra condition."""
    parts = [f"`{column}` IS NOT NULL"]
    for name, value in ((SPLIT, split), (LABEL, label)):
        if value is not None:
            parts.append(f"{name} = {sql_literal(value)}")
    if where:
        parts.append(f"({where})")
    return " AND ".join(parts)


def read_vectors(
    dataset: Any,
    column: str,
    *,
    split: str | None = None,
    extra: Sequence[str] = (),
    where: str | None = None,
) -> tuple[pa.Table, np.ndarray]:
    """Rows holding a vector in `column` (id + `extra` columns) and their vectors as float32 [N, D]."""
    ds = as_lance(dataset)
    dim = column_dim(ds, column)
    if dim is None:
        raise DataError(f"the dataset has no column {column}; write it first (mmpt embed)")
    table = ds.to_table(columns=[ID, *extra, column], filter=vector_filter(column, split=split, where=where))
    return table.drop_columns([column]), to_matrix(table[column], dim)


def read_embeddings(
    dataset: Any, run: str, modality: str, format: str = "numpy", split: str | None = None
) -> tuple[Any, Any]:
    """(ids, vectors) of the rows a run embedded: numpy [N, D] or torch tensor with ids list[str], or Arrow arrays."""
    if format not in FORMATS:
        raise DataError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    column = embedding_column(check_run_name(run), modality)
    if format == "arrow":
        ds = as_lance(dataset)
        if column_dim(ds, column) is None:
            raise DataError(f"the dataset has no column {column}; write it first (mmpt embed)")
        table = ds.to_table(columns=[ID, column], filter=vector_filter(column, split=split))
        return table[ID].combine_chunks(), table[column].combine_chunks()
    rows, matrix = read_vectors(dataset, column, split=split)
    ids = rows[ID].to_pylist()
    if format == "torch":
        import torch

        return ids, torch.from_numpy(matrix if matrix.flags.writeable else matrix.copy())
    return ids, matrix


def embedded_ids(dataset: Any, run: str, modality: str) -> set[str]:
    """Ids whose `emb_<run>_<modality>` is already set (empty when the column does not exist yet)."""
    ds = as_lance(dataset)
    column = embedding_column(check_run_name(run), modality)
    if column not in ds.schema.names:
        return set()
    return set(ds.to_table(columns=[ID], filter=vector_filter(column))[ID].to_pylist())
