"""The style corpus: image `index` of a corpus with a given seed, deterministic, from one of several families.

The family of image i is drawn from a generator seeded by (seed, i) with the FAMILIES weights (renormalised
over the families whose sources are present), and so is everything the family draws, so an image depends only
on (seed, index, size, sources) and any subset can be made in any order, in any process.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from ...config import FieldError
from . import derived, procedural
from .sources import Sources


@dataclass(frozen=True)
class Family:
    """A generator family: its function, its share of the corpus (weight) and the sources it needs."""

    fn: Callable[[np.random.Generator, int, Sources], tuple[np.ndarray, dict]]
    weight: float
    needs: str = ""  # "paintings", "photos" or "package": left out when that source list is empty


FAMILIES: dict[str, Family] = {
    "painting": Family(derived.dev_painting, 0.30, "paintings"),
    "strokes": Family(procedural.strokes, 0.20),
    "photo_filter": Family(derived.photo_filter, 0.12, "photos"),
    "noise": Family(procedural.noise_texture, 0.10),
    "mosaic": Family(procedural.mosaic, 0.08),
    "pointillism": Family(procedural.pointillism, 0.08),
    "hatching": Family(procedural.hatching, 0.07),
    "package": Family(derived.package_image, 0.05, "package"),
}
MIN_SIZE = 32
MIN_DETAIL = 12.0  # an image whose channels all have a 5-95 % percentile spread under this (0..255) is redrawn
MAX_TRIES = 4


class StyleCorpus:
    """Style images addressed by index: `corpus[i]` (PIL RGB, size x size) or `corpus.sample(i)` (uint8 array
    and the params that made it, family included).

    sources: the development images (Sources.from_dev); families whose sources are empty are left out and the
    other weights renormalised (`shares`). Raises FieldError for size < MIN_SIZE.
    """

    def __init__(self, seed: int = 0, size: int = 256, sources: Sources | None = None) -> None:
        if int(size) != size or size < MIN_SIZE:
            raise FieldError(f"size must be a whole number of px >= {MIN_SIZE}, got {size}", "size")
        self.seed, self.size = int(seed), int(size)
        self.sources = sources if sources is not None else Sources()
        have = {"": True, "paintings": bool(self.sources.paintings), "photos": bool(self.sources.photos),
                "package": bool(self.sources.package)}
        names = [n for n, f in FAMILIES.items() if have[f.needs]]
        w = np.array([FAMILIES[n].weight for n in names])
        self.shares: dict[str, float] = dict(zip(names, (w / w.sum()).tolist(), strict=True))

    def family_of(self, index: int) -> str:
        """The family of image `index` (the first draw of its generator)."""
        return self._draw(index)[0]

    def _draw(self, index: int) -> tuple[str, np.random.Generator]:
        rng = np.random.default_rng([self.seed, int(index)])
        names = list(self.shares)
        return names[int(rng.choice(len(names), p=list(self.shares.values())))], rng

    def sample(self, index: int, family: str | None = None) -> tuple[np.ndarray, dict]:
        """Image `index`: (RGB uint8 (size, size, 3), params with "family"). An image with less detail than
        MIN_DETAIL is drawn again from the same stream (at most MAX_TRIES draws; params "redrawn": how often).
        `family` forces one family (its generator still seeded by (seed, index)); FieldError if it is unknown
        or its sources are missing."""
        if index < 0:
            raise FieldError(f"index must be >= 0, got {index}", "index")
        name, rng = self._draw(index)
        if family is not None:
            if family not in self.shares:
                raise FieldError(f"family {family!r} unavailable (have: {', '.join(self.shares)})", "family")
            name = family
        fn, tries = FAMILIES[name].fn, 0
        img, params = fn(rng, self.size, self.sources)
        while detail(img) < MIN_DETAIL and tries < MAX_TRIES - 1:  # plain sky, a posterised white: draw again
            img, params = fn(rng, self.size, self.sources)
            tries += 1
        extra = {"redrawn": tries} if tries else {}
        return np.ascontiguousarray(img), {"family": name, **params, **extra}

    def __getitem__(self, index: int) -> Image.Image:
        return Image.fromarray(self.sample(index)[0])


def detail(img: np.ndarray) -> float:
    """The largest 5-95 % percentile spread of the channels of an RGB uint8 image (0..255; every other pixel
    of every other row): 0 for a flat image and for a blank page with a few marks."""
    p5, p95 = np.percentile(img[::2, ::2].reshape(-1, 3), [5, 95], axis=0)
    return float((p95 - p5).max())


@lru_cache(maxsize=8)
def _corpus(seed: int, size: int, dev: str | None, packages: bool) -> StyleCorpus:
    return StyleCorpus(seed, size, Sources.from_dev(dev, packages))


def generate(index: int, seed: int = 0, size: int = 256, dev: str | Path | None = None,
             packages: bool = True, family: str | None = None) -> Image.Image:
    """Style image `index` of the corpus (seed, size, dev folder, package images on/off) as a PIL RGB image,
    size x size px; on the fly, deterministic (the corpus for each setting is cached per process)."""
    corpus = _corpus(int(seed), int(size), None if dev is None else str(dev), bool(packages))
    return Image.fromarray(corpus.sample(index, family)[0])


def write_manifest(path: Path, rows: list[dict]) -> None:
    """A CSV with one row per image: index, file, family and the remaining params as JSON (a row's "ms" and
    "cpu_ms", the time it took, are left out: the manifest depends only on the corpus)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "file", "family", "params"])
        for r in rows:
            rest = {k: v for k, v in r.items() if k not in ("index", "file", "family", "ms", "cpu_ms")}
            w.writerow([r["index"], r["file"], r["family"], json.dumps(rest, sort_keys=True)])
