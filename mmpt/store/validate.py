"""Per-row checks run in worker processes: load each blob once, decode it, hash it, and say why a row is bad.

Imports stay light (no Lance, no torch) so spawned workers start quickly.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmpt.store.splits import DEFAULT_RATIOS, normalise_split, split_for_id


class Rejection(Exception):
    """Why one input row cannot be written: a short kind (for totals), a one-line reason, and what failed.

    `modality` and `file` name the value that failed (its path or URI, or the column it came from), so the
    report sends the user to the right file rather than to the row's first path.
    """

    def __init__(self, kind: str, reason: str, modality: str | None = None, file: str | None = None):
        super().__init__(kind, reason)
        self.kind, self.reason, self.modality, self.file = kind, reason, modality, file


@dataclass(frozen=True)
class CheckOptions:
    """What a worker needs besides the rows: split ratios for rows without a split."""

    split_ratios: tuple[float, float, float] = DEFAULT_RATIOS


def check_chunk(task: tuple[list[dict[str, Any]], CheckOptions]) -> list[dict[str, Any]]:
    """Check a chunk of input rows; each comes back as a dataset row or as {"rejected": kind, "reason": ...}."""
    rows, options = task
    return [check_row(row, options) for row in rows]


def check_row(row: dict[str, Any], options: CheckOptions = CheckOptions()) -> dict[str, Any]:
    """Turn one input row (refs to files, bytes or text) into a validated dataset row, or a rejection."""
    try:
        return _check(row, options)
    except Rejection as rejection:
        return {
            "row": row["row"],
            "id": row.get("id"),
            "source": row.get("source"),
            "rejected": rejection.kind,
            "reason": rejection.reason,
            "modality": rejection.modality,
            "file": rejection.file,
        }
    except Exception as exc:  # noqa: BLE001 - nothing is lost silently: every failure becomes a reported row
        return {
            "row": row["row"],
            "id": row.get("id"),
            "source": row.get("source"),
            "rejected": "error",
            "reason": f"{type(exc).__name__}: {_clean(str(exc))}",
            "modality": None,
            "file": None,
        }


def _check(row: dict[str, Any], options: CheckOptions) -> dict[str, Any]:
    row_id = row.get("id")
    if row_id is None or str(row_id).strip() == "":
        raise Rejection("missing_id", "row has no id")
    row_id = str(row_id)

    image = _blob(row.get("image"), "image", _check_image)
    audio = _blob(row.get("audio"), "audio", _check_audio)
    try:
        text = _text(row.get("text"), row.get("text_path"))
    except Rejection as rejection:
        rejection.modality = "text"
        rejection.file = row.get("text_path") or "text column"
        raise
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
    }
    out.update(row.get("meta") or {})
    return out


# --- loading -----------------------------------------------------------------------------------------

_FILESYSTEMS: dict[str, Any] = {}


def _blob(ref: Any, modality: str, check: Any) -> bytes | None:
    """Load and decode one modality's value; a failure is tagged with the modality and the file that failed."""
    try:
        data = _load(ref, modality)
        if data is not None:
            check(data)
        return data
    except Rejection as rejection:
        rejection.modality = modality
        rejection.file = describe_ref(ref, modality)
        raise


def describe_ref(ref: Any, modality: str) -> str:
    """Where a value came from, for a report: its path or URI, else the column that held the bytes."""
    if isinstance(ref, dict) and isinstance(ref.get("path"), str) and ref.get("path"):
        return ref["path"]
    if isinstance(ref, str | Path):
        return str(ref)
    return f"{modality} column (in-memory {type(ref).__name__})"


def _load(ref: Any, modality: str) -> bytes | None:
    """The bytes a manifest value points to: bytes as is, a local path, a file:// / http(s) / object-store URI."""
    if ref is None:
        return None
    if isinstance(ref, dict):  # Hugging Face Image/Audio struct: {"bytes": ..., "path": ...}
        ref = ref.get("bytes") if ref.get("bytes") is not None else ref.get("path")
        if ref is None:
            return None
    if isinstance(ref, bytes | bytearray | memoryview):
        data = bytes(ref)
    elif isinstance(ref, str | Path):
        data = read_ref(str(ref), modality)
    elif hasattr(ref, "save") and modality == "image":  # a PIL image in a DataFrame
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


def read_ref(ref: str, modality: str = "file") -> bytes:
    """Read a path or URI fully; a missing or unreadable one is a Rejection naming it."""
    try:
        if "://" not in ref:
            return Path(ref).read_bytes()
        scheme = ref.split("://", 1)[0].lower()
        if scheme == "file":
            return Path(urllib.request.url2pathname(ref[len("file://") :])).read_bytes()
        if scheme in ("http", "https"):
            with urllib.request.urlopen(ref, timeout=60) as response:  # noqa: S310 - user-given media URL
                return response.read()
        from pyarrow import fs

        filesystem, path = fs.FileSystem.from_uri(ref)
        with filesystem.open_input_stream(path) as stream:
            return stream.read()
    except FileNotFoundError:
        raise Rejection("missing_file", f"{modality} file not found: {ref}") from None
    except IsADirectoryError:
        raise Rejection("unreadable_file", f"{modality} path is a folder: {ref}") from None
    except (OSError, ValueError) as exc:
        message = _clean(str(exc))
        kind = (
            "missing_file"
            if "not found" in message.lower() or "no such file" in message.lower()
            else "unreadable_file"
        )
        raise Rejection(kind, f"cannot read {modality} {ref}: {message}") from None


# --- decoding ----------------------------------------------------------------------------------------


def _check_image(data: bytes) -> None:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                if img.width < 1 or img.height < 1:
                    raise Rejection("corrupt_image", "image has no pixels")
    except Rejection:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the bytes are not a usable image
        raise Rejection(
            "corrupt_image", f"image does not decode: {_clean(str(exc)) or type(exc).__name__}"
        ) from None


def _check_audio(data: bytes) -> None:
    if _decode_pcm_wav(data):
        return
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            declared = f.frames
            wave = f.read(dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - libsndfile raises several types for bad input
        raise Rejection(
            "corrupt_audio", f"audio does not decode: {_clean(str(exc)) or type(exc).__name__}"
        ) from None
    if wave.shape[0] < 1:
        raise Rejection("corrupt_audio", "audio decodes to no samples")
    if 0 < declared and wave.shape[0] < declared:
        raise Rejection("corrupt_audio", f"audio is truncated: {wave.shape[0]} of {declared} frames decode")


_PCM_DTYPES = {8: "u1", 16: "<i2", 32: "<i4"}


def _decode_pcm_wav(data: bytes) -> bool:
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
            np.frombuffer(data, dtype=_PCM_DTYPES[bits], count=frames * channels, offset=body)
            return True
        pos = body + size + (size & 1)
    return False


def _text(value: Any, path: str | None) -> str | None:
    if path is not None:
        value = read_ref(path, "text")
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        try:
            value = bytes(value).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise Rejection("bad_text", f"text is not valid UTF-8 (byte {exc.start})") from None
    if not isinstance(value, str):
        value = str(value)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Rejection("bad_text", f"text is not valid UTF-8 (character {exc.start})") from None
    value = value.strip()
    return value or None


_OBJECT_REPR = re.compile(r"<[^<>]* object at 0x[0-9a-f]+>")


def _clean(message: str) -> str:
    """One line, without object addresses (libsndfile and PIL name the BytesIO they read)."""
    message = _OBJECT_REPR.sub("the data", message.strip().splitlines()[0] if message.strip() else "")
    return message.replace("Error opening the data: ", "").replace(
        "cannot identify image file the data", "not a recognised image format"
    )
