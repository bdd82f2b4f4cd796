"""CFSD, content feature structural distance (Chung et al., StyleID, CVPR 2024), as StyleID's script computes it.

For an image, F = VGG-19 relu3_1 features (C, L), L = H/4 * W/4 positions (ImageNet-normalised input, the
torchvision "vgg19" layout), scaled by 1/C. Its self-similarity S = (F/C)^T (F/C) = F^T F / C^2 (L x L) is
turned into row distributions P = softmax(S, dim=-1), and

    CFSD(content, stylized) = sum_{i=1..L} KL(P_content[i] || P_stylized[i])

the per-row KL divergences content -> stylized SUMMED over the L rows (StyleID's
``kl_div(..., reduction='batchmean')`` on a (1, L*L) tensor divides the total by the batch of 1, not by L).
0 when stylized == content; lower = structure kept. The protocol's value is the mean over pairs.

The common implementation materialises S at once (16384 x 16384 floats, 1 GiB, per image at 512 px). Here
rows are processed in chunks of `chunk` rows: the similarities in float32 (as the reference), the softmax and
KL in float64, since each row's KL (~1e-3) is a difference of log-probabilities near -log(L) ~ -10 that float32
resolves only to ~1e-6. Peak extra memory ~ chunk * L * 40 bytes (160 MiB for 256 rows at 512 px); the result
equals the dense float64 computation (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cfsd_from_features", "cfsd"]


def cfsd_from_features(f_content: Tensor, f_stylized: Tensor, chunk: int = 256) -> Tensor:
    """CFSD from relu3_1 features (B, C, H, W) x2 -> (B,) float64 sums over rows of KL(P_content || P_stylized).

    chunk: rows of the L x L similarity processed at once (>= 1). Raises ValueError on unequal shapes.
    """
    if f_content.shape != f_stylized.shape:
        raise ValueError(f"CFSD needs equal feature shapes, got {tuple(f_content.shape)}, {tuple(f_stylized.shape)}")
    if int(chunk) < 1:
        raise ValueError(f"chunk must be a positive number of rows, got {chunk}")
    channels = f_content.shape[1]
    fc = f_content.flatten(2).float() / channels  # (B, C, L)
    fs = f_stylized.flatten(2).float() / channels
    length = fc.shape[-1]
    total = fc.new_zeros(fc.shape[0], dtype=torch.float64)
    for start in range(0, length, int(chunk)):
        rows = slice(start, min(start + int(chunk), length))
        log_pc = F.log_softmax((fc[:, :, rows].transpose(1, 2) @ fc).double(), dim=-1)  # (B, r, L) float64
        log_ps = F.log_softmax((fs[:, :, rows].transpose(1, 2) @ fs).double(), dim=-1)
        total += (log_pc.exp() * (log_pc - log_ps)).sum(dim=(1, 2))
    return total


@torch.no_grad()
def cfsd(vgg: torch.nn.Module, content: Tensor, stylized: Tensor, chunk: int = 256) -> Tensor:
    """CFSD of images (B, 3, H, W) in [0, 1] (same size) with a "vgg19" VGGEncoder (`mambast.nets.vgg`) -> (B,)."""
    return cfsd_from_features(vgg.relu3_1(content), vgg.relu3_1(stylized), chunk)
