"""Training-ready copies made at ingest (`--image-max-side`, `--audio-rate`): small blobs that decode fast.

A corpus of 2000 px photos or 48 kHz stereo clips spends most of its training CPU decoding pixels and samples
the model never sees. At ingest each image whose longer side is over `image_max_side` gets a downscaled RGB
JPEG copy, and each clip not already mono at `audio_rate` a mono FLAC copy at that rate (resampled by the
training reader's own resampler). Copies go to the `image_ready` / `audio_ready` blob columns with their
sha256 beside them; the originals stay in `image` / `audio` (the row contract), unless `drop_originals`,
which stores the copy in their place. A null copy means the original already is training-ready; the reader
(mmpt.data.reader) reads the copy where there is one and the original elsewhere.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from mmpt.errors import DataError
from mmpt.store.schema import BLOB_MODALITIES, READY_COLUMNS, ready_column, sha_column
from mmpt.store.validate import CheckOptions, check_chunk

JPEG_QUALITY = 90
FLAC_SUBTYPE = "PCM_16"  # 16-bit: within 2^-15 of the float waveform the reader would compute


@dataclass(frozen=True)
class ReadyOptions:
    """What training-ready copies to make: images' longest side, audio rate (None: no copy of that modality),
    and whether the copy replaces the original instead of sitting beside it."""

    image_max_side: int | None = None
    audio_rate: int | None = None
    drop_originals: bool = False

    def __post_init__(self) -> None:
        if self.image_max_side is not None and self.image_max_side < 16:
            raise DataError(f"--image-max-side must be at least 16 pixels, got {self.image_max_side}")
        if self.audio_rate is not None and not 1000 <= self.audio_rate <= 384_000:
            raise DataError(f"--audio-rate must lie in 1000..384000 Hz, got {self.audio_rate}")
        if self.drop_originals and not self.active:
            raise DataError(
                "--drop-originals needs --image-max-side or --audio-rate (a copy to keep instead)"
            )

    @property
    def active(self) -> bool:
        return self.image_max_side is not None or self.audio_rate is not None

    def modalities(self) -> tuple[str, ...]:
        """The blob modalities that get copies."""
        wanted = {"image": self.image_max_side, "audio": self.audio_rate}
        return tuple(m for m in BLOB_MODALITIES if wanted[m] is not None)


def with_ready_columns(schema: pa.Schema) -> pa.Schema:
    """`schema` plus the ready blob columns and their sha256 columns (after the core columns)."""
    from lance.blob import blob_field

    fields = list(schema)
    at = schema.get_field_index(sha_column("audio")) + 1
    extra = [blob_field(c, nullable=True) for c in READY_COLUMNS]
    extra += [pa.field(sha_column(c), pa.string()) for c in READY_COLUMNS]
    return pa.schema(fields[:at] + extra + fields[at:])


def check_schema(schema: pa.Schema, ready: ReadyOptions, uri: str) -> None:
    """DataError when copies are to be kept beside originals in a dataset created without their columns."""
    if ready.active and not ready.drop_originals and not set(READY_COLUMNS) <= set(schema.names):
        raise DataError(
            f"{uri} was ingested without training-ready copies, so rows cannot be appended with them; "
            f"append without --image-max-side/--audio-rate, or with --drop-originals"
        )


def check_ready_chunk(task: tuple[list[dict[str, Any]], CheckOptions, ReadyOptions]) -> list[dict[str, Any]]:
    """`check_chunk`, then the training-ready copies of each good row (in the same worker process)."""
    rows, options, ready = task
    checked = check_chunk((rows, options))
    return [
        r if "rejected" in r else add_ready(r, ready, src["row"])
        for src, r in zip(rows, checked, strict=True)
    ]


def add_ready(row: dict[str, Any], ready: ReadyOptions, row_number: int | None = None) -> dict[str, Any]:
    """The validated row with its copies: in `<m>_ready` (+ sha256), or in place of `<m>` with drop_originals.
    A copy that cannot be made rejects the row (kind `ready_failed`)."""
    for modality in ready.modalities():
        data = row.get(modality)
        if data is None:
            continue
        try:
            copy = (
                ready_image(data, ready.image_max_side)
                if modality == "image"
                else ready_audio(data, ready.audio_rate)
            )
        except Exception as exc:  # noqa: BLE001 - the row is reported, never lost silently
            return {
                "row": row_number,
                "id": row["id"],
                "source": row.get("source"),
                "rejected": "ready_failed",
                "reason": f"training-ready {modality} copy failed: {type(exc).__name__}: {exc}",
                "modality": modality,
                "file": row.get("source"),
            }
        if copy is None:
            continue
        digest = hashlib.sha256(copy).hexdigest()
        if ready.drop_originals:
            row[modality], row[sha_column(modality)] = copy, digest
        else:
            row[ready_column(modality)], row[sha_column(ready_column(modality))] = copy, digest
    return row


def ready_image(data: bytes, max_side: int | None) -> bytes | None:
    """An RGB JPEG whose longer side is `max_side` (Lanczos), or None when the image is no larger already."""
    from PIL import Image

    if max_side is None:
        return None
    with Image.open(io.BytesIO(data)) as img:
        w, h = img.size
        if max(w, h) <= max_side:
            return None
        scale = max_side / max(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if img.format == "JPEG":
            img.draft("RGB", (size[0] * 2, size[1] * 2))  # DCT-scaled decode, still 2x the target size
        small = img.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def ready_audio(data: bytes, rate: int | None) -> bytes | None:
    """A mono 16-bit FLAC at `rate`, decoded and resampled as the training reader does, or None when the
    clip already is mono at that rate."""
    import soundfile as sf

    if rate is None:
        return None
    info = sf.info(io.BytesIO(data))
    if info.channels == 1 and info.samplerate == rate:
        return None
    import numpy as np

    from mmpt.store.audio_decode import decode_audio

    wave = np.clip(decode_audio(data, rate).numpy(), -1.0, 32767 / 32768)  # resampling may overshoot 1
    buf = io.BytesIO()
    sf.write(buf, wave, rate, format="FLAC", subtype=FLAC_SUBTYPE)
    return buf.getvalue()
