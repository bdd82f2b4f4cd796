"""Pure-torch selective scan: correct on any device, used where no faster kernel exists.

Same algorithm as the native kernel, in torch ops: the L axis is cut into chunks of `chunk` steps; per chunk
the decays exp(dt A) and inputs dt u B are formed as (T, B, G, D/G, N) tensors, the recurrence runs as one
fused multiply-add per step, and only h at the chunk starts is kept for the backward, which recomputes each
chunk and runs the reverse scan g_t = a_{t+1} g_{t+1} + dout_t C_t with closed-form gradients (no autograd
graph over L). Extra memory: O(B D N L / chunk + B D N chunk), never (B, D, L, N).
State and accumulation in float32 (float64 for float64 inputs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .shapes import check_scan_shapes

CHUNK = 32


def _compute_dtype(u: Tensor) -> torch.dtype:
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _grouped(M: Tensor) -> Tensor:
    """(B, G, N, L) or (B, N, L) -> (B, G, N, L)."""
    return M.unsqueeze(1) if M.dim() == 3 else M


class _Chunk:
    """The per-chunk tensors of one [t0, t1) window, time-major: (T, B, G, Dg[, N])."""

    def __init__(self, u, delta, A, B, C, bias, softplus, t0, t1):
        # u, delta: (B, G, Dg, L); A: (G, Dg, N); B, C: (B, G, N, L); bias: (G, Dg) or None
        self.u = u[..., t0:t1].permute(3, 0, 1, 2).contiguous()  # (T, B, G, Dg)
        x = delta[..., t0:t1].permute(3, 0, 1, 2).contiguous()
        self.x = x if bias is None else x + bias
        self.dt = F.softplus(self.x) if softplus else self.x
        self.B = B[..., t0:t1].permute(3, 0, 1, 2).unsqueeze(3).contiguous()  # (T, B, G, 1, N)
        self.C = C[..., t0:t1].permute(3, 0, 1, 2).unsqueeze(3).contiguous()
        self.a = torch.exp(self.dt.unsqueeze(-1) * A)  # (T, B, G, Dg, N)
        self.dtu = self.dt * self.u
        self.bu = self.dtu.unsqueeze(-1) * self.B

    def states(self, h: Tensor) -> Tensor:
        """h_t for t in the chunk, (T, B, G, Dg, N), from the state h before it."""
        hs = torch.empty_like(self.a)
        for t in range(hs.shape[0]):
            h = torch.mul(self.a[t], h, out=hs[t]).add_(self.bu[t])  # (addcmul with out= is slow)
        return hs


class _TorchScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias, delta_softplus, chunk):
        cdt = _compute_dtype(u)
        batch, channels, length = u.shape
        Bg, Cg = _grouped(B).to(cdt), _grouped(C).to(cdt)
        groups, state = Bg.shape[1], A.shape[1]
        dg = channels // groups
        u4 = u.to(cdt).reshape(batch, groups, dg, length)
        delta4 = delta.to(cdt).reshape(batch, groups, dg, length)
        A3 = A.to(cdt).reshape(groups, dg, state)
        bias = None if delta_bias is None else delta_bias.to(cdt).view(groups, dg)
        h = u4.new_zeros(batch, groups, dg, state)
        starts = list(range(0, length, chunk))
        ckpts, ys = [], []
        for t0 in starts:
            ck = _Chunk(u4, delta4, A3, Bg, Cg, bias, delta_softplus, t0, min(t0 + chunk, length))
            ckpts.append(h)
            hs = ck.states(h)
            h = hs[-1]
            ys.append((hs * ck.C).sum(-1))  # (T, B, G, Dg)
        y = torch.cat(ys).permute(1, 2, 3, 0).reshape(batch, channels, length) if ys else u4.new_zeros(
            batch, channels, 0)
        if D is not None:
            y = y + D.to(cdt)[:, None] * u.to(cdt)
        ctx.save_for_backward(u4, delta4, A3, Bg, Cg, D, bias, torch.stack(ckpts) if ckpts else h[None])
        ctx.cfg = (delta_softplus, chunk, starts, [t.dtype if t is not None else None for t in (
            u, delta, A, B, C, D, delta_bias)], B.shape, C.shape)
        last = h.reshape(batch, channels, state)
        ctx.mark_non_differentiable(last)
        return y, last

    @staticmethod
    def backward(ctx, dout, _dlast):
        u4, delta4, A3, Bg, Cg, D, bias, ckpts = ctx.saved_tensors
        softplus, chunk, starts, dtypes, b_shape, c_shape = ctx.cfg
        batch, groups, dg, length = u4.shape
        dout4 = dout.to(u4.dtype).reshape(batch, groups, dg, length)
        du, ddelta = torch.empty_like(u4), torch.empty_like(u4)
        dB, dC = torch.empty_like(Bg), torch.empty_like(Cg)
        dA = torch.zeros_like(A3)
        g = torch.zeros_like(ckpts[0])
        for i in reversed(range(len(starts))):
            t0, t1 = starts[i], min(starts[i] + chunk, length)
            ck = _Chunk(u4, delta4, A3, Bg, Cg, bias, softplus, t0, t1)
            hs = ck.states(ckpts[i])
            do = dout4[..., t0:t1].permute(3, 0, 1, 2)  # (T, B, G, Dg)
            gs = do.unsqueeze(-1) * ck.C  # becomes g_t, (T, B, G, Dg, N)
            for t in reversed(range(t1 - t0)):
                g = gs[t].add_(g)
                g = ck.a[t] * g
            dC[..., t0:t1] = (do.unsqueeze(-1) * hs).sum(3).permute(1, 2, 3, 0)
            dB[..., t0:t1] = (gs * ck.dtu.unsqueeze(-1)).sum(3).permute(1, 2, 3, 0)
            gB = (gs * ck.B).sum(-1)  # (T, B, G, Dg)
            h_prev = torch.cat([ckpts[i].unsqueeze(0), hs[:-1]])
            gh = gs * ck.a * h_prev  # g_t a_t h_{t-1}
            dA += (gh * ck.dt.unsqueeze(-1)).sum((0, 1))
            ddt = ck.u * gB + (gh * A3).sum(-1)
            if softplus:
                ddt = torch.where(ck.x > 20, ddt, ddt * torch.sigmoid(ck.x))
            du_c = ck.dt * gB if D is None else ck.dt * gB + D.to(u4.dtype).view(groups, dg) * do
            du[..., t0:t1] = du_c.permute(1, 2, 3, 0)
            ddelta[..., t0:t1] = ddt.permute(1, 2, 3, 0)
        shape = (batch, groups * dg, length)
        dD = None if D is None else (dout4 * u4).sum((0, 3)).reshape(-1).to(dtypes[5])
        dbias = None if bias is None else ddelta.sum((0, 3)).reshape(-1).to(dtypes[6])
        return (du.reshape(shape).to(dtypes[0]), ddelta.reshape(shape).to(dtypes[1]),
                dA.reshape(groups * dg, -1).to(dtypes[2]), dB.reshape(b_shape).to(dtypes[3]),
                dC.reshape(c_shape).to(dtypes[4]), dD, dbias, None, None)


def selective_scan_torch(
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
    chunk: int = CHUNK,
):
    """Same contract as `mambast.ops.selective_scan`; float32 state (float64 for float64 inputs).

    u, delta, z: (B, D, L); A: (D, N) real; B, C: (B, G, N, L) or (B, N, L); D, delta_bias: (D,).
    Returns out (B, D, L) in u's dtype, and h_{L-1} (B, D, N) (no gradient) when `return_last_state`.
    """
    check_scan_shapes(u, delta, A, B, C)
    if A.is_complex():
        raise ValueError("mambast: the pure-torch selective scan supports real A only")
    y, last = _TorchScan.apply(u, delta, A, B, C, D, delta_bias, bool(delta_softplus), int(chunk))
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    y = y.to(u.dtype)
    return (y, last.to(u.dtype)) if return_last_state else y
