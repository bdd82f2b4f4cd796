"""The 4-direction cross scan and its adjoint, the cross merge (docs/model.md section 6).

    direction 0: row-major flatten of (H, W)      direction 1: column-major flatten
    direction 2: direction 0 reversed             direction 3: direction 1 reversed

Both are linear maps, each the other's transpose. The implementations: torch ops (cross_scan_torch.py, any
device) and Triton kernels (cross_scan_triton.py, CUDA), picked through the backend table (backends.py).
"""

from __future__ import annotations

from torch import Tensor

from .backends import get_backend, has_module

__all__ = ["cross_merge", "cross_scan"]


def cross_scan(x: Tensor, backend: str = "auto") -> Tensor:
    """(B, C, H, W) -> (B, 4, C, L) with the cross scan of `backend` ("auto": Triton on CUDA when importable)."""
    return get_backend(_cross_backend(backend), x.device.type).cross_scan(x)


def cross_merge(y: Tensor, H: int, W: int, backend: str = "auto") -> Tensor:
    """(B, 4, C, L) -> (B, C, L) with the cross merge of `backend` (as `cross_scan`)."""
    return get_backend(_cross_backend(backend), y.device.type).cross_merge(y, H, W)


def _cross_backend(backend: str) -> str:
    """For the cross scan alone "auto" needs no scan kernel: Triton on CUDA when importable, else torch ops."""
    if backend != "auto":
        return backend
    return "triton" if has_module("triton") else "torch"
