"""Dataset integrity: find damaged files, check a version end to end, restore the newest good version.

Lance keeps no checksums of its own (FIELD-NOTES): a truncated or bit-flipped data file fails somewhere in
its decoder with a Rust error (sometimes a panic, a BaseException), a deleted one with "Not found", a broken
manifest when the version is opened, and flipped bytes inside a blob read back silently. Here every such
failure becomes one line naming the file, and `repair` restores the newest version that reads fully, its
blobs matching their sha256 and its ids unique (`mmpt data verify --repair`).
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import lance
import pyarrow as pa
import pyarrow.compute as pc

from mmpt.errors import DataError
from mmpt.store.lock import write_lock
from mmpt.store.schema import BLOB_MODALITIES, ID, READY_COLUMNS, sha_column

QUARANTINE_DIR = "_mmpt/quarantine"  # unreadable manifests are moved here by repair (kept, not deleted)
_U64 = (1 << 64) - 1
_DATA_FILE = re.compile(r"data/([^\s,:;'\"/]+\.lance)\b")
# What Lance says when a file it reads is damaged (as opposed to a caller's mistake such as a wrong column)
_DAMAGE = re.compile(
    r"corrupt|LanceError\(IO\)|Not found: \S*data/|Protobuf|failed to fill whole buffer|metadata region|"
    r"unexpected end of file|invalid wire type|out of bounds of the file|Invalid (user input|data): .*(column|page)",
    re.IGNORECASE,
)
F = TypeVar("F", bound=Callable[..., Any])


def _fatal(exc: BaseException) -> bool:
    return isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit)


def is_read_failure(exc: BaseException) -> bool:
    """True for what Lance raises on a damaged file: IO, value and Arrow errors, and Rust panics."""
    return isinstance(exc, OSError | ValueError | RuntimeError | pa.ArrowException) or (
        type(exc).__name__ == "PanicException"
    )


def looks_damaged(exc: BaseException) -> bool:
    """True when `exc` is Lance failing on a damaged file (not a wrong column name or row position)."""
    return is_read_failure(exc) and bool(_DAMAGE.search(str(exc)))


def reason_of(exc: BaseException) -> str:
    """The first line of a Lance error (the first that tells of damage, when it is wrapped, e.g. by a
    DataLoader worker) without its Rust source location and wrapper prefixes."""
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    text = next((line for line in lines if _DAMAGE.search(line)), lines[0]).strip()
    text = re.sub(r"^[\w.]*(ArrowInvalid|OSError|ValueError|RuntimeError|PanicException): ", "", text)
    text = re.sub(r",\s*/\S+\.rs:\d+(:\d+)?.*$", "", text)
    for prefix in ("External error: ", "LanceError(IO): ", "Generic LocalFileSystem error: "):
        text = text.replace(prefix, "")
    if text.startswith("Not found: "):
        return "the file is missing"
    return text.strip()[:200] or type(exc).__name__


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Hold back what native code writes to stderr in the block (a Rust panic prints its own report there):
    replayed if the block succeeds, dropped if it raises (the caller turns the error into one line)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. captured): nothing to hold back
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), fd)
        ok = False
        try:
            yield
            ok = True
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            if ok:
                held.seek(0)
                text = held.read()
                if text:
                    os.write(fd, text)


@dataclass(frozen=True)
class Damage:
    """One unreadable file (a data file, a deletion file or a version's manifest) and why."""

    file: str
    reason: str
    fragment: int | None = None


def _data_path(uri: str, name: str) -> str:
    return f"{uri.rstrip('/')}/data/{name}"


def _file_columns(ds: lance.LanceDataset, fragment: Any) -> list[tuple[str, list[str]]]:
    """(data file path, top-level columns it holds) for each data file of a fragment."""
    fields = {name: ds.lance_schema.field(name) for name in ds.schema.names}
    ids = {name: f.id() for name, f in fields.items() if f is not None}
    out = []
    for data_file in fragment.data_files():
        held = set(data_file.fields)
        out.append((_data_path(ds.uri, data_file.path), [n for n, i in ids.items() if i in held]))
    return out


def _named_file(uri: str, exc: BaseException) -> str | None:
    match = _DATA_FILE.search(str(exc))
    return _data_path(uri, match.group(1)) if match else None


def locate_damage(ds: lance.LanceDataset, blobs: bool = False) -> list[Damage]:
    """Read every data file of `ds` column-set by column-set and list those that fail (blob payloads too if
    `blobs`; without, a file with a damaged footer or page still shows up)."""
    found = []
    blob_columns = {*BLOB_MODALITIES, *READY_COLUMNS}
    for fragment in ds.get_fragments():
        for path, columns in _file_columns(ds, fragment):
            wanted = columns if blobs else [c for c in columns if c not in blob_columns] or columns
            try:
                with quiet_native_stderr():
                    for _ in fragment.scanner(
                        columns=wanted, batch_size=1024, blob_handling="all_binary" if blobs else None
                    ).to_batches():
                        pass
            except BaseException as exc:  # noqa: BLE001 - Lance panics are BaseExceptions
                if _fatal(exc):
                    raise
                found.append(Damage(_named_file(ds.uri, exc) or path, reason_of(exc), fragment.fragment_id))
    return found


def damage_error(uri: str, exc: BaseException) -> DataError:
    """A failed read of `uri` as one line naming the damaged file and the way out (repair)."""
    reason = reason_of(exc)
    where = _named_file(uri, exc)
    if where is None:
        try:
            with quiet_native_stderr():
                ds = lance.dataset(uri)
            damage = locate_damage(ds) or locate_damage(ds, blobs=True)
        except BaseException as again:  # noqa: BLE001
            if _fatal(again):
                raise
            damage = []
        if damage:
            where, reason = damage[0].file, damage[0].reason
    file = f"data file {where}" if where else "a data file"
    return DataError(
        f"{uri}: {file} is unreadable ({reason}); `mmpt data verify --repair {uri}` restores the newest "
        f"version that reads fully"
    )


@contextmanager
def reading(uri: str) -> Iterator[None]:
    """Run Lance reads of `uri`; any failure that is not already one line becomes `damage_error`."""
    try:
        with quiet_native_stderr():
            yield
    except DataError:
        raise
    except BaseException as exc:  # noqa: BLE001 - Lance panics are BaseExceptions
        if not is_read_failure(exc):
            raise
        raise damage_error(uri, exc) from None


@contextmanager
def guarded(uri: str) -> Iterator[None]:
    """Like `reading`, for everyday reads: only errors that tell of a damaged file become `damage_error`
    (others pass unchanged), and native stderr is left alone (cheap, and safe with threads reading)."""
    try:
        yield
    except DataError:
        raise
    except BaseException as exc:  # noqa: BLE001 - Lance panics are BaseExceptions
        if _fatal(exc) or not looks_damaged(exc):
            raise
        raise damage_error(uri, exc) from None


def reads_dataset(param: str) -> Callable[[F], F]:
    """Decorate a function whose argument `param` is a dataset (path, URI, MmptDataset or LanceDataset):
    a damaged file met while it runs is one DataError naming the file and `mmpt data verify --repair`."""

    def decorate(func: F) -> F:
        signature = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            data = signature.bind_partial(*args, **kwargs).arguments.get(param)
            uri = getattr(data, "uri", data)
            if not isinstance(uri, str | Path):
                return func(*args, **kwargs)
            with guarded(str(uri)):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def dataset_of(exc: BaseException) -> str | None:
    """The local dataset folder a Lance error names (`.../corpus.lance/data/<file>`), if it names one."""
    for match in re.finditer(r"(/?[^\s,:;'\"]+)/data/[^\s,:;'\"/]+", str(exc)):
        for candidate in (match.group(1), "/" + match.group(1).lstrip("/")):
            if (Path(candidate) / "_versions").is_dir():
                return candidate
    return None


def damage_line(exc: BaseException, dataset: str | None = None) -> str | None:
    """The one-line message for a damaged-file error that reached the CLI unconverted, else None; `dataset`
    is the one the command was given (if any), used when the error does not name its folder."""
    if _fatal(exc) or not looks_damaged(exc):
        return None
    uri = dataset_of(exc)
    if uri is None and dataset and "://" not in dataset and (Path(dataset) / "_versions").is_dir():
        uri = dataset
    if uri is not None:
        return str(damage_error(uri, exc))
    return (
        f"a Lance data file is unreadable ({reason_of(exc)}); `mmpt data verify DATASET` names it and "
        f"`mmpt data verify --repair DATASET` restores the newest version that reads fully"
    )


# -- a whole version, end to end ---------------------------------------------------------------------


@dataclass
class Check:
    """What checking one version found: damaged files, blobs not matching their sha256, repeated or null ids."""

    uri: str
    version: int | None
    rows: int = 0
    damaged: list[Damage] = field(default_factory=list)
    mismatched: list[tuple[str, str, str]] = field(default_factory=list)  # (id, modality, data file)
    duplicates: dict[str, int] = field(default_factory=dict)  # id -> times it occurs
    null_ids: int = 0

    @property
    def ok(self) -> bool:
        return not (self.damaged or self.mismatched or self.duplicates or self.null_ids)

    def problems(self) -> list[str]:
        """One short phrase per kind of problem found (empty when the version is good)."""
        out = []
        if self.damaged:
            first = self.damaged[0]
            more = f" and {len(self.damaged) - 1} more" if len(self.damaged) > 1 else ""
            out.append(f"{first.file} is unreadable ({first.reason}){more}")
        if self.mismatched:
            shown = ", ".join(f"{i} ({m})" for i, m, _ in self.mismatched[:5])
            out.append(
                f"{len(self.mismatched)} blob(s) do not match their sha256: {shown} in {self.mismatched[0][2]}"
            )
        if self.duplicates:
            shown = ", ".join(f"{i!r} x{n}" for i, n in list(self.duplicates.items())[:5])
            extra = sum(n - 1 for n in self.duplicates.values())
            out.append(f"{len(self.duplicates)} id(s) occur more than once ({extra} extra rows): {shown}")
        if self.null_ids:
            out.append(f"{self.null_ids} row(s) have no id")
        return out


class _FileCache:
    """Per data file (and deletion file) results, so checking many versions reads each file once."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str | None], tuple[Damage | None, list[tuple[str, str]], pa.Array]] = {}


def _check_fragment_file(
    fragment: Any, path: str, columns: list[str], batch_rows: int, hash_blobs: bool
) -> tuple[Damage | None, list[tuple[str, str]], pa.Array]:
    """Read one data file of a fragment fully: (damage or None, (id, modality) of bad blobs, its ids)."""
    from mmpt.store.write import sha256_hex

    blobs_here = (*BLOB_MODALITIES, *READY_COLUMNS)  # originals and their training-ready copies
    checks = [m for m in blobs_here if hash_blobs and m in columns and sha_column(m) in columns]
    wanted = columns if not checks or ID in columns else [*columns, ID]
    bad: list[tuple[str, str]] = []
    ids: list[pa.Array] = []
    try:
        with quiet_native_stderr():
            scanner = fragment.scanner(columns=wanted, batch_size=batch_rows, blob_handling="all_binary")
            for batch in scanner.to_batches():
                if ID in columns:
                    ids.append(batch.column(ID))
                for modality in checks:
                    blobs = batch.column(modality).to_pylist()
                    digests = batch.column(sha_column(modality)).to_pylist()
                    row_ids = batch.column(ID).to_pylist()
                    for row_id, blob, digest in zip(row_ids, blobs, digests, strict=True):
                        if (
                            (blob is None) != (digest is None)
                            or blob is not None
                            and sha256_hex(blob) != digest
                        ):
                            bad.append((row_id, modality))
    except BaseException as exc:  # noqa: BLE001 - Lance panics are BaseExceptions
        if _fatal(exc):
            raise
        return Damage(path, reason_of(exc), fragment.fragment_id), [], pa.array([], pa.string())
    merged = pa.concat_arrays(ids) if ids else pa.array([], pa.string())
    return None, bad, merged


def check_version(
    ds: lance.LanceDataset, *, hash_blobs: bool = True, batch_rows: int = 256, cache: _FileCache | None = None
) -> Check:
    """Read every data file of this version fully, re-hash its blobs and check that its ids are unique."""
    cache = cache or _FileCache()
    result = Check(ds.uri, ds.version)
    all_ids: list[pa.Array] = []
    for fragment in ds.get_fragments():
        deletion = fragment.deletion_file()
        for path, columns in _file_columns(ds, fragment):
            key = (path, deletion)
            if key not in cache.entries:
                cache.entries[key] = _check_fragment_file(fragment, path, columns, batch_rows, hash_blobs)
            damage, bad, ids = cache.entries[key]
            if damage is not None:
                result.damaged.append(damage)
            result.mismatched.extend((i, m, path) for i, m in bad)
            if ID in columns:
                all_ids.append(ids)
    ids = pa.chunked_array(all_ids, pa.string()) if all_ids else pa.chunked_array([], pa.string())
    result.rows = len(ids)
    result.null_ids = ids.null_count
    if len(ids) and pc.count_distinct(ids.drop_null()).as_py() != len(ids) - ids.null_count:
        counts = pc.value_counts(ids.drop_null())
        repeated = pc.filter(counts, pc.greater(counts.field("counts"), 1))
        result.duplicates = {item["values"]: item["counts"] for item in repeated.to_pylist()}
    return result


# -- versions, manifests, repair ---------------------------------------------------------------------


def manifest_versions(uri: str) -> list[tuple[int, str]]:
    """(version, manifest path) of every manifest file of a local dataset, newest first."""
    folder = Path(uri) / "_versions"
    out = []
    for path in folder.glob("*.manifest") if folder.is_dir() else []:
        try:
            number = int(path.stem)
        except ValueError:
            continue
        version = _U64 - number if number > (1 << 63) else number  # V2 names count down from u64::MAX
        out.append((version, str(path)))
    return sorted(out, reverse=True)


def _open_version(uri: str, version: int | None) -> lance.LanceDataset | Damage:
    try:
        with quiet_native_stderr():
            return lance.dataset(uri, version=version)
    except BaseException as exc:  # noqa: BLE001 - a corrupt manifest panics
        if _fatal(exc):
            raise
        return Damage(f"version {version} manifest", reason_of(exc))


def check_latest(uri: str, *, hash_blobs: bool = True, batch_rows: int = 256) -> Check:
    """`check_version` of the newest version; a manifest that does not open is reported as its damage."""
    uri = str(uri)
    opened = _open_version(uri, None)
    if isinstance(opened, Damage):
        versions = manifest_versions(uri) if "://" not in uri else []
        file = versions[0][1] if versions else f"{uri}/_versions"
        return Check(uri, versions[0][0] if versions else None, damaged=[Damage(file, opened.reason)])
    return check_version(opened, hash_blobs=hash_blobs, batch_rows=batch_rows)


@dataclass
class Repair:
    """What `repair` did: the version restored (None if the latest was already good) and what was wrong."""

    uri: str
    good_version: int
    new_version: int
    latest_version: int | None
    problems: list[str]
    quarantined: list[str]

    def summary(self) -> str:
        """One line for the CLI."""
        if self.latest_version == self.good_version and not self.quarantined:
            return f"{self.uri}: version {self.good_version} reads fully; nothing to repair"
        moved = (
            f"; moved {len(self.quarantined)} unreadable manifest(s) to {QUARANTINE_DIR}"
            if self.quarantined
            else ""
        )
        return (
            f"restored {self.uri} to version {self.good_version} (now version {self.new_version}); the newest "
            f"version {self.latest_version} had: {'; '.join(self.problems)}{moved}"
        )


def repair(uri: str | Path, *, batch_rows: int = 256) -> Repair:
    """Make the newest version that reads fully, matches its blob hashes and has unique ids the latest one.

    Newer versions stay in the history (Lance's restore adds a version); a newer manifest that does not even
    open is moved to `_mmpt/quarantine/` first, since Lance cannot commit on top of it. DataError when no
    version is good.
    """
    uri = str(uri)
    if "://" in uri:
        candidates = [(v, "") for v in _versions_via_lance(uri)]
    else:
        if not (Path(uri) / "_versions").is_dir():
            raise DataError(f"{uri} is not a Lance dataset (no _versions folder)")
        candidates = manifest_versions(uri)
    if not candidates:
        raise DataError(f"{uri} has no versions to restore")
    cache = _FileCache()
    unreadable: list[tuple[int, str]] = []
    problems: list[str] = []
    good: lance.LanceDataset | None = None
    for version, path in candidates:
        opened = _open_version(uri, version)
        if isinstance(opened, Damage):
            unreadable.append((version, path))
            found = [f"manifest {path or version} does not open ({opened.reason})"]
        else:
            result = check_version(opened, batch_rows=batch_rows, cache=cache)
            if result.ok:
                good = opened
                break
            found = result.problems()
        if not problems:
            problems = found
    latest = candidates[0][0]
    if good is None:
        raise DataError(
            f"no version of {uri} reads fully (the newest has: {'; '.join(problems)}); re-ingest it from "
            f"its sources"
        )
    good_version = good.version  # `restore` below moves the handle on to the new version
    if good_version == latest:
        return Repair(uri, good_version, good_version, latest, [], [])
    with write_lock(uri, "data verify --repair"):
        quarantined = _quarantine(uri, [p for v, p in unreadable if v > good_version])
        current = _open_version(uri, None)
        if isinstance(current, Damage):
            raise DataError(
                f"{uri} still does not open after moving its broken manifests aside: {current.reason}"
            )
        if current.version != good_version:
            with quiet_native_stderr():
                good.restore()
            current = lance.dataset(uri)
    return Repair(uri, good_version, current.version, latest, problems, quarantined)


def _versions_via_lance(uri: str) -> list[int]:
    opened = _open_version(uri, None)
    if isinstance(opened, Damage):
        raise DataError(
            f"{uri}: the newest manifest does not open ({opened.reason}); repair it on a local copy"
        )
    return sorted((int(v["version"]) for v in opened.versions()), reverse=True)


def _quarantine(uri: str, paths: list[str]) -> list[str]:
    """Move unreadable manifests out of `_versions` (into `_mmpt/quarantine/`), so an older one is the latest."""
    if not paths:
        return []
    folder = Path(uri) / QUARANTINE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    moved = []
    for path in paths:
        target = folder / Path(path).name
        os.replace(path, target)
        moved.append(str(target))
    return moved
