"""The one writing path into a Lance dataset: rows -> Arrow batches (sha256 per blob) -> a single atomic commit.

Lance pulls batches from a background thread, so the producer (manifest reading, validation, progress)
stays on the calling thread where Ctrl-C lands; any exception there aborts the write before its commit,
which leaves the previous dataset version untouched. The commit is taken under the dataset's write lock
after a last check against the newest version (mmpt.store.lock), so concurrent writers cannot break the
dataset's invariants.
"""

from __future__ import annotations

import hashlib
import queue
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lance
import pyarrow as pa
from lance.blob import blob_array
from lance.commit import CommitConflictError
from lance.fragment import write_fragments

from mmpt.errors import DataError
from mmpt.store.lock import write_lock
from mmpt.store.schema import (
    BLOB_MODALITIES,
    CORE_COLUMNS,
    LIST_COLUMNS,
    READY_COLUMNS,
    READY_SHA256,
    sha_column,
)

_SHA_COLUMNS = {sha_column(m): m for m in BLOB_MODALITIES}


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of a blob's original bytes, stored next to it because Lance keeps no payload checksum."""
    return hashlib.sha256(data).hexdigest()


def rows_to_batch(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.RecordBatch:
    """Build one record batch in `schema` from row dicts; blob sha256s are computed here when not given."""
    columns: list[pa.Array] = []
    for field in schema:
        name = field.name
        if name in BLOB_MODALITIES or name in READY_COLUMNS:
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
    # ready copies (mmpt.store.ready) and the texts / labels lists are not metadata
    own = {*CORE_COLUMNS, *READY_COLUMNS, *READY_SHA256, *LIST_COLUMNS}
    return {f.name: f.type for f in schema if f.name not in own and not f.name.startswith(derived)}


def check_append_schema(existing: pa.Schema, metadata: Mapping[str, pa.DataType]) -> pa.Schema:
    """The schema to append with, or DataError naming the difference from the existing dataset."""
    have = {
        **metadata_types(existing),
        **{c: existing.field(c).type for c in LIST_COLUMNS if c in existing.names},
    }
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

# Called under the write lock with the newest version (None when the dataset does not exist yet), right
# before the commit: raise DataError to abandon the write (see mmpt.store.lock).
CommitCheck = Callable[[lance.LanceDataset | None], None]


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
    read_version: int | None = None,
    check: CommitCheck | None = None,
    what: str = "write",
    lock_timeout: float | None = None,
) -> lance.LanceDataset:
    """Stream batches into one Lance commit (mode create/append/overwrite); on any error nothing is committed.

    The data files are written first, without a lock; then, under the dataset's write lock, `check` sees
    the newest version and the commit lands on top of `read_version` (the version the caller planned
    against; Lance refuses it if an overwrite or restore came in between). A failed write removes its own
    data files, and a failed `create` the folder it started, so nothing half-written is left behind.
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
            outcome["transaction"] = write_fragments(
                reader,
                uri,
                schema=schema,
                mode=mode,
                return_transaction=True,
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
        raise _one_line(outcome["error"], f"writing {uri} failed")
    transaction: lance.Transaction = outcome["transaction"]
    return commit_locked(
        uri, transaction, mode, read_version, check, storage_options, what, local, existed, lock_timeout
    )


def commit_locked(
    uri: str,
    transaction: lance.Transaction,
    mode: str,
    read_version: int | None,
    check: CommitCheck | None,
    storage_options: dict[str, str] | None,
    what: str,
    local: bool,
    existed: bool,
    lock_timeout: float | None = None,
) -> lance.LanceDataset:
    """Commit `transaction` under the dataset's write lock; on any failure remove the files it wrote (and the
    dataset folder if this write created it), so nothing is left half-written."""
    locked = False
    try:
        with write_lock(uri, what, lock_timeout):
            locked = True
            try:
                return _commit(uri, transaction, mode, read_version, check, storage_options)
            except BaseException:
                _discard(uri, transaction, local, existed)
                raise
    except BaseException:
        if not locked:  # no lock: remove our own files only, never a folder another writer may commit into
            _discard(uri, transaction, local, existed=True)
        raise


def _commit(
    uri: str,
    transaction: lance.Transaction,
    mode: str,
    read_version: int | None,
    check: CommitCheck | None,
    storage_options: dict[str, str] | None,
) -> lance.LanceDataset:
    """Under the write lock: check the newest version, then commit the written fragments on top of it."""
    latest = _latest(uri, storage_options)
    if mode == "create" and latest is not None:
        raise DataError(
            f"{uri} was created by another writer while this one ran, so nothing was written; "
            f"run again (with --append to add these rows to it)"
        )
    if mode == "append" and latest is None:
        raise DataError(f"{uri} disappeared while rows were being appended to it; nothing was written")
    lost = _missing_files(uri, transaction)
    if lost:
        raise DataError(f"data file {lost} was removed while writing {uri}; nothing was written, run again")
    if check is not None:
        check(latest)
    if latest is None:
        base = 0
    elif mode == "overwrite":
        base = latest.version
    else:
        base = read_version if read_version is not None else transaction.read_version
    try:
        return lance.LanceDataset.commit(
            uri,
            lance.Transaction(read_version=base, operation=transaction.operation),
            storage_options=storage_options,
        )
    except CommitConflictError as exc:
        reason = (str(exc).strip().splitlines() or ["a conflicting commit"])[0].split(", /")[0]
        raise DataError(
            f"{uri} was changed by another writer while this one ran ({reason}); nothing was written, "
            f"run again"
        ) from None
    except BaseException as exc:  # noqa: BLE001 - Lance panics are BaseExceptions
        raise _one_line(exc, f"committing to {uri} failed") from None


def _one_line(error: BaseException, what: str) -> BaseException:
    """A writer's failure as the exception to raise: mmpt errors and interrupts as they are, Lance's as one line."""
    if isinstance(error, DataError | KeyboardInterrupt | SystemExit):
        return error
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    wrapped = DataError(f"{what}: {reason}")
    wrapped.__cause__ = error
    return wrapped


def _latest(uri: str, storage_options: dict[str, str] | None) -> lance.LanceDataset | None:
    """The newest committed version, or None when nothing was ever committed at `uri`."""
    if "://" not in uri and not (Path(uri) / "_versions").is_dir():
        return None
    try:
        return lance.dataset(uri, storage_options=storage_options)
    except BaseException as exc:  # noqa: BLE001 - a corrupt manifest panics
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if "://" in uri and "not found" in reason.lower():
            return None
        raise DataError(
            f"{uri} is not readable ({reason[:160]}), so nothing was written; "
            f"`mmpt data verify --repair {uri}` restores its last good version"
        ) from None


def _written_files(uri: str, transaction: lance.Transaction) -> list[str]:
    """Paths (under `uri`) of the data files a not yet committed write created."""
    fragments = getattr(transaction.operation, "fragments", None) or []
    return [f"{uri.rstrip('/')}/data/{file.path}" for fragment in fragments for file in fragment.files]


def _missing_files(uri: str, transaction: lance.Transaction) -> str | None:
    if "://" in uri:
        return None
    for path in _written_files(uri, transaction):
        if not Path(path).is_file():
            return path
    return None


def _discard(uri: str, transaction: lance.Transaction, local: bool, existed: bool) -> None:
    """Remove the data files of a write that will not be committed (and the folder a failed create began)."""
    if not local:
        return  # object stores: orphan files, as after a crash (`cleanup_old_versions` removes them)
    for path in _written_files(uri, transaction):
        Path(path).unlink(missing_ok=True)
        shutil.rmtree(path[: -len(".lance")], ignore_errors=True)  # its blob sidecar files, if any
    _remove_if_new(uri, local, existed)


def _join(thread: threading.Thread) -> None:
    # Join in short slices so a second Ctrl-C still reaches this thread.
    while thread.is_alive():
        thread.join(timeout=0.1)


def _remove_if_new(uri: str, local: bool, existed: bool) -> None:
    # Only while nobody has committed there: another writer may have created the dataset meanwhile.
    if local and not existed and not (Path(uri) / "_versions").exists():
        shutil.rmtree(uri, ignore_errors=True)
