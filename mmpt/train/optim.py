"""AdamW with decay only on weight matrices, and a warmup + cosine learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from mmpt.train.config import TrainConfig

LrScale = Callable[[str], float]


def no_decay(name: str, param: nn.Parameter) -> bool:
    """Norms, biases, embeddings' 1-D tensors and logit scales/biases are not weight-decayed."""
    return param.ndim < 2 or "logit_" in name or name.endswith(".bias")


def param_groups(
    model: nn.Module, weight_decay: float, lr: float, lr_scale: LrScale | None = None
) -> list[dict]:
    """Trainable parameters grouped by (decay, lr multiplier); frozen ones (requires_grad False) are left out."""
    groups: dict[tuple[bool, float], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = not no_decay(name, p)
        scale = lr_scale(name) if lr_scale else 1.0
        if scale == 0.0:
            continue
        g = groups.setdefault(
            (decay, scale),
            {
                "params": [],
                "names": [],
                "weight_decay": weight_decay if decay else 0.0,
                "lr": lr * scale,
                "lr_scale": scale,
            },
        )
        g["params"].append(p)
        g["names"].append(name)
    return [{k: v for k, v in g.items() if k != "names"} for g in groups.values()]


def build_optimizer(model: nn.Module, cfg: TrainConfig, lr_scale: LrScale | None = None) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; fused (one kernel for all tensors) on CUDA and CPU.

    On CPU torch's default is the per-tensor loop, several times slower than the fused kernel (about 40 ms
    against 3 ms a step for the tiny preset on 2 cores): a tenth of a step for small models.
    """
    groups = param_groups(model, cfg.weight_decay, cfg.lr, lr_scale)
    if not groups:
        raise ValueError("no trainable parameters: everything is frozen")
    fused = next(model.parameters()).device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.adam_betas(), eps=cfg.eps, fused=fused)


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float = 0.0) -> float:
    """Multiplier of the base lr: linear warmup to 1, then cosine down to min_ratio at `total`."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule; each group keeps its own multiplier (per-tower / layer-wise lr) via its base lr."""
    warmup = min(cfg.warmup_steps, max(0, total_steps // 5))
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: warmup_cosine(step, warmup, total_steps, cfg.min_lr_ratio)
    )
