"""Audio for the audio tower: encoded bytes -> mono float32 waveform at the tower's rate (the decoder lives in
mmpt.store.audio_decode, shared with the training-ready copies of ingest), cropped or padded to its length."""

from __future__ import annotations

import numpy as np
import torch

from mmpt.store.audio_decode import decode_audio, mix_to_mono, read_pcm_wav

__all__ = ["decode_audio", "fit_length", "mix_to_mono", "read_pcm_wav"]


def fit_length(wave: torch.Tensor, n: int, rng: np.random.Generator | None = None) -> torch.Tensor:
    """Crop or repeat-pad a waveform to `n` samples: random crop with `rng` (training), centre crop without."""
    length = wave.shape[-1]
    if length > n:
        start = int(rng.integers(0, length - n + 1)) if rng is not None else (length - n) // 2
        return wave[start : start + n]
    if length < n:
        return wave.repeat((n + length - 1) // length)[:n]
    return wave
