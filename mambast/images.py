"""The one image reader of the package: files in, 8-bit sRGB PIL images and model tensors out.

What a reader of any file gets (stylize, eval, training data, video, UI alike):
- any mode as displayed: grayscale, 16/32-bit (rescaled), palette, CMYK; transparency composited on white;
  EXIF orientation applied; an embedded ICC profile (Adobe RGB, Display P3, a gray or CMYK profile...)
  converted to sRGB (LittleCMS through Pillow's ImageCms, relative colorimetric with black-point
  compensation); an unusable embedded profile is ignored (the values are read as sRGB, as browsers do).
- one line (`ImageError`, a `UserError`) naming the file for anything that cannot be read: missing, empty,
  not an image, truncated or corrupt, a header over Pillow's hard pixel limit (`2 * Image.MAX_IMAGE_PIXELS`,
  179 MP by default; genuine photos below it are read).
- sizes planned before any decoding: `plan_size` (short side to `size`, with the upscaling of extreme aspect
  ratios capped), `check_planned_size` (the pixel limit and the one-patch minimum), `load_resized` (both, then
  a JPEG decoded at 1/2, 1/4 or 1/8 scale with Pillow's draft mode when a smaller image is asked for).

Folders: `list_images` (hidden names skipped, directory links followed once, `exclude` for the run's own
outputs, sorted) and `relative_names` (collision-free names for files of nested folders).
"""

from __future__ import annotations

import contextlib
import io
import math
import numbers
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from .errors import FieldError, UserError

__all__ = [
    "DEFAULT_MAX_PIXELS", "IMAGE_EXTENSIONS", "MAX_UPSCALE_ASPECT", "ImageError", "check_planned_size",
    "image_folder", "image_inputs", "image_size", "list_images", "load_image", "load_resized", "plan_size",
    "relative_names",
    "resize_short_side", "to_pil", "to_tensor", "uint8_to_unit", "unit_to_uint8", "as_rgb",
    "pixels_to_uint8",
]

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pnm"}

# The largest planned image (width x height after the size policy) a reader accepts by default: 4096 x 4096.
# Inference needs about 700 bytes per content pixel on CPU (measured at 512 x 512 and 512 x 1024 with the
# default model, style included), so this is about 12 GB; callers take a `max_pixels` to change it.
DEFAULT_MAX_PIXELS = 4096 * 4096
# Upscaling to a short side of `size` never makes the long side more than this many times `size`:
# a 4 x 1000 strip at size 512 becomes 33 x 8192, not 512 x 128000. Downscaling is never capped.
MAX_UPSCALE_ASPECT = 16

_ORIENTATION = 0x0112
_SWAPS_SIDES = {5, 6, 7, 8}  # EXIF orientations that rotate by 90 degrees
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
_CMS_FLAGS = ImageCms.Flags.BLACKPOINTCOMPENSATION


class ImageError(UserError):
    """An input image that cannot be used (missing, unreadable, truncated, too large, too small): one line."""


# ----------------------------------------------------------------------------------------------- folders


def _exclusions(exclude: str | Path | Iterable[str | Path] | None) -> set[Path]:
    if exclude is None:
        return set()
    items = [exclude] if isinstance(exclude, (str, os.PathLike)) else list(exclude)
    return {Path(p).expanduser().resolve() for p in items}


def _is_excluded(child: Path, real_folder: Path, is_link: bool, excluded: set[Path]) -> bool:
    """True if `child` of a listed folder (whose resolved path is `real_folder`) is excluded: its real path is an
    excluded path or, for a link, lies inside an excluded folder (a listed folder never does)."""
    if not excluded:
        return False
    if not is_link:
        return real_folder / child.name in excluded
    try:
        real = child.resolve()
    except (OSError, RuntimeError):  # a link loop: nothing to read there anyway
        return True
    return real in excluded or any(parent in excluded for parent in real.parents)


def list_images(path: str | Path, exclude: str | Path | Iterable[str | Path] | None = None) -> list[Path]:
    """A file -> [file]; a folder -> its image files (by extension), recursively, sorted.

    Inside a folder: names starting with "." (hidden files and folders: macOS `._*` AppleDouble files,
    `.ipynb_checkpoints`, `.git`...) are skipped; links to folders are followed, each real folder entered
    once (no loops, no duplicates; by its own path when it has one below `path`, else by the first link in
    name order); unreadable sub-folders are skipped. `exclude` (a path or several: folders and/or files, e.g.
    the output folder of the run when it lies inside the input folder) is left out wherever links lead,
    except a folder holding `path` itself (then name the files to leave out). The paths returned are spelled
    below `path` (links not resolved), so `relative_names(files, path)` gives each one a unique name. The
    order is `sorted` (as `Path`s: by parts).

    Raises UserError (one line) if `path` does not exist or a folder holds no images.
    """
    path = Path(path).expanduser()
    if path.is_file():
        return [path]
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if not path.is_dir():
        raise UserError(f"{path}: neither a file nor a folder")
    real_root = path.resolve()
    excluded = {p for p in _exclusions(exclude) if p != real_root and p not in real_root.parents}
    seen, files = set(), []
    stack, linked = [path], []  # folders reached without / through a link: the first are all listed first,
    while stack or linked:  # so a folder reached both ways is spelled by its own path
        if not stack:
            linked.sort(reverse=True)
        folder = stack.pop() if stack else linked.pop()
        try:
            st = folder.stat()
            entries = list(os.scandir(folder))
            real_folder = folder.resolve() if excluded else folder
        except (OSError, RuntimeError):
            continue
        if (st.st_dev, st.st_ino) in seen:  # a folder already listed (a link loop or a second link to it)
            continue
        seen.add((st.st_dev, st.st_ino))
        for entry in sorted(entries, key=lambda e: e.name, reverse=True):
            if entry.name.startswith("."):
                continue
            child = folder / entry.name
            try:
                is_dir = entry.is_dir()  # follows links
                is_file = not is_dir and entry.is_file() and child.suffix.lower() in IMAGE_EXTENSIONS
                is_link = entry.is_symlink()
            except OSError:
                continue
            if (is_dir or is_file) and _is_excluded(child, real_folder, is_link, excluded):
                continue
            if is_dir:
                (linked if is_link else stack).append(child)
            elif is_file:
                files.append(child)
    if not files:
        raise UserError(f"{path}: folder holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return sorted(files)


def image_folder(folder: str | Path | None, field: str,
                 exclude: str | Path | Iterable[str | Path] | None = None) -> list[Path]:
    """The image files of the folder a setting names (`list_images`: recursive, sorted, hidden names skipped,
    `exclude` left out): the one check of a "folder of images" setting (training's content_dir and style_dir,
    stylize-dataset's content and style, convert_hed's normalise_with).

    Raises FieldError naming `field` (as the library spells it; the CLI shows its flag) when no folder is
    given, `folder` is not a folder, or it holds no images."""
    if not folder:
        raise FieldError(f"no {field} given (a folder of images)", field)
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise FieldError(f"{field} {path}: {'not a folder' if path.exists() else 'no such folder'}", field)
    try:
        return list_images(path, exclude=exclude)
    except UserError as e:
        raise FieldError(f"{field}: {e}", field) from None


def image_inputs(path: str | Path, field: str,
                 exclude: str | Path | Iterable[str | Path] | None = None) -> list[Path]:
    """The images a "file or folder" setting names (`list_images`: a file, or a folder's images): stylize's
    content and style. Raises FieldError naming `field` (the CLI shows its flag) when `path` does not exist,
    is neither a file nor a folder, or holds no images."""
    try:
        return list_images(path, exclude=exclude)
    except UserError as e:
        raise FieldError(f"{field} {e}", field) from None


def relative_names(files: Sequence[str | Path], root: str | Path) -> list[Path]:
    """Each file's path relative to `root` (the argument given to `list_images`): unique for unique files.

    `root` a file -> its name. Files in different sub-folders keep their sub-folders (`a/cat.jpg`,
    `b/cat.jpg`), so outputs named from these (e.g. mirroring the sub-folders) cannot collide.
    Raises ValueError naming `files` if a file is not below `root`.
    """
    root = Path(root).expanduser()
    if root.is_file():
        return [Path(Path(f).name) for f in files]
    names = []
    for f in files:
        f = Path(f).expanduser()
        try:
            names.append(f.relative_to(root))
        except ValueError:
            raise ValueError(f"files: {f} is not below root {root}") from None
    return names


# ------------------------------------------------------------------------------------------------ sizes


def plan_size(w: int, h: int, size: int | None, max_aspect: float = MAX_UPSCALE_ASPECT) -> tuple[int, int]:
    """(w, h) px -> (width, height) with the short side resized to `size` px (aspect kept); size 0/None keeps.

    When that upscales an image whose long side is more than `max_aspect` times its short side, the upscale
    is capped so that the long side is `max_aspect * size` (never below the original size).
    """
    if not size:
        return w, h
    scale = size / min(w, h)
    if scale > 1 and max(w, h) * scale > max_aspect * size:
        scale = max(1.0, max_aspect * size / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale))


def check_planned_size(name: str | Path, w: int, h: int, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                       patch: int | None = None) -> None:
    """One-line ImageError naming `name` if the planned w x h px is over `max_pixels` (None/0: no limit)
    or, when `patch` is given, smaller than one patch x patch (the model's minimum)."""
    if patch and (w < patch or h < patch):
        raise ImageError(f"{name}: {w} x {h} px is smaller than one {patch} x {patch} patch")
    if max_pixels and w * h > max_pixels:
        raise ImageError(f"{name}: planned size {w} x {h} px ({_pixels(w * h)}) is over the limit of "
                         f"{_pixels(max_pixels)} (max_pixels); ask for a smaller size or raise the limit")


def _pixels(n: int) -> str:
    """A pixel count for messages: "16.8 MP", or "6,016 px" below 0.1 MP."""
    return f"{n / 1e6:.1f} MP" if n >= 100_000 else f"{n:,} px"


def resize_short_side(img: Image.Image, size: int | None, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                      name: str = "image") -> Image.Image:
    """Resize (Lanczos) to `plan_size(w, h, size)`, checked against `max_pixels` first (ImageError naming
    `name`); size 0/None keeps the image's size (still checked)."""
    new = plan_size(*img.size, size)
    check_planned_size(name, *new, max_pixels=max_pixels)
    return img if new == img.size else img.resize(new, Image.LANCZOS)


# -------------------------------------------------------------------------------------------- decoding


def _to_8bit(img: Image.Image) -> Image.Image:
    """16/32-bit integer and float images -> 8-bit L (16-bit full scale is 65535)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        return Image.fromarray(np.clip(a / scale * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "F":
        a = np.nan_to_num(np.asarray(img, dtype=np.float64))
        scale = 1.0 if a.max() <= 1.0 else 255.0
        return Image.fromarray(np.clip(a / scale * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    return img


def _to_srgb(img: Image.Image, icc: bytes) -> Image.Image:
    """Apply an embedded ICC profile: RGB/RGBA, L and CMYK images -> sRGB (alpha kept). A profile that is
    unusable or does not fit the image's mode is ignored (the values are then taken as sRGB)."""
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        space = src.profile.xcolor_space.strip()
        if space == "RGB" and img.mode in ("L", "LA"):
            img = img.convert("RGBA" if img.mode == "LA" else "RGB")
        if (space, img.mode) in {("RGB", "RGB"), ("RGB", "RGBA"), ("GRAY", "L"), ("CMYK", "CMYK")}:
            out_mode = "RGBA" if img.mode == "RGBA" else "RGB"
            return ImageCms.profileToProfile(img, src, _SRGB, ImageCms.Intent.RELATIVE_COLORIMETRIC,
                                             outputMode=out_mode, flags=_CMS_FLAGS)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        pass
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit sRGB RGB: bit depth, palette, ICC profile, then transparency composited on white."""
    icc = img.info.get("icc_profile")
    img = _to_8bit(img)
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")
    elif img.mode in ("L", "RGB") and "transparency" in img.info:
        img = img.convert("LA" if img.mode == "L" else "RGBA")
    if icc:
        img = _to_srgb(img, icc)
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    img = img.convert("RGB")
    img.info.pop("icc_profile", None)  # the pixels are sRGB now; never re-tag them with the source's profile
    img.info.pop("transparency", None)
    return img


def as_rgb(image: Image.Image | np.ndarray, name: str = "image") -> Image.Image:
    """An in-memory image as 8-bit sRGB RGB, read like a file (`load_image`): a PIL image of any mode, or an
    array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) of uint8 (0-255), bool, or floats in [0, 1] (RGBA
    composited on white). ImageError (one line, naming `name`) for anything else."""
    if isinstance(image, Image.Image):
        return _to_rgb(image)
    if not isinstance(image, np.ndarray):
        raise ImageError(f"{name}: expected an image file path, a PIL image or a numpy array, got "
                         f"{type(image).__name__}")
    a = image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or 0 in a.shape:
        raise ImageError(f"{name}: expected an array (H, W), (H, W, 3) or (H, W, 4), got shape {image.shape}")
    return _to_rgb(Image.fromarray(np.ascontiguousarray(pixels_to_uint8(a, name))))  # L, RGB or RGBA by shape


def pixels_to_uint8(a: np.ndarray, name: str = "image", noun: str = "arrays") -> np.ndarray:
    """Pixel values as uint8: uint8 as is, bool as 0/255, floats in [0, 1] scaled and rounded (any shape).
    ImageError (one line naming `name`) for floats outside [0, 1] or NaN, and for other dtypes."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.floating):
        lo, hi = float(a.min()), float(a.max())
        if not (0.0 <= lo and hi <= 1.0):  # also refuses NaN
            raise ImageError(f"{name}: float {noun} must be in [0, 1], got values in [{lo:g}, {hi:g}]")
        return unit_to_uint8(a)
    raise ImageError(f"{name}: expected uint8 (0-255), bool or float (0-1) {noun}, got {a.dtype}")


def _rotated(img: Image.Image) -> bool:
    """True if the EXIF orientation turns the image by 90 degrees (displayed sides = stored sides swapped)."""
    try:
        return img.getexif().get(_ORIENTATION) in _SWAPS_SIDES
    except Exception:  # a corrupt EXIF block: the decode that follows reports it, or ignores it as Pillow does
        return False


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn every failure of reading `path` into one ImageError line naming it."""
    try:
        with warnings.catch_warnings():
            # Pillow warns between MAX_IMAGE_PIXELS and twice that (genuine large photos; it refuses above),
            # and about damaged metadata it skips ("Corrupt EXIF data", "Truncated File Read"): not for users.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{path}: refused: its header claims a huge image (possible decompression bomb)") from None
    except UnidentifiedImageError:
        what = "empty file" if path.stat().st_size == 0 else "not an image file Pillow can read"
        raise ImageError(f"{path}: {what}") from None
    except MemoryError:
        raise ImageError(f"{path}: not enough memory to decode this image") from None
    except Exception as e:  # Pillow's parsers raise many kinds on corrupt data (fuzz-tested)
        detail = (str(e).splitlines() or [""])[0][:120] or type(e).__name__
        raise ImageError(f"{path}: unreadable, truncated or corrupt image ({detail})") from None


def _read(path: str | Path, need: Callable[[int, int], tuple[int, int] | None] | None) -> Image.Image:
    """Open `path`, ask `need(w, h)` (displayed size) for the smallest displayed size wanted (None: full
    size; it may raise ImageError), decode (JPEG at a reduced scale when that suffices), convert to RGB."""
    path = Path(path)
    with _reading(path), Image.open(path) as img:
        if need is not None:
            rotated = _rotated(img)
            wanted = need(*(img.size[::-1] if rotated else img.size))
            if wanted and img.format in ("JPEG", "MPO"):
                img.draft(None, wanted[::-1] if rotated else wanted)  # draft works on the stored sides
        img.load()
        return _to_rgb(ImageOps.exif_transpose(img))


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) px as displayed (EXIF orientation applied), from the header only: no decoding.

    Raises ImageError (one line naming the file) for a missing, unreadable or bomb-sized file.
    """
    path = Path(path)
    with _reading(path), Image.open(path) as img:
        return img.size[::-1] if _rotated(img) else img.size


def load_image(path: str | Path, size_hint: int | tuple[int, int] | None = None) -> Image.Image:
    """An 8-bit sRGB RGB PIL image as displayed; ImageError with one line naming the file otherwise.

    size_hint: the size the caller will resize to, so that a JPEG can be decoded at 1/2, 1/4 or 1/8 scale
    (Pillow's draft mode) while staying at least that large: an int is the short side (the size policy's
    `size`), a (width, height) pair the minimum of each displayed side. Other formats ignore it. Without a
    hint the image has its full size.
    """
    if size_hint is None:
        return _read(path, None)
    if isinstance(size_hint, numbers.Integral):  # numpy integers too (a tuple() of one was a "corrupt image")
        return _read(path, lambda w, h: plan_size(w, h, int(size_hint), max_aspect=math.inf))
    return _read(path, lambda w, h: tuple(size_hint))


def load_resized(path: str | Path, size: int | None, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 patch: int | None = None) -> Image.Image:
    """The image of `path` at its planned size `plan_size(w, h, size)`, checked before decoding.

    The planned size is checked with `check_planned_size` (over `max_pixels`, or under one `patch`: one-line
    ImageError naming the file) from the header alone; a JPEG is then decoded at the smallest draft scale
    that is still at least the planned size, and resized to it exactly (Lanczos).
    """
    planned: list[tuple[int, int]] = []

    def need(w: int, h: int) -> tuple[int, int]:
        planned.append(plan_size(w, h, size))
        check_planned_size(path, *planned[0], max_pixels=max_pixels, patch=patch)
        return planned[0]

    img = _read(path, need)
    return img if img.size == planned[0] else img.resize(planned[0], Image.LANCZOS)


# ---------------------------------------------------------------------------------------------- tensors


def to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL -> float (3, H, W) in [0, 1] (the model's input: pixels / 255)."""
    a = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(a.copy()).permute(2, 0, 1).float().div_(255.0)


def uint8_to_unit(a: np.ndarray) -> np.ndarray:
    """uint8 array (any shape, 0-255) -> float32 in [0, 1] (pixels / 255)."""
    return np.asarray(a, dtype=np.uint8).astype(np.float32) / 255.0


def unit_to_uint8(a: np.ndarray) -> np.ndarray:
    """Float array in [0, 1] (any shape) -> uint8, clipped and rounded half up."""
    return np.clip(np.asarray(a, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) float -> RGB PIL, clamped to [0, 1] and rounded (the only place outputs are clamped)."""
    a = image.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(a, "RGB")
