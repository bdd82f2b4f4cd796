"""Batched folder runs (mambast.inference.jobs) and dataset work lists (worklist): a batch equals one pair at a
time and the engine's single call; each content/style is encoded once; dataset draws are reproducible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mambast import MambaST, MambaSTConfig
from mambast.errors import UserError
from mambast.images import list_images, to_tensor
from mambast.inference import Controls, Stylizer
from mambast.inference import jobs as jobs_mod
from mambast.inference.jobs import RunOptions, run_jobs
from mambast.inference.worklist import Named, dataset_jobs, find_conflicts, named, pair_jobs, shard


def tiny_model() -> MambaST:
    torch.manual_seed(0)
    model = MambaST(MambaSTConfig.preset("tiny"))
    with torch.no_grad():  # outputs spread over [0, 1] instead of all below 0
        model.cnn_decoder[-1].weight.mul_(10)
        model.cnn_decoder[-1].bias.fill_(0.5)
    return model.eval()


def _img(path: Path, w: int, h: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8)).save(path)
    return path


@pytest.fixture
def folders(tmp_path):
    # three contents on one padded grid (40 x 56) with three different exact sizes, one on another grid
    for i, (w, h) in enumerate([(53, 37), (56, 40), (49, 33), (24, 24)]):
        _img(tmp_path / "c" / f"c{i}.png", w, h, seed=i)
    for i in range(3):
        _img(tmp_path / "s" / f"s{i}.png", 30 + 7 * i, 30, seed=10 + i)
    return tmp_path / "c", tmp_path / "s"


def _capture(monkeypatch) -> dict:
    """Record every output tensor the runner hands to its writer, by output name."""
    seen = {}
    real = jobs_mod._Writer.put

    def put(self, job, image):
        seen[job.output.as_posix()] = image.clone()
        real(self, job, image)

    monkeypatch.setattr(jobs_mod._Writer, "put", put)
    return seen


def _count_encodes(model) -> dict:
    counts = {"content": 0, "style": 0, "content_calls": 0}
    enc_c, enc_s = model.encode_content, model.encode_style

    def encode_content(x):
        counts["content"] += x.shape[0]
        counts["content_calls"] += 1
        return enc_c(x)

    def encode_style(x):
        counts["style"] += x.shape[0]
        return enc_s(x)

    model.encode_content, model.encode_style = encode_content, encode_style
    return counts


def test_batches_equal_one_pair_at_a_time_and_the_engine(folders, tmp_path, monkeypatch):
    croot, sroot = folders
    model = tiny_model()
    contents, styles = named(list_images(croot), croot), named(list_images(sroot), sroot)
    jobs = pair_jobs(contents, styles, seed=None, draw=iter(range(100, 200)).__next__)
    assert len({j.seed for j in jobs}) == len(jobs) == 12
    seen = _capture(monkeypatch)

    counts = _count_encodes(model)
    r1 = run_jobs(model, jobs, tmp_path / "one", RunOptions(size=None, batch_size=1, progress=False))
    one = dict(seen)
    assert counts["content"] == 4 and counts["style"] == 6  # 4 contents + 3 styles x 2 grids, not 12 + 12
    seen.clear()
    counts.update(content=0, style=0, content_calls=0)
    r8 = run_jobs(model, jobs, tmp_path / "eight", RunOptions(size=None, batch_size=8, workers=2, progress=False))
    assert counts["content"] == 4 and counts["style"] == 6
    assert counts["content_calls"] < 4  # contents of one size were encoded together
    assert not r1.failed and not r8.failed and len(r1.written) == len(r8.written) == 12
    assert one.keys() == seen.keys()
    worst = max((one[k] - seen[k]).abs().max().item() for k in one)
    assert worst <= 1e-5, worst
    assert one["c0_stylized_s0.png"].shape == (3, 37, 53)

    # the same numbers as the engine's single call with that job's seed
    engine = Stylizer(model, size=None)
    job = next(j for j in jobs if j.output.name == "c2_stylized_s1.png")
    c = to_tensor(engine.prepare_content(job.content))[None]
    tokens = engine.style_tokens(job.styles[0], engine.grid(c.shape[-1], c.shape[-2]))
    ref = engine.stylize_tensor(c, [tokens], Controls(seed=job.seed))[0]
    assert (ref - seen["c2_stylized_s1.png"]).abs().max().item() <= 1e-5
    # and the files hold those pixels
    png = np.asarray(Image.open(tmp_path / "eight" / "c2_stylized_s1.png"))
    assert np.array_equal(png, (ref.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())


def test_controls_and_colour_match_batch_like_single_calls(folders, tmp_path, monkeypatch):
    croot, sroot = folders
    model = tiny_model()
    contents, styles = named(list_images(croot), croot), named(list_images(sroot), sroot)
    controls = Controls(alpha=0.6, preserve_color="match", style_size=16)
    jobs = pair_jobs(contents, styles[:2], seed=5)
    seen = _capture(monkeypatch)
    run_jobs(model, jobs, tmp_path / "a", RunOptions(size=None, controls=controls, progress=False))
    one = dict(seen)
    run_jobs(model, jobs, tmp_path / "b", RunOptions(size=None, controls=controls, batch_size=3, progress=False))
    assert max((one[k] - seen[k]).abs().max().item() for k in one) <= 1e-5
    engine = Stylizer(model, size=None)
    ref = engine.stylize(jobs[0].content, jobs[0].styles[0], Controls(**{**controls.__dict__, "seed": 5}))
    assert np.array_equal(np.asarray(ref), np.asarray(Image.open(tmp_path / "b" / jobs[0].output)))


def test_dataset_draws_are_reproducible_per_content_and_distinct():
    contents = [Named(Path(f"/d/{n}"), Path(n)) for n in ("a/x.jpg", "a/y.jpg", "b/x.jpg", "z.png")]
    styles = [Named(Path(f"/s/{i}.jpg"), Path(f"{i}.jpg")) for i in range(10)]
    jobs = dataset_jobs(contents, styles, per_content=3, seed=7)
    assert len(jobs) == 12 and [j.index for j in jobs] == list(range(12))
    for i in range(0, 12, 3):
        assert len({j.styles for j in jobs[i:i + 3]}) == 3  # distinct styles per content
    # a content's draw and seeds do not depend on the other contents (nor on sharding)
    alone = dataset_jobs(contents[2:3], styles, per_content=3, seed=7)
    assert [(j.styles, j.seed, j.output) for j in alone] == [(j.styles, j.seed, j.output) for j in jobs[6:9]]
    assert dataset_jobs(contents, styles, per_content=3, seed=8) != jobs
    assert jobs[6].output.parent == Path("b") and jobs[6].output.name.startswith("x_stylized_")
    # K = 1 keeps the file name (extension from ext), sub-folders mirrored
    kept = dataset_jobs(contents, styles, seed=7, ext="jpg")
    assert [j.output.as_posix() for j in kept] == ["a/x.jpg", "a/y.jpg", "b/x.jpg", "z.jpg"]
    assert not find_conflicts(kept, Path("/out"), set())
    with pytest.raises(UserError, match="holds 10"):
        dataset_jobs(contents, styles, per_content=11)
    with pytest.raises(UserError, match="styles_per_content 1"):
        dataset_jobs(contents, styles, per_content=2, name="content")
    # shards are disjoint and cover everything, by index
    parts = [shard(jobs, r, 3) for r in range(3)]
    assert sorted(j.index for p in parts for j in p) == list(range(12))


def test_run_options_and_precision_are_validated():
    with pytest.raises(UserError, match="batch_size"):
        RunOptions(batch_size=0)
    with pytest.raises(UserError, match="ext"):
        RunOptions(ext="gif")
    with pytest.raises(UserError, match="precision"):
        Stylizer(tiny_model(), precision="fp64")


def test_bf16_autocast_is_close_to_fp32_and_the_scan_stays_float32(folders, monkeypatch):
    croot, sroot = folders
    model = tiny_model()
    dtypes = []
    from mambast.ops import scan_cpu

    real = scan_cpu.selective_scan_cpu_lowrank

    def spy(u, *args, **kwargs):
        dtypes.append(u.dtype)
        return real(u, *args, **kwargs)

    monkeypatch.setattr(scan_cpu, "selective_scan_cpu_lowrank", spy)
    c, s = croot / "c0.png", sroot / "s0.png"
    ref = Stylizer(model, size=None).stylize(c, s, Controls(seed=1))
    dtypes.clear()
    low = Stylizer(model, size=None, precision="bf16").stylize(c, s, Controls(seed=1))
    assert dtypes and set(dtypes) == {torch.float32}  # the native float32 scan ran under autocast
    diff = np.abs(np.asarray(ref, np.int16) - np.asarray(low, np.int16))
    assert 0 < diff.max() <= 16 and diff.mean() < 2  # bf16 changes the numbers, a little


def test_mask_and_style_weights_batch_like_single_calls(folders, tmp_path, monkeypatch):
    croot, sroot = folders
    model = tiny_model()
    contents, styles = named(list_images(croot), croot), named(list_images(sroot), sroot)
    mask = Image.fromarray(np.kron([[0, 255], [255, 0]], np.ones((8, 8))).astype(np.uint8))
    jobs = pair_jobs(contents, styles[:2], mix=True, seed=3)
    assert [j.output.name for j in jobs][0] == "c0_stylized_s0+s1.png" and len(jobs) == 4
    seen = _capture(monkeypatch)
    for name, controls in (("mask", Controls(mask=mask)), ("mix", Controls(style_weights=(0.3, 0.7)))):
        run_jobs(model, jobs, tmp_path / f"{name}1", RunOptions(size=None, controls=controls, progress=False))
        one = dict(seen)
        seen.clear()
        run_jobs(model, jobs, tmp_path / f"{name}4", RunOptions(size=None, controls=controls, batch_size=4,
                                                                progress=False))
        assert max((one[k] - seen[k]).abs().max().item() for k in one) <= 1e-5
        ref = Stylizer(model, size=None).stylize(jobs[1].content, list(jobs[1].styles),
                                                 Controls(**{**controls.__dict__, "seed": 3}))
        got = np.asarray(Image.open(tmp_path / f"{name}4" / jobs[1].output), np.int16)
        assert np.abs(got - np.asarray(ref, np.int16)).max() <= 1  # rounding of values 1e-6 apart may flip
        seen.clear()


def test_stylize_dataset_manifest_and_resume_in_process(tmp_path, capsys):
    import json

    import mambast
    from mambast.cli import main

    ckpt = mambast.save_native(tiny_model(), tmp_path / "tiny.safetensors")
    for i in range(4):
        _img(tmp_path / "c" / f"k{i % 2}" / f"im{i}.png", 16, 16, seed=i)
    for i in range(3):
        _img(tmp_path / "s" / f"art{i}.png", 16, 16, seed=10 + i)
    out = tmp_path / "out"
    args = ["stylize-dataset", "--content", str(tmp_path / "c"), "--style", str(tmp_path / "s"), "--output",
            str(out), "--checkpoint", str(ckpt), "--size", "0", "--quiet", "--manifest", "runs.jsonl",
            "--styles-per-content", "2", "--batch-size", "3"]
    assert main(args) == 0
    rows = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert [r["content"] for r in rows] == ["k0/im0.png"] * 2 + ["k0/im2.png"] * 2 + ["k1/im1.png"] * 2 + [
        "k1/im3.png"] * 2
    assert all((out / r["output"]).is_file() and r["output"].startswith(r["content"][:3]) for r in rows)
    first = {r["output"]: np.asarray(Image.open(out / r["output"])) for r in rows}
    gone = [rows[1]["output"], rows[6]["output"]]
    for name in gone:
        (out / name).unlink()
    (out / "k0" / f".{Path(gone[0]).name}.999999999.tmp").write_bytes(b"\x89PNG half")  # a killed run's temp
    capsys.readouterr()
    assert main([*args, "--skip-existing"]) == 0
    summary = capsys.readouterr().out
    assert "wrote 2 images" in summary and "6 already there (skipped)" in summary
    assert all(np.array_equal(first[n], np.asarray(Image.open(out / n))) for n in first)
    assert [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()] == rows
    assert not list(out.rglob(".*"))  # temp files of the killed run removed
    assert main([*args[:-2], "--styles-per-content", "4"]) == 2
    assert "holds 3 images" in capsys.readouterr().err


def test_stylize_pairs_mixes_styles_and_masks_like_the_engine(folders, tmp_path):
    """stylize_pairs(controls=Controls(style_weights=...) or Controls(mask=...)) made one job per style, so
    every pair failed ("2 style_weights for 1 styles", "a mask needs at least two styles"): one output per
    content now mixes all the styles, with the engine's pixels."""
    from mambast.inference import stylize_pairs

    croot, sroot = folders
    model = tiny_model()
    contents, styles = list_images(croot)[:2], list_images(sroot)[:2]
    mask = Image.fromarray(np.kron([[0, 255], [255, 0]], np.ones((8, 8))).astype(np.uint8))
    engine = Stylizer(model, size=None)
    for name, controls, tag in (("mix", Controls(style_weights=(0.3, 0.7), seed=3), "@0.3-0.7"),
                                ("mask", Controls(mask=mask, seed=3), "@mask-")):
        report = stylize_pairs(model, contents, styles, tmp_path / name, size=None, progress=False,
                               controls=controls, batch_size=2)
        assert not report.failed, report.failed
        assert [p.name.startswith(f"{c.stem}_stylized_s0+s1{tag}") for p, c in zip(report.written, contents,
                                                                                     strict=True)] == [True] * 2
        for path, content in zip(report.written, contents, strict=True):
            ref = np.asarray(engine.stylize(content, styles, controls), np.int16)
            assert np.abs(np.asarray(Image.open(path), np.int16) - ref).max() <= 1


def test_stylize_pairs_keeps_seed_and_shuffle_given_with_controls(folders, tmp_path):
    """`seed` and `shuffle` given beside `controls` were dropped (each output got a drawn seed)."""
    from mambast.inference import stylize_pairs

    croot, sroot = folders
    model = tiny_model()
    content, style = list_images(croot)[0], list_images(sroot)[0]
    engine = Stylizer(model, size=None)
    for name, kwargs, ref_controls in (("seed", {"seed": 5}, Controls(alpha=0.8, seed=5)),
                                       ("off", {"shuffle": False}, Controls(alpha=0.8, shuffle=False))):
        report = stylize_pairs(model, [content], [style], tmp_path / name, size=None, progress=False,
                               controls=Controls(alpha=0.8), **kwargs)
        ref = engine.stylize(content, style, ref_controls)
        assert np.array_equal(np.asarray(Image.open(report.written[0])), np.asarray(ref))
    drawn = engine.stylize(content, style, Controls(alpha=0.8, seed=6))
    assert not np.array_equal(np.asarray(drawn), np.asarray(ref))  # the seed matters: the test can fail


def test_stylize_pairs_takes_str_and_relative_paths(folders, tmp_path, monkeypatch):
    """Plain str paths (AttributeError: no .resolve) and relative paths of several files ("not below root")
    failed; they name the same outputs as absolute Paths."""
    from mambast.inference import stylize_pairs

    croot, sroot = folders
    model = tiny_model()
    contents, styles = list_images(croot)[:2], list_images(sroot)[:1]
    ref = stylize_pairs(model, contents, styles, tmp_path / "ref", size=None, progress=False, seed=1)
    monkeypatch.chdir(croot.parent)
    rel = [str(p.relative_to(croot.parent)) for p in contents]
    got = stylize_pairs(model, rel, [str(p) for p in styles], tmp_path / "rel", size=None, progress=False, seed=1)
    assert not got.failed and [p.name for p in got.written] == [p.name for p in ref.written] and len(ref.written) == 2
    for a, b in zip(got.written, ref.written, strict=True):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_stylize_pairs_refuses_a_style_size_over_the_limit_before_any_work(folders, tmp_path):
    """Controls(style_size=60000) through stylize_pairs failed every pair instead (the CLI refused it)."""
    from mambast.errors import FieldError
    from mambast.inference import stylize_pairs

    croot, sroot = folders
    with pytest.raises(FieldError, match="^style_size 60000 px: planned size") as e:
        stylize_pairs(tiny_model(), list_images(croot)[:1], list_images(sroot)[:1], tmp_path / "out", size=None,
                      progress=False, controls=Controls(style_size=60000))
    assert e.value.fields == ("style_size", "max_pixels") and not (tmp_path / "out").exists()


def test_folder_settings_are_field_errors_shown_as_flags(folders, tmp_path, capsys):
    """Library checks name fields; the CLI shows its flags (one line, exit 2, before any output)."""
    from mambast.cli import main
    from mambast.errors import FieldError

    croot, sroot = folders
    with pytest.raises(FieldError, match=r"^batch_size must be a whole number >= 1, got 0$"):
        RunOptions(batch_size=0)
    for flags, message in ((["--batch-size", "0"], "--batch-size must be a whole number >= 1, got 0"),
                           (["--jpeg-quality", "101"], "--jpeg-quality must be a whole number in [1, 100], got 101"),
                           (["--max-pixels", "-1"], "--max-pixels must be a whole number >= 0, got -1"),
                           (["--style-weights", "1", "2"], "2 --style-weights for 3 styles")):
        code = main(["stylize", "--content", str(croot), "--style", str(sroot), "--output", str(tmp_path / "o"),
                     "--checkpoint", str(tmp_path / "never-read.safetensors"), "--quiet", *flags])
        assert (code, capsys.readouterr().err) == (2, f"mambast: error: stylize: {message}\n")
    assert not (tmp_path / "o").exists()
