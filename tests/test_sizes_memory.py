"""Sizes users type are checked against the pixel limit before anything is allocated, and a failed allocation
is a one-line skip of what needed it, never a traceback (issue 25, kind 5). The web UI's side: test_ui.py."""

from __future__ import annotations

import re
import resource
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import mambast
from mambast.cli import main
from mambast.errors import UserError
from mambast.inference.jobs import RunOptions, run_jobs
from mambast.inference.size import fit_style, is_out_of_memory, memory_guard
from mambast.inference.worklist import named, pair_jobs


def _write(path, seed: int, w: int, h: int):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("extra, limit", [([], "16.8 MP"), (["--max-pixels", "1000000"], "1.0 MP")])
def test_style_size_over_the_limit_is_refused_before_any_work(tmp_path, capsys, extra, limit):
    c, s = _write(tmp_path / "c.png", 0, 24, 24), _write(tmp_path / "s.png", 1, 24, 24)
    code = main(["stylize", "--content", str(c), "--style", str(s), "--output", str(tmp_path / "out"),
                 "--style-size", "60000", "--checkpoint", str(tmp_path / "never-read.safetensors"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("mambast: error: stylize: --style-size 60000 px: planned size 60000 x 60000 px "
                          f"(3600.0 MP) is over the limit of {limit}")
    assert "(--max-pixels); ask for" in err  # the limit by its flag too (was the library's max_pixels)
    assert not (tmp_path / "out").exists()  # refused before the output folder or the model


def test_video_style_size_is_checked_too(tmp_path, capsys):
    pytest.importorskip("av")
    pytest.importorskip("cv2")
    frames = tmp_path / "frames"
    frames.mkdir()
    _write(frames / "f1.png", 0, 16, 16)
    s = _write(tmp_path / "s.png", 1, 16, 16)
    code = main(["video", str(frames), "--style", str(s), "--output", str(tmp_path / "out"),
                 "--style-size", "60000", "--checkpoint", str(tmp_path / "never-read.safetensors")])
    assert code == 2
    assert capsys.readouterr().err.startswith("mambast: error: video: --style-size 60000 px: planned size")


def test_a_failed_allocation_skips_its_pairs_in_one_line(tmp_path, ckpt, monkeypatch):
    contents = [_write(tmp_path / f"c{i}.png", i, 24, 16 + 8 * i) for i in range(2)]
    style = _write(tmp_path / "s.png", 5, 20, 20)
    model = mambast.load(ckpt)
    jobs = pair_jobs(named(contents, tmp_path), named([style], tmp_path), ext="png", seed=0, shuffle=True,
                     draw=None)
    render = mambast.Stylizer._render  # what render() and the folder runner both call

    def starved(self, content, *args, **kwargs):  # the 24 x 24 content's pair: what torch's CPU allocator says
        if content.image.shape[-2] == 24:
            raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 123456789 bytes.")
        return render(self, content, *args, **kwargs)

    monkeypatch.setattr(mambast.Stylizer, "_render", starved)
    errors: list[str] = []
    report = run_jobs(model, jobs, tmp_path / "out", RunOptions(size=None, progress=False, on_error=errors.append))
    assert [p.name for p in report.written] == ["c0_stylized_s.png"]  # the other pair went on
    assert len(report.failed) == len(errors) == 1 and "\n" not in errors[0]
    assert errors[0].endswith("1 pair(s) at 24 x 24 px: not enough memory (RuntimeError); ask for a smaller "
                              "size or batch size")


def test_memory_guard_turns_only_allocation_failures_into_one_line():
    assert is_out_of_memory(MemoryError()) and is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch")) and not is_out_of_memory(ValueError("memory"))
    with pytest.raises(UserError, match=r"^x\.png: not enough memory \(MemoryError\); ask for a smaller size$"):
        with memory_guard("x.png"):
            raise MemoryError()
    with pytest.raises(RuntimeError, match="shape mismatch"):
        with memory_guard("x.png"):
            raise RuntimeError("shape mismatch")


def test_style_resize_is_checked_before_it_is_made():
    style = Image.new("RGB", (100, 10))
    with pytest.raises(UserError, match=r"^style image: planned size 10000 x 1000 px \(10.0 MP\) is over the limit"):
        fit_style(style, 64, 64, style_size=1000, max_pixels=1_000_000)
    assert fit_style(style, 64, 64, style_size=1000, max_pixels=None).size == (64, 64)


def _as_capped(limit_bytes: int):
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    return cap


def test_no_limit_and_a_huge_style_size_is_a_skip_not_a_traceback(tmp_path, ckpt):
    """--max-pixels 0 (no limit) and --style-size 60000: the 10.8 GB resize fails under a 3 GiB address-space
    cap; the pair is skipped with one line, the run ends normally (exit 1: a pair failed)."""
    c, s = _write(tmp_path / "c.png", 0, 24, 24), _write(tmp_path / "s.png", 1, 30, 20)
    args = [sys.executable, "-m", "mambast", "stylize", "--content", str(c), "--style", str(s), "--output",
            str(tmp_path / "out"), "--checkpoint", str(ckpt), "--size", "0", "--style-size", "60000",
            "--max-pixels", "0", "--quiet"]
    run = subprocess.run(args, capture_output=True, text=True, timeout=300, preexec_fn=_as_capped(3 << 30))
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.strip() == (f"mambast: skipped: {s} at style_size 60000: not enough memory (MemoryError); "
                                  "ask for a smaller size")
    assert run.stdout.startswith(f"wrote 0 images to {tmp_path / 'out'}") and "1 pair(s) failed" in run.stdout


_API_HUGE_SIZE = """
import sys
from PIL import Image
import mambast
from mambast.errors import UserError
from mambast.io import load
model = load(sys.argv[1])
try:
    mambast.stylize(model, Image.new("RGB", (24, 16), (90, 30, 200)), Image.new("RGB", (20, 20), (9, 200, 9)),
                    size=40_000, max_pixels=0)
except UserError as e:
    print(e)
    sys.exit(3)
"""


def test_python_api_out_of_memory_is_one_line(ckpt):
    """mambast.stylize with no pixel limit and a size the machine cannot hold: a one-line UserError naming the
    content, not a bare MemoryError (new-user check; the CLI already skipped with one line)."""
    run = subprocess.run([sys.executable, "-c", _API_HUGE_SIZE, str(ckpt)], capture_output=True, text=True,
                         timeout=300, preexec_fn=_as_capped(3 << 30))
    assert run.returncode == 3, run.stderr[-2000:]
    assert run.stdout.strip().startswith("content: not enough memory ("), run.stdout
    assert run.stdout.strip().endswith("ask for a smaller size or a lower max_pixels")



def test_run_options_take_numbers_of_any_type_and_batches_hold_at_most_the_pixel_limit(tmp_path, ckpt, monkeypatch):
    options = RunOptions(size=np.float64(32.0), max_pixels=np.int64(2048), batch_size=np.int64(4),
                         workers=np.uint8(0), jpeg_quality=np.int32(90), progress=False)
    assert (options.size, options.max_pixels, options.batch_size, options.workers, options.jpeg_quality) == \
        (32, 2048, 4, 0, 90)
    assert all(type(v) is int for v in (options.size, options.max_pixels, options.batch_size, options.workers))
    for bad, message in (({"batch_size": 2.5}, "batch_size must be a whole number >= 1, got 2.5"),
                         ({"batch_size": True}, "batch_size must be a whole number >= 1, got True (bool)"),
                         ({"jpeg_quality": 101}, "jpeg_quality must be a whole number in [1, 100], got 101")):
        with pytest.raises(UserError, match=f"^{re.escape(message)}$"):
            RunOptions(**bad)
    contents = [_write(tmp_path / f"c{i}.png", i, 32, 32) for i in range(4)]
    style = _write(tmp_path / "s.png", 9, 32, 32)
    jobs = pair_jobs(named(contents, tmp_path), named([style], tmp_path), ext="png", seed=0)
    sizes: list[int] = []
    render = mambast.Stylizer._render  # what render() and the folder runner both call

    def spy(self, content, *args, **kwargs):
        sizes.append(content.image.shape[0])
        return render(self, content, *args, **kwargs)

    monkeypatch.setattr(mambast.Stylizer, "_render", spy)
    report = run_jobs(mambast.load(ckpt), jobs, tmp_path / "out", options)
    assert len(report.written) == 4 and sizes == [2, 2]  # 4 x 32 x 32 px would be over 2048 px: two batches


def test_video_frames_take_numbers_of_any_type_and_refuse_a_fractional_batch():
    """stylize_frames(batch_size=2.5) ran the whole video as one batch (len(batch) == 2.5 never held)."""
    from mambast.video.stylize import stylize_frames

    model = mambast.MambaST(mambast.MambaSTConfig.preset("tiny")).eval()
    engine = mambast.Stylizer(model, size=None)
    frames = [np.random.default_rng(i).integers(0, 256, (16, 16, 3), dtype=np.uint8) for i in range(3)]
    style = Image.new("RGB", (16, 16), (200, 100, 0))
    plain = list(stylize_frames(engine, frames, style, batch_size=2, stability=0, overlap=False))
    numpy = list(stylize_frames(engine, frames, style, batch_size=np.int64(2), stability=np.float32(0),
                                overlap=False))
    assert len(plain) == 3 and all(np.array_equal(a, b) for a, b in zip(plain, numpy, strict=True))
    for kwargs, message in (({"batch_size": 2.5}, "batch_size must be a whole number >= 1, got 2.5"),
                            ({"stability": 1.5}, "stability must be a number in [0, 1], got 1.5")):
        with pytest.raises(UserError, match=f"^{re.escape(message)}$"):
            list(stylize_frames(engine, frames, style, **{"batch_size": 2, "stability": 0, **kwargs}))
