"""Inputs shared by the model-step tests: one seeded batch for the tiny preset's three towers."""

from __future__ import annotations

import torch


def tiny_inputs(batch: int = 4) -> dict[str, torch.Tensor]:
    """64 px images, 32 token ids and 1 s of 16 kHz audio per row, the same on every call."""
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.randn(batch, 3, 64, 64, generator=g),
        "text": torch.randint(1, 49000, (batch, 32), generator=g),
        "audio": torch.randn(batch, 16000, generator=g),
    }
