"""Single process or DistributedDataParallel under ``torchrun`` (gloo on CPU, NCCL on CUDA).

``torchrun --standalone --nproc_per_node 2 -m rawedge.cli train --config recipes/unet_small.yaml``
sets WORLD_SIZE/RANK/LOCAL_RANK; without them everything runs in one process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from rawedge.errors import RawedgeError


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def mean(self, value: float) -> float:
        """Average a Python number over all processes."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    name = (name or "auto").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RawedgeError(None, f"device {name!r} requested but CUDA is not available")
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    if name != "cpu":
        raise RawedgeError(None, f"unknown device {name!r} (auto, cpu, cuda, cuda:N)")
    return torch.device("cpu")


def setup(device: str = "auto") -> DistContext:
    """Join the torchrun process group when launched by torchrun; one process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def teardown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
