"""High-level stylization: PIL images or paths in, PIL images or files out.

Size policy: the content keeps its size and aspect (optionally first resized so its short side is `size`);
inside the model it is reflection-padded to a multiple of the patch size and the output cropped back.
The style is resized (aspect not kept, as in training) to that padded content size, so both streams give
the same token grid.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

from .errors import UserError
from .images import ImageError, load_image, resize_short_side, to_pil, to_tensor
from .model import MambaST
from .model.mamba_st import padded_size


def _as_image(image: Image.Image | str | Path) -> Image.Image:
    return image if isinstance(image, Image.Image) else load_image(image)


def output_name(content: str | Path, style: str | Path) -> str:
    """`{content_stem}_stylized_{style_stem}.png`, the naming the metric scripts of this field expect."""
    return f"{Path(content).stem}_stylized_{Path(style).stem}.png"


@torch.inference_mode()
def stylize(model: MambaST, content: Image.Image | str | Path, style: Image.Image | str | Path,
            size: int | None = 512, seed: int | None = None, shuffle: bool = True) -> Image.Image:
    """Stylize one pair; returns an RGB PIL image of the (resized) content's size."""
    content_img = resize_short_side(_as_image(content).convert("RGB"), size)
    w, h = content_img.size
    H, W = padded_size(h, w, model.config.patch_size)  # the model pads the content to this size
    style_img = _as_image(style).convert("RGB")
    if style_img.size != (W, H):
        style_img = style_img.resize((W, H), Image.LANCZOS)
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    c = to_tensor(content_img)[None].to(device, dtype)
    s = to_tensor(style_img)[None].to(device, dtype)
    return to_pil(model(c, s, shuffle=shuffle, seed=seed)[0])


@dataclass
class StylizeReport:
    """What `stylize_pairs` did: files written and (pair, reason) failures."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def stylize_pairs(model: MambaST, contents: list[Path], styles: list[Path], output_dir: str | Path,
                  size: int | None = 512, seed: int | None = None, shuffle: bool = True,
                  progress: bool = True, on_error=None) -> StylizeReport:
    """Stylize every content x style pair into `output_dir/{content}_stylized_{style}.png`.

    A bad input skips its pairs (reason recorded, `on_error(message)` called) and the rest go on; inputs
    are never overwritten; the output folder is created.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    inputs = {Path(p).resolve() for p in [*contents, *styles]}
    report, styles_cache, seen = StylizeReport(), {}, set()

    def fail(pair: str, reason: str):
        report.failed.append((pair, reason))
        if on_error:
            on_error(reason)

    bar = tqdm(total=len(contents) * len(styles), desc="stylize", unit="img", disable=not progress)
    with contextlib.closing(bar):
        for content in contents:
            try:
                content_img = load_image(content)
            except ImageError as e:
                for style in styles:
                    fail(output_name(content, style), str(e))
                bar.update(len(styles))
                continue
            for style in styles:
                name = output_name(content, style)
                target = out / name
                try:
                    if target.resolve() in inputs:
                        raise UserError(f"{target}: refusing to overwrite an input image")
                    if name in seen:
                        raise UserError(f"{target}: two inputs share this name (same file stems)")
                    if style not in styles_cache:
                        styles_cache[style] = load_image(style)
                    result = stylize(model, content_img, styles_cache[style], size, seed, shuffle)
                    result.save(target)
                    seen.add(name)
                    report.written.append(target)
                except UserError as e:
                    fail(name, str(e))
                bar.update(1)
    return report
