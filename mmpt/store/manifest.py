"""Read what `mmpt ingest` is given — a manifest (CSV/TSV, JSONL, Parquet), a folder tree, a pandas DataFrame or a
Hugging Face dataset — as input rows streamed in chunks: refs to media, text, label, split, metadata."""

from __future__ import annotations

import io
import json
import math
import os
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from mmpt.errors import DataError
from mmpt.store import text_manifest
from mmpt.store.folder_tree import folder_source
from mmpt.store.limits import DEFAULT_LIMITS, ReadLimits
from mmpt.store.safe_read import special_kind
from mmpt.store.schema import CORE_COLUMNS, LIST_COLUMNS, READY_COLUMNS, READY_SHA256, STRING_LIST
from mmpt.store.source import Source
from mmpt.store.video import VideoInput, VideoOptions, window_columns, with_video
from mmpt.store.webdataset import is_shard_pattern, webdataset_source

MANIFEST_KINDS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# Column looked up when no name is given for a role; the first one present is used.
DEFAULT_NAMES: dict[str, tuple[str, ...]] = {
    "id": ("id",),
    "text": ("text", "caption"),
    "image": ("image", "image_path"),
    "audio": ("audio", "audio_path"),
    "label": ("label",),
    "split": ("split",),
    "video": ("video", "video_path"),
    "texts": ("texts", "captions"),
    "labels": ("labels",),
}


@dataclass(frozen=True)
class ColumnNames:
    """Which source column plays each role; None means look for the default name."""

    id: str | None = None
    text: str | None = None
    image: str | None = None
    audio: str | None = None
    label: str | None = None
    split: str | None = None
    video: str | None = None  # video files: a frame is the image, the track the audio (mmpt.store.video)
    texts: str | None = None  # every caption of the item: a list, or a JSON list in a CSV cell
    labels: str | None = None  # every label of a multi-label row, likewise


def open_source(
    source: Any,
    columns: ColumnNames = ColumnNames(),
    storage_options: dict[str, str] | None = None,
    *,
    follow_symlinks: bool = False,
    limits: ReadLimits | None = None,
) -> Source:
    """Dispatch on what `source` is: DataFrame, HF Dataset, folder, manifest file/URI, or webdataset shards (a
    .tar path, a brace or glob pattern, a list of them); a `VideoInput` wraps any of these with video options.

    `follow_symlinks` walks symlinked folders of a folder tree (files are checked when read, see safe_read);
    `limits.max_blob_bytes` caps the tar members read (the rest of the limits apply in validation).
    """
    video = source.options if isinstance(source, VideoInput) else VideoOptions()
    inner = source.source if isinstance(source, VideoInput) else source
    member_cap = (limits or DEFAULT_LIMITS).max_blob_bytes
    return with_video(_open_plain(inner, columns, storage_options, follow_symlinks, member_cap), video)


def _open_plain(
    source: Any,
    columns: ColumnNames,
    storage_options: dict[str, str] | None,
    follow_symlinks: bool,
    member_cap: int,
) -> Source:
    if isinstance(source, list | tuple):
        shards = [os.fspath(s) for s in source]
        return webdataset_source(shards, metadata_name=_metadata_name, max_member_bytes=member_cap)
    if _is_dataframe(source):
        return dataframe_source(source, columns)
    if _is_hf_dataset(source):
        return hf_source(source, columns)
    if not isinstance(source, str | os.PathLike):
        raise DataError(
            f"cannot ingest a {type(source).__name__}; give a path, a DataFrame or a datasets.Dataset"
        )
    text = os.fspath(source)
    if is_shard_pattern(text):
        return webdataset_source([text], metadata_name=_metadata_name, max_member_bytes=member_cap)
    if "://" not in text or text.startswith("file://"):
        path = Path(text[len("file://") :] if text.startswith("file://") else text).expanduser()
        if not path.exists():
            raise DataError(f"source not found: {text}")
        if path.is_dir():
            if (path / "_versions").is_dir():
                raise DataError(f"{text} is a Lance dataset; ingest reads manifests, folders and tables")
            return folder_source(path, follow_symlinks=follow_symlinks)
        return manifest_source(str(path), columns, None)
    return manifest_source(text, columns, storage_options)


# --- manifests ---------------------------------------------------------------------------------------


def manifest_source(uri: str, columns: ColumnNames, storage_options: dict[str, str] | None) -> Source:
    """A CSV/TSV, JSON-lines or Parquet manifest; media paths resolve against the manifest's folder."""
    suffix = Path(uri.split("?")[0]).suffix.lower()
    kind = MANIFEST_KINDS.get(suffix)
    if kind is None:
        raise DataError(
            f"unsupported manifest type {suffix or '(none)'} for {uri}; use .csv, .tsv, .jsonl or .parquet"
        )
    local = "://" not in uri
    if local:
        try:
            kind_of_file = special_kind(os.stat(uri).st_mode)
        except FileNotFoundError:
            raise DataError(f"source not found: {uri}") from None
        if kind_of_file is not None:  # reading a FIFO blocks, /dev/zero never ends
            raise DataError(
                f"manifest {uri} is {kind_of_file}, not a regular file; ingest reads manifest files"
            )
    base = str(Path(uri).resolve().parent) if local else uri.rsplit("/", 1)[0]
    root = base if local else None  # symlinks below the manifest's folder must stay inside it
    name = Path(uri).name

    def open_file() -> pa.NativeFile:
        if local:
            return pa.OSFile(uri, "rb")
        from pyarrow import fs

        try:
            filesystem, path = fs.FileSystem.from_uri(uri)
            return filesystem.open_input_file(path)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot open manifest {uri}: {str(exc).splitlines()[0]}") from None

    def open_binary() -> IO[bytes]:
        return open(uri, "rb") if local else io.BufferedReader(_NativeRaw(open_file()), 1 << 20)  # noqa: SIM115

    def fail(exc: Exception) -> DataError:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "empty" in message.lower():
            return DataError(f"manifest is empty: {uri}")
        return DataError(f"cannot read manifest {uri}: {message}")

    if kind != "parquet":
        try:
            scanned = text_manifest.scan(kind, open_binary, name)
        except (OSError, pa.ArrowException) as exc:
            raise fail(exc) from None
        # Role columns are text whatever they look like: ids like 007 or +1 and captions like 1.50 keep every
        # character. Metadata columns keep their inferred type.
        roles = set(_resolve_roles(scanned.schema.names, columns).values())
        schema = pa.schema([pa.field(f.name, pa.string()) if f.name in roles else f for f in scanned.schema])

        def text_batches(size: int) -> Iterator[dict[str, list]]:
            try:
                yield from text_manifest.batches(kind, open_binary, name, schema, size)
            except OSError as exc:
                raise fail(exc) from None

        return _table_source(
            name, schema, text_batches, columns, base, scanned.rows, id_prefix=Path(uri).stem, root=root
        )

    def batches(size: int) -> Iterator[dict[str, list]]:
        import pyarrow.parquet as pq

        try:
            for batch in pq.ParquetFile(open_file()).iter_batches(batch_size=size):
                yield _pydict(batch)
        except pa.ArrowException as exc:
            raise fail(exc) from None

    try:
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(open_file()).metadata
    except pa.ArrowException as exc:
        raise fail(exc) from None
    return _table_source(
        name,
        meta.schema.to_arrow_schema(),
        batches,
        columns,
        base,
        meta.num_rows,
        id_prefix=Path(uri).stem,
        root=root,
    )


class _NativeRaw(io.RawIOBase):
    """A pyarrow input file (object store) as a raw Python stream, for the line-based readers."""

    def __init__(self, handle: pa.NativeFile) -> None:
        self.handle = handle

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.handle.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.handle.close()
        super().close()


def _pydict(batch: pa.RecordBatch) -> dict[str, list]:
    """A batch as columns of Python values; a string that is not valid UTF-8 keeps its bytes as surrogates, so
    validation rejects that row (naming the column) instead of the whole file failing."""
    try:
        return batch.to_pydict()
    except UnicodeDecodeError:
        out = {}
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            if isinstance(column, pa.ChunkedArray):
                column = column.combine_chunks()
            if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                binary = column.view(pa.binary() if pa.types.is_string(column.type) else pa.large_binary())
                out[name] = [
                    None if v is None else v.decode("utf-8", "surrogateescape") for v in binary.to_pylist()
                ]
            else:
                out[name] = column.to_pylist()
        return out


# --- tables (manifests, DataFrames, HF datasets) ----------------------------------------------------


def _resolve_roles(available: list[str], columns: ColumnNames) -> dict[str, str]:
    roles: dict[str, str] = {}
    for field in fields(ColumnNames):
        given = getattr(columns, field.name)
        if given is not None:
            if given not in available:
                raise DataError(
                    f"unknown {field.name} column {given!r}; available columns: {', '.join(available) or '(none)'}"
                )
            roles[field.name] = given
            continue
        found = next((name for name in DEFAULT_NAMES[field.name] if name in available), None)
        if found is not None:
            roles[field.name] = found
    if not any(role in roles for role in ("image", "audio", "text", "texts", "video")):
        raise DataError(
            "no image, audio or text column found (looked for image, audio, text, caption, texts, captions, "
            "video); "
            f"available columns: {', '.join(available) or '(none)'}; name them with --image-col/--audio-col/--text-col"
        )
    return roles


def _metadata_name(name: str) -> str:
    # A free column may not shadow a core or derived column (training-ready copies included).
    derived = name in CORE_COLUMNS or name in READY_COLUMNS or name in READY_SHA256 or name in LIST_COLUMNS
    return f"meta_{name}" if derived or name.startswith(("emb_", "proj_", "meta_")) else name


def _metadata_type(dtype: pa.DataType) -> pa.DataType:
    if pa.types.is_boolean(dtype):
        return pa.bool_()
    if pa.types.is_integer(dtype):
        return pa.int64()
    if pa.types.is_floating(dtype):
        return pa.float64()
    return pa.string()


def _coerce(value: Any, dtype: pa.DataType) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if pa.types.is_string(dtype):
        if isinstance(value, str):
            return value
        if isinstance(value, dict | list | tuple):
            return json.dumps(value, default=str, ensure_ascii=False)
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
        return value.isoformat() if hasattr(value, "isoformat") else str(value)
    if pa.types.is_integer(dtype):
        return int(value)
    if pa.types.is_floating(dtype):
        return float(value)
    return bool(value)


def _id_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def normalise_id(value: Any) -> str | None:
    """A row id as text in Unicode NFC, so that ids that look the same (é as one code point or as e + a
    combining accent) are the same id, and two such ids in one source are refused as duplicates."""
    text = _id_text(value)
    return None if text is None else unicodedata.normalize("NFC", text)


def _ref(value: Any, base: str | None) -> Any:
    """A media value with relative paths made absolute against the manifest's folder."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        return value
    value = value.strip()
    if not value:
        return None
    if base is None or "://" in value or os.path.isabs(value):
        return value
    if "://" in base:
        return f"{base}/{value}"
    return os.path.normpath(os.path.join(base, value))


def _table_source(
    name: str,
    schema: pa.Schema,
    batches: Callable[[int], Iterator[Any]],
    columns: ColumnNames,
    base: str | None,
    total: int | None,
    id_prefix: str,
    label_names: list[str] | None = None,
    root: str | None = None,
) -> Source:
    """Rows of a table whose columns play the roles in `columns`; `root` is the folder that symlinks below it
    must stay inside (a local manifest's folder; None for DataFrames and HF datasets, whose paths the caller
    names itself)."""
    available = list(schema.names)
    roles = _resolve_roles(available, columns)
    used = set(roles.values())
    start_col, end_col = window_columns(available) if "video" in roles else (None, None)
    window = {w: c for w, c in (("start", start_col), ("end", end_col)) if c is not None}  # also metadata
    metadata = {_metadata_name(f.name): _metadata_type(f.type) for f in schema if f.name not in used}
    metadata.update({role: STRING_LIST for role in LIST_COLUMNS if role in roles})  # texts, labels columns
    meta_columns = [
        (f.name, _metadata_name(f.name), metadata[_metadata_name(f.name)])
        for f in schema
        if f.name not in used
    ]

    def chunks(size: int) -> Iterator[list[dict[str, Any]]]:
        row = 0
        for batch in batches(size):
            data = batch if isinstance(batch, dict) else _pydict(batch)
            n = len(next(iter(data.values()))) if data else 0
            role_values = {role: data[column] for role, column in roles.items()}
            invalid = data.get(text_manifest.INVALID) if isinstance(data, dict) else None
            out = []
            for k in range(n):
                if invalid is not None and invalid[k] is not None:
                    out.append(_invalid_row(row + k, name, invalid[k]))
                    continue
                image = _ref(role_values["image"][k], base) if "image" in roles else None
                audio = _ref(role_values["audio"][k], base) if "audio" in roles else None
                video = _ref(role_values["video"][k], base) if "video" in roles else None
                label = role_values["label"][k] if "label" in roles else None
                if label_names is not None and isinstance(label, int) and 0 <= label < len(label_names):
                    label = label_names[label]
                text = role_values["text"][k] if "text" in roles else None
                if isinstance(text, float) and math.isnan(text):
                    text = None
                split = role_values["split"][k] if "split" in roles else None
                labels = role_values["labels"][k] if "labels" in roles else None
                if label_names is not None and isinstance(labels, list):  # HF Sequence(ClassLabel)
                    labels = [_class_name(v, label_names) for v in labels]
                out.append(
                    {
                        "row": row + k,
                        "id": normalise_id(role_values["id"][k])
                        if "id" in roles
                        else f"{id_prefix}-{row + k:06d}",
                        "text": text,
                        "image": image,
                        "audio": audio,
                        "label": _id_text(label),
                        # raw cells: validation reads them as lists of strings (mmpt.store.lists)
                        "texts": role_values["texts"][k] if "texts" in roles else None,
                        "labels": labels,
                        "split": None
                        if split is None or (isinstance(split, float) and math.isnan(split))
                        else str(split),
                        "source": _source_text(image, audio if video is None else video, f"{name}#{row + k}"),
                        "meta": {new: _coerce(data[old][k], dtype) for old, new, dtype in meta_columns},
                        "video": None
                        if video is None
                        else {"ref": video, **{w: data[c][k] for w, c in window.items()}},
                    }
                )
            row += n
            yield out

    return Source(name=name, metadata=metadata, total=total, chunks=chunks, root=root)


def _class_name(value: Any, names: list[str]) -> Any:
    return names[value] if isinstance(value, int) and 0 <= value < len(names) else value


def _invalid_row(row: int, name: str, problem: tuple[str, str, str]) -> dict[str, Any]:
    """A row the manifest reader could not parse: validation rejects it with the reader's reason."""
    return {
        "row": row,
        "id": None,
        "text": None,
        "image": None,
        "audio": None,
        "label": None,
        "split": None,
        "source": f"{name}#{row}",
        "meta": {},
        "invalid": problem,
    }


def _source_text(image: Any, audio: Any, fallback: str) -> str:
    for ref in (image, audio):
        if isinstance(ref, str):
            return ref
        if isinstance(ref, dict) and isinstance(ref.get("path"), str) and ref.get("path"):
            return ref["path"]
    return fallback


def _is_dataframe(obj: Any) -> bool:
    return type(obj).__name__ == "DataFrame" and type(obj).__module__.startswith("pandas")


def _is_hf_dataset(obj: Any) -> bool:
    return type(obj).__name__ == "Dataset" and type(obj).__module__.startswith("datasets")


def dataframe_source(df: Any, columns: ColumnNames = ColumnNames()) -> Source:
    """A pandas DataFrame; media columns hold paths (relative to the working folder, read as named: symlinks
    are followed, since the caller wrote them), bytes or PIL images."""
    if len(df.columns) == 0:
        raise DataError("the DataFrame has no columns")
    names = [str(c) for c in df.columns]
    df = df.set_axis(names, axis=1)
    roles = _resolve_roles(names, columns)
    types: list[pa.Field] = []
    for name in names:
        if name in roles.values():
            types.append(pa.field(name, pa.string()))
            continue
        try:
            types.append(
                pa.field(name, pa.Schema.from_pandas(df[[name]], preserve_index=False).field(name).type)
            )
        except (pa.ArrowException, TypeError, ValueError):
            types.append(pa.field(name, pa.string()))

    def batches(size: int) -> Iterator[dict[str, list[Any]]]:
        for start in range(0, len(df), size):
            chunk = df.iloc[start : start + size]
            yield {
                name: chunk[name].astype(object).where(chunk[name].notna(), None).tolist() for name in names
            }

    return _table_source(
        "dataframe", pa.schema(types), batches, columns, os.getcwd(), len(df), id_prefix="row"
    )


def hf_source(dataset: Any, columns: ColumnNames = ColumnNames()) -> Source:
    """A Hugging Face `datasets.Dataset`; Image/Audio features arrive as {bytes, path}, ClassLabel as names."""
    label_names = None
    label_column = columns.label or "label"
    feature = dataset.features.get(label_column)
    if feature is not None and hasattr(feature, "names") and hasattr(feature, "int2str"):
        label_names = list(feature.names)
    inner = getattr(dataset.features.get(columns.labels or "labels"), "feature", None)  # Sequence(ClassLabel)
    if label_names is None and inner is not None and hasattr(inner, "names"):
        label_names = list(inner.names)
    schema = dataset.data.schema

    def batches(size: int) -> Iterator[pa.Table]:
        yield from dataset.with_format("arrow").iter(batch_size=size)

    name = getattr(dataset.info, "dataset_name", None) or "dataset"
    return _table_source(
        name, schema, batches, columns, os.getcwd(), len(dataset), id_prefix="row", label_names=label_names
    )
