"""`mambast stylize` / `mambast export` end to end on a tiny model."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import mambast
from mambast import MambaST, MambaSTConfig
from mambast.cli import main


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    return mambast.save_native(MambaST(MambaSTConfig.preset("tiny")), path)


def _img(path, w, h, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8)).save(path)
    return path


def test_stylize_every_pair_with_sizes_and_bad_files(tmp_path, ckpt, capsys):
    _img(tmp_path / "c" / "wide.png", 53, 37)
    _img(tmp_path / "c" / "nested" / "tall.jpg", 24, 40, seed=1)
    (tmp_path / "c" / "zero.png").write_bytes(b"")
    _img(tmp_path / "s" / "art.png", 30, 30, seed=2)
    out = tmp_path / "out" / "deep"
    rc = main(["stylize", "--content", str(tmp_path / "c"), "--style", str(tmp_path / "s"), "--output", str(out),
               "--checkpoint", str(ckpt), "--size", "0", "--seed", "3", "--quiet"])
    err = capsys.readouterr()
    assert rc == 1  # one bad input: the rest done, non-zero exit
    assert sorted(p.name for p in out.iterdir()) == ["tall_stylized_art.png", "wide_stylized_art.png"]
    assert Image.open(out / "wide_stylized_art.png").size == (53, 37)
    assert "zero.png: empty file" in err.err and "wrote 2 images" in err.out and "1 pair(s) failed" in err.out

    rc = main(["stylize", "--content", str(tmp_path / "c" / "wide.png"), "--style", str(tmp_path / "s"),
               "--output", str(tmp_path / "o2"), "--checkpoint", str(ckpt), "--size", "16", "--seed", "3",
               "--quiet"])
    assert rc == 0 and Image.open(tmp_path / "o2" / "wide_stylized_art.png").size == (23, 16)


def test_seed_gives_same_output_and_inputs_are_never_overwritten(tmp_path, ckpt, capsys):
    c = _img(tmp_path / "x.png", 32, 32)
    s = _img(tmp_path / "y.png", 32, 32, seed=5)
    victim = _img(tmp_path / "x_stylized_y.png", 32, 32, seed=9)  # an input that has the output's name
    before = victim.read_bytes()
    args = ["stylize", "--content", str(c), "--style", str(s), "--checkpoint", str(ckpt), "--size", "0",
            "--seed", "1", "--quiet"]
    assert main([*args, "--output", str(tmp_path / "a")]) == 0
    assert main([*args, "--output", str(tmp_path / "b")]) == 0
    assert (tmp_path / "a" / "x_stylized_y.png").read_bytes() == (tmp_path / "b" / "x_stylized_y.png").read_bytes()
    rc = main(["stylize", "--content", str(tmp_path), "--style", str(s), "--checkpoint", str(ckpt), "--output",
               str(tmp_path), "--quiet"])  # the folder's x_stylized_y.png is itself an input now
    assert rc == 1 and victim.read_bytes() == before
    assert "refusing to overwrite an input image" in capsys.readouterr().err


def test_user_errors_are_one_line(tmp_path, ckpt, capsys):
    rc = main(["stylize", "--content", str(tmp_path / "none"), "--style", str(tmp_path), "--output",
               str(tmp_path / "o"), "--checkpoint", str(ckpt)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("mambast: error:") and "no such file" in err
    _img(tmp_path / "c.png", 32, 32)
    rc = main(["stylize", "--content", str(tmp_path / "c.png"), "--style", str(tmp_path / "c.png"),
               "--output", str(tmp_path / "o"), "--checkpoint", str(tmp_path / "missing.safetensors")])
    assert rc == 2 and "no such checkpoint" in capsys.readouterr().err


def test_export_official_and_back(tmp_path, ckpt):
    assert main(["export", str(ckpt), "--format", "official", "--out", str(tmp_path / "off"),
                 "--iteration", "5"]) == 0
    assert (tmp_path / "off" / "mamba_iter_5.pth").exists()
    assert main(["export", str(tmp_path / "off"), "--format", "native", "--out", str(tmp_path / "n.safetensors")]) == 0
    a, b = mambast.load(ckpt).state_dict(), mambast.load(tmp_path / "n.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "mambast", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("mambast ")
