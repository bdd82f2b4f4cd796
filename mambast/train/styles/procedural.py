"""Procedural paintings and textures: brush strokes along flow fields, noise textures, mosaics, hatching and
pointillism. Each family is `fn(rng, size, sources) -> (RGB uint8 (size, size, 3), params)`; `sources` (the
development images) is used by some variants as the picture to paint, else a random composition is.
"""

from __future__ import annotations

import cv2
import numpy as np

from .noise import fbm, flow_angles, normalise, value_noise, warp, worley
from .palettes import gradient_map, luminance, palette_hex, random_palette, recolour
from .sources import Sources, load_rgb, random_crop

SHIFT = 4  # sub-pixel bits of OpenCV drawing coordinates
ONE = 1 << SHIFT


# ----------------------------------------------------------------------------------------------- pictures


def composition(size: int, rng: np.random.Generator, palette: np.ndarray) -> tuple[np.ndarray, str]:
    """A simple random picture in the palette's colours to be painted over: colour fields of quantised noise,
    a landscape (sky gradient, noisy ground, a disc) or a warped multi-stop gradient. uint8 (size, size, 3)."""
    kind = str(rng.choice(["fields", "landscape", "gradient"], p=[0.45, 0.3, 0.25]))
    n = len(palette)
    if kind == "fields":
        t = fbm(size, rng, rng.uniform(1.5, 5), 4)
        img = (palette[np.minimum((t * n).astype(int), n - 1)] * 255).astype(np.uint8)
    elif kind == "landscape":
        img = _landscape(size, rng, palette)
    else:
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
        a = rng.uniform(0, 2 * np.pi)
        t = normalise(xs * np.cos(a) + ys * np.sin(a) + (fbm(size, rng, 2.5, 4) - 0.5) * rng.uniform(0.3, 1.2))
        img = gradient_map(t, palette[rng.permutation(n)], cyclic=bool(rng.random() < 0.3))
    sigma = size * rng.uniform(0.004, 0.03)
    return cv2.GaussianBlur(img, (0, 0), sigma), kind


def _landscape(size: int, rng: np.random.Generator, palette: np.ndarray) -> np.ndarray:
    """Sky (a vertical gradient of two palette colours) over ground (noise in two others), a hill line from 1-D
    noise, and sometimes a sun or moon disc. uint8 (size, size, 3)."""
    c = palette[rng.permutation(len(palette))]
    ys = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    sky = c[0] * (1 - ys) + c[1 % len(c)] * ys
    g = fbm(size, rng, rng.uniform(3, 8), 4)[..., None]
    ground = c[2 % len(c)] * (1 - g) + c[-1] * g
    horizon = size * (rng.uniform(0.3, 0.7) + (value_noise(size, rng.uniform(2, 6), rng)[0] - 0.5) * 0.3)
    below = (np.arange(size)[:, None] > horizon[None, :])[..., None]
    img = (np.where(below, ground, sky) * 255).astype(np.uint8)
    if rng.random() < 0.5:
        centre = (int(rng.uniform(0.1, 0.9) * size), int(rng.uniform(0.05, 0.35) * size))
        colour = tuple(int(v) for v in (c[int(rng.integers(len(c)))] * 255))
        cv2.circle(img, centre, int(size * rng.uniform(0.04, 0.12)), colour, -1, cv2.LINE_AA)
    return img


def picture(size: int, rng: np.random.Generator, sources: Sources, palette: np.ndarray,
            p_source: float = 0.4) -> tuple[np.ndarray, dict]:
    """The picture a procedural family paints: with probability p_source (when sources has images) a crop of a
    development painting or photo (recoloured with p = 0.5), else a composition in `palette`."""
    pool = sources.paintings + sources.photos
    if pool and rng.random() < p_source:
        path = pool[int(rng.integers(len(pool)))]
        img = random_crop(load_rgb(path), size, rng, (0.3, 1.0))
        params: dict = {"picture": f"{'photo' if path in sources.photos else 'painting'} {path.name}"}
        if rng.random() < 0.5:
            img, rc = recolour(img, rng)
            params.update(rc)
        return img, params
    img, kind = composition(size, rng, palette)
    return img, {"picture": kind}


# ----------------------------------------------------------------------------------------------- strokes


def _trace(starts: np.ndarray, angles: np.ndarray, length: np.ndarray, steps: int,
           rng: np.random.Generator) -> np.ndarray:
    """Polylines following the direction field: (n, steps + 1, 2) float x, y from each start, `length` px long
    (per stroke), each walking one way or the other along the field."""
    size = angles.shape[0]
    sign = np.where(rng.random(len(starts)) < 0.5, -1.0, 1.0)
    pts = [starts]
    cur = starts.copy()
    for _ in range(steps):
        xi = np.clip(cur[:, 0].astype(int), 0, size - 1)
        yi = np.clip(cur[:, 1].astype(int), 0, size - 1)
        a = angles[yi, xi]
        cur = cur + (sign * length / steps)[:, None] * np.stack([np.cos(a), np.sin(a)], 1)
        pts.append(cur)
    return np.stack(pts, 1)


def _streaks(size: int, angles: np.ndarray, rng: np.random.Generator, length: float) -> np.ndarray:
    """Bristle streaks: white noise smeared along the direction field (a cheap line-integral convolution),
    float32 (size, size) with mean 0 and unit-ish spread."""
    noise = rng.standard_normal((size, size)).astype(np.float32)
    dx, dy = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    acc = noise.copy()
    taps = 6
    for k in range(1, taps + 1):
        d = length * k / taps
        acc += warp(noise, dx * d, dy * d) + warp(noise, -dx * d, -dy * d)
    return acc / np.sqrt(2 * taps + 1)


def strokes(rng: np.random.Generator, size: int, sources: Sources) -> tuple[np.ndarray, dict]:
    """A painting of oriented brush strokes: 2-4 passes from broad to fine brushes; stroke directions follow a
    flow field (uniform, swirling noise, vortex or radial), colours are the painted picture's plus per-stroke
    jitter, and a smeared-noise bristle texture runs along the strokes."""
    palette = random_palette(rng)
    src, params = picture(size, rng, sources, palette, p_source=0.35)
    angles, flow = flow_angles(size, rng)
    canvas = cv2.GaussianBlur(src, (0, 0), size * 0.05)
    passes = int(rng.integers(2, 5))
    widths = np.geomspace(size * rng.uniform(0.035, 0.08), size * rng.uniform(0.008, 0.02), passes)
    aspect, jitter = rng.uniform(1.5, 7), rng.uniform(4, 22)
    density = rng.uniform(0.5, 1.3)
    for w in widths:
        n = int(min(4000 * (size / 256) ** 2, density * (size / w) ** 2 / aspect * 2))
        starts = rng.uniform(-w, size + w, (n, 2))
        length = w * aspect * rng.uniform(0.6, 1.4, n)
        pts = (_trace(starts, angles, length, 3, rng) * ONE).astype(np.int32)
        xi, yi = np.clip(starts.astype(int), 0, size - 1).T
        colours = np.clip(src[yi, xi].astype(np.float32) + rng.normal(0, jitter, (n, 3)), 0, 255)
        thick = max(1, int(round(w)))
        for poly, col in zip(pts, colours.tolist(), strict=True):
            cv2.polylines(canvas, [poly], False, col, thick, cv2.LINE_AA, SHIFT)
    streak = _streaks(size, angles, rng, float(widths[-1] * aspect))
    amount = rng.uniform(0.04, 0.14)
    out = np.clip(canvas.astype(np.float32) * (1 + amount * streak[..., None]), 0, 255).astype(np.uint8)
    params.update(flow=flow, passes=passes, widths=[round(float(w), 1) for w in widths],
                  aspect=round(float(aspect), 2), palette=palette_hex(palette))
    return out, params


# ----------------------------------------------------------------------------------------------- noise


def _noise_field(size: int, rng: np.random.Generator, kind: str) -> np.ndarray:
    """A scalar texture in [0, 1]: clouds (fBm), ridged, marble, wood rings, warped (domain-warped fBm),
    cells (Worley distance) or bands (posterised fBm)."""
    base = rng.uniform(1.5, 8)
    if kind == "clouds":
        return fbm(size, rng, base, 6, rng.uniform(0.4, 0.65))
    if kind == "ridged":
        return normalise(1 - np.abs(2 * fbm(size, rng, base, 6) - 1) ** rng.uniform(0.5, 1.0))
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == "marble":
        a, f = rng.uniform(0, np.pi), rng.uniform(2, 10)
        turb = fbm(size, rng, base, 5) * rng.uniform(3, 10)
        return 0.5 + 0.5 * np.sin(2 * np.pi * f * (xs * np.cos(a) + ys * np.sin(a)) + turb)
    if kind == "wood":
        cx, cy = rng.uniform(-0.5, 1.5, 2)
        r = np.hypot(xs - cx, ys - cy) * rng.uniform(6, 25) + fbm(size, rng, base, 4) * rng.uniform(1, 4)
        return (r % 1.0) ** rng.uniform(0.5, 2)
    if kind == "warped":
        amp = size * rng.uniform(0.05, 0.3)
        dx, dy = (fbm(size, rng, base / 2, 4) - 0.5) * amp, (fbm(size, rng, base / 2, 4) - 0.5) * amp
        return normalise(warp(fbm(size, rng, base, 6), dx, dy))
    if kind == "cells":
        dist, _, _ = worley(size, rng.uniform(0, size, (int(rng.integers(10, 300)), 2)))
        return normalise(np.sqrt(dist)) if rng.random() < 0.5 else 1 - normalise(dist)
    t = fbm(size, rng, base, 5)
    levels = int(rng.integers(3, 8))
    return np.floor(t * levels) / (levels - 1)


def noise_texture(rng: np.random.Generator, size: int, sources: Sources) -> tuple[np.ndarray, dict]:
    """A noise or fractal texture through a random palette: clouds, ridged, marble, wood, warped, cells or
    bands, gradient-mapped (sometimes cyclically), optionally times a second, finer texture."""
    kinds = ["clouds", "ridged", "marble", "wood", "warped", "cells", "bands"]
    kind = str(rng.choice(kinds))
    palette = random_palette(rng)
    t = _noise_field(size, rng, kind)
    cyclic = bool(rng.random() < 0.3)
    img = gradient_map(t, palette, cyclic=cyclic)
    params = {"texture": kind, "cyclic": cyclic, "palette": palette_hex(palette)}
    if rng.random() < 0.4:
        second = str(rng.choice(kinds))
        detail = _noise_field(size, rng, second)
        amount = rng.uniform(0.15, 0.5)
        img = np.clip(img * (1 - amount + amount * 2 * detail[..., None]), 0, 255).astype(np.uint8)
        params["detail"] = second
    return img, params


# ----------------------------------------------------------------------------------------------- mosaic


def mosaic(rng: np.random.Generator, size: int, sources: Sources) -> tuple[np.ndarray, dict]:
    """A Voronoi mosaic: random or jittered-grid cells (tesserae, stained glass, crystals) coloured from the
    painted picture at each cell's site with jitter, with dark lead or light grout lines and optional
    bevel shading."""
    palette = random_palette(rng)
    src, params = picture(size, rng, sources, palette, p_source=0.45)
    cells = max(8, int(np.exp(rng.uniform(np.log(30), np.log(1200))) * (size / 256) ** 2))
    if rng.random() < 0.5:
        g = max(2, int(np.sqrt(cells)))
        gy, gx = np.mgrid[0:g, 0:g].reshape(2, -1).astype(np.float32)
        sites = (np.stack([gx, gy], 1) + 0.5 + rng.uniform(-0.4, 0.4, (g * g, 2))) * size / g
        layout = "grid"
    else:
        sites, layout = rng.uniform(0, size, (cells, 2)), "random"
    dist, label, xy = worley(size, sites)
    jitter = rng.uniform(0, 30)
    colours = np.clip(src[xy[:, 1], xy[:, 0]].astype(np.float32) + rng.normal(0, jitter, (len(xy), 3)), 0, 255)
    img = colours[label]
    bevel = rng.uniform(0, 0.6)
    if bevel > 0.2:
        spacing = size / np.sqrt(len(xy))
        img *= (1 - bevel * np.clip(dist / spacing, 0, 1) ** 2)[..., None]
    edge = (label != np.roll(label, 1, 0)) | (label != np.roll(label, 1, 1))
    grout = int(rng.integers(0, 4))
    if grout:
        edge = cv2.dilate(edge.astype(np.uint8), np.ones((grout, grout), np.uint8)).astype(bool)
        tone = rng.uniform(0, 0.25) if rng.random() < 0.6 else rng.uniform(0.7, 0.95)
        img[edge] = np.array(random_palette(rng, 1, None)[0] * 0.3 + tone * 0.7) * 255
    params.update(layout=layout, cells=len(xy), grout=grout, bevel=round(float(bevel), 2),
                  palette=palette_hex(palette))
    return np.clip(img, 0, 255).astype(np.uint8), params


# ----------------------------------------------------------------------------------------------- hatching


INKS = {"black": (0.08, 0.07, 0.07), "sepia": (0.36, 0.22, 0.12), "blue": (0.1, 0.16, 0.45),
        "red chalk": (0.62, 0.22, 0.14), "green": (0.1, 0.35, 0.2), "violet": (0.32, 0.12, 0.42)}


def _hatch_lines(size: int, angle: float, spacing: float, halfwidth: np.ndarray,
                 wobble: np.ndarray) -> np.ndarray:
    """Anti-aliased parallel lines at `angle` (rad), `spacing` px apart, half-width `halfwidth` px (per pixel)
    and phase shifted by `wobble` px: ink coverage in [0, 1], float32 (size, size)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    phase = (xs * np.cos(angle) + ys * np.sin(angle) + wobble) / spacing
    d = np.abs(phase - np.round(phase)) * spacing
    return np.clip(halfwidth - d + 0.5, 0, 1)


def hatching(rng: np.random.Generator, size: int, sources: Sources) -> tuple[np.ndarray, dict]:
    """A pen or chalk drawing: 1-4 layers of parallel hatching (cross-hatching) whose line widths follow the
    picture's darkness, in one ink on tinted paper, sometimes over a light colour wash, with contour lines."""
    palette = random_palette(rng)
    src, params = picture(size, rng, sources, palette, p_source=0.5)
    tone = normalise(cv2.GaussianBlur(luminance(src.astype(np.float32)), (0, 0), 1.5))
    dark = (1 - tone) ** rng.uniform(1.0, 2.0)
    if rng.random() < 0.6:
        ink_name = str(rng.choice(list(INKS)))
        ink = np.array(INKS[ink_name], np.float32)
    else:
        ink_name, ink = "palette", palette[np.argmin(luminance(palette))]
    light = palette[np.argmax(luminance(palette))]
    paper = np.array([0.95, 0.92, 0.85]) * 0.8 + light * rng.uniform(0, 0.3)
    paper = np.clip(paper / max(1.0, paper.max()) + rng.normal(0, 0.03, 3), 0, 1).astype(np.float32)
    layers = int(rng.integers(1, 5))
    spacing = max(2.5, size * rng.uniform(0.012, 0.035))
    base = rng.uniform(0, np.pi)
    step = np.pi / 4 if rng.random() < 0.6 else rng.uniform(0.3, 1.4)
    wobble = (fbm(size, rng, rng.uniform(2, 8), 3) - 0.5) * spacing * rng.uniform(0, 3)
    cover = np.zeros((size, size), np.float32)
    for i in range(layers):
        start = 0.8 * i / layers
        level = np.clip((dark - start) / (1 - start), 0, 1)
        cover = np.maximum(cover, _hatch_lines(size, base + i * step, spacing, level * spacing * 0.3, wobble))
    if rng.random() < 0.6:
        edges = cv2.Canny(cv2.GaussianBlur(src, (0, 0), 1.2), 40, 110).astype(np.float32) / 255
        cover = np.maximum(cover, cv2.GaussianBlur(edges, (0, 0), 0.6) * 1.5)
    ground = np.broadcast_to(paper, (size, size, 3))
    if rng.random() < 0.4:
        wash = cv2.GaussianBlur(src, (0, 0), size * 0.02).astype(np.float32) / 255
        ground = paper * 0.45 + wash * 0.55
        params["wash"] = True
    grain = 1 + (fbm(size, rng, size / 4, 2) - 0.5) * 0.08
    img = (ground * (1 - cover[..., None]) + ink * cover[..., None]) * grain[..., None]
    params.update(ink=ink_name, layers=layers, spacing=round(float(spacing), 1))
    return np.clip(img * 255, 0, 255).astype(np.uint8), params


# ----------------------------------------------------------------------------------------------- points


def pointillism(rng: np.random.Generator, size: int, sources: Sources) -> tuple[np.ndarray, dict]:
    """A pointillist painting: many round dots or short dashes in random order, each coloured from the painted
    picture, either jittered or snapped to the nearest of a few palette colours (divisionism), on a light or
    dark ground."""
    palette = random_palette(rng, int(rng.integers(4, 9)))
    src, params = picture(size, rng, sources, palette, p_source=0.45)
    radius = size * rng.uniform(0.006, 0.022)
    n = int(min(22000, rng.uniform(0.9, 1.6) * (size / radius) ** 2 / 3))
    xy = rng.uniform(0, size, (n, 2))
    colours = src[xy[:, 1].astype(int), xy[:, 0].astype(int)].astype(np.float32)
    snap = bool(rng.random() < 0.5)
    if snap:
        d = ((colours[:, None] - palette[None] * 255) ** 2).sum(-1)
        nearest = np.argsort(d, 1)[:, :2]
        pick = np.where(rng.random(n) < 0.75, nearest[:, 0], nearest[:, 1])
        colours = colours * 0.4 + palette[pick] * 255 * 0.6
    colours = np.clip(colours + rng.normal(0, rng.uniform(8, 30), (n, 3)), 0, 255)
    ground_tone = rng.uniform(0.85, 0.97) if rng.random() < 0.7 else rng.uniform(0.05, 0.2)
    canvas = cv2.GaussianBlur(src, (0, 0), size * 0.03).astype(np.float32) * 0.35 + ground_tone * 255 * 0.65
    canvas = canvas.astype(np.uint8)
    dash = bool(rng.random() < 0.35)
    angle = rng.uniform(0, 180)
    rs = np.maximum(1, radius * rng.uniform(0.7, 1.3, n))
    pts = (xy * ONE).astype(np.int32)
    for (x, y), r, col in zip(pts.tolist(), rs.tolist(), colours.tolist(), strict=True):
        if dash:
            axes = (int(r * 1.8 * ONE), int(r * 0.6 * ONE))
            cv2.ellipse(canvas, (x, y), axes, angle, 0, 360, col, -1, cv2.LINE_AA, SHIFT)
        else:
            cv2.circle(canvas, (x, y), int(r * ONE), col, -1, cv2.LINE_AA, SHIFT)
    params.update(dots=n, radius=round(float(radius), 1), snap=snap, dash=dash, palette=palette_hex(palette))
    return canvas, params
