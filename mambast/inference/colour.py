"""Colour preservation (Gatys et al., "Preserving Color in Neural Artistic Style Transfer", 2016): the two
methods of that note, on (3, H, W) / (B, 3, H, W) tensors in [0, 1].

- luminance: the output's luminance with the content's chroma, in YCbCr (ITU-R BT.601, full range, as JPEG):
  Y from the output, Cb and Cr from the content. The output's chroma equals the content's exactly.
- match: before stylizing, the style's colours are mapped by the affine transform that gives them the
  content's RGB mean and covariance (x' = A (x - mu_s) + mu_c, A = Sigma_c^1/2 Sigma_s^-1/2, symmetric square
  roots); the style's texture is kept, its palette becomes the content's. Colour directions in which the style
  varies only at noise level (about 2 levels of 255) are not stretched (`match_colour`).
"""

from __future__ import annotations

import torch
from torch import Tensor

# BT.601 full-range RGB -> YCbCr (offsets 0.5 for Cb, Cr in [0, 1] units)
_RGB_TO_YCBCR = torch.tensor([[0.299, 0.587, 0.114],
                              [-0.168736, -0.331264, 0.5],
                              [0.5, -0.418688, -0.081312]], dtype=torch.float64)


def rgb_to_ycbcr(image: Tensor) -> Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> YCbCr (Y in [0, 1], Cb/Cr centred at 0.5)."""
    m = _RGB_TO_YCBCR.to(image.device, image.dtype)
    out = torch.einsum("ij,...jhw->...ihw", m, image)
    return out + torch.tensor([0.0, 0.5, 0.5], device=image.device, dtype=image.dtype)[:, None, None]


def ycbcr_to_rgb(image: Tensor) -> Tensor:
    """Inverse of `rgb_to_ycbcr`."""
    m = torch.linalg.inv(_RGB_TO_YCBCR).to(image.device, image.dtype)
    shifted = image - torch.tensor([0.0, 0.5, 0.5], device=image.device, dtype=image.dtype)[:, None, None]
    return torch.einsum("ij,...jhw->...ihw", m, shifted)


def keep_content_chroma(output: Tensor, content: Tensor) -> Tensor:
    """The "luminance" method: Y of `output` (clamped to [0, 1]), Cb/Cr of `content`; both (..., 3, H, W) of one
    size. Colours outside the RGB gamut are clamped later, with every output."""
    out, con = rgb_to_ycbcr(output.float()), rgb_to_ycbcr(content.float())
    luma = out[..., :1, :, :].clamp(0, 1)
    return ycbcr_to_rgb(torch.cat([luma, con[..., 1:, :, :]], dim=-3)).to(output.dtype)


# Colour variation at or below this level is noise (8-bit quantisation, dithering, JPEG): a style's colour
# directions whose variance is about NOISE_VARIANCE or less are not stretched to the content's (2 levels of
# 255, squared, in [0, 1] units).
NOISE_VARIANCE = (2 / 255) ** 2


def _sqrt(cov: Tensor) -> Tensor:
    """Symmetric square root of a covariance (3, 3) (negative rounding errors clamped to 0)."""
    evals, evecs = torch.linalg.eigh(cov)
    return (evecs * evals.clamp_min(0).sqrt()) @ evecs.T


def match_colour(style: Tensor, content: Tensor, noise: float = NOISE_VARIANCE) -> Tensor:
    """The "match" method: `style` (3, H, W) recoloured to the RGB mean/covariance of `content` (3, H', W'),
    clamped to [0, 1].

    The style's deviations from its mean are split along the eigenvectors of its covariance (variances l_i)
    into signal (weight w_i = l_i^3 / (l_i^3 + noise^3)) and noise (1 - w_i). The signal is mapped by
    Sigma_c^1/2 Sigma_s^-1/2 (the exact match when every l_i >> noise); the noise is kept as it is, not
    stretched: a nearly flat style (or a grey style's chroma) stays nearly flat, in the content's mean colour.
    """
    s, c = style.double().flatten(1), content.double().flatten(1)  # (3, Ls), (3, Lc)
    mu_s, mu_c = s.mean(1, keepdim=True), c.mean(1, keepdim=True)
    evals, evecs = torch.linalg.eigh(torch.cov(s))
    evals = evals.clamp_min(0)
    signal = evals**3 / (evals**3 + noise**3)  # (3,) in [0, 1): ~0 below the noise, ~1 above
    whiten = (evecs * (signal * evals.clamp_min(1e-12).rsqrt())) @ evecs.T  # Sigma_s^-1/2 on the signal
    keep = (evecs * (1 - signal)) @ evecs.T  # the noise part, unchanged
    transform = _sqrt(torch.cov(c)) @ whiten + keep
    out = transform @ (s - mu_s) + mu_c
    return out.clamp(0, 1).reshape(style.shape).to(style.dtype)
