"""Every public name of the package stays what the README says it is, whatever was imported before
(issue: importing the submodule `mambast.stylize` once replaced the function `mambast.stylize`)."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import mambast

DOCUMENTED = ["MambaST", "MambaSTConfig", "PRESETS", "UserError", "load", "load_native", "load_official",
              "save_native", "save_official", "selective_scan", "stylize", "Stylizer", "Controls",
              "training_losses", "load_vgg", "__version__"]


def _import_every_submodule() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(mambast.__path__, "mambast."):
        try:
            importlib.import_module(info.name)
        except ImportError as e:  # optional extras (gradio, av, ...) may be missing
            if getattr(e, "name", None) in (None, info.name):
                raise
        names.append(info.name)
    return names


def test_documented_names_survive_importing_every_submodule():
    before = {name: getattr(mambast, name) for name in DOCUMENTED}
    assert len(_import_every_submodule()) > 30
    for name in DOCUMENTED:
        after = getattr(mambast, name)
        assert after is before[name] or (name == "PRESETS" and after == before[name]), name
        assert not isinstance(after, type(mambast)), f"mambast.{name} is a module"
    assert set(mambast.__all__) <= set(DOCUMENTED)


def test_dir_lists_the_lazy_names_in_a_fresh_process():
    code = "import mambast, sys; print(' '.join(dir(mambast))); print('inference' in sys.modules['mambast'].__dict__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert set(DOCUMENTED) <= set(out[0].split())
    assert out[1] == "False"  # listing them did not import them


def test_stylize_called_twice_after_all_imports(tmp_path):
    _import_every_submodule()
    model = mambast.MambaST(mambast.MambaSTConfig.preset("tiny")).eval()
    content = Image.new("RGB", (24, 16), (200, 30, 30))
    style = Image.new("RGB", (16, 16), (10, 10, 240))
    first = mambast.stylize(model, content, style, size=None, seed=1)
    second = mambast.stylize(model, content, style, size=None, seed=1)
    assert first.size == second.size == (24, 16)
    assert first.tobytes() == second.tobytes()
    engine = mambast.Stylizer(model, size=None)
    for _ in range(2):
        assert engine.stylize(content, style, mambast.Controls(seed=1)).tobytes() == first.tobytes()
    for _ in range(2):
        out = mambast.selective_scan(torch.randn(1, 4, 6), torch.rand(1, 4, 6), -torch.rand(4, 2),
                                     torch.randn(1, 2, 6), torch.randn(1, 2, 6))
        assert out.shape == (1, 4, 6)
    path = tmp_path / "m.safetensors"
    for _ in range(2):
        mambast.save_native(model, path)
        assert isinstance(mambast.load(path), mambast.MambaST)
        assert isinstance(mambast.load_native(path), mambast.MambaST)


@pytest.mark.parametrize("first", ["mambast.stylize", "mambast.inference", "mambast.cli.stylize",
                                   "mambast.metrics", "mambast.train"])
def test_any_import_order_in_a_fresh_interpreter(first):
    code = (f"import importlib; importlib.import_module({first!r}) if {first!r} != 'mambast.stylize' else None\n"
            "import mambast, inspect\n"
            "try:\n    import mambast.stylize\nexcept ImportError:\n    pass\n"
            "assert inspect.isfunction(mambast.stylize), mambast.stylize\n"
            "assert inspect.isclass(mambast.Stylizer) and inspect.isfunction(mambast.training_losses)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).parent)
    assert result.returncode == 0, result.stderr[-2000:]


def test_numbers_from_numpy_and_a_long_lived_cache_never_change_an_output(tmp_path):
    """issue 25: numpy numbers are numbers (kind 3); mambast.stylize's shared engine re-encodes a style file
    rewritten at the same path and follows weights changed in place (kind 4)."""
    import numpy as np
    from test_model import lively_

    model = lively_(mambast.MambaST(mambast.MambaSTConfig.preset("tiny"))).eval()  # outputs that vary
    content = Image.new("RGB", (24, 16), (200, 30, 30))
    style = tmp_path / "style.png"
    Image.new("RGB", (16, 16), (10, 10, 240)).save(style)
    first = mambast.stylize(model, content, style, size=np.int64(16), seed=np.int64(1), alpha=np.float32(0.5),
                            style_size=np.int64(16))
    assert first.tobytes() == mambast.stylize(model, content, style, size=16, seed=1, alpha=0.5,
                                              style_size=16).tobytes()
    with pytest.raises(mambast.UserError, match=r"^style_weights must be a sequence of numbers, got 0.5$"):
        mambast.stylize(model, content, [style, style], style_weights=0.5)
    Image.new("RGB", (16, 16), (240, 200, 10)).save(style)  # rewritten in place
    again = mambast.stylize(model, content, style, size=16, seed=1, alpha=0.5, style_size=16)
    fresh = mambast.Stylizer(model, size=16).stylize(content, style, mambast.Controls(seed=1, alpha=0.5,
                                                                                    style_size=16))
    assert again.tobytes() == fresh.tobytes() != first.tobytes()
    with torch.no_grad():
        next(model.parameters()).mul_(2)  # weights changed in place
    again = mambast.stylize(model, content, style, size=16, seed=1, alpha=0.5, style_size=16)
    fresh = mambast.Stylizer(model, size=16).stylize(content, style, mambast.Controls(seed=1, alpha=0.5,
                                                                                    style_size=16))
    assert again.tobytes() == fresh.tobytes()


def test_numpy_integers_in_the_model_config_and_the_reader():
    """issue 25 kind 3, beyond the controls: MambaSTConfig refused np.int64 with "must be an integer >= 1, got
    np.int64(128)", and load_image took an np.int64 size hint for a (w, h) pair ("corrupt image")."""
    import json

    import numpy as np

    from mambast.images import load_image

    config = mambast.MambaSTConfig.preset("tiny", d_model=np.int64(64), patch_size=np.int32(8))
    assert config == mambast.MambaSTConfig.preset("tiny") and type(config.d_model) is int
    json.dumps(config.to_dict())  # plain ints: a checkpoint's config stays JSON
    with pytest.raises(mambast.UserError, match="^d_model must be an integer >= 1, got True$"):
        mambast.MambaSTConfig(d_model=True)
    path = Path(mambast.__file__).parent / "assets" / "examples" / "astronaut.jpg"
    assert load_image(path, size_hint=np.int64(64)).size == load_image(path, size_hint=64).size


def test_load_names_a_bad_device():
    """mambast.load(device="gpu") raised torch's RuntimeError, device="cuda" on a CPU build an AssertionError."""
    import mambast
    from mambast.errors import FieldError

    with pytest.raises(FieldError, match="^device 'gpu': unknown") as e:
        mambast.load(None, device="gpu")
    assert e.value.fields == ("device",)
    if not torch.cuda.is_available():
        with pytest.raises(FieldError, match="CUDA is not available"):
            mambast.load(None, device="cuda")
    assert next(mambast.load(None, device="auto").parameters()).device.type == ("cuda" if torch.cuda.is_available()
                                                                                 else "cpu")
