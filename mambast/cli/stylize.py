"""`mambast stylize`: every content x style pair (or each content with several styles mixed), in batches,
optionally sharded under torchrun; outputs {content_dir}/{content}_stylized_{style}.{png|jpg}."""

from __future__ import annotations

import argparse
import sys

from .controls import add_control_arguments, controls_from_args


def register(sub) -> None:
    p = sub.add_parser("stylize", help="stylize every content x style pair",
                       description="Stylize every content x style pair into "
                                   "OUTPUT/{content_dir}/{content}_stylized_{style}.png (content sub-folders "
                                   "mirrored). Runs under torchrun too (one process per GPU).")
    p.add_argument("--content", required=True, metavar="FILE|DIR", help="content image or folder")
    p.add_argument("--style", required=True, nargs="+", metavar="FILE|DIR",
                   help="style image(s) or folder(s); with --style-weights or --mask they are mixed into one "
                        "output per content, otherwise each is a style of its own")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder (created)")
    add_model_arguments(p)
    add_control_arguments(p, mixing=True, seed_default="drawn at random for every run")
    add_run_arguments(p)
    p.set_defaults(func=run)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--checkpoint, --size, --max-pixels, --device, --precision."""
    p.add_argument("--checkpoint", metavar="PATH", default=None,
                   help="published-weights folder, .safetensors file or training run folder "
                        "(default: the model bundled with the package)")
    p.add_argument("--size", type=int, default=512,
                   help="resize the content's short side to N px (default 512, the paper's); 0 keeps its size")
    p.add_argument("--max-pixels", type=int, default=None, metavar="N",
                   help="refuse a content or a --style-size whose planned size is over N pixels; a batch holds "
                        "at most N pixels (default 4096 x 4096; 0: no limit)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default; under torchrun: one "
                                                    "GPU per process)")
    from ..inference.precision import DEFAULT_PRECISION, PRECISION_HELP, PRECISIONS

    p.add_argument("--precision", default=DEFAULT_PRECISION, choices=PRECISIONS, help=PRECISION_HELP)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """--batch-size, --workers, --ext, --jpeg-quality, --skip-existing, --quiet."""
    g = p.add_argument_group("running")
    g.add_argument("--batch-size", type=int, default=1, metavar="B",
                   help="pairs per model call; pairs of the same padded size are batched (default 1)")
    g.add_argument("--workers", type=int, default=None, metavar="W",
                   help="processes decoding and resizing images ahead of the model (default: 2 on CUDA, 0 on "
                        "the CPU: decode in the main process)")
    g.add_argument("--ext", default="png", choices=("png", "jpg"), help="output format (default png)")
    g.add_argument("--jpeg-quality", type=int, default=95, metavar="Q", help="JPEG quality 1-100 (default 95)")
    g.add_argument("--skip-existing", action="store_true",
                   help="leave out pairs whose output exists and was made with these settings (resume an "
                        "interrupted run); outputs made otherwise are made again")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def run_options(args, device, **extra):
    """RunOptions from the shared flags (checked there: a FieldError naming the field, shown as its flag)."""
    from ..inference.jobs import RunOptions
    from ..inference.size import DEFAULT_MAX_PIXELS

    workers = args.workers if args.workers is not None else (2 if device.type == "cuda" else 0)
    max_pixels = DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels  # 0: no limit
    return RunOptions(size=args.size, max_pixels=max_pixels, controls=controls_from_args(args),
                      precision=args.precision, batch_size=args.batch_size, workers=workers, ext=args.ext,
                      jpeg_quality=args.jpeg_quality, skip_existing=args.skip_existing, **extra)


def report_line(report, output) -> str:
    n, old = len(report.written), len(report.existing)
    new = len(getattr(report, "replaced", ()))
    return (f"wrote {n} image{'s' * (n != 1)} to {output} in {report.seconds:.1f} s"
            + (f" ({new} replacing outputs made with other settings)" if new else "")
            + (f"; {old} already there (skipped)" if old else "")
            + (f"; {len(report.failed)} pair(s) failed" if report.failed else ""))


def error_printer(rank: int):
    from tqdm.auto import tqdm

    prefix = f"[rank {rank}] " if rank else ""
    return lambda msg: tqdm.write(f"{prefix}mambast: skipped: {msg}", file=sys.stderr)


def run(args) -> int:
    from pathlib import Path

    from ..device import resolve_device
    from ..images import image_inputs
    from ..inference.folder import stylize_folder
    from ..inference.worklist import named
    from ..io import load
    from ..torchrun import DistContext

    out = Path(args.output).expanduser()
    with DistContext.from_env(resolve_device(args.device)) as dist:  # leaves the group at the end
        options = run_options(args, dist.device, progress=not args.quiet, on_error=error_printer(dist.rank))
        contents = named(image_inputs(args.content, "content", exclude=out), args.content)
        styles = [n for root in args.style for n in named(image_inputs(root, "style", exclude=out), root)]
        report = stylize_folder(lambda: load(args.checkpoint, device=dist.device), contents, styles, out, options,
                                dist=dist)
        if dist.rank == 0:
            print(report_line(report, args.output))
        return 1 if report.failed else 0
