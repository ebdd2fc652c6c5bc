"""Per-row augmentation seeds derived from (seed, epoch, batch_index, slot), so a batch is bit-identical
whichever worker builds it, on any rank split and after a resume."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def row_seeds(seed: int, epoch: int, batch_index: int, slots: np.ndarray) -> list[int]:
    """One 63-bit seed per row from (seed, epoch, global batch index, row's slot within the global batch)."""
    return [
        int(np.random.SeedSequence([seed, epoch, batch_index, int(s)]).generate_state(1, np.uint64)[0] >> 1)
        for s in slots
    ]


@contextmanager
def private_rng() -> Iterator[None]:
    """Run a block with torch's CPU RNG and Python's `random` restored afterwards (augmentations use both)."""
    py_state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(py_state)


def reseed(row_seed: int) -> None:
    """Seed the global RNGs torchvision/timm augmentations draw from; call inside `private_rng()`."""
    # Only the CPU generator: torch.manual_seed also queues lazy CUDA/XPU/MTIA seeding (~1.4 ms, grows a list).
    torch.default_generator.manual_seed(row_seed)
    random.seed(row_seed)
