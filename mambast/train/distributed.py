"""Data-parallel training on torch.distributed: `torchrun --nproc_per_node K -m mambast train ...`.

NCCL on GPUs, gloo on CPU, through the context inference uses too (`mambast.torchrun.DistContext`: device,
GPU-count check, timeout, leaving the group). Outside torchrun (no WORLD_SIZE > 1 in the environment)
everything is a single process and these helpers are no-ops.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..torchrun import DistContext

__all__ = ["DistContext", "init_distributed", "shutdown", "mean_over_ranks", "gather_lists"]


def init_distributed(device: str = "auto") -> DistContext:
    """`DistContext.from_env(device)`: join the torchrun process group when WORLD_SIZE > 1."""
    return DistContext.from_env(device)


def shutdown(ctx: DistContext, finished: bool = True) -> None:
    """`ctx.close(finished)`: leave the group this process joined (`mambast.torchrun.leave_group`): after a
    normal end (`finished`) the ranks first meet at a barrier; after an error there is none (the other ranks may
    never arrive; torchrun stops them). Then the group is destroyed and collected, so its threads end before
    the interpreter does (`python -m mambast` then leaves with os._exit; see mambast/torchrun.py)."""
    ctx.close(finished)


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
    return sorted({s for part in ctx.gather(list(items)) for s in part})


def _comm_device(ctx: DistContext) -> torch.device:
    return ctx.device if dist.get_backend() == "nccl" else torch.device("cpu")
