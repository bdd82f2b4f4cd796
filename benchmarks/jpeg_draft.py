"""JPEG draft-mode decoding in mambast.images: time to read a large photo for a smaller planned size.

    python benchmarks/jpeg_draft.py [--width 4000 --height 3000 --repeat 5]

Writes a synthetic smooth photo-like JPEG (quality 92) to a temp folder and times, best of --repeat:
full decode + Lanczos resize (load_image + resize_short_side) vs load_resized (draft, then resize), for the
stylize size 512 and the training read (load_image with size_hint=(512, 512), then a 512 x 512 bilinear
resize), and prints the mean/max absolute difference of the two results in 8-bit levels.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mambast.images import load_image, load_resized, resize_short_side


def best(fn, repeat: int) -> tuple[float, Image.Image]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=4000)
    ap.add_argument("--height", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    y, x = np.mgrid[0:args.height, 0:args.width] / max(args.width, args.height)
    rgb = np.stack([128 + 100 * np.sin(40 * x * y), 128 + 90 * np.cos(23 * y), 200 * np.exp(-8 * (x - .5) ** 2)], -1)
    rgb += np.random.default_rng(0).normal(0, 6, rgb.shape)  # some texture, as in photos
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "photo.jpg"
        Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(path, quality=92)
        print(f"{args.width} x {args.height} JPEG, {path.stat().st_size / 1e6:.1f} MB, best of {args.repeat}")
        cases = {
            "stylize size 512": (lambda: resize_short_side(load_image(path), 512), lambda: load_resized(path, 512)),
            "training 512 x 512": (lambda: load_image(path).resize((512, 512), Image.BILINEAR),
                                   lambda: load_image(path, size_hint=(512, 512)).resize((512, 512), Image.BILINEAR)),
        }
        for name, (full_fn, draft_fn) in cases.items():
            t_full, full = best(full_fn, args.repeat)
            t_draft, draft = best(draft_fn, args.repeat)
            d = np.abs(np.asarray(full, dtype=int) - np.asarray(draft, dtype=int))
            print(f"{name}: full decode {t_full * 1e3:.0f} ms, draft {t_draft * 1e3:.0f} ms "
                  f"({t_full / t_draft:.1f}x); difference mean {d.mean():.2f}, max {d.max()} levels")


if __name__ == "__main__":
    main()
