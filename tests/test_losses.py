"""Training losses: the published golden (seed-1234 synthetic weights, 128 px) and the terms' invariants."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import mambast
from mambast import MambaST, MambaSTConfig
from mambast.nets.vgg import load_vgg
from mambast.train.losses import LossWeights, mean_std, normal, style_loss, total_loss, training_losses

GOLDEN = Path(__file__).resolve().parent / "data" / "golden_128"
META_KEYS = {"content": "loss_c", "style": "loss_s", "identity1": "loss_id1", "identity2": "loss_id2"}


def _image(name: str) -> torch.Tensor:
    from PIL import Image

    pixels = np.asarray(Image.open(GOLDEN / name).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels).permute(2, 0, 1)[None]


def test_golden_128_losses(synthetic_1234):
    """Three real model passes, shuffle off: the four terms equal the published code's to 1e-4 relative."""
    model = mambast.load_official(synthetic_1234)
    vgg = load_vgg(synthetic_1234 / "vgg_normalised.pth")
    with torch.no_grad():
        terms = training_losses(model, vgg, _image("content.png"), _image("style.png"), shuffle=False)
    meta = json.loads((GOLDEN / "meta.json").read_text())
    assert set(terms) == set(META_KEYS)
    for name, key in META_KEYS.items():
        assert terms[name].item() == pytest.approx(meta[key], rel=1e-4), name


def test_mean_std_matches_definition():
    f = torch.randn(2, 5, 7, 3, generator=torch.Generator().manual_seed(0)) * 3 + 1
    mean, std = mean_std(f)
    flat = f.reshape(2, 5, -1).double()
    m = flat.mean(-1)
    var = ((flat - m[..., None]) ** 2).sum(-1) / (flat.shape[-1] - 1)
    torch.testing.assert_close(mean.squeeze(), m.float())
    torch.testing.assert_close(std.squeeze(), (var + 1e-5).sqrt().float())
    n = normal(f)
    torch.testing.assert_close(n.flatten(2).mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)


def test_style_loss_sees_only_channel_statistics():
    g = torch.Generator().manual_seed(1)
    feats = [torch.rand(1, 4, 8, 8, generator=g) for _ in range(5)]
    permuted = [f.flatten(2)[..., torch.randperm(64, generator=g)].view_as(f) for f in feats]
    assert style_loss(permuted, feats).item() == pytest.approx(0.0, abs=1e-10)
    shifted = [f + 0.5 for f in feats]  # mean off by 0.5 in every channel, std unchanged
    assert style_loss(shifted, feats).item() == pytest.approx(5 * 0.25, rel=1e-5)


def test_total_loss_weights():
    terms = {k: torch.tensor(v) for k, v in zip(META_KEYS, (1.0, 2.0, 3.0, 4.0), strict=True)}
    assert total_loss(terms).item() == pytest.approx(7 + 20 + 210 + 4)
    assert total_loss(terms, LossWeights(1, 1, 1, 1)).item() == pytest.approx(10.0)


def test_losses_backpropagate_into_every_trained_parameter():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: threads only spin on shared cores
    try:
        _check_backprop()
    finally:
        torch.set_num_threads(threads)


def _check_backprop():
    torch.manual_seed(0)
    model = MambaST(MambaSTConfig.preset("tiny")).train()
    vgg = load_vgg(None, allow_random=True)
    g = torch.Generator().manual_seed(0)
    c, s = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    terms = training_losses(model, vgg, c, s, generator=torch.Generator().manual_seed(1))
    total_loss(terms).backward()
    assert all(torch.isfinite(t) and t > 0 for t in terms.values())
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad
    assert all(p.grad is None for p in vgg.parameters())
