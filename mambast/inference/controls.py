"""The creative controls, as one small dataclass carried by every front-end into the engine.

All of them act where Mamba-ST fuses content and style, in the fused token space (after the ST-VSS decoder,
before the CNN decoder), so each output is decoded once:

    fused_i  = fuse(content_tokens, style_tokens_i)                  one per style, same shuffle seed
    stylized = sum_i w_i(x) fused_i                                  w: style weights, or the mask's regions
    fused    = alpha * stylized + (1 - alpha) * fuse(content_tokens, style_encoder(content))   (identity)
    output   = decode(fused)                     then colour preservation, if asked, in pixel space
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import FieldError
from .values import check_flag, check_number, check_numbers, check_optional, check_seed

COLOR_METHODS = ("luminance", "match")
MIN_STYLE_SIZE = 8  # px: one patch of the model (a smaller style cannot be tiled to a grid meaningfully)


@dataclass(frozen=True)
class Controls:
    """How to stylize (every field has the paper's behaviour as its default).

    Numbers may be of any real type (numpy scalars and 0-d arrays too; bools are not numbers); they are stored
    as Python int/float. FieldError (one line naming the field) for a value out of its range.

    alpha: content/style trade-off in [0, 1]; 1 = the stylized output, 0 = the identity output model(c, c).
    style_weights: one weight per style to mix several styles into one output (a sequence or a 1-d array,
        stored as a tuple of floats, normalised to sum 1 when used);
        None with one style = that style; None with a mask = the mask's regions.
    preserve_color: None, "luminance" (keep the output's luminance, take the content's chroma, in YCbCr) or
        "match" (recolour the style to the content's colour mean/covariance before stylizing); True means
        "luminance" and False None, as the bare `--preserve-color` flag and its absence.
    style_size: None = style resized to the content's padded size (the paper's policy); N (whole, >= 8) = its
        short side resized to N px, aspect and texture scale kept, mirror-tiled/cropped to the grid (the
        planned style is checked against the engine's pixel limit before it is resized).
    mask: None, or an image (path, PIL or numpy array) at any size, resized to the content (nearest): one
        region per style (two styles: dark/light; more: one colour per style in order of luminance), soft
        seam one token wide.
    shuffle / seed: the published style shuffle (True/False) and its seed (None: drawn from torch's global RNG;
        else a whole number in [-2**63, 2**64 - 1]).
    """

    alpha: float = 1.0
    style_weights: tuple[float, ...] | None = None
    preserve_color: str | None = None
    style_size: int | None = None
    mask: Image.Image | np.ndarray | str | Path | None = field(default=None, compare=False)
    shuffle: bool = True
    seed: int | None = None

    def __post_init__(self):
        """Every field checked (one-line FieldError naming it) and normalised: numbers of any real type (numpy
        scalars, 0-d arrays) become int/float, style_weights (any sequence, numpy arrays too) a tuple."""
        set_ = partial(object.__setattr__, self)
        set_("alpha", check_number(self.alpha, "alpha", 0, 1))
        if self.style_weights is not None:
            weights = check_numbers(self.style_weights, "style_weights", low=0)
            if not 0 < sum(weights) < math.inf:  # 1e308 twice overflows: the normalised weights would be NaN
                raise FieldError(f"style_weights must be non-negative numbers with a positive, finite sum, got "
                                 f"{weights}", "style_weights")
            set_("style_weights", weights)
        if self.preserve_color is True or self.preserve_color is False:  # as the bare --preserve-color flag
            set_("preserve_color", COLOR_METHODS[0] if self.preserve_color else None)
        if self.preserve_color not in (None, *COLOR_METHODS):
            raise FieldError(f"preserve_color must be None or one of {', '.join(COLOR_METHODS)}, "
                             f"got {self.preserve_color!r}", "preserve_color")
        if self.mask is not None and not isinstance(self.mask, (Image.Image, np.ndarray, str, os.PathLike)):
            raise FieldError(f"mask must be an image file path, a PIL image or a numpy array, got "
                             f"{type(self.mask).__name__}", "mask")
        if self.mask is not None and self.style_weights is not None:
            raise FieldError("give either style_weights (a mix) or mask (regions), not both", "style_weights", "mask")
        set_("style_size", check_optional(self.style_size, "style_size", MIN_STYLE_SIZE, whole=True, unit="px"))
        set_("shuffle", check_flag(self.shuffle, "shuffle"))
        set_("seed", check_seed(self.seed))

    def normalised_weights(self, n_styles: int) -> list[float]:
        """The mixing weights for `n_styles` styles, summing to 1 (FieldError naming style_weights on a count
        mismatch)."""
        if self.mask is not None:
            raise ValueError("a mask gives per-region weights, not global ones")
        if self.style_weights is None:
            if n_styles != 1:
                raise FieldError(f"{n_styles} styles given for one output: give style_weights (one per style) "
                                 "or mask", "style_weights", "mask")
            return [1.0]
        if len(self.style_weights) != n_styles:
            raise FieldError(f"{len(self.style_weights)} style_weights for {n_styles} styles", "style_weights")
        total = sum(self.style_weights)
        return [w / total for w in self.style_weights]
