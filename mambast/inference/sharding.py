"""Running under `torchrun`: one process per device, the work list split by index (worklist.shard).

`Dist.from_env(device)` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) and joins the process
group (gloo on the CPU, nccl on CUDA, one GPU per rank: cuda:LOCAL_RANK); without torchrun it is one process
of one. The group is used only for a barrier and for gathering the small per-rank reports at the end.

    with Dist.from_env(device) as dist:   # leaves the group at the end (mambast.torchrun.leave_group)
        ...
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from ..errors import UserError
from ..torchrun import join_group, leave_group


@dataclass
class Dist:
    """This process's place in a run: rank of world, and its device."""

    rank: int = 0
    world: int = 1
    device: torch.device | None = None
    joined: bool = False

    @classmethod
    def from_env(cls, device: torch.device) -> Dist:
        """One process (no torchrun), or join torchrun's group. device: what the user asked for (resolved);
        a CUDA device becomes cuda:LOCAL_RANK. Raises UserError (one line) when more ranks than GPUs."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls(0, 1, device)
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            if local >= torch.cuda.device_count():
                raise UserError(f"rank {rank}: LOCAL_RANK {local} but only {torch.cuda.device_count()} GPU(s) "
                                "here; start at most one process per GPU (torchrun --nproc_per_node)")
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        if not torch_dist.is_initialized():
            join_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=2))
        return cls(torch_dist.get_rank(), torch_dist.get_world_size(), device, joined=True)

    def barrier(self) -> None:
        if self.joined:
            torch_dist.barrier()

    def gather(self, obj) -> list:
        """Every rank's `obj`, in rank order (on every rank)."""
        if not self.joined:
            return [obj]
        out = [None] * self.world
        torch_dist.all_gather_object(out, obj)
        return out

    def close(self, finished: bool = True) -> None:
        """Leave the group (`mambast.torchrun.leave_group`: after a normal end (`finished`) the ranks first
        meet at a barrier; after an error they do not, the others may never arrive)."""
        if self.joined:
            self.joined = False
            leave_group(finished)

    def __enter__(self) -> Dist:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(finished=exc_type is None)
