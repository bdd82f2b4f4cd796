"""Sizes: the planned size is checked before decoding, extreme aspect ratios are not upscaled without bound,
genuine large photos are read up to Pillow's own hard limit, and JPEGs are decoded at reduced scale."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from PIL import Image

from mambast.images import (
    DEFAULT_MAX_PIXELS,
    MAX_UPSCALE_ASPECT,
    ImageError,
    check_planned_size,
    image_size,
    load_image,
    load_resized,
    plan_size,
    resize_short_side,
)


def _smooth(w: int, h: int) -> Image.Image:
    """A smooth colour image (gradients and a soft blob): JPEG-friendly, with content at every position."""
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    r = 128 + 100 * np.sin(6 * x)
    g = 128 + 100 * np.cos(5 * y)
    b = 255 * np.exp(-((x - 0.4) ** 2 + (y - 0.3) ** 2) * 8)
    return Image.fromarray(np.stack([r, g, b], -1).clip(0, 255).astype(np.uint8), "RGB")


def test_plan_size():
    assert plan_size(50, 30, 60) == (100, 60)
    assert plan_size(1000, 750, 512) == (683, 512)
    assert plan_size(50, 30, 0) == plan_size(50, 30, None) == (50, 30)
    # the strip: 4 x 1000 at size 512 would be 512 x 128000 (65.5 MP); capped at 16 x 512 long
    assert MAX_UPSCALE_ASPECT == 16
    assert plan_size(4, 1000, 512, max_aspect=math.inf) == (512, 128000)
    assert plan_size(4, 1000, 512) == (33, 8192)
    assert plan_size(1000, 4, 512) == (8192, 33)
    assert plan_size(32, 512, 512) == (512, 8192)  # aspect 16 exactly: not capped
    assert plan_size(2000, 40000, 512) == (512, 10240)  # downscaling is never capped
    assert plan_size(2, 1000, 4) == (2, 1000)  # the cap never shrinks below the original


def test_check_planned_size_names_the_file():
    check_planned_size("ok.png", 4096, 4096)
    assert DEFAULT_MAX_PIXELS == 4096 * 4096
    with pytest.raises(ImageError, match=r"strip\.png: planned size 512 x 128000 px \(65\.5 MP\) is over the "
                                         r"limit of 16\.8 MP \(max_pixels\)") as e:
        check_planned_size("strip.png", 512, 128000)
    assert "\n" not in str(e.value)
    check_planned_size("big.png", 512, 128000, max_pixels=None)
    with pytest.raises(ImageError, match=r"^tiny\.png: 4 x 1000 px is smaller than one 8 x 8 patch$"):
        check_planned_size("tiny.png", 4, 1000, patch=8)


def test_strip_is_capped_and_the_limit_is_checked_before_decoding(tmp_path):
    Image.fromarray(np.full((1000, 4, 3), 90, np.uint8)).save(tmp_path / "strip.png")
    assert load_resized(tmp_path / "strip.png", 512).size == (33, 8192)
    with pytest.raises(ImageError, match="strip.png: planned size 33 x 8192 px"):
        load_resized(tmp_path / "strip.png", 512, max_pixels=100_000)
    with pytest.raises(ImageError, match="strip.png: 4 x 1000 px is smaller than one 8 x 8 patch"):
        load_resized(tmp_path / "strip.png", 0, patch=8)
    # a file whose header is fine but whose data is cut: the limit is reported, so nothing was decoded
    _smooth(640, 480).save(tmp_path / "cut.png")
    raw = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(raw[:200])
    with pytest.raises(ImageError, match="cut.png: planned size 640 x 480"):
        load_resized(tmp_path / "cut.png", 0, max_pixels=1000)
    with pytest.raises(ImageError, match="cut.png: unreadable, truncated or corrupt"):
        load_resized(tmp_path / "cut.png", 0)
    assert image_size(tmp_path / "cut.png") == (640, 480)  # the header alone


def test_resize_short_side_checks_the_limit():
    img = Image.new("RGB", (4, 1000))
    assert resize_short_side(img, 512).size == (33, 8192)
    with pytest.raises(ImageError, match=r"^a\.png: planned size 4 x 1000 px"):
        resize_short_side(img, 0, max_pixels=3000, name="a.png")


def test_large_photos_are_read_up_to_pillows_hard_limit(tmp_path, monkeypatch):
    # Pillow warns above MAX_IMAGE_PIXELS (89.5 MP by default) and refuses above twice that; scaled down here
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    Image.new("RGB", (120, 100), (1, 2, 3)).save(tmp_path / "large.png")  # 12,000 px: a "92-MP photo"
    Image.new("RGB", (150, 150), (1, 2, 3)).save(tmp_path / "bomb.png")  # 22,500 px: over the hard limit
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no DecompressionBombWarning printed to the user
        assert load_image(tmp_path / "large.png").size == (120, 100)
        assert image_size(tmp_path / "large.png") == (120, 100)
    for read in (load_image, image_size):
        with pytest.raises(ImageError, match="bomb.png: refused: its header claims a huge image"):
            read(tmp_path / "bomb.png")


def test_jpeg_draft_decodes_at_reduced_scale(tmp_path):
    _smooth(1024, 768).save(tmp_path / "p.jpg", quality=95)
    assert load_image(tmp_path / "p.jpg").size == (1024, 768)
    assert load_image(tmp_path / "p.jpg", size_hint=256).size == (512, 384)  # 768 // 256 = 3 -> 1/2
    assert load_image(tmp_path / "p.jpg", size_hint=96).size == (128, 96)  # 1/8
    assert load_image(tmp_path / "p.jpg", size_hint=(300, 100)).size == (512, 384)
    assert load_image(tmp_path / "p.jpg", size_hint=2000).size == (1024, 768)  # never upscaled by the reader
    _smooth(1024, 768).save(tmp_path / "p.mpo", save_all=True, append_images=[_smooth(1024, 768)])  # phones' MPO
    assert load_image(tmp_path / "p.mpo", size_hint=96).size == (128, 96)
    _smooth(1024, 768).save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png", size_hint=96).size == (1024, 768)  # other formats: full size

    # the planned image from the reduced decode is close to the one from the full decode (measured: mean
    # 0.15 / 0.39 levels, max 2 at 1/2 and 1/8 scale)
    for size, shape, mean in ((256, (256, 341, 3), 0.3), (96, (96, 128, 3), 0.6)):
        fast = np.asarray(load_resized(tmp_path / "p.jpg", size)).astype(int)
        full = np.asarray(resize_short_side(load_image(tmp_path / "p.jpg"), size)).astype(int)
        assert fast.shape == full.shape == shape
        assert np.abs(fast - full).mean() < mean and np.abs(fast - full).max() <= 3


def test_jpeg_draft_with_exif_rotation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 1024 x 768, displayed 768 x 1024
    _smooth(1024, 768).save(tmp_path / "r.jpg", exif=exif, quality=95)
    assert image_size(tmp_path / "r.jpg") == (768, 1024)
    # displayed width 200 needs 1/2 (768 // 200 = 3); taken unrotated it would be 1/4 (1024 // 200 = 5),
    # too narrow: 192 < 200
    assert load_image(tmp_path / "r.jpg", size_hint=(200, 50)).size == (384, 512)
    assert load_resized(tmp_path / "r.jpg", 100).size == (100, 133)
