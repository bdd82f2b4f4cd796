"""Metrics: FID (closed form, rank-deficient), LPIPS, CFSD, ArtFID, paper losses, pairing, weights, layouts.

Networks use random weights saved in the real published layouts (art-fid Inception, torchvision AlexNet +
lpips v0.1 heads, torchvision VGG-19, vgg_normalised).
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from mambast.errors import FieldError, UserError
from mambast.images import load_image
from mambast.metrics import (
    artfid,
    cfsd_from_features,
    content_loss,
    fid_from_features,
    frechet_distance,
    gaussian_stats,
    inception_features,
    mean_std,
    pair_by_name,
    style_loss,
)
from mambast.metrics.preprocess import apply_mode, for_metric
from mambast.metrics.weights import KNOWN, fetch, resolve
from mambast.nets.inception import InceptionV3, InceptionWeightsError, load_inception
from mambast.nets.lpips_net import CHANNELS, CONV_INDEX, LPIPSAlex, LPIPSWeightsError, load_lpips
from mambast.nets.vgg import VGGEncoder

# ----------------------------------------------------------------------------- weight files in real layouts


def write_art_inception(path: Path, heads=(27, 129)) -> InceptionV3:
    """Random Inception in the art-fid layout (fc1, fc2, AuxLogits1, AuxLogits2 + BN running stats)."""
    torch.manual_seed(1)
    names = {"AuxLogits1": heads[0], "AuxLogits2": heads[1], "fc1": heads[0], "fc2": heads[1]}
    model = InceptionV3("art", heads=names)
    for m in model.modules():  # non-trivial BN statistics so loading them matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torch.save(model.state_dict(), path)
    return model


def write_lpips(dir_: Path, layout: str = "torchvision") -> tuple[Path, Path]:
    """Random AlexNet backbone (torchvision or lpips `net.sliceK` keys) + non-negative v0.1 heads."""
    torch.manual_seed(2)
    net = LPIPSAlex()
    sd = {}
    for k, idx in enumerate(CONV_INDEX):
        for name in ("weight", "bias"):
            value = getattr(net.features[idx], name).detach().clone()
            sd[f"features.{idx}.{name}" if layout == "torchvision" else f"net.slice{k + 1}.{idx}.{name}"] = value
    if layout == "torchvision":
        sd["classifier.1.weight"] = torch.zeros(4096, 9216)[:8]  # classifier keys are ignored
    heads = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(CHANNELS)}
    backbone, head_file = dir_ / f"alexnet_{layout}.pth", dir_ / "alex.pth"
    torch.save(sd, backbone)
    torch.save(heads, head_file)
    return backbone, head_file


def write_vgg(path: Path, layout: str) -> None:
    """Random VGG in its file layout: torchvision vgg19 (`features.N.*`) or vgg_normalised (`N.*`)."""
    torch.manual_seed(3)
    prefix = "features." if layout == "vgg19" else ""
    sd = VGGEncoder(layout).features.state_dict()
    torch.save({prefix + k: v for k, v in sd.items()}, path)


def write_images(folder: Path, names_sizes: dict[str, tuple[int, int]], seed: int = 0) -> list[Path]:
    """Smooth random RGB images (PNG) of the given (w, h) sizes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for name, (w, h) in names_sizes.items():
        small = rng.integers(0, 256, size=(max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((w, h), Image.BILINEAR)
        paths.append(folder / f"{name}.png")
        img.save(paths[-1])
    return paths


# ----------------------------------------------------------------------------- FID


def test_fid_identical_sets_is_zero():
    a = np.random.default_rng(0).normal(size=(50, 16))
    assert fid_from_features(a, a) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(*gaussian_stats(a), *gaussian_stats(a)) == pytest.approx(0.0, abs=1e-8)


def _commuting_gaussians(d: int = 4):
    rng = np.random.default_rng(1)
    rot, _ = np.linalg.qr(rng.normal(size=(d, d)))
    a, b = rng.uniform(0.5, 3.0, d), rng.uniform(0.2, 2.0, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rot @ np.diag(a) @ rot.T, rot @ np.diag(b) @ rot.T
    closed = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    return mu1, s1, mu2, s2, closed


def test_frechet_distance_matches_closed_form_and_scipy():
    mu1, s1, mu2, s2, closed = _commuting_gaussians()
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(closed, rel=1e-10)
    rng = np.random.default_rng(5)  # non-commuting full-rank: compare with scipy's sqrtm formula
    x, y = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    c1, c2 = x @ x.T + np.eye(6), y @ y.T + 0.5 * np.eye(6)
    ref = np.trace(c1) + np.trace(c2) - 2 * np.trace(scipy.linalg.sqrtm(c1 @ c2).real)
    assert frechet_distance(np.zeros(6), c1, np.zeros(6), c2) == pytest.approx(ref, rel=1e-8)


def test_fid_of_gaussian_samples_approaches_closed_form():
    mu1, s1, mu2, s2, closed = _commuting_gaussians()
    rng = np.random.default_rng(2)
    a = rng.multivariate_normal(mu1, s1, size=40000)
    b = rng.multivariate_normal(mu2, s2, size=40000)
    assert fid_from_features(a, b) == pytest.approx(closed, rel=0.03)
    assert fid_from_features(a, b) == pytest.approx(frechet_distance(*gaussian_stats(a), *gaussian_stats(b)), rel=1e-9)


def test_fid_rank_deficient_is_finite_and_consistent():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(8, 256)), rng.normal(size=(11, 256)) + 0.1  # n << d: singular covariances
    value = fid_from_features(a, b)
    assert np.isfinite(value) and value > 0
    assert value == pytest.approx(frechet_distance(*gaussian_stats(a), *gaussian_stats(b)), rel=1e-7)
    assert value == pytest.approx(fid_from_features(b, a), rel=1e-10)
    assert fid_from_features(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(value, rel=1e-12)


def test_fid_rejects_bad_shapes():
    with pytest.raises(ValueError):
        fid_from_features(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError):
        fid_from_features(np.zeros((3, 4)), np.zeros((5, 3)))


# ----------------------------------------------------------------------------- Inception layouts


def test_art_inception_layout_roundtrip_and_mixed_sizes(tmp_path):
    ref = write_art_inception(tmp_path / "art_inception.pth")
    model = load_inception(tmp_path / "art_inception.pth")
    assert model.layout == "art" and model.fc1.out_features == 27 and model.AuxLogits2.fc.out_features == 129
    paths = write_images(tmp_path / "imgs", {"a": (80, 96), "b": (100, 100), "c": (96, 80), "d": (100, 100)})
    feats = inception_features(model, paths, mode="native", batch_size=4, progress=False)
    assert feats.shape == (4, 2048)
    with torch.no_grad():
        single = ref(for_metric(load_image(paths[0]), "native", 512, "fid")[None]).double().numpy()
    np.testing.assert_allclose(feats[0], single[0], rtol=1e-4, atol=1e-6)
    paper = inception_features(model, paths, mode="paper", size=96, progress=False)
    assert paper.shape == (4, 2048) and np.isfinite(paper).all()


def test_inception_layout_detection_and_errors(tmp_path):
    sd = InceptionV3("torchvision").state_dict()
    torch.save(sd, tmp_path / "tv.pth")
    assert load_inception(tmp_path / "tv.pth").layout == "torchvision"
    fid_sd = InceptionV3("pytorch-fid").state_dict()
    torch.save(fid_sd, tmp_path / "pt.pth")
    assert load_inception(tmp_path / "pt.pth").layout == "pytorch-fid"
    del sd["Mixed_7c.branch_pool.conv.weight"]
    sd["Mixed_5b.branch1x1.conv.weight"] = torch.zeros(1, 1, 1, 1)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(InceptionWeightsError, match=r"missing Mixed_7c\.branch_pool\.conv\.weight.*mis-shaped"):
        load_inception(tmp_path / "bad.pth")
    with pytest.raises(InceptionWeightsError, match="not found"):
        load_inception(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(InceptionWeightsError, match="cannot read"):
        load_inception(tmp_path / "junk.pth")


# ----------------------------------------------------------------------------- LPIPS


def test_lpips_identity_symmetry_and_layouts(tmp_path):
    backbone, heads = write_lpips(tmp_path, "torchvision")
    lp = load_lpips(backbone, heads)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 64, 80, generator=g), torch.rand(2, 3, 64, 80, generator=g)
    assert torch.equal(lp(x, x), torch.zeros(2))
    d_xy, d_yx = lp(x, y), lp(y, x)
    torch.testing.assert_close(d_xy, d_yx)
    assert (d_xy > 0).all()
    backbone2, _ = write_lpips(tmp_path, "lpips")
    torch.testing.assert_close(load_lpips(backbone2, heads)(x, y), d_xy)
    # the definition: sum over layers of the head-weighted, space-averaged squared unit-feature differences
    fx, fy = lp.taps(x), lp.taps(y)
    manual = sum((lin.model[1].weight.view(1, -1, 1, 1) * (a - b) ** 2).sum(1).mean((1, 2))
                 for lin, a, b in zip(lp.lins, fx, fy, strict=True))  # fmt: skip
    torch.testing.assert_close(d_xy, manual)


def test_lpips_weight_errors(tmp_path):
    backbone, heads = write_lpips(tmp_path)
    torch.save({"lin0.model.1.weight": torch.rand(1, 64, 1, 1)}, tmp_path / "partial.pth")
    with pytest.raises(LPIPSWeightsError, match="missing lin1.model.1.weight"):
        load_lpips(backbone, tmp_path / "partial.pth")
    with pytest.raises(LPIPSWeightsError, match="AlexNet backbone"):
        load_lpips(heads, heads)
    with pytest.raises(LPIPSWeightsError, match="not found"):
        load_lpips(tmp_path / "missing.pth", heads)


# ----------------------------------------------------------------------------- CFSD, ArtFID, losses


def _cfsd_dense(fc: torch.Tensor, fs: torch.Tensor) -> torch.Tensor:
    """StyleID's CFSD restated in float64 from its formula: features (B, C, H, W) -> (L, C) / C, logits F F^T,
    row softmax, KL(P_content || P_stylized) summed over all L rows (kl_div 'batchmean' with a batch of 1)."""
    out = []
    for c_img, s_img in zip(fc.double(), fs.double(), strict=True):
        channels = c_img.shape[0]
        a = c_img.reshape(channels, -1).T / channels  # (L, C)
        b = s_img.reshape(channels, -1).T / channels
        pc, ps = torch.softmax(a @ a.T, -1), torch.softmax(b @ b.T, -1)
        out.append((pc * (pc.log() - ps.log())).sum())
    return torch.stack(out)


def test_cfsd_zero_on_identity_chunking_and_dense_reference():
    g = torch.Generator().manual_seed(0)
    # relu3_1-like magnitudes: non-negative, a few units, C = 32 channels
    fc, fs = 3 * torch.rand(2, 32, 9, 11, generator=g), 3 * torch.rand(2, 32, 9, 11, generator=g)
    assert torch.equal(cfsd_from_features(fc, fc), torch.zeros(2, dtype=torch.float64))
    dense = _cfsd_dense(fc, fs)
    for chunk in (1, 7, 99, 1000):
        torch.testing.assert_close(cfsd_from_features(fc, fs, chunk=chunk), dense, rtol=1e-5, atol=1e-9)
    assert (dense > 0).all()
    # the two fixes of issue 17: logits scaled by 1/C^2, KL summed (not averaged) over rows
    unscaled = _cfsd_dense(fc * 32, fs * 32)
    assert not torch.allclose(cfsd_from_features(fc, fs), unscaled, rtol=1e-2)
    with pytest.raises(ValueError, match="chunk"):
        cfsd_from_features(fc, fs, chunk=0)


def test_cfsd_with_vgg19_file(tmp_path):
    from mambast.metrics import cfsd
    from mambast.nets.vgg import load_vgg

    write_vgg(tmp_path / "vgg19.pth", "vgg19")
    vgg = load_vgg(tmp_path / "vgg19.pth", layout="vgg19")
    x, y = torch.rand(1, 3, 48, 64), torch.rand(1, 3, 48, 64)
    assert cfsd(vgg, x, x).item() == 0.0
    assert cfsd(vgg, x, y, chunk=50).item() == pytest.approx(cfsd(vgg, x, y, chunk=4096).item(), rel=1e-5)


def test_artfid_formula():
    assert artfid(2.0, 0.5) == pytest.approx(4.5)
    assert artfid(0.0, 0.0) == 1.0
    with pytest.raises(ValueError):
        artfid(float("nan"), 0.1)
    with pytest.raises(ValueError):
        artfid(1.0, -0.1)


def test_paper_losses():
    g = torch.Generator().manual_seed(0)
    feats = [torch.rand(1, c, s, s, generator=g) for c, s in ((4, 8), (5, 6), (6, 5), (7, 4), (8, 3))]
    other = [f.flip(-1) + 0.5 for f in feats]
    assert content_loss(feats, feats).item() == 0.0
    assert style_loss(feats, feats).item() == 0.0
    perm = [f.flip(-1) for f in feats]  # spatial flips keep channel statistics: no style loss
    assert style_loss(perm, feats).item() == pytest.approx(0.0, abs=1e-12)
    mean, std = mean_std(feats[0])
    flat = feats[0].flatten(2)
    torch.testing.assert_close(std.flatten(), (flat.var(-1, unbiased=True) + 1e-5).sqrt().flatten())
    assert mean.shape == (1, 4, 1, 1)
    # a +0.5 shift keeps the std: 5 layers x MSE(mean) 0.25; a positive affine map leaves content loss ~0
    assert style_loss(feats, other).item() == pytest.approx(5 * 0.25, rel=1e-6)
    assert content_loss([2 * f + 1 for f in feats], feats).item() == pytest.approx(0.0, abs=1e-8)
    assert content_loss(other, feats).item() > 0.1


# ----------------------------------------------------------------------------- pairing, preprocessing


def test_pairing_by_name_with_shuffled_listings():
    contents = [Path(f"c/{n}.jpg") for n in ("a", "b_stylized_x", "c")]
    styles = [Path(f"s/{n}.png") for n in ("x", "y")]
    stylized = [Path(f"o/{c}_stylized_{s}.png") for c in ("a", "b_stylized_x", "c") for s in ("x", "y")]
    stylized = stylized[:-1] + [Path("o/zzz.png"), Path("o/a_stylized_q.png")]
    ref = pair_by_name(stylized, contents, styles)
    rng = random.Random(0)
    for _ in range(5):
        sh = [list(v) for v in (stylized, contents, styles)]
        for v in sh:
            rng.shuffle(v)
        got = pair_by_name(*sh)
        assert got.pairs == ref.pairs
    by_out = {p.stylized.stem: (p.content.stem, p.style.stem) for p in ref.pairs}
    assert by_out["b_stylized_x_stylized_y"] == ("b_stylized_x", "y")
    assert by_out["a_stylized_x"] == ("a", "x")
    assert len(ref.pairs) == 5 and ref.missing == [("c", "y")]
    assert sorted(p.name for p in ref.unmatched) == ["a_stylized_q.png", "zzz.png"]
    with pytest.raises(UserError, match="share the name"):
        pair_by_name(stylized, contents + [Path("d/a.png")], styles)


def test_paper_mode_resizes_short_side_without_crop():
    img = Image.new("RGB", (600, 400))
    assert apply_mode(img, "paper", 512, "fid").size == (768, 512)  # torchvision Resize(512): int(512 * 600 / 400)
    assert apply_mode(Image.new("RGB", (333, 500)), "paper", 512, "lpips").size == (512, 768)  # int(768.77)
    assert apply_mode(img, "paper", 512, "cfsd").size == (600, 400)  # CFSD: images as stored
    assert apply_mode(img, "native").size == (600, 400)
    with pytest.raises(UserError, match="unknown preprocessing mode"):
        apply_mode(img, "fancy")


# ----------------------------------------------------------------------------- weights resolution / fetch


def test_missing_weights_messages(tmp_path):
    path, why = resolve("art_inception", None, tmp_path)
    assert path is None and "as inception " in why and "art_inception.pth" in why and "weights fetch" in why
    with pytest.raises(FieldError, match="vgg19 .*not found") as e:
        resolve("vgg19", tmp_path / "nope.pth", tmp_path)
    assert e.value.fields == ("vgg19",) and "--" not in str(e.value)  # the library names the field, not a flag
    (tmp_path / "alex.pth").write_bytes(b"x")
    assert resolve("lpips_heads", None, tmp_path) == (tmp_path / "alex.pth", "")


def test_fetch_records_sha256_and_checks_prefix(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"weights" * 100)
    path, sha = fetch("art_inception", tmp_path / "w", url=src.as_uri())
    assert path.read_bytes() == src.read_bytes() and sha == hashlib.sha256(src.read_bytes()).hexdigest()
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert manifest["art_inception"]["sha256"] == sha
    with pytest.raises(UserError, match="does not start with the published"):
        fetch("lpips_alexnet", tmp_path / "w", url=src.as_uri())
    assert not (tmp_path / "w" / KNOWN["lpips_alexnet"].filename).exists()
    with pytest.raises(UserError, match="network access needed"):
        fetch("lpips_heads", tmp_path / "w", url=(tmp_path / "absent").as_uri())
