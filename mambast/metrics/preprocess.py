"""The two named preprocessing modes of the evaluation.

"paper"   every image (stylized, content, style) resized so its short side is `size` (default 512, PIL
          bilinear with antialiasing, like torchvision's Resize) and centre-cropped to size x size: the
          StyleID / Mamba-ST protocol.
"native"  images used as they are on disk, as the art-fid package does (no resize); images of different
          sizes are never stacked, and LPIPS / CFSD resize the content image to its stylized image's size
          when the two differ.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from mambast.errors import UserError

__all__ = ["MODES", "load_rgb", "apply_mode", "load_for_metric", "match_size"]

MODES = ("paper", "native")


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image as RGB (EXIF orientation applied); one-line UserError when unreadable."""
    try:
        with Image.open(path) as im:
            return ImageOps.exif_transpose(im).convert("RGB")
    except FileNotFoundError:
        raise UserError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"cannot read image {path}: {exc}") from None


def apply_mode(img: Image.Image, mode: str, size: int = 512) -> Image.Image:
    """Apply preprocessing `mode` ("paper": short side `size` + centre crop; "native": unchanged)."""
    if mode == "native":
        return img
    if mode != "paper":
        raise UserError(f"unknown preprocessing mode {mode!r}; choose one of {', '.join(MODES)}")
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> (3, H, W) float32 in [0, 1]."""
    data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    return data.view(img.size[1], img.size[0], 3).permute(2, 0, 1).float() / 255.0


def load_for_metric(path: str | Path, mode: str = "paper", size: int = 512) -> torch.Tensor:
    """Read `path` and preprocess it by `mode` -> (3, H, W) float in [0, 1]."""
    return to_tensor(apply_mode(load_rgb(path), mode, size))


def match_size(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Resize (3, h, w) `x` to the spatial size of `like` (bilinear, antialiased) if they differ."""
    if x.shape[-2:] == like.shape[-2:]:
        return x
    out = torch.nn.functional.interpolate(
        x[None], size=like.shape[-2:], mode="bilinear", align_corners=False, antialias=True
    )
    return out[0].clamp(0, 1)
