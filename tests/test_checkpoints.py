"""Published three-file layout (strict, bit-exact round trip), native safetensors, refusal of pickled code."""

from __future__ import annotations

import filecmp
import os
import pickle

import pytest
import torch

import mambast
from mambast import MambaST, MambaSTConfig, UserError
from mambast.io.safetensors import load_file, save_file


@pytest.fixture(scope="module")
def synthetic_model(synthetic_1234):
    return mambast.load(synthetic_1234, dtype=None)


def test_official_export_is_bit_exact(synthetic_model, synthetic_1234, tmp_path):
    paths = mambast.save_official(synthetic_model, tmp_path)
    assert sorted(p.name for p in paths.values()) == [
        "decoder_iter_160000.pth", "embedding_iter_160000.pth", "mamba_iter_160000.pth"]
    for p in paths.values():
        assert filecmp.cmp(p, synthetic_1234 / p.name, shallow=False), p.name


def test_config_is_read_off_the_shapes(synthetic_model):
    assert synthetic_model.config == MambaSTConfig()
    assert not synthetic_model.training


def test_non_paper_config_round_trips(tmp_path):
    cfg = MambaSTConfig.preset("tiny", d_model=48, d_state=4, content_layers=2, cnn_channels=(40, 24, 8))
    model = MambaST(cfg)
    mambast.save_official(model, tmp_path, iteration=7)
    back = mambast.load(tmp_path)
    assert back.config == cfg
    for k, v in model.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k


def _write_official(tmp_path, mutate):
    model = MambaST(MambaSTConfig.preset("tiny"))
    paths = mambast.save_official(model, tmp_path)
    sd = torch.load(paths["mamba"], weights_only=True)
    mutate(sd)
    torch.save(sd, paths["mamba"])


def test_mismatch_lists_missing_unexpected_misshaped(tmp_path):
    def mutate(sd):
        del sd["decoder.norm.weight"]
        sd["decoder.extra"] = torch.zeros(1)
        sd["decoder.norm.bias"] = torch.zeros(3)

    _write_official(tmp_path, mutate)
    with pytest.raises(UserError) as e:
        mambast.load(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg
    assert "1 missing: decoder.norm.weight" in msg
    assert "1 unexpected: decoder.extra" in msg
    assert "decoder.norm.bias (3,) != (64,)" in msg


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickled_code_is_refused(tmp_path):
    _write_official(tmp_path, lambda sd: sd.__setitem__("payload", Evil()))
    with pytest.raises(UserError, match="refused: it holds pickled Python objects"):
        mambast.load(tmp_path)


def test_incomplete_folder_is_a_clear_error(tmp_path):
    model = MambaST(MambaSTConfig.preset("tiny"))
    paths = mambast.save_official(model, tmp_path)
    paths["decoder"].unlink()
    with pytest.raises(UserError, match="no complete published checkpoint"):
        mambast.load(tmp_path)
    with pytest.raises(UserError, match="no such checkpoint"):
        mambast.load(tmp_path / "missing")


@pytest.mark.parametrize("dtype", [None, torch.float16])
def test_native_round_trip(tmp_path, dtype):
    cfg = MambaSTConfig.preset("tiny", d_state=4)
    model = MambaST(cfg)
    path = mambast.save_native(model, tmp_path / "m.safetensors", dtype=dtype)
    back = mambast.load(path, dtype=None)
    assert back.config == cfg
    for k, v in model.state_dict().items():
        want = v if dtype is None else v.to(dtype)
        assert torch.equal(back.state_dict()[k], want), k
    assert b"pickle" not in path.read_bytes()[:64] and path.read_bytes()[:1] != pickle.PROTO


def test_safetensors_format_and_dtypes(tmp_path):
    tensors = {"a": torch.arange(6.0).view(2, 3), "b": torch.tensor([1, -2], dtype=torch.int64),
               "c": torch.randn(3, dtype=torch.bfloat16), "e": torch.zeros(0)}
    save_file(tensors, tmp_path / "t.safetensors", {"k": "v"})
    raw = (tmp_path / "t.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert raw[8:9] == b"{" and n % 8 == 0
    back, meta = load_file(tmp_path / "t.safetensors")
    assert meta == {"k": "v"}
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v)


def test_foreign_or_broken_safetensors(tmp_path):
    save_file({"x": torch.zeros(2)}, tmp_path / "plain.safetensors")
    with pytest.raises(UserError, match="not a mambast checkpoint"):
        mambast.load(tmp_path / "plain.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    with pytest.raises(UserError, match="not a valid safetensors"):
        mambast.load(tmp_path / "bad.safetensors")


def test_paper_model_has_the_published_keys_shapes_and_order():
    """Every tensor of the published files (mambast/io/official_layout.json), in file order, per part."""
    import json
    from pathlib import Path

    import mambast.io.official as official

    layout = json.loads((Path(official.__file__).parent / "official_layout.json").read_text())
    model = MambaST()
    for tag, sub in official.PARTS.items():
        got = [(k, list(v.shape)) for k, v in getattr(model, sub).state_dict().items()]
        assert got == [(k, shape) for k, shape in layout[tag]["tensors"]], tag
