"""`mambast eval`: the paper's evaluation protocol (stylize + score), or scoring any method's stylized folder.

mambast eval --checkpoint P --content-dir D --style-dir D --out DIR [--size 512] [weight paths]
mambast eval --stylized DIR --content-dir D --style-dir D --out DIR [weight paths]

Exit code: 0 all pairs scored, 1 some pairs failed (listed in report.md; the rest scored), 2 error.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from mambast.device import DEVICE_HELP
from mambast.errors import FieldError, UserError

from .common import field_flags, flag_message

HELP = "evaluate: ArtFID, FID, LPIPS, LPIPS_gray, CFSD, paper losses; writes report.json, report.md, contact_sheet.png"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `eval` parser (func=run) to the CLI's sub-parsers."""
    p = subparsers.add_parser("eval", help=HELP, description=HELP)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="Mamba-ST weights: stylize every content x style pair first")
    src.add_argument("--stylized", type=Path, help="folder of {content}_stylized_{style}.png made by any method")
    p.add_argument("--content-dir", type=Path, required=True, help="content images (paper: 20)")
    p.add_argument("--style-dir", type=Path, required=True, help="style images (paper: 40)")
    p.add_argument("--out", type=Path, required=True, help="output folder for the reports (and stylized/)")
    p.add_argument("--size", type=int, default=512, help="stylize and 'paper' preprocessing size (default 512)")
    p.add_argument(
        "--mode",
        choices=("paper", "native"),
        default="paper",
        help="paper: StyleID's eval_artfid.py as the paper ran it (FID/LPIPS: short side SIZE, no crop; CFSD: "
        "as stored; FID style set one per pair); native: every image as stored (art-fid)",
    )
    p.add_argument(
        "--fid-style-set",
        choices=("pairs", "unique"),
        help="FID reference set: the style of every scored pair (paper default, copy_inputs.py) or "
        "each style once (native default)",
    )
    p.add_argument("--fid-inf", action="store_true", help="also FID_inf (Chong & Forsyth), an extra")
    p.add_argument("--fid-inf-points", type=int, default=15, help="FID_N points for --fid-inf (default 15)")
    p.add_argument(
        "--stylized-format",
        choices=("jpg", "png"),
        help="--checkpoint output files: jpg (paper default, as the published eval writes) or png",
    )
    p.add_argument("--seed", type=int, default=0, help="style-shuffle seed when stylizing (default 0)")
    p.add_argument("--no-shuffle", action="store_true", help="stylize without the style shuffle")
    w = p.add_argument_group("weights (a metric whose files are missing is skipped, with the reason)")
    w.add_argument("--inception", help="art_inception.pth (art-fid): FID and ArtFID")
    w.add_argument("--lpips-alexnet", help="torchvision AlexNet alexnet-owt-7be5be79.pth: LPIPS backbone")
    w.add_argument("--lpips-heads", help="lpips v0.1 alex.pth: LPIPS linear heads")
    w.add_argument("--vgg19", help="torchvision vgg19-dcbb9e9d.pth: CFSD")
    w.add_argument("--vgg", help="vgg_normalised.pth: the paper's content / style losses")
    w.add_argument("--fid-inception", help="pt_inception-2015-12-05-6726825d.pth (pytorch-fid): plain ImageNet FID")
    w.add_argument(
        "--weights-dir",
        help="folder searched for the files above by their usual names "
        "(default $MAMBAST_WEIGHTS or ~/.cache/mambast/weights)",
    )
    p.add_argument("--device", default="cpu", help=f"torch device: {DEVICE_HELP} (default cpu)")
    p.add_argument("--batch-size", type=int, default=8, help="Inception batch size (same-size images only)")
    p.add_argument("--cfsd-chunk", type=int, default=256, help="CFSD rows per chunk (default 256: ~160 MiB at 512 px)")
    p.add_argument("--contact-cell", type=int, default=128, help="contact sheet cell size in px")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run, flags=field_flags(p))  # skip reasons name weight fields: shown as flags
    return p


def _from_args(kind: type, args: argparse.Namespace, **given):
    """A `kind` dataclass from the parsed flags: each field from the flag of the same name (`--cfsd-chunk` ->
    cfsd_chunk), except those `given`."""
    return kind(**{f.name: getattr(args, f.name) for f in fields(kind) if f.name not in given}, **given)


def _stylized_format(args: argparse.Namespace) -> str | None:
    """--stylized-format, which names the files --checkpoint writes: refused with --stylized (a flag pairing,
    not a value the library checks)."""
    if args.stylized is not None and args.stylized_format is not None:
        raise UserError("--stylized-format applies to --checkpoint (the files eval writes), not --stylized")
    return args.stylized_format


def run(args: argparse.Namespace) -> int:
    """Run the evaluation and print the metric table; returns 0, or 1 when some pairs failed (partial).

    Every option is checked by the library before any work, whichever the mode (FieldError naming the field:
    `mambast.cli.main` spells it as the flag); errors that stop everything raise UserError (exit 2).
    """
    from mambast.metrics import EvalOptions, EvalWeights, StylizeOptions, evaluate, run_protocol
    from mambast.metrics.report import format_value
    from mambast.metrics.weights import KNOWN

    options = _from_args(EvalOptions, args, progress=not args.quiet)
    stylize = _from_args(StylizeOptions, args, shuffle=not args.no_shuffle, stylized_format=_stylized_format(args))
    weights = _from_args(EvalWeights, args, folder=args.weights_dir)
    if args.checkpoint is not None:
        report = run_protocol(args.checkpoint, args.content_dir, args.style_dir, args.out, weights, options, stylize)
    else:
        report = evaluate(args.stylized, args.content_dir, args.style_dir, args.out, weights, options)
    counts = report["counts"]
    print(
        f"scored {counts['pairs']} of {counts['found'] + len(report.get('stylize', {}).get('failed', []))} "
        f"pairs ({args.mode} preprocessing)"
    )
    for name, value in report["metrics"].items():
        print(f"  {name:13s} {format_value(value)}")
    fields = [w.field for w in KNOWN.values()]
    for name, why in report["skipped"].items():
        print(f"  {name:13s} skipped: {flag_message(FieldError(why, *fields), args.flags)}")
    if counts["unmatched"]:
        print(f"  {counts['unmatched']} stylized files match no content/style name: see report.md")
    if counts["failed"]:
        print(f"  {counts['failed']} pairs failed and were kept out of every metric: see report.md")
    print(f"wrote {args.out / 'report.json'}, {args.out / 'report.md'}, {args.out / 'contact_sheet.png'}")
    return 1 if counts["failed"] else 0
