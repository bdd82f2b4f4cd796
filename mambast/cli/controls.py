"""The creative-control flags shared by `stylize`, `video` and `stylize-dataset`, mapped onto
`mambast.inference.Controls` in one place."""

from __future__ import annotations

import argparse

from ..inference import Controls
from ..inference.controls import COLOR_METHODS
from ..inference.size import DEFAULT_MAX_PIXELS, check_style_size


def add_control_arguments(p: argparse.ArgumentParser, mixing: bool = True, seed_default: str | None = None) -> None:
    """--alpha, --preserve-color, --style-size, --seed, --no-shuffle (and --style-weights, --mask)."""
    g = p.add_argument_group("controls")
    g.add_argument("--alpha", type=float, default=1.0, metavar="A",
                   help="content/style trade-off in [0, 1] (1: full style, the default; 0: the content's "
                        "identity reconstruction)")
    g.add_argument("--preserve-color", nargs="?", const="luminance", default=None, choices=COLOR_METHODS,
                   help="keep the content's colours: 'luminance' (default when given: stylized luminance, the "
                        "content's chroma) or 'match' (recolour the style to the content's colours first)")
    g.add_argument("--style-size", type=int, default=None, metavar="N",
                   help="keep the style's aspect and texture scale: resize its short side to N px and tile it "
                        "(default: stretch the style to the content's size, as the paper does); the resized "
                        "style must fit the pixel limit (default 4096 x 4096 px, or --max-pixels)")
    if mixing:
        g.add_argument("--style-weights", type=float, nargs="+", default=None, metavar="W",
                       help="mix the --style images into one output with these weights (one per style)")
        g.add_argument("--mask", default=None, metavar="FILE",
                       help="one style per region of this mask image (two styles: dark/light regions; more: "
                            "one colour per style, in order of brightness)")
    g.add_argument("--seed", type=int, default=None, help="seed of the style shuffle (same seed, same output"
                   + (f"; default: {seed_default})" if seed_default else ")"))
    g.add_argument("--no-shuffle", action="store_true", help="turn the style shuffle off")


def controls_from_args(args: argparse.Namespace) -> Controls:
    """Controls from parsed flags (checked there: FieldError naming the field). The style size is also checked
    against the pixel limit (the command's max_pixels where it has one, else the default) before any work: a
    style whose short side alone is that size cannot fit (`size.check_style_size`)."""
    weights = getattr(args, "style_weights", None)
    limit = getattr(args, "max_pixels", None)
    check_style_size(args.style_size, DEFAULT_MAX_PIXELS if limit is None else max(limit, 0))
    return Controls(alpha=args.alpha, style_weights=None if weights is None else tuple(weights),
                    preserve_color=args.preserve_color, style_size=args.style_size,
                    mask=getattr(args, "mask", None), shuffle=not args.no_shuffle, seed=args.seed)
