"""The native CPU scan as a torch custom operator, so `torch.compile` keeps a model with it in one graph.

    torch.ops.mambast.scan_lowrank_cpu(u, dt_low, dt_weight, A, B, C, D, delta_bias, delta_softplus) -> out

The contract of `scan_cpu.selective_scan_cpu_lowrank` (forward only, float32, a fresh output; no `out=`
aliasing, which a custom op may not do). Its fake (meta) implementation gives the output's shape and dtype
without running the kernel, so dynamo and inductor trace through it; eager calls go straight to the kernel
(backends.py uses the op only while compiling). Registered on import where torch has `torch.library.custom_op`
(2.4+); `AVAILABLE` says whether it is.
"""

from __future__ import annotations

import torch
from torch import Tensor

AVAILABLE = hasattr(torch, "library") and hasattr(torch.library, "custom_op")

if AVAILABLE:

    @torch.library.custom_op("mambast::scan_lowrank_cpu", mutates_args=(), device_types="cpu")
    def scan_lowrank_cpu(u: Tensor, dt_low: Tensor, dt_weight: Tensor, A: Tensor, B: Tensor, C: Tensor,
                         D: Tensor | None, delta_bias: Tensor | None, delta_softplus: bool) -> Tensor:
        """The native low-rank scan (scan_cpu.selective_scan_cpu_lowrank): u (B, D, L) ... -> out (B, D, L)."""
        from . import scan_cpu

        return scan_cpu.selective_scan_cpu_lowrank(u, dt_low, dt_weight, A, B, C, D, delta_bias, delta_softplus)

    @scan_lowrank_cpu.register_fake
    def _(u, dt_low, dt_weight, A, B, C, D, delta_bias, delta_softplus):
        return torch.empty(u.shape, dtype=torch.float32, device=u.device)
