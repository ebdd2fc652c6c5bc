"""Audio decoding for the audio tower: soundfile bytes -> mono float32 waveform at the tower's rate and length."""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
import soundfile as sf
import torch
import torchaudio


def decode_audio(data: bytes, sample_rate: int) -> torch.Tensor:
    """Decode encoded audio (WAV, FLAC, OGG...) to a mono float32 waveform [S] resampled to `sample_rate`."""
    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    wave = torch.from_numpy(np.ascontiguousarray(samples.mean(axis=1, dtype=np.float32)))
    if wave.numel() == 0:
        raise ValueError("audio has no samples")
    if rate != sample_rate:
        wave = _resampler(int(rate), int(sample_rate))(wave)
    return wave


@lru_cache(maxsize=16)
def _resampler(orig: int, new: int) -> torchaudio.transforms.Resample:
    # The transform caches its sinc kernel, which functional.resample rebuilds on every call.
    return torchaudio.transforms.Resample(orig, new)


def fit_length(wave: torch.Tensor, n: int, rng: np.random.Generator | None = None) -> torch.Tensor:
    """Crop or repeat-pad a waveform to `n` samples: random crop with `rng` (training), centre crop without."""
    length = wave.shape[-1]
    if length > n:
        start = int(rng.integers(0, length - n + 1)) if rng is not None else (length - n) // 2
        return wave[start : start + n]
    if length < n:
        return wave.repeat((n + length - 1) // length)[:n]
    return wave
