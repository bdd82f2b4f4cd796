"""Plain reference of the selective scan: a loop over t of exactly the recurrence in docs/selective-scan.md.

It is the gold standard for tests (run it in float64 on tiny shapes) and the last-resort fallback.
Autograd through it costs O(L^2 D N) memory traffic: keep L <= 256 and few channels when differentiating.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .shapes import check_scan_shapes


def expand_groups(M: Tensor, channels: int) -> Tensor:
    """(B, G, N, L) or (B, N, L) -> (B, D, N, L): channel d reads group d // (D / G)."""
    if M.dim() == 3:
        M = M.unsqueeze(1)
    groups = M.shape[1]
    if channels % groups:
        raise ValueError(f"channels ({channels}) must be a multiple of the B/C groups ({groups})")
    return M.repeat_interleave(channels // groups, dim=1)


def discretize_delta(delta: Tensor, delta_bias: Tensor | None, delta_softplus: bool) -> Tensor:
    """dt = softplus(delta + bias) (torch's softplus, threshold 20), or delta + bias."""
    if delta_bias is not None:
        delta = delta + delta_bias[..., None]
    return F.softplus(delta) if delta_softplus else delta


def selective_scan_ref(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    compute_dtype: torch.dtype | None = None,
):
    """Reference selective scan.

    u, delta, z: (B, D, L); A: (D, N); B, C: (B, G, N, L) or (B, N, L); D, delta_bias: (D,).
    Computes in float32 (or `compute_dtype`, e.g. float64 for tests, default: float64 if u is
    float64 else float32) and returns out (B, D, L) in u's dtype, plus h_{L-1} (B, D, N) if asked.
    """
    check_scan_shapes(u, delta, A, B, C)
    dtype_in = u.dtype
    cdt = compute_dtype or (torch.float64 if u.dtype == torch.float64 else torch.float32)
    u, delta, A = u.to(cdt), delta.to(cdt), A.to(cdt)
    channels = u.shape[1]
    Bx = expand_groups(B.to(cdt), channels)  # (B, D, N, L)
    Cx = expand_groups(C.to(cdt), channels)
    dt = discretize_delta(delta, None if delta_bias is None else delta_bias.to(cdt), delta_softplus)
    h = u.new_zeros(u.shape[0], channels, A.shape[1])  # (B, D, N)
    ys = []
    # unbind: per-step views whose backward stays O(L) (indexing [..., t] would scatter a full tensor per step)
    steps = zip(dt.unbind(-1), u.unbind(-1), Bx.unbind(-1), Cx.unbind(-1), strict=True)
    for dt_t, u_t, B_t, C_t in steps:
        a = torch.exp(dt_t[..., None] * A)  # (B, D, N)
        h = a * h + (dt_t * u_t)[..., None] * B_t
        ys.append((h * C_t).sum(-1))
    y = torch.stack(ys, dim=-1)  # (B, D, L)
    if D is not None:
        y = y + D.to(cdt)[:, None] * u
    if z is not None:
        y = y * F.silu(z.to(cdt))
    out = y.to(dtype_in)
    return (out, h.detach().to(dtype_in)) if return_last_state else out
