"""Source images of the style corpus: the development paintings and photos, and images shipped in packages.

Never the evaluation images: a folder or file with an `eval` path component is refused (FieldError naming
`dev`), and only `dev/style` (paintings) and `dev/content` (photos) are listed, never `dev`'s parent.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ...config import FieldError
from ...images import list_images, load_image

EVAL_NAME = "eval"
MAX_SIDE = 768  # source images are kept in memory at most this large (the dev images are 512 px)


@dataclass(frozen=True)
class PackageImage:
    """An image file shipped inside an installed package, with its provenance (from the package's docs)."""

    package: str
    relpath: str  # inside the package folder
    kind: str  # "texture" (greyscale surface, recoloured) or "photo" (through art filters)
    licence: str
    credit: str


# scikit-image's bundled data (skimage/data/ in the wheel); licences and credits from skimage/data/_fetchers.py
PACKAGE_IMAGES: tuple[PackageImage, ...] = (
    PackageImage("skimage", "data/brick.png", "texture", "CC0", "CC0Textures, Bricks25"),
    PackageImage("skimage", "data/grass.png", "texture", "CC0", "DeviantArt user linolafett, Grass-01"),
    PackageImage("skimage", "data/gravel.png", "texture", "CC0", "CC0Textures, Gravel04"),
    PackageImage("skimage", "data/coffee.png", "photo", "CC0", "Rachel Michetti, courtesy of Pikolo Espresso Bar"),
    PackageImage("skimage", "data/chelsea.png", "photo", "CC0", "Stefan van der Walt"),
    PackageImage("skimage", "data/astronaut.png", "photo", "public domain", "NASA Great Images database"),
    PackageImage("skimage", "data/rocket.jpg", "photo", "public domain", "SpaceX"),
    PackageImage("skimage", "data/hubble_deep_field.jpg", "photo", "public domain", "NASA, Hubble eXtreme Deep Field"),
    PackageImage("skimage", "data/retina.jpg", "photo", "CC0", "Mikael Häggström, Wikimedia Commons"),
    PackageImage("skimage", "data/coins.png", "texture", "no known copyright restrictions", "Brooklyn Museum"),
)


def is_eval_path(path: str | Path) -> bool:
    """True if the path, resolved, has a component named `eval` (the held-out evaluation images)."""
    return EVAL_NAME in Path(path).expanduser().resolve().parts


def _package_dir(package: str) -> Path | None:
    """The folder of an installed package (found without importing it), or None."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def package_images() -> list[tuple[PackageImage, Path]]:
    """The entries of PACKAGE_IMAGES whose package is installed and whose file is there, with their paths."""
    found = []
    for item in PACKAGE_IMAGES:
        root = _package_dir(item.package)
        if root is not None and (root / item.relpath).is_file():
            found.append((item, root / item.relpath))
    return found


@dataclass
class Sources:
    """The images the derived families draw from: paintings, photos and package images (each a list of paths;
    package images with their PackageImage). Empty lists are allowed: those families are then left out."""

    paintings: list[Path] = field(default_factory=list)
    photos: list[Path] = field(default_factory=list)
    package: list[tuple[PackageImage, Path]] = field(default_factory=list)

    @classmethod
    def from_dev(cls, dev: str | Path | None, packages: bool = True) -> Sources:
        """Sources from a development folder: `dev/style` (paintings) and `dev/content` (photos) when `dev` has
        them, else every image in `dev` is a painting; `packages`: add the installed package images.
        Raises FieldError (field `dev`) for a missing folder or one under an `eval` folder."""
        pkg = package_images() if packages else []
        if dev is None:
            return cls(package=pkg)
        dev = Path(dev).expanduser()
        if is_eval_path(dev):
            raise FieldError(f"dev {dev}: the evaluation images are never used for training", "dev")
        if not dev.is_dir():
            raise FieldError(f"dev {dev}: no such folder", "dev")
        style, content = dev / "style", dev / "content"
        if style.is_dir():
            paintings, photos = list_images(style), list_images(content) if content.is_dir() else []
        else:
            paintings, photos = list_images(dev), []
        for path in paintings + photos:  # e.g. a link into the evaluation folder
            if is_eval_path(path):
                raise FieldError(f"dev {path}: the evaluation images are never used for training", "dev")
        return cls(paintings, photos, pkg)

    def key(self) -> tuple:
        """A hashable identity (for caches)."""
        return tuple(self.paintings), tuple(self.photos), tuple(p for _, p in self.package)


@lru_cache(maxsize=256)
def load_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3), long side reduced to MAX_SIDE; cached per process (read-only
    array). Refuses (FieldError) any path under an `eval` folder."""
    if is_eval_path(path):
        raise FieldError(f"dev {path}: the evaluation images are never used for training", "dev")
    img = load_image(path)
    if max(img.size) > MAX_SIDE:
        img.thumbnail((MAX_SIDE, MAX_SIDE))
    a = np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))
    a.setflags(write=False)
    return a


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator, zoom: tuple[float, float]) -> np.ndarray:
    """A random square crop whose side is a log-uniform fraction in `zoom` of the short side, resized to
    (size, size) (area filter when shrinking, cubic when enlarging). Returns uint8 (size, size, 3)."""
    h, w = img.shape[:2]
    frac = float(np.exp(rng.uniform(np.log(zoom[0]), np.log(zoom[1]))))
    side = max(8, int(round(frac * min(h, w))))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = img[top:top + side, left:left + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interp)


def flip_turn(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A random left-right flip and quarter turn (0-3). Returns (image, params)."""
    flip, turns = bool(rng.random() < 0.5), int(rng.integers(0, 4))
    out = img[:, ::-1] if flip else img
    return np.ascontiguousarray(np.rot90(out, turns)), {"flip": flip, "quarter_turns": turns}
