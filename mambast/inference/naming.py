"""Output names, in one place: `{content}_stylized_{style}.{ext}`, the naming the metric scripts of this field
(StyleID's eval, art-fid) expect, and the parser that pairs such files back with their inputs."""

from __future__ import annotations

from pathlib import Path

SEPARATOR = "_stylized_"


def output_name(content: str | Path, style: str | Path, ext: str = "png") -> str:
    """`{content_stem}_stylized_{style_stem}.{ext}`."""
    return f"{Path(content).stem}{SEPARATOR}{Path(style).stem}.{ext.lstrip('.')}"


def candidate_splits(name: str | Path) -> list[tuple[str, str]]:
    """Every (content_stem, style_stem) an output name could come from: stems may themselves contain the
    separator, so each occurrence is a candidate; the caller keeps the one naming known inputs."""
    stem = Path(name).stem
    out, start = [], 0
    while (i := stem.find(SEPARATOR, start)) >= 0:
        if i and i + len(SEPARATOR) < len(stem):
            out.append((stem[:i], stem[i + len(SEPARATOR):]))
        start = i + 1
    return out
