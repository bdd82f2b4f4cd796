"""The paper's evaluation (StyleID's eval_artfid.py on Mamba-ST's copy_inputs.py layout) restated independently
in float64 from its formulas, and mambast's evaluation checked against it (issue 17).

The `ref_*` functions below are written from the formulas in docs/evaluation.md, not from mambast.metrics:
reading (PIL RGB), torchvision Resize(512) (short side, long side truncated, PIL bilinear, no crop),
ToTensor, PIL grayscale, LPIPS-AlexNet and VGG-19 relu3_1 as explicit float64 convolutions from the raw
state dicts, CFSD as the dense L x L KL summed over rows, FID through the n x n Gram form of tr sqrt(S1 S2),
the style set repeated once per pair. The Inception-v3 forward alone is mambast's module run in float64
(a 94-conv network; its layout was checked against art-fid / pytorch-fid separately, issue 17).
benchmarks/eval_reference.py prints the side-by-side table of these functions and mambast on real images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from PIL import Image
from test_metrics import write_art_inception, write_lpips, write_vgg

from mambast.metrics import EvalWeights, evaluate, fid_from_features, fid_infinity
from mambast.nets.inception import InceptionV3, load_inception

# ----------------------------------------------------------------------------- the re-statement


def ref_read(path: Path) -> Image.Image:
    """What the reference does: PIL open, convert('RGB')."""
    with Image.open(path) as im:
        return im.convert("RGB")


def ref_resize(img: Image.Image, size: int) -> Image.Image:
    """torchvision Resize(size) on PIL: the short side becomes `size`, the long side int(size * long / short)."""
    w, h = img.size
    short, long = min(w, h), max(w, h)
    new_long = int(size * long / short)
    target = (size, new_long) if w == short else (new_long, size)
    return img if target == (w, h) else img.resize(target, Image.BILINEAR)


def ref_tensor(img: Image.Image) -> torch.Tensor:
    """ToTensor in float64: (1, C, H, W), values / 255."""
    a = np.asarray(img, dtype=np.float64) / 255.0
    a = a[..., None] if a.ndim == 2 else a
    return torch.from_numpy(a).permute(2, 0, 1)[None].contiguous()


def ref_gray(img: Image.Image) -> torch.Tensor:
    """Grayscale() then ToTensor: L = 0.299 R + 0.587 G + 0.114 B, rounded to 8 bits -> (1, 1, H, W)."""
    a = np.asarray(img, dtype=np.float64)
    luma = np.floor(a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114 + 0.5)
    return torch.from_numpy(luma / 255.0)[None, None]


def ref_lpips(backbone: dict, heads: dict, x: torch.Tensor, y: torch.Tensor) -> float:
    """LPIPS v0.1 AlexNet of x, y (1, C, H, W) in [0, 1] (C = 1 broadcasts, as lpips does), float64."""
    shift = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float64).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float64).view(1, 3, 1, 1)

    def taps(img):
        h = ((2 * img - 1) - shift) / scale
        out = []
        for k, (idx, stride, pad) in enumerate(((0, 4, 2), (3, 1, 2), (6, 1, 1), (8, 1, 1), (10, 1, 1))):
            if k in (1, 2):
                h = F.max_pool2d(h, 3, 2)
            w, b = backbone[f"features.{idx}.weight"].double(), backbone[f"features.{idx}.bias"].double()
            h = F.relu(F.conv2d(h, w, b, stride=stride, padding=pad))
            out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    total = 0.0
    for k, (a, b) in enumerate(zip(taps(x), taps(y), strict=True)):
        w = heads[f"lin{k}.model.1.weight"].double().view(1, -1, 1, 1)
        total += float(((a - b) ** 2 * w).sum(1).mean())
    return total


def ref_relu3_1(vgg19: dict, x: torch.Tensor) -> torch.Tensor:
    """torchvision vgg19.features[:12] (relu3_1) in float64 on ImageNet-normalised x (1, 3, H, W)."""
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)
    h = (x - mean) / std
    for idx in (0, 2, "pool", 5, 7, "pool", 10):
        if idx == "pool":
            h = F.max_pool2d(h, 2, 2)
            continue
        w, b = vgg19[f"features.{idx}.weight"].double(), vgg19[f"features.{idx}.bias"].double()
        h = F.relu(F.conv2d(h, w, b, padding=1))
    return h


def ref_cfsd(f_content: torch.Tensor, f_stylized: torch.Tensor) -> float:
    """PatchSimi: (1, C, H, W) -> (L, C) / C; log_softmax / softmax of F F^T; kl_div 'batchmean' with batch 1."""
    c = f_content.shape[1]
    a = f_content[0].reshape(c, -1).T / c
    b = f_stylized[0].reshape(c, -1).T / c
    target = torch.softmax(a @ a.T, dim=-1)  # content
    log_input = torch.log_softmax(b @ b.T, dim=-1)  # stylized
    return float((target * (target.log() - log_input)).sum() / 1)


def ref_cfsd_rows(f_content: torch.Tensor, f_stylized: torch.Tensor, rows: int = 2048) -> float:
    """`ref_cfsd` with the L x L matrices built `rows` rows at a time (for 512 px images, where one dense
    float64 matrix is 2 GiB); each block is the same formula, KL summed over its rows."""
    c = f_content.shape[1]
    a = f_content[0].reshape(c, -1).T / c
    b = f_stylized[0].reshape(c, -1).T / c
    total = 0.0
    for i in range(0, a.shape[0], rows):
        target = torch.softmax(a[i : i + rows] @ a.T, dim=-1)
        log_input = torch.log_softmax(b[i : i + rows] @ b.T, dim=-1)
        total += float((target * (target.log() - log_input)).sum())
    return total


def ref_fid(x: np.ndarray, y: np.ndarray) -> float:
    """Frechet distance of mean / unbiased covariance fits; tr sqrt(S1 S2) from the n1 x n1 matrix
    Xc Yc^T Yc Xc^T / ((n1-1)(n2-1)), which has the same non-zero eigenvalues as S1 S2."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    n1, n2 = len(x) - 1, len(y) - 1
    gram = (xc @ yc.T) @ (yc @ xc.T) / (n1 * n2)
    eig = np.linalg.eigvalsh((gram + gram.T) / 2)
    eig[eig < 1e-12 * eig.max()] = 0.0  # the zero eigenvalues of a rank-deficient product, not their round-off
    tr_sqrt = np.sqrt(eig).sum()
    diff = x.mean(0) - y.mean(0)
    return float(diff @ diff + (xc**2).sum() / n1 + (yc**2).sum() / n2 - 2 * tr_sqrt)


def ref_inception(inception: torch.nn.Module, img: Image.Image) -> np.ndarray:
    """2048-d pool features, the module run in float64 on ToTensor input (art layout: no further transform)."""
    with torch.no_grad():
        return inception.double()(ref_tensor(img)).numpy()[0]


def ref_protocol(pairs, weights: dict, size: int = 512, cfsd_rows: int | None = None) -> dict[str, float]:
    """The paper's numbers for `pairs` [(stylized, content, style) paths], each metric as StyleID computes it:
    FID / LPIPS / LPIPS_gray on Resize(size) images, CFSD on the stored images, the FID style set holding the
    style image of every pair (copy_inputs.py), ArtFID = (1 + LPIPS)(1 + FID). cfsd_rows: build CFSD's
    matrices that many rows at a time (`ref_cfsd_rows`; None: dense)."""
    backbone = torch.load(weights["lpips_alexnet"], weights_only=True)
    heads = torch.load(weights["lpips_heads"], weights_only=True)
    vgg19 = torch.load(weights["vgg19"], weights_only=True)
    inception = load_inception(weights["inception"])
    f_out, f_sty, lp, lpg, cf = [], [], [], [], []
    style_feats: dict[Path, np.ndarray] = {}  # the copies of one style file have one feature vector
    for stylized, content, style in pairs:
        out_img, con_img = ref_read(stylized), ref_read(content)
        f_out.append(ref_inception(inception, ref_resize(out_img, size)))
        if style not in style_feats:
            style_feats[style] = ref_inception(inception, ref_resize(ref_read(style), size))
        f_sty.append(style_feats[style])
        o, c = ref_resize(out_img, size), ref_resize(con_img, size)
        lp.append(ref_lpips(backbone, heads, ref_tensor(o), ref_tensor(c)))
        lpg.append(ref_lpips(backbone, heads, ref_gray(o), ref_gray(c)))
        fc, fs = ref_relu3_1(vgg19, ref_tensor(con_img)), ref_relu3_1(vgg19, ref_tensor(out_img))
        cf.append(ref_cfsd(fc, fs) if cfsd_rows is None else ref_cfsd_rows(fc, fs, cfsd_rows))
    fid = ref_fid(np.stack(f_out), np.stack(f_sty))
    lpips = float(np.mean(lp))
    return {"artfid": (1 + lpips) * (1 + fid), "fid": fid, "lpips": lpips, "lpips_gray": float(np.mean(lpg)),
            "cfsd": float(np.mean(cf))}  # fmt: skip


# ----------------------------------------------------------------------------- tests


def _smooth(rng, w: int, h: int) -> Image.Image:
    small = rng.integers(0, 256, size=(max(2, h // 6), max(2, w // 6), 3), dtype=np.uint8)
    return Image.fromarray(small).resize((w, h), Image.BICUBIC)


@pytest.fixture(scope="module")
def layout_weights(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("refweights")
    write_art_inception(d / "art_inception.pth")
    backbone, heads = write_lpips(d)
    write_vgg(d / "vgg19.pth", "vgg19")
    return {"inception": d / "art_inception.pth", "lpips_alexnet": backbone, "lpips_heads": heads,
            "vgg19": d / "vgg19.pth"}  # fmt: skip


@pytest.fixture(scope="module")
def protocol_folders(tmp_path_factory):
    """3 contents x 3 styles: contents and stylized 112 x 112 (resized to 96 by `size`), styles non-square."""
    root = tmp_path_factory.mktemp("refprotocol")
    rng = np.random.default_rng(7)
    for sub in ("content", "style", "stylized"):
        (root / sub).mkdir()
    for c in ("c0", "c1", "c2"):
        _smooth(rng, 112, 112).save(root / "content" / f"{c}.jpg", quality=90)
    for s, wh in (("s0", (150, 100)), ("s1", (100, 140)), ("s2", (120, 120))):
        _smooth(rng, *wh).save(root / "style" / f"{s}.jpg", quality=90)
    for c in ("c0", "c1", "c2"):
        for s in ("s0", "s1", "s2"):
            _smooth(rng, 112, 112).save(root / "stylized" / f"{c}_stylized_{s}.jpg", quality=75)
    return root


def test_paper_mode_equals_the_restated_reference(protocol_folders, layout_weights, tmp_path):
    root = protocol_folders
    report = evaluate(root / "stylized", root / "content", root / "style", tmp_path, mode="paper", size=96,
                      weights=EvalWeights(**layout_weights, folder=tmp_path / "none"), progress=False,
                      fid_inf=True, fid_inf_points=4)  # fmt: skip
    pairs = [(root / "stylized" / f"{c}_stylized_{s}.jpg", root / "content" / f"{c}.jpg", root / "style" / f"{s}.jpg")
             for c in ("c0", "c1", "c2") for s in ("s0", "s1", "s2")]  # fmt: skip
    ref = ref_protocol(pairs, layout_weights, size=96)
    got = report["metrics"]
    assert set(ref) <= set(got)
    for key in ("lpips", "lpips_gray", "cfsd"):
        assert got[key] == pytest.approx(ref[key], rel=2e-5), key
    for key in ("fid", "artfid"):  # float32 Inception vs its float64 run
        assert got[key] == pytest.approx(ref[key], rel=1e-4), key
    assert report["fid_style_set"] == "pairs" and "copy_inputs.py" in report["protocol"]
    assert "short side 96 without crop" in report["protocol"]
    assert report["counts"]["pairs"] == 9 and report["failed"] == []
    assert np.isfinite(got["fid_inf"]) and got["fid_inf"] != pytest.approx(got["fid"], rel=1e-3)  # a real fit


def test_fid_style_set_pairs_is_the_repeated_set_and_differs_from_unique():
    rng = np.random.default_rng(0)
    styles = rng.normal(size=(4, 16))
    stylized = rng.normal(size=(12, 16)) + 0.3
    repeated = np.repeat(styles, 3, axis=0)  # 3 contents x 4 styles: each style once per pair
    assert fid_from_features(stylized, repeated) == pytest.approx(ref_fid(stylized, repeated), rel=1e-9)
    assert fid_from_features(stylized, styles) == pytest.approx(ref_fid(stylized, styles), rel=1e-9)
    # same mean, covariance scaled by k (n - 1) / (k n - 1): the two style sets give different FIDs
    c_unique, c_rep = np.cov(styles, rowvar=False), np.cov(repeated, rowvar=False)
    np.testing.assert_allclose(c_rep, c_unique * 3 * 3 / 11, rtol=1e-12)
    assert abs(fid_from_features(stylized, repeated) - fid_from_features(stylized, styles)) > 1e-3


def test_ref_fid_agrees_with_scipy_sqrtm_when_full_rank():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(60, 5)), rng.normal(size=(70, 5)) * 1.5 + 0.2
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    diff = x.mean(0) - y.mean(0)
    classic = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real)
    assert ref_fid(x, y) == pytest.approx(classic, rel=1e-9)


def test_fid_infinity_is_the_extrapolated_line_through_random_subsets():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(80, 6)), rng.normal(size=(80, 6)) + 0.5
    value, points = fid_infinity(a, b, num_points=5, min_n=10, seed=3)
    sizes = [n for n, _ in points]
    assert sizes == [10, 27, 45, 62, 80]
    gen = np.random.default_rng(3)  # the documented sampling: one permutation prefix per size, rows paired
    for n, fid_n in points:
        idx = gen.permutation(80)[:n]
        assert fid_n == pytest.approx(ref_fid(a[idx], b[idx]), rel=1e-9)
    inv = np.array([1 / n for n in sizes])
    vals = np.array([v for _, v in points])
    slope = ((inv - inv.mean()) * (vals - vals.mean())).sum() / ((inv - inv.mean()) ** 2).sum()
    assert value == pytest.approx(vals.mean() - slope * inv.mean(), rel=1e-9)  # least-squares intercept
    assert points[-1][1] == pytest.approx(fid_from_features(a, b), rel=1e-12)  # N = n: plain FID


def test_torchvision_inception_layout_applies_transform_input():
    torch.manual_seed(0)
    net = InceptionV3("torchvision").double()
    x = torch.rand(2, 3, 90, 110, dtype=torch.float64)
    resized = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)
    normalised = (resized - mean) / std
    # torchvision's transform_input per channel: x_c * (std_c / 0.5) + (mean_c - 0.5) / 0.5, i.e. 2 x - 1
    transformed = torch.cat([normalised[:, i : i + 1] * (std[0, i] / 0.5) + (mean[0, i] - 0.5) / 0.5
                             for i in range(3)], 1)  # fmt: skip
    torch.testing.assert_close(transformed, 2 * resized - 1)
    torch.testing.assert_close(net.preprocess(x), transformed)
    art = InceptionV3("art", heads={}).double()
    art.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith(("fc", "Aux"))})
    with torch.no_grad():
        torch.testing.assert_close(net(x), art(2 * resized - 1))


def test_lpips_and_cfsd_restatements_match_the_networks(layout_weights):
    """The per-pair pieces at layer level: mambast's LPIPSAlex and VGG relu3_1 vs the float64 convolutions."""
    from mambast.metrics import cfsd
    from mambast.nets.lpips_net import load_lpips
    from mambast.nets.vgg import load_vgg

    g = torch.Generator().manual_seed(5)
    x, y = torch.rand(1, 3, 64, 80, generator=g), torch.rand(1, 3, 64, 80, generator=g)
    lp = load_lpips(layout_weights["lpips_alexnet"], layout_weights["lpips_heads"])
    backbone = torch.load(layout_weights["lpips_alexnet"], weights_only=True)
    heads = torch.load(layout_weights["lpips_heads"], weights_only=True)
    assert float(lp(x, y)[0]) == pytest.approx(ref_lpips(backbone, heads, x.double(), y.double()), rel=1e-5)
    vgg = load_vgg(layout_weights["vgg19"], layout="vgg19")
    sd = torch.load(layout_weights["vgg19"], weights_only=True)
    ref = ref_cfsd(ref_relu3_1(sd, x.double()), ref_relu3_1(sd, y.double()))
    assert float(cfsd(vgg, x, y, chunk=37)[0]) == pytest.approx(ref, rel=1e-5)
    assert ref_cfsd_rows(ref_relu3_1(sd, x.double()), ref_relu3_1(sd, y.double()), rows=50) == pytest.approx(ref)
