"""The evaluation protocol: stylize every content x style pair (optional), then score the stylized folder.

`evaluate` scores any method's outputs named ``{content}_stylized_{style}.png`` against the content and style
folders with every metric whose weights are available, and writes report.json, report.md
and contact_sheet.png.
`run_protocol` first stylizes every pair with a Mamba-ST checkpoint through `mambast.stylize.stylize_pairs`.
Paper protocol (StyleID / Mamba-ST): 20 content x 40 style images, short side 512 + centre crop
("paper" mode).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mambast.errors import UserError

from . import report as rep
from .artfid import artfid
from .cfsd import cfsd
from .fid import fid_from_features, inception_features
from .losses import paper_losses
from .pairing import Pair, list_image_files, pair_by_name
from .preprocess import MODES, load_for_metric, match_size
from .weights import resolve, sha256_file

__all__ = ["EvalWeights", "evaluate", "run_protocol"]


@dataclass
class EvalWeights:
    """Weight-file paths given by the user (None: look in `folder`; missing: metric skipped)."""

    inception: str | Path | None = None  # art_inception.pth -> fid, artfid
    lpips_alexnet: str | Path | None = None  # AlexNet backbone -> lpips, artfid
    lpips_heads: str | Path | None = None  # lpips v0.1 alex.pth
    vgg19: str | Path | None = None  # torchvision VGG-19 -> cfsd
    vgg: str | Path | None = None  # vgg_normalised.pth -> content_loss, style_loss
    fid_inception: str | Path | None = None  # pytorch-fid / torchvision Inception -> fid_imagenet
    folder: str | Path | None = None


def _load_networks(w: EvalWeights, device: str) -> tuple[dict[str, torch.nn.Module], dict[str, str], dict]:
    """Load each available metric network -> (networks, skipped {metric: why}, used weights)."""
    from mambast.nets.inception import load_inception
    from mambast.nets.lpips_net import load_lpips
    from mambast.nets.vgg import load_vgg

    nets: dict[str, torch.nn.Module] = {}
    skipped: dict[str, str] = {}
    used: dict[str, dict[str, str]] = {}

    def want(names: tuple[str, ...], explicit: tuple, metrics: tuple[str, ...], loader: Callable) -> None:
        paths = []
        for name, path in zip(names, explicit, strict=True):
            found, why = resolve(name, path, w.folder)
            if found is None:
                for m in metrics:
                    skipped[m] = why
                return
            paths.append(found)
        nets[metrics[0]] = loader(*paths)
        for name, path in zip(names, paths, strict=True):
            used[name] = {"path": str(path), "sha256": sha256_file(path)}

    want(("art_inception",), (w.inception,), ("fid",), lambda p: load_inception(p, "auto", device))
    want(("lpips_alexnet", "lpips_heads"), (w.lpips_alexnet, w.lpips_heads), ("lpips",),
         lambda a, h: load_lpips(a, h, device))  # fmt: skip
    want(("vgg19",), (w.vgg19,), ("cfsd",), lambda p: load_vgg(p, layout="vgg19", device=device))
    want(("vgg_normalised",), (w.vgg,), ("content_loss", "style_loss"),
         lambda p: load_vgg(p, layout="vgg_normalised", device=device))  # fmt: skip
    want(
        ("pt_inception",), (w.fid_inception,), ("fid_imagenet",), lambda p: load_inception(p, "auto", device)
    )
    for m in ("fid", "lpips"):
        if m in skipped:
            skipped.setdefault("artfid", f"needs {m}: {skipped[m]}")
    return nets, skipped, used


def _pair_metrics(
    nets: dict, pairs: list[Pair], mode: str, size: int, device: str, chunk: int, progress: bool
):
    """Per-pair LPIPS / CFSD / paper losses -> (rows, failed)."""
    rows: list[dict] = []
    failed: list[list[str]] = []
    style_cache: dict[Path, torch.Tensor] = {}
    with torch.no_grad():
        for pair in tqdm(
            pairs, desc="pair metrics", unit="pair", disable=not progress or not nets, leave=False
        ):
            row: dict = {
                "stylized": pair.stylized.name,
                "content": pair.content.stem,
                "style": pair.style.stem,
            }
            try:
                out = load_for_metric(pair.stylized, mode, size)[None].to(device)
                con = match_size(load_for_metric(pair.content, mode, size), out[0])[None].to(device)
                if "lpips" in nets:
                    row["lpips"] = float(nets["lpips"](out, con)[0])
                if "cfsd" in nets:
                    row["cfsd"] = float(cfsd(nets["cfsd"], con, out, chunk)[0])
                if "content_loss" in nets:
                    if pair.style not in style_cache:
                        style_cache[pair.style] = load_for_metric(pair.style, mode, size)[None].to(device)
                    row["content_loss"], row["style_loss"] = paper_losses(
                        nets["content_loss"], out, con, style_cache[pair.style]
                    )
            except (UserError, ValueError, RuntimeError) as exc:
                failed.append([pair.stylized.name, str(exc).splitlines()[0]])
                continue
            rows.append(row)
    return rows, failed


def evaluate(
    stylized_dir: str | Path,
    content_dir: str | Path,
    style_dir: str | Path,
    out_dir: str | Path,
    weights: EvalWeights | None = None,
    mode: str = "paper",
    size: int = 512,
    device: str = "cpu",
    batch_size: int = 8,
    cfsd_chunk: int = 1024,
    contact_cell: int = 128,
    progress: bool = True,
    extra: dict | None = None,
) -> dict:
    """Score a stylized folder against content and style folders; write the reports into `out_dir`.

    Returns the report dict (also written as out_dir/report.json): metrics, skipped {metric: reason}, weights
    used with SHA-256, per-pair values, unmatched / failed files, counts, timings.
    """
    if mode not in MODES:
        raise UserError(f"unknown --mode {mode!r}; choose one of {', '.join(MODES)}")
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pairing = pair_by_name(
        list_image_files(stylized_dir), list_image_files(content_dir), list_image_files(style_dir)
    )
    if not pairing.pairs:
        raise UserError(
            f"no file in {stylized_dir} is named {{content}}_stylized_{{style}} after the given images"
        )
    nets, skipped, used = _load_networks(weights or EvalWeights(), device)
    pairs = pairing.pairs
    metrics: dict[str, float] = {}
    kw = dict(mode=mode, size=size, batch_size=batch_size, device=device, progress=progress)
    styles = sorted({p.style for p in pairs}, key=lambda p: p.stem)
    for key in ("fid", "fid_imagenet"):
        if key not in nets:
            continue
        if len(pairs) < 2 or len(styles) < 2:
            skipped[key] = f"needs at least 2 stylized and 2 style images (have {len(pairs)}, {len(styles)})"
            continue
        f_out = inception_features(nets[key], [p.stylized for p in pairs], desc=f"{key}: stylized", **kw)
        f_sty = inception_features(nets[key], styles, desc=f"{key}: styles", **kw)
        metrics[key] = fid_from_features(f_out, f_sty)
    rows, failed = _pair_metrics(nets, pairs, mode, size, device, cfsd_chunk, progress)
    for key in ("lpips", "cfsd", "content_loss", "style_loss"):
        values = [r[key] for r in rows if key in r]
        if values:
            metrics[key] = float(np.mean(values))
    if "fid" in metrics and "lpips" in metrics:
        metrics["artfid"] = artfid(metrics["fid"], metrics["lpips"])
    order = ("artfid", "fid", "lpips", "cfsd", "content_loss", "style_loss", "fid_imagenet")
    report = {
        **(extra or {}),
        "stylized_dir": str(stylized_dir),
        "content_dir": str(content_dir),
        "style_dir": str(style_dir),
        "mode": mode,
        "size": size,
        "metrics": {k: metrics[k] for k in order if k in metrics},
        "skipped": {k: skipped[k] for k in order if k in skipped},
        "weights": used,
        "counts": {
            "pairs": len(pairs),
            "contents": len({p.content for p in pairs}),
            "styles": len(styles),
            "unmatched": len(pairing.unmatched),
            "missing": len(pairing.missing),
            "failed": len(failed),
        },
        "unmatched": [str(p) for p in pairing.unmatched],
        "missing": [f"{c}_stylized_{s}" for c, s in pairing.missing],
        "failed": failed,
        "per_pair": rows,
    }
    rep.contact_sheet(pairs, out_dir / "contact_sheet.png", cell=contact_cell)
    report["seconds"] = round(time.perf_counter() - start, 2)
    rep.write_json(report, out_dir / "report.json")
    rep.write_markdown(report, out_dir / "report.md")
    return report


def run_protocol(
    checkpoint: str | Path,
    content_dir: str | Path,
    style_dir: str | Path,
    out_dir: str | Path,
    size: int = 512,
    seed: int | None = 0,
    shuffle: bool = True,
    device: str = "cpu",
    progress: bool = True,
    **eval_kw,
) -> dict:
    """Stylize every content x style pair with `checkpoint` into out_dir/stylized, then evaluate it."""
    import mambast
    from mambast.stylize import stylize_pairs

    out_dir = Path(out_dir)
    contents, styles = list_image_files(content_dir), list_image_files(style_dir)
    model = mambast.load(checkpoint, device=device)
    start = time.perf_counter()
    result = stylize_pairs(model, contents, styles, out_dir / "stylized", size=size, seed=seed,
                           shuffle=shuffle, progress=progress)  # fmt: skip
    stylize_s = time.perf_counter() - start
    extra = {
        "checkpoint": str(checkpoint),
        "stylize": {"seconds": round(stylize_s, 2), "written": len(result.written), "seed": seed,
                    "shuffle": shuffle, "failed": [list(f) for f in result.failed]},
    }  # fmt: skip
    return evaluate(out_dir / "stylized", content_dir, style_dir, out_dir, size=size, device=device,
                    progress=progress, extra=extra, **eval_kw)  # fmt: skip
