"""The 4-direction cross scan and its adjoint, the cross merge (architecture.md section 6).

    direction 0: row-major flatten of (H, W)      direction 1: column-major flatten
    direction 2: direction 0 reversed             direction 3: direction 1 reversed

Both are linear maps; each is the other's transpose, so autograd through these torch ops already gives
the adjoint backward (a gather in the forward becomes a scatter-add in the backward).
"""

from __future__ import annotations

import importlib.util
from functools import cache

from torch import Tensor


@cache
def _triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def cross_scan(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 4, C, L), L = H * W, in the four scan orders (a Triton kernel on CUDA)."""
    if x.is_cuda and _triton_available():
        from .cross_scan_triton import cross_scan_triton

        return cross_scan_triton(x)
    batch, channels, H, W = x.shape
    out = x.new_empty(batch, 4, channels, H * W)
    out[:, 0].copy_(x.reshape(batch, channels, H * W))  # row-major
    out[:, 1].view(batch, channels, W, H).copy_(x.transpose(2, 3))  # column-major
    out[:, 2:].copy_(out[:, :2].flip(-1))  # both reversed
    return out


def cross_merge(y: Tensor, H: int, W: int) -> Tensor:
    """(B, 4, C, L) -> (B, C, L): sum of the four directions, each mapped back to row-major order."""
    if y.is_cuda and _triton_available():
        from .cross_scan_triton import cross_merge_triton

        return cross_merge_triton(y, H, W)
    batch, _, channels, _ = y.shape
    rows = y[:, 0] + y[:, 2].flip(-1)  # row-major
    cols = y[:, 1] + y[:, 3].flip(-1)  # column-major: a (W, H) grid
    return rows.view(batch, channels, H, W).add_(cols.view(batch, channels, W, H).transpose(2, 3)).view(
        batch, channels, H * W)
