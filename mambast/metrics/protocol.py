"""The evaluation protocol: stylize every content x style pair (optional), then score the stylized images.

`evaluate` scores any method's outputs named ``{content}_stylized_{style}.{ext}`` against the content and style
folders with every metric whose weights are available and writes report.json, report.md and
contact_sheet.png. `run_protocol` first stylizes every pair with a Mamba-ST checkpoint.

"paper" mode reproduces StyleID's `evaluation/eval_artfid.py` run on the inputs Mamba-ST's `copy_inputs.py`
makes (see `metrics.preprocess` and docs/evaluation.md); "native" follows the art-fid package.

Robustness: an unreadable stylized, content or style image fails its pairs (listed in the report with the
reason) and is kept out of every metric; the others are still scored and the report is still written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from mambast.errors import UserError
from mambast.fs import atomic_write, ensure_dir
from mambast.images import ImageError, load_image
from mambast.inference.naming import output_name

from . import report as rep
from .artfid import artfid
from .cfsd import cfsd
from .fid import fid_from_features, fid_infinity, inception_features, min_side
from .losses import paper_losses
from .pairing import Pair, list_image_files, pair_by_name
from .preprocess import MODES, apply_mode, fit_to, gray, protocol_input, to_tensor
from .weights import resolve, sha256_file

__all__ = ["EvalWeights", "Networks", "evaluate", "load_networks", "run_protocol", "STYLE_SETS"]

STYLE_SETS = ("pairs", "unique")  # FID style set: one style image per scored pair (copy_inputs.py) / each once
ORDER = ("artfid", "fid", "lpips", "lpips_gray", "cfsd", "fid_inf", "content_loss", "style_loss", "fid_imagenet")
LPIPS_MIN_SIDE = 31  # AlexNet's smallest input (11x11/4 conv and two 3x3/2 pools)
LOSSES_MIN_SIDE = 17  # vgg_normalised down to relu5_1 (four ceil-mode pools)


@dataclass
class EvalWeights:
    """Weight-file paths given by the user (None: look in `folder`; missing: metric skipped)."""

    inception: str | Path | None = None  # art_inception.pth -> fid, artfid
    lpips_alexnet: str | Path | None = None  # AlexNet backbone -> lpips, lpips_gray, artfid
    lpips_heads: str | Path | None = None  # lpips v0.1 alex.pth
    vgg19: str | Path | None = None  # torchvision VGG-19 -> cfsd
    vgg: str | Path | None = None  # vgg_normalised.pth -> content_loss, style_loss
    fid_inception: str | Path | None = None  # pytorch-fid / torchvision Inception -> fid_imagenet
    folder: str | Path | None = None


@dataclass
class Networks:
    """The loaded metric networks: nets {"fid" | "lpips" | "cfsd" | "losses" | "fid_imagenet": module},
    skipped {metric: why}, used {weight name: {"path", "sha256"}}."""

    nets: dict[str, torch.nn.Module] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    used: dict[str, dict[str, str]] = field(default_factory=dict)


METRICS_OF = {
    "fid": ("fid", "fid_inf", "artfid"),
    "lpips": ("lpips", "lpips_gray", "artfid"),
    "cfsd": ("cfsd",),
    "losses": ("content_loss", "style_loss"),
    "fid_imagenet": ("fid_imagenet",),
}


def load_networks(weights: EvalWeights | None, device: str | torch.device = "cpu") -> Networks:
    """Load each metric network whose weight files are found (UserError for a bad or empty file)."""
    from mambast.nets.inception import load_inception
    from mambast.nets.lpips_net import load_lpips
    from mambast.nets.vgg import load_vgg

    w = weights or EvalWeights()
    out = Networks()

    def want(key: str, names: tuple[str, ...], explicit: tuple, loader: Callable) -> None:
        paths = []
        for name, path in zip(names, explicit, strict=True):
            found, why = resolve(name, path, w.folder)
            if found is None:
                for m in METRICS_OF[key]:
                    out.skipped.setdefault(m, why if m != "artfid" else f"needs {key}: {why}")
                return
            paths.append(found)
        out.nets[key] = loader(*paths)
        for name, path in zip(names, paths, strict=True):
            out.used[name] = {"path": str(path), "sha256": sha256_file(path)}

    want("fid", ("art_inception",), (w.inception,), lambda p: load_inception(p, "auto", device))
    want(
        "lpips",
        ("lpips_alexnet", "lpips_heads"),
        (w.lpips_alexnet, w.lpips_heads),
        lambda a, h: load_lpips(a, h, device),
    )
    want("cfsd", ("vgg19",), (w.vgg19,), lambda p: load_vgg(p, layout="vgg19", device=device))
    want("losses", ("vgg_normalised",), (w.vgg,), lambda p: load_vgg(p, layout="vgg_normalised", device=device))
    want("fid_imagenet", ("pt_inception",), (w.fid_inception,), lambda p: load_inception(p, "auto", device))
    return out


def check_options(
    mode: str,
    size: int,
    batch_size: int,
    cfsd_chunk: int,
    contact_cell: int,
    fid_style_set: str | None,
    fid_inf_points: int,
) -> None:
    """UserError naming the first invalid argument (library names; the CLI checks its flags itself)."""
    if mode not in MODES:
        raise UserError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if fid_style_set is not None and fid_style_set not in STYLE_SETS:
        raise UserError(f"fid_style_set must be one of {', '.join(STYLE_SETS)}, got {fid_style_set!r}")
    for name, value, low in (
        ("size", size, 1),
        ("batch_size", batch_size, 1),
        ("cfsd_chunk", cfsd_chunk, 1),
        ("contact_cell", contact_cell, 8),
        ("fid_inf_points", fid_inf_points, 2),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UserError(f"{name} must be an integer >= {low}, got {value!r}")


def _size_skips(nets: Networks, mode: str, size: int) -> None:
    """In "paper" mode every FID / LPIPS / loss input has short side `size`: drop the metrics whose network
    cannot take that, with the reason, before any work."""
    if mode != "paper":
        return
    needs = {"lpips": LPIPS_MIN_SIDE, "losses": LOSSES_MIN_SIDE}
    for key in ("fid", "fid_imagenet"):
        if key in nets.nets:
            needs[key] = min_side(nets.nets[key])
    for key, smallest in needs.items():
        if key in nets.nets and size < smallest:
            del nets.nets[key]
            for m in METRICS_OF[key]:
                why = f"size {size} is below the {smallest} px its network needs (short side, paper mode)"
                nets.skipped[m] = why if m != "artfid" else f"needs {key}: {why}"


class _Images:
    """Decoded input images by path (mambast.images.load_image), remembering which ones are unreadable."""

    def __init__(self) -> None:
        self.cache: dict[Path, Image.Image | ImageError] = {}

    def get(self, path: Path, keep: bool = True) -> Image.Image:
        got = self.cache.get(path)
        if got is None:
            try:
                got = load_image(path)
            except ImageError as e:
                got = e
            if keep or isinstance(got, ImageError):
                self.cache[path] = got
        if isinstance(got, ImageError):
            raise got
        return got


def _score_pair(nets: dict, pair: Pair, images: _Images, mode: str, size: int, device, chunk: int) -> dict:
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


def _pair_metrics(nets: dict, pairs: list[Pair], mode: str, size: int, device, chunk: int, progress: bool):
    """Read every pair's three images and compute the per-pair metrics -> (rows, failed [[name, reason]])."""
    rows: list[dict] = []
    failed: list[list[str]] = []
    images = _Images()
    with torch.no_grad():
        for pair in tqdm(pairs, desc="pair metrics", unit="pair", disable=not progress, leave=False):
            try:
                rows.append(_score_pair(nets, pair, images, mode, size, device, chunk))
            except (UserError, ValueError, RuntimeError) as exc:
                lines = [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
                failed.append([pair.stylized.name, lines[0][:300]])
    return rows, failed


def _fid_metrics(
    nets: dict,
    scored: list[Pair],
    mode: str,
    size: int,
    style_set: str,
    fid_inf: bool,
    fid_inf_points: int,
    batch_size: int,
    device,
    progress: bool,
    skipped: dict,
) -> dict[str, float]:
    """FID (and FID_inf, FID on the ImageNet Inception) of the scored pairs' stylized images vs their styles."""
    metrics: dict[str, float] = {}
    kw = dict(mode=mode, size=size, batch_size=batch_size, device=device, progress=progress)
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
        if key == "fid" and fid_inf:
            if style_set != "pairs" or len(scored) < 4:
                skipped["fid_inf"] = "needs the 'pairs' style set and at least 4 scored pairs"
            else:
                metrics["fid_inf"], _ = fid_infinity(f_out, f_sty, num_points=fid_inf_points)
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
    cfsd_chunk: int = 256,
    contact_cell: int = 128,
    progress: bool = True,
    extra: dict | None = None,
    fid_style_set: str | None = None,
    fid_inf: bool = False,
    fid_inf_points: int = 15,
    networks: Networks | None = None,
    stylized_files: Sequence[Path] | None = None,
    failed_before: Sequence[Sequence[str]] = (),
) -> dict:
    """Score a stylized folder against content and style folders; write the reports into `out_dir`.

    fid_style_set: "pairs" (one style image per scored pair, the protocol's 20 x 40 = 800) or "unique"; default
    "pairs" in "paper" mode, "unique" in "native" mode. fid_inf: also FID_inf (an extra, see `fid_infinity`).
    networks: already loaded networks (`load_networks`); stylized_files: score these instead of listing
    `stylized_dir`; failed_before: [name, reason] failures of an earlier step (stylizing), reported as failed.
    Returns the report dict (also out_dir/report.json): metrics, skipped {metric: reason}, weights used with
    SHA-256, per-pair values, unmatched / missing / failed files, counts ("pairs" = pairs scored), timings.
    """
    check_options(mode, size, batch_size, cfsd_chunk, contact_cell, fid_style_set, fid_inf_points)
    style_set = fid_style_set or ("pairs" if mode == "paper" else "unique")
    start = time.perf_counter()
    out_dir = ensure_dir(out_dir)
    files = list(stylized_files) if stylized_files is not None else list_image_files(stylized_dir)
    pairing = pair_by_name(files, list_image_files(content_dir), list_image_files(style_dir))
    if not pairing.pairs and not failed_before:
        raise UserError(f"no file in {stylized_dir} is named {{content}}_stylized_{{style}} after the given images")
    nets = networks if networks is not None else load_networks(weights, device)
    _size_skips(nets, mode, size)
    skipped = dict(nets.skipped)
    rows, failed = _pair_metrics(nets.nets, pairing.pairs, mode, size, device, cfsd_chunk, progress)
    bad = {name for name, _ in failed}
    scored = [p for p in pairing.pairs if p.stylized.name not in bad]
    metrics = _fid_metrics(
        nets.nets, scored, mode, size, style_set, fid_inf, fid_inf_points, batch_size, device, progress, skipped
    )
    for key in ("lpips", "lpips_gray", "cfsd", "content_loss", "style_loss"):
        values = [r[key] for r in rows if key in r]
        if values:
            metrics[key] = float(np.mean(values))
    if "fid" in metrics and "lpips" in metrics:
        metrics["artfid"] = artfid(metrics["fid"], metrics["lpips"])
    for key in nets.nets:
        for m in METRICS_OF[key]:
            if m not in metrics and (m != "fid_inf" or fid_inf):
                skipped.setdefault(m, "no pair could be scored (see failed)")
    failed = [list(f) for f in failed_before] + failed
    styles_scored = {p.style for p in scored}
    report = {
        **(extra or {}),
        "stylized_dir": str(stylized_dir),
        "content_dir": str(content_dir),
        "style_dir": str(style_dir),
        "mode": mode,
        "size": size,
        "fid_style_set": style_set,
        "protocol": protocol_variant(
            mode, size, style_set, len(scored) if style_set == "pairs" else len(styles_scored)
        ),
        "metrics": {k: metrics[k] for k in ORDER if k in metrics},
        "skipped": {k: skipped[k] for k in ORDER if k in skipped and k not in metrics},
        "weights": nets.used,
        "counts": {
            "pairs": len(rows),
            "found": len(pairing.pairs),
            "contents": len({p.content for p in scored}),
            "styles": len(styles_scored),
            "unmatched": len(pairing.unmatched),
            "missing": len(pairing.missing),
            "failed": len(failed),
        },
        "unmatched": [str(p) for p in pairing.unmatched],
        "missing": [f"{c}_stylized_{s}" for c, s in pairing.missing],
        "failed": failed,
        "per_pair": rows,
    }
    rep.contact_sheet(pairing.pairs, out_dir / "contact_sheet.png", cell=contact_cell, failed=bad)
    report["seconds"] = round(time.perf_counter() - start, 2)
    rep.write_json(report, out_dir / "report.json")
    rep.write_markdown(report, out_dir / "report.md")
    return report


def _stylizer(model, size: int | None):
    """The stylization engine eval uses (one per run, so style encodings are cached across contents)."""
    from mambast.inference import Stylizer

    return Stylizer(model, size=size)


def _stylize_one(stylizer, content: Image.Image, style: Image.Image, seed, shuffle) -> Image.Image:
    """One stylized image (the single call into the stylization engine)."""
    from mambast.inference import Controls

    return stylizer.stylize(content, style, Controls(shuffle=shuffle, seed=seed))


def stylize_all(
    model,
    contents: list[Path],
    styles: list[Path],
    out: Path,
    mode: str,
    size: int,
    seed: int | None,
    shuffle: bool,
    fmt: str,
    progress: bool,
) -> tuple[list[Path], list[list[str]]]:
    """Stylize every content x style pair into `out` as ``{c}_stylized_{s}.{fmt}`` -> (written, failed).

    "paper": content and style each resized (short side `size`) and centre-cropped to size x size, as
    Mamba-ST's eval.py feeds them; "native": the stylizer's own size policy (content short side `size`).
    fmt "jpg" is written as the protocol does (PIL JPEG, quality 75), "png" losslessly. A bad input fails its
    pairs ([name, reason]); every file is written atomically; an input is never overwritten.
    """
    ensure_dir(out)
    inputs = {p.resolve() for p in [*contents, *styles]}
    images, written, failed = _Images(), [], []
    prepared: dict[Path, Image.Image] = {}  # the same PIL object per input, so the engine's style cache hits
    stylizer = _stylizer(model, None if mode == "paper" else size)

    def prep(path: Path) -> Image.Image:
        if path not in prepared:
            img = images.get(path)
            prepared[path] = protocol_input(img, size) if mode == "paper" else img
        return prepared[path]

    pil_format, options = ("JPEG", {"quality": 75}) if fmt == "jpg" else ("PNG", {})
    bar = tqdm(total=len(contents) * len(styles), desc="stylize", unit="img", disable=not progress, leave=False)
    for content in contents:
        for style in styles:
            name = output_name(content, style, fmt)
            bar.update(1)
            try:
                if (out / name).resolve() in inputs:
                    raise UserError(f"{out / name}: refusing to overwrite an input image")
                result = _stylize_one(stylizer, prep(content), prep(style), seed, shuffle)
                atomic_write(out / name, lambda f, im=result: im.save(f, format=pil_format, **options))
                written.append(out / name)
            except UserError as e:
                failed.append([name, str(e).splitlines()[0] if str(e) else type(e).__name__])
    bar.close()
    return written, failed


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
    mode: str = "paper",
    stylized_format: str | None = None,
    weights: EvalWeights | None = None,
    **eval_kw,
) -> dict:
    """Stylize every content x style pair with `checkpoint` into out_dir/stylized, then `evaluate` those files.

    The metric networks are loaded first (a bad weight file stops the run before any stylizing).
    stylized_format: "jpg" (default in "paper" mode: what the published evaluation writes) or "png".
    """
    import mambast

    fmt = stylized_format or ("jpg" if mode == "paper" else "png")
    if fmt not in ("jpg", "png"):
        raise UserError(f"stylized_format must be 'jpg' or 'png', got {fmt!r}")
    check_options(
        mode,
        size,
        eval_kw.get("batch_size", 1),
        eval_kw.get("cfsd_chunk", 1),
        eval_kw.get("contact_cell", 8),
        eval_kw.get("fid_style_set"),
        eval_kw.get("fid_inf_points", 2),
    )
    out_dir = Path(out_dir)
    contents, styles = list_image_files(content_dir), list_image_files(style_dir)
    networks = load_networks(weights, device)
    _size_skips(networks, mode, size)
    model = mambast.load(checkpoint, device=device)
    start = time.perf_counter()
    written, failed = stylize_all(
        model, contents, styles, out_dir / "stylized", mode, size, seed, shuffle, fmt, progress
    )
    extra = {
        "checkpoint": str(checkpoint),
        "stylize": {
            "seconds": round(time.perf_counter() - start, 2),
            "written": len(written),
            "seed": seed,
            "shuffle": shuffle,
            "format": fmt,
            "failed": failed,
        },
    }
    return evaluate(
        out_dir / "stylized",
        content_dir,
        style_dir,
        out_dir,
        mode=mode,
        size=size,
        device=device,
        progress=progress,
        extra=extra,
        networks=networks,
        stylized_files=written,
        failed_before=failed,
        **eval_kw,
    )
