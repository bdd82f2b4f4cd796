"""Output names, in one place: `{content}_stylized_{style}.{ext}`, the naming the metric scripts of this field
(StyleID's eval, art-fid) expect (metrics/pairing.py pairs such files back with their inputs)."""

from __future__ import annotations

from pathlib import Path

SEPARATOR = "_stylized_"


def output_name(content: str | Path, style: str | Path, ext: str = "png") -> str:
    """`{content_stem}_stylized_{style_stem}.{ext}`."""
    return f"{Path(content).stem}{SEPARATOR}{Path(style).stem}.{ext.lstrip('.')}"

