"""Distributed setup (torchrun env, NCCL on GPU, gloo on CPU) and the few collectives the loss needs."""

from __future__ import annotations

import torch
import torch.distributed as dist

from mmpt.torchrun import DistInfo, setup_distributed

__all__ = ["DistInfo", "all_reduce_sum", "cleanup", "setup_distributed"]


def cleanup() -> None:
    """Leave the process group (no-op when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    """True on the process that writes logs and checkpoints (rank 0, or the only process)."""
    return get_rank() == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of `t` over all ranks (a new tensor, no gradient); `t` itself when not distributed."""
    if not is_dist():
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def gather_with_grad(t: torch.Tensor, counts: list[int] | None = None) -> torch.Tensor:
    """Concatenate `t` from all ranks along dim 0, rank order, with gradient flowing back to each rank.

    Ranks may hold different numbers of rows (`counts`, from gather_counts, saves one exchange if known):
    rows are padded to the largest count for the exchange. Backward runs a collective, so every rank
    must backpropagate through the result, and `t` is made to require grad if it does not.
    """
    if not is_dist():
        return t
    from torch.distributed.nn.functional import all_gather

    counts = counts or gather_counts(t.shape[0], t.device)
    if torch.is_grad_enabled() and not t.requires_grad:
        t = t.detach().requires_grad_(True)  # keep the backward collective on this rank too
    most = max(counts)
    padded = t if t.shape[0] == most else torch.cat([t, t.new_zeros(most - t.shape[0], *t.shape[1:])])
    parts = all_gather(padded)
    return torch.cat([p[:n] for p, n in zip(parts, counts, strict=True)])


def gather(t: torch.Tensor, counts: list[int] | None = None) -> torch.Tensor:
    """Like gather_with_grad, without gradient (e.g. for masks); bool tensors are supported."""
    if not is_dist():
        return t
    if t.dtype == torch.bool:
        return gather(t.to(torch.uint8), counts).bool()
    counts = counts or gather_counts(t.shape[0], t.device)
    most = max(counts)
    padded = t.detach()
    if t.shape[0] < most:
        padded = torch.cat([padded, padded.new_zeros(most - t.shape[0], *t.shape[1:])])
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:n] for p, n in zip(parts, counts, strict=True)])


def gather_counts(n: int, device: torch.device) -> list[int]:
    """The row count `n` of every rank, in rank order."""
    if not is_dist():
        return [n]
    local = torch.tensor([n], device=device, dtype=torch.long)
    counts = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, local)
    return [int(c.item()) for c in counts]
