"""Pairing stylized images with their content and style images by name, never by sort order alone.

A stylized image is named ``{content_stem}_stylized_{style_stem}.{ext}`` (what `mambast.stylize` writes and
the StyleID / Mamba-ST protocol uses). Stems may themselves contain "_stylized_": every split point is
tried and
exactly one must name a known content stem and a known style stem.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mambast.errors import UserError
from mambast.inference.naming import SEPARATOR

__all__ = ["Pair", "Pairing", "pair_by_name"]

SEP = SEPARATOR  # the one spelling, mambast.inference.naming


@dataclass(frozen=True)
class Pair:
    """One stylized image with the content and style images it was made from."""

    stylized: Path
    content: Path
    style: Path


@dataclass
class Pairing:
    """Result of :func:`pair_by_name`: pairs (sorted by content, then style), plus what did not match."""

    pairs: list[Pair] = field(default_factory=list)
    unmatched: list[Path] = field(default_factory=list)  # stylized files naming no known content/style
    missing: list[tuple[str, str]] = field(default_factory=list)  # (content, style) with no stylized file


def _index(paths: Sequence[Path], what: str) -> dict[str, Path]:
    index: dict[str, Path] = {}
    for p in paths:
        if p.stem in index:
            raise UserError(f"two {what} images share the name {p.stem!r}: {index[p.stem]} and {p}")
        index[p.stem] = p
    return index


def split_name(stem: str, contents: Sequence[str] | set[str], styles: Sequence[str] | set[str]) -> tuple[str, str]:
    """``"{c}_stylized_{s}"`` -> (c, s) with c in `contents` and s in `styles` (else UserError)."""
    hits = []
    start = stem.find(SEP)
    while start >= 0:
        c, s = stem[:start], stem[start + len(SEP) :]
        if c in contents and s in styles:
            hits.append((c, s))
        start = stem.find(SEP, start + 1)
    if len(hits) != 1:
        why = "matches no" if not hits else "is ambiguous between"
        raise UserError(f"stylized name {stem!r} {why} content/style names ({hits})")
    return hits[0]


def pair_by_name(stylized: Sequence[Path], contents: Sequence[Path], styles: Sequence[Path]) -> Pairing:
    """Match every stylized file to its content and style file by name (any input order)."""
    cidx, sidx = _index(contents, "content"), _index(styles, "style")
    out = Pairing()
    seen: dict[tuple[str, str], Path] = {}
    for path in stylized:
        try:
            c, s = split_name(path.stem, cidx.keys(), sidx.keys())
        except UserError:
            out.unmatched.append(path)
            continue
        if (c, s) in seen:
            raise UserError(f"two stylized images for ({c}, {s}): {seen[(c, s)]} and {path}")
        seen[(c, s)] = path
    out.pairs = [Pair(seen[k], cidx[k[0]], sidx[k[1]]) for k in sorted(seen)]
    out.missing = [(c, s) for c in sorted(cidx) for s in sorted(sidx) if (c, s) not in seen]
    return out
