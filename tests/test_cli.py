"""`mambast stylize` / `mambast export` end to end on a tiny model."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import mambast
from mambast.cli import main


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
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "nested/tall_stylized_art.png", "wide_stylized_art.png"]  # content sub-folders mirrored
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


# ------------------------------------------------------------------------ folder runs: outputs and inputs


def _stylize(ckpt, content, style, out, *extra):
    return main(["stylize", "--content", str(content), "--style", *map(str, style if isinstance(style, list)
                                                                        else [style]),
                 "--output", str(out), "--checkpoint", str(ckpt), "--size", "0", "--seed", "1", "--quiet",
                 *map(str, extra)])


def test_output_that_cannot_be_a_folder_is_one_line(tmp_path, ckpt, capsys):
    c, s = _img(tmp_path / "c.png", 16, 16), _img(tmp_path / "s.png", 16, 16, seed=1)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for out in (a_file, a_file / "below"):
        assert _stylize(ckpt, c, s, out) == 2
        err = capsys.readouterr().err
        assert err.startswith("mambast: error:") and err.count("\n") == 1 and str(a_file) in err
    assert a_file.read_text() == "x"


def test_one_failed_write_skips_that_pair_only(tmp_path, ckpt, capsys):
    _img(tmp_path / "c" / "a.png", 16, 16)
    _img(tmp_path / "c" / "b.png", 16, 16, seed=1)
    s = _img(tmp_path / "s.png", 16, 16, seed=2)
    out = tmp_path / "out"
    (out / "a_stylized_s.png").mkdir(parents=True)  # a folder where the output file should go
    assert _stylize(ckpt, tmp_path / "c", s, out) == 1
    cap = capsys.readouterr()
    assert "a_stylized_s.png: cannot write" in cap.err and "wrote 1 image " in cap.out and "1 pair(s) failed" in cap.out
    assert Image.open(out / "b_stylized_s.png").size == (16, 16)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp file left behind


def test_hidden_files_and_own_outputs_are_not_inputs(tmp_path, ckpt, capsys):
    root = tmp_path / "c"
    _img(root / "a.png", 16, 16)
    (root / "._a.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS resource fork: not an image
    _img(root / ".hidden" / "b.png", 16, 16)
    s = _img(tmp_path / "s.png", 16, 16, seed=2)
    out = root / "stylized"  # inside the content folder
    assert _stylize(ckpt, root, s, out) == 0
    assert _stylize(ckpt, root, s, out) == 0  # the second run does not stylize the first run's outputs
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a_stylized_s.png"]
    assert "skipped" not in capsys.readouterr().err


def test_same_stems_in_subfolders_are_mirrored_and_true_collisions_name_both_inputs(tmp_path, ckpt, capsys):
    _img(tmp_path / "c" / "x" / "cat.png", 16, 16)
    _img(tmp_path / "c" / "y" / "cat.png", 16, 16, seed=1)
    _img(tmp_path / "s" / "p" / "art.png", 16, 16, seed=2)
    _img(tmp_path / "s" / "q" / "art.png", 16, 16, seed=3)
    out = tmp_path / "out"
    assert _stylize(ckpt, tmp_path / "c", tmp_path / "s", out) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "x/cat_stylized_p__art.png", "x/cat_stylized_q__art.png", "y/cat_stylized_p__art.png",
        "y/cat_stylized_q__art.png"]
    a = np.asarray(Image.open(out / "x" / "cat_stylized_p__art.png"))
    assert not np.array_equal(a, np.asarray(Image.open(out / "y" / "cat_stylized_p__art.png")))

    _img(tmp_path / "d" / "dog.png", 16, 16)
    _img(tmp_path / "d" / "dog.jpg", 16, 16, seed=4)  # same stem, same folder: still one output name
    assert _stylize(ckpt, tmp_path / "d", tmp_path / "s" / "p" / "art.png", tmp_path / "o2") == 1
    err = capsys.readouterr().err
    assert "dog.jpg + " in err and "dog.png + " in err and "same output name" in err


def test_ext_jpeg_quality_and_skip_existing(tmp_path, ckpt, capsys):
    c = _img(tmp_path / "c" / "a.png", 24, 24)
    _img(tmp_path / "c" / "b.png", 24, 24, seed=1)
    s = _img(tmp_path / "s.png", 24, 24, seed=2)
    out = tmp_path / "out"
    assert _stylize(ckpt, c, s, out, "--ext", "jpg", "--jpeg-quality", "20") == 0
    low = out / "a_stylized_s.jpg"
    assert Image.open(low).format == "JPEG"
    assert _stylize(ckpt, c, s, tmp_path / "hi", "--ext", "jpg", "--jpeg-quality", "100") == 0
    assert low.stat().st_size < (tmp_path / "hi" / "a_stylized_s.jpg").stat().st_size
    before = low.stat().st_mtime_ns
    capsys.readouterr()
    assert _stylize(ckpt, tmp_path / "c", s, out, "--ext", "jpg", "--jpeg-quality", "20", "--skip-existing") == 0
    assert "wrote 1 image " in capsys.readouterr().out and low.stat().st_mtime_ns == before
    assert (out / "b_stylized_s.jpg").exists()
    # another quality makes another file: not skipped (issue 25, kind 6)
    assert _stylize(ckpt, c, s, out, "--ext", "jpg", "--skip-existing") == 0
    assert "wrote 1 image " in capsys.readouterr().out and low.stat().st_mtime_ns != before


def test_several_styles_mixed_or_each_on_its_own(tmp_path, ckpt):
    c = _img(tmp_path / "c.png", 16, 16)
    s1, s2 = _img(tmp_path / "s1.png", 16, 16, seed=1), _img(tmp_path / "s2.png", 16, 16, seed=2)
    assert _stylize(ckpt, c, [s1, s2], tmp_path / "each") == 0
    assert sorted(p.name for p in (tmp_path / "each").iterdir()) == ["c_stylized_s1.png", "c_stylized_s2.png"]
    assert _stylize(ckpt, c, [s1, s2], tmp_path / "mix", "--style-weights", "1", "0") == 0
    assert [p.name for p in (tmp_path / "mix").iterdir()] == ["c_stylized_s1+s2@1-0.png"]
    # weight 1 on one style is that style exactly
    assert np.array_equal(np.asarray(Image.open(tmp_path / "mix" / "c_stylized_s1+s2@1-0.png")),
                          np.asarray(Image.open(tmp_path / "each" / "c_stylized_s1.png")))
    assert _stylize(ckpt, c, [s1, s2], tmp_path / "bad", "--style-weights", "1") == 2
    # other weights and a mask never share that name
    assert _stylize(ckpt, c, [s1, s2], tmp_path / "mix", "--style-weights", "0.3", "0.7") == 0
    mask = _img(tmp_path / "m.png", 16, 16, seed=3)
    assert _stylize(ckpt, c, [s1, s2], tmp_path / "mix", "--mask", mask) == 0
    assert sorted(p.name for p in (tmp_path / "mix").iterdir()) == [
        "c_stylized_s1+s2@0.3-0.7.png", "c_stylized_s1+s2@1-0.png", "c_stylized_s1+s2@mask-m.png"]


def test_mask_is_checked_before_any_work(tmp_path, ckpt, capsys):
    c = _img(tmp_path / "c.png", 16, 16)
    s1, s2 = _img(tmp_path / "s1.png", 16, 16, seed=1), _img(tmp_path / "s2.png", 16, 16, seed=2)
    for styles, mask, why in (([s1, s2], tmp_path / "nope.png", "no such file"),
                              ([s1], _img(tmp_path / "m.png", 16, 16, seed=3), "at least two styles")):
        capsys.readouterr()
        assert _stylize(ckpt, c, styles, tmp_path / "out", "--mask", mask) == 2
        err = capsys.readouterr().err
        assert why in err and err.count("\n") == 1
        assert not list((tmp_path / "out").glob("*.png"))


def test_max_pixels_refuses_with_one_line_naming_the_file(tmp_path, ckpt, capsys):
    big = _img(tmp_path / "c" / "big.png", 64, 48)
    _img(tmp_path / "c" / "small.png", 16, 16)
    s = _img(tmp_path / "s.png", 16, 16, seed=2)
    assert _stylize(ckpt, tmp_path / "c", s, tmp_path / "out", "--max-pixels", "1000") == 1
    err = capsys.readouterr().err
    assert f"{big}: planned size 64 x 48 px" in err and err.count("\n") == 1
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["small_stylized_s.png"]


def test_argument_errors_are_one_line(capsys):
    for argv in (["stylize", "--content", "c", "--style", "s", "--output", "o", "--preserve-color", "hue"],
                 ["stylize"], ["no-such-command"], ["video", "--stability"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.startswith("mambast: error: ") and err.count("\n") == 1, err


def test_a_size_below_one_patch_is_an_argument_error_before_any_work(tmp_path, ckpt, capsys):
    content = _img(tmp_path / "c.png", 20, 20)
    for size in ("3", "-1"):
        rc = main(["stylize", "--content", str(content), "--style", str(content), "--output", str(tmp_path / "o"),
                   "--checkpoint", str(ckpt), "--size", size, "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and err == (f"mambast: error: stylize: --size must be 0 (no resizing) or a whole "
                                   f"number of px >= 8, got {size}\n"), err
    assert not (tmp_path / "o").exists()


_SIGTERM_DURING_A_COMMAND = """
import os, signal, sys, time
import mambast.cli.stylize_dataset as command
from mambast import cli

register = command.register

def fake_run(args):  # a command that gets SIGTERM (kill, docker stop, torchrun stopping a rank) mid-way
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)
    return 0

def patched(sub):
    register(sub)
    sub.choices["stylize-dataset"].set_defaults(func=fake_run)

command.register = patched
sys.exit(cli.main(["stylize-dataset", "--content", "c", "--style", "s", "--output", "o"]))
"""


def test_sigterm_ends_every_command_like_ctrl_c():
    """Every command, not only video and ui: SIGTERM is one line and exit 130, as Ctrl-C (was: killed, 143)."""
    proc = subprocess.run([sys.executable, "-c", _SIGTERM_DURING_A_COMMAND], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 130, (proc.returncode, proc.stderr)
    assert proc.stderr.strip() == "mambast: interrupted"


def test_field_errors_become_the_commands_flags_in_one_place():
    """A library FieldError names fields; mambast.cli.main spells them as the command's flags (read off the
    parser: `--field-name` where it exists, else the longest flag, positionals by metavar, overrides win)."""
    import argparse

    from mambast.cli.common import field_flags, flag_message
    from mambast.errors import FieldError

    p = argparse.ArgumentParser()
    p.add_argument("--max-iter", "-n", dest="max_iter")
    p.add_argument("-s", "--style-size", dest="style_size")
    p.add_argument("content", metavar="CONTENT")
    names = field_flags(p, {"content_dir": "--content"})
    e = FieldError("max_iter must be >= 1; style_size too big for content; content_dir empty; max_iterations",
                   "max_iter", "style_size", "content_dir")
    assert flag_message(e, names) == ("--max-iter must be >= 1; --style-size too big for content; --content empty;"
                                      " max_iterations")
    e = FieldError("no style_size-8.pth for style_size: `mambast weights fetch style_size` gets it", "style_size")
    assert flag_message(e, names) == "no style_size-8.pth for --style-size: `mambast weights fetch style_size` gets it"


def test_stylize_names_the_flag_of_a_missing_input(tmp_path, capsys):
    """A missing --content / --style said only `nope: no such file or folder` (no flag)."""
    from mambast.cli import main

    style = tmp_path / "s.png"
    Image.new("RGB", (32, 32)).save(style)
    for flags, want in ((["--content", str(tmp_path / "nope"), "--style", str(style)], "--content "),
                        (["--content", str(style), "--style", str(tmp_path / "nope")], "--style ")):
        assert main(["stylize", *flags, "--output", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"mambast: error: stylize: {want}{tmp_path / 'nope'}: no such file or folder")
