"""Per-row checks run in worker processes: load each blob once, decode it, hash it, and say why a row is bad.

Imports stay light (no Lance, no torch) so spawned workers start quickly.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmpt.store.limits import ReadLimits, Refused, size_text
from mmpt.store.lists import BadList, string_list
from mmpt.store.media_headers import check_audio_header, check_pixels, open_image_checked
from mmpt.store.safe_read import read_ref as safe_read_ref
from mmpt.store.splits import DEFAULT_RATIOS, normalise_split, split_for_id


class Rejection(Refused):
    """Why one input row cannot be written: a short kind (for totals), a one-line reason, and what failed.

    `modality` and `file` name the value that failed (its path or URI, or the column it came from), so the
    report sends the user to the right file rather than to the row's first path.
    """

    def __init__(self, kind: str, reason: str, modality: str | None = None, file: str | None = None):
        super().__init__(kind, reason)
        self.modality, self.file = modality, file


@dataclass(frozen=True)
class CheckOptions:
    """What a worker needs besides the rows: split ratios for rows without a split, the read limits, and the
    source root that symlinks must stay inside (the manifest's folder or the folder tree; None: no check)."""

    split_ratios: tuple[float, float, float] = DEFAULT_RATIOS
    limits: ReadLimits = field(default_factory=ReadLimits)
    root: str | None = None


def check_chunk(task: tuple[list[dict[str, Any]], CheckOptions]) -> list[dict[str, Any]]:
    """Check a chunk of input rows; each comes back as a dataset row or as {"rejected": kind, "reason": ...}."""
    rows, options = task
    return [check_row(row, options) for row in rows]


def check_row(row: dict[str, Any], options: CheckOptions = CheckOptions()) -> dict[str, Any]:
    """Turn one input row (refs to files, bytes or text) into a validated dataset row, or a rejection."""
    try:
        return _check(row, options)
    except Refused as rejection:
        return {
            "row": row["row"],
            "id": _printable(row.get("id")),
            "source": _printable(row.get("source")),
            "rejected": rejection.kind,
            "reason": _printable(rejection.with_flag()),
            "modality": getattr(rejection, "modality", None),
            "file": _printable(getattr(rejection, "file", None)),
        }
    except Exception as exc:  # noqa: BLE001 - nothing is lost silently: every failure becomes a reported row
        return {
            "row": row["row"],
            "id": _printable(row.get("id")),
            "source": _printable(row.get("source")),
            "rejected": "error",
            "reason": f"{type(exc).__name__}: {_clean(str(exc))}",
            "modality": None,
            "file": None,
        }


def _check(row: dict[str, Any], options: CheckOptions) -> dict[str, Any]:
    invalid = row.get("invalid")
    if invalid is not None:  # the reader could not parse this row (bad JSON, wrong field count, cut shard)
        kind, reason, where, *what = invalid  # (kind, reason, where[, modality]): a manifest's by default
        raise Rejection(kind, reason, what[0] if what else "manifest", where)
    if row.get("video") is not None:  # a video gives the row its frame and audio track (mmpt.store.video)
        from mmpt.store.video import decode_video_row

        row = decode_video_row(row, options)
    limits = options.limits
    row_id = row.get("id")
    if row_id is None or str(row_id).strip() == "":
        raise Rejection("missing_id", "row has no id")
    row_id = str(row_id)
    _check_field(row_id, "id", "id column", limits)
    for role in ("label", "split"):
        _check_field(row.get(role), role, f"{role} column", limits)
    for name, value in (row.get("meta") or {}).items():
        _check_field(value, "metadata", f"{name} column", limits)
    _check_field(row.get("source"), "source", "source path", limits, cap=False)

    image = _blob(row.get("image"), "image", _check_image, options)
    audio = _blob(row.get("audio"), "audio", _check_audio, options)
    try:
        text = _text(row.get("text"), row.get("text_path"), options)
    except Refused as refused:
        where = row.get("text_path") or "text column"
        raise Rejection(refused.kind, refused.with_flag(), "text", where) from None
    texts = _list(row.get("texts"), "texts", limits)
    labels = _list(row.get("labels"), "labels", limits)
    if text is None and texts:  # `text` is the first caption when only the list is given
        text = texts[0]
    if image is None and audio is None and text is None:
        raise Rejection("no_modality", "row has no image, audio or text")

    split_value = row.get("split")
    if split_value is None or str(split_value).strip() == "":
        split = split_for_id(row_id, options.split_ratios)
    else:
        normalised = normalise_split(str(split_value))
        if normalised is None:
            raise Rejection("bad_split", f"unknown split {split_value!r} (expected train, val or test)")
        split = normalised
    label = row.get("label")
    if (label is None or str(label) == "") and labels:  # `label` is the first (primary) label
        label = labels[0]
    out = {
        "id": row_id,
        "text": text,
        "image": image,
        "audio": audio,
        "image_sha256": hashlib.sha256(image).hexdigest() if image is not None else None,
        "audio_sha256": hashlib.sha256(audio).hexdigest() if audio is not None else None,
        "label": None if label is None or str(label) == "" else str(label),
        "split": split,
        "source": row.get("source"),
        "texts": texts,
        "labels": labels,
    }
    out.update(row.get("meta") or {})
    if row.get("notes"):  # kept with a remark for the report (a video without an audio track)
        out["notes"] = row["notes"]
    return out


def _list(value: Any, role: str, limits: ReadLimits) -> list[str] | None:
    """A `texts` / `labels` cell as a list of strings (mmpt.store.lists), each valid UTF-8 within the text
    limit; a cell that is no list of strings rejects the row."""
    try:
        items = string_list(value)
    except BadList as exc:
        raise Rejection(f"bad_{role}", f"{role} column {exc}", role, f"{role} column") from None
    for item in items or ():
        _check_field(item, role, f"{role} column", limits)
    return items


def _check_field(value: Any, modality: str, where: str, limits: ReadLimits, *, cap: bool = True) -> None:
    """A text value must be valid UTF-8 (no lone surrogates: undecodable bytes arrive as those) and, with
    `cap`, at most `limits.max_text_bytes` long."""
    if not isinstance(value, str):
        return
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise Rejection(
            "bad_text", f"{where} is not valid UTF-8 ({_bad_char(value, exc.start)})", modality, where
        ) from None
    if cap and size > limits.max_text_bytes:
        raise Rejection(
            "too_long",
            f"{where} holds {size_text(size)}, over the {size_text(limits.max_text_bytes)} limit "
            "(raise it with --max-text-kb)",
            modality,
            where,
        )


def _bad_char(value: str, index: int) -> str:
    code = ord(value[index])
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte kept by the manifest reader (surrogateescape)
        return f"byte 0x{code - 0xDC00:02X} at character {index}"
    return f"lone surrogate U+{code:04X} at character {index}"


def _printable(value: Any) -> Any:
    """A value the JSON report can hold: undecodable bytes shown as \\xNN."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8") if _has_surrogates(value) else value
    return value


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# --- loading -----------------------------------------------------------------------------------------


def _blob(ref: Any, modality: str, check: Any, options: CheckOptions) -> bytes | None:
    """Load and decode one modality's value; a failure is tagged with the modality and the file that failed."""
    try:
        data = _load(ref, modality, options)
        if data is not None:
            check(data, options.limits)
        return data
    except Refused as refused:
        raise Rejection(refused.kind, refused.with_flag(), modality, describe_ref(ref, modality)) from None


def describe_ref(ref: Any, modality: str) -> str:
    """Where a value came from, for a report: its path or URI, else the column that held the bytes."""
    if isinstance(ref, dict) and isinstance(ref.get("path"), str) and ref.get("path"):
        return ref["path"]
    if isinstance(ref, str | Path):
        return str(ref)
    return f"{modality} column (in-memory {type(ref).__name__})"


def _load(ref: Any, modality: str, options: CheckOptions) -> bytes | None:
    """The bytes a manifest value points to: bytes as is, a local path, a file:// / http(s) / object-store URI,
    each under the read limits."""
    if ref is None:
        return None
    limits = options.limits
    if isinstance(ref, dict):  # Hugging Face Image/Audio struct: {"bytes": ..., "path": ...}
        ref = ref.get("bytes") if ref.get("bytes") is not None else ref.get("path")
        if ref is None:
            return None
    if isinstance(ref, bytes | bytearray | memoryview):
        data = bytes(ref)
        if len(data) > limits.max_blob_bytes:
            raise Refused(
                "too_large",
                f"{modality} value is {size_text(len(data))}, over the {size_text(limits.max_blob_bytes)} limit",
                "--max-blob-mb",
            )
    elif isinstance(ref, str | Path):
        data = read_ref(str(ref), modality, options)
    elif hasattr(ref, "save") and modality == "image":  # a PIL image in a DataFrame
        check_pixels(ref.width, ref.height, limits)
        buf = io.BytesIO()
        ref.save(buf, format="PNG")
        data = buf.getvalue()
    else:
        raise Rejection(
            f"bad_{modality}", f"{modality} value of type {type(ref).__name__} is neither bytes nor a path"
        )
    if not data:
        raise Rejection(f"corrupt_{modality}", f"{modality} is empty (0 bytes)")
    return data


def read_ref(
    ref: str, modality: str = "file", options: CheckOptions | None = None, *, text: bool = False
) -> bytes:
    """Read a path or URI under the read limits (`text`: the text-value limit); a missing, unreadable, special
    or oversized file, or a symlink out of the source root, is a Rejection naming it."""
    options = options or CheckOptions()
    limits = options.limits
    return safe_read_ref(
        ref,
        limits.max_text_bytes if text else limits.max_blob_bytes,
        what=modality,
        root=options.root,
        follow_symlinks=limits.follow_symlinks,
        limit_flag="--max-text-kb" if text else "--max-blob-mb",
    )


# --- decoding ----------------------------------------------------------------------------------------


def _check_image(data: bytes, limits: ReadLimits) -> None:
    try:
        with open_image_checked(data, limits) as img:
            img.load()
            if img.width < 1 or img.height < 1:
                raise Rejection("corrupt_image", "image has no pixels")
    except Refused:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the bytes are not a usable image
        raise Rejection(
            "corrupt_image", f"image does not decode: {_clean(str(exc)) or type(exc).__name__}"
        ) from None


def _check_audio(data: bytes, limits: ReadLimits) -> None:
    if _decode_pcm_wav(data, limits):
        return
    import soundfile as sf

    frames = 0
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            declared = f.frames
            check_audio_header(max(declared, 0), f.samplerate, f.channels, limits)
            # decoded in blocks: a whole clip is never held at once, only counted
            for block in f.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
                frames += block.shape[0]
    except Refused:
        raise
    except Exception as exc:  # noqa: BLE001 - libsndfile raises several types for bad input
        raise Rejection(
            "corrupt_audio", f"audio does not decode: {_clean(str(exc)) or type(exc).__name__}"
        ) from None
    if frames < 1:
        raise Rejection("corrupt_audio", "audio decodes to no samples")
    if 0 < declared and frames < declared:
        raise Rejection("corrupt_audio", f"audio is truncated: {frames} of {declared} frames decode")


_PCM_DTYPES = {8: "u1", 16: "<i2", 32: "<i4"}


def _decode_pcm_wav(data: bytes, limits: ReadLimits) -> bool:
    """Decode a plain little-endian PCM WAV with numpy (libsndfile through Python I/O callbacks costs ~10x more).

    True when the bytes are such a WAV and hold at least one whole frame; a truncated or empty one is a
    Rejection; False means "not this simple format" and libsndfile decides.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return False
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = pos + 8
        if chunk == b"fmt " and size >= 16 and body + 16 <= len(data):
            fmt = struct.unpack("<HHIIHH", data[body : body + 16])
        elif chunk == b"data":
            if fmt is None:
                return False
            tag, channels, rate, _, block_align, bits = fmt
            if (
                tag != 1
                or bits not in _PCM_DTYPES
                or channels < 1
                or rate < 1
                or block_align != channels * bits // 8
            ):
                return False
            if size in (0, 0xFFFFFFFF):  # a streamed WAV without its final size: libsndfile copes
                return False
            available = len(data) - body
            if available < size:
                raise Rejection(
                    "corrupt_audio", f"audio is truncated: WAV data holds {available} of {size} bytes"
                )
            frames = size // block_align
            if frames < 1:
                raise Rejection("corrupt_audio", "audio decodes to no samples")
            check_audio_header(frames, rate, channels, limits)
            np.frombuffer(data, dtype=_PCM_DTYPES[bits], count=frames * channels, offset=body)
            return True
        pos = body + size + (size & 1)
    return False


def _text(value: Any, path: str | None, options: CheckOptions) -> str | None:
    """The caption: a column's string kept exactly as given (only empty or all-blank is null), or a .txt
    file's UTF-8 content with its BOM and surrounding whitespace (the final newline) removed."""
    if path is not None:
        value = read_ref(path, "text", options, text=True)
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        try:
            value = bytes(value).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise Rejection("bad_text", f"text is not valid UTF-8 (byte {exc.start})") from None
        if path is not None:
            value = value.strip()
    if not isinstance(value, str):
        value = str(value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Rejection("bad_text", f"text is not valid UTF-8 ({_bad_char(value, exc.start)})") from None
    _check_field(value, "text", "text column" if path is None else "text file", options.limits)
    return value if value.strip() else None


_OBJECT_REPR = re.compile(r"<[^<>]* object at 0x[0-9a-f]+>")


def _clean(message: str) -> str:
    """One line, without object addresses (libsndfile and PIL name the BytesIO they read)."""
    message = _OBJECT_REPR.sub("the data", message.strip().splitlines()[0] if message.strip() else "")
    return message.replace("Error opening the data: ", "").replace(
        "cannot identify image file the data", "not a recognised image format"
    )
