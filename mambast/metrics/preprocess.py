"""What the evaluation does to an image before a metric sees it (images are read by `mambast.images` only).

Two named modes:

"paper"   StyleID's `eval_artfid.py`, the script behind the Mamba-ST paper's numbers:
          FID and LPIPS (and LPIPS_gray): short side resized to `size` (torchvision ``Resize(512)``: PIL
          bilinear, long side ``int(size * long / short)``), no crop; CFSD: the images as stored (no resize).
          The centre crop of the protocol happens earlier, when the pairs are stylized (`protocol_input`).
"native"  every image as stored, as the art-fid package reads them.

When a content image and its stylized image still differ in size (a method that crops, or a non-square
content in "paper" mode, where the reference script stops with a shape error), the content is brought to
the stylized image's size by `fit_to`: scaled to cover it, then centre-cropped (a pure resize when the aspect
ratios agree).
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from mambast.errors import UserError
from mambast.images import ImageError, load_image, to_tensor

__all__ = [
    "MODES", "METRIC_INPUTS", "InputImages", "apply_mode", "center_crop", "fit_to", "for_metric", "gray",
    "protocol_input", "resize_short", "to_tensor",
]  # fmt: skip

MODES = ("paper", "native")
METRIC_INPUTS = ("fid", "lpips", "cfsd", "losses")  # which preprocessing a metric gets in "paper" mode


def resize_short(img: Image.Image, size: int) -> Image.Image:
    """torchvision ``Resize(size)`` on a PIL image: short side `size`, long side ``int(size * long / short)``
    (truncated), PIL bilinear (which antialiases when shrinking); unchanged when already that size."""
    w, h = img.size
    if w <= h:
        new = (size, int(size * h / w))
    else:
        new = (int(size * w / h), size)
    return img if new == img.size else img.resize(new, Image.BILINEAR)


def center_crop(img: Image.Image, width: int, height: int) -> Image.Image:
    """torchvision ``CenterCrop((height, width))`` for an image at least that large: offsets
    ``int(round((W - width) / 2))`` and ``int(round((H - height) / 2))`` (Python rounding)."""
    w, h = img.size
    left, top = int(round((w - width) / 2.0)), int(round((h - height) / 2.0))
    return img.crop((left, top, left + width, top + height))


def protocol_input(img: Image.Image, size: int) -> Image.Image:
    """The paper protocol's stylization input: ``Resize(size)`` then ``CenterCrop(size)`` -> size x size."""
    return center_crop(resize_short(img, size), size, size)


def apply_mode(img: Image.Image, mode: str, size: int = 512, metric: str = "fid") -> Image.Image:
    """Preprocess `img` for `metric` (one of METRIC_INPUTS) under `mode` (see the module docstring)."""
    if mode not in MODES:
        raise UserError(f"unknown preprocessing mode {mode!r}; choose one of {', '.join(MODES)}")
    if metric not in METRIC_INPUTS:
        raise ValueError(f"metric must be one of {METRIC_INPUTS}, got {metric!r}")
    if mode == "native" or metric == "cfsd":
        return img
    return resize_short(img, size)


def fit_to(img: Image.Image, width: int, height: int) -> Image.Image:
    """Scale `img` (bilinear) so it covers width x height, then centre-crop to exactly that size."""
    if img.size == (width, height):
        return img
    w, h = img.size
    scale = max(width / w, height / h)
    covered = (max(width, round(w * scale)), max(height, round(h * scale)))
    if covered != img.size:
        img = img.resize(covered, Image.BILINEAR)
    return center_crop(img, width, height)


def gray(img: Image.Image) -> Image.Image:
    """torchvision ``Grayscale()`` (PIL "L": ITU-R 601 luma 0.299 R + 0.587 G + 0.114 B, 8-bit), as 3 equal
    channels (what LPIPS computes from a 1-channel input: its per-channel scaling broadcasts it)."""
    return img.convert("L").convert("RGB")


def for_metric(img: Image.Image, mode: str, size: int, metric: str) -> torch.Tensor:
    """`apply_mode` then (3, H, W) float32 in [0, 1]."""
    return to_tensor(apply_mode(img, mode, size, metric))


class InputImages:
    """Decoded input images by path (`mambast.images.load_image`), each read once; an unreadable one is
    remembered as its ImageError and raised again at every later request."""

    def __init__(self) -> None:
        self.cache: dict[Path, Image.Image | ImageError] = {}

    def get(self, path: Path, keep: bool = True) -> Image.Image:
        """The RGB image at `path` (ImageError when unreadable); keep=False: not kept once read (an image
        needed once, like a stylized output), though a failure still is."""
        got = self.cache.get(path)
        if got is None:
            try:
                got = load_image(path)
            except ImageError as e:
                got = e
            if keep or isinstance(got, ImageError):
                self.cache[path] = got
        if isinstance(got, ImageError):
            raise got
        return got
