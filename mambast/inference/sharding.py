"""Running under `torchrun`: one process per device, the work list split by index (worklist.shard).

The context is the one training uses too (`mambast.torchrun.DistContext`, here under the name `Dist`): it
reads torchrun's environment, joins the group (gloo on the CPU, nccl on CUDA, one GPU per rank) and leaves it
at the end; without torchrun it is one process of one. Inference uses the group only for a barrier and for
gathering the small per-rank reports at the end.

    with Dist.from_env(device) as dist:   # dist.rank, dist.world_size, dist.barrier(), dist.gather(obj)
        ...
"""

from __future__ import annotations

from ..torchrun import DistContext as Dist

__all__ = ["Dist"]
