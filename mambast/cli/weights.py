"""`mambast weights`: metric weight files (`list`, opt-in `fetch NAME`) and converters (`convert-hed`).

Each sub-command is one `_add_*` function adding its parser to the `weights` sub-parsers; add new ones to
SUBCOMMANDS. Nothing downloads unless the user runs `mambast weights fetch NAME`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

HELP = "metric weight files: list what is found, fetch a known file (network), convert formats"
FIELD_FLAGS = {"normalise_with": "--normalise"}  # convert-hed's folder (mambast.weights.hed.convert_hed)


def _add_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="show the known weight files, where they come from and whether present")
    p.add_argument("--dir", help="weights folder (default $MAMBAST_WEIGHTS or ~/.cache/mambast/weights)")
    p.set_defaults(func=run_list)


def _add_fetch(sub: argparse._SubParsersAction) -> None:
    from mambast.metrics.weights import KNOWN

    p = sub.add_parser(
        "fetch",
        help="download a known weight file (NEEDS NETWORK ACCESS) and record its SHA-256",
        description="Download one known weight file from its public home into the weights folder and record "
        "its SHA-256 in manifest.json there. This needs network access; nothing else in mambast downloads.",
    )
    p.add_argument("name", choices=sorted(KNOWN), help="which file")
    p.add_argument("--dir", help="weights folder (default $MAMBAST_WEIGHTS or ~/.cache/mambast/weights)")
    p.add_argument("--url", help="download from this mirror instead (the hash is still checked and recorded)")
    p.add_argument("--force", action="store_true", help="download again even if the file is present")
    p.set_defaults(func=run_fetch)


def _add_convert_hed(sub: argparse._SubParsersAction) -> None:
    from mambast.cli.weights_hed import add_convert_hed_parser

    add_convert_hed_parser(sub)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_list, _add_fetch, _add_convert_hed]


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `weights` parser and its sub-commands to the CLI's sub-parsers."""
    p = subparsers.add_parser("weights", help=HELP, description=HELP)
    sub = p.add_subparsers(
        dest="weights_command", metavar="{" + ",".join(["list", "fetch", "convert-hed"]) + "}"
    )
    for add in SUBCOMMANDS:
        add(sub)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    return p


def run_list(args: argparse.Namespace) -> int:
    """Print every known file: name, present or not, flag, purpose, public home."""
    from mambast.errors import UserError
    from mambast.metrics.weights import KNOWN, weights_dir

    folder = weights_dir(args.dir)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: exists and is a file, not a folder")
    print(f"weights folder: {folder}")
    for w in KNOWN.values():
        state = "present" if (folder / w.filename).is_file() else "missing"
        flag = "--" + w.field.replace("_", "-")  # mambast eval's flag for it
        print(f"  {w.name:15s} {state:8s} {flag:16s} {w.filename}: {w.purpose}")
        print(f"  {'':15s} {'':8s} {'':16s} from {w.url or '(no stable public URL: give the path to mambast eval)'}")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    """Download one known file (network access needed) and print its path and SHA-256."""
    from mambast.metrics.weights import KNOWN, fetch, weights_dir

    source = args.url or KNOWN[args.name].url
    if source:
        print(f"fetching {args.name} from {source} into {weights_dir(args.dir)} (needs network access)")
    path, sha = fetch(args.name, args.dir, args.url, args.force)
    print(f"{path}\nsha256 {sha} (recorded in {path.parent / 'manifest.json'})")
    return 0
