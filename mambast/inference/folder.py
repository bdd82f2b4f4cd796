"""The one entry for folder runs: `stylize_folder` checks the inputs and options, makes the work list
(worklist.py: every pair, one mix per content, or a dataset draw) and runs it (jobs.py). `mambast stylize`,
`mambast stylize-dataset` and `mambast.inference.stylize_pairs` are calls of it.

    report = stylize_folder(model, named(files, root), named(style_files, style_root), "out",
                            RunOptions(controls=Controls(style_weights=(0.7, 0.3))))   # one mix per content
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

from ..errors import FieldError
from ..torchrun import DistContext
from .engine import draw_seed
from .jobs import JobReport, RunOptions, check_output_dir, run_jobs
from .preprocess import Preprocessor, is_path
from .worklist import Job, Named, dataset_jobs, find_conflicts, pair_jobs

if TYPE_CHECKING:
    from ..model import MambaST


@dataclass(frozen=True)
class DatasetDraw:
    """A dataset's work list (`mambast stylize-dataset`): each content with `per_content` distinct styles
    drawn at random, reproducibly from `seed` and the content's path; output names `name` ("content",
    "content-style" or None: by per_content). See `worklist.dataset_jobs`."""

    per_content: int = 1
    seed: int = 0
    name: str | None = None


def stylize_folder(model: MambaST | Callable[[], MambaST], contents: Sequence[Named], styles: Sequence[Named],
                   output_dir: str | Path, options: RunOptions | None = None, *, draw: DatasetDraw | None = None,
                   dist: DistContext | None = None) -> JobReport:
    """Stylize named inputs (`worklist.named`: each file with its name relative to its folder, which its
    output mirrors) into `output_dir`, in batches, sharded over `dist`'s processes.

    Without `draw`: every content x style (`{content}_stylized_{style}`), or, when options.controls has
    style_weights or a mask, one output per content mixing all the styles (weights: one per style; a mask:
    one region per style), its name tagged with the weights or the mask (`...+s2@0.3-0.7`, `...@mask-m`).
    With `draw`: a dataset (`DatasetDraw`), each output with one style.
    model: a MambaST, or a function returning one, called once the work list is made and the output folder
    can be written (a bad argument is refused before a model loads).
    Raises FieldError (naming the field) for a mix that does not fit the styles or a mask that cannot be
    read or does not fit them, and WriteError when nothing can be written; bad inputs and failed writes
    skip their jobs (JobReport.failed).
    """
    options, jobs = _work_list(contents, styles, options or RunOptions(), draw)
    out = Path(output_dir).expanduser()
    check_output_dir(out)  # nothing can be written at all: one line, before the model loads
    model = model if isinstance(model, torch.nn.Module) else model()
    inputs = {n.path.resolve() for n in [*contents, *styles]}
    return run_jobs(model, jobs, out, options, dist=dist, refused=find_conflicts(jobs, out, inputs))


def _work_list(contents: Sequence[Named], styles: Sequence[Named], options: RunOptions,
               draw: DatasetDraw | None) -> tuple[RunOptions, list[Job]]:
    """The jobs, and the options they run with (a mask read once, checked against the styles)."""
    controls = options.controls
    mix = controls.style_weights is not None or controls.mask is not None
    if draw is not None:
        if mix:
            raise FieldError("style_weights and mask mix several styles into one output; a dataset draw gives "
                             "each output one style", "style_weights", "mask")
        return options, dataset_jobs(contents, styles, per_content=draw.per_content, seed=draw.seed,
                                     ext=options.ext, name=draw.name, shuffle=controls.shuffle)
    tag = ""
    if controls.style_weights is not None:
        controls.normalised_weights(len(styles))  # one weight per style
        tag = "@" + "-".join(f"{w:g}" for w in controls.style_weights)
    if controls.mask is not None:
        mask = Preprocessor.check_mask(controls.mask, len(styles))
        tag = f"@mask-{_mask_label(controls.mask, mask)}"
        options = dataclasses.replace(options, controls=dataclasses.replace(controls, mask=mask))
    jobs = pair_jobs(contents, styles, ext=options.ext, mix=mix, seed=controls.seed, shuffle=controls.shuffle,
                     draw=draw_seed, mix_tag=tag)
    return options, jobs


def _mask_label(given: object, image: Image.Image) -> str:
    """What names a mask in output names: a file's stem, or the first 8 hex digits of an image's pixels."""
    if is_path(given):
        return Path(given).stem
    return hashlib.sha256(image.tobytes()).hexdigest()[:8]
