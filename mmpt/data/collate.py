"""Stack per-row values of one modality into a zero-filled tensor plus its presence mask."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def stack_with_mask(
    values: Sequence[torch.Tensor | None], shape: tuple[int, ...], dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tensor [B, *shape] holding each present value (zeros where None) and a Bool[B] mask of presence."""
    out = torch.empty((len(values), *shape), dtype=dtype)  # every row is written below: no zero-fill pass
    mask = torch.zeros(len(values), dtype=torch.bool)
    for i, value in enumerate(values):
        if value is not None:
            out[i] = value
            mask[i] = True
        else:
            out[i] = 0
    return out, mask
