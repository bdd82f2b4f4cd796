"""`mambast.stylize`: one pair (or one content with several styles), PIL images or paths in, a PIL image out.
A thin wrapper over the inference engine (`mambast.inference.Stylizer`); folder runs: `stylize_pairs`."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from ..errors import UserError
from ..images import to_pil, to_tensor
from ..model import MambaST
from .controls import Controls
from .engine import ImageLike, Stylizer
from .naming import output_name

__all__ = ["stylize", "stylize_pairs", "StylizeReport", "output_name"]


def stylize(model: MambaST, content: ImageLike, style: ImageLike | Sequence[ImageLike], size: int | None = 512,
            seed: int | None = None, shuffle: bool = True, *, alpha: float = 1.0,
            style_weights: Sequence[float] | None = None, preserve_color: str | None = None,
            style_size: int | None = None, mask: ImageLike | None = None,
            max_pixels: int | None = None) -> Image.Image:
    """Stylize one content; returns an RGB PIL image of the (resized) content's size.

    style: one image, or several mixed by `style_weights` or spread over the regions of `mask`. Controls:
    see `mambast.inference.Controls` (alpha, style_weights, preserve_color, style_size, mask, shuffle, seed).
    max_pixels: refuse a planned content size above this (None: the engine's default limit).
    """
    controls = Controls(alpha=alpha, style_weights=None if style_weights is None else tuple(style_weights),
                        preserve_color=preserve_color, style_size=style_size, mask=mask, shuffle=shuffle,
                        seed=seed)
    kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
    return Stylizer(model, size=size, **kwargs).stylize(content, style, controls)


@dataclass
class StylizeReport:
    """What `stylize_pairs` did: files written and (pair, reason) failures."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def stylize_pairs(model: MambaST, contents: list[Path], styles: list[Path], output_dir: str | Path,
                  size: int | None = 512, seed: int | None = None, shuffle: bool = True,
                  progress: bool = True, on_error=None, controls: Controls | None = None) -> StylizeReport:
    """Stylize every content x style pair into `output_dir/{content}_stylized_{style}.png`.

    Each content and each style is encoded once (N + M encoder passes, not N x M). A bad input skips its
    pairs (reason recorded, `on_error(message)` called) and the rest go on; inputs are never overwritten.
    """
    controls = controls or Controls(shuffle=shuffle, seed=seed)
    engine = Stylizer(model, size=size, style_cache=max(16, len(styles)))
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    inputs = {Path(p).resolve() for p in [*contents, *styles]}
    report, seen = StylizeReport(), set()

    def fail(pair: str, reason: str):
        report.failed.append((pair, reason))
        if on_error:
            on_error(reason)

    bar = tqdm(total=len(contents) * len(styles), desc="stylize", unit="img", disable=not progress)
    with contextlib.closing(bar):
        for content in contents:
            try:
                content_img = engine.prepare_content(content)
                encoded = engine.encode_content(to_tensor(content_img)[None])
            except UserError as e:
                for style in styles:
                    fail(output_name(content, style), str(e))
                bar.update(len(styles))
                continue
            padded_hw = engine.grid(*content_img.size)
            for style in styles:
                name = output_name(content, style)
                target = out / name
                try:
                    if target.resolve() in inputs:
                        raise UserError(f"{target}: refusing to overwrite an input image")
                    if name in seen:
                        raise UserError(f"{target}: two inputs share this name (same file stems)")
                    tokens = engine.style_tokens(style, padded_hw, controls, encoded.image[0])
                    to_pil(engine.render(encoded, [tokens], controls)[0]).save(target)
                    seen.add(name)
                    report.written.append(target)
                except UserError as e:
                    fail(name, str(e))
                bar.update(1)
    return report
