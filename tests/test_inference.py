"""The inference engine: the same numbers as the model's forward, and the controls' defining identities."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image
from test_model import lively_

import mambast
from mambast import MambaST, MambaSTConfig, UserError
from mambast.images import to_pil, to_tensor
from mambast.inference import Controls, Stylizer, stylize
from mambast.inference.colour import keep_content_chroma, match_colour, rgb_to_ycbcr, ycbcr_to_rgb
from mambast.inference.masks import mask_labels, region_weights
from mambast.inference.size import fit_style


@pytest.fixture(scope="module")
def tiny():
    return lively_(MambaST(MambaSTConfig.preset("tiny"))).eval()


def _img(seed: int, w: int, h: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 255, (h // 4 + 1, w // 4 + 1, 3)).astype(np.uint8)
    return Image.fromarray(base).resize((w, h), Image.BICUBIC)


def _t(img: Image.Image) -> torch.Tensor:
    return to_tensor(img)[None]


def test_engine_equals_model_forward(tiny):
    content, style = _img(0, 52, 40), _img(1, 64, 64)
    engine = Stylizer(tiny, size=None)
    H, W = engine.grid(52, 40)
    out = engine.stylize_tensor(_t(content), [engine.style_tokens(style, (H, W))], Controls(seed=3))
    style_grid = _t(style.resize((W, H), Image.LANCZOS))
    with torch.inference_mode():
        ref = tiny(_t(content), style_grid, seed=3)
    assert out.shape == ref.shape == (1, 3, 40, 52)
    assert (out - ref).abs().max().item() <= 1e-6


def test_unseeded_call_draws_like_the_model(tiny):
    content, style = _t(_img(0, 32, 32)), _t(_img(1, 32, 32))
    engine = Stylizer(tiny, size=None)
    torch.manual_seed(5)
    out = engine.stylize_tensor(content, [tiny.encode_style(style)], Controls())
    torch.manual_seed(5)
    with torch.inference_mode():
        ref = tiny(content, style)
    assert (out - ref).abs().max().item() <= 1e-6


def test_alpha_endpoints_and_monotone_blend(tiny):
    content, style = _t(_img(2, 40, 40)), _t(_img(3, 40, 40))
    engine = Stylizer(tiny, size=None)
    tokens = [tiny.encode_style(style)]
    run = lambda a: engine.stylize_tensor(content, tokens, Controls(alpha=a, seed=1))  # noqa: E731
    with torch.inference_mode():
        stylized, identity = tiny(content, style, seed=1), tiny(content, content, seed=1)
    assert (run(1.0) - stylized).abs().max().item() == 0.0
    assert (run(0.0) - identity).abs().max().item() <= 1e-6
    d = [(run(a) - stylized).abs().mean().item() for a in (0.0, 0.5, 0.9)]
    assert d[0] > d[1] > d[2] > 0


def test_style_mix_weight_one_is_that_style_and_mix_lies_between(tiny):
    content, s1, s2 = _t(_img(4, 48, 32)), _t(_img(5, 48, 32)), _t(_img(6, 48, 32))
    engine = Stylizer(tiny, size=None)
    tokens = [tiny.encode_style(s1), tiny.encode_style(s2)]
    one = engine.stylize_tensor(content, tokens, Controls(style_weights=(1, 0), seed=2))
    with torch.inference_mode():
        ref1, ref2 = tiny(content, s1, seed=2), tiny(content, s2, seed=2)
    assert (one - ref1).abs().max().item() == 0.0
    mid = engine.stylize_tensor(content, tokens, Controls(style_weights=(3, 3), seed=2))
    assert (mid - ref1).abs().mean() < (ref2 - ref1).abs().mean()
    assert (mid - ref2).abs().mean() < (ref2 - ref1).abs().mean()
    with pytest.raises(UserError, match="style_weights"):
        engine.stylize_tensor(content, tokens, Controls(seed=2))


def test_batch_with_per_sample_seeds_equals_single_calls(tiny):
    contents = torch.cat([_t(_img(i, 40, 24)) for i in range(3)])
    styles = [tiny.encode_style(_t(_img(10 + i, 40, 24))) for i in range(3)]
    engine = Stylizer(tiny, size=None)
    batch = engine.stylize_tensor(contents, [torch.cat(styles)], seeds=[7, 8, 9])
    for i in range(3):
        single = engine.stylize_tensor(contents[i:i + 1], [styles[i]], seeds=[7 + i])
        assert (batch[i] - single[0]).abs().max().item() <= 1e-5


def test_mask_regions_take_their_style(tiny):
    content = _t(_img(7, 160, 32))
    s1, s2 = _t(_img(8, 160, 32)), _t(_img(9, 160, 32))
    mask = np.zeros((32, 160), np.uint8)
    mask[:, 80:] = 255  # left: style 0, right: style 1
    engine = Stylizer(tiny, size=None)
    tokens = [tiny.encode_style(s1), tiny.encode_style(s2)]
    out = engine.stylize_tensor(content, tokens, Controls(seed=4, mask=Image.fromarray(mask)))
    with torch.inference_mode():
        ref1, ref2 = tiny(content, s1, seed=4), tiny(content, s2, seed=4)
    # far from the seam (8 tokens; the CNN decoder reaches about 4), each side is its style's output
    left, right = out[..., :, :8], out[..., :, -8:]
    assert (left - ref1[..., :, :8]).abs().max() < 1e-4 < (left - ref2[..., :, :8]).abs().max()
    assert (right - ref2[..., :, -8:]).abs().max() < 1e-4 < (right - ref1[..., :, -8:]).abs().max()


def test_region_weights_are_soft_and_sum_to_one():
    labels = np.zeros((32, 48), np.int64)
    labels[:, 20:] = 1
    w = region_weights(labels, 2, (32, 48), 8)
    assert w.shape == (2, 4, 6)
    assert torch.allclose(w.sum(0), torch.ones(4, 6))
    assert w[0, :, 0].min() == 1.0 and w[1, :, -1].min() == 1.0
    assert 0 < w[0, 0, 2] < 1 and 0 < w[0, 0, 3] < 1  # the seam is soft


def test_mask_labels_binary_and_colours():
    grey = Image.fromarray(np.array([[0, 100], [200, 255]], np.uint8))
    assert mask_labels(grey, 2).tolist() == [[0, 0], [1, 1]]
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 1] = (255, 0, 0)
    rgb[1, 0] = (255, 255, 255)
    assert mask_labels(Image.fromarray(rgb), 3).tolist() == [[0, 1], [2, 0]]
    with pytest.raises(UserError, match="3 colours for 4 styles"):
        mask_labels(Image.fromarray(rgb), 4)


def test_preserve_color_luminance_keeps_content_chroma(tiny):
    content, style = _t(_img(11, 48, 48)), _t(_img(12, 48, 48))
    engine = Stylizer(tiny, size=None)
    tokens = [tiny.encode_style(style)]
    out = engine.stylize_tensor(content, tokens, Controls(seed=0, preserve_color="luminance"))
    plain = engine.stylize_tensor(content, tokens, Controls(seed=0))
    yc, yo, yp = rgb_to_ycbcr(content), rgb_to_ycbcr(out), rgb_to_ycbcr(plain)
    assert (yo[:, 1:] - yc[:, 1:]).abs().max() < 1e-5 < (yp[:, 1:] - yc[:, 1:]).abs().mean()  # chroma: content's
    assert (yo[:, 0] - yp[:, 0].clamp(0, 1)).abs().max() < 1e-5  # luminance: the stylized output's


def test_ycbcr_roundtrip_and_match_colour_statistics():
    x = torch.rand(3, 16, 16, dtype=torch.float64)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(x)), x, atol=1e-12)
    y = keep_content_chroma(x, x)
    assert torch.allclose(y, x, atol=1e-12)
    g = torch.Generator().manual_seed(0)
    style = torch.rand(3, 64, 64, generator=g) * torch.tensor([0.3, 0.6, 0.2])[:, None, None]
    content = 0.3 + 0.4 * torch.rand(3, 64, 64, generator=g)
    matched = match_colour(style, content).double().flatten(1)
    assert torch.allclose(matched.mean(1), content.double().flatten(1).mean(1), atol=2e-3)
    assert torch.allclose(torch.cov(matched), torch.cov(content.double().flatten(1)), atol=2e-3)


def test_style_size_keeps_aspect_and_scale():
    style = _img(13, 100, 50)
    stretched = fit_style(style, 64, 128)
    kept = fit_style(style, 64, 128, style_size=50)
    assert stretched.size == kept.size == (64, 128)
    # with style_size = its own short side, pixels are the style's own (a crop of it, mirrored as tiled)
    # 3 tiles high (150 px: itself, mirrored, itself), centre-cropped: rows 11.. of tile 0, then the mirror
    src, out = np.asarray(style)[:, 18:82], np.asarray(kept)
    assert np.array_equal(out[:39], src[11:])
    assert np.array_equal(out[39:89], src[::-1])
    assert np.array_equal(out[89:], src[:39])


def test_pil_api_matches_and_caches_styles(tiny):
    content, style = _img(14, 60, 44), _img(15, 80, 80)
    engine = Stylizer(tiny, size=32)
    a = engine.stylize(content, style, Controls(seed=1))
    b = engine.stylize(content, style, Controls(seed=1))
    assert a.size == (44 * 32 // 44 if 44 < 60 else 32, 32) or min(a.size) == 32
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert len(engine.styles) == 1
    assert isinstance(to_pil(torch.zeros(3, 8, 8)), Image.Image)


def test_per_call_size_leaves_the_engine_size(tiny):
    content, style = _img(16, 60, 44), _img(17, 80, 80)
    engine = Stylizer(tiny, size=32)
    own = engine.stylize(content, style, Controls(seed=2), size=None)
    assert own.size == (60, 44) and engine.size == 32
    sized = engine.stylize(content, style, Controls(seed=2), size=24)
    assert min(sized.size) == 24 and engine.size == 32
    assert np.array_equal(np.asarray(sized), np.asarray(Stylizer(tiny, size=24).stylize(content, style,
                                                                                         Controls(seed=2))))
    assert min(engine.stylize(content, style, Controls(seed=2)).size) == 32


def test_size_is_checked_where_it_is_given(tiny):
    content, style = _img(18, 40, 40), _img(19, 40, 40)
    for bad in (-3, 3, True, "128", 100.5):
        with pytest.raises(UserError, match=r"^size must be 0 \(no resizing\) or a whole number of px"):
            Stylizer(tiny, size=bad)
        with pytest.raises(UserError, match="^size must be"):
            Stylizer(tiny, size=32).stylize(content, style, size=bad)
        with pytest.raises(UserError, match="^size must be"):
            stylize(tiny, content, style, size=bad)
    assert Stylizer(tiny, size=np.int64(32)).size == 32 and Stylizer(tiny, size=0).size == 0


def test_arrays_are_images_too(tiny):
    content, style = _img(20, 44, 36), _img(21, 40, 40)
    mask = Image.new("L", (44, 36), 0)
    mask.paste(255, (22, 0, 44, 36))
    engine = Stylizer(tiny, size=None)
    ref = engine.stylize(content, [style, content], Controls(seed=4, mask=mask))
    out = engine.stylize(np.asarray(content), [np.asarray(style), np.asarray(content) / 255.0],
                         Controls(seed=4, mask=np.asarray(mask) > 127))
    assert np.array_equal(np.asarray(out), np.asarray(ref))
    rgba = np.dstack([np.asarray(content), np.full((36, 44), 255, np.uint8)])
    assert np.array_equal(np.asarray(engine.stylize(rgba, style, Controls(seed=4))),
                          np.asarray(engine.stylize(content, style, Controls(seed=4))))
    with pytest.raises(UserError, match="^content image: expected an array"):
        engine.stylize(np.zeros((4, 4, 2), np.uint8), style)
    with pytest.raises(UserError, match="^style image: float arrays must be in"):
        engine.stylize(content, np.full((8, 8, 3), 2.0))
    with pytest.raises(UserError, match="^mask must be an image file path, a PIL image or a numpy array, got int"):
        Controls(mask=1)


def test_stylize_without_a_model_uses_the_bundled_default():
    content, style = _img(22, 40, 32), _img(23, 32, 32)
    ref = stylize(mambast.load(None), content, style, size=32, seed=0)
    assert np.array_equal(np.asarray(stylize(None, content, style, size=32, seed=0)), np.asarray(ref))


def test_controls_validate():
    for bad in ({"alpha": 1.5}, {"alpha": float("nan")}, {"style_weights": (0, 0)}, {"style_weights": (-1, 2)},
                {"preserve_color": "hue"}, {"style_size": 3}):
        with pytest.raises(UserError):
            Controls(**bad)


def test_preserve_color_true_is_the_bare_flag():
    """preserve_color=True is "luminance" (what the bare --preserve-color flag means), False is None."""
    assert Controls(preserve_color=True).preserve_color == "luminance"
    assert Controls(preserve_color=False).preserve_color is None
    with pytest.raises(UserError, match="preserve_color must be None or one of luminance, match, got 1"):
        Controls(preserve_color=1)


# ----- issue 25: numbers of any real type (kind 3), a cache that follows the style's content (kind 4), sizes
# checked against the pixel limit before any allocation (kind 5), colour matching of nearly flat styles (kind 11)


def test_numbers_from_numpy_are_numbers(tiny):
    content, style, other = _img(24, 40, 36), _img(25, 40, 40), _img(26, 40, 40)
    plain = stylize(tiny, content, [style, other], size=32, seed=1, alpha=0.5, style_weights=[0.7, 0.3],
                    style_size=16, max_pixels=10**6)
    numpy = stylize(tiny, content, [style, other], size=np.int64(32), seed=np.int64(1), alpha=np.float32(0.5),
                    style_weights=np.array([0.7, 0.3]), style_size=np.int64(16), max_pixels=np.uint32(10**6))
    assert np.array_equal(np.asarray(numpy), np.asarray(plain))
    swept = stylize(tiny, content, [style, other], size=np.float64(32.0), seed=np.array(1), alpha=np.array(0.5),
                    style_weights=(np.float32(0.7), np.float16(0.3)), style_size=16.0, max_pixels=1e6)
    assert np.array_equal(np.asarray(swept), np.asarray(stylize(
        tiny, content, [style, other], size=32, seed=1, alpha=0.5, style_weights=[float(np.float32(0.7)),
                                                                                    float(np.float16(0.3))],
        style_size=16, max_pixels=10**6)))
    engine = Stylizer(tiny, size=32)
    assert np.array_equal(np.asarray(engine.stylize(content, style, seed=np.int64(3))),
                          np.asarray(engine.stylize(content, style, seed=3)))
    c = Controls(alpha=np.float32(0.25), seed=np.uint64(7), style_size=np.int32(12), style_weights=np.arange(1, 3))
    assert (c.alpha, c.seed, c.style_size, c.style_weights) == (0.25, 7, 12, (1.0, 2.0))
    assert all(type(v) in (int, float) for v in (c.alpha, c.seed, c.style_size, *c.style_weights))
    t = Controls(alpha=torch.linspace(0, 1, 5)[1], seed=torch.tensor(7), style_weights=torch.tensor([1.0, 2.0]))
    assert (t.alpha, t.seed, t.style_weights) == (0.25, 7, (1.0, 2.0))  # a torch sweep too


@pytest.mark.parametrize("field, value, message", [
    ("alpha", np.float32(1.5), "alpha must be a number in [0, 1], got 1.5"),
    ("alpha", True, "alpha must be a number in [0, 1], got True (bool)"),
    ("alpha", "0.5", "alpha must be a number in [0, 1], got '0.5' (str)"),
    ("seed", np.float64(1.5), "seed must be a whole number in"),
    ("seed", np.bool_(True), "seed must be a whole number in"),
    ("style_size", np.int64(4), "style_size must be a whole number of px >= 8, got 4"),
    ("style_size", 16.5, "style_size must be a whole number of px >= 8, got 16.5"),
    ("style_weights", np.array([[1.0, 2.0]]), "style_weights must be a sequence of numbers, got array"),
    ("style_weights", [0.5, True], "style_weights must be a sequence of numbers >= 0, got True (bool)"),
    ("style_weights", "12", "style_weights must be a sequence of numbers, got '12' (str)"),
    ("shuffle", "no", "shuffle must be True or False, got 'no' (str)"),
    ("style_weights", (1e308, 1e308), "style_weights must be non-negative numbers with a positive, finite sum"),
])
def test_bad_numbers_are_one_line_naming_the_field(field, value, message):
    with pytest.raises(UserError) as e:
        Controls(**{field: value})
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
    assert "np." not in str(e.value)  # the number is shown as the number it is, never a refused numpy type


def test_pixel_limit_is_checked_as_a_number(tiny):
    assert Stylizer(tiny, max_pixels=np.int64(1000)).max_pixels == 1000
    assert Stylizer(tiny, max_pixels=0).max_pixels is None
    for bad in (-1, 1.5, True, "100"):
        with pytest.raises(UserError, match="^max_pixels must be a whole number >= 0"):
            Stylizer(tiny, max_pixels=bad)


def test_style_cache_follows_the_content_of_the_style(tiny, tmp_path):
    content, a, b = _img(27, 40, 40), _img(28, 40, 40), _img(29, 40, 40)
    engine = Stylizer(tiny, size=32)

    def fresh(style):
        return np.asarray(Stylizer(tiny, size=32).stylize(content, style, Controls(seed=1)))

    def cached(style):
        return np.asarray(engine.stylize(content, style, Controls(seed=1)))

    path = tmp_path / "style.png"
    a.save(path)
    stat = path.stat()
    assert np.array_equal(cached(path), fresh(a))
    b.save(path)  # rewritten at the same path, with the same size and modification time
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert np.array_equal(cached(path), fresh(b)) and not np.array_equal(fresh(a), fresh(b))
    image = a.copy()
    assert np.array_equal(cached(image), fresh(a))
    image.paste(b)  # a PIL image edited in place
    assert np.array_equal(cached(image), fresh(b))
    array = np.asarray(a).copy()
    assert np.array_equal(cached(array), fresh(a))
    array[:] = np.asarray(b)  # a numpy array edited in place
    assert np.array_equal(cached(array), fresh(b))
    n = len(engine.styles)
    cached(b.copy()), cached(np.asarray(b)), cached(str(path))  # the same pixels or bytes: hits
    assert len(engine.styles) == n == 4  # (a, b) as files, (a, b) as pixels
    state = {k: v.clone() for k, v in tiny.state_dict().items()}
    try:
        with torch.no_grad():
            next(tiny.parameters()).mul_(0.5)  # weights changed in place
        assert np.array_equal(cached(path), fresh(b))
    finally:
        tiny.load_state_dict(state)
    assert np.array_equal(cached(path), fresh(b))


def test_style_size_is_checked_against_the_pixel_limit_before_reading(tiny, tmp_path):
    content, style = _img(30, 40, 40), _img(31, 100, 50)
    path = tmp_path / "wide.png"
    style.save(path)
    engine = Stylizer(tiny, size=32, max_pixels=100_000)
    with pytest.raises(UserError, match=r"^style image: planned size 1000 x 500 px \(0.5 MP\) is over the limit"):
        engine.stylize(content, style, Controls(style_size=500))
    with pytest.raises(UserError, match=rf"^{path}: planned size 1000 x 500 px \(0.5 MP\) is over the limit"):
        engine.stylize(content, path, Controls(style_size=500))
    with pytest.raises(UserError, match=r"^style image: planned size 120000 x 60000 px \(7200.0 MP\) is over"):
        stylize(tiny, content, style, size=32, style_size=60000)  # the default limit, before any allocation
    assert engine.stylize(content, path, Controls(style_size=200)).size == (32, 32)  # 400 x 200 fits


def test_match_colour_keeps_a_nearly_flat_style_flat():
    rng = np.random.default_rng(0)
    content = torch.from_numpy(rng.uniform(0, 1, (3, 64, 64)).astype(np.float32))  # std ~74 levels
    flat = np.full((64, 64, 3), (120, 90, 60)) + rng.integers(-1, 2, (64, 64, 3))  # +-1 level noise, std 0.8
    out = match_colour(torch.from_numpy(flat / 255.0).permute(2, 0, 1).float(), content)
    std = (out * 255).flatten(1).std(1)
    assert std.max() < 2, std  # was 37 levels: the noise was stretched to the content's colours
    assert torch.allclose(out.flatten(1).mean(1), content.flatten(1).mean(1), atol=1e-3)  # the content's palette
    grey = rng.uniform(0, 255, (64, 64, 1)).repeat(3, 2) + rng.integers(-1, 2, (64, 64, 3))  # a grey drawing
    out = match_colour(torch.from_numpy(np.clip(grey, 0, 255) / 255.0).permute(2, 0, 1).float(), content)
    ycc = rgb_to_ycbcr(out.double()) * 255
    assert ycc[1:].flatten(1).std(1).max() < 2  # no coloured noise
    assert ycc[0].std() > 30  # its drawing (the grey axis, far above the noise) is still stretched as before
