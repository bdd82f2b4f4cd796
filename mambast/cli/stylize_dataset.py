"""`mambast stylize-dataset`: a Stylized-ImageNet/COCO-style dataset: each content image with K styles drawn
reproducibly at random, folder structure mirrored, a manifest; batched, sharded under torchrun, resumable."""

from __future__ import annotations

from .controls import add_control_arguments
from .stylize import add_model_arguments, add_run_arguments, error_printer, report_line, run_options


def register(sub) -> None:
    p = sub.add_parser("stylize-dataset", help="stylize a dataset: each content with K random styles",
                       description="Each content image of --content gets --styles-per-content styles drawn at "
                                   "random from --style (reproducibly from --seed and the content's path, "
                                   "whatever the number of processes); the content folder's sub-folders are "
                                   "mirrored in --output and a manifest (content, style, output, seed) is "
                                   "written. Runs under torchrun (one process per GPU); --skip-existing resumes.")
    p.add_argument("--content", required=True, metavar="DIR", help="content folder (searched recursively)")
    p.add_argument("--style", required=True, metavar="DIR", help="style folder (searched recursively)")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--styles-per-content", type=int, default=1, metavar="K",
                   help="styles drawn for each content (default 1; distinct styles)")
    p.add_argument("--name", choices=("content", "content-style"), default=None,
                   help="output file name: the content's ('content', the default for K = 1) or "
                        "{content}_stylized_{style} ('content-style', the default for K > 1)")
    p.add_argument("--manifest", default="manifest.csv", metavar="NAME",
                   help="manifest file in the output folder: .csv (default manifest.csv) or .jsonl")
    add_model_arguments(p)
    add_control_arguments(p, mixing=False)
    p._option_string_actions["--seed"].help = ("seed of the style draws and of every pair's shuffle seed "
                                               "(default 0)")
    add_run_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..device import resolve_device
    from ..images import image_folder
    from ..inference.folder import DatasetDraw, stylize_folder
    from ..inference.worklist import named
    from ..io import load
    from ..torchrun import DistContext

    out = Path(args.output).expanduser()
    with DistContext.from_env(resolve_device(args.device)) as dist:
        options = run_options(args, dist.device, progress=not args.quiet, on_error=error_printer(dist.rank),
                              manifest=args.manifest)
        contents = named(image_folder(args.content, "content", exclude=out), args.content)
        styles = named(image_folder(args.style, "style", exclude=out), args.style)
        draw = DatasetDraw(args.styles_per_content, 0 if args.seed is None else args.seed, args.name)
        report = stylize_folder(lambda: load(args.checkpoint, device=dist.device), contents, styles, out, options,
                                draw=draw, dist=dist)
        if dist.rank == 0:
            print(report_line(report, args.output)
                  + (f"; manifest {out / args.manifest}" if report.written or report.existing else ""))
        return 1 if report.failed else 0
