"""The one writing path into a Lance dataset: rows -> Arrow batches (sha256 per blob) -> a single atomic commit.

Lance pulls batches from a background thread, so the producer (manifest reading, validation, progress) stays
on the calling thread where Ctrl-C lands; any exception there aborts the write before its commit, which
leaves the previous dataset version untouched.
"""

from __future__ import annotations

import hashlib
import queue
import shutil
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lance
import pyarrow as pa
from lance.blob import blob_array

from mmpt.errors import DataError
from mmpt.store.schema import BLOB_MODALITIES, CORE_COLUMNS, sha_column

_SHA_COLUMNS = {sha_column(m): m for m in BLOB_MODALITIES}


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of a blob's original bytes, stored next to it because Lance keeps no payload checksum."""
    return hashlib.sha256(data).hexdigest()


def rows_to_batch(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.RecordBatch:
    """Build one record batch in `schema` from row dicts; blob sha256s are computed here when not given."""
    columns: list[pa.Array] = []
    for field in schema:
        name = field.name
        if name in BLOB_MODALITIES:
            columns.append(blob_array([row.get(name) for row in rows]))
        elif name in _SHA_COLUMNS:
            blob = _SHA_COLUMNS[name]
            values = []
            for row in rows:
                digest = row.get(name)
                if digest is None and row.get(blob) is not None:
                    digest = sha256_hex(row[blob])
                values.append(digest)
            columns.append(pa.array(values, type=pa.string()))
        else:
            columns.append(pa.array([row.get(name) for row in rows], type=field.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def metadata_types(schema: pa.Schema) -> dict[str, pa.DataType]:
    """The free metadata columns of a dataset schema (everything that is not a core or derived column)."""
    derived = ("emb_", "proj_")
    return {f.name: f.type for f in schema if f.name not in CORE_COLUMNS and not f.name.startswith(derived)}


def check_append_schema(existing: pa.Schema, metadata: Mapping[str, pa.DataType]) -> pa.Schema:
    """The schema to append with, or DataError naming the difference from the existing dataset."""
    have = metadata_types(existing)
    if set(have) != set(metadata):
        extra, missing = sorted(set(metadata) - set(have)), sorted(set(have) - set(metadata))
        parts = ([f"new columns {extra}"] if extra else []) + (
            [f"missing columns {missing}"] if missing else []
        )
        raise DataError(f"append schema differs from the dataset: {', '.join(parts)}")
    for name, dtype in metadata.items():
        if not _compatible(have[name], dtype):
            raise DataError(
                f"append schema differs from the dataset: column {name!r} is {have[name]}, input has {dtype}"
            )
    for name in CORE_COLUMNS:
        if name not in existing.names:
            raise DataError(f"append schema differs from the dataset: it has no {name!r} column")
    # Write in the dataset's own schema: its column order, metadata types and any embedding columns (as nulls).
    return existing


def _compatible(have: pa.DataType, new: pa.DataType) -> bool:
    if have == new or pa.types.is_null(new):
        return True
    numeric = (pa.types.is_integer, pa.types.is_floating)
    if any(t(have) for t in numeric) and any(t(new) for t in numeric):
        return pa.types.is_floating(have) or pa.types.is_integer(new)
    return False


_DONE = object()


class _Abort(Exception):
    """Raised inside the batch stream so Lance abandons the write without committing."""


def write_batches(
    batches: Iterable[pa.RecordBatch],
    uri: str | Path,
    schema: pa.Schema,
    *,
    mode: str = "create",
    storage_options: dict[str, str] | None = None,
    max_rows_per_file: int = 1 << 20,
) -> lance.LanceDataset:
    """Stream batches into one Lance commit (mode create/append/overwrite); on any error nothing is committed.

    A `create` that fails removes the folder it started, so no half dataset is left behind.
    """
    uri = str(uri)
    local = "://" not in uri
    existed = Path(uri).exists() if local else True
    channel: queue.Queue[Any] = queue.Queue(maxsize=4)
    outcome: dict[str, Any] = {}

    def stream() -> Iterator[pa.RecordBatch]:
        while True:
            item = channel.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise _Abort("ingest aborted")
            yield item

    def consume() -> None:
        try:
            reader = pa.RecordBatchReader.from_batches(schema, stream())
            outcome["dataset"] = lance.write_dataset(
                reader,
                uri,
                schema=schema,
                mode=mode,
                storage_options=storage_options,
                max_rows_per_file=max_rows_per_file,
            )
        except BaseException as exc:  # noqa: BLE001 - PanicException is a BaseException; hand it to the caller
            outcome["error"] = exc

    def put(item: Any) -> None:
        while writer.is_alive():
            try:
                channel.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    writer = threading.Thread(target=consume, name="mmpt-lance-writer", daemon=True)
    writer.start()
    try:
        for batch in batches:
            if not writer.is_alive():
                break
            put(batch)
        put(_DONE)
    except BaseException as exc:
        put(exc)
        _join(writer)
        _remove_if_new(uri, local, existed)
        raise
    _join(writer)
    if "error" in outcome:
        _remove_if_new(uri, local, existed)
        error = outcome["error"]
        if isinstance(error, DataError | KeyboardInterrupt | SystemExit):
            raise error
        # Lance errors, including its panics (BaseException), become one line.
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DataError(f"writing {uri} failed: {reason}") from error
    return outcome["dataset"]


def _join(thread: threading.Thread) -> None:
    # Join in short slices so a second Ctrl-C still reaches this thread.
    while thread.is_alive():
        thread.join(timeout=0.1)


def _remove_if_new(uri: str, local: bool, existed: bool) -> None:
    if local and not existed:
        shutil.rmtree(uri, ignore_errors=True)
