"""Colour for the style corpus: palettes drawn over the whole hue circle, gradient maps and recolouring.

Images here are numpy arrays: RGB uint8 (H, W, 3), or float32 in [0, 1] where a function says so. A palette is
a float32 (n, 3) array of RGB colours in [0, 1]. Hues are in turns (0..1 is the full circle).
"""

from __future__ import annotations

import cv2
import numpy as np

# hue offsets (turns) of the classic colour schemes around a base hue, and how often each is drawn ("free":
# independent random hues); coherent schemes dominate, as in most paintings
SCHEMES: dict[str, tuple[float, ...]] = {
    "analogous": (0.0, 0.06, -0.06, 0.12),
    "complementary": (0.0, 0.5, 0.03, 0.47),
    "split": (0.0, 0.42, 0.58),
    "triadic": (0.0, 1 / 3, 2 / 3),
    "tetradic": (0.0, 0.25, 0.5, 0.75),
    "mono": (0.0,),
    "free": (),
}
SCHEME_P = (0.25, 0.2, 0.12, 0.1, 0.05, 0.18, 0.1)


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """HSV -> RGB, vectorised. h in turns (any real, taken mod 1), s and v in [0, 1]; returns float32 (..., 3)."""
    h = np.mod(h, 1.0) * 6.0
    i = np.floor(h).astype(np.int64) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices = [np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))]
    out = np.choose(i[..., None], choices)
    return out.astype(np.float32)


def random_palette(rng: np.random.Generator, n: int | None = None, hue: float | None = None) -> np.ndarray:
    """A palette of n (default 3..7) colours: a scheme (SCHEMES, drawn with SCHEME_P) around a base hue uniform
    on the circle (or `hue`, turns), with a shared saturation level (muted to vivid) and values spread from
    dark to light. Returns float32 (n, 3) RGB in [0, 1]."""
    n = int(rng.integers(3, 8)) if n is None else n
    base = rng.random() if hue is None else hue
    scheme = str(rng.choice(list(SCHEMES), p=SCHEME_P))
    offsets = rng.random(n) if scheme == "free" else np.resize(np.array(SCHEMES[scheme]), n)
    h = base + offsets + rng.normal(0, 0.02, n)
    sat_level = rng.uniform(0.35, 1.0)
    s = np.clip(sat_level * rng.uniform(0.6, 1.15, n), 0, 1)
    v = np.clip(np.linspace(rng.uniform(0.08, 0.45), rng.uniform(0.8, 1.0), n)[rng.permutation(n)]
                + rng.normal(0, 0.05, n), 0.03, 1)
    return hsv_to_rgb(h, s, v)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of RGB (..., 3), same scale as the input; float32 (...)."""
    return (rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114).astype(np.float32)


def gradient_map(t: np.ndarray, palette: np.ndarray, cyclic: bool = False) -> np.ndarray:
    """Map a scalar field t (H, W) in [0, 1] through the palette's colours (sorted dark to light, evenly spaced
    stops; `cyclic`: back to the first colour at t = 1). Returns uint8 (H, W, 3)."""
    pal = palette if cyclic else palette[np.argsort(luminance(palette))]
    if cyclic:
        pal = np.concatenate([pal, pal[:1]])
    lut_t = np.linspace(0, 1, 256)
    stops = np.linspace(0, 1, len(pal))
    lut = np.stack([np.interp(lut_t, stops, pal[:, c]) for c in range(3)], -1)
    idx = np.clip(t * 255 + 0.5, 0, 255).astype(np.uint8)
    return (lut[idx] * 255 + 0.5).astype(np.uint8)


def rotate_hue(img: np.ndarray, turn: float) -> np.ndarray:
    """Rotate the hue of an RGB uint8 image by `turn` (turns); saturation and value kept."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV_FULL)
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(round(turn * 256))) % 256
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)


def scale_saturation(img: np.ndarray, factor: float) -> np.ndarray:
    """Multiply the HSV saturation of an RGB uint8 image by `factor` (clipped)."""
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    hsv[..., 1] = np.clip(hsv[..., 1] * factor, 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB_FULL)


def palette_transfer(img: np.ndarray, palette: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Give an RGB uint8 image the mean and spread of a palette in Lab (a Reinhard colour transfer whose target
    statistics are the palette's, with a random weighting of its colours). Lightness keeps most of its own
    spread; returns uint8 (H, W, 3)."""
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB).astype(np.float32)
    pal_lab = cv2.cvtColor((palette[None] * 255).astype(np.uint8), cv2.COLOR_RGB2LAB)[0].astype(np.float32)
    w = rng.dirichlet(np.ones(len(palette)))
    mean = (w[:, None] * pal_lab).sum(0)
    std = np.sqrt((w[:, None] * (pal_lab - mean) ** 2).sum(0)) + 4.0
    src_mean, src_std = lab.reshape(-1, 3).mean(0), lab.reshape(-1, 3).std(0) + 1e-3
    std[0] = 0.5 * std[0] + 0.5 * src_std[0]
    out = (lab - src_mean) / src_std * std + mean
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def recolour(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A random global recolouring of an RGB uint8 image: a hue rotation (any angle) with a saturation change,
    a gradient map of its luminance through a random palette (blended with the original), or a palette
    transfer. Returns (image, params)."""
    mode = rng.choice(["hue", "gradient", "transfer"], p=[0.45, 0.3, 0.25])
    if mode == "hue":
        turn, sat = float(rng.random()), float(rng.uniform(0.8, 1.6))
        return scale_saturation(rotate_hue(img, turn), sat), {"recolour": "hue", "turn": round(turn, 3),
                                                              "saturation": round(sat, 2)}
    palette = random_palette(rng)
    if mode == "gradient":
        alpha = float(rng.uniform(0.6, 1.0))
        mapped = gradient_map(luminance(img) / 255.0, palette)
        out = cv2.addWeighted(mapped, alpha, img, 1 - alpha, 0)
        return out, {"recolour": "gradient", "alpha": round(alpha, 2), "palette": palette_hex(palette)}
    return palette_transfer(img, palette, rng), {"recolour": "transfer", "palette": palette_hex(palette)}


def palette_hex(palette: np.ndarray) -> str:
    """The palette as '#rrggbb' strings joined by spaces (for manifests)."""
    return " ".join("#" + "".join(f"{int(round(c * 255)):02x}" for c in col) for col in palette)
