"""Size checks read from media headers before anything is decoded: image pixels (decompression bombs) and audio
duration / sample count (a few bytes of FLAC can claim hours of samples).

PIL only *warns* between its MAX_IMAGE_PIXELS and twice that (a 10000x10000 PNG of 650 KB decodes to 300 MB),
so the pixel limit here is ours and sits below PIL's.
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING

from mmpt.store.limits import ReadLimits, Refused

if TYPE_CHECKING:
    from PIL import Image


def open_image_checked(data: bytes, limits: ReadLimits) -> Image.Image:
    """Open encoded image bytes lazily (header only) and refuse them when width x height is over the limit.

    The caller decodes (`load()`, `convert()`) and closes the image.
    """
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            raise Refused(
                "too_many_pixels",
                f"image has more than {2 * (Image.MAX_IMAGE_PIXELS or 0):,} pixels, PIL's decompression-bomb "
                f"limit (mmpt's is {limits.max_pixels:,})",
            ) from None
    try:
        check_pixels(img.width, img.height, limits)
    except Refused:
        img.close()
        raise
    return img


def check_pixels(width: int, height: int, limits: ReadLimits) -> None:
    """Refuse an image whose header claims more than `limits.max_pixels` pixels."""
    if width * height > limits.max_pixels:
        raise Refused(
            "too_many_pixels",
            f"image is {width}x{height} = {width * height:,} pixels, over the {limits.max_pixels:,} limit "
            "(a possible decompression bomb)",
            "--max-pixels",
        )


def check_audio_header(frames: int, sample_rate: int, channels: int, limits: ReadLimits) -> None:
    """Refuse audio whose header claims a duration or a sample count (frames x channels) over the limits."""
    if sample_rate > 0 and frames / sample_rate > limits.max_audio_seconds:
        raise Refused(
            "audio_too_long",
            f"audio lasts {frames / sample_rate:,.1f} s, over the {limits.max_audio_seconds:g} s limit",
            "--max-audio-seconds",
        )
    if frames * channels > limits.max_audio_samples:
        raise Refused(
            "audio_too_long",
            f"audio holds {frames:,} frames x {channels} channels = {frames * channels:,} samples, over the "
            f"{limits.max_audio_samples:,} limit",
            "--max-audio-samples",
        )


def check_audio_bytes(data: bytes, limits: ReadLimits) -> None:
    """Read an encoded clip's header with libsndfile and apply `check_audio_header`; undecodable bytes pass
    (the decoder that follows says what is wrong with them)."""
    import soundfile as sf

    try:
        info = sf.info(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - not audio libsndfile knows: the decoder reports it
        return
    check_audio_header(int(info.frames), int(info.samplerate), int(info.channels), limits)
