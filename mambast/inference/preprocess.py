"""Images in, model-ready tensors out: the one place that applies the size policy (size.py), fits the style to
the content's grid (stretched, or tiled with `style_size`), matches its colours to the content and turns a
mask into per-token region weights.

`Preprocessor` is a small frozen dataclass (picklable): the engine (`Stylizer.preprocessor`) calls it in its
own process, a folder run's DataLoader workers call the same object in theirs, video and eval reach it
through the engine. Pixels never depend on which process prepared them.

    pre = Preprocessor(patch=8, size=512)
    plan = pre.plan("photo.jpg")                  # header only: working (h, w), padded grid (H, W)
    x = pre.content("photo.jpg")                  # (3, h, w) float32 in [0, 1]
    s = pre.style("art.png", plan.grid, controls, content=x)   # (3, H, W), colour-matched if asked

An input that cannot be used is one line (ImageError naming it); where many inputs are prepared at once
(folder runs) `attempt` turns that line into a `Failure`, a value that travels where the tensor would have.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image
from torch import Tensor

from ..errors import FieldError, UserError
from ..images import (
    DEFAULT_MAX_PIXELS,
    as_rgb,
    check_planned_size,
    image_size,
    load_image,
    load_resized,
    plan_size,
    resize_short_side,
    to_tensor,
)
from ..model.mamba_st import padded_size
from .colour import match_colour
from .controls import Controls
from .masks import mask_labels, region_weights
from .size import check_max_pixels, check_size, fit_style, load_style, memory_guard

ImageLike = Image.Image | np.ndarray | str | Path  # a file path, or an in-memory image (mambast.images.as_rgb)
T = TypeVar("T")


def is_path(image: object) -> bool:
    """Whether `image` is a file path (str or os.PathLike) rather than an in-memory image."""
    return isinstance(image, (str, os.PathLike))


def open_image(image: ImageLike, name: str = "image") -> Image.Image:
    """A file (decoded as displayed) or an in-memory image as 8-bit RGB (one-line ImageError otherwise)."""
    return load_image(image) if is_path(image) else as_rgb(image, name)


@dataclass(frozen=True)
class Failure:
    """Why an input or a pair could not be stylized: one line for the user. Carried where the tensor would
    have been (a folder run fails only the jobs that needed it)."""

    reason: str

    def __str__(self) -> str:
        return self.reason


def attempt(fn: Callable[..., T], *args, what: str | None = None) -> T | Failure:
    """`fn(*args)`, or the Failure it raised as a UserError (a failed allocation too, named `what`, by default
    the first argument)."""
    try:
        with memory_guard(str(args[0]) if what is None else what):
            return fn(*args)
    except UserError as e:
        return Failure(str(e))


@dataclass(frozen=True)
class ContentPlan:
    """A content's working size (h, w) px after the size policy and its padded grid (H, W) px (multiples of
    the patch, at least two patches), known from the file's header alone."""

    size: tuple[int, int]
    grid: tuple[int, int]


@dataclass(frozen=True)
class Preprocessor:
    """The size policy and the style fit of one engine: patch (px, the model's), size (content short side in
    px; None keeps the content's size), max_pixels (refuse a planned content or style above this; None: no
    limit). Fields checked on creation (FieldError naming `size` or `max_pixels`)."""

    patch: int = 8
    size: int | None = 512
    max_pixels: int | None = DEFAULT_MAX_PIXELS

    def __post_init__(self):
        object.__setattr__(self, "size", check_size(self.size, self.patch))
        object.__setattr__(self, "max_pixels", check_max_pixels(self.max_pixels))

    def with_size(self, size: int | None) -> Preprocessor:
        """The same policy with another content size (checked: FieldError naming `size`)."""
        return self if size == self.size else dataclasses.replace(self, size=size)

    # ----- contents ---------------------------------------------------------------------------------------
    def plan(self, path: str | Path) -> ContentPlan:
        """A content file's working size and padded grid from its header (no decoding); one-line ImageError
        naming the file when it is unreadable, over the pixel limit or under one patch."""
        w, h = plan_size(*image_size(path), self.size)
        check_planned_size(path, w, h, self.max_pixels, patch=self.patch)
        return ContentPlan((h, w), padded_size(h, w, self.patch, str(path)))

    def grid(self, width: int, height: int) -> tuple[int, int]:
        """Padded (H, W) px of a content of width x height px."""
        return padded_size(height, width, self.patch)

    def content_image(self, content: ImageLike) -> Image.Image:
        """The content at its working size (short side `size`), its planned size checked first (pixel limit,
        at least one patch; one-line ImageError naming the file); JPEG files decoded at reduced scale when
        that is enough (draft mode)."""
        if not is_path(content):
            name = "content image"
            img = resize_short_side(as_rgb(content, name), self.size, self.max_pixels, name)
        else:
            name = str(content)
            img = load_resized(content, self.size, self.max_pixels, patch=self.patch)
        padded_size(img.size[1], img.size[0], self.patch, name)
        return img

    def content(self, content: ImageLike) -> Tensor:
        """`content_image` as a (3, h, w) float32 tensor in [0, 1]."""
        return to_tensor(self.content_image(content))

    # ----- styles -----------------------------------------------------------------------------------------
    def style(self, style: ImageLike, grid: tuple[int, int], controls: Controls,
              content: Tensor | None = None) -> Tensor:
        """The style on the padded grid (H, W) -> (3, H, W) float32 in [0, 1]: stretched to it (the paper's
        policy) or, with controls.style_size, resized by its short side and mirror-tiled; recoloured to
        `content` (3, h, w) when controls.preserve_color is "match" (ValueError without it). The planned
        style is checked against the pixel limit before it is decoded or resized (one-line ImageError naming
        the file, or "style image")."""
        name = str(style) if is_path(style) else "style image"
        img = load_style(style, controls.style_size, self.max_pixels, name)
        x = to_tensor(fit_style(img, grid[1], grid[0], controls.style_size, self.max_pixels, name))
        if controls.preserve_color != "match":
            return x
        if content is None:
            raise ValueError("colour matching needs the content")
        return match_colour(x, content.float().cpu())

    # ----- masks ------------------------------------------------------------------------------------------
    @staticmethod
    def check_mask(mask: ImageLike, n_styles: int) -> Image.Image:
        """A mask read once and checked against the number of styles (at least two; with more than two, one
        colour per style): FieldError naming `mask` otherwise (an unreadable file: ImageError naming it)."""
        where = f"mask {mask}" if is_path(mask) else "mask"
        if n_styles < 2:
            raise FieldError(f"{where}: needs at least two styles (one per region), got {n_styles}", "mask")
        img = open_image(mask, "mask")
        try:
            mask_labels(img, n_styles)
        except UserError as e:
            raise FieldError(f"{where}: {e}", "mask") from None
        return img

    def region_weights(self, mask: ImageLike, n_styles: int, size: tuple[int, int],
                       grid: tuple[int, int]) -> Tensor:
        """Soft per-token weights (n_styles, H/p, W/p) summing to 1 over styles, of a mask (any size, resized
        nearest to the content's working size (h, w)) on the padded grid (H, W) px (masks.py)."""
        labels = mask_labels(open_image(mask, "mask").resize((size[1], size[0]), Image.NEAREST), n_styles)
        return region_weights(labels, n_styles, tuple(grid), self.patch)
