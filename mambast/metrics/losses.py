"""The paper's VGG content and style losses as evaluation metrics (architecture.md section 10).

    mean_std(f)  per-channel mean and std (unbiased variance + 1e-5, then sqrt) over H*W
    normal(f)    (f - mean) / std
    content loss = MSE(normal(F4(Ics)), normal(F4(c))) + MSE(normal(F5(Ics)), normal(F5(c)))
    style loss   = sum_{i=1..5} MSE(mean_i(Ics), mean_i(s)) + MSE(std_i(Ics), std_i(s))

F_i: relu i_1 features of the "vgg_normalised" network (`mambast.nets.vgg.load_vgg`), images in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["mean_std", "content_loss", "style_loss"]


def mean_std(f: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """(B, C, H, W) -> per-channel mean, std (B, C, 1, 1); std = sqrt(unbiased var + eps)."""
    flat = f.flatten(2)
    return flat.mean(-1)[..., None, None], (flat.var(-1, unbiased=True) + eps).sqrt()[..., None, None]


def _normal(f: Tensor) -> Tensor:
    mean, std = mean_std(f)
    return (f - mean) / std


def content_loss(feats_stylized: list[Tensor], feats_content: list[Tensor]) -> Tensor:
    """Paper content loss from [relu1_1..relu5_1] feature lists -> scalar (relu4_1 and relu5_1 terms)."""
    return sum(F.mse_loss(_normal(feats_stylized[i]), _normal(feats_content[i])) for i in (3, 4))


def style_loss(feats_stylized: list[Tensor], feats_style: list[Tensor]) -> Tensor:
    """Paper style loss from [relu1_1..relu5_1] feature lists -> scalar (mean / std matching, 5 layers)."""
    total = feats_stylized[0].new_zeros(())
    for fs, ft in zip(feats_stylized, feats_style, strict=True):
        (m1, s1), (m2, s2) = mean_std(fs), mean_std(ft)
        total = total + F.mse_loss(m1, m2) + F.mse_loss(s1, s2)
    return total


@torch.no_grad()
def paper_losses(
    vgg: torch.nn.Module, stylized: Tensor, content: Tensor, style: Tensor
) -> tuple[float, float]:
    """(content loss, style loss) of one stylized image (1, 3, H, W) against its content and style images.

    The style image may have any size (only channel statistics are compared); content must match stylized.
    """
    fo = vgg(stylized)
    return float(content_loss(fo, vgg(content))), float(style_loss(fo, vgg(style)))
