"""Colour management: an embedded ICC profile is converted to sRGB on load, checked against the colorimetry.

The profiles are generated here (ICC v2, written byte by byte): Adobe RGB (1998) with its gamma 563/256 and
Display P3 with the sRGB tone curve as a parametric curve (matrix/TRC), a linear gray profile, and a CMYK
printer profile (a lut16 table). The expected sRGB values
are computed independently with numpy from the same primaries (no LittleCMS involved).
"""

from __future__ import annotations

import io
import itertools
import struct

import numpy as np
import pytest
from PIL import Image, ImageCms

from mambast.images import load_image, to_pil, to_tensor

D50 = (0.9642, 1.0, 0.8249)
# D50-adapted colorants (columns of the RGB -> XYZ(D50) matrix), as the published profiles carry them.
ADOBE_RGB = ((0.60974, 0.31111, 0.01947), (0.20528, 0.62567, 0.06087), (0.14919, 0.06322, 0.74457))
DISPLAY_P3 = ((0.51512, 0.24120, -0.00105), (0.29198, 0.69225, 0.04189), (0.15710, 0.06657, 0.78407))
SRGB = ((0.43607, 0.22249, 0.01392), (0.38515, 0.71687, 0.09708), (0.14307, 0.06061, 0.71410))
ADOBE_GAMMA = 563 / 256


def _s15(x: float) -> bytes:
    return struct.pack(">i", round(x * 65536))


def _xyz(v) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(c) for c in v)


def _gamma_curve(gamma: float) -> bytes:  # curv with one u8Fixed8 entry (count 0 would mean identity)
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"


def _linear_curve() -> bytes:
    return b"curv\0\0\0\0" + struct.pack(">I", 0)


def _srgb_curve() -> bytes:  # para, function type 3: the sRGB EOTF
    params = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)
    return b"para\0\0\0\0" + struct.pack(">HH", 3, 0) + b"".join(_s15(p) for p in params)


def _desc(text: str) -> bytes:
    ascii_ = text.encode() + b"\0"
    return b"desc\0\0\0\0" + struct.pack(">I", len(ascii_)) + ascii_ + b"\0" * (4 + 4 + 2 + 1 + 67)


def icc_profile(space: bytes, tags: dict[bytes, bytes], device_class: bytes = b"mntr") -> bytes:
    """An ICC v2 profile (display 'mntr' or printer 'prtr', PCS XYZ) with the given tags."""
    table, data = [], b""
    offset = 128 + 4 + 12 * len(tags)
    for sig, body in tags.items():
        body += b"\0" * (-len(body) % 4)
        table.append(struct.pack(">4sII", sig, offset + len(data), len(body)))
        data += body
    size = offset + len(data)
    header = (struct.pack(">I4sI4s4s4s", size, b"\0" * 4, 0x02100000, device_class, space, b"XYZ ") + b"\0" * 12
              + b"acsp" + b"\0" * 24 + struct.pack(">I", 0) + b"".join(_s15(c) for c in D50))
    header += b"\0" * (128 - len(header))
    return header + struct.pack(">I", len(tags)) + b"".join(table) + data


def rgb_profile(name: str, colorants, curve: bytes) -> bytes:
    return icc_profile(b"RGB ", {b"desc": _desc(name), b"wtpt": _xyz(D50), b"rXYZ": _xyz(colorants[0]),
                                 b"gXYZ": _xyz(colorants[1]), b"bXYZ": _xyz(colorants[2]),
                                 b"rTRC": curve, b"gTRC": curve, b"bTRC": curve})


def _srgb_eotf(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _srgb_oetf(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0, 1)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055)


def expected_srgb(codes: np.ndarray, colorants, eotf) -> np.ndarray:
    """(..., 3) uint8 code values in a matrix/TRC space -> sRGB uint8 (clipped), computed in numpy."""
    linear = eotf(codes / 255.0)
    xyz = linear @ np.array(colorants)  # rows of `colorants` are the primaries' XYZ
    srgb_linear = xyz @ np.linalg.inv(np.array(SRGB))
    return np.round(_srgb_oetf(srgb_linear) * 255).astype(int)


PROFILES = {
    "adobe-rgb": (rgb_profile("Adobe RGB (1998) test", ADOBE_RGB, _gamma_curve(ADOBE_GAMMA)), ADOBE_RGB,
                  lambda v: v ** ADOBE_GAMMA),
    "display-p3": (rgb_profile("Display P3 test", DISPLAY_P3, _srgb_curve()), DISPLAY_P3, _srgb_eotf),
}
CODES = np.array([[[0, 255, 0], [200, 30, 40], [120, 160, 90], [30, 60, 220]],
                  [[128, 128, 128], [255, 255, 255], [0, 0, 0], [250, 200, 150]]], np.uint8)


@pytest.mark.parametrize("fmt", ["png", "jpg", "tif", "webp"])
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_wide_gamut_profile_is_converted_to_srgb(tmp_path, profile, fmt):
    icc, colorants, eotf = PROFILES[profile]
    img = Image.fromarray(CODES.repeat(8, 0).repeat(8, 1), "RGB")  # 8 x 8 blocks survive JPEG
    path = tmp_path / f"wide.{fmt}"
    img.save(path, icc_profile=icc, **({"quality": 100, "subsampling": 0} if fmt == "jpg" else
                                      {"lossless": True} if fmt == "webp" else {}))
    assert Image.open(path).info.get("icc_profile") == icc  # the profile is really embedded
    got = np.asarray(load_image(path)).astype(int)[4::8, 4::8]
    want = expected_srgb(CODES.astype(float), colorants, eotf)
    tol = 3 if fmt == "jpg" else 2
    assert np.abs(got - want).max() <= tol, (got.tolist(), want.tolist())
    raw_error = np.abs(CODES.astype(int) - want).max()
    assert raw_error > 20  # read as raw code values the colours would be far off: the test can fail


def test_gray_profile_and_16_bit(tmp_path):
    icc = icc_profile(b"GRAY", {b"desc": _desc("linear gray"), b"wtpt": _xyz(D50), b"kTRC": _linear_curve()})
    Image.new("L", (4, 4), 128).save(tmp_path / "g.png", icc_profile=icc)
    want = round(float(_srgb_oetf(np.array(128 / 255))) * 255)  # linear 0.502 -> sRGB 188
    assert want == 188
    got = np.asarray(load_image(tmp_path / "g.png"))[1, 1].astype(int)
    assert np.abs(got - want).max() <= 1

    # a 16-bit gray PNG with the same profile: the bit depth is rescaled first, then the profile applied
    Image.fromarray(np.full((4, 4), 32896, np.uint16)).save(tmp_path / "g16.png", icc_profile=icc)
    assert np.abs(np.asarray(load_image(tmp_path / "g16.png"))[1, 1].astype(int) - want).max() <= 1


# A printer CMYK profile: A2B0 as a 2-point lut16 whose corners are products of ink transmittances (linear sRGB)
INKS = np.array([[0.0, 0.63, 0.9], [0.9, 0.0, 0.35], [1.0, 0.9, 0.0], [0.08, 0.08, 0.08]])  # C, M, Y, K


def _inks_linear_rgb(amounts) -> np.ndarray:
    """Linear sRGB of C, M, Y, K amounts in [0, 1], multilinear between the 16 corners (exact on edges)."""
    rgb = np.ones(3)
    for a, ink in zip(amounts, INKS, strict=True):
        rgb = rgb * (1 - a + a * ink)
    return rgb


def cmyk_profile() -> bytes:
    clut = b""
    for corner in itertools.product((0, 1), repeat=4):  # C varies slowest, as the lut16 orders its grid
        xyz = _inks_linear_rgb(corner) @ np.array(SRGB)
        clut += b"".join(struct.pack(">H", round(v * 32768)) for v in xyz)  # v2 XYZ encoding: 1.0 = 0x8000
    identity = struct.pack(">HH", 0, 65535)
    matrix = b"".join(_s15(1.0 if i == j else 0.0) for i in range(3) for j in range(3))
    lut = (b"mft2\0\0\0\0" + bytes([4, 3, 2, 0]) + matrix + struct.pack(">HH", 2, 2) + identity * 4 + clut
           + identity * 3)
    return icc_profile(b"CMYK", {b"desc": _desc("test CMYK"), b"wtpt": _xyz(D50), b"A2B0": lut}, b"prtr")


@pytest.mark.parametrize("fmt", ["tif", "jpg"])
def test_cmyk_profile_is_applied(tmp_path, fmt):
    inks = [(255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0), (0, 0, 0, 255), (255, 255, 0, 0), (0, 0, 0, 0),
            (128, 0, 0, 0), (0, 0, 0, 128)]  # corners and two ramps (exact for any LittleCMS interpolation)
    img = Image.new("CMYK", (len(inks), 1))
    for i, v in enumerate(inks):
        img.putpixel((i, 0), v)
    img.save(tmp_path / f"c.{fmt}", icc_profile=cmyk_profile(), **({"quality": 100} if fmt == "jpg" else {}))
    got = np.asarray(load_image(tmp_path / f"c.{fmt}"))[0].astype(int)
    want = np.array([np.round(_srgb_oetf(_inks_linear_rgb(np.array(v) / 255)) * 255) for v in inks]).astype(int)
    assert np.abs(got - want).max() <= (3 if fmt == "jpg" else 1), (got.tolist(), want.tolist())
    naive = np.asarray(img.convert("RGB"))[0].astype(int)  # what a reader ignoring the profile gives
    assert np.abs(naive - want).max() > 50


def test_rgba_keeps_alpha_through_the_profile(tmp_path):
    icc, colorants, eotf = PROFILES["adobe-rgb"]
    img = Image.new("RGBA", (4, 4), (200, 30, 40, 0))  # transparent: white whatever the profile
    img.putpixel((0, 0), (200, 30, 40, 255))
    img.save(tmp_path / "a.png", icc_profile=icc)
    got = np.asarray(load_image(tmp_path / "a.png")).astype(int)
    want = expected_srgb(np.array([200.0, 30.0, 40.0]), colorants, eotf)
    assert np.abs(got[0, 0] - want).max() <= 2
    assert got[2, 2].tolist() == [255, 255, 255]


def test_srgb_profile_changes_nothing_and_outputs_are_untagged_srgb(tmp_path):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    img = Image.fromarray(CODES, "RGB")
    img.save(tmp_path / "s.png", icc_profile=srgb)
    loaded = load_image(tmp_path / "s.png")
    assert np.abs(np.asarray(loaded).astype(int) - CODES).max() <= 1
    # a loaded wide-gamut image carries no profile any more: saving it cannot re-tag sRGB values
    icc = PROFILES["adobe-rgb"][0]
    img.save(tmp_path / "w.png", icc_profile=icc)
    wide = load_image(tmp_path / "w.png")
    assert "icc_profile" not in wide.info
    buf = io.BytesIO()
    wide.save(buf, "PNG")
    assert "icc_profile" not in Image.open(buf).info
    assert "icc_profile" not in to_pil(to_tensor(wide)).info


def test_broken_profile_is_ignored(tmp_path):
    img = Image.fromarray(CODES, "RGB")
    img.save(tmp_path / "b.png", icc_profile=b"not a profile at all" * 10)
    assert np.array_equal(np.asarray(load_image(tmp_path / "b.png")), CODES)
    # a valid profile of the wrong colour space for the image (gray profile, RGB pixels): ignored too
    gray = icc_profile(b"GRAY", {b"desc": _desc("g"), b"wtpt": _xyz(D50), b"kTRC": _linear_curve()})
    img.save(tmp_path / "m.png", icc_profile=gray)
    assert np.array_equal(np.asarray(load_image(tmp_path / "m.png")), CODES)
