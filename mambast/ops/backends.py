"""The scan backend table: one object per backend holding everything an SS2D layer runs (docs/native-scan.md).

    name        scan            low-rank scan                  cross scan / merge      runs on
    "ref"       scan_ref.py     delta formed, then scan        torch ops               any device (tests; slow)
    "torch"     scan_torch.py   delta formed, then scan        torch ops               any device
    "cpu"       scan_cpu.py     fused in the C kernel          torch ops               CPU
    "triton"    scan_triton.py  delta formed, then scan        Triton kernels          CUDA
    "mamba_ssm" mamba_ssm pkg   delta formed, then scan        Triton if importable    CUDA

"auto" resolves per device: CPU -> "cpu" when the native kernel builds (else "torch", with a warning); CUDA ->
"mamba_ssm" when importable, else "triton" when importable, else "torch". A model picks its backend once
(`MambaST.set_scan_backend`); every SS2D layer then takes scan, low-rank scan and cross scan/merge from the
same object, so `set_scan_backend("torch")` runs torch ops only, on every device.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch
from torch import Tensor

from . import custom_ops  # registers torch.ops.mambast.scan_lowrank_cpu (used while compiling)
from .cross_scan_torch import cross_merge_torch, cross_scan_torch

BACKENDS = ("auto", "ref", "torch", "cpu", "mamba_ssm", "triton")


@cache
def has_module(name: str) -> bool:
    """Whether `name` is importable (cached)."""
    return importlib.util.find_spec(name) is not None


def _scan_fn(name: str) -> Callable:
    """The `selective_scan` implementation of a concrete backend (imported lazily)."""
    if name == "ref":
        from .scan_ref import selective_scan_ref as fn
    elif name == "torch":
        from .scan_torch import selective_scan_torch as fn
    elif name == "cpu":
        from .scan_cpu import selective_scan_cpu as fn
    elif name == "triton":
        from .scan_triton import selective_scan_triton as fn
    else:
        from .scan_mamba_ssm import selective_scan_mamba_ssm as fn
    return fn


def _triton_cross(name: str) -> bool:
    return name == "triton" or (name == "mamba_ssm" and has_module("triton"))


@dataclass(frozen=True)
class ScanBackend:
    """One concrete backend: the selective scan, its low-rank-delta form and the cross scan/merge it pairs with.

    Shapes as `mambast.ops.selective_scan`; cross_scan (B, C, H, W) -> (B, 4, C, L), cross_merge
    (B, 4, C, L), H, W -> (B, C, L).
    """

    name: str

    def scan(self, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
             z: Tensor | None = None, delta_bias: Tensor | None = None, delta_softplus: bool = False,
             return_last_state: bool = False):
        """The selective scan (contract of mamba_ssm's selective_scan_fn, docs/selective-scan.md)."""
        return _scan_fn(self.name)(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)

    def scan_lowrank(self, u: Tensor, dt_low: Tensor, dt_weight: Tensor, A: Tensor, B: Tensor, C: Tensor,
                     D: Tensor | None = None, delta_bias: Tensor | None = None, delta_softplus: bool = False,
                     out: Tensor | None = None) -> Tensor:
        """The scan with delta[:, d] = dt_weight[d] @ dt_low[:, d // (D / G)] (Mamba's dt projection).

        u: (B, D, L); dt_low: (B, G, R, L); dt_weight: (D, R); B, C: (B, G, N, L). `out` (B, D, L), optional:
        where the result is written (it may be u itself, which is then overwritten; never with autograd).
        The "cpu" backend computes delta inside the kernel (no (B, D, L) delta tensor) when no gradient is
        needed and everything is float32; elsewhere delta is formed and `scan` runs. Returns out (B, D, L).
        """
        if self.name == "cpu":
            from .scan_cpu import lowrank_native_ok, selective_scan_cpu_lowrank

            if lowrank_native_ok((u, dt_low, dt_weight, A, B, C, D, delta_bias), A, B):
                if _compiling():  # the custom op: one graph under torch.compile (custom_ops.py); a fresh output
                    return torch.ops.mambast.scan_lowrank_cpu(u, dt_low, dt_weight, A, B, C, D, delta_bias,
                                                              delta_softplus)
                return selective_scan_cpu_lowrank(u, dt_low, dt_weight, A, B, C, D, delta_bias, delta_softplus,
                                                  out=out)
        batch, channels, length = u.shape
        groups, rank = dt_low.shape[1], dt_low.shape[2]
        delta = torch.einsum("bgrl,gdr->bgdl", dt_low, dt_weight.reshape(groups, channels // groups, rank))
        y = self.scan(u, delta.reshape(batch, channels, length), A, B, C, D, delta_bias=delta_bias,
                      delta_softplus=delta_softplus)
        return y if out is None else out.copy_(y)

    def bc_buffer(self, shape: tuple[int, int, int, int], like: Tensor) -> Tensor:
        """Zeros (B, G, N, L) for B or C, in the memory layout this backend's scan reads without a copy: the
        native CPU kernel reads (B, G, L, N) rows, so it gets a (B, G, N, L) view of such a tensor. Worth it
        when one B/C feeds several scans (the bounded-memory path scans blocks of channels)."""
        if self.name == "cpu" and like.dtype == torch.float32:
            batch, groups, state, length = shape
            return like.new_zeros(batch, groups, length, state).transpose(-1, -2)
        return like.new_zeros(shape)

    def unavailable_reason(self) -> str:
        """Why this backend cannot run here ("" when it can): no native build, or a missing package. Device
        checks (CUDA for "triton" and "mamba_ssm") happen when called."""
        if self.name == "cpu":
            from .scan_cpu import unavailable_reason

            return unavailable_reason()
        if self.name in ("triton", "mamba_ssm") and not has_module(self.name):
            return f"the {self.name} package is not installed"
        return ""

    def available(self) -> bool:
        """Whether this backend can run here (see `unavailable_reason`)."""
        return not self.unavailable_reason()

    @property
    def cross_impl(self) -> str:
        """Which cross scan/merge this backend runs on CUDA tensors: "triton" or "torch" (CPU: always torch)."""
        return "triton" if _triton_cross(self.name) else "torch"

    def cross_scan(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, 4, C, L), the four scan orders (docs/model.md section 6)."""
        if x.is_cuda and self.cross_impl == "triton":
            from .cross_scan_triton import cross_scan_triton

            return cross_scan_triton(x)
        return cross_scan_torch(x)

    def cross_merge(self, y: Tensor, H: int, W: int) -> Tensor:
        """(B, 4, C, L) -> (B, C, L): the four directions mapped back to row-major order and summed."""
        if y.is_cuda and self.cross_impl == "triton":
            from .cross_scan_triton import cross_merge_triton

            return cross_merge_triton(y, H, W)
        return cross_merge_torch(y, H, W)


_TABLE = {name: ScanBackend(name) for name in BACKENDS if name != "auto"}


def _compiling() -> bool:
    """Whether torch.compile is tracing this call and the native scan's custom op is registered."""
    is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return custom_ops.AVAILABLE and is_compiling is not None and is_compiling()


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
                  RuntimeWarning, stacklevel=5)


def check_backend_name(backend: str) -> str:
    """`backend` if it names a backend (or "auto"), else ValueError naming the choices."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown selective-scan backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    return backend


def resolve_backend(backend: str, device_type: str) -> str:
    """The concrete backend name "auto" (or an explicit name) means for tensors on `device_type`."""
    if check_backend_name(backend) != "auto":
        return backend
    if device_type == "cpu":
        return "cpu" if _native_cpu_ok() else "torch"
    if device_type == "cuda":
        if has_module("mamba_ssm"):
            return "mamba_ssm"
        if has_module("triton"):
            return "triton"
    return "torch"


def get_backend(backend: str, device_type: str) -> ScanBackend:
    """The backend object for a name ("auto" resolved for `device_type`)."""
    return _TABLE[resolve_backend(backend, device_type)]
