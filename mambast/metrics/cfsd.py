"""CFSD, content feature structural distance (Chung et al., StyleID, CVPR 2024), memory-safe.

For an image, F = VGG-19 relu3_1 features (C, L), L = H/4 * W/4 positions (ImageNet-normalised input, the
torchvision "vgg19" layout). Its self-similarity S = F^T F (L x L) is turned into row distributions
P = softmax(S, dim=-1). CFSD(content, stylized) = (1/L) sum_i KL(P_content[i] || P_stylized[i]), i.e. the KL
divergence content -> stylized, averaged over rows. 0 when stylized == content; lower = structure kept.

The common implementation materialises S for a batch at once (16384 x 16384 floats, 1 GiB, per image at
512 px). Here rows are processed in chunks of `chunk` rows: peak extra memory ~ 4 * chunk * L * 4 bytes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cfsd_from_features", "cfsd"]


def cfsd_from_features(f_content: Tensor, f_stylized: Tensor, chunk: int = 1024) -> Tensor:
    """CFSD from relu3_1 features (B, C, H, W) x2 -> (B,) mean row KL(P_content || P_stylized)."""
    if f_content.shape != f_stylized.shape:
        raise ValueError(
            f"CFSD needs equal feature shapes, got {tuple(f_content.shape)}, {tuple(f_stylized.shape)}"
        )
    fc = f_content.flatten(2).float()  # (B, C, L)
    fs = f_stylized.flatten(2).float()
    length = fc.shape[-1]
    total = fc.new_zeros(fc.shape[0], dtype=torch.float64)
    for start in range(0, length, chunk):
        rows = slice(start, min(start + chunk, length))
        log_pc = F.log_softmax(fc[:, :, rows].transpose(1, 2) @ fc, dim=-1)  # (B, r, L)
        log_ps = F.log_softmax(fs[:, :, rows].transpose(1, 2) @ fs, dim=-1)
        total += (log_pc.exp() * (log_pc - log_ps)).sum(dim=(1, 2)).double()
    return (total / length).to(f_content.dtype if f_content.is_floating_point() else torch.float32)


@torch.no_grad()
def cfsd(vgg: torch.nn.Module, content: Tensor, stylized: Tensor, chunk: int = 1024) -> Tensor:
    """CFSD of images (B, 3, H, W) in [0, 1] (same size) with a VGGEncoder (`mambast.nets.vgg`) -> (B,)."""
    return cfsd_from_features(vgg.relu3_1(content), vgg.relu3_1(stylized), chunk)
