"""Writing an evaluation's results: report.json (everything), report.md (summary table), contact sheet PNG."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from .pairing import Pair
from .preprocess import load_rgb

__all__ = ["write_json", "write_markdown", "contact_sheet", "METRIC_NOTES"]

METRIC_NOTES = {
    "artfid": "ArtFID = (1 + LPIPS) * (1 + FID), lower is better",
    "fid": "FID stylized vs style images, art-tuned Inception (art_inception.pth)",
    "lpips": "LPIPS-AlexNet v0.1, stylized vs content, mean over pairs",
    "cfsd": "CFSD, VGG-19 relu3_1 self-similarity KL content -> stylized, mean over pairs",
    "content_loss": "paper content loss (vgg_normalised relu4_1 + relu5_1), mean over pairs",
    "style_loss": "paper style loss (vgg_normalised mean/std, 5 layers), mean over pairs",
    "fid_imagenet": "FID stylized vs style images, ImageNet Inception (pytorch-fid / torchvision weights)",
}


def write_json(report: Mapping, path: Path) -> None:
    """Write the full report dict as indented JSON."""
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")


def write_markdown(report: Mapping, path: Path) -> None:
    """Write a short Markdown summary: the metric table, what was skipped and why, the counts."""
    lines = ["# mambast evaluation", ""]
    lines += [f"- stylized: `{report.get('stylized_dir')}`, pairs scored: {report['counts']['pairs']}"]
    lines += [
        f"- preprocessing: `{report['mode']}`"
        + (f" (size {report['size']})" if report["mode"] == "paper" else "")
    ]
    if report.get("checkpoint"):
        lines += [f"- checkpoint: `{report['checkpoint']}`"]
    if report["metrics"]:
        lines += ["", "| metric | value | definition |", "|---|---|---|"]
        for name, value in report["metrics"].items():
            lines.append(f"| {name} | {value:.4f} | {METRIC_NOTES.get(name, '')} |")
    else:
        lines += ["", "No metric could be computed: no weight files were found (see Skipped)."]
    if report["skipped"]:
        lines += ["", "Skipped:", ""]
        lines += [f"- **{name}**: {why}" for name, why in report["skipped"].items()]
    for key, title in (
        ("unmatched", "Stylized files matching no content/style name"),
        ("failed", "Failed pairs"),
    ):
        if report.get(key):
            lines += ["", f"{title} ({len(report[key])}):", ""]
            lines += [f"- `{item}`" for item in report[key][:20]]
    if report["counts"].get("missing"):
        lines += ["", f"Pairs without a stylized image: {report['counts']['missing']}"]
    path.write_text("\n".join(lines) + "\n")


def _thumb(path: Path | None, cell: int) -> Image.Image:
    tile = Image.new("RGB", (cell, cell), (40, 40, 40))
    if path is None:
        return tile
    img = load_rgb(path)
    img.thumbnail((cell, cell), Image.BILINEAR)
    tile.paste(img, ((cell - img.size[0]) // 2, (cell - img.size[1]) // 2))
    return tile


def contact_sheet(pairs: Sequence[Pair], path: Path, cell: int = 128, pad: int = 4) -> Path:
    """Grid PNG: rows = content images (first column), columns = styles (first row), cells = stylized."""
    contents = sorted({p.content for p in pairs}, key=lambda p: p.stem)
    styles = sorted({p.style for p in pairs}, key=lambda p: p.stem)
    by_key = {(p.content, p.style): p.stylized for p in pairs}
    step = cell + pad
    sheet = Image.new(
        "RGB", (pad + step * (len(styles) + 1), pad + step * (len(contents) + 1)), (255, 255, 255)
    )
    for j, s in enumerate(styles):
        sheet.paste(_thumb(s, cell), (pad + step * (j + 1), pad))
    for i, c in enumerate(contents):
        y = pad + step * (i + 1)
        sheet.paste(_thumb(c, cell), (pad, y))
        for j, s in enumerate(styles):
            sheet.paste(_thumb(by_key.get((c, s)), cell), (pad + step * (j + 1), y))
    ImageDraw.Draw(sheet).text((pad + 2, pad + 2), "content \\ style", fill=(0, 0, 0))
    sheet.save(path)
    return path
