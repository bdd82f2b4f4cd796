"""The selective scan's argument shapes (docs/selective-scan.md), checked in one place for every backend."""

from __future__ import annotations

from torch import Tensor

__all__ = ["check_scan_shapes"]


def check_scan_shapes(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> None:
    """u, delta: (B, D, L) of one shape; A: (D, N); B, C: (B, G, N, L) or (B, N, L), with G dividing D.
    Raises ValueError naming the argument (device, dtype and real-A rules are each backend's own)."""
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"mambast: u and delta must be (B, D, L) of one shape, got {tuple(u.shape)} "
                         f"and {tuple(delta.shape)}")
    batch, channels, length = u.shape
    if A.dim() != 2 or A.shape[0] != channels:
        raise ValueError(f"mambast: A must be (D, N) with D = {channels}, got {tuple(A.shape)}")
    for name, M in (("B", B), ("C", C)):
        if M.dim() not in (3, 4) or M.shape[0] != batch or M.shape[-2:] != (A.shape[1], length):
            raise ValueError(f"mambast: {name} must be (B, G, N, L) or (B, N, L) with B = {batch}, N = "
                             f"{A.shape[1]}, L = {length}, got {tuple(M.shape)}")
        groups = 1 if M.dim() == 3 else M.shape[1]
        if channels % groups:
            raise ValueError(f"mambast: channels ({channels}) must be a multiple of the B/C groups ({groups})")
