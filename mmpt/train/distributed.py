"""Distributed setup (torchrun env, NCCL on GPU, gloo on CPU) and the few collectives the loss needs."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mmpt.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: its global rank, the world size, its rank on the node, its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed(device_pref: str = "auto") -> DistInfo:
    """Pick the device and, when launched by torchrun (RANK/WORLD_SIZE set, world > 1), join the group."""
    if device_pref not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {device_pref!r}")
    has_cuda = torch.cuda.is_available()
    if device_pref == "cuda" and not has_cuda:
        raise ConfigError("CUDA requested but no GPU is available")
    use_cuda = has_cuda and device_pref != "cpu"
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        if use_cuda:
            dist.init_process_group("nccl", init_method="env://", device_id=device)
        else:
            dist.init_process_group("gloo", init_method="env://")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


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
