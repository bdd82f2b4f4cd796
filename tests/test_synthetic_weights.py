"""The project's synthetic-weights generator (tests/synthetic_weights.py) against the spec's own script: the
same numbers for every key and the same file bytes, so the goldens computed from the spec's weights hold for
ours. Needs the shared spec folder ($MAMBAST_SHARED or ../shared; a plain clone skips this check only)."""

from __future__ import annotations

import filecmp
import importlib.util
import json

import numpy as np
import pytest
import torch
from conftest import shared_dir
from synthetic_weights import LAYOUT, synthetic_state_dicts, write_synthetic


def _spec_module():
    shared = shared_dir()
    if shared is None:
        pytest.skip("the shared spec folder is absent (set MAMBAST_SHARED): recipe not cross-checked")
    spec = importlib.util.spec_from_file_location("spec_synthetic", shared / "official" / "synthetic_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, shared


@pytest.mark.parametrize("seed", [1234, 77])
def test_same_tensors_as_the_spec_script(seed):
    spec, shared = _spec_module()
    assert json.loads(LAYOUT.read_text()) == json.loads((shared / "official" / "checkpoint_keys.json").read_text())
    ours, theirs = synthetic_state_dicts(seed), spec.synthetic_state_dicts(seed)
    assert list(ours) == list(theirs)
    for tag in ours:
        assert list(ours[tag]) == list(theirs[tag]), tag
        for key, value in ours[tag].items():
            assert value.dtype == np.float32 and np.array_equal(value, theirs[tag][key]), f"{tag}: {key}"


def test_same_file_bytes_as_the_spec_script(tmp_path):
    spec, _ = _spec_module()
    ours = write_synthetic(tmp_path / "ours", seed=5, iteration=7)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    for tag in ("decoder", "embedding"):  # the small files; the tensors of all four are compared above
        name = f"{tag}_iter_7.pth"
        torch.save({k: torch.from_numpy(v) for k, v in spec.synthetic_state_dicts(5)[tag].items()}, theirs / name)
        assert filecmp.cmp(ours / name, theirs / name, shallow=False), name


def test_scales_by_kind():
    """The recipe's scales, independently of the spec script: A in [-16, -1], dt in [1e-3, 1e-1], weights ~1."""
    sd = synthetic_state_dicts(3)
    mamba = sd["mamba"]
    a = mamba["encoder_c.layers.0.self_attention.A_logs"]
    assert a.min() >= 0 and a.max() <= np.log(16) + 1e-6
    dt = np.log1p(np.exp(mamba["encoder_c.layers.0.self_attention.dt_projs_bias"].astype(np.float64)))
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 0.1 * (1 + 1e-5)
    assert abs(mamba["encoder_c.layers.0.ln_1.weight"].mean() - 1) < 0.02
    x_proj = mamba["encoder_c.layers.0.self_attention.x_proj_weight"]  # (K, R + 2N, Di): fan_in Di
    assert abs(x_proj.std() * np.sqrt(x_proj.shape[-1]) - 1) < 0.02
    assert abs(sd["decoder"]["28.bias"].mean() - 0.5) < 0.1
    assert synthetic_state_dicts(3)["embedding"]["proj.bias"].tobytes() == sd["embedding"]["proj.bias"].tobytes()
