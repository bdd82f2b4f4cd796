"""Scoring paired images: every metric whose network is loaded, from the images alone (nothing is written).

`score(pairing, networks, options) -> Report`: the per-pair metrics (LPIPS, LPIPS_gray, CFSD, the paper
losses) of every pair, then FID (and FID_inf, FID on the ImageNet Inception) over the pairs that could be
scored, ArtFID from FID and LPIPS. An unreadable stylized, content or style image fails its pairs (listed
with the reason) and is kept out of every metric; the others are still scored.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from mambast.errors import UserError

from .artfid import artfid
from .cfsd import cfsd
from .fid import fid_from_features, fid_infinity, inception_features, min_side
from .losses import paper_losses
from .networks import LOSSES_MIN_SIDE, LPIPS_MIN_SIDE, METRICS_OF, Networks, usable_networks
from .options import EvalOptions
from .pairing import Pair, Pairing
from .preprocess import InputImages, apply_mode, fit_to, gray, to_tensor

__all__ = ["ORDER", "Report", "protocol_variant", "score"]

ORDER = ("artfid", "fid", "lpips", "lpips_gray", "cfsd", "fid_inf", "content_loss", "style_loss", "fid_imagenet")
PER_PAIR = ("lpips", "lpips_gray", "cfsd", "content_loss", "style_loss")  # averaged over the scored pairs


@dataclass
class Report:
    """What `score` found. metrics {name: value} and skipped {name: why} in ORDER; weights {file: {"path",
    "sha256"}}; counts {"pairs" (scored), "found", "contents", "styles", "unmatched", "missing", "failed"};
    unmatched (stylized files naming no content/style), missing ("{c}_stylized_{s}" without a file),
    failed ([name, reason], earlier steps' first); per_pair rows {"stylized", "content", "style", metric:
    value}; seconds of scoring. `as_dict` is report.json's content."""

    mode: str
    size: int
    fid_style_set: str
    protocol: str
    metrics: dict[str, float]
    skipped: dict[str, str]
    weights: dict[str, dict[str, str]]
    counts: dict[str, int]
    unmatched: list[str]
    missing: list[str]
    failed: list[list[str]]
    per_pair: list[dict]
    seconds: float

    def as_dict(self, **context) -> dict:
        """The report as one JSON-ready dict, `context` (folders, checkpoint, stylize step...) first."""
        return {**context, **{f.name: getattr(self, f.name) for f in fields(self)}}


def _score_pair(nets: dict, pair: Pair, images: InputImages, mode: str, size: int, device, chunk: int) -> dict:
    """Every per-pair metric of one pair -> row; raises (ImageError, ValueError, RuntimeError) when it cannot."""
    row: dict = {"stylized": pair.stylized.name, "content": pair.content.stem, "style": pair.style.stem}
    stylized = images.get(pair.stylized, keep=False)
    content, style = images.get(pair.content), images.get(pair.style)
    for img, path in ((stylized, pair.stylized), (style, pair.style)):
        for key in ("fid", "fid_imagenet"):  # FID runs later on the scored pairs only: check its sizes now
            if key in nets and min(apply_mode(img, mode, size, "fid").size) < min_side(nets[key]):
                w, h = apply_mode(img, mode, size, "fid").size
                raise ValueError(f"{path}: {w}x{h} px, the Inception needs >= {min_side(nets[key])} px")

    def prepared(kind: str) -> tuple[Image.Image, Image.Image]:
        """(stylized, content) preprocessed for `kind`, the content fitted to the stylized image's size."""
        out = apply_mode(stylized, mode, size, kind)
        con = fit_to(apply_mode(content, mode, size, kind), *out.size)
        return out, con

    if "lpips" in nets:
        out, con = prepared("lpips")
        if min(out.size) < LPIPS_MIN_SIDE:
            raise ValueError(f"{pair.stylized}: {out.size[0]}x{out.size[1]} px, LPIPS needs >= {LPIPS_MIN_SIDE} px")
        row["lpips"] = float(nets["lpips"](to_tensor(out)[None].to(device), to_tensor(con)[None].to(device))[0])
        row["lpips_gray"] = float(
            nets["lpips"](to_tensor(gray(out))[None].to(device), to_tensor(gray(con))[None].to(device))[0]
        )
    if "cfsd" in nets:
        out, con = prepared("cfsd")
        row["cfsd"] = float(
            cfsd(nets["cfsd"], to_tensor(con)[None].to(device), to_tensor(out)[None].to(device), chunk)[0]
        )
    if "losses" in nets:
        out, con = prepared("losses")
        sty = apply_mode(style, mode, size, "losses")
        if min(*out.size, *sty.size) < LOSSES_MIN_SIDE:
            raise ValueError(f"{pair.stylized}: below the {LOSSES_MIN_SIDE} px the paper losses' VGG needs")
        row["content_loss"], row["style_loss"] = paper_losses(
            nets["losses"], *(to_tensor(x)[None].to(device) for x in (out, con, sty))
        )
    return row


def _pair_metrics(nets: dict, pairs: list[Pair], options: EvalOptions) -> tuple[list[dict], list[list[str]]]:
    """Read every pair's three images and compute the per-pair metrics -> (rows, failed [[name, reason]])."""
    rows: list[dict] = []
    failed: list[list[str]] = []
    images = InputImages()
    o = options
    with torch.no_grad():
        for pair in tqdm(pairs, desc="pair metrics", unit="pair", disable=not o.progress, leave=False):
            try:
                rows.append(_score_pair(nets, pair, images, o.mode, o.size, o.device, o.cfsd_chunk))
            except (UserError, ValueError, RuntimeError) as exc:
                lines = [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
                failed.append([pair.stylized.name, lines[0][:300]])
    return rows, failed


def _fid_metrics(nets: dict, scored: list[Pair], options: EvalOptions, skipped: dict) -> dict[str, float]:
    """FID (and FID_inf, FID on the ImageNet Inception) of the scored pairs' stylized images vs their styles;
    what cannot be computed goes to `skipped` with the reason."""
    o, style_set = options, options.style_set
    metrics: dict[str, float] = {}
    kw = dict(mode=o.mode, size=o.size, batch_size=o.batch_size, device=o.device, progress=o.progress)
    styles = sorted({p.style for p in scored}, key=lambda p: p.stem)
    for key in ("fid", "fid_imagenet"):
        if key not in nets:
            continue
        n_style = len(scored) if style_set == "pairs" else len(styles)
        if len(scored) < 2 or n_style < 2:
            skipped[key] = f"needs at least 2 scored pairs and 2 style images (have {len(scored)}, {n_style})"
            continue
        f_out = inception_features(nets[key], [p.stylized for p in scored], desc=f"{key}: stylized", **kw)
        f_uni = inception_features(nets[key], styles, desc=f"{key}: styles", **kw)
        row_of = {s: i for i, s in enumerate(styles)}
        f_sty = f_uni[[row_of[p.style] for p in scored]] if style_set == "pairs" else f_uni
        metrics[key] = fid_from_features(f_out, f_sty)
        if key == "fid" and o.fid_inf:
            if style_set != "pairs" or len(scored) < 4:
                skipped["fid_inf"] = "needs the 'pairs' style set and at least 4 scored pairs"
            else:
                metrics["fid_inf"], _ = fid_infinity(f_out, f_sty, num_points=o.fid_inf_points)
    return metrics


def protocol_variant(mode: str, size: int, style_set: str, n_style: int) -> str:
    """One sentence naming what was computed, for report.md / report.json."""
    styles = (
        f"FID style set: the style image of every scored pair ({n_style} images, as Mamba-ST's "
        "copy_inputs.py lays them out)"
        if style_set == "pairs"
        else f"FID style set: each style image once ({n_style} images)"
    )
    if mode == "paper":
        return (
            f"paper: StyleID's eval_artfid.py as the Mamba-ST paper ran it -- FID, LPIPS, LPIPS_gray on images "
            f"resized to short side {size} without crop, CFSD on the images as stored; {styles}; "
            "FID is what that script prints as FID (its FID_inf path reduces to plain FID)"
        )
    return f"native: images as stored (art-fid package conventions), no resize; {styles}"


def score(
    pairing: Pairing, networks: Networks, options: EvalOptions, failed_before: Sequence[Sequence[str]] = ()
) -> Report:
    """Score every pair of `pairing` with the metrics of `networks` under `options` -> Report.

    Reads the images, runs the networks, writes nothing and leaves `networks` as it was. failed_before:
    [name, reason] failures of an earlier step (stylizing), reported first among the failed pairs.
    """
    start = time.perf_counter()
    nets, skipped = usable_networks(networks, options.mode, options.size)
    if not options.fid_inf:  # an extra that was not asked for is not "skipped"
        skipped.pop("fid_inf", None)
    rows, failed = _pair_metrics(nets, pairing.pairs, options)
    bad = {name for name, _ in failed}
    scored = [p for p in pairing.pairs if p.stylized.name not in bad]
    metrics = _fid_metrics(nets, scored, options, skipped)
    for key in PER_PAIR:
        values = [r[key] for r in rows if key in r]
        if values:
            metrics[key] = float(np.mean(values))
    if "fid" in metrics and "lpips" in metrics:
        metrics["artfid"] = artfid(metrics["fid"], metrics["lpips"])
    for key in nets:
        for m in METRICS_OF[key]:
            if m not in metrics and (m != "fid_inf" or options.fid_inf):
                skipped.setdefault(m, "no pair could be scored (see failed)")
    failed = [list(f) for f in failed_before] + failed
    styles_scored = {p.style for p in scored}
    style_set = options.style_set
    return Report(
        mode=options.mode,
        size=options.size,
        fid_style_set=style_set,
        protocol=protocol_variant(
            options.mode, options.size, style_set, len(scored) if style_set == "pairs" else len(styles_scored)
        ),
        metrics={k: metrics[k] for k in ORDER if k in metrics},
        skipped={k: skipped[k] for k in ORDER if k in skipped and k not in metrics},
        weights=networks.used,
        counts={
            "pairs": len(rows),
            "found": len(pairing.pairs),
            "contents": len({p.content for p in scored}),
            "styles": len(styles_scored),
            "unmatched": len(pairing.unmatched),
            "missing": len(pairing.missing),
            "failed": len(failed),
        },
        unmatched=[str(p) for p in pairing.unmatched],
        missing=[f"{c}_stylized_{s}" for c, s in pairing.missing],
        failed=failed,
        per_pair=rows,
        seconds=round(time.perf_counter() - start, 2),
    )
