"""`selective_scan`: one entry point, the contract of mamba_ssm's `selective_scan_fn` (docs/selective-scan.md).

Backends (``backend=``), from the table in backends.py:
    "ref"      the plain float loop of scan_ref.py (tests; slow)
    "torch"    a pure-torch path for any device (correct, slower): the fallback
    "cpu"      the native CPU kernel of scan_cpu.py (compiled on first use, cached)
    "mamba_ssm" the CUDA kernel of the mamba_ssm package, when installed
    "triton"   the Triton GPU kernel of scan_triton.py
    "auto"     CPU tensors: "cpu", else "torch" with a warning; CUDA tensors: "mamba_ssm" when importable,
               else "triton" when importable, else "torch".
"""

from __future__ import annotations

from torch import Tensor

from .backends import BACKENDS, get_backend, resolve_backend

__all__ = ["BACKENDS", "resolve_backend", "selective_scan", "selective_scan_lowrank"]


def selective_scan(
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
    backend: str = "auto",
):
    """Selective scan, h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t, y_t = C_t . h_t + D u_t, out = y silu(z).

    u, delta, z: (B, D, L); A: (D, N) real (negative); B, C: (B, G, N, L) or (B, N, L), channel d using
    group d // (D / G); D, delta_bias: (D,). State and accumulation in float32 whatever the input dtype.
    Returns out (B, D, L) in u's dtype, and h at t = L-1 (B, D, N) when `return_last_state` (no gradient).
    """
    return get_backend(backend, u.device.type).scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                                     return_last_state)


def selective_scan_lowrank(
    u: Tensor,
    dt_low: Tensor,
    dt_weight: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    backend: str = "auto",
    out: Tensor | None = None,
) -> Tensor:
    """`selective_scan` with a low-rank delta: delta[:, d] = dt_weight[d] @ dt_low[:, d // (D / G)].

    u: (B, D, L); dt_low: (B, G, R, L); dt_weight: (D, R); B, C: (B, G, N, L); the rest as `selective_scan`.
    This is Mamba's dt projection (delta = dt_projs_weight @ dt). On the CPU, without autograd, for float32,
    the native kernel computes delta chunk by chunk and never materialises it. `out` (B, D, L), optional:
    the tensor the result is written to; it may be u itself (u is then overwritten; not allowed when autograd
    needs u). Returns out (B, D, L). See `ScanBackend.scan_lowrank`.
    """
    return get_backend(backend, u.device.type).scan_lowrank(u, dt_low, dt_weight, A, B, C, D, delta_bias,
                                                            delta_softplus, out=out)
