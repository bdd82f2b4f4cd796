"""The style corpus (mambast.train.styles, benchmarks/style_corpus.py): deterministic per (seed, index), distinct
images, the whole hue circle, every family valid, and the evaluation images never read."""

from __future__ import annotations

import builtins
import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("cv2")

from conftest import ROOT, require  # noqa: E402

from mambast.config import FieldError  # noqa: E402
from mambast.train.styles import FAMILIES, Sources, StyleCorpus, generate  # noqa: E402
from mambast.train.styles.sources import load_rgb  # noqa: E402

REAL_DEV = ROOT.parent / "shared" / "images" / "dev"


def _picture(rng: np.random.Generator, size: int) -> Image.Image:
    """A small synthetic 'painting': a random-colour gradient under random-colour discs, with noise."""
    ys, xs = np.mgrid[0:size, 0:size] / size
    img = rng.random(3) * 255 + 120 * np.stack([xs, ys, xs * ys], -1) * rng.choice([-1, 1], 3)
    for _ in range(12):
        cx, cy, r = rng.random(3) * (size, size, size / 4)
        img[(xs * size - cx) ** 2 + (ys * size - cy) ** 2 < r * r] = rng.random(3) * 255
    img += rng.normal(0, 20, (size, size, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def dev_tree(tmp_path_factory) -> Path:
    """images/dev/{style (4 paintings), content (3 photos)} and a sibling images/eval holding one image."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for sub, n in (("dev/style", 4), ("dev/content", 3), ("eval/style", 1)):
        (root / sub).mkdir(parents=True)
        for i in range(n):
            _picture(rng, 96).save(root / sub / f"{i:02d}.jpg")
    return root / "dev"


@pytest.fixture(scope="module")
def corpus(dev_tree) -> StyleCorpus:
    return StyleCorpus(0, 48, Sources.from_dev(dev_tree, packages=False))


def test_same_seed_and_index_same_image_other_seed_another(dev_tree, corpus):
    again = StyleCorpus(0, 48, Sources.from_dev(dev_tree, packages=False))
    for i in (0, 7, 123):
        a, pa = corpus.sample(i)
        b, pb = again.sample(i)
        assert np.array_equal(a, b) and pa == pb
        assert np.array_equal(np.asarray(generate(i, 0, 48, dev_tree, packages=False)), a)
    other = StyleCorpus(1, 48, Sources.from_dev(dev_tree, packages=False))
    assert not any(np.array_equal(corpus.sample(i)[0], other.sample(i)[0]) for i in range(5))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_gives_rgb_of_the_requested_size(dev_tree, family):
    sources = Sources.from_dev(dev_tree, packages=family == "package")
    if family == "package" and not sources.package:
        pytest.skip("no package images installed (scikit-image)")
    for size in (40, 67):
        c = StyleCorpus(3, size, sources)
        for i in range(3):
            img, params = c.sample(i, family)
            assert img.shape == (size, size, 3) and img.dtype == np.uint8, (family, img.shape, img.dtype)
            assert params["family"] == family
            assert img.std() > 2, f"{family} #{i} is nearly flat"
            json.dumps(params)  # manifest-ready, and no param hides a manifest column
            assert not {"index", "file"} & params.keys(), params


def _thumbs(corpus: StyleCorpus, n: int) -> np.ndarray:
    """8 x 8 RGB thumbnails (float, 0..255) of the first n images."""
    return np.stack([np.asarray(Image.fromarray(corpus.sample(i)[0]).resize((8, 8), Image.BOX), np.float32)
                     for i in range(n)])


def test_first_200_images_are_pairwise_distinct(corpus):
    t = _thumbs(corpus, 200).reshape(200, -1)
    d = np.abs(t[:, None] - t[None]).mean(-1)
    np.fill_diagonal(d, np.inf)
    assert d.min() > 3.0, f"images {np.unravel_index(d.argmin(), d.shape)} nearly identical ({d.min():.2f})"


def _mean_hue_bins(corpus: StyleCorpus, n: int) -> np.ndarray:
    """Images per 30-degree bin of their saturation-weighted circular mean hue (near-grey images left out)."""
    import cv2

    bins = np.zeros(12, int)
    for i in range(n):
        hsv = cv2.cvtColor(corpus.sample(i)[0], cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
        w = hsv[..., 1] / 255 * hsv[..., 2] / 255
        if w.mean() < 0.08:
            continue
        z = (w * np.exp(2j * np.pi * hsv[..., 0] / 256)).sum()
        bins[int(np.angle(z) % (2 * np.pi) / (2 * np.pi) * 12) % 12] += 1
    return bins


@pytest.mark.parametrize("with_dev", [False, True])
def test_mean_hues_cover_the_circle(with_dev):
    if with_dev:
        require(REAL_DEV.is_dir(), f"development images missing at {REAL_DEV}")
    corpus = StyleCorpus(0, 40, Sources.from_dev(REAL_DEV if with_dev else None, packages=False))
    bins = _mean_hue_bins(corpus, 500)
    assert (bins >= 15).sum() >= 10, bins  # 15 = 3 % of 500; a uniform spread gives ~35 a bin
    assert bins.max() <= 0.2 * 500, bins  # no hue (e.g. brown-orange) dominates


def test_evaluation_images_are_never_read(dev_tree, monkeypatch):
    import cv2

    seen: list[str] = []
    for mod, name in ((builtins, "open"), (Image, "open"), (cv2, "imread")):
        real = getattr(mod, name)

        def spy(path, *a, _real=real, **k):
            seen.append(str(path))
            return _real(path, *a, **k)

        monkeypatch.setattr(mod, name, spy)
    load_rgb.cache_clear()
    corpus = StyleCorpus(5, 40, Sources.from_dev(dev_tree, packages=False))
    for i in range(60):
        corpus.sample(i)
    assert any("/dev/" in p for p in seen)  # the spies saw the dev images being read
    assert not [p for p in seen if "/eval/" in p]


def test_evaluation_folder_refused(dev_tree, tmp_path):
    eval_dir = dev_tree.parent / "eval"
    with pytest.raises(FieldError, match="evaluation") as e:
        Sources.from_dev(eval_dir)
    assert e.value.fields == ("dev",)
    with pytest.raises(FieldError, match="evaluation"):
        load_rgb(eval_dir / "style" / "00.jpg")
    linked = tmp_path / "dev"
    (linked / "style").mkdir(parents=True)
    (linked / "style" / "a.jpg").symlink_to(eval_dir / "style" / "00.jpg")
    with pytest.raises(FieldError, match="evaluation"):
        Sources.from_dev(linked)


def test_a_flat_image_is_drawn_again_from_the_same_stream(monkeypatch):
    from mambast.train.styles import corpus as corpus_mod

    def flat_then_noise(rng, size, sources):
        v = rng.random()
        img = np.full((size, size, 3), 128, np.uint8) if v < 0.7 else rng.integers(0, 256, (size, size, 3))
        return img.astype(np.uint8), {"v": v}

    monkeypatch.setattr(corpus_mod, "FAMILIES", {"test": corpus_mod.Family(flat_then_noise, 1.0)})
    c = StyleCorpus(0, 32, Sources())
    kept = [c.sample(i) for i in range(40)]
    assert sum("redrawn" in p for _, p in kept) >= 10  # 70 % of first draws are flat
    for img, p in kept:  # drawn again until detailed, at most MAX_TRIES draws in all
        assert (p["v"] >= 0.7 and corpus_mod.detail(img) >= corpus_mod.MIN_DETAIL) or \
            p["redrawn"] == corpus_mod.MAX_TRIES - 1


def test_family_shares_follow_the_weights(dev_tree):
    sources = Sources.from_dev(dev_tree, packages=False)
    c = StyleCorpus(0, 64, sources)
    n = 4000
    counts = {name: 0 for name in c.shares}
    for i in range(n):
        counts[c.family_of(i)] += 1
    total = sum(FAMILIES[k].weight for k in c.shares)
    for name, share in c.shares.items():
        assert share == pytest.approx(FAMILIES[name].weight / total)
        sigma = np.sqrt(n * share * (1 - share))
        assert abs(counts[name] - n * share) < 4 * sigma, (name, counts[name], n * share)


def test_procedural_only_without_dev_and_bad_requests():
    c = StyleCorpus(0, 32, Sources())
    assert set(c.shares) == {n for n, f in FAMILIES.items() if not f.needs}
    assert abs(sum(c.shares.values()) - 1) < 1e-9
    with pytest.raises(FieldError, match="family"):
        c.sample(0, "painting")
    with pytest.raises(FieldError, match="size"):
        StyleCorpus(0, 8)


def test_script_writes_images_manifest_and_summary(dev_tree, tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import style_corpus

    out = tmp_path / "corpus"
    grid = tmp_path / "grid.jpg"
    rc = style_corpus.main(["--out", str(out), "--count", "12", "--seed", "2", "--size", "40", "--dev",
                            str(dev_tree), "--no-packages", "--grid", str(grid), "--grid-shape", "4x3",
                            "--thumb", "20"])
    assert rc == 0
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert [int(r["index"]) for r in rows] == list(range(12))
    c = StyleCorpus(2, 40, Sources.from_dev(dev_tree, packages=False))
    for r in rows[:4]:
        assert r["family"] == c.family_of(int(r["index"]))
        params = json.loads(r["params"])
        assert {"family": r["family"], **params} == json.loads(json.dumps(c.sample(int(r["index"]))[1]))
        assert Image.open(out / r["file"]).size == (40, 40)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["count"] == 12 and sum(summary["families"].values()) == 12 and summary["images_per_s"] > 0
    assert Image.open(grid).size == (80, 60)
    out2 = tmp_path / "corpus2"  # two processes, in two parts: the same files
    for start, count in ((0, 5), (5, 7)):
        assert style_corpus.main(["--out", str(out2), "--start", str(start), "--count", str(count), "--seed", "2",
                                  "--size", "40", "--dev", str(dev_tree), "--no-packages", "--workers", "2"]) == 0
    for r in rows:
        assert (out2 / r["file"]).read_bytes() == (out / r["file"]).read_bytes()
    assert style_corpus.main(["--out", str(out), "--count", "1", "--dev", str(dev_tree.parent / "eval")]) == 2
    assert "style_corpus: error: dev" in capsys.readouterr().err
