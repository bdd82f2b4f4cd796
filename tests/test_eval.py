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
    assert "give its path as vgg " in report["skipped"]["content_loss"]  # the field; the CLI shows --vgg
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
    assert "as inception " in report["skipped"]["fid"] and "as vgg19 " in report["skipped"]["cfsd"]
    assert report["skipped"]["artfid"].startswith("needs fid")
    assert "fid_inf" not in report["skipped"]  # not asked for (no --fid-inf): not listed as skipped
    assert "fid           skipped: no art_inception.pth: give its path as --inception or" in out and "lpips" in out


def test_cli_errors_are_one_line(folders, tmp_path, capsys):
    base = ["eval", "--stylized", str(folders / "stylized"), "--content-dir", str(folders / "content"),
            "--style-dir", str(folders / "style"), "--out", str(tmp_path)]  # fmt: skip
    assert main([*base, "--inception", str(tmp_path / "missing.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--inception" in err and "not found" in err
    assert main([*base[:2], str(tmp_path / "nothing"), *base[3:]]) == 2
    assert "--stylized " in (err := capsys.readouterr().err) and "no such folder" in err  # the field, as a flag
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


# ----------------------------------------------------------------------------- the protocol's pieces (issue 24)


@pytest.fixture(scope="module")
def tiny_model():
    from mambast import MambaST, MambaSTConfig

    torch.manual_seed(0)
    return MambaST(MambaSTConfig.preset("tiny")).eval()


@pytest.mark.parametrize("mode", ["paper", "native"])
def test_stylize_step_encodes_each_input_once_and_equals_single_calls(tiny_model, tmp_path, monkeypatch, mode):
    """The protocol's stylize step encodes each content once and each style once per content grid, and every
    image equals one `Stylizer.stylize(content, style, Controls(shuffle, seed))` call (it was N x M calls,
    each encoding its content again)."""
    from mambast.images import load_image
    from mambast.inference import Controls, Stylizer
    from mambast.metrics import EvalOptions, StylizeOptions
    from mambast.metrics.preprocess import protocol_input
    from mambast.metrics.stylize import stylize_all

    contents = write_images(tmp_path / "content", {"a": (72, 64), "b": (64, 64), "c": (64, 64)}, seed=4)
    styles = write_images(tmp_path / "style", {"s": (64, 64), "t": (64, 80)}, seed=5)
    calls = {"encode_content": 0, "encode_styles": 0}
    for name in calls:
        original = getattr(Stylizer, name)

        def counted(self, *a, _name=name, _original=original, **k):
            calls[_name] += 1
            return _original(self, *a, **k)

        monkeypatch.setattr(Stylizer, name, counted)
    options = EvalOptions(mode=mode, size=64, progress=False)
    written, failed = stylize_all(tiny_model, contents, styles, tmp_path / "out", options,
                                  StylizeOptions(seed=3, stylized_format="png"))  # fmt: skip
    assert failed == [] and len(written) == 6
    # paper: one grid (64 x 64 crops); native: a's grid (72 x 64), then b and c share the other one
    assert calls == {"encode_content": 3, "encode_styles": 2 if mode == "paper" else 4}
    monkeypatch.undo()
    single = Stylizer(tiny_model, size=None if mode == "paper" else 64)
    prep = (lambda p: protocol_input(load_image(p), 64)) if mode == "paper" else load_image
    for c in contents:
        for s in styles:
            want = single.stylize(prep(c), prep(s), Controls(shuffle=True, seed=3))
            got = Image.open(tmp_path / "out" / f"{c.stem}_stylized_{s.stem}.png")
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_options_name_their_fields():
    from mambast.errors import FieldError
    from mambast.metrics import EvalOptions, StylizeOptions

    for kind, kw, field in ((EvalOptions, {"cfsd_chunk": 0}, "cfsd_chunk"), (EvalOptions, {"mode": "x"}, "mode"),
                            (EvalOptions, {"contact_cell": 7}, "contact_cell"),
                            (EvalOptions, {"fid_style_set": "all"}, "fid_style_set"),
                            (EvalOptions, {"size": True}, "size"), (EvalOptions, {"size": 5}, "size"),
                            (StylizeOptions, {"seed": -1}, "seed"),
                            (StylizeOptions, {"stylized_format": "tif"}, "stylized_format")):  # fmt: skip
        with pytest.raises(FieldError, match=rf"^{field} must be") as e:
            kind(**kw)
        assert e.value.fields == (field,)
    assert EvalOptions(size=np.int64(96)).size == 96 and type(EvalOptions(size=np.int64(96)).size) is int
    assert EvalOptions().style_set == "pairs" and EvalOptions(mode="native").style_set == "unique"
    assert StylizeOptions().format_for("paper") == "jpg" and StylizeOptions().format_for("native") == "png"


def test_score_writes_nothing_and_leaves_networks_as_they_were(folders, weights, tmp_path):
    """score -> Report from the images alone; write_report writes the three files; evaluate = the two."""
    from mambast.metrics import EvalOptions, load_networks, pair_folders, score, write_report

    nets = load_networks(EvalWeights(**{**weights.__dict__, "inception": None, "vgg": None}))
    keys = set(nets.nets)
    pairing = pair_folders(folders / "stylized", folders / "content", folders / "style")
    before = sorted(p.name for p in tmp_path.iterdir())
    small = score(pairing, nets, EvalOptions(size=24, progress=False))  # below LPIPS' 31 px: skipped there
    assert "size 24 is below the 31 px" in small.skipped["lpips"] and set(nets.nets) == keys  # not mutated
    report = score(pairing, nets, EvalOptions(mode="native", progress=False))
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    assert report.counts["pairs"] == 3 and set(report.metrics) == {"lpips", "lpips_gray", "cfsd"}
    write_report(report.as_dict(stylized_dir="x"), pairing.pairs, tmp_path / "r", contact_cell=16)
    assert {p.name for p in (tmp_path / "r").iterdir()} == {"report.json", "report.md", "contact_sheet.png"}
    via = evaluate(folders / "stylized", folders / "content", folders / "style", tmp_path / "e",
                   weights=EvalWeights(**{**weights.__dict__, "inception": None, "vgg": None}),
                   options=EvalOptions(mode="native", progress=False))  # fmt: skip
    assert via["metrics"] == report.metrics and via["per_pair"] == report.per_pair
    with pytest.raises(TypeError, match="unexpected keyword"):
        evaluate(folders / "stylized", folders / "content", folders / "style", tmp_path / "f", sizes=3)
