"""The size policy, in one place (README "Image size policy").

The content keeps its aspect: its short side is resized to `size` px (Lanczos; 0/None keeps it), then inside
the model it is reflection-padded at the bottom/right to a multiple of the patch (at least two patches per
side) and the output is cropped back. The style is brought to that padded grid: by default resized to it
(Lanczos, aspect not kept, as in the paper's training and test protocol); with `style_size` its short side is
resized to that many px (aspect and texture scale kept) and it is tiled (mirrored) and cropped to the grid.
"""

from __future__ import annotations

from PIL import Image

from ..errors import UserError
from ..model.mamba_st import padded_size

__all__ = ["content_size", "padded_size", "fit_style", "check_pixels", "DEFAULT_MAX_PIXELS"]

DEFAULT_MAX_PIXELS = 50_000_000  # planned content size above this is refused (about 8200 x 6100)


def content_size(width: int, height: int, size: int | None) -> tuple[int, int]:
    """(width, height) after resizing the short side to `size` (0/None: unchanged), aspect kept."""
    if not size:
        return width, height
    scale = size / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def check_pixels(width: int, height: int, max_pixels: int | None, name: str = "image") -> None:
    """UserError when the planned (width x height) exceeds `max_pixels` (None/0: no limit)."""
    if max_pixels and width * height > max_pixels:
        raise UserError(f"{name}: the planned size {width}x{height} px ({width * height / 1e6:.1f} MP) is above "
                        f"the limit of {max_pixels / 1e6:.1f} MP (max_pixels); choose a smaller size")


def resize_content(img: Image.Image, size: int | None) -> Image.Image:
    """The content at its working size (Lanczos), aspect kept."""
    new = content_size(*img.size, size)
    return img if new == img.size else img.resize(new, Image.LANCZOS)


def fit_style(img: Image.Image, width: int, height: int, style_size: int | None = None) -> Image.Image:
    """The style on the content's padded grid (width x height px).

    style_size None: resized to exactly that size (Lanczos, aspect not kept: the paper's policy).
    style_size N: short side resized to N (aspect kept), then mirrored-tiled as needed and centre-cropped.
    """
    if not style_size:
        return img if img.size == (width, height) else img.resize((width, height), Image.LANCZOS)
    if style_size < 1:
        raise UserError(f"style_size must be a positive number of pixels, got {style_size}")
    img = resize_content(img, style_size)
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
