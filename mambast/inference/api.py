"""`mambast.stylize`: one pair (or one content with several styles), PIL images or paths in, a PIL image out.
A thin wrapper over the inference engine (`mambast.inference.Stylizer`); folder runs: `stylize_pairs`."""

from __future__ import annotations

import dataclasses
import os
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from PIL import Image

from ..model import MambaST
from .controls import Controls
from .engine import ImageLike, Stylizer
from .naming import output_name
from .precision import DEFAULT_PRECISION

__all__ = ["stylize", "stylize_pairs", "StylizeReport", "output_name", "cached_engine"]

_ENGINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {settings: Stylizer}
_ENGINES_LOCK = threading.Lock()


def stylize(model: MambaST | None, content: ImageLike, style: ImageLike | Sequence[ImageLike], size: int | None = 512,
            seed: int | None = None, shuffle: bool = True, *, alpha: float = 1.0,
            style_weights: Sequence[float] | None = None, preserve_color: str | None = None,
            style_size: int | None = None, mask: ImageLike | None = None,
            max_pixels: int | None = None, precision: str = DEFAULT_PRECISION) -> Image.Image:
    """Stylize one content; returns an RGB PIL image of the (resized) content's size.

    model: a MambaST, or None for the bundled default model (`mambast.load(None)`, loaded once per process).
    Calls with the same model and settings share one engine (`cached_engine`: its style encodings and fast
    paths), so repeated calls cost what calls of a reused `Stylizer` cost. content, style, mask: file paths,
    PIL images or numpy arrays (`mambast.images.as_rgb`). size: the content's short side in px (0/None: its
    own size).

    style: one image, or several mixed by `style_weights` or spread over the regions of `mask`. Controls:
    see `mambast.inference.Controls` (alpha, style_weights, preserve_color, style_size, mask, shuffle, seed).
    max_pixels: refuse a planned content size above this (None: the engine's default limit).
    precision: "auto" (default: bf16 for the bundled model where the device has native bf16, else fp32),
    "fp32", "bf16" or "fp16" (autocast; the scan stays float32): mambast.inference.precision.
    """
    controls = Controls(alpha=alpha, style_weights=style_weights,  # any sequence or 1-d array, checked there
                        preserve_color=preserve_color, style_size=style_size, mask=mask, shuffle=shuffle,
                        seed=seed)
    engine = cached_engine(bundled_model() if model is None else model, max_pixels, precision)
    return engine.stylize(content, style, controls, size=size)


@cache
def bundled_model() -> MambaST:
    """The bundled default model (`mambast.load(None)`), loaded on first use and kept for the process."""
    from ..io import load

    return load(None)


def cached_engine(model: MambaST, max_pixels: int | None = None, precision: str = DEFAULT_PRECISION) -> Stylizer:
    """The `Stylizer` that `mambast.stylize` runs `model` with: one per (model, max_pixels, precision, the
    model's device and dtype), built on first use and then reused. The cache refers to the model weakly (the
    engine holds a weakref proxy), so it never keeps a model alive; its entry goes when the model does. The
    model is put in eval mode at every call (as a new Stylizer would). max_pixels None: the engine's default."""
    param = next(model.parameters())
    key = (max_pixels, precision, param.device, param.dtype)
    with _ENGINES_LOCK:
        engines = _ENGINES.setdefault(model, {})
        engine = engines.get(key)
        if engine is None:
            kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
            engine = Stylizer(model, size=None, precision=precision, **kwargs)
            engine.model = weakref.proxy(model)
            engines[key] = engine
    model.eval()
    return engine


@dataclass
class StylizeReport:
    """What `stylize_pairs` did: files written and (pair, reason) failures."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def stylize_pairs(model: MambaST, contents: Sequence[str | Path], styles: Sequence[str | Path], output_dir: str | Path,
                  size: int | None = 512, seed: int | None = None, shuffle: bool | None = None,
                  progress: bool = True, on_error=None, controls: Controls | None = None,
                  **options) -> StylizeReport:
    """Stylize every content x style pair into `output_dir` (`folder.stylize_folder`, as `mambast stylize`).

    Outputs are `{content}_stylized_{style}.png`, in sub-folders mirroring the contents' paths below their
    common folder (styles below theirs give `sub__stem`). controls (`Controls`): with style_weights or a
    mask, each content gets one output mixing all the styles (`{content}_stylized_{s1}+{s2}@0.3-0.7.png`,
    `...@mask-{mask stem}`). seed, shuffle: when given, they replace controls.seed / controls.shuffle (seed
    None: one seed drawn per output and recorded). Each content and style is encoded once; a bad input or a
    failed write skips its pairs (reason recorded, `on_error(message)` called) and the rest go on; inputs
    are never overwritten. options: the other `RunOptions` fields (batch_size, workers, ext, skip_existing,
    precision, max_pixels, ...). FieldError (naming the field) for a bad setting, before any work.
    """
    from .folder import stylize_folder
    from .jobs import RunOptions
    from .worklist import named

    contents, styles = _paths(contents), _paths(styles)  # str or relative paths: as the caller's folder sees them
    given = {k: v for k, v in (("seed", seed), ("shuffle", shuffle)) if v is not None}
    controls = dataclasses.replace(controls or Controls(), **given)
    run = RunOptions(size=size, controls=controls, progress=progress, on_error=on_error, **options)
    report = stylize_folder(model, named(contents, _common_root(contents)), named(styles, _common_root(styles)),
                            output_dir, run)
    return StylizeReport(written=report.written, failed=report.failed)


def _paths(files: Sequence[str | os.PathLike]) -> list[Path]:
    """Each file as an absolute Path (`~` expanded), so names relative to their common folder are well defined."""
    return [Path(f).expanduser().absolute() for f in files]


def _common_root(files: Sequence[Path]) -> Path:
    """The deepest folder holding every file (one file: that file, so its name is its relative name)."""
    if len(files) == 1:
        return Path(files[0])
    return Path(os.path.commonpath([Path(f).absolute() for f in files])) if files else Path(".")
