"""The evaluation protocol's two entries: score a stylized folder, or stylize every pair first and score it.

`evaluate` scores any method's outputs named ``{content}_stylized_{style}.{ext}`` against the content and style
folders with every metric whose weights are available and writes report.json, report.md and
contact_sheet.png. `run_protocol` first stylizes every pair with a Mamba-ST checkpoint. Each is a short
sequence of the pieces: options (`EvalOptions`, `StylizeOptions`: checked when made), pairing by name,
networks (`load_networks`), the stylize step (`stylize_all`), `score` -> `Report` (pure) and
`write_report`.

"paper" mode reproduces StyleID's `evaluation/eval_artfid.py` run on the inputs Mamba-ST's `copy_inputs.py`
makes (see `metrics.preprocess` and docs/evaluation.md); "native" follows the art-fid package.

Robustness: an unreadable stylized, content or style image fails its pairs (listed in the report with the
reason) and is kept out of every metric; the others are still scored and the report is still written.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path

from mambast.errors import UserError
from mambast.fs import ensure_dir
from mambast.images import image_folder
from mambast.io import load

from .networks import EvalWeights, Networks, load_networks
from .options import STYLE_SETS, EvalOptions, StylizeOptions
from .pairing import Pairing, pair_by_name
from .report import write_report
from .score import Report, score
from .stylize import stylize_all

__all__ = ["EvalOptions", "EvalWeights", "Networks", "Report", "STYLE_SETS", "StylizeOptions", "evaluate",
           "load_networks", "pair_folders", "run_protocol", "score"]  # fmt: skip


def _split(settings: dict, *kinds: type) -> list[dict]:
    """Keyword settings split by the dataclass (of `kinds`) that has each as a field; TypeError for one that
    none has."""
    names = [{f.name for f in dataclasses.fields(kind)} for kind in kinds]
    unknown = set(settings) - set().union(*names)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    return [{k: v for k, v in settings.items() if k in n} for n in names]


def pair_folders(stylized: str | Path | Sequence[Path], content_dir: str | Path, style_dir: str | Path) -> Pairing:
    """Pair the stylized images (a folder, or a list of files) with the content and style folders' images by
    name (UserError when a folder is missing or empty, or two files claim one name)."""
    files = image_folder(stylized, "stylized") if isinstance(stylized, (str, os.PathLike)) else list(stylized)
    return pair_by_name(files, image_folder(content_dir, "content_dir"), image_folder(style_dir, "style_dir"))


def evaluate(stylized_dir: str | Path, content_dir: str | Path, style_dir: str | Path, out_dir: str | Path,
             weights: EvalWeights | None = None, options: EvalOptions | None = None, **settings) -> dict:
    """Score a stylized folder against content and style folders; write the reports into `out_dir`.

    options: how to score (`EvalOptions`); settings: its fields given one by one instead (mode="native",
    size=256...; with `options`, they replace its values). FieldError naming a bad option, UserError when no
    stylized file is named after the given images or a weight file is bad. Returns the report dict (also
    out_dir/report.json): `Report.as_dict()` with the three folders.
    """
    options = dataclasses.replace(options or EvalOptions(), **settings)
    out_dir = ensure_dir(out_dir)
    pairing = pair_folders(stylized_dir, content_dir, style_dir)
    if not pairing.pairs:
        raise UserError(f"no file in {stylized_dir} is named {{content}}_stylized_{{style}} after the given images")
    report = score(pairing, load_networks(weights, options.device), options)
    folders = {"stylized_dir": str(stylized_dir), "content_dir": str(content_dir), "style_dir": str(style_dir)}
    result = report.as_dict(**folders)
    write_report(result, pairing.pairs, out_dir, options.contact_cell)
    return result


def run_protocol(checkpoint: str | Path, content_dir: str | Path, style_dir: str | Path, out_dir: str | Path,
                 weights: EvalWeights | None = None, options: EvalOptions | None = None,
                 stylize: StylizeOptions | None = None, **settings) -> dict:
    """Stylize every content x style pair with `checkpoint` into out_dir/stylized, then score those files and
    write the reports into out_dir.

    options / stylize: how to score and stylize (`EvalOptions`, `StylizeOptions`); settings: fields of either
    given one by one (size=256, seed=1, stylized_format="png"...). The metric networks are loaded first (a bad
    weight file stops the run before any stylizing). Returns the report dict (out_dir/report.json), with
    "checkpoint" and "stylize" {"seconds", "written", "seed", "shuffle", "format", "failed"}.
    """
    eval_settings, stylize_settings = _split(settings, EvalOptions, StylizeOptions)
    options = dataclasses.replace(options or EvalOptions(), **eval_settings)
    stylize = dataclasses.replace(stylize or StylizeOptions(), **stylize_settings)
    out_dir = Path(out_dir)
    contents, styles = image_folder(content_dir, "content_dir"), image_folder(style_dir, "style_dir")
    networks = load_networks(weights, options.device)
    model = load(checkpoint, device=options.device)
    start = time.perf_counter()
    written, failed = stylize_all(model, contents, styles, out_dir / "stylized", options, stylize)
    step = {"seconds": round(time.perf_counter() - start, 2), "written": len(written), "seed": stylize.seed,
            "shuffle": stylize.shuffle, "format": stylize.format_for(options.mode), "failed": failed}  # fmt: skip
    pairing = pair_folders(written, content_dir, style_dir)
    report = score(pairing, networks, options, failed_before=failed)
    folders = {"stylized_dir": str(out_dir / "stylized"), "content_dir": str(content_dir), "style_dir": str(style_dir)}
    result = report.as_dict(checkpoint=str(checkpoint), stylize=step, **folders)
    write_report(result, pairing.pairs, out_dir, options.contact_cell)
    return result
