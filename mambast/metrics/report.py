"""Writing an evaluation's results: report.json (everything), report.md (summary table), contact sheet PNG.

Every file is written atomically (`mambast.fs`); images are read by `mambast.images` only, and an unreadable
one becomes a blank cell of the contact sheet, never an error.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from mambast.fs import atomic_write, atomic_write_text, ensure_dir
from mambast.images import ImageError, load_image

from .pairing import Pair

__all__ = ["write_report", "write_json", "write_markdown", "contact_sheet", "format_value", "METRIC_NOTES"]

METRIC_NOTES = {
    "artfid": "ArtFID = (1 + LPIPS) * (1 + FID), lower is better",
    "fid": "FID stylized vs style images, art-tuned Inception (art_inception.pth)",
    "lpips": "LPIPS-AlexNet v0.1, stylized vs content, mean over pairs",
    "lpips_gray": "LPIPS-AlexNet v0.1 on the grayscale (PIL 'L') images, mean over pairs",
    "cfsd": "CFSD: VGG-19 relu3_1 self-similarity (F/C)^T(F/C), row softmax, KL content -> stylized summed "
            "over rows, mean over pairs",
    "fid_inf": "FID_inf (Chong & Forsyth): FID_N on random subsets extrapolated to 1/N = 0 (an extra)",
    "content_loss": "paper content loss (vgg_normalised relu4_1 + relu5_1), mean over pairs",
    "style_loss": "paper style loss (vgg_normalised mean/std, 5 layers), mean over pairs",
    "fid_imagenet": "FID stylized vs style images, ImageNet Inception (pytorch-fid / torchvision weights)",
}  # fmt: skip


def format_value(value: float) -> str:
    """4 decimals, or 4 significant digits for values below 0.01 (never a misleading 0.0000)."""
    return f"{value:.4f}" if value == 0 or abs(value) >= 0.01 else f"{value:.4g}"


def write_json(report: Mapping, path: Path) -> None:
    """Write the full report dict as indented JSON (atomically)."""
    atomic_write_text(path, json.dumps(report, indent=2, default=str) + "\n")


def write_markdown(report: Mapping, path: Path) -> None:
    """Write a short Markdown summary: protocol, the metric table, what was skipped and why, the counts."""
    counts = report["counts"]
    lines = ["# mambast evaluation", ""]
    lines += [f"- protocol: {report.get('protocol', report['mode'])}"]
    lines += [f"- stylized: `{report.get('stylized_dir')}`; pairs scored: {counts['pairs']} of {counts['found']}"
              f" found, {counts['failed']} failed"]  # fmt: skip
    if report.get("checkpoint"):
        fmt = report.get("stylize", {}).get("format", "")
        lines += [f"- checkpoint: `{report['checkpoint']}` (stylized files written as {fmt})"]
    if report["metrics"]:
        lines += ["", "| metric | value | definition |", "|---|---|---|"]
        for name, value in report["metrics"].items():
            lines.append(f"| {name} | {format_value(value)} | {METRIC_NOTES.get(name, '')} |")
    else:
        lines += ["", "No metric could be computed (see Skipped)."]
    if report["skipped"]:
        lines += ["", "Skipped:", ""]
        lines += [f"- **{name}**: {why}" for name, why in report["skipped"].items()]
    for key, title in (
        ("failed", "Failed pairs (kept out of every metric)"),
        ("unmatched", "Stylized files matching no content/style name"),
    ):
        items = report.get(key) or []
        if items:
            lines += ["", f"{title} ({len(items)}):", ""]
            lines += [f"- `{item[0]}`: {item[1]}" if isinstance(item, list | tuple) else f"- `{item}`"
                      for item in items[:20]]  # fmt: skip
            if len(items) > 20:
                lines += [f"- ... {len(items) - 20} more in report.json"]
    if counts.get("missing"):
        lines += ["", f"Pairs without a stylized image: {counts['missing']}"]
    atomic_write_text(path, "\n".join(lines) + "\n")


def write_report(report: Mapping, pairs: Sequence[Pair], out_dir: str | Path, contact_cell: int = 128) -> Path:
    """Write `report` (a `Report.as_dict()`) into `out_dir` (made if missing) -> out_dir: report.json,
    report.md and contact_sheet.png of `pairs`, its failed pairs crossed out (cells of contact_cell px)."""
    out_dir = ensure_dir(out_dir)
    failed = {item[0] for item in report["failed"]}
    contact_sheet(pairs, out_dir / "contact_sheet.png", cell=contact_cell, failed=failed)
    write_json(report, out_dir / "report.json")
    write_markdown(report, out_dir / "report.md")
    return out_dir


def _thumb(path: Path | None, cell: int, failed: bool = False) -> Image.Image:
    """A cell x cell tile: the image fitted in, or dark grey (a red cross when unreadable / failed)."""
    tile = Image.new("RGB", (cell, cell), (40, 40, 40))
    img = None
    if path is not None and not failed:
        try:
            img = load_image(path)
        except ImageError:
            failed = True
    if img is None:
        if failed:
            draw = ImageDraw.Draw(tile)
            draw.line((0, 0, cell, cell), fill=(200, 40, 40), width=2)
            draw.line((0, cell, cell, 0), fill=(200, 40, 40), width=2)
        return tile
    img.thumbnail((cell, cell), Image.BILINEAR)
    tile.paste(img, ((cell - img.size[0]) // 2, (cell - img.size[1]) // 2))
    return tile


def contact_sheet(
    pairs: Sequence[Pair], path: Path, cell: int = 128, pad: int = 4, failed: Collection[str] = ()
) -> Path:
    """Grid PNG: rows = content images (first column), columns = styles (first row), cells = stylized.

    failed: stylized file names to draw as crossed-out cells (their files are not read).
    """
    contents = sorted({p.content for p in pairs}, key=lambda p: p.stem)
    styles = sorted({p.style for p in pairs}, key=lambda p: p.stem)
    by_key = {(p.content, p.style): p.stylized for p in pairs}
    step = cell + pad
    sheet = Image.new("RGB", (pad + step * (len(styles) + 1), pad + step * (len(contents) + 1)), (255, 255, 255))
    for j, s in enumerate(styles):
        sheet.paste(_thumb(s, cell), (pad + step * (j + 1), pad))
    for i, c in enumerate(contents):
        y = pad + step * (i + 1)
        sheet.paste(_thumb(c, cell), (pad, y))
        for j, s in enumerate(styles):
            out = by_key.get((c, s))
            sheet.paste(_thumb(out, cell, out is not None and out.name in failed), (pad + step * (j + 1), y))
    ImageDraw.Draw(sheet).text((pad + 2, pad + 2), "content \\ style", fill=(0, 0, 0))
    atomic_write(path, lambda f: sheet.save(f, format="PNG"))
    return path
