"""The size policy, in one place (README "Image size policy").

The content keeps its aspect: its short side is resized to `size` px (Lanczos; 0/None keeps it; extreme aspect
ratios are not upscaled beyond 16:1 of `size`), its planned size checked against a pixel limit before decoding
(`mambast.images.plan_size`, `check_planned_size`). Inside the model it is reflection-padded at the
bottom/right to a multiple of the patch (at least two patches per side) and the output is cropped back. The
style is brought to that padded grid: by default resized to it (Lanczos, aspect not kept, as in the paper's
training and test protocol); with `style_size` its short side is resized to that many px (aspect and texture
scale kept) and it is mirror-tiled and centre-cropped to the grid.
"""

from __future__ import annotations

import numbers

from PIL import Image

from ..errors import UserError
from ..images import DEFAULT_MAX_PIXELS, check_planned_size, load_resized, plan_size, resize_short_side
from ..model.mamba_st import padded_size

__all__ = ["plan_size", "padded_size", "fit_style", "check_planned_size", "load_resized", "resize_short_side",
           "check_size", "DEFAULT_MAX_PIXELS"]


def check_size(size: int | None, patch: int = 8, name: str = "size") -> int | None:
    """The content size setting, checked: None or 0 keep the content's own size; otherwise a whole number of
    px, at least one patch (a short side under `patch` px cannot be stylized). Returns it as an int (or None);
    UserError (one line naming `name`) for anything else."""
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or (0 < size < patch) or size < 0:
        raise UserError(f"{name} must be 0 (keep the content's size) or a whole number of px >= {patch}, "
                        f"got {size!r}")
    return int(size)


def fit_style(img: Image.Image, width: int, height: int, style_size: int | None = None) -> Image.Image:
    """The style on the content's padded grid (width x height px).

    style_size None: resized to exactly that size (Lanczos, aspect not kept: the paper's policy).
    style_size N: short side resized to N (aspect kept), then mirrored-tiled as needed and centre-cropped.
    """
    if not style_size:
        return img if img.size == (width, height) else img.resize((width, height), Image.LANCZOS)
    if style_size < 1:
        raise UserError(f"style_size must be a positive number of pixels, got {style_size}")
    img = resize_short_side(img, style_size, max_pixels=None)
    w, h = img.size
    nx, ny = -(-width // w), -(-height // h)
    if nx > 1 or ny > 1:  # mirror-tile so tile borders stay continuous
        tiled = Image.new("RGB", (w * nx, h * ny))
        for j in range(ny):
            for i in range(nx):
                tile = img
                if i % 2:
                    tile = tile.transpose(Image.FLIP_LEFT_RIGHT)
                if j % 2:
                    tile = tile.transpose(Image.FLIP_TOP_BOTTOM)
                tiled.paste(tile, (i * w, j * h))
        img, (w, h) = tiled, tiled.size
    left, top = (w - width) // 2, (h - height) // 2
    return img.crop((left, top, left + width, top + height))
