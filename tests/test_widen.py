"""Net2Net widening of a trained model (mambast.train.widen): the start of the default model's student."""

from __future__ import annotations

import pytest
import torch
from test_model import lively_

from mambast import MambaST, MambaSTConfig
from mambast.errors import UserError
from mambast.train.widen import grow, widen


def test_widened_model_computes_the_same_function():
    """d_model doubled at the same d_inner and dt_rank: outputs equal to float rounding (noise 0), every weight
    of the new width trainable, and the symmetry-breaking noise moves the output only slightly."""
    torch.manual_seed(0)
    narrow = lively_(MambaST(MambaSTConfig.preset("tiny")), seed=3).eval()
    wide = widen(narrow)
    cfg, wcfg = narrow.config, wide.config
    assert (wcfg.d_model, wcfg.d_inner, wcfg.resolved_dt_rank) == (2 * cfg.d_model, cfg.d_inner,
                                                                    cfg.resolved_dt_rank)
    g = torch.Generator().manual_seed(1)
    c, s = torch.rand(2, 3, 48, 64, generator=g), torch.rand(1, 3, 40, 40, generator=g)
    with torch.inference_mode():
        ref, out = narrow(c, s, seed=5), wide(c, s, seed=5)
        noisy = widen(narrow, noise=1e-2, generator=torch.Generator().manual_seed(0))(c, s, seed=5)
    assert ref.abs().max() > 0.05
    assert (out - ref).abs().max() <= 1e-5
    assert 1e-5 < (noisy - ref).abs().max() < 0.05
    assert sum(p.numel() for p in wide.parameters()) > sum(p.numel() for p in narrow.parameters())


def _grown_pair(**kw):
    torch.manual_seed(0)
    small = lively_(MambaST(MambaSTConfig.preset("tiny", expand=1, dt_rank=4)), seed=3).eval()
    return small, grow(small, generator=torch.Generator().manual_seed(2), **kw)


@pytest.mark.parametrize("kw", [dict(d_state=16), dict(double_inner=True), dict(layers=(2, 3, 2)),
                                dict(double_cnn=True),
                                dict(d_state=12, double_inner=True, layers=(2, 2, 2), double_cnn=True)],
                         ids=["d_state", "expand", "blocks", "cnn", "all"])
def test_grown_model_computes_the_same_function(kw):
    """Each growth (state dims, interior width, appended blocks, CNN widths) keeps the output to float rounding
    and adds trainable parameters; a zero-gain block still receives a gradient."""
    small, big = _grown_pair(**kw)
    g = torch.Generator().manual_seed(1)
    c, s = torch.rand(2, 3, 48, 64, generator=g), torch.rand(1, 3, 40, 40, generator=g)
    with torch.inference_mode():
        ref, out = small(c, s, seed=5), big(c, s, seed=5)
    assert ref.abs().max() > 0.05
    assert (out - ref).abs().max() <= 2e-6
    assert sum(p.numel() for p in big.parameters()) > sum(p.numel() for p in small.parameters())
    big.train()
    big(c, s, seed=5).square().mean().backward()
    grads = {n: p.grad for n, p in big.named_parameters()}
    if "layers" in kw:
        last = big.config.style_layers - 1  # an appended block
        assert grads[f"mamba.encoder_s.layers.{last}.norm.weight"].abs().max() > 0
    if "d_state" in kw:  # the new state dims' C rows (zero) get a gradient
        n = small.config.d_state
        assert grads["mamba.decoder.layers.0.self_attention.x_proj_weight"][:, n:].abs().max() > 0


def test_grow_with_noise_moves_the_output_slightly_and_refuses_shrinking():
    small, _ = _grown_pair()
    noisy = grow(small, double_inner=True, double_cnn=True, noise=1e-2, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    c, s = torch.rand(1, 3, 32, 32, generator=g), torch.rand(1, 3, 32, 32, generator=g)
    with torch.inference_mode():
        diff = (noisy(c, s, seed=1) - small(c, s, seed=1)).abs().max()
    assert 1e-5 < diff < 0.05
    with pytest.raises(UserError, match="grow only adds"):
        grow(small, d_state=4)
