"""The model against the published code's goldens, plus its size policy, shuffle and init."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import mambast
from mambast import MambaST, MambaSTConfig, UserError
from mambast.images import load_image, to_tensor

DATA = Path(__file__).resolve().parent / "data"


def _pair(folder: str):
    c = to_tensor(load_image(DATA / folder / "content.png"))[None]
    s = to_tensor(load_image(DATA / folder / "style.png"))[None]
    return c, s


@pytest.fixture(scope="module")
def golden_model(synthetic_1234):
    return mambast.load(synthetic_1234)


# Max |difference| to the published code's outputs measured on this CPU (fp32, 1 and 2 threads): 2.2e-6 for
# every backend, all channels at once or in blocks; the goldens hold to twice that.
GOLDEN_TOL = 4e-6


@pytest.mark.parametrize("backend,budget", [("auto", None), ("auto", 1),
                                            pytest.param("torch", None, marks=pytest.mark.slow),
                                            pytest.param("ref", None, marks=pytest.mark.slow)])
def test_golden_128(golden_model, backend, budget):
    """Seed-1234 synthetic weights reproduce the published code's outputs (shuffle off); budget 1 runs every
    SS2D layer in 16-channel blocks and the CNN decoder in tiles."""
    golden_model.set_scan_backend(backend).set_memory_budget(budget)
    c, s = _pair("golden_128")
    try:
        with torch.inference_mode():
            out = golden_model(c, s, shuffle=False)[0].numpy()
            ident = golden_model(c, c, shuffle=False)[0].numpy()
    finally:
        golden_model.set_scan_backend("auto").set_memory_budget()
    assert np.abs(out - np.load(DATA / "golden_128" / "stylized.npy")).max() <= GOLDEN_TOL
    assert np.abs(ident - np.load(DATA / "golden_128" / "content_identity.npy")).max() <= GOLDEN_TOL
    meta = json.loads((DATA / "golden_128" / "meta.json").read_text())
    assert torch.from_numpy(out).mean().item() == pytest.approx(meta["out_mean"], abs=1e-6)
    assert torch.from_numpy(out).std().item() == pytest.approx(meta["out_std"], abs=1e-6)  # unbiased, as recorded


def test_golden_nonsquare(synthetic_77):
    """A 12 x 8 token grid: rows and columns must not be mixed up."""
    model = mambast.load(synthetic_77)
    c, s = _pair("golden_nonsquare_64x96")
    assert c.shape[-2:] == (64, 96)
    with torch.inference_mode():
        out = model(c, s, shuffle=False)[0].numpy()
    assert np.abs(out - np.load(DATA / "golden_nonsquare_64x96" / "stylized.npy")).max() <= GOLDEN_TOL


@torch.no_grad()
def lively_(model: MambaST, seed: int = 0) -> MambaST:
    """Random weights scaled like trained ones (as the synthetic checkpoints are), so that every part of
    the network visibly shapes the output; a fresh init leaves the output almost constant."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if "A_logs" in name:
            p.copy_(torch.empty(p.shape).uniform_(0, 2.7, generator=g))
        elif "dt_projs_bias" in name:
            p.copy_(torch.empty(p.shape).uniform_(-4.6, -2.3, generator=g))
        elif p.dim() == 1:
            base = 1.0 if name.endswith(("weight", "skip_scale", "Ds")) else 0.0
            p.copy_(base + 0.1 * torch.randn(p.shape, generator=g))
        else:
            fan_in = p.shape[-1] if p.dim() == 3 else p[0].numel()
            p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)
    return model


@pytest.fixture(scope="module")
def tiny():
    return lively_(MambaST(MambaSTConfig.preset("tiny"))).eval()


def test_shuffle_is_seeded_and_on_by_default(tiny):
    g = torch.Generator().manual_seed(3)
    c, s = torch.rand(1, 3, 32, 40, generator=g), torch.rand(1, 3, 32, 40, generator=g)
    with torch.inference_mode():
        a, b = tiny(c, s, seed=7), tiny(c, s, seed=7)
        other, off = tiny(c, s, seed=8), tiny(c, s, shuffle=False)
        torch.manual_seed(5)
        d1 = tiny(c, s)
        torch.manual_seed(5)
        d2 = tiny(c, s)
    assert torch.equal(a, b) and torch.equal(d1, d2)
    assert (a - other).abs().max() > 1e-3 and (a - off).abs().max() > 1e-3


@pytest.mark.parametrize("size", [(8, 8), (37, 53), (64, 96), (21, 9)])
def test_any_size_keeps_content_shape(tiny, size):
    c = torch.rand(2, 3, *size)
    s = torch.rand(1, 3, 50, 31)  # other size, batch 1 broadcast
    with torch.inference_mode():
        out = tiny(c, s, seed=0)
    assert out.shape == (2, 3, *size) and torch.isfinite(out).all()


def test_odd_size_equals_padded_crop(tiny):
    """The size policy is exactly: reflect-pad the content, resize the style to it, crop the output."""
    c, s = torch.rand(1, 3, 37, 53), torch.rand(1, 3, 40, 56)
    padded = torch.nn.functional.pad(c, (0, 3, 0, 3), mode="reflect")
    with torch.inference_mode():
        out = tiny(c, s, shuffle=False)
        ref = tiny(padded, s, shuffle=False)[..., :37, :53]
    torch.testing.assert_close(out, ref)


def test_smaller_than_patch_is_a_clear_error(tiny):
    with pytest.raises(UserError, match="smaller than one 8 x 8 patch"):
        tiny(torch.rand(1, 3, 7, 30), torch.rand(1, 3, 8, 8))


def test_official_init_is_xavier_everywhere():
    torch.manual_seed(0)
    official = MambaST(MambaSTConfig.preset("tiny"))
    mamba = MambaST(MambaSTConfig.preset("tiny", init="mamba"))
    a_off = official.mamba.encoder_c.layers[0].self_attention.A_logs
    a_mamba = mamba.mamba.encoder_c.layers[0].self_attention.A_logs
    n = a_mamba.shape[1]
    assert torch.equal(a_mamba, torch.log(torch.arange(1, n + 1.0)).expand_as(a_mamba))
    bound = (6 / sum(a_off.shape)) ** 0.5  # Xavier-uniform bound of a 2-D tensor
    assert a_off.abs().max() <= bound and a_off.std() > bound / 3


def test_config_roundtrip_and_validation():
    cfg = MambaSTConfig.preset("tiny")
    assert MambaSTConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert MambaSTConfig().resolved_dt_rank == 32 and MambaSTConfig().d_inner == 1024
    assert MambaSTConfig(d_model=100).resolved_dt_rank == 7 and MambaSTConfig(dt_rank=5).resolved_dt_rank == 5
    with pytest.raises(UserError):
        MambaSTConfig(patch_size=6)
    with pytest.raises(UserError):
        MambaSTConfig(patch_size=16)  # needs 4 CNN stages
    with pytest.raises(UserError):
        MambaSTConfig.preset("huge")


def test_other_patch_size_runs():
    model = MambaST(MambaSTConfig.preset("tiny", patch_size=4, cnn_channels=(32, 16))).eval()
    with torch.inference_mode():
        assert model(torch.rand(1, 3, 18, 22), torch.rand(1, 3, 16, 16)).shape == (1, 3, 18, 22)


def test_paper_model_size():
    n = sum(t.numel() for t in MambaST().state_dict().values())
    assert n == 27_082_819  # "27.1 M stored parameters" (docs/model.md section 8)
