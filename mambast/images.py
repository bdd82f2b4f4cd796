"""Reading and writing images the way users expect: any mode, EXIF orientation, clear one-line errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import UserError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pnm"}


class ImageError(UserError):
    """An input image that cannot be used (missing, unreadable, truncated, too large, too small)."""


def list_images(path: str | Path) -> list[Path]:
    """A file -> [file]; a folder -> its image files (by extension, recursive), sorted."""
    path = Path(path).expanduser()
    if path.is_file():
        return [path]
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise UserError(f"{path}: folder holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return files


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB: 16/32-bit integer images rescaled, transparency composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        img = Image.fromarray(np.clip(a / scale * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        scale = 1.0 if a.max() <= 1.0 else 255.0
        img = Image.fromarray(np.clip(a / scale * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" or (img.mode in ("L", "RGB") and "transparency" in img.info):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def load_image(path: str | Path) -> Image.Image:
    """An RGB PIL image as displayed (EXIF orientation applied); ImageError with one line otherwise."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                img = ImageOps.exif_transpose(img)
                return _to_rgb(img)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{path}: refused: its header claims a huge image (possible decompression bomb)") from None
    except UnidentifiedImageError:
        what = "empty file" if path.stat().st_size == 0 else "not an image file Pillow can read"
        raise ImageError(f"{path}: {what}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: unreadable or truncated image ({str(e).splitlines()[0][:120]})") from None


def resize_short_side(img: Image.Image, size: int | None) -> Image.Image:
    """Resize so the shorter side is `size` px, aspect kept (Lanczos); size 0/None keeps the image."""
    if not size:
        return img
    w, h = img.size
    scale = size / min(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img if new == img.size else img.resize(new, Image.LANCZOS)


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL -> float (3, H, W) in [0, 1] (the model's input: pixels / 255)."""
    a = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div_(255.0)


def to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) float -> RGB PIL, clamped to [0, 1] and rounded (the only place outputs are clamped)."""
    a = image.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(a, "RGB")


def save_image(image: torch.Tensor | Image.Image, path: str | Path) -> Path:
    """Save a (3, H, W) tensor (clamped) or a PIL image; the format follows the suffix (PNG by default)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    (image if isinstance(image, Image.Image) else to_pil(image)).save(path)
    return path
