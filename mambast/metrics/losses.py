"""The paper's VGG content and style losses as evaluation metrics (docs/model.md section 10).

    mean_std(f)  per-channel mean and std (unbiased variance + 1e-5, then sqrt) over H*W
    normal(f)    (f - mean) / std
    content loss = MSE(normal(F4(Ics)), normal(F4(c))) + MSE(normal(F5(Ics)), normal(F5(c)))
    style loss   = sum_{i=1..5} MSE(mean_i(Ics), mean_i(s)) + MSE(std_i(Ics), std_i(s))

F_i: relu i_1 features of the "vgg_normalised" network (`mambast.nets.vgg.load_vgg`), images in [0, 1].
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..losses import content_loss, mean_std, style_loss  # one definition, shared with training (mambast.losses)

__all__ = ["mean_std", "content_loss", "style_loss", "paper_losses"]


@torch.no_grad()
def paper_losses(vgg: torch.nn.Module, stylized: Tensor, content: Tensor, style: Tensor) -> tuple[float, float]:
    """(content loss, style loss) of one stylized image (1, 3, H, W) against its content and style images.

    The style image may have any size (only channel statistics are compared); content must match stylized.
    """
    fo = vgg(stylized)
    return float(content_loss(fo, vgg(content))), float(style_loss(fo, vgg(style)))
