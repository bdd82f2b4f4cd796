"""Selective scan in Triton: forward and backward GPU kernels, no compiled extension (docs/selective-scan.md).

Design (state-spaces/mamba's CUDA kernel re-thought for Triton):
    one program per (batch b, block of BLOCK_D channels of one B/C group g); grid (G * blocks, batch)
    the state h (BLOCK_D, N) lives in registers, L is walked in chunks of CHUNK steps; inside a chunk the
    recurrence h_t = a_t h_{t-1} + bu_t is a first-order associative scan over (BLOCK_D, N, CHUNK) tiles,
    combine((a1, b1), (a2, b2)) = (a1 a2, a2 b1 + b2); the h at the end of every chunk is saved
    forward:  out (B, D, L) in u's dtype, states (B, D, 1 + n_chunks, N) float32: 0, then each chunk's end
              (only (B, D, 2, N), 0 and the last h, when no gradient is needed)
    backward: chunks in reverse; each chunk's h is recomputed from the saved state before it, the adjoint
              g_t = a_{t+1} g_{t+1} + dout_t C_t is a reverse associative scan, and
              dB, dC (B, G, N, L) float32 are summed over a group's channels: over the program's
              bwd_channel_iters blocks of channels in registers, over programs by atomic adds; dA, dD and
              d delta_bias are summed over t in float32 (B, D[, N]) buffers and over the batch in torch.
No (B, D, L, N) tensor is ever materialised; state and accumulation are float32 for any input dtype.

Triton is imported lazily, on first use: the kernels below are plain functions, jit-compiled by
`_kernels()`, so TRITON_INTERPRET=1 set before the first call runs them in Triton's CPU interpreter.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

import torch
from torch import Tensor

from .shapes import check_scan_shapes


@dataclass
class TritonScanConfig:
    """Tile sizes (powers of two). `chunk` is shared by forward and backward (saved states)."""

    chunk: int = 64
    fwd_block_d: int = 4
    bwd_block_d: int = 2
    fwd_warps: int = 8
    bwd_warps: int = 8
    bwd_channel_iters: int = 8  # channel blocks per backward program: fewer dB/dC atomics


CONFIG = TritonScanConfig()
tl = None  # triton.language, bound by _kernels() on first use


def set_config(**kwargs) -> TritonScanConfig:
    """Change the tile sizes used by later calls (benchmarks/gpu.py sweeps them); returns the config."""
    for key, value in kwargs.items():
        if not hasattr(CONFIG, key):
            raise ValueError(f"unknown Triton scan setting {key!r}")
        if int(value) < 1 or int(value) & (int(value) - 1):
            raise ValueError(f"Triton scan setting {key} must be a power of two, got {value}")
        setattr(CONFIG, key, int(value))
    return CONFIG


# ----------------------------------------------------------------------------------------------------
# Kernels: plain functions over the module globals `tl` and the jitted helpers, compiled by _kernels().
# ----------------------------------------------------------------------------------------------------


def _first_order_combine(a1, b1, a2, b2):
    """Composition of h -> a1 h + b1 then h -> a2 h + b2."""
    return a1 * a2, a2 * b1 + b2


def _softplus(x):
    """torch.nn.functional.softplus (threshold 20), log1p(exp(x)) with an exact log1p."""
    e = tl.exp(tl.minimum(x, 20.0))
    w = 1.0 + e
    log1p = tl.where(w == 1.0, e, tl.log(w) * (e / tl.where(w == 1.0, 1.0, w - 1.0)))
    return tl.where(x > 20.0, x, log1p)


def _load_dt(delta_ptr, offsets, mask, bias, HAS_BIAS, SOFTPLUS):
    """(raw = delta + bias, dt = softplus(raw) or raw), float32, dt = 0 where masked (h passes through)."""
    raw = tl.load(delta_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw = raw + bias[:, None]
    dt = raw
    if SOFTPLUS:
        dt = _softplus(raw)
    return raw, tl.where(mask, dt, 0.0)


def _load_channel_params(A_ptr, D_ptr, bias_ptr, d, d_mask, n, dn_mask, nstate,
                         BLOCK_D: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr):
    """A (BLOCK_D, BLOCK_N), D and delta_bias (BLOCK_D,) of channels d, float32; 0 where masked or absent."""
    A = tl.load(A_ptr + d[:, None] * nstate + n[None, :], mask=dn_mask, other=0.0).to(tl.float32)
    Dv = tl.zeros((BLOCK_D,), tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + d, mask=d_mask, other=0.0).to(tl.float32)
    bias = tl.zeros((BLOCK_D,), tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d, mask=d_mask, other=0.0).to(tl.float32)
    return A, Dv, bias


def _scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, out_ptr, states_ptr,
    L, dim, group_dim, groups, nstate, blocks_per_group, n_chunks, n_slots,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr,
):
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    g = pid // blocks_per_group
    dg = (pid % blocks_per_group) * BLOCK_D + tl.arange(0, BLOCK_D)
    d = g * group_dim + dg  # (BLOCK_D,) channel index
    d_mask = dg < group_dim
    n = tl.arange(0, BLOCK_N)
    n_mask = n < nstate
    dn_mask = d_mask[:, None] & n_mask[None, :]
    A, Dv, bias = _load_channel_params(A_ptr, D_ptr, bias_ptr, d, d_mask, n, dn_mask, nstate, BLOCK_D, HAS_D,
                                       HAS_BIAS)
    row = (b * dim + d) * L  # (BLOCK_D,) offsets of the (b, d) rows of u, delta, z, out
    bc_row = ((b * groups + g) * nstate + n) * L  # (BLOCK_N,) rows of B[b, g], C[b, g]
    state_row = (b * dim + d) * n_slots * nstate  # (BLOCK_D,) rows of states[b, d]
    k = tl.arange(0, CHUNK)
    h = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
    tl.store(states_ptr + state_row[:, None] + n[None, :], h, mask=dn_mask)  # h_{-1} = 0
    for c in range(n_chunks):
        t = c * CHUNK + k
        t_mask = t < L
        m2 = d_mask[:, None] & t_mask[None, :]
        off = row[:, None] + t[None, :]
        u = tl.load(u_ptr + off, mask=m2, other=0.0).to(tl.float32)
        raw, dt = _load_dt(delta_ptr, off, m2, bias, HAS_BIAS, SOFTPLUS)
        bc_mask = n_mask[:, None] & t_mask[None, :]
        Bt = tl.load(B_ptr + bc_row[:, None] + t[None, :], mask=bc_mask, other=0.0).to(tl.float32)
        Ct = tl.load(C_ptr + bc_row[:, None] + t[None, :], mask=bc_mask, other=0.0).to(tl.float32)
        a = tl.exp(dt[:, None, :] * A[:, :, None])  # (BLOCK_D, BLOCK_N, CHUNK)
        bu = (dt * u)[:, None, :] * Bt[None, :, :]
        sa, sb = tl.associative_scan((a, bu), 2, _first_order_combine)
        hs = sb + sa * h[:, :, None]  # h_t for the chunk
        h = tl.sum(tl.where(k[None, None, :] == CHUNK - 1, hs, 0.0), axis=2)
        slot = tl.minimum(c + 1, n_slots - 1)  # 2 slots only (0, last h) when no backward follows
        tl.store(states_ptr + state_row[:, None] + slot * nstate + n[None, :], h, mask=dn_mask)
        y = tl.sum(hs * Ct[None, :, :], axis=1)  # (BLOCK_D, CHUNK)
        if HAS_D:
            y += Dv[:, None] * u
        if HAS_Z:
            zt = tl.load(z_ptr + off, mask=m2, other=0.0).to(tl.float32)
            y *= zt * tl.sigmoid(zt)
        tl.store(out_ptr + off, y.to(out_ptr.dtype.element_ty), mask=m2)


def _scan_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, states_ptr, dout_ptr,
    du_ptr, ddelta_ptr, dz_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dbias_ptr, carry_ptr,
    L, dim, group_dim, groups, nstate, blocks_per_group, n_chunks,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr, CH_ITERS: tl.constexpr,
):
    """One program: CH_ITERS blocks of BLOCK_D channels of group g, batch b. Per chunk (in reverse), the
    blocks are visited in turn and their dB/dC summed before one atomic add; each block's adjoint carry
    and dA/dD/d delta_bias sums live in float32 buffers (zeroed by the caller) between chunks."""
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    g = pid // blocks_per_group
    first_block = (pid % blocks_per_group) * CH_ITERS
    n = tl.arange(0, BLOCK_N)
    n_mask = n < nstate
    bc_row = ((b * groups + g) * nstate + n) * L
    k = tl.arange(0, CHUNK)
    for i in range(n_chunks):
        c = n_chunks - 1 - i
        t = c * CHUNK + k
        t_mask = t < L
        bc_mask = n_mask[:, None] & t_mask[None, :]
        bc_off = bc_row[:, None] + t[None, :]
        Bt = tl.load(B_ptr + bc_off, mask=bc_mask, other=0.0).to(tl.float32)
        Ct = tl.load(C_ptr + bc_off, mask=bc_mask, other=0.0).to(tl.float32)
        dB_acc = tl.zeros((BLOCK_N, CHUNK), tl.float32)
        dC_acc = tl.zeros((BLOCK_N, CHUNK), tl.float32)
        for j in range(CH_ITERS):
            dg = (first_block + j) * BLOCK_D + tl.arange(0, BLOCK_D)
            d = g * group_dim + dg
            d_mask = dg < group_dim
            dn_mask = d_mask[:, None] & n_mask[None, :]
            part = b * dim + d  # rows of the per-batch (B, D[, N]) float32 buffers
            A, Dv, bias = _load_channel_params(A_ptr, D_ptr, bias_ptr, d, d_mask, n, dn_mask, nstate, BLOCK_D,
                                               HAS_D, HAS_BIAS)
            m2 = d_mask[:, None] & t_mask[None, :]
            off = ((b * dim + d) * L)[:, None] + t[None, :]
            state_off = (part * (n_chunks + 1) + c)[:, None] * nstate + n[None, :]
            h0 = tl.load(states_ptr + state_off, mask=dn_mask, other=0.0)
            u = tl.load(u_ptr + off, mask=m2, other=0.0).to(tl.float32)
            raw, dt = _load_dt(delta_ptr, off, m2, bias, HAS_BIAS, SOFTPLUS)
            next_mask = d_mask[:, None] & (t + 1 < L)[None, :]
            _, dt_next = _load_dt(delta_ptr, off + 1, next_mask, bias, HAS_BIAS, SOFTPLUS)
            # recompute h_t of this chunk from the saved state before it
            a = tl.exp(dt[:, None, :] * A[:, :, None])
            bu = (dt * u)[:, None, :] * Bt[None, :, :]
            sa, sb = tl.associative_scan((a, bu), 2, _first_order_combine)
            hs = sb + sa * h0[:, :, None]
            dout = tl.load(dout_ptr + off, mask=m2, other=0.0).to(tl.float32)
            if HAS_Z:
                zt = tl.load(z_ptr + off, mask=m2, other=0.0).to(tl.float32)
                sig = tl.sigmoid(zt)
                y = tl.sum(hs * Ct[None, :, :], axis=1)
                if HAS_D:
                    y += Dv[:, None] * u
                dz = dout * y * sig * (1.0 + zt * (1.0 - sig))
                tl.store(dz_ptr + off, dz.to(dz_ptr.dtype.element_ty), mask=m2)
                dout = dout * zt * sig
            # adjoint: g_t = a_{t+1} g_{t+1} + dout_t C_t, a reverse scan seeded by the later chunk's g
            carry_off = part[:, None] * nstate + n[None, :]
            g_next = tl.load(carry_ptr + carry_off, mask=dn_mask, other=0.0)
            a_next = tl.exp(dt_next[:, None, :] * A[:, :, None])
            x = dout[:, None, :] * Ct[None, :, :]
            ga, gb = tl.associative_scan((a_next, x), 2, _first_order_combine, reverse=True)
            gs = gb + ga * g_next[:, :, None]
            tl.store(carry_ptr + carry_off, tl.sum(tl.where(k[None, None, :] == 0, gs, 0.0), axis=2),
                     mask=dn_mask)
            dC_acc += tl.sum(dout[:, None, :] * hs, axis=0)  # (BLOCK_N, CHUNK)
            dB_acc += tl.sum(gs * (dt * u)[:, None, :], axis=0)
            gB = tl.sum(gs * Bt[None, :, :], axis=1)  # (BLOCK_D, CHUNK)
            g_ah = gs * (hs - bu)  # g_t * a_t h_{t-1}
            ddt = u * gB + tl.sum(g_ah * A[:, :, None], axis=1)
            dA = tl.load(dA_ptr + carry_off, mask=dn_mask, other=0.0)
            tl.store(dA_ptr + carry_off, dA + tl.sum(g_ah * dt[:, None, :], axis=2), mask=dn_mask)
            du = dt * gB
            if HAS_D:
                du += Dv[:, None] * dout
                dD = tl.load(dD_ptr + part, mask=d_mask, other=0.0)
                tl.store(dD_ptr + part, dD + tl.sum(dout * u, axis=1), mask=d_mask)
            if SOFTPLUS:
                ddt = tl.where(raw <= 20.0, ddt * tl.sigmoid(raw), ddt)
            ddt = tl.where(m2, ddt, 0.0)
            if HAS_BIAS:
                dbias = tl.load(dbias_ptr + part, mask=d_mask, other=0.0)
                tl.store(dbias_ptr + part, dbias + tl.sum(ddt, axis=1), mask=d_mask)
            tl.store(du_ptr + off, du.to(du_ptr.dtype.element_ty), mask=m2)
            tl.store(ddelta_ptr + off, ddt.to(ddelta_ptr.dtype.element_ty), mask=m2)
        # dB, dC: summed over this program's channels above, over the group's other programs here
        tl.atomic_add(dB_ptr + bc_off, dB_acc, mask=bc_mask, sem="relaxed")
        tl.atomic_add(dC_ptr + bc_off, dC_acc, mask=bc_mask, sem="relaxed")
        tl.debug_barrier()  # this chunk's carry/dA/dD/dbias stores are seen by the next chunk's loads


@cache
def _kernels():
    """Import triton, jit-compile the kernels above (honouring TRITON_INTERPRET), return (fwd, bwd)."""
    try:
        import triton
        import triton.language
    except ImportError as e:
        raise RuntimeError("backend='triton' needs the triton package (pip install triton)") from e
    g = globals()
    g["tl"] = triton.language
    for name in ("_first_order_combine", "_softplus", "_load_dt", "_load_channel_params"):
        g[name] = triton.jit(g[name])
    return triton.jit(_scan_fwd_kernel), triton.jit(_scan_bwd_kernel)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _check_inputs(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> None:
    if u.device.type != "cuda" and not _interpreting():
        raise RuntimeError(
            f"backend='triton' needs CUDA tensors (got {u.device.type}); set TRITON_INTERPRET=1 before the "
            "first call to run the kernels in Triton's (slow) CPU interpreter"
        )
    check_scan_shapes(u, delta, A, B, C)
    if A.is_complex():
        raise ValueError("backend='triton' supports real A only (as Mamba-ST uses)")


def _launch_geometry(dim: int, groups: int, nstate: int, block_d: int):
    """(BLOCK_D, BLOCK_N, blocks per group): BLOCK_D shrinks for small groups."""
    group_dim = dim // groups
    block_d = min(block_d, 1 << max(group_dim - 1, 0).bit_length())
    block_n = max(1 << max(nstate - 1, 0).bit_length(), 2)
    return block_d, block_n, -(-group_dim // block_d)


class SelectiveScanTriton(torch.autograd.Function):
    """Autograd wrapper of the Triton forward/backward kernels; same arguments as `selective_scan`."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, save_states):
        squeeze_groups = B.dim() == 3
        u, delta = u.contiguous(), delta.contiguous()
        A = A.contiguous()
        B = (B.unsqueeze(1) if squeeze_groups else B).contiguous()  # (B, G, N, L)
        C = (C.unsqueeze(1) if C.dim() == 3 else C).contiguous()
        D = None if D is None else D.contiguous()
        z = None if z is None else z.contiguous()
        delta_bias = None if delta_bias is None else delta_bias.contiguous()
        batch, dim, length = u.shape
        groups, nstate = B.shape[1], A.shape[1]
        chunk = min(CONFIG.chunk, max(1 << max(length - 1, 0).bit_length(), 2))
        n_chunks = -(-length // chunk)
        block_d, block_n, blocks = _launch_geometry(dim, groups, nstate, CONFIG.fwd_block_d)
        out = torch.empty_like(u)
        n_slots = n_chunks + 1 if save_states else 2
        states = u.new_empty(batch, dim, n_slots, nstate, dtype=torch.float32)
        fwd, _ = _kernels()
        fwd[(groups * blocks, batch)](
            u, delta, A, B, C, D if D is not None else u, z if z is not None else u,
            delta_bias if delta_bias is not None else u, out, states,
            length, dim, dim // groups, groups, nstate, blocks, n_chunks, n_slots,
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            SOFTPLUS=bool(delta_softplus), BLOCK_D=block_d, BLOCK_N=block_n, CHUNK=chunk,
            num_warps=CONFIG.fwd_warps,
        )
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, states if save_states else None)
        ctx.delta_softplus, ctx.squeeze_groups, ctx.chunk = bool(delta_softplus), squeeze_groups, chunk
        last_state = states[:, :, -1].to(u.dtype, copy=True)  # not a view of the saved states
        ctx.mark_non_differentiable(last_state)
        return out, last_state

    @staticmethod
    def backward(ctx, dout, _dlast):
        u, delta, A, B, C, D, z, delta_bias, states = ctx.saved_tensors
        if states is None:
            raise RuntimeError("selective_scan_triton: backward through a scan run without autograd")
        batch, dim, length = u.shape
        groups, nstate = B.shape[1], A.shape[1]
        n_chunks = states.shape[2] - 1
        dout = torch.zeros_like(u) if dout is None else dout.contiguous()
        block_d, block_n, blocks = _launch_geometry(dim, groups, nstate, CONFIG.bwd_block_d)
        iters = min(CONFIG.bwd_channel_iters, blocks)
        blocks = -(-blocks // iters)
        du, ddelta = torch.empty_like(u), torch.empty_like(delta)
        dz = torch.empty_like(z) if z is not None else None
        f32 = dict(dtype=torch.float32, device=u.device)
        dA = torch.zeros(batch, dim, nstate, **f32)  # per-batch partial sums
        carry = torch.zeros(batch, dim, nstate, **f32)  # adjoint g between chunks
        dB = torch.zeros(B.shape, **f32)
        dC = torch.zeros(C.shape, **f32)
        dD = torch.zeros(batch, dim, **f32) if D is not None else None
        dbias = torch.zeros(batch, dim, **f32) if delta_bias is not None else None
        _, bwd = _kernels()
        bwd[(groups * blocks, batch)](
            u, delta, A, B, C, D if D is not None else u, z if z is not None else u,
            delta_bias if delta_bias is not None else u, states, dout,
            du, ddelta, dz if dz is not None else du, dA, dB, dC,
            dD if dD is not None else dA, dbias if dbias is not None else dA, carry,
            length, dim, dim // groups, groups, nstate, blocks, n_chunks,
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            SOFTPLUS=ctx.delta_softplus, BLOCK_D=block_d, BLOCK_N=block_n, CHUNK=ctx.chunk, CH_ITERS=iters,
            num_warps=CONFIG.bwd_warps,
        )
        if ctx.squeeze_groups:
            dB, dC = dB.squeeze(1), dC.squeeze(1)
        return (
            du, ddelta, dA.sum(0).to(A.dtype), dB.to(B.dtype), dC.to(C.dtype),
            None if D is None else dD.sum(0).to(D.dtype), dz,
            None if delta_bias is None else dbias.sum(0).to(delta_bias.dtype), None, None,
        )


def selective_scan_triton(
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
):
    """Selective scan on CUDA tensors with Triton kernels (contract of `mambast.ops.selective_scan`).

    u, delta, z: (B, D, L); A: (D, N) real; B, C: (B, G, N, L) or (B, N, L); D, delta_bias: (D,).
    Returns out (B, D, L) in u's dtype, and h at t = L-1 (B, D, N) in u's dtype when `return_last_state`
    (no gradient flows through it). Any input may be non-contiguous.
    """
    _check_inputs(u, delta, A, B, C)
    inputs = (u, delta, A, B, C, D, z, delta_bias)
    save_states = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
    out, last_state = SelectiveScanTriton.apply(*inputs, delta_softplus, save_states)
    return (out, last_state) if return_last_state else out
