"""`mambast eval` against what users feed it (issues 16 and 18): options, sizes, bad files, empty weights, alpha."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from test_metrics import write_art_inception, write_images, write_lpips, write_vgg

from mambast.cli import main
from mambast.metrics import EvalWeights, evaluate
from mambast.nets.inception import InceptionWeightsError, load_inception
from mambast.nets.lpips_net import LPIPSWeightsError, load_lpips


@pytest.fixture(scope="module")
def wdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("w")
    write_art_inception(d / "art_inception.pth")
    write_lpips(d)
    write_vgg(d / "vgg19.pth", "vgg19")
    return d


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust")
    write_images(root / "content", {"c1": (80, 80), "c2": (80, 80)}, seed=1)
    write_images(root / "style", {"s1": (80, 80), "s2": (90, 80)}, seed=2)
    write_images(root / "stylized", {f"{c}_stylized_{s}": (80, 80) for c in ("c1", "c2") for s in ("s1", "s2")}, seed=3)
    return root


def _args(data, out, wdir, *extra, stylized=None):
    return ["eval", "--stylized", str(stylized or data / "stylized"), "--content-dir", str(data / "content"),
            "--style-dir", str(data / "style"), "--out", str(out), "--quiet", "--inception",
            str(wdir / "art_inception.pth"), "--lpips-alexnet", str(wdir / "alexnet_torchvision.pth"),
            "--lpips-heads", str(wdir / "alex.pth"), "--vgg19", str(wdir / "vgg19.pth"),
            "--weights-dir", str(wdir / "none"), *extra]  # fmt: skip


@pytest.mark.parametrize(
    "flag,value",
    [("--cfsd-chunk", "-4"), ("--cfsd-chunk", "0"), ("--size", "0"), ("--batch-size", "0"),
     ("--contact-cell", "0"), ("--fid-inf-points", "1"), ("--seed", "-1")],
)  # fmt: skip
def test_numeric_options_refused_up_front(data, wdir, tmp_path, capsys, flag, value):
    out = tmp_path / "out"
    assert main(_args(data, out, wdir, flag, value)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and flag in err and value in err
    assert not out.exists()  # nothing done, nothing written


def test_library_options_checked_with_argument_names(data, tmp_path):
    from mambast.errors import UserError

    with pytest.raises(UserError, match="cfsd_chunk must be an integer >= 1, got -4"):
        evaluate(data / "stylized", data / "content", data / "style", tmp_path, cfsd_chunk=-4, progress=False)


def test_size_below_inception_minimum_skips_fid_with_reason(data, wdir, tmp_path, capsys):
    assert main(_args(data, tmp_path, wdir, "--size", "64")) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert "fid" not in report["metrics"] and "lpips" in report["metrics"] and "cfsd" in report["metrics"]
    assert "size 64 is below the 75 px" in report["skipped"]["fid"]
    assert report["skipped"]["artfid"].startswith("needs fid")
    assert "fid           skipped: size 64" in capsys.readouterr().out


def test_truncated_stylized_file_fails_its_pair_only(data, wdir, tmp_path, capsys):
    stylized = tmp_path / "stylized"
    stylized.mkdir()
    for p in (data / "stylized").iterdir():
        (stylized / p.name).write_bytes(p.read_bytes())
    bad = stylized / "c2_stylized_s1.png"
    bad.write_bytes(bad.read_bytes()[:300])  # truncated PNG
    out = tmp_path / "out"
    assert main(_args(data, out, wdir, stylized=stylized)) == 1  # partial
    printed = capsys.readouterr().out
    assert "scored 3 of 4 pairs" in printed and "1 pairs failed" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["pairs"] == 3 and report["counts"]["failed"] == 1
    assert report["failed"][0][0] == "c2_stylized_s1.png" and "truncated" in report["failed"][0][1]
    assert {"fid", "lpips", "cfsd", "artfid"} <= set(report["metrics"])
    assert "c2_stylized_s1.png" not in {r["stylized"] for r in report["per_pair"]}
    assert (out / "contact_sheet.png").is_file() and "Failed pairs" in (out / "report.md").read_text()
    # the metrics are those of the 3 good pairs: the same as scoring a folder without the bad file
    bad.unlink()
    clean = evaluate(stylized, data / "content", data / "style", tmp_path / "clean", progress=False,
                     weights=EvalWeights(inception=wdir / "art_inception.pth",
                                         lpips_alexnet=wdir / "alexnet_torchvision.pth",
                                         lpips_heads=wdir / "alex.pth", vgg19=wdir / "vgg19.pth",
                                         folder=wdir / "none"))  # fmt: skip
    assert report["metrics"] == pytest.approx(clean["metrics"], rel=1e-9)


def test_truncated_content_fails_all_its_pairs(data, wdir, tmp_path):
    content = tmp_path / "content"
    content.mkdir()
    (content / "c1.png").write_bytes((data / "content" / "c1.png").read_bytes())
    (content / "c2.png").write_bytes((data / "content" / "c2.png").read_bytes()[:200])
    args = _args(data, tmp_path / "out", wdir)
    args[args.index("--content-dir") + 1] = str(content)
    assert main(args) == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert sorted(f[0] for f in report["failed"]) == ["c2_stylized_s1.png", "c2_stylized_s2.png"]
    assert report["counts"]["pairs"] == 2 and report["counts"]["contents"] == 1


def test_checkpoint_mode_truncated_style_is_listed_and_partial(wdir, tmp_path):
    from mambast import MambaST, MambaSTConfig, save_native

    torch.manual_seed(0)
    ckpt = save_native(MambaST(MambaSTConfig.preset("tiny")), tmp_path / "tiny.safetensors")
    write_images(tmp_path / "content", {"room": (72, 64)}, seed=4)
    write_images(tmp_path / "style", {"wave": (64, 64), "stars": (64, 80)}, seed=5)
    (tmp_path / "style" / "stars.png").write_bytes((tmp_path / "style" / "stars.png").read_bytes()[:150])
    args = ["eval", "--checkpoint", str(ckpt), "--content-dir", str(tmp_path / "content"),
            "--style-dir", str(tmp_path / "style"), "--out", str(tmp_path / "out"), "--size", "64", "--quiet",
            "--lpips-alexnet", str(wdir / "alexnet_torchvision.pth"), "--lpips-heads", str(wdir / "alex.pth"),
            "--weights-dir", str(tmp_path / "none")]  # fmt: skip
    assert main(args) == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["stylize"]["failed"][0][0] == "room_stylized_stars.jpg"
    assert [f[0] for f in report["failed"]] == ["room_stylized_stars.jpg"]
    assert report["counts"]["pairs"] == 1 and "lpips" in report["metrics"]


@pytest.mark.parametrize("flag", ["--inception", "--lpips-alexnet", "--lpips-heads", "--vgg19", "--vgg",
                                  "--fid-inception"])  # fmt: skip
def test_empty_weight_file_is_one_line(data, wdir, tmp_path, capsys, flag):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    args = _args(data, tmp_path / "out", wdir)
    if flag in args:
        args[args.index(flag) + 1] = str(empty)
    else:
        args += [flag, str(empty)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "empty file" in err and flag in err


def test_empty_weight_file_in_weights_folder_and_loaders(tmp_path, capsys):
    (tmp_path / "alex.pth").write_bytes(b"")
    from mambast.errors import UserError
    from mambast.metrics.weights import resolve

    with pytest.raises(UserError, match="empty file"):
        resolve("lpips_heads", None, tmp_path)
    with pytest.raises(InceptionWeightsError, match="empty file"):
        load_inception(tmp_path / "alex.pth")
    with pytest.raises(LPIPSWeightsError, match="empty file"):
        load_lpips(tmp_path / "alex.pth", tmp_path / "alex.pth")


def test_rgba_content_scores_as_its_rgb_composite(wdir, tmp_path):
    """Issue 16 item 4: eval reads through mambast.images, so RGBA = its composite on white (as stylize)."""
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, size=(80, 80, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(np.arange(80)[None, :] < 40, 0, 255)  # left half fully transparent
    (tmp_path / "content").mkdir()
    (tmp_path / "style").mkdir()
    (tmp_path / "stylized").mkdir()
    Image.fromarray(rgba, "RGBA").save(tmp_path / "content" / "c.png")
    composite = Image.alpha_composite(Image.new("RGBA", (80, 80), (255, 255, 255, 255)),
                                      Image.fromarray(rgba, "RGBA")).convert("RGB")  # fmt: skip
    composite.save(tmp_path / "stylized" / "c_stylized_s.png")
    write_images(tmp_path / "style", {"s": (80, 80)})
    w = EvalWeights(lpips_alexnet=wdir / "alexnet_torchvision.pth", lpips_heads=wdir / "alex.pth",
                    vgg19=wdir / "vgg19.pth", folder=tmp_path / "none")  # fmt: skip
    report = evaluate(tmp_path / "stylized", tmp_path / "content", tmp_path / "style", tmp_path / "out",
                      weights=w, size=64, progress=False)  # fmt: skip
    row = report["per_pair"][0]
    assert row["lpips"] == 0.0 and row["lpips_gray"] == 0.0 and row["cfsd"] == 0.0


def test_metrics_do_not_import_training():
    code = "import sys, mambast.metrics, mambast.cli.eval; print([m for m in sys.modules if 'mambast.train' in m])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
