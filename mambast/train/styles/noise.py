"""Smooth random fields for the style corpus: value noise, fractal (fBm) noise, Worley distance and flow fields.

Every field is float32 (size, size) and drawn only from the given generator, so it is reproducible.
"""

from __future__ import annotations

import cv2
import numpy as np


def value_noise(size: int, cells: float, rng: np.random.Generator) -> np.ndarray:
    """Value noise: a random (cells + 1)^2 lattice in [0, 1] upsampled bicubically to (size, size), so its
    features are about size / cells px wide. Values roughly in [0, 1]."""
    n = max(2, int(round(cells)) + 1)
    grid = rng.random((n, n), dtype=np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


def normalise(a: np.ndarray) -> np.ndarray:
    """Stretch a field to [0, 1] (a constant field gives 0.5)."""
    lo, hi = float(a.min()), float(a.max())
    return np.full_like(a, 0.5) if hi - lo < 1e-6 else (a - lo) / (hi - lo)


def fbm(size: int, rng: np.random.Generator, cells: float = 3.0, octaves: int = 5, gain: float = 0.5,
        lacunarity: float = 2.0) -> np.ndarray:
    """Fractal Brownian motion: octaves of value noise, each `lacunarity` x finer and `gain` x weaker than the
    last, starting at `cells` features across; normalised to [0, 1]."""
    out, amp, freq = np.zeros((size, size), np.float32), 1.0, cells
    for _ in range(octaves):
        if freq > size / 2:
            break
        out += amp * value_noise(size, freq, rng)
        amp, freq = amp * gain, freq * lacunarity
    return normalise(out)


def warp(field: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Resample `field` at (x + dx, y + dy) (px; reflected at the border): domain warping."""
    h, w = field.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(field, xs + dx.astype(np.float32), ys + dy.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT)


def worley(size: int, sites: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voronoi cells of `sites` ((n, 2) float x, y in px) via OpenCV's distance transform: the distance (px,
    float32) of every pixel to its nearest site, its cell index (int64, 0..m-1) and the (m, 2) int x, y of the
    m distinct sites in cell order (sites rounded to pixels; duplicates merge)."""
    xy = np.clip(np.round(sites).astype(np.int64), 0, size - 1)
    mask = np.ones((size, size), np.uint8)
    mask[xy[:, 1], xy[:, 0]] = 0
    dist, labels = cv2.distanceTransformWithLabels(mask, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    ys, xs = np.nonzero(mask == 0)  # DIST_LABEL_PIXEL numbers the zero pixels 1.. in row-major order
    return dist, labels.astype(np.int64) - 1, np.stack([xs, ys], 1)


def flow_angles(size: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A direction field (radians, (size, size)) for brush strokes: one direction with slight noise, a
    noise-driven flow (swirls at a random scale), a vortex round a random centre, or radial from one.
    Returns (angles, kind)."""
    kind = str(rng.choice(["uniform", "noise", "vortex", "radial"], p=[0.25, 0.5, 0.15, 0.1]))
    base = rng.uniform(0, np.pi)
    if kind == "uniform":
        return base + (fbm(size, rng, 2, 3) - 0.5) * rng.uniform(0.2, 0.9), kind
    if kind == "noise":
        return base + fbm(size, rng, rng.uniform(1.5, 5), 3) * rng.uniform(2, 7), kind
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    cx, cy = rng.uniform(-0.2, 1.2, 2) * size
    radial = np.arctan2(ys - cy, xs - cx)
    jitter = (fbm(size, rng, 3, 3) - 0.5) * 0.8
    return (radial + np.pi / 2 + jitter if kind == "vortex" else radial + jitter), kind
