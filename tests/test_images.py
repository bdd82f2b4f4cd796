"""Image input: every common mode read as displayed, and one clear line for every kind of bad file."""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mambast import UserError
from mambast.images import (
    ImageError,
    list_images,
    load_image,
    resize_short_side,
    to_pil,
    to_tensor,
    uint8_to_unit,
    unit_to_uint8,
)


def test_modes_are_converted_to_rgb(tmp_path):
    gray = Image.fromarray(np.full((5, 7), 100, np.uint8), "L")
    gray.save(tmp_path / "g.png")
    assert np.asarray(load_image(tmp_path / "g.png"))[0, 0].tolist() == [100, 100, 100]

    rgba = Image.new("RGBA", (4, 4), (200, 0, 0, 0))  # fully transparent red -> white background
    rgba.putpixel((0, 0), (200, 0, 0, 255))
    rgba.save(tmp_path / "a.png")
    a = np.asarray(load_image(tmp_path / "a.png"))
    assert a[0, 0].tolist() == [200, 0, 0] and a[1, 1].tolist() == [255, 255, 255]

    pal = Image.new("RGB", (4, 4), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    pal.save(tmp_path / "p.png")
    assert np.asarray(load_image(tmp_path / "p.png"))[2, 2].tolist() == [10, 200, 30]

    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)  # pure red in CMYK
    r, g, b = np.asarray(load_image(tmp_path / "c.jpg"))[2, 2].tolist()
    assert r > 230 and g < 25 and b < 25

    sixteen = Image.fromarray(np.full((3, 3), 65535 // 2, np.uint16))  # mid-grey in 16 bits
    sixteen.save(tmp_path / "s16.png")
    assert abs(int(np.asarray(load_image(tmp_path / "s16.png"))[1, 1, 0]) - 128) <= 1


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 10, 20))  # red band on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    img.save(tmp_path / "r.jpg", exif=exif, quality=95)
    shown = load_image(tmp_path / "r.jpg")
    assert shown.size == (20, 40)
    assert np.asarray(shown)[2, 10, 0] > 200  # the left band is now on top


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(
        b"IEND", b"")


@pytest.mark.parametrize("name, content, message", [
    ("empty.png", b"", "empty file"),
    ("text.jpg", b"hello, not an image", "not an image file"),
    ("bomb.png", _png_claiming(100_000, 100_000), "decompression bomb"),
])
def test_bad_files_give_one_line(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageError, match=message) as e:
        load_image(tmp_path / name)
    assert "\n" not in str(e.value) and name in str(e.value)


def test_truncated_and_missing(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(tmp_path / "t.png")
    raw = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImageError, match="truncated"):
        load_image(tmp_path / "t.png")
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.png")


def test_folder_and_unreadable_file_give_one_line(tmp_path):
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageError, match=r"dir\.png: is a folder, not an image"):
        load_image(tmp_path / "dir.png")
    if os.geteuid() != 0:  # root reads anything
        Image.new("RGB", (4, 4)).save(tmp_path / "locked.png")
        (tmp_path / "locked.png").chmod(0)
        with pytest.raises(ImageError, match=r"locked\.png: permission denied$"):
            load_image(tmp_path / "locked.png")


def test_loaded_images_are_plain_rgb(tmp_path):
    """Whatever the file, the reader gives a fresh 8-bit RGB image that carries no profile or transparency key."""
    img = Image.new("L", (4, 4), 7)
    img.save(tmp_path / "t.png", transparency=7)
    out = load_image(tmp_path / "t.png")
    assert out.mode == "RGB" and "transparency" not in out.info and "icc_profile" not in out.info
    assert np.asarray(out)[0, 0].tolist() == [255, 255, 255]  # the transparent grey is composited on white


def test_list_images(tmp_path):
    (tmp_path / "sub").mkdir()
    for p in ("b.png", "a.JPG", "sub/c.webp", "notes.txt"):
        (tmp_path / p).write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png", "c.webp"]
    assert list_images(tmp_path / "notes.txt") == [tmp_path / "notes.txt"]
    with pytest.raises(UserError, match="no such file"):
        list_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no images"):
        list_images(tmp_path / "empty")


def test_resize_and_tensor_round_trip():
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (30, 50, 3), np.uint8))
    assert resize_short_side(img, 60).size == (100, 60)
    assert resize_short_side(img, 0) is img
    t = to_tensor(img)
    assert t.shape == (3, 30, 50) and 0 <= t.min() and t.max() <= 1
    assert np.array_equal(np.asarray(to_pil(t)), np.asarray(img))


def test_array_conversions_round_trip_and_agree_with_the_tensor_ones():
    a = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    unit = uint8_to_unit(a)
    assert unit.dtype == np.float32 and unit.min() == 0.0 and unit.max() == 1.0
    assert np.array_equal(unit_to_uint8(unit), a)
    assert np.array_equal(unit, to_tensor(Image.fromarray(a)).permute(1, 2, 0).numpy())
    assert unit_to_uint8(np.array([-0.5, 0.5 / 255, 1.49 / 255, 2.0])).tolist() == [0, 1, 1, 255]
