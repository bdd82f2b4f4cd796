"""Styles derived from real images: augmented development paintings (and collages of two), photos through art
filters, and images shipped in packages. Each family is `fn(rng, size, sources) -> (RGB uint8 (size, size, 3),
params)`; params name the source files.
"""

from __future__ import annotations

import cv2
import numpy as np

from .noise import fbm
from .palettes import gradient_map, luminance, palette_hex, random_palette, recolour, scale_saturation
from .sources import Sources, flip_turn, load_rgb, random_crop

# ----------------------------------------------------------------------------------------------- paintings


def augment(img: np.ndarray, size: int, rng: np.random.Generator, zoom: tuple[float, float],
            p_recolour: float) -> tuple[np.ndarray, dict]:
    """A crop at a random zoom (log-uniform fraction of the short side), a flip and quarter turn, and with
    probability p_recolour a recolouring (hue rotation, gradient map or palette transfer)."""
    out = random_crop(img, size, rng, zoom)
    out, params = flip_turn(out, rng)
    if rng.random() < p_recolour:
        out, rc = recolour(out, rng)
        params.update(rc)
    return out, params


def _collage_mask(size: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Where the second painting of a collage shows: a straight split at any angle, a wavy noise boundary, a
    checkerboard of 2-4 tiles a side, or a disc inset. float32 (size, size) in [0, 1] (edges anti-aliased)."""
    kind = str(rng.choice(["split", "wavy", "tiles", "inset"]))
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == "split":
        a = rng.uniform(0, 2 * np.pi)
        m = (xs - 0.5) * np.cos(a) + (ys - 0.5) * np.sin(a) - rng.uniform(-0.2, 0.2) > 0
    elif kind == "wavy":
        m = fbm(size, rng, rng.uniform(1.5, 4), 4) > 0.5
    elif kind == "tiles":
        k = int(rng.integers(2, 5))
        m = ((xs * k).astype(int) + (ys * k).astype(int)) % 2 == 1
    else:
        cx, cy, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.4)
        m = np.hypot(xs - cx, ys - cy) < r
    return cv2.GaussianBlur(m.astype(np.float32), (0, 0), 0.8), kind


def dev_painting(rng: np.random.Generator, size: int, sources: Sources) -> tuple[np.ndarray, dict]:
    """A development painting, strongly augmented: a crop at 20-100 % of its short side, flip, quarter turn and
    with p = 0.55 a recolouring; with p = 0.2 a collage of two such crops."""
    paths = sources.paintings
    first = paths[int(rng.integers(len(paths)))]
    img, params = augment(load_rgb(first), size, rng, (0.2, 1.0), 0.55)
    params = {"painting": first.name, **params}
    if rng.random() < 0.2 and len(paths) > 1:
        second = paths[int(rng.integers(len(paths)))]
        other, p2 = augment(load_rgb(second), size, rng, (0.2, 1.0), 0.55)
        mask, kind = _collage_mask(size, rng)
        img = (img * (1 - mask[..., None]) + other * mask[..., None]).astype(np.uint8)
        params.update(collage=kind, painting2=second.name, **{f"{k}2": v for k, v in p2.items()})
    return img, params


# ----------------------------------------------------------------------------------------------- filters


def _kmeans(img: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV k-means of the pixels (on a 1/4 sample, seeded from rng): (cluster index per pixel (H, W),
    centres float32 (k, 3) RGB 0..255)."""
    px = img.reshape(-1, 3).astype(np.float32)
    sample = px[rng.integers(0, len(px), max(k * 50, len(px) // 4))]
    cv2.setRNGSeed(int(rng.integers(1 << 30)))
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 12, 1.0)
    _, _, centres = cv2.kmeans(sample, k, None, crit, 1, cv2.KMEANS_PP_CENTERS)
    labels = ((px[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
    return labels.reshape(img.shape[:2]), centres


def art_filter(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """One art filter on an RGB uint8 image: OpenCV stylization, pencil sketch (grey or colour, tinted),
    edge-preserving smoothing with posterisation, posterisation, a k-means palette (its own colours or a random
    palette's: a palette remap) or a cartoon (bilateral smoothing and adaptive-threshold ink lines)."""
    kind = str(rng.choice(["stylization", "pencil", "edge_preserving", "posterise", "kmeans", "cartoon"],
                          p=[0.18, 0.16, 0.16, 0.14, 0.24, 0.12]))
    params: dict = {"filter": kind}
    if kind == "stylization":
        out = cv2.stylization(img, sigma_s=float(rng.uniform(20, 120)), sigma_r=float(rng.uniform(0.2, 0.6)))
    elif kind == "pencil":
        grey, colour = cv2.pencilSketch(img, sigma_s=float(rng.uniform(20, 80)), sigma_r=float(rng.uniform(0.04, 0.1)),
                                        shade_factor=float(rng.uniform(0.02, 0.08)))
        if rng.random() < 0.5:
            out = colour
        else:
            tint = random_palette(rng, 2)
            out = gradient_map(grey.astype(np.float32) / 255, tint)
            params["tint"] = palette_hex(tint)
    elif kind == "edge_preserving":
        out = cv2.edgePreservingFilter(img, flags=1, sigma_s=float(rng.uniform(30, 120)), sigma_r=0.4)
        out = _posterise(out, int(rng.integers(3, 7)))
    elif kind == "posterise":
        levels = int(rng.integers(2, 5))
        smooth = cv2.bilateralFilter(cv2.bilateralFilter(img, 7, 60, 7), 7, 60, 7)
        out, params["levels"] = _posterise(smooth, levels), levels
    elif kind == "kmeans":
        k = int(rng.integers(3, 9))
        labels, centres = _kmeans(cv2.bilateralFilter(img, 7, 60, 60), k, rng)
        if rng.random() < 0.5:
            pal = random_palette(rng, k)
            order = np.argsort(luminance(centres))
            centres = np.empty_like(centres)
            centres[order] = pal[np.argsort(luminance(pal))] * 255
            params["palette"] = palette_hex(pal)
        out = centres[labels].astype(np.uint8)
        params["k"] = k
    else:
        out = _cartoon(img, rng)
    return out, params


def _posterise(img: np.ndarray, levels: int) -> np.ndarray:
    """Quantise each channel to `levels` evenly spaced values."""
    step = 255.0 / (levels - 1)
    return (np.round(img / step) * step).astype(np.uint8)


def _cartoon(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat colours (repeated bilateral smoothing, boosted saturation) under dark adaptive-threshold lines."""
    smooth = img
    for _ in range(int(rng.integers(2, 5))):
        smooth = cv2.bilateralFilter(smooth, 7, 40, 7)
    grey = cv2.medianBlur(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), 5)
    lines = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, 9, int(rng.integers(2, 8)))
    out = scale_saturation(smooth, float(rng.uniform(1.1, 1.8)))
    return (out * (lines[..., None] / 255.0)).astype(np.uint8)


def photo_filter(rng: np.random.Generator, size: int, sources: Sources) -> tuple[np.ndarray, dict]:
    """A development photo (crop at 35-100 %, flip, quarter turn) through one art filter, recoloured with
    p = 0.35."""
    path = sources.photos[int(rng.integers(len(sources.photos)))]
    img, params = augment(load_rgb(path), size, rng, (0.35, 1.0), 0.0)
    out, fp = art_filter(img, rng)
    params = {"photo": path.name, **params, **fp}
    if rng.random() < 0.35:
        out, rc = recolour(out, rng)
        params.update(rc)
    return out, params


# ----------------------------------------------------------------------------------------------- packages


def package_image(rng: np.random.Generator, size: int, sources: Sources) -> tuple[np.ndarray, dict]:
    """An image shipped in an installed package (provenance in params): a texture (brick, grass, gravel,
    coins) gradient-mapped through a random palette, or a photo through an art filter; crops, flips, turns."""
    item, path = sources.package[int(rng.integers(len(sources.package)))]
    img, params = augment(load_rgb(path), size, rng, (0.25, 1.0), 0.0)
    params = {"package": item.package, "source_file": item.relpath, "licence": item.licence, **params}
    if item.kind == "texture":
        palette = random_palette(rng)
        t = cv2.equalizeHist(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)).astype(np.float32) / 255
        return gradient_map(t, palette, cyclic=bool(rng.random() < 0.2)), {**params, "palette": palette_hex(palette)}
    out, fp = art_filter(img, rng)
    if rng.random() < 0.5:
        out, rc = recolour(out, rng)
        fp.update(rc)
    return out, {**params, **fp}
