"""The inference engine: the same numbers as the model's forward, and the controls' defining identities."""

from __future__ import annotations

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
    assert len(engine._cache) == 1
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
        with pytest.raises(UserError, match=r"^size must be 0 \(keep the content's size\) or a whole number of px"):
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
