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

import contextlib
import os
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image

from ..errors import FieldError, UserError
from ..images import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    as_rgb,
    check_planned_size,
    image_size,
    load_image,
    plan_size,
    resize_short_side,
)
from .values import as_whole, check_optional, shown

__all__ = ["fit_style", "check_size", "check_max_pixels", "check_style_size", "load_style", "is_out_of_memory",
           "memory_guard", "DEFAULT_MAX_PIXELS"]

# What torch's allocators say when an allocation fails (CPU: DefaultCPUAllocator; CUDA: OutOfMemoryError).
_OUT_OF_MEMORY = ("DefaultCPUAllocator", "not enough memory", "out of memory", "can't allocate memory")


def check_size(size: int | None, patch: int = 8, name: str = "size") -> int | None:
    """The content size setting, checked: None or 0 keep the content's own size; otherwise a whole number of
    px (any real type: 512, np.int64(512), 512.0), at least one patch (a short side under `patch` px cannot be
    stylized). Returns it as an int (or None); UserError (one line naming `name`) for anything else."""
    if size is None:
        return None
    value = as_whole(size)
    if value is None or (0 < value < patch) or value < 0:
        raise FieldError(f"{name} must be 0 (no resizing) or a whole number of px >= {patch}, "
                         f"got {shown(size)}", name)
    return value


def check_max_pixels(max_pixels: int | None, name: str = "max_pixels") -> int | None:
    """The pixel limit, checked: None or 0 = no limit, else a whole number of pixels >= 1 -> int or None."""
    value = check_optional(max_pixels, name, 0, whole=True)
    return value or None


def check_style_size(style_size: int | None, max_pixels: int | None, name: str = "style_size") -> None:
    """Refuse a style size no style can have within the pixel limit, before any image is read: the style's
    short side alone is `style_size` px, so it has at least style_size x style_size pixels (one-line
    FieldError naming `name`)."""
    if style_size:
        try:
            check_planned_size(f"{name} {style_size} px", style_size, style_size, max_pixels=max_pixels)
        except ImageError as e:
            raise FieldError(str(e), name, "max_pixels") from None  # both named: the CLI shows both flags


def load_style(style: Image.Image | np.ndarray | str | os.PathLike, style_size: int | None,
               max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str = "style image") -> Image.Image:
    """The style as an RGB image (a path decoded as displayed, an in-memory image by `as_rgb`), its planned
    size at `style_size` (short side, aspect kept) checked against `max_pixels` first: for a file from its
    header, before decoding (one-line ImageError naming the file)."""
    if not isinstance(style, (str, os.PathLike)):
        img = as_rgb(style, name)
        if style_size:
            check_planned_size(name, *plan_size(*img.size, style_size), max_pixels=max_pixels)
        return img
    if style_size:
        check_planned_size(style, *plan_size(*image_size(style), style_size), max_pixels=max_pixels)
    return load_image(style)


def fit_style(img: Image.Image, width: int, height: int, style_size: int | None = None,
              max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str = "style image") -> Image.Image:
    """The style on the content's padded grid (width x height px).

    style_size None: resized to exactly that size (Lanczos, aspect not kept: the paper's policy).
    style_size N: short side resized to N (aspect kept), then mirrored-tiled as needed and centre-cropped;
    the resized style is checked against `max_pixels` before it is made (one-line ImageError naming `name`),
    and a failed allocation is one line too (`memory_guard`).
    """
    if not style_size:
        return img if img.size == (width, height) else img.resize((width, height), Image.LANCZOS)
    if style_size < 1:
        raise UserError(f"style_size must be a positive number of pixels, got {style_size}")
    with memory_guard(f"{name} at style_size {style_size}"):
        return _tile_to(resize_short_side(img, style_size, max_pixels, name), width, height)


def _tile_to(img: Image.Image, width: int, height: int) -> Image.Image:
    """`img` mirror-tiled as needed to cover width x height px, centre-cropped to it."""
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


def is_out_of_memory(error: BaseException) -> bool:
    """True when `error` is a failed allocation: MemoryError, torch.OutOfMemoryError, or a RuntimeError from
    torch's CPU allocator ("DefaultCPUAllocator: not enough memory ..." / "can't allocate memory")."""
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error) for m in _OUT_OF_MEMORY)


@contextlib.contextmanager
def memory_guard(what: str, hint: str = "ask for a smaller size") -> Iterator[None]:
    """Turn a failed allocation inside the block into one ImageError line ("WHAT: not enough memory (KIND);
    HINT"); every other exception passes unchanged."""
    try:
        yield
    except Exception as e:
        if isinstance(e, UserError) or not is_out_of_memory(e):
            raise
        raise ImageError(f"{what}: not enough memory ({type(e).__name__}); {hint}") from None
