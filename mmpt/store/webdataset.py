"""Webdataset shards as input rows: img2dataset-style tars, one sample per key (image, audio, txt, json, cls),
streamed member by member and never unpacked to disk.

`mmpt ingest 'shards/{00000..00099}.tar'` (brace notation, quoted), a glob, or several paths. Members group by
key as webdataset does (the path up to the first dot of the file name); the row id is `<shard>/<key>`, the shard
named by its path below the shards' common folder without `.tar`, so keys that repeat across shards stay
distinct. A corrupt member rejects its sample only; a shard cut short keeps the samples before the cut. See
docs/ingest-sources.md.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import posixpath
import tarfile
import unicodedata
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Self, cast

import pyarrow as pa

from mmpt.errors import DataError
from mmpt.store.limits import DEFAULT_LIMITS, size_text
from mmpt.store.safe_read import special_kind
from mmpt.store.schema import STRING_LIST, TEXTS
from mmpt.store.source import Source
from mmpt.store.splits import ALIASES as SPLIT_NAMES
from mmpt.store.video import VIDEO_EXTS

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
IMAGE_EXTS = frozenset({"jpg", "jpeg", "png", "webp"})
AUDIO_EXTS = frozenset({"flac", "wav", "mp3", "ogg", "opus"})
MEDIA_EXTS = {
    **dict.fromkeys(IMAGE_EXTS, "image"),
    **dict.fromkeys(AUDIO_EXTS, "audio"),
    **dict.fromkeys((e.lstrip(".") for e in VIDEO_EXTS), "video"),
    "txt": "text",
    "json": "json",
    "cls": "label",
}
PEEK_SAMPLES = 256  # json members of the first shard read to find the metadata columns and their types
_READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)
# How tarfile's streaming reader stops quietly at a header that is not the end-of-archive marker.
_HEADER_ENDS = {
    "EmptyHeaderError": "ends without the tar end marker (cut short)",
    "TruncatedHeaderError": "ends inside a member header (cut short)",
    "InvalidHeaderError": "has a corrupt member header",
}


def is_shard_pattern(text: str) -> bool:
    """True for a webdataset shard path, URI, brace pattern or glob (it names .tar, .tar.gz or .tgz files)."""
    return text.split("?", 1)[0].lower().endswith(SHARD_SUFFIXES)


def expand_shards(specs: list[str]) -> list[str]:
    """Shard paths from brace patterns (`{00000..00099}`), globs (local) and plain paths or URIs, in order."""
    from braceexpand import braceexpand

    if not specs:
        raise DataError("no source given")
    shards: list[str] = []
    for spec in specs:
        if not is_shard_pattern(spec):
            raise DataError(
                f"{spec} is not a webdataset shard (.tar, .tar.gz, .tgz); several sources must all be shards"
            )
        try:
            items = list(braceexpand(spec))
        except Exception as exc:  # noqa: BLE001 - braceexpand raises its own error type for unbalanced braces
            raise DataError(f"cannot expand {spec}: {exc}") from None
        for item in items:
            if "://" in item and not item.startswith("file://"):
                shards.append(item)
                continue
            local = os.path.expanduser(item[len("file://") :] if item.startswith("file://") else item)
            if any(c in local for c in "*?["):
                matches = sorted(m for m in glob.glob(local) if is_shard_pattern(m))
                if not matches:
                    raise DataError(f"no shards match {item}")
                shards.extend(matches)
            elif not os.path.exists(local):
                raise DataError(f"shard not found: {item}")
            elif os.path.isdir(local):
                raise DataError(f"shard {item} is a folder, not a tar file")
            else:
                shards.append(local)
    repeated = next((s for i, s in enumerate(shards) if s in shards[:i]), None)
    if repeated is not None:
        raise DataError(f"shard {repeated} is listed twice")
    return shards


def shard_labels(shards: list[str]) -> list[str]:
    """Each shard's name in row ids: its path below the shards' common folder, without the tar suffix."""
    stems = [_strip_suffix(s) for s in shards]
    stems = [s if "://" in s else os.path.abspath(s).replace(os.sep, "/") for s in stems]
    parts = [s.split("/") for s in stems]
    folders = [p[:-1] for p in parts]
    common = 0
    while all(len(f) > common and f[common] == folders[0][common] for f in folders):
        common += 1
    return ["/".join(p[common:]) for p in parts]


def folder_split(shard: str, label: str) -> str | None:
    """The split a shard's folder names (`cc3m/validation/00000.tar` -> "validation"), else None.

    Corpora shipped as shards keep their splits in folders (LAION-Audio-630K `<subset>/train/`, `<subset>/test/`;
    img2dataset runs per split). Only the folder holding the shard and those below the shards' common folder
    (`label`) count, so a `test` folder higher up the path does not make every row a test row; a json `split`
    field in a sample wins over it."""
    parent = shard.split("?", 1)[0].replace("\\", "/").rsplit("/", 1)[0].rsplit("/", 1)[-1]
    folders = [*label.split("/")[:-1], parent]
    return next((f for f in reversed(folders) if f.lower() in SPLIT_NAMES), None)


def _strip_suffix(path: str) -> str:
    lower = path.lower()
    suffix = next(s for s in SHARD_SUFFIXES if lower.endswith(s))
    return path[: -len(suffix)]


def webdataset_source(
    specs: list[str],
    *,
    metadata_name: Callable[[str], str],
    max_member_bytes: int = DEFAULT_LIMITS.max_blob_bytes,
) -> Source:
    """Rows from webdataset shards (local, http(s) or object-store URIs read with pyarrow's credentials);
    json fields become metadata columns (typed from the first shard's first samples), a .txt member is the
    text (else the json's caption/text), a .cls member the label; members over `max_member_bytes` are not
    read (their sample is reported). `metadata_name` maps a json field to its column name (the manifest
    readers' rule: `meta_<name>` for names of core columns)."""
    shards = expand_shards(specs)
    labels = shard_labels(shards)
    splits = [folder_split(shard, label) for shard, label in zip(shards, labels, strict=True)]
    names: dict[str, str] = {}  # json field -> column

    def column(key: str) -> str:
        if key not in names:
            names[key] = metadata_name(key)
        return names[key]

    metadata = _peek_metadata(shards[0], column)
    name = specs[0] if len(specs) == 1 else f"{specs[0]} (+{len(specs) - 1} more)"

    def chunks(size: int) -> Iterator[list[dict[str, Any]]]:
        out: list[dict[str, Any]] = []
        number = 0
        for shard, label, split in zip(shards, labels, splits, strict=True):
            for sample in _samples(shard, max_member_bytes):
                row = sample.row(shard, label, metadata, column)
                row["split"] = row["split"] or split
                out.append({"row": number, **row})
                number += 1
                if len(out) >= size:
                    yield out
                    out = []
        if out:
            yield out

    return Source(name=name, metadata=metadata, total=None, chunks=chunks, root=None)


# --- reading shards ------------------------------------------------------------------------------------


@dataclass
class _Sample:
    """One key's members as read: kind -> (member name, bytes); `problem` rejects the sample as a whole."""

    key: str
    members: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    last: str = ""
    problem: tuple[str, str, str, str] | None = None  # kind, reason, where, modality
    duplicate: bool = False

    def row(
        self, shard: str, label: str, metadata: dict[str, pa.DataType], column: Callable[[str], str]
    ) -> dict[str, Any]:
        # a shard-level problem has no key, a repeated key no id of its own: both are only reported
        row_id = (
            None if self.duplicate or not self.key else unicodedata.normalize("NFC", f"{label}/{self.key}")
        )
        row: dict[str, Any] = {
            "id": row_id,
            "text": None,
            "image": None,
            "audio": None,
            "label": None,
            "split": None,
            "source": f"{shard}:{self.key}",
            "meta": {},
            "video": None,
        }
        try:
            if self.problem is not None:
                raise _Bad(*self.problem)
            self._fill(row, shard, metadata, column)
        except _Bad as bad:
            row["invalid"] = bad.args
        return row

    def _fill(
        self, row: dict[str, Any], shard: str, metadata: dict[str, pa.DataType], column: Callable[[str], str]
    ) -> None:
        for kind in ("image", "audio"):
            if kind in self.members:
                member, data = self.members[kind]
                row[kind] = {"bytes": data, "path": f"{shard}:{member}"}
        if "video" in self.members:
            member, data = self.members["video"]
            row["video"] = {"ref": data, "name": f"{shard}:{member}"}
        if "text" in self.members:
            row["text"] = _text(shard, *self.members["text"], "text")
        if "label" in self.members:
            row["label"] = _text(shard, *self.members["label"], "label")
        if "json" in self.members:
            member, data = self.members["json"]
            where = f"{shard}:{member}"
            fields = _json_object(data, where)
            if row["text"] is None:
                row["text"] = _json_caption(fields)
            captions = _json_captions(fields)
            if captions is not None:
                row["texts"] = captions  # several captions (LAION-Audio-630K, WavCaps): a texts list
            split = fields.get("split")
            if isinstance(split, str) and split.strip():
                row["split"] = split.strip()
            meta = {}
            for key, value in fields.items():
                name = column(str(key))
                if name in metadata:
                    meta[name] = _fit(value, metadata[name], key, where)
            row["meta"] = meta


class _Bad(Exception):
    """A sample that cannot become a row: (kind, reason, where, modality) for the report."""


def _samples(shard: str, max_member_bytes: int) -> Iterator[_Sample]:
    """The samples of one shard in order; a shard that cannot be read, a member over the limit, a duplicate key
    or a cut at the end comes back as a sample with a problem, and reading goes on where it can."""
    seen: set[str] = set()
    current: _Sample | None = None
    ended: list[str] = []  # why tarfile stopped reading headers
    try:
        stream = _open_stream(shard)
    except _Bad as bad:
        yield _Sample(key="", problem=bad.args)
        return
    with stream:
        try:
            tar = tarfile.open(fileobj=stream, mode="r|*", tarinfo=_watching(ended))
        except _READ_ERRORS as exc:
            reason = f"shard {shard} is not a readable tar archive: {_message(exc)}"
            yield _Sample(key="", problem=("corrupt_shard", reason, shard, "shard"))
            return
        member_name = ""
        try:
            for member in tar:
                _forget_members(tar)
                member_name = member.name
                key, ext = _split(member.name)
                if key is None or not member.isfile():
                    continue
                if current is not None and key != current.key:
                    yield current
                    current = None
                if current is None:
                    current = _Sample(key=key, duplicate=key in seen)
                    if current.duplicate:
                        reason = (
                            f"key {key} appears again later in shard {shard}; this later sample is skipped"
                        )
                        current.problem = ("duplicate_key", reason, f"{shard}:{member.name}", "shard")
                    seen.add(key)
                _read_member(tar, member, ext, current, shard, max_member_bytes)
                current.last = member.name
        except _READ_ERRORS as exc:
            yield _cut(current, shard, f"ends inside member {member_name}: {_message(exc)}", member_name)
            return
        why = _HEADER_ENDS.get(ended[0]) if ended else None
        if why is not None:  # not the two zero blocks that end a tar: the shard was cut or is damaged
            last = current.last if current is not None else ""
            kind = "corrupt_shard" if ended[0] == "InvalidHeaderError" else "truncated_shard"
            yield _cut(current, shard, f"{why}{f' after member {last}' if last else ''}", last, kind)
            return
        if current is not None:
            yield current


def _cut(
    current: _Sample | None, shard: str, what: str, member: str, kind: str = "truncated_shard"
) -> _Sample:
    """The sample being read when the shard broke off: rejected with the reason (every earlier one is kept)."""
    sample = current or _Sample(key="")
    where = f"{shard}:{member}" if member else shard
    key = f" (key {sample.key})" if sample.key else ""
    sample.problem = (
        kind,
        f"shard {shard} {what}{key}; the samples before it are kept",
        where,
        "shard",
    )
    return sample


def _watching(ended: list[str]) -> type[tarfile.TarInfo]:
    """A TarInfo class that records why reading headers stopped: tarfile ends a stream quietly at a cut or
    corrupt header, which must be reported rather than read as the end of the shard."""

    class Watched(tarfile.TarInfo):
        @classmethod
        def fromtarfile(cls, tarfile_: tarfile.TarFile) -> Self:
            try:
                return super().fromtarfile(tarfile_)
            except tarfile.HeaderError as exc:
                ended.append(type(exc).__name__)
                raise

    return Watched


def _forget_members(tar: tarfile.TarFile) -> None:
    """Streaming: drop tarfile's list of the members read so far (webdataset does the same), or it grows by
    one TarInfo per member for the whole shard."""
    cast(Any, tar).members = []


def _open_stream(shard: str) -> IO[bytes]:
    try:
        if "://" not in shard:
            kind = special_kind(os.stat(shard).st_mode)
            if kind is not None:
                raise _Bad("unreadable_shard", f"shard {shard} is {kind}, not a regular file", shard, "shard")
            return open(shard, "rb")  # noqa: SIM115 - closed by the caller's `with`
        if shard.split("://", 1)[0].lower() in ("http", "https"):
            return urllib.request.urlopen(shard, timeout=60)  # noqa: S310 - a shard URL the user gave
        from pyarrow import fs

        filesystem, path = fs.FileSystem.from_uri(shard)
        return filesystem.open_input_stream(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise _Bad(
            "unreadable_shard", f"cannot read shard {shard}: {_message(exc)}", shard, "shard"
        ) from None


def _split(name: str) -> tuple[str | None, str]:
    """Webdataset's key and extension: the path up to the first dot of the file name, and the rest."""
    folder, base = posixpath.split(name)
    if base.startswith((".", "__")) or "." not in base:
        return None, ""
    stem, ext = base.split(".", 1)
    return (posixpath.join(folder, stem) if folder else stem), ext.lower()


def _read_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, ext: str, sample: _Sample, shard: str, limit: int
) -> None:
    kind = MEDIA_EXTS.get(ext.rsplit(".", 1)[-1])
    if kind is None or kind in sample.members or sample.problem is not None:
        return  # other members (npy, a second image) are not read; the stream skips their bytes
    if member.size > limit:
        reason = f"member {member.name} is {size_text(member.size)}, over the {size_text(limit)} limit"
        sample.problem = ("too_large", reason, f"{shard}:{member.name}", kind)
        return
    handle = tar.extractfile(member)
    data = handle.read() if handle is not None else b""
    if len(data) < member.size:
        raise tarfile.ReadError("unexpected end of data")
    sample.members[kind] = (member.name, data)


def _text(shard: str, member: str, data: bytes, what: str) -> str | None:
    try:
        text = data.decode("utf-8-sig").strip()
    except UnicodeDecodeError as exc:
        reason = f"{what} member {member} is not valid UTF-8 (byte {exc.start})"
        raise _Bad("bad_text", reason, f"{shard}:{member}", what) from None
    return text or None


def _json_object(data: bytes, where: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Bad(
            "bad_metadata", f"json member does not parse: {_message(exc)}", where, "metadata"
        ) from None
    if not isinstance(value, dict):
        reason = f"json member holds a {type(value).__name__}, not an object of fields"
        raise _Bad("bad_metadata", reason, where, "metadata")
    return value


def _json_caption(fields: dict[str, Any]) -> str | None:
    """The caption a json member carries when there is no .txt: `caption` or `text`, or the first of a list."""
    for key in ("caption", "text"):
        value = fields.get(key)
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            value = value[0]
        if isinstance(value, str) and value.strip():
            return value
    return None


def _json_captions(fields: dict[str, Any]) -> list[str] | None:
    """A list of captions in `texts` / `captions` / `caption` / `text`, when there is one of two or more."""
    for key in ("texts", "captions", "caption", "text"):
        value = fields.get(key)
        if isinstance(value, list) and len(value) > 1 and all(isinstance(v, str) for v in value):
            return value
    return None


def _fit(value: Any, dtype: pa.DataType, key: str, where: str) -> Any:
    """A json value in its column's type; one that does not fit rejects the sample, naming the field."""
    if value is None:
        return None
    if pa.types.is_string(dtype):  # objects and lists as JSON text, numbers and booleans as JSON writes them
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    fits = not isinstance(value, bool) and (
        isinstance(value, float | int)
        if pa.types.is_floating(dtype)
        else isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    )
    if pa.types.is_boolean(dtype):
        fits = isinstance(value, bool)
    if not fits:
        reason = (
            f"json field {key!r} is {value!r}, not {dtype} like in the first samples of the first shard "
            "(the column's type comes from those)"
        )
        raise _Bad("bad_metadata", reason, where, "metadata")
    return (
        float(value) if pa.types.is_floating(dtype) else value if pa.types.is_boolean(dtype) else int(value)
    )


def _peek_metadata(shard: str, column: Callable[[str], str]) -> dict[str, pa.DataType]:
    """Metadata columns and types from the json members of the first samples of `shard` (read errors are left
    for the full pass to report), and the `texts` list column when those samples carry caption lists."""
    seen: dict[str, list[Any]] = {}
    captions = False
    count = 0
    with contextlib.suppress(_Bad, *_READ_ERRORS):
        with _open_stream(shard) as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                _forget_members(tar)
                key, ext = _split(member.name)
                if key is None or not member.isfile() or ext.rsplit(".", 1)[-1] != "json":
                    continue
                if member.size > DEFAULT_LIMITS.max_text_bytes * 16:
                    continue
                handle = tar.extractfile(member)
                try:
                    value = json.loads(handle.read() if handle is not None else b"")
                except (ValueError, UnicodeDecodeError):
                    continue
                if isinstance(value, dict):
                    captions = captions or _json_captions(value) is not None
                    for name, item in value.items():
                        seen.setdefault(str(name), []).append(item)
                count += 1
                if count >= PEEK_SAMPLES:
                    break
    types = {column(name): _infer(values) for name, values in seen.items()}
    return {**types, TEXTS: STRING_LIST} if captions else types


def _infer(values: list[Any]) -> pa.DataType:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.bool_()
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.int64()
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pa.float64()
    return pa.string()


def _message(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
