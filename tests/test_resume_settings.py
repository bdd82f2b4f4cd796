"""Resuming with other settings (issue 25, kind 6): `--skip-existing` keeps an output only when the current run
would write the same file (model, inputs' bytes, every setting, seed); anything else is made again, and the
manifest names what each file was made with."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mambast
from mambast.cli import main
from mambast.inference import Controls
from mambast.inference.jobs import RunOptions, run_jobs
from mambast.inference.provenance import Stamper, read_stamp
from mambast.inference.worklist import named, pair_jobs


def _model(scale: float = 10.0) -> mambast.MambaST:
    torch.manual_seed(0)
    model = mambast.MambaST(mambast.MambaSTConfig.preset("tiny"))
    with torch.no_grad():
        model.cnn_decoder[-1].weight.mul_(scale)
        model.cnn_decoder[-1].bias.fill_(0.5)
    return model.eval()


def _img(path: Path, seed: int, size: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), np.uint8)).save(path)
    return path


@pytest.fixture
def data(tmp_path):
    for i in range(4):
        _img(tmp_path / "c" / f"k{i % 2}" / f"im{i}.png", i)
    for i in range(3):
        _img(tmp_path / "s" / f"art{i}.png", 10 + i)
    return tmp_path


def _pixels(out: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(out).as_posix(): np.asarray(Image.open(p)) for p in sorted(out.rglob("*.*"))
            if p.suffix in (".png", ".jpg")}


def _mtimes(out: Path) -> dict[str, int]:
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*.png")}


def _same(a: Path, b: Path, manifest: str | None = None) -> bool:
    pa, pb = _pixels(a), _pixels(b)
    same = pa.keys() == pb.keys() and all(np.array_equal(pa[k], pb[k]) for k in pa)
    if manifest:
        same = same and (a / manifest).read_text() == (b / manifest).read_text()
    return same


def _run(capsys, *args) -> str:
    capsys.readouterr()
    assert main(list(args)) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_dataset_resume_with_another_seed_style_file_or_model_makes_those_outputs_again(data, capsys):
    ckpt = mambast.save_native(_model(), data / "a.safetensors")
    out = data / "out"

    def dataset(output, *extra, checkpoint=ckpt):
        return ["stylize-dataset", "--content", str(data / "c"), "--style", str(data / "s"), "--output",
                str(output), "--checkpoint", str(checkpoint), "--size", "0", "--quiet", *extra]

    _run(capsys, *dataset(out, "--seed", "11"))
    # the case: another --seed, resumed into the same folder
    said = _run(capsys, *dataset(out, "--seed", "12", "--skip-existing"))
    assert "already there" not in said and "wrote 4 images" in said
    assert "(4 replacing outputs made with other settings)" in said
    _run(capsys, *dataset(data / "fresh12", "--seed", "12"))
    assert _same(out, data / "fresh12", "manifest.csv")  # files and manifest: what --seed 12 makes

    # the same settings again: every file kept, untouched
    before = _mtimes(out)
    said = _run(capsys, *dataset(out, "--seed", "12", "--skip-existing"))
    assert "wrote 0 images" in said and "4 already there (skipped)" in said
    assert _mtimes(out) == before and _same(out, data / "fresh12", "manifest.csv")

    # a style file rewritten at the same path: only the outputs made from it are made again
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    style = rows[0]["style"]
    uses = sum(r["style"] == style for r in rows)
    _img(data / "s" / style, 99)
    said = _run(capsys, *dataset(out, "--seed", "12", "--skip-existing"))
    assert f"wrote {uses} image" in said and f"{4 - uses} already there" in said
    _run(capsys, *dataset(data / "fresh_style", "--seed", "12"))
    assert _same(out, data / "fresh_style", "manifest.csv")

    # another checkpoint (other weights at another path): everything made again
    other = mambast.save_native(_model(scale=7.0), data / "b.safetensors")
    said = _run(capsys, *dataset(out, "--seed", "12", "--skip-existing", checkpoint=other))
    assert "wrote 4 images" in said and "already there" not in said
    _run(capsys, *dataset(data / "fresh_model", "--seed", "12", checkpoint=other))
    assert _same(out, data / "fresh_model", "manifest.csv")
    assert not _same(out, data / "fresh_style")


def test_stylize_resume_keys_on_settings_and_accepts_any_drawn_seed(data, capsys):
    ckpt = mambast.save_native(_model(), data / "a.safetensors")
    out = data / "out"

    def stylize(output, *extra):
        return ["stylize", "--content", str(data / "c" / "k0"), "--style", str(data / "s" / "art0.png"),
                str(data / "s" / "art1.png"), "--output", str(output), "--checkpoint", str(ckpt), "--size", "0",
                "--quiet", *extra]

    _run(capsys, *stylize(out))  # no --seed: a seed drawn per pair
    before = _mtimes(out)
    said = _run(capsys, *stylize(out, "--skip-existing"))  # still no --seed: any seed will do
    assert "wrote 0 images" in said and "4 already there (skipped)" in said and _mtimes(out) == before

    for extra in (["--seed", "5"], ["--seed", "5", "--alpha", "0.5", "--preserve-color", "luminance"]):
        said = _run(capsys, *stylize(out, *extra, "--skip-existing"))
        assert "wrote 4 images" in said and "already there" not in said, extra
        fresh = data / ("fresh" + "_".join(extra))
        _run(capsys, *stylize(fresh, *extra))
        assert _same(out, fresh), extra
        said = _run(capsys, *stylize(out, *extra, "--skip-existing"))
        assert "wrote 0 images" in said and "4 already there" in said, extra

    # a file at an output's name that mambast did not stamp (an older version's, or someone else's)
    name = sorted(_mtimes(out))[0]
    Image.new("RGB", (16, 16)).save(out / name)
    said = _run(capsys, *stylize(out, "--seed", "5", "--alpha", "0.5", "--preserve-color", "luminance",
                                 "--skip-existing"))
    assert "wrote 1 image " in said and "3 already there" in said
    assert _same(out, data / "fresh--seed_5_--alpha_0.5_--preserve-color_luminance")


def test_stamps_in_png_and_jpeg_and_every_setting_changes_them(data):
    model = _model()
    contents = named(sorted((data / "c" / "k0").glob("*.png")), data / "c" / "k0")
    styles = named([data / "s" / "art0.png"], data / "s" / "art0.png")

    def stamp(folder, **options):
        ext = options.get("ext", "png")
        jobs = pair_jobs(contents, styles, seed=3, ext=ext)
        report = run_jobs(model, jobs, data / folder, RunOptions(size=None, progress=False, **options))
        assert not report.failed
        return read_stamp(data / folder / jobs[0].output)

    ref = stamp("ref")
    assert ref is not None and ref.seed == 3
    assert stamp("again") == ref  # deterministic
    assert stamp("bs4", batch_size=4, workers=1) == ref  # how a run is split does not change the file
    jpg = stamp("jpg", ext="jpg")
    assert jpg is not None and jpg.seed == 3 and jpg != ref
    assert stamp("jpg80", ext="jpg", jpeg_quality=80) != jpg
    assert read_stamp(data / "c" / "k0" / "im0.png") is None  # an image mambast did not write

    job = pair_jobs(contents, styles, seed=3)[0]
    plain = dict(size=None, controls=Controls(), precision="fp32", image_format="PNG", jpeg_quality=95)
    variants = [{}, {"size": 24}, {"precision": "bf16"}, {"controls": Controls(alpha=0.7)},
                {"controls": Controls(style_size=8)}, {"controls": Controls(shuffle=False)},
                {"controls": Controls(preserve_color="match")},
                {"controls": Controls(mask=np.zeros((4, 4), np.uint8))},
                {"controls": Controls(mask=np.full((4, 4), 255, np.uint8))}]
    made = [Stamper(model, **{**plain, **v}).stamp(job).made_with for v in variants]
    assert len(set(made)) == len(variants)
    assert Stamper(model, **{**plain, "jpeg_quality": 50}).stamp(job).made_with == made[0]  # PNG: no quality
    assert Stamper(model, **{**plain, "size": 0}).stamp(job).made_with == made[0]  # 0 and None: own size
    assert Stamper(_model(scale=7.0), **plain).stamp(job).made_with != made[0]
    # "auto" is recorded as what it resolves to (bf16 or fp32 by device and model), not as "auto"
    from mambast.inference.precision import resolve_precision

    resolved = resolve_precision("auto", torch.device("cpu"), model.config)
    auto = Stamper(model, **{**plain, "precision": "auto"}).stamp(job).made_with
    assert auto == Stamper(model, **{**plain, "precision": resolved}).stamp(job).made_with
