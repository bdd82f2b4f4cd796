"""The protocol's stylize step: every content x style pair with one model, each input encoded once.

Each content is encoded once (`Stylizer.encode_image`) and rendered with every style; each style is
encoded once per content grid (`Stylizer.style_tokens`, whose cache holds all the styles; the protocol's
"paper" inputs all share one grid).
Every pair gets the same controls and seed as one `Stylizer.stylize(content, style, Controls(shuffle, seed))`
call would, so the images are those of N x M single calls.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from mambast.errors import UserError
from mambast.fs import atomic_write, ensure_dir
from mambast.images import to_pil
from mambast.inference import Controls, Stylizer, output_name
from mambast.inference.engine import EncodedContent
from mambast.inference.size import memory_guard

from .options import EvalOptions, StylizeOptions
from .preprocess import InputImages, protocol_input

__all__ = ["stylize_all"]

MEMORY_HINT = "ask for a smaller size"


def _encode(stylizer: Stylizer, read: Callable[[], Image.Image], path: Path) -> EncodedContent | UserError:
    """The content `read()` encoded once (`Stylizer.encode_image`), or the UserError that stops it (every pair
    of this content then fails with it)."""
    try:
        with memory_guard(str(path), MEMORY_HINT):
            return stylizer.encode_image(read())
    except UserError as e:
        return e


def _render(stylizer: Stylizer, content: EncodedContent | UserError, style: Image.Image,
            controls: Controls) -> Image.Image:
    """One pair: the style's tokens on the content's grid (encoded once per grid: the engine's style cache),
    fused and decoded -> RGB image (UserError when the content or the style cannot be used)."""
    if isinstance(content, UserError):
        raise content
    tokens = stylizer.style_tokens(style, content.grid, controls, content.image[0])
    return to_pil(stylizer.render(content, [tokens], controls)[0])


def stylize_all(
    model: torch.nn.Module,
    contents: list[Path],
    styles: list[Path],
    out: Path,
    options: EvalOptions,
    stylize: StylizeOptions,
) -> tuple[list[Path], list[list[str]]]:
    """Stylize every content x style pair into `out` as ``{c}_stylized_{s}.{fmt}`` -> (written, failed).

    "paper": content and style each resized (short side `options.size`) and centre-cropped to size x size,
    as Mamba-ST's eval.py feeds them; "native": the stylizer's own size policy (content short side `size`).
    Format `stylize.format_for(mode)`: "jpg" is written as the protocol does (PIL JPEG, quality 75), "png"
    losslessly. A bad input fails its pairs ([name, reason]); every file is written atomically; an input is
    never overwritten.
    """
    ensure_dir(out)
    fmt = stylize.format_for(options.mode)
    pil_format, save_options = ("JPEG", {"quality": 75}) if fmt == "jpg" else ("PNG", {})
    inputs = {p.resolve() for p in [*contents, *styles]}
    size = None if options.mode == "paper" else options.size  # "paper": the inputs are already size x size
    stylizer = Stylizer(model, size=size, style_cache=max(1, len(styles)))  # a grid's styles stay encoded
    controls = Controls(shuffle=stylize.shuffle, seed=stylize.seed)
    images = InputImages()

    def image(path: Path, keep: bool = True) -> Image.Image:
        """The input as the stylizer gets it ("paper": resized and centre-cropped to size x size); keep=False:
        the decoded file is not kept (a content, encoded once)."""
        img = images.get(path, keep)
        return protocol_input(img, options.size) if options.mode == "paper" else img

    written, failed = [], []
    bar = tqdm(total=len(contents) * len(styles), desc="stylize", unit="img", disable=not options.progress,
               leave=False)  # fmt: skip
    for content in contents:
        encoded = None
        for style in styles:
            name = output_name(content, style, fmt)
            bar.update(1)
            try:
                if (out / name).resolve() in inputs:
                    raise UserError(f"{out / name}: refusing to overwrite an input image")
                if encoded is None:
                    encoded = _encode(stylizer, lambda c=content: image(c, keep=False), content)  # once
                with memory_guard(f"{content} with {style.name}", MEMORY_HINT):
                    result = _render(stylizer, encoded, image(style), controls)
                atomic_write(out / name, lambda f, im=result: im.save(f, format=pil_format, **save_options))
                written.append(out / name)
            except UserError as e:
                failed.append([name, str(e).splitlines()[0] if str(e) else type(e).__name__])
    bar.close()
    return written, failed
