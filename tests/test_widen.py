"""Net2Net widening of a trained model (mambast.train.widen): the start of the default model's student."""

from __future__ import annotations

import torch
from test_model import lively_

from mambast import MambaST, MambaSTConfig
from mambast.train.widen import widen


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
