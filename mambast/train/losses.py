"""The Mamba-ST training objective (docs/model.md section 10). All terms are mean-squared errors.

    content   = MSE(normal(F4(Ics)), normal(F4(c))) + MSE(normal(F5(Ics)), normal(F5(c)))
    style     = sum_i MSE(mean_i(Ics), mean_i(s)) + MSE(std_i(Ics), std_i(s))           i = 1..5
    identity1 = MSE(Icc, c) + MSE(Iss, s)                       Icc = model(c, c), Iss = model(s, s)
    identity2 = sum_i MSE(F_i(Icc), F_i(c)) + MSE(F_i(Iss), F_i(s))
    total     = 7 content + 10 style + 70 identity1 + 1 identity2

F_i are the frozen VGG's relu{i}_1 features of images in [0, 1]; Ics = model(c, s). The feature losses
themselves live in `mambast.losses` (shared with the metrics); this module is the training objective.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..losses import content_loss, feature_loss, mean_std, normal, style_loss

__all__ = ["DISTILL_TERMS", "LOSS_NAMES", "LossWeights", "content_loss", "feature_loss", "loss_terms", "mean_std",
           "normal", "style_loss", "training_losses", "total_loss"]

LOSS_NAMES = ("content", "style", "identity1", "identity2")
DISTILL_TERMS = ("pixel", "feature", "teacher_style", "content", "style")  # mambast.train.distill.distill_terms


@dataclass(frozen=True)
class LossWeights:
    """Weights of the four terms in the total loss (the paper's 7 / 10 / 70 / 1 by default)."""

    content: float = 7.0
    style: float = 10.0
    identity1: float = 70.0
    identity2: float = 1.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def loss_terms(
    model: nn.Module,
    vgg: nn.Module,
    content: Tensor,
    style: Tensor,
    shuffle: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The four unweighted terms and the images they came from ({"Ics", "Icc", "Iss"}: (B, 3, H, W) each).

    content, style: (B, 3, H, W) in [0, 1] with the same size. Three model passes (c,s), (c,c), (s,s),
    each drawing its own style shuffles from `generator` (or torch's global RNG when None).
    """
    if content.shape != style.shape:
        raise ValueError(f"content {tuple(content.shape)} and style {tuple(style.shape)} must have one shape")
    ics = model(content, style, shuffle=shuffle, generator=generator)
    icc = model(content, content, shuffle=shuffle, generator=generator)
    iss = model(style, style, shuffle=shuffle, generator=generator)
    with torch.no_grad():
        c_feats, s_feats = vgg(content), vgg(style)
    ics_feats, icc_feats, iss_feats = vgg(ics), vgg(icc), vgg(iss)
    terms = {
        "content": content_loss(ics_feats, c_feats),
        "style": style_loss(ics_feats, s_feats),
        "identity1": F.mse_loss(icc, content) + F.mse_loss(iss, style),
        "identity2": feature_loss(icc_feats, c_feats) + feature_loss(iss_feats, s_feats),
    }
    return terms, {"Ics": ics, "Icc": icc, "Iss": iss}


def training_losses(
    model: nn.Module,
    vgg: nn.Module,
    content: Tensor,
    style: Tensor,
    shuffle: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """The four unweighted Mamba-ST losses {"content", "style", "identity1", "identity2"} (scalar tensors).

    model: a MambaST (train mode for DropPath); vgg: a frozen loss network from :func:`mambast.load_vgg`;
    content, style: (B, 3, H, W) floats in [0, 1]. Combine them with :func:`total_loss`.
    """
    return loss_terms(model, vgg, content, style, shuffle=shuffle, generator=generator)[0]


def total_loss(terms: dict[str, Tensor], weights: LossWeights | None = None) -> Tensor:
    """7 content + 10 style + 70 identity1 + 1 identity2 (or the given weights)."""
    w = (weights or LossWeights()).to_dict()
    return sum(w[name] * terms[name] for name in LOSS_NAMES)
