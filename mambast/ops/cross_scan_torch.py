"""The 4-direction cross scan and its adjoint, the cross merge, with torch ops (any device; docs/model.md
section 6). The Triton versions are in cross_scan_triton.py; `mambast.ops.cross_scan` / `cross_merge` pick one
through the backend table (backends.py).

    direction 0: row-major flatten of (H, W)      direction 1: column-major flatten
    direction 2: direction 0 reversed             direction 3: direction 1 reversed

Both are linear maps; each is the other's transpose, so autograd through these torch ops already gives
the adjoint backward (a gather in the forward becomes a scatter-add in the backward).
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["cross_merge_torch", "cross_scan_torch"]


def cross_scan_torch(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 4, C, L), L = H * W, in the four scan orders, with torch ops (any device)."""
    batch, channels, H, W = x.shape
    out = x.new_empty(batch, 4, channels, H * W)
    out[:, 0].copy_(x.reshape(batch, channels, H * W))  # row-major
    out[:, 1].view(batch, channels, W, H).copy_(x.transpose(2, 3))  # column-major
    out[:, 2:].copy_(out[:, :2].flip(-1))  # both reversed
    return out


def cross_merge_torch(y: Tensor, H: int, W: int) -> Tensor:
    """(B, 4, C, L) -> (B, C, L): sum of the four directions, each mapped back to row-major order (torch ops)."""
    batch, _, channels, _ = y.shape
    rows = y[:, 0] + y[:, 2].flip(-1)  # row-major
    cols = y[:, 1] + y[:, 3].flip(-1)  # column-major: a (W, H) grid
    return rows.view(batch, channels, H, W).add_(cols.view(batch, channels, W, H).transpose(2, 3)).view(
        batch, channels, H * W)
