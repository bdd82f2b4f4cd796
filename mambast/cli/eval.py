"""`mambast eval`: the paper's evaluation protocol (stylize + score), or scoring any method's stylized folder.

mambast eval --checkpoint P --content-dir D --style-dir D --out DIR [--size 512] [weight paths]
mambast eval --stylized DIR --content-dir D --style-dir D --out DIR [weight paths]

Exit code: 0 all pairs scored, 1 some pairs failed (listed in report.md; the rest scored), 2 error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mambast.errors import UserError

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
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--batch-size", type=int, default=8, help="Inception batch size (same-size images only)")
    p.add_argument("--cfsd-chunk", type=int, default=256, help="CFSD rows per chunk (default 256: ~160 MiB at 512 px)")
    p.add_argument("--contact-cell", type=int, default=128, help="contact sheet cell size in px")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


POSITIVE = (
    ("--size", "size", 1),
    ("--batch-size", "batch_size", 1),
    ("--cfsd-chunk", "cfsd_chunk", 1),
    ("--contact-cell", "contact_cell", 8),
    ("--fid-inf-points", "fid_inf_points", 2),
    ("--seed", "seed", 0),
)


def check_args(args: argparse.Namespace) -> None:
    """Every numeric option checked before any work: one-line UserError naming the flag."""
    for flag, name, low in POSITIVE:
        value = getattr(args, name)
        if value < low:
            raise UserError(f"{flag} must be an integer >= {low}, got {value}")
    if args.stylized is not None and args.stylized_format is not None:
        raise UserError("--stylized-format applies to --checkpoint (the files eval writes), not --stylized")


def run(args: argparse.Namespace) -> int:
    """Run the evaluation and print the metric table; returns 0, or 1 when some pairs failed (partial).

    Errors that stop everything raise UserError (exit 2).
    """
    from mambast.metrics.protocol import EvalWeights, evaluate, run_protocol
    from mambast.metrics.report import format_value

    check_args(args)
    weights = EvalWeights(
        inception=args.inception,
        lpips_alexnet=args.lpips_alexnet,
        lpips_heads=args.lpips_heads,
        vgg19=args.vgg19,
        vgg=args.vgg,
        fid_inception=args.fid_inception,
        folder=args.weights_dir,
    )
    common = dict(
        weights=weights,
        mode=args.mode,
        size=args.size,
        device=args.device,
        batch_size=args.batch_size,
        cfsd_chunk=args.cfsd_chunk,
        contact_cell=args.contact_cell,
        progress=not args.quiet,
        fid_style_set=args.fid_style_set,
        fid_inf=args.fid_inf,
        fid_inf_points=args.fid_inf_points,
    )
    if args.checkpoint is not None:
        report = run_protocol(
            args.checkpoint,
            args.content_dir,
            args.style_dir,
            args.out,
            seed=args.seed,
            shuffle=not args.no_shuffle,
            stylized_format=args.stylized_format,
            **common,
        )
    else:
        report = evaluate(args.stylized, args.content_dir, args.style_dir, args.out, **common)
    counts = report["counts"]
    print(
        f"scored {counts['pairs']} of {counts['found'] + len(report.get('stylize', {}).get('failed', []))} "
        f"pairs ({args.mode} preprocessing)"
    )
    for name, value in report["metrics"].items():
        print(f"  {name:13s} {format_value(value)}")
    for name, why in report["skipped"].items():
        print(f"  {name:13s} skipped: {why}")
    if counts["unmatched"]:
        print(f"  {counts['unmatched']} stylized files match no content/style name: see report.md")
    if counts["failed"]:
        print(f"  {counts['failed']} pairs failed and were kept out of every metric: see report.md")
    print(f"wrote {args.out / 'report.json'}, {args.out / 'report.md'}, {args.out / 'contact_sheet.png'}")
    return 1 if counts["failed"] else 0
