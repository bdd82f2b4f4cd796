"""`mambast stylize`: every content x style pair, written as {content}_stylized_{style}.png."""

from __future__ import annotations

import sys
import time


def register(sub) -> None:
    p = sub.add_parser("stylize", help="stylize every content x style pair",
                       description="Stylize every content x style pair into OUTPUT/{content}_stylized_{style}.png.")
    p.add_argument("--content", required=True, metavar="FILE|DIR", help="content image or folder")
    p.add_argument("--style", required=True, metavar="FILE|DIR", help="style image or folder")
    p.add_argument("--output", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument("--checkpoint", metavar="PATH", default=None,
                   help="published-weights folder, .safetensors file or training run folder "
                        "(default: the model bundled with the package)")
    p.add_argument("--size", type=int, default=512,
                   help="resize the content's short side to N px (default 512, the paper's); 0 keeps its size")
    p.add_argument("--seed", type=int, default=None, help="seed of the style shuffle (same seed, same output)")
    p.add_argument("--no-shuffle", action="store_true", help="turn the style shuffle off")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from tqdm.auto import tqdm

    from ..errors import UserError
    from ..images import list_images
    from ..io import load
    from ..inference import stylize_pairs
    from .common import resolve_device

    if args.size < 0:
        raise UserError("--size must be >= 0")
    contents, styles = list_images(args.content), list_images(args.style)
    model = load(args.checkpoint, device=resolve_device(args.device))
    start = time.perf_counter()
    report = stylize_pairs(model, contents, styles, args.output, size=args.size, seed=args.seed,
                           shuffle=not args.no_shuffle, progress=not args.quiet,
                           on_error=lambda msg: tqdm.write(f"mambast: skipped: {msg}", file=sys.stderr))
    seconds = time.perf_counter() - start
    n = len(report.written)
    print(f"wrote {n} image{'s' * (n != 1)} to {args.output} in {seconds:.1f} s"
          + (f"; {len(report.failed)} pair(s) failed" if report.failed else ""))
    return 1 if report.failed else 0
