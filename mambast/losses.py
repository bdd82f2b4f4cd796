"""The VGG-feature losses of the paper (docs/model.md section 10), shared by training (`mambast.train`) and
evaluation (`mambast.metrics`); this module sits below both and imports neither.

    mean_std(f)   per-channel mean and std over H*W (unbiased variance + eps, then sqrt)
    normal(f)     (f - mean) / std
    content_loss  MSE(normal(F4(Ics)), normal(F4(c))) + MSE(normal(F5(Ics)), normal(F5(c)))
    style_loss    sum_i MSE(mean_i(Ics), mean_i(s)) + MSE(std_i(Ics), std_i(s))      i = 1..5
    feature_loss  sum_i MSE(F_i(a), F_i(b))                                          (identity 2)

F_i are the frozen VGG's relu{i}_1 features (a list of five (B, C_i, H_i, W_i) tensors) of images in [0, 1].
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["mean_std", "normal", "content_loss", "style_loss", "feature_loss"]


def mean_std(feat: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std over H*W: (B, C, H, W) -> two (B, C, 1, 1); std = sqrt(unbiased var + eps)."""
    flat = feat.flatten(2).float()  # float32 statistics even under bf16 autocast
    mean = flat.mean(dim=2)
    std = (flat.var(dim=2, unbiased=True) + eps).sqrt()
    return mean[..., None, None], std[..., None, None]


def normal(feat: Tensor, eps: float = 1e-5) -> Tensor:
    """Instance-normalise (B, C, H, W) features with :func:`mean_std`."""
    mean, std = mean_std(feat, eps)
    return (feat - mean) / std


def content_loss(out_feats: list[Tensor], content_feats: list[Tensor]) -> Tensor:
    """Normalised relu4_1 + relu5_1 MSE (scalar)."""
    return sum(F.mse_loss(normal(o), normal(c)) for o, c in zip(out_feats[3:5], content_feats[3:5], strict=True))


def style_loss(out_feats: list[Tensor], style_feats: list[Tensor]) -> Tensor:
    """Sum over relu1_1..relu5_1 of the MSE of channel means plus the MSE of channel stds (scalar)."""
    total = out_feats[0].new_zeros(())
    for o, s in zip(out_feats, style_feats, strict=True):
        (om, osd), (sm, ssd) = mean_std(o), mean_std(s)
        total = total + F.mse_loss(om, sm) + F.mse_loss(osd, ssd)
    return total


def feature_loss(a: list[Tensor], b: list[Tensor]) -> Tensor:
    """Sum over the taps of the plain feature MSE (scalar)."""
    return sum(F.mse_loss(x, y) for x, y in zip(a, b, strict=True))
