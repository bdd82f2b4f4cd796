"""Protocol runner and `mambast eval`: reports, skipped metrics, CLI errors, stylize + score, attention baseline."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from test_metrics import write_art_inception, write_images, write_lpips, write_vgg

from mambast.cli import main
from mambast.metrics import EvalWeights, evaluate


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights")
    write_art_inception(d / "art_inception.pth")
    backbone, heads = write_lpips(d)
    write_vgg(d / "vgg19.pth", "vgg19")
    write_vgg(d / "vgg_normalised.pth", "vgg_normalised")
    return EvalWeights(inception=d / "art_inception.pth", lpips_alexnet=backbone, lpips_heads=heads,
                       vgg19=d / "vgg19.pth", vgg=d / "vgg_normalised.pth", folder=d / "empty")  # fmt: skip


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    sizes = {"c1": (76, 76), "c2": (84, 76)}  # mixed sizes (Inception needs >= 75 px)
    write_images(root / "content", sizes, seed=1)
    write_images(root / "style", {"s1": (76, 76), "s2": (80, 76)}, seed=2)
    out = {f"{c}_stylized_{s}": sizes[c] for c in sizes for s in ("s1", "s2") if (c, s) != ("c2", "s2")}
    write_images(root / "stylized", {**out, "notes": (76, 76)}, seed=3)
    return root


def test_evaluate_native_all_metrics(folders, weights, tmp_path):
    no_vgg = EvalWeights(**{**weights.__dict__, "vgg": None})
    report = evaluate(folders / "stylized", folders / "content", folders / "style", tmp_path, weights=no_vgg,
                      mode="native", progress=False)  # fmt: skip
    m = report["metrics"]
    assert set(m) == {"artfid", "fid", "lpips", "lpips_gray", "cfsd"}
    assert set(report["skipped"]) == {"content_loss", "style_loss", "fid_imagenet"}
    assert "--vgg PATH" in report["skipped"]["content_loss"]
    assert m["artfid"] == pytest.approx((1 + m["lpips"]) * (1 + m["fid"]))
    assert report["counts"] == {"pairs": 3, "found": 3, "contents": 2, "styles": 2, "unmatched": 1, "missing": 1,
                                "failed": 0}  # fmt: skip
    assert report["fid_style_set"] == "unique" and report["protocol"].startswith("native")
    assert report["missing"] == ["c2_stylized_s2"] and report["unmatched"][0].endswith("notes.png")
    rows = {r["stylized"]: r for r in report["per_pair"]}
    assert m["lpips"] == pytest.approx(np.mean([r["lpips"] for r in rows.values()]))
    assert all(r["lpips"] > 0 and r["cfsd"] > 0 for r in rows.values())
    assert set(report["weights"]) == {"art_inception", "lpips_alexnet", "lpips_heads", "vgg19"}
    assert all(len(w["sha256"]) == 64 for w in report["weights"].values())
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["metrics"] == pytest.approx(m)
    md = (tmp_path / "report.md").read_text()
    assert "| artfid |" in md and "notes.png" in md
    sheet = Image.open(tmp_path / "contact_sheet.png")
    assert sheet.size == (4 + 132 * 3, 4 + 132 * 3)  # 1 + 2 style columns, 1 + 2 content rows


def test_identical_pair_scores_zero_paper_mode(folders, weights, tmp_path):
    """stylized == content: LPIPS, CFSD and the content loss are 0 for that pair (paper mode, 32 px)."""
    same = tmp_path / "same"
    same.mkdir()
    shutil.copy(folders / "content" / "c1.png", same / "c1_stylized_s1.png")
    shutil.copy(folders / "stylized" / "c2_stylized_s1.png", same / "c2_stylized_s1.png")
    no_inception = EvalWeights(**{**weights.__dict__, "inception": None})
    rep2 = evaluate(same, folders / "content", folders / "style", tmp_path / "r2", weights=no_inception,
                    mode="paper", size=32, progress=False)  # fmt: skip
    assert set(rep2["metrics"]) == {"lpips", "lpips_gray", "cfsd", "content_loss", "style_loss"}
    row = next(r for r in rep2["per_pair"] if r["content"] == "c1")
    assert row["lpips"] == 0.0 and row["lpips_gray"] == 0.0 and row["cfsd"] == 0.0
    assert row["content_loss"] == pytest.approx(0.0, abs=1e-6)


def test_cli_scores_stylized_folder_and_reports_skipped(folders, weights, tmp_path, capsys):
    args = ["eval", "--stylized", str(folders / "stylized"), "--content-dir", str(folders / "content"),
            "--style-dir", str(folders / "style"), "--out", str(tmp_path), "--size", "48", "--quiet",
            "--lpips-alexnet", str(weights.lpips_alexnet), "--lpips-heads", str(weights.lpips_heads),
            "--weights-dir", str(tmp_path / "no-weights")]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["metrics"]) == {"lpips", "lpips_gray"} and report["mode"] == "paper"
    assert "--inception" in report["skipped"]["fid"] and "--vgg19" in report["skipped"]["cfsd"]
    assert report["skipped"]["artfid"].startswith("needs fid")
    assert "fid           skipped: no art_inception.pth" in out and "lpips" in out


def test_cli_errors_are_one_line(folders, tmp_path, capsys):
    base = ["eval", "--stylized", str(folders / "stylized"), "--content-dir", str(folders / "content"),
            "--style-dir", str(folders / "style"), "--out", str(tmp_path)]  # fmt: skip
    assert main([*base, "--inception", str(tmp_path / "missing.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--inception" in err and "not found" in err
    assert main([*base[:2], str(tmp_path / "nothing"), *base[3:]]) == 2
    assert "not a folder" in capsys.readouterr().err
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"junk")
    assert main([*base, "--inception", str(bad)]) == 2
    assert "cannot read Inception weights" in capsys.readouterr().err


def test_cli_checkpoint_protocol_stylizes_and_scores(tmp_path, weights, capsys):
    from mambast import MambaST, MambaSTConfig, save_native

    torch.manual_seed(0)
    ckpt = save_native(MambaST(MambaSTConfig.preset("tiny")), tmp_path / "tiny.safetensors")
    write_images(tmp_path / "content", {"room": (72, 64), "cat": (64, 64)}, seed=4)
    write_images(tmp_path / "style", {"wave": (64, 64), "stars": (64, 80)}, seed=5)
    args = ["eval", "--checkpoint", str(ckpt), "--content-dir", str(tmp_path / "content"),
            "--style-dir", str(tmp_path / "style"), "--out", str(tmp_path / "out"), "--size", "64", "--quiet",
            "--lpips-alexnet", str(weights.lpips_alexnet), "--lpips-heads", str(weights.lpips_heads),
            "--weights-dir", str(tmp_path / "none")]  # fmt: skip
    assert main(args) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    names = sorted(p.name for p in (tmp_path / "out" / "stylized").iterdir())
    assert names == [f"{c}_stylized_{s}.jpg" for c in ("cat", "room") for s in ("stars", "wave")]  # paper: JPEG
    assert all(Image.open(tmp_path / "out" / "stylized" / n).format == "JPEG" for n in names)
    assert all(Image.open(tmp_path / "out" / "stylized" / n).size == (64, 64) for n in names)  # resize + crop
    probe = tmp_path / "q75.jpg"  # quality 75 (torchvision save_image's PIL default): same quantisation tables
    Image.new("RGB", (16, 16)).save(probe, quality=75)
    assert Image.open(tmp_path / "out" / "stylized" / names[0]).quantization == Image.open(probe).quantization
    assert report["counts"]["pairs"] == 4 and report["stylize"]["written"] == 4
    assert set(report["metrics"]) == {"lpips", "lpips_gray"} and report["checkpoint"] == str(ckpt)
    assert (tmp_path / "out" / "contact_sheet.png").is_file()


def test_attention_baseline_plain_matches_sdpa():
    from mambast.baselines import AttentionST, AttentionSTConfig

    cfg = dict(d_model=32, heads=4, ffn=64, cnn_channels=(16, 8, 8))
    torch.manual_seed(0)
    plain = AttentionST(AttentionSTConfig(**cfg, attention="plain")).eval()
    sdpa = AttentionST(AttentionSTConfig(**cfg, attention="sdpa")).eval()
    sdpa.load_state_dict(plain.state_dict())
    x, y = torch.rand(1, 3, 48, 64), torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        a, b = plain(x, y), sdpa(x, y)
    assert a.shape == (1, 3, 48, 64)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_paper_mode_non_square_content_is_compared_on_the_protocol_crop(weights, tmp_path):
    """A 120 x 96 content stylized by the protocol is a 96 x 96 centre crop: paper mode compares the stylized
    image with that crop (StyleID's script would stop on the shape mismatch), so an identical crop scores 0."""
    from mambast.images import load_image
    from mambast.metrics.preprocess import protocol_input

    write_images(tmp_path / "content", {"wide": (120, 96)}, seed=8)
    write_images(tmp_path / "style", {"s": (96, 96)}, seed=9)
    (tmp_path / "stylized").mkdir()
    crop = protocol_input(load_image(tmp_path / "content" / "wide.png"), 96)
    assert crop.size == (96, 96)
    crop.save(tmp_path / "stylized" / "wide_stylized_s.png")
    w = EvalWeights(**{**weights.__dict__, "inception": None, "vgg": None})
    report = evaluate(tmp_path / "stylized", tmp_path / "content", tmp_path / "style", tmp_path / "out",
                      weights=w, size=96, progress=False)  # fmt: skip
    row = report["per_pair"][0]
    assert row["lpips"] == 0.0 and row["lpips_gray"] == 0.0 and row["cfsd"] == 0.0
