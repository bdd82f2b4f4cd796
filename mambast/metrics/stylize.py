"""The protocol's stylize step: every content x style pair with one model, each input encoded once.

Each content is encoded once (`Stylizer.encode_content`) and rendered with every style; each style is
encoded once per content grid (`Stylizer.style_tokens`; the protocol's "paper" inputs all share one grid).
Every pair gets the same controls and seed as one `Stylizer.stylize(content, style, Controls(shuffle, seed))`
call would, so the images are those of N x M single calls.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from mambast.errors import UserError
from mambast.fs import atomic_write, ensure_dir
from mambast.images import to_pil, to_tensor
from mambast.inference import Controls, Stylizer, output_name
from mambast.inference.size import memory_guard

from .options import EvalOptions, StylizeOptions
from .preprocess import InputImages, protocol_input

__all__ = ["stylize_all"]

MEMORY_HINT = "ask for a smaller size"


class _Inputs:
    """The protocol's stylizer inputs and their encodings, each made once: the content encoded with its grid,
    the styles' tokens on the current content grid (dropped when the grid changes). A failure is kept as
    its UserError and raised again for every pair that needs that input."""

    def __init__(self, stylizer: Stylizer, options: EvalOptions, controls: Controls):
        self.stylizer, self.options, self.controls = stylizer, options, controls
        self.images = InputImages()
        self.content: tuple[Path, object] | None = None  # (path, (encoded, grid) or UserError)
        self.grid: tuple[int, int] | None = None
        self.styles: dict[Path, torch.Tensor | UserError] = {}

    def image(self, path: Path, keep: bool = True) -> Image.Image:
        """The input as the stylizer gets it: "paper": resized and centre-cropped to size x size; keep=False:
        the decoded file is not kept (a content: encoded once)."""
        img = self.images.get(path, keep)
        return protocol_input(img, self.options.size) if self.options.mode == "paper" else img

    def encoded(self, path: Path):
        """(EncodedContent, padded grid) of content `path`, encoded once (UserError when it cannot be)."""
        if self.content is None or self.content[0] != path:
            try:
                with memory_guard(str(path), MEMORY_HINT):
                    img = self.stylizer.prepare_content(self.image(path, keep=False))
                    enc = self.stylizer.encode_content(to_tensor(img)[None])
                got = (enc, self.stylizer.grid(*img.size))
            except UserError as e:
                got = e
            self.content = (path, got)
        if isinstance(self.content[1], UserError):
            raise self.content[1]
        return self.content[1]

    def style(self, path: Path, grid: tuple[int, int], content: torch.Tensor) -> torch.Tensor:
        """Style `path` encoded on `grid`, once per grid run (UserError when it cannot be)."""
        if grid != self.grid:
            self.grid, self.styles = grid, {}
        if path not in self.styles:
            try:
                with memory_guard(str(path), MEMORY_HINT):
                    self.styles[path] = self.stylizer.style_tokens(self.image(path), grid, self.controls, content)
            except UserError as e:
                self.styles[path] = e
        got = self.styles[path]
        if isinstance(got, UserError):
            raise got
        return got

    def render(self, content: Path, style: Path) -> Image.Image:
        """The stylized image of one pair."""
        enc, grid = self.encoded(content)
        tokens = self.style(style, grid, enc.image[0])
        with memory_guard(str(content), MEMORY_HINT):
            return to_pil(self.stylizer.render(enc, [tokens], self.controls)[0])


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
    stylizer = Stylizer(model, size=None if options.mode == "paper" else options.size, style_cache=0)
    pairs = _Inputs(stylizer, options, Controls(shuffle=stylize.shuffle, seed=stylize.seed))
    written, failed = [], []
    bar = tqdm(total=len(contents) * len(styles), desc="stylize", unit="img", disable=not options.progress,
               leave=False)  # fmt: skip
    for content in contents:
        for style in styles:
            name = output_name(content, style, fmt)
            bar.update(1)
            try:
                if (out / name).resolve() in inputs:
                    raise UserError(f"{out / name}: refusing to overwrite an input image")
                result = pairs.render(content, style)
                atomic_write(out / name, lambda f, im=result: im.save(f, format=pil_format, **save_options))
                written.append(out / name)
            except UserError as e:
                failed.append([name, str(e).splitlines()[0] if str(e) else type(e).__name__])
    bar.close()
    return written, failed
