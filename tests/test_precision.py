"""The precision policy ("auto" per device and model), the decoder's phase form, and the one-call API's engine
cache."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_model import lively_

import mambast
from mambast import MambaST, MambaSTConfig, UserError
from mambast.inference import Controls, Stylizer, api, precision
from mambast.inference.fast_decoder import FastDecoder, plan, upsampled_conv
from mambast.inference.precision import PRECISIONS, resolve_precision

GOLDEN = Path(__file__).parent / "data" / "golden_128"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny():
    return lively_(MambaST(MambaSTConfig.preset("tiny"))).eval()


def test_precision_choices_are_one_list():
    assert PRECISIONS == ("auto", "fp32", "bf16", "fp16")
    with pytest.raises(UserError, match=r"^precision must be one of auto, fp32, bf16, fp16, got 'fp64'") as e:
        resolve_precision("fp64", CPU, MambaSTConfig())
    assert getattr(e.value, "fields", None) == ("precision",)  # a FieldError: the CLI shows --precision


@pytest.mark.parametrize("features, bundled, expected", [
    (("avx512_bf16",), True, "bf16"), (("amx_bf16",), True, "bf16"), ((), True, "fp32"),
    (("avx512_bf16", "amx_bf16"), False, "fp32")])
def test_auto_resolves_per_cpu_and_model(monkeypatch, features, bundled, expected):
    monkeypatch.setattr(precision, "cpu_bf16_features", lambda: features)
    config = MambaSTConfig.preset("default" if bundled else "paper")
    assert resolve_precision("auto", CPU, config) == expected
    for explicit in ("fp32", "bf16", "fp16"):
        assert resolve_precision(explicit, CPU, config) == explicit
    assert resolve_precision("auto", torch.device("meta"), config) == "fp32"


def test_cpu_bf16_features_read_the_flags():
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    line = next((x for x in flags.splitlines() if x.startswith("flags")), "")
    if not line:
        pytest.skip("no /proc/cpuinfo flags here")
    assert set(precision.cpu_bf16_features()) == {f for f in ("avx512_bf16", "amx_bf16") if f in line.split()}


def test_engine_precision_is_the_resolved_one(tiny, monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_features", lambda: ("avx512_bf16",))
    assert Stylizer(tiny).precision == "fp32"  # not the bundled architecture: auto stays fp32
    assert isinstance(Stylizer(tiny, precision="bf16").decoder, FastDecoder)
    assert Stylizer(tiny).decoder is tiny.cnn_decoder  # fp32 runs the model's own layers


def test_upsampled_conv_equals_upsample_pad_conv():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(5, 7, 3)
    x = torch.randn(2, 5, 6, 9)
    ref = conv(F.pad(F.interpolate(x, scale_factor=2, mode="nearest"), (1, 1, 1, 1), mode="reflect"))
    out = upsampled_conv(x, conv)
    assert out.shape == ref.shape == (2, 7, 12, 18)
    assert (out - ref).abs().max().item() <= 2e-6 * ref.abs().max().item()


def test_fast_decoder_equals_the_decoder_whole_and_tiled(tiny):
    decoder = tiny.cnn_decoder
    kinds = [k for k, _ in plan(list(decoder))]
    assert kinds.count("up_conv") == 3  # every upsampling but the last (followed by nothing) is folded
    tokens = torch.randn(1, tiny.config.d_model, 5, 7)
    with torch.inference_mode():
        ref = decoder(tokens)
        assert (FastDecoder(decoder)(tokens) - ref).abs().max().item() <= 1e-5
        tiny.set_memory_budget(1 << 16)  # tiles
        try:
            assert (FastDecoder(decoder)(tokens) - ref).abs().max().item() <= 1e-5
        finally:
            tiny.set_memory_budget()


def test_auto_on_the_bundled_model_is_within_two_levels_of_fp32(monkeypatch):
    """On the goldens' inputs (128 px): the bound the policy promises (docs: README, Speed)."""
    monkeypatch.setattr(precision, "cpu_bf16_features", lambda: ("avx512_bf16",))
    model = api.bundled_model()
    content, style = Image.open(GOLDEN / "content.png"), Image.open(GOLDEN / "style.png")
    auto = Stylizer(model, size=None)
    assert auto.precision == "bf16"
    low = np.asarray(auto.stylize(content, style, Controls(seed=0)), np.int16)
    ref = np.asarray(Stylizer(model, size=None, precision="fp32").stylize(content, style, Controls(seed=0)),
                     np.int16)
    diff = np.abs(low - ref)
    assert 0 < diff.max() <= 2 and diff.mean() < 0.5


def test_one_call_api_builds_one_engine_per_model_and_settings():
    model = lively_(MambaST(MambaSTConfig.preset("tiny"))).eval()
    content, style = Image.new("RGB", (24, 16), (200, 30, 30)), Image.new("RGB", (16, 16), (10, 10, 240))
    built = []
    real = api.Stylizer

    class Counting(real):
        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    api.Stylizer = Counting
    try:
        first = mambast.stylize(model, content, style, size=None, seed=1)
        second = mambast.stylize(model, content, style, size=16, seed=1)
        third = mambast.stylize(model, content, style, size=None, seed=1)
        assert len(built) == 1 and api.cached_engine(model) is api.cached_engine(model)
        mambast.stylize(model, content, style, size=None, seed=1, precision="bf16")
        assert len(built) == 2  # another setting, another engine
    finally:
        api.Stylizer = real
    assert first.tobytes() == third.tobytes() and min(second.size) == 16
    fresh = Stylizer(model, size=None).stylize(content, style, Controls(seed=1))
    assert fresh.tobytes() == first.tobytes()
    assert model in api._ENGINES
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None, "the engine cache kept a dropped model alive"


def test_bundled_model_is_loaded_once():
    assert api.bundled_model() is api.bundled_model()
    content, style = Image.new("RGB", (16, 16), (90, 30, 30)), Image.new("RGB", (16, 16), (10, 10, 240))
    mambast.stylize(None, content, style, size=None, seed=0)
    assert api.bundled_model() in api._ENGINES


@pytest.mark.parametrize("argv", [["stylize", "--content", "c.jpg", "--style", "s.jpg", "--output", "out"],
                                  ["video", "in.mp4", "--style", "s.jpg", "--output", "out.mp4"]])
def test_cli_precision_flag_reads_the_one_list(argv, capsys):
    from mambast.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(argv).precision == "auto"
    for choice in PRECISIONS:
        assert parser.parse_args([*argv, "--precision", choice]).precision == choice
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args([*argv, "--precision", "fp64"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'fp64'" in capsys.readouterr().err
