"""`selective_scan`: one entry point, the contract of mamba_ssm's `selective_scan_fn` (selective-scan.md).

Backends (``backend=``):
    "ref"      the plain float loop of scan_ref.py (tests; slow)
    "torch"    a pure-torch path for any device (correct, slower): the fallback
    "cpu"      the native CPU kernel of scan_cpu.py (compiled on first use, cached)
    "mamba_ssm" the CUDA kernel of the mamba_ssm package, when installed
    "triton"   the Triton GPU kernel of scan_triton.py
    "auto"     CPU tensors: "cpu", else "torch" with a warning; CUDA tensors: "mamba_ssm" when importable,
               else "triton" when importable, else "torch".
"""

from __future__ import annotations

import importlib.util
import warnings
from functools import cache

import torch
from torch import Tensor

BACKENDS = ("auto", "ref", "torch", "cpu", "mamba_ssm", "triton")


@cache
def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _native_cpu_ok() -> bool:
    """Whether the native kernel can run now (MAMBAST_NO_NATIVE is read at every call; the build is cached)."""
    from .scan_cpu import native_available, unavailable_reason

    ok = native_available()
    if not ok:
        _warn_fallback(unavailable_reason())
    return ok


@cache
def _warn_fallback(reason: str) -> None:  # once per reason
    warnings.warn(f"mambast: native CPU selective scan unavailable ({reason}); using the slower pure-torch scan",
                  RuntimeWarning, stacklevel=4)


def resolve_backend(backend: str, device_type: str) -> str:
    """The concrete backend "auto" (or an explicit name) means for tensors on `device_type`."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown selective-scan backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    if device_type == "cpu":
        return "cpu" if _native_cpu_ok() else "torch"
    if device_type == "cuda":
        if _has_module("mamba_ssm"):
            return "mamba_ssm"
        if _has_module("triton"):
            return "triton"
    return "torch"


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
    name = resolve_backend(backend, u.device.type)
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    if name == "ref":
        from .scan_ref import selective_scan_ref

        return selective_scan_ref(*args)
    if name == "torch":
        from .scan_torch import selective_scan_torch

        return selective_scan_torch(*args)
    if name == "cpu":
        from .scan_cpu import selective_scan_cpu

        return selective_scan_cpu(*args)
    if name == "triton":
        from .scan_triton import selective_scan_triton

        return selective_scan_triton(*args)
    from .scan_mamba_ssm import selective_scan_mamba_ssm

    return selective_scan_mamba_ssm(*args)


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
    inplace: bool = False,
) -> Tensor:
    """`selective_scan` with a low-rank delta: delta[:, d] = dt_weight[d] @ dt_low[:, d // (D / G)].

    u: (B, D, L); dt_low: (B, G, R, L); dt_weight: (D, R); B, C: (B, G, N, L); the rest as `selective_scan`.
    This is Mamba's dt projection (delta = dt_projs_weight @ dt). On the CPU, without autograd, for float32,
    the native kernel computes delta chunk by chunk and never materialises it (and, with `inplace=True`, may
    write the output into u's memory: u is then overwritten); otherwise delta is formed and `selective_scan`
    runs with `backend`. Returns out (B, D, L).
    """
    batch, channels, length = u.shape
    groups, rank = dt_low.shape[1], dt_low.shape[2]
    if resolve_backend(backend, u.device.type) == "cpu":
        from .scan_cpu import lowrank_native_ok, selective_scan_cpu_lowrank

        if lowrank_native_ok((u, dt_low, dt_weight, A, B, C, D, delta_bias), A, B):
            return selective_scan_cpu_lowrank(u, dt_low, dt_weight, A, B, C, D, delta_bias, delta_softplus,
                                              inplace)
    delta = torch.einsum("bgrl,gdr->bgdl", dt_low, dt_weight.reshape(groups, channels // groups, rank))
    return selective_scan(u, delta.reshape(batch, channels, length), A, B, C, D, delta_bias=delta_bias,
                          delta_softplus=delta_softplus, backend=backend)
