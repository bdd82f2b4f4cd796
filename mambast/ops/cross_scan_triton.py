"""The 4-direction cross scan and cross merge as Triton kernels, each the other's backward (adjoint).

Same maps as mambast.ops.cross_scan (docs/model.md section 6), for CUDA tensors:
    direction 0: row-major flatten of (H, W)      direction 1: column-major flatten
    direction 2: direction 0 reversed             direction 3: direction 1 reversed
cross_scan is a gather (each x element written to 4 places); cross_merge is a gather of 4 elements per
output, summed in float32. One program per (batch * channel, block of BLOCK positions); no atomics.
Triton is imported lazily (TRITON_INTERPRET=1 set before the first call runs the CPU interpreter).
"""

from __future__ import annotations

from functools import cache

import torch
from torch import Tensor

tl = None  # triton.language, bound by _kernels() on first use
BLOCK = 1024


def _cross_scan_kernel(x_ptr, y_ptr, channels, H, W, BLOCK: tl.constexpr):
    """x (B, C, H*W) row-major -> y (B, 4, C, H*W); program (block of positions l, b * C + c)."""
    bc = tl.program_id(1).to(tl.int64)
    length = H * W
    l = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = l < length
    col_src = (l % H) * W + l // H  # column-major position l = w * H + h reads x[h, w]
    x_row = tl.load(x_ptr + bc * length + l, mask=mask)
    x_col = tl.load(x_ptr + bc * length + col_src, mask=mask)
    b, c = bc // channels, bc % channels
    base = (b * 4 * channels + c) * length
    step = channels * length  # from one direction to the next
    tl.store(y_ptr + base + l, x_row, mask=mask)
    tl.store(y_ptr + base + step + l, x_col, mask=mask)
    tl.store(y_ptr + base + 2 * step + (length - 1 - l), x_row, mask=mask)
    tl.store(y_ptr + base + 3 * step + (length - 1 - l), x_col, mask=mask)


def _cross_merge_kernel(y_ptr, x_ptr, channels, H, W, BLOCK: tl.constexpr):
    """y (B, 4, C, H*W) -> x (B, C, H*W) row-major, x[p] = y0[p] + y2[L-1-p] + y1[q] + y3[L-1-q]."""
    bc = tl.program_id(1).to(tl.int64)
    length = H * W
    p = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = p < length
    q = (p % W) * H + p // W  # column-major position of row-major p = h * W + w
    b, c = bc // channels, bc % channels
    base = (b * 4 * channels + c) * length
    step = channels * length
    acc = tl.load(y_ptr + base + p, mask=mask, other=0.0).to(tl.float32)
    acc += tl.load(y_ptr + base + step + q, mask=mask, other=0.0).to(tl.float32)
    acc += tl.load(y_ptr + base + 2 * step + (length - 1 - p), mask=mask, other=0.0).to(tl.float32)
    acc += tl.load(y_ptr + base + 3 * step + (length - 1 - q), mask=mask, other=0.0).to(tl.float32)
    tl.store(x_ptr + bc * length + p, acc.to(x_ptr.dtype.element_ty), mask=mask)


@cache
def _kernels():
    try:
        import triton
        import triton.language
    except ImportError as e:
        raise RuntimeError("the Triton cross scan needs the triton package (pip install triton)") from e
    globals()["tl"] = triton.language
    return triton.jit(_cross_scan_kernel), triton.jit(_cross_merge_kernel)


def _scan(x: Tensor) -> Tensor:
    batch, channels, H, W = x.shape
    x = x.contiguous()
    y = x.new_empty(batch, 4, channels, H * W)
    scan_kernel, _ = _kernels()
    scan_kernel[(-(-H * W // BLOCK), batch * channels)](x, y, channels, H, W, BLOCK=BLOCK)
    return y


def _merge(y: Tensor, H: int, W: int) -> Tensor:
    batch, directions, channels, length = y.shape
    if directions != 4 or length != H * W:
        raise ValueError(f"cross_merge: expected y of shape (B, 4, C, {H * W}), got {tuple(y.shape)}")
    y = y.contiguous()
    x = y.new_empty(batch, channels, length)
    _, merge_kernel = _kernels()
    merge_kernel[(-(-length // BLOCK), batch * channels)](y, x, channels, H, W, BLOCK=BLOCK)
    return x


class CrossScanTriton(torch.autograd.Function):
    """(B, C, H, W) -> (B, 4, C, H*W); backward: cross merge."""

    @staticmethod
    def forward(ctx, x):
        ctx.hw = x.shape[2:]
        return _scan(x)

    @staticmethod
    def backward(ctx, dy):
        H, W = ctx.hw
        return _merge(dy, H, W).view(dy.shape[0], dy.shape[2], H, W)


class CrossMergeTriton(torch.autograd.Function):
    """(B, 4, C, H*W) -> (B, C, H*W); backward: cross scan."""

    @staticmethod
    def forward(ctx, y, H, W):
        ctx.hw = (H, W)
        return _merge(y, H, W)

    @staticmethod
    def backward(ctx, dx):
        H, W = ctx.hw
        return _scan(dx.reshape(dx.shape[0], dx.shape[1], H, W)), None, None


def cross_scan_triton(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 4, C, L), L = H * W, in the four scan orders (as mambast.ops.cross_scan)."""
    if x.dim() != 4:
        raise ValueError(f"cross_scan: expected x of shape (B, C, H, W), got {tuple(x.shape)}")
    return CrossScanTriton.apply(x)


def cross_merge_triton(y: Tensor, H: int, W: int) -> Tensor:
    """(B, 4, C, L) -> (B, C, L): the four directions mapped back to row-major order and summed."""
    return CrossMergeTriton.apply(y, int(H), int(W))
