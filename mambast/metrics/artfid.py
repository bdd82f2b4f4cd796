"""ArtFID (Wright & Ommer, "ArtFID: Quantitative Evaluation of Neural Style Transfer", GCPR 2022)."""

from __future__ import annotations

import math

__all__ = ["artfid"]


def artfid(fid: float, lpips: float) -> float:
    """ArtFID = (1 + LPIPS) * (1 + FID).

    fid: FID between stylized and style images on art-tuned Inception features; lpips: mean LPIPS-AlexNet
    between each stylized image and its content image. Lower is better.
    """
    if not (math.isfinite(fid) and math.isfinite(lpips)) or fid < 0 or lpips < 0:
        raise ValueError(f"ArtFID needs finite non-negative FID and LPIPS, got fid={fid}, lpips={lpips}")
    return (1.0 + lpips) * (1.0 + fid)
