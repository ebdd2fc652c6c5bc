"""Read what `mmpt ingest` is given — a manifest (CSV/TSV, JSONL, Parquet), a folder tree, a pandas DataFrame or a
Hugging Face dataset — as input rows streamed in chunks: refs to media, text, label, split, metadata."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pyarrow as pa

from mmpt.errors import DataError
from mmpt.store.schema import CORE_COLUMNS
from mmpt.store.splits import normalise_split

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
AUDIO_EXTS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif")
TEXT_EXTS = (".txt",)
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


@dataclass
class Source:
    """An input stream: its name (for messages and ids), metadata column types, row count if known, chunks."""

    name: str
    metadata: dict[str, pa.DataType]
    total: int | None
    chunks: Callable[[int], Iterator[list[dict[str, Any]]]]


def open_source(
    source: Any, columns: ColumnNames = ColumnNames(), storage_options: dict[str, str] | None = None
) -> Source:
    """Dispatch on what `source` is: DataFrame, HF Dataset, folder, or manifest file/URI."""
    if _is_dataframe(source):
        return dataframe_source(source, columns)
    if _is_hf_dataset(source):
        return hf_source(source, columns)
    if not isinstance(source, str | os.PathLike):
        raise DataError(
            f"cannot ingest a {type(source).__name__}; give a path, a DataFrame or a datasets.Dataset"
        )
    text = os.fspath(source)
    if "://" not in text or text.startswith("file://"):
        path = Path(text[len("file://") :] if text.startswith("file://") else text).expanduser()
        if not path.exists():
            raise DataError(f"source not found: {text}")
        if path.is_dir():
            if (path / "_versions").is_dir():
                raise DataError(f"{text} is a Lance dataset; ingest reads manifests, folders and tables")
            return folder_source(path)
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
    base = str(Path(uri).resolve().parent) if local else uri.rsplit("/", 1)[0]

    def open_file() -> pa.NativeFile:
        if local:
            return pa.OSFile(uri, "rb")
        from pyarrow import fs

        try:
            filesystem, path = fs.FileSystem.from_uri(uri)
            return filesystem.open_input_file(path)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot open manifest {uri}: {str(exc).splitlines()[0]}") from None

    def batches(size: int) -> Iterator[pa.RecordBatch]:
        try:
            yield from _read_batches(kind, open_file, size)
        except pa.ArrowException as exc:
            raise DataError(f"cannot read manifest {uri}: {str(exc).strip().splitlines()[0]}") from None

    try:
        schema, total = _peek(kind, open_file)
    except pa.ArrowException as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "empty" in message.lower():
            raise DataError(f"manifest is empty: {uri}") from None
        raise DataError(f"cannot read manifest {uri}: {message}") from None
    return _table_source(Path(uri).name, schema, batches, columns, base, total, id_prefix=Path(uri).stem)


def _peek(kind: str, open_file: Callable[[], pa.NativeFile]) -> tuple[pa.Schema, int | None]:
    if kind == "parquet":
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(open_file()).metadata
        return meta.schema.to_arrow_schema(), meta.num_rows
    reader = _text_reader(kind, open_file(), 1 << 20)
    return reader.schema, None


def _text_reader(
    kind: str, handle: pa.NativeFile, block_size: int, column_types: dict[str, pa.DataType] | None = None
) -> pa.RecordBatchReader:
    if kind in ("csv", "tsv"):
        from pyarrow import csv

        return csv.open_csv(
            handle,
            read_options=csv.ReadOptions(block_size=block_size),
            parse_options=csv.ParseOptions(delimiter="\t" if kind == "tsv" else ",", newlines_in_values=True),
            convert_options=csv.ConvertOptions(column_types=column_types or {}, strings_can_be_null=True),
        )
    from pyarrow import json as pj

    return pj.open_json(handle, read_options=pj.ReadOptions(block_size=block_size))


def _read_batches(kind: str, open_file: Callable[[], pa.NativeFile], size: int) -> Iterator[pa.RecordBatch]:
    if kind == "parquet":
        import pyarrow.parquet as pq

        yield from pq.ParquetFile(open_file()).iter_batches(batch_size=size)
        return
    # Role columns are read as text so ids like 007 keep their zeros; blocks are large to infer types well.
    schema = _text_reader(kind, open_file(), 1 << 20).schema
    types = {f.name: pa.string() for f in schema if not _is_numeric(f.type)} if kind != "jsonl" else None
    reader = _text_reader(kind, open_file(), 16 << 20, types)
    for batch in reader:
        for start in range(0, batch.num_rows, size):
            yield batch.slice(start, size)


def _is_numeric(dtype: pa.DataType) -> bool:
    return pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_boolean(dtype)


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
    if not any(role in roles for role in ("image", "audio", "text")):
        raise DataError(
            "no image, audio or text column found (looked for image, audio, text, caption); "
            f"available columns: {', '.join(available) or '(none)'}; name them with --image-col/--audio-col/--text-col"
        )
    return roles


def _metadata_name(name: str) -> str:
    # A free column may not shadow a core or derived column.
    return f"meta_{name}" if name in CORE_COLUMNS or name.startswith(("emb_", "proj_", "meta_")) else name


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
) -> Source:
    available = list(schema.names)
    roles = _resolve_roles(available, columns)
    used = set(roles.values())
    metadata = {_metadata_name(f.name): _metadata_type(f.type) for f in schema if f.name not in used}
    meta_columns = [
        (f.name, _metadata_name(f.name), metadata[_metadata_name(f.name)])
        for f in schema
        if f.name not in used
    ]

    def chunks(size: int) -> Iterator[list[dict[str, Any]]]:
        row = 0
        for batch in batches(size):
            data = batch if isinstance(batch, dict) else batch.to_pydict()
            n = len(next(iter(data.values()))) if data else 0
            role_values = {role: data[column] for role, column in roles.items()}
            out = []
            for k in range(n):
                image = _ref(role_values["image"][k], base) if "image" in roles else None
                audio = _ref(role_values["audio"][k], base) if "audio" in roles else None
                label = role_values["label"][k] if "label" in roles else None
                if label_names is not None and isinstance(label, int) and 0 <= label < len(label_names):
                    label = label_names[label]
                text = role_values["text"][k] if "text" in roles else None
                if isinstance(text, float) and math.isnan(text):
                    text = None
                split = role_values["split"][k] if "split" in roles else None
                out.append(
                    {
                        "row": row + k,
                        "id": _id_text(role_values["id"][k])
                        if "id" in roles
                        else f"{id_prefix}-{row + k:06d}",
                        "text": text,
                        "image": image,
                        "audio": audio,
                        "label": _id_text(label),
                        "split": None
                        if split is None or (isinstance(split, float) and math.isnan(split))
                        else str(split),
                        "source": _source_text(image, audio, f"{name}#{row + k}"),
                        "meta": {new: _coerce(data[old][k], dtype) for old, new, dtype in meta_columns},
                    }
                )
            row += n
            yield out

    return Source(name=name, metadata=metadata, total=total, chunks=chunks)


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
    """A pandas DataFrame; media columns hold paths (relative to the working folder), bytes or PIL images."""
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
    schema = dataset.data.schema

    def batches(size: int) -> Iterator[pa.Table]:
        yield from dataset.with_format("arrow").iter(batch_size=size)

    name = getattr(dataset.info, "dataset_name", None) or "dataset"
    return _table_source(
        name, schema, batches, columns, os.getcwd(), len(dataset), id_prefix="row", label_names=label_names
    )


# --- folder trees ------------------------------------------------------------------------------------


def folder_source(root: Path) -> Source:
    """A folder tree: files sharing a stem in one folder form a row (image, audio, .txt caption); the label is
    the first sub-folder's name, or the second one's when the first level is train/val/test."""
    root = root.resolve()
    top = [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    split_layout = bool(top) and all(normalise_split(name) is not None for name in top)

    def groups() -> Iterator[tuple[str, dict[str, Any]]]:
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            by_stem: dict[str, list[str]] = {}
            for name in sorted(files):
                if name.startswith("."):
                    continue
                by_stem.setdefault(os.path.splitext(name)[0], []).append(name)
            rel = Path(folder).relative_to(root)
            for stem, names in by_stem.items():
                yield str((rel / stem).as_posix()), _group(Path(folder), rel, names, split_layout)

    def chunks(size: int) -> Iterator[list[dict[str, Any]]]:
        out: list[dict[str, Any]] = []
        for row, (row_id, group) in enumerate(groups()):
            out.append({"row": row, "id": row_id, **group})
            if len(out) >= size:
                yield out
                out = []
        if out:
            yield out

    return Source(name=root.name, metadata={}, total=None, chunks=chunks)


def _group(folder: Path, rel: Path, names: list[str], split_layout: bool) -> dict[str, Any]:
    image = audio = text_path = None
    for name in names:
        ext = os.path.splitext(name)[1].lower()
        path = str(folder / name)
        if ext in IMAGE_EXTS and image is None:
            image = path
        elif ext in AUDIO_EXTS and audio is None:
            audio = path
        elif ext in TEXT_EXTS and text_path is None:
            text_path = path
    parts = rel.parts
    split = parts[0] if split_layout and parts else None
    label_parts = parts[1:] if split_layout else parts
    return {
        "text": None,
        "text_path": text_path,
        "image": image,
        "audio": audio,
        "label": label_parts[0] if label_parts else None,
        "split": split,
        "source": image or audio or text_path or str(folder / names[0]),
        "meta": {},
    }
