"""Bounded-memory inference: how many scan channels (and how large a CNN-decoder tile) fit a memory budget.

A model-wide budget (bytes, `MambaST.set_memory_budget`) bounds the working set of one SS2D/ST-SS2D layer
and of the CNN decoder at inference (no autograd). Below it every layer runs as published, all channels at
once. Above it an SS2D layer runs its Di channels in blocks (in_proj rows, depthwise conv, cross scan, scan,
merge per block; docs/memory.md) and the CNN decoder runs in overlapping tiles, so that peak memory grows with
the (H, W, d_model) token maps and the image, not with Di x L. Outputs agree with the unblocked path to float
rounding (tests/test_memory.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import torch
from torch import Tensor, nn

DEFAULT_MEMORY_BUDGET = 768 * 2**20  # bytes per layer working set; None turns blocking off
FLOAT = 4  # bytes; the estimates are for float32 activations (bf16 halves them: the estimate is then safe)
LANES = 16  # channel blocks are multiples of the native kernel's SIMD width


def unblocked_bytes(tokens: int, d_inner: int, directions: int) -> int:
    """Working set of one SS2D/ST-SS2D layer run all at once: in_proj output (2 Di), conv (Di), cross scan
    (K Di), merge and gating (2 Di), the style path of ST-SS2D (K Di more) per token; `tokens` = B * L."""
    return tokens * FLOAT * (5 + 2 * directions) * d_inner


def block_plan(tokens: int, d_inner: int, d_model: int, dt_rank: int, d_state: int, directions: int,
               budget: int | None) -> tuple[int, bool] | None:
    """(channels per block, keep a (B, Di, L) buffer) for a layer over `tokens` = B * L positions, or None to
    run all channels at once (no budget, or the unblocked working set fits).

    Fixed cost per token: the projections (K (R + 2N) floats: delta's low rank, B, C) and the output
    accumulator (d_model). Per channel of a block: its projected and conv maps, K scanned rows, the merged
    row, the gate: (4 + K) floats. The buffer holding the scanned stream's features and then its merged y
    (so nothing is computed twice) is used when it takes at most half of what the fixed part leaves.
    """
    if budget is None or unblocked_bytes(tokens, d_inner, directions) <= budget:
        return None
    fixed = tokens * FLOAT * (directions * (dt_rank + 2 * d_state) + d_model)
    free = max(budget - fixed, 0)
    keep = tokens * FLOAT * d_inner <= free // 2
    if keep:
        free -= tokens * FLOAT * d_inner
    per_channel = tokens * FLOAT * (4 + directions)
    block = max(free // per_channel // LANES * LANES, LANES)
    return min(block, d_inner), keep


def decoder_tile(tokens_h: int, tokens_w: int, batch: int, bytes_per_token: int, halo: int,
                 budget: int | None) -> int | None:
    """Side (in tokens) of the square tiles the CNN decoder runs on, or None for the whole map at once.

    bytes_per_token: the decoder's largest activation triple (input, padded input, output) per token and image;
    a tile of side t reads a (t + 2 halo)^2 window.
    """
    if budget is None or batch * tokens_h * tokens_w * bytes_per_token <= budget:
        return None
    window = int((budget / (batch * bytes_per_token)) ** 0.5)
    return max(window - 2 * halo, 8)


def layer_norm_(tokens: Tensor, norm: nn.LayerNorm, rows: int = 8192) -> Tensor:
    """norm(tokens) written over `tokens` (contiguous, LayerNorm over the last dim), `rows` positions at a time:
    the same numbers as norm(tokens) (LayerNorm is per position), without a second token map (the Mamba
    decoder's final norm at 12 MP: 384 MB). Returns `tokens`. Inference only (the input is destroyed).
    Under autocast (whose LayerNorm returns float32) or on a non-contiguous input: norm(tokens), a new tensor."""
    if not tokens.is_contiguous() or torch.is_autocast_enabled(tokens.device.type):
        return norm(tokens)
    flat = tokens.view(-1, tokens.shape[-1])
    for start in range(0, flat.shape[0], rows):
        flat[start:start + rows] = norm(flat[start:start + rows])
    return tokens


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, looked up on first use (find_library may run ldconfig: not at import time)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def release_freed_memory() -> bool:
    """Hand the C heap's free pages back to the OS (glibc `malloc_trim(0)`); True where it ran (glibc only).

    The channel blocks' tens-of-MB temporaries are served from glibc's heap once its dynamic mmap threshold
    has risen, and freed heap space is not returned by itself: at 12 MP that held about 480 MB of peak RSS
    (docs/memory.md). Called after every layer that ran in blocks (a few ms)."""
    try:
        libc = _libc()
        return libc is not None and libc.malloc_trim(0) >= 0
    except AttributeError:
        return False
