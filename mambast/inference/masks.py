"""Spatial control: a mask image splits the content into regions, one style per region, blended in the fused
token space with a soft seam about one token (one patch) wide."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..errors import UserError


def mask_labels(mask: Image.Image, n_styles: int) -> np.ndarray:
    """Region index per pixel, (h, w) int64 in [0, n_styles).

    Two styles: the mask's luminance thresholded at half (dark -> style 0, light -> style 1), so any
    black/white mask works, antialiased or JPEG-compressed. More styles: one exact colour per style, assigned
    in order of increasing luminance (ties by RGB), and the count of colours must equal the count of styles.
    """
    if n_styles < 2:
        raise UserError("a mask needs at least two styles (one per region)")
    if n_styles == 2:
        return (np.asarray(mask.convert("L"), dtype=np.uint8) >= 128).astype(np.int64)
    rgb = np.asarray(mask.convert("RGB"), dtype=np.int64)
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    colours, labels = np.unique(codes, return_inverse=True)
    if len(colours) != n_styles:
        raise UserError(f"{len(colours)} colours for {n_styles} styles (one colour per style; with two styles "
                        "any black/white image works)")
    r, g, b = colours >> 16, (colours >> 8) & 255, colours & 255
    order = np.lexsort((b, g, r, 0.299 * r + 0.587 * g + 0.114 * b))  # luminance first
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[labels].reshape(codes.shape)


def region_weights(labels: np.ndarray, n_styles: int, padded_hw: tuple[int, int], patch: int) -> Tensor:
    """Soft per-token weights (n_styles, H, W) summing to 1 over styles, H = padded_h / patch.

    labels: (h, w) region indices at the content's working size; padded by replication like the content,
    averaged over each patch (partial patches on a seam get both styles), then smoothed by a 3 x 3 binomial
    filter over tokens (the soft seam)."""
    one_hot = F.one_hot(torch.from_numpy(labels), n_styles).permute(2, 0, 1).float()[None]  # (1, R, h, w)
    h, w = labels.shape
    H, W = padded_hw
    one_hot = F.pad(one_hot, (0, W - w, 0, H - h), mode="replicate")
    tokens = F.avg_pool2d(one_hot, patch)  # (1, R, H/p, W/p)
    kernel = torch.tensor([1.0, 2.0, 1.0])
    kernel = (kernel[:, None] * kernel[None, :] / 16).expand(n_styles, 1, 3, 3)
    smooth = F.conv2d(F.pad(tokens, (1, 1, 1, 1), mode="replicate"), kernel, groups=n_styles)
    return (smooth / smooth.sum(1, keepdim=True))[0]
