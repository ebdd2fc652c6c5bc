"""Search queries for the explorer: a text, an image or a sound, told apart by type and embedded by the run's model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmpt.errors import DataError
from mmpt.store.schema import MODALITIES

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif"}


def query_kind(query: Any, kind: str | None) -> tuple[str, Any]:
    """(kind, value) of a search query: text, image or audio, guessed from its type unless `kind` is given."""
    if kind is not None:
        if kind not in MODALITIES:
            raise DataError(f"query kind must be one of {', '.join(MODALITIES)}, got {kind!r}")
        return kind, query
    media = IMAGE_SUFFIXES | AUDIO_SUFFIXES
    if isinstance(query, Path) or (
        isinstance(query, str) and Path(query).suffix.lower() in media and Path(query).is_file()
    ):
        suffix = Path(query).suffix.lower()
        if suffix in AUDIO_SUFFIXES:
            return "audio", query
        if suffix in IMAGE_SUFFIXES:
            return "image", query
        raise DataError(f"cannot tell whether {query} is an image or a sound; pass kind=")
    if isinstance(query, str):
        return "text", query
    if isinstance(query, bytes | bytearray):
        from mmpt.store.preview import audio_mime

        return ("audio" if audio_mime(bytes(query)) else "image"), bytes(query)
    if hasattr(query, "getpixel"):
        return "image", query
    if hasattr(query, "ndim"):
        if query.ndim == 3:
            from PIL import Image

            return "image", Image.fromarray(np.asarray(query))
        return "audio", query
    raise DataError(f"cannot search with a {type(query).__name__}; give a text, an image or a sound")


def embed_query(
    run_dir: Path, query: Any, kind: str | None, sample_rate: int | None, device: str = "auto"
) -> tuple[str, np.ndarray]:
    """(kind, unit vector [D]) of a query, embedded by the run's `Encoder` (`mmpt.embed.encoder.load_model`)."""
    from mmpt.embed.encoder import load_model

    kind, value = query_kind(query, kind)
    if kind == "text" and not str(value).strip():
        raise DataError("empty query: give a text, an image or a sound")
    encoder = load_model(run_dir, device)
    if kind == "text":
        return kind, encoder.embed_text([str(value)])[0]
    if kind == "image":
        return kind, encoder.embed_images([value])[0]
    return kind, encoder.embed_audio([value], sample_rate=sample_rate)[0]
