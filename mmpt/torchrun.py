"""Where a process sits under torchrun (rank, world size, device) and joining its process group: shared by
training (mmpt.train.distributed) and the multi-GPU embedding export (mmpt.embed.distributed_embed)."""

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
