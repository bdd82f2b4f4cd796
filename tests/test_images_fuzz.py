"""Fuzz the image reader: byte flips and truncations of PNG, JPEG, WebP, TIFF and GIF files (fixed seed).

Every damaged file either loads as an RGB image or raises ImageError with one line naming the file; never
another exception, and no Python warning reaches the user (Pillow warned "Corrupt EXIF data", "Truncated
File Read", "Metadata Warning" from load_image for 38 of these 384 files before). The three entry points are
fuzzed: load_image, load_resized (the JPEG draft path) and image_size (the header alone).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from mambast.images import ImageError, image_size, load_image, load_resized

SEED = 20261201
CASES_PER_FILE = 24  # x 16 base files = 384 damaged files


def _base_files() -> dict[str, bytes]:
    """Small images of every format in several flavours (modes, compressions, metadata)."""
    rng = np.random.default_rng(SEED)
    y, x = np.mgrid[0:24, 0:32]
    rgb = np.stack([x * 8, y * 10, (x + y) * 4], -1).astype(np.uint8)
    rgb[8:16, 8:24] = rng.integers(0, 255, (8, 16, 3))
    img = Image.fromarray(rgb, "RGB")
    rgba = img.copy()
    rgba.putalpha(Image.fromarray((x * 8).astype(np.uint8), "L"))
    exif = Image.Exif()
    exif[0x0112] = 6
    from test_images_icc import PROFILES  # a generated Adobe RGB profile: the ICC path is fuzzed too

    icc = PROFILES["adobe-rgb"][0]
    variants = {
        "rgb.png": (img, {}),
        "rgba-icc.png": (rgba, {"icc_profile": icc}),
        "pal.png": (img.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), {}),
        "g16.png": (Image.fromarray((x * 2000).astype(np.uint16)), {}),
        "base.jpg": (img, {"quality": 90}),
        "exif-icc-prog.jpg": (img, {"exif": exif, "icc_profile": icc, "progressive": True}),
        "cmyk.jpg": (img.convert("CMYK"), {}),
        "lossy.webp": (img, {"quality": 80}),
        "alpha-lossless.webp": (rgba, {"lossless": True}),
        "raw.tif": (img, {}),
        "lzw-exif.tif": (img, {"compression": "tiff_lzw", "exif": exif}),
        "g16.tif": (Image.fromarray((x * 2000).astype(np.uint16)), {}),
        "pal.gif": (img.convert("P", palette=Image.Palette.ADAPTIVE, colors=32), {}),
        "anim.gif": (img.convert("P"), {"save_all": True, "append_images": [rgba.convert("P")],
                                        "duration": 50}),
        "rgb.bmp": (img, {}),
        "rgb.ppm": (img, {}),
    }
    out = {}
    for name, (im, kw) in variants.items():
        buf = io.BytesIO()
        im.save(buf, Image.registered_extensions()["." + name.rsplit(".", 1)[1]], **kw)
        out[name] = buf.getvalue()
    return out


def _damage(data: bytes, rng: np.random.Generator) -> bytes:
    """Flip 1-8 bytes (half of them in the first 128 bytes, where headers live), truncate, or both."""
    b = bytearray(data)
    kind = rng.integers(0, 3)
    if kind in (0, 2):
        for _ in range(int(rng.integers(1, 9))):
            hi = min(len(b), 128) if rng.random() < 0.5 else len(b)
            b[int(rng.integers(0, hi))] ^= int(rng.integers(1, 256))
    if kind in (1, 2):
        b = b[: int(rng.integers(0, len(b)))]
    return bytes(b)


def _cases():
    rng = np.random.default_rng(SEED)
    for name, data in _base_files().items():
        for i in range(CASES_PER_FILE):
            yield f"{i:02d}-{name}", _damage(data, rng)


def test_base_files_load(tmp_path):
    for name, data in _base_files().items():
        (tmp_path / name).write_bytes(data)
        assert load_image(tmp_path / name).mode == "RGB", name


def test_damaged_files_load_or_give_one_line(tmp_path):
    outcomes = {"loaded": 0, "refused": 0}
    for name, data in _cases():
        path = tmp_path / name
        path.write_bytes(data)
        for read in (load_image, lambda p: load_resized(p, 16), image_size):
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    result = read(path)
                assert not caught, [str(w.message) for w in caught]  # Pillow's metadata warnings stay inside
            except ImageError as e:
                assert not caught, [str(w.message) for w in caught]
                message = str(e)
                assert "\n" not in message and str(path) in message, message
                outcomes["refused"] += 1
            else:
                assert isinstance(result, tuple) or result.mode == "RGB"
                outcomes["loaded"] += 1
    # both outcomes happen: the damage is neither always fatal nor always harmless
    assert outcomes["loaded"] > 100 and outcomes["refused"] > 100, outcomes


@pytest.mark.parametrize("name", ["rgb.png", "base.jpg", "lossy.webp", "raw.tif", "pal.gif"])
def test_every_truncation_of_the_header(tmp_path, name):
    data = _base_files()[name]
    for n in range(0, min(len(data), 96)):
        (tmp_path / name).write_bytes(data[:n])
        try:
            load_image(tmp_path / name)
        except ImageError as e:
            assert "\n" not in str(e) and name in str(e)
