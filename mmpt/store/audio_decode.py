"""Encoded audio bytes -> mono float32 waveform at a given rate: the one decoder of the training reader
(mmpt.data.audio) and of the training-ready copies written at ingest (mmpt.store.ready), so both agree.

Plain PCM WAV is read with numpy (libsndfile's float conversion costs ~15x more); everything else goes
through soundfile. Both give the very floats `sf.read(..., dtype="float32")` gives, and the mono mix is
numpy's `mean(axis=1)` without its slow strided reduction, so the output is bit-identical to decoding with
soundfile and averaging the channels.
"""

from __future__ import annotations

import io
import struct
from functools import lru_cache

import numpy as np
import soundfile as sf
import torch
import torchaudio

_WAVE_PCM, _WAVE_EXTENSIBLE = 1, 0xFFFE


def decode_audio(data: bytes, sample_rate: int) -> torch.Tensor:
    """Decode encoded audio (WAV, FLAC, OGG...) to a mono float32 waveform [S] resampled to `sample_rate`."""
    decoded = read_pcm_wav(data)
    samples, rate = (
        decoded if decoded is not None else sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    )
    wave = torch.from_numpy(mix_to_mono(samples))
    if wave.numel() == 0:
        raise ValueError("audio has no samples")
    if rate != sample_rate:
        wave = _resampler(int(rate), int(sample_rate))(wave)
    return wave


def mix_to_mono(samples: np.ndarray) -> np.ndarray:
    """float32 [frames, channels] -> [frames], equal to `samples.mean(axis=1, dtype=np.float32)` (the same
    left-to-right float32 sums, then one division) at a fraction of its cost."""
    channels = samples.shape[1]
    if channels == 1:
        return np.ascontiguousarray(samples[:, 0])
    mono = samples[:, 0] + samples[:, 1]
    for c in range(2, channels):
        mono += samples[:, c]
    mono /= np.float32(channels)
    return mono


def read_pcm_wav(data: bytes) -> tuple[np.ndarray, int] | None:
    """A little-endian 16/24/32-bit integer PCM WAV as (float32 [frames, channels], rate) scaled as libsndfile
    scales it (sample / 2^(bits-1)); None for anything else (float, 8-bit, compressed, malformed)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = pos + 8
        if chunk == b"fmt " and size >= 16 and body + 16 <= len(data):
            tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", data[body : body + 16])
            if tag == _WAVE_EXTENSIBLE and size >= 26 and body + 26 <= len(data):
                tag = struct.unpack("<H", data[body + 24 : body + 26])[0]  # the sub-format GUID's first field
            fmt = (tag, channels, rate, block_align, bits)
        elif chunk == b"data":
            if fmt is None:
                return None
            tag, channels, rate, block_align, bits = fmt
            if (
                tag != _WAVE_PCM
                or bits not in (16, 24, 32)
                or channels < 1
                or block_align != channels * bits // 8
            ):
                return None
            if size in (0, 0xFFFFFFFF) or len(data) - body < size:
                return None  # streamed or truncated: libsndfile decides what it holds
            frames = size // block_align
            return _pcm_to_float(data, body, frames * channels, bits).reshape(frames, channels), rate
        pos = body + size + (size & 1)
    return None


def _pcm_to_float(data: bytes, offset: int, count: int, bits: int) -> np.ndarray:
    if bits == 24:
        raw = np.frombuffer(data, dtype=np.uint8, count=count * 3, offset=offset).reshape(count, 3)
        ints = np.empty(count, dtype=np.int32)
        ints.view(np.uint8).reshape(count, 4)[:, 1:] = raw  # the sample in the top 24 bits, then >> 8
        ints.view(np.uint8).reshape(count, 4)[:, 0] = 0
        ints >>= 8
    else:
        ints = np.frombuffer(data, dtype="<i2" if bits == 16 else "<i4", count=count, offset=offset)
    out = ints.astype(np.float32)
    out *= np.float32(1.0 / (1 << (bits - 1)))
    return out


@lru_cache(maxsize=16)
def _resampler(orig: int, new: int) -> torchaudio.transforms.Resample:
    # The transform caches its sinc kernel, which functional.resample rebuilds on every call.
    return torchaudio.transforms.Resample(orig, new)
