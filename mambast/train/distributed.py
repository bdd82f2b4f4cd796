"""Data-parallel training on torch.distributed: `torchrun --nproc_per_node K -m mambast train ...`.

NCCL on GPUs, gloo on CPU. Outside torchrun (no WORLD_SIZE > 1 in the environment) everything is a
single process and these helpers are no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..config import FieldError
from ..torchrun import join_group, leave_group

__all__ = ["DistContext", "init_distributed", "shutdown", "mean_over_ranks", "gather_lists"]


@dataclass
class DistContext:
    """rank / world_size / local_rank of this process, its device, and whether it created the group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _device(name: str, local_rank: int) -> torch.device:
    if name in ("auto", "", None):
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise FieldError(f"device {name!r}: unknown (use auto, cpu, cuda or cuda:N)", "device") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise FieldError(f"device {name}: CUDA is not available here", "device")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device


def init_distributed(device: str = "auto") -> DistContext:
    """Join the torchrun process group when WORLD_SIZE > 1 (gloo on CPU, NCCL on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _device(device, local_rank)
    if world <= 1:
        return DistContext(device=dev)
    owns = not dist.is_initialized()
    if owns:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        join_group("nccl" if dev.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, dev, owns)


def shutdown(ctx: DistContext, finished: bool = True) -> None:
    """Leave the process group this process created (`mambast.torchrun.leave_group`, shared with inference):
    after a normal end (`finished`) the ranks first meet at a barrier, so that no rank closes its gloo
    connections while another is still using them; after an error there is no barrier (the other ranks may
    never arrive; torchrun stops them). Then the group is destroyed and collected, so its threads end before
    the interpreter does (`python -m mambast` then leaves with os._exit; see mambast/torchrun.py)."""
    if ctx.owns_group:
        leave_group(finished)


def mean_over_ranks(ctx: DistContext, values: dict[str, float]) -> dict[str, float]:
    """Average scalar values over all ranks (every rank must call it)."""
    if not ctx.distributed:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_comm_device(ctx))
    dist.all_reduce(t)
    return {k: v / ctx.world_size for k, v in zip(keys, t.tolist(), strict=True)}


def gather_lists(ctx: DistContext, items: list[str]) -> list[str]:
    """The sorted union of a string list over all ranks (every rank must call it)."""
    if not ctx.distributed:
        return sorted(set(items))
    gathered: list[list[str]] = [[] for _ in range(ctx.world_size)]
    dist.all_gather_object(gathered, list(items))
    return sorted({s for part in gathered for s in part})


def _comm_device(ctx: DistContext) -> torch.device:
    return ctx.device if dist.get_backend() == "nccl" else torch.device("cpu")
