"""`mambast export`: convert any loadable checkpoint to the published layout or a native file.

Before anything is loaded, the output is checked: a native file must end in .safetensors (added when the
name has no suffix), may not be a folder or overwrite another file without --force; an official folder may
not be a file, nor hold this iteration's files already without --force, and a higher iteration there is a
warning (`load` picks the highest). Writes are atomic (mambast.fs): a failure leaves nothing behind.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ..errors import UserError


def register(sub) -> None:
    p = sub.add_parser("export", help="write a checkpoint in the published layout or as one .safetensors",
                       description="Convert a checkpoint (published folder, .safetensors, training run folder).")
    p.add_argument("checkpoint", help="what to convert")
    p.add_argument("--format", choices=("official", "native"), default="official",
                   help="official: mamba/decoder/embedding_iter_N.pth in a folder; native: one .safetensors")
    p.add_argument("--out", required=True, help="output folder (official) or .safetensors file (native)")
    p.add_argument("--iteration", type=int, default=160000, help="N in the official file names")
    p.add_argument("--half", action="store_true", help="native: store weights as float16")
    p.add_argument("--force", action="store_true", help="overwrite an existing model at --out")
    p.set_defaults(func=run)


def native_target(out: str | Path, force: bool) -> Path:
    """The .safetensors path to write for --out (suffix added when there is none); UserError when refused."""
    path = Path(out).expanduser()
    if path.is_dir():
        raise UserError(f"--out {path}: is a folder; give a file name ending in .safetensors")
    if not path.suffix:
        path = path.with_name(path.name + ".safetensors")
    if path.suffix != ".safetensors":
        raise UserError(f"--out {path}: a native checkpoint must end in .safetensors (load recognises it by that)")
    if not path.parent.is_dir():
        raise UserError(f"--out {path}: the folder {path.parent} does not exist")
    if path.exists() and not force:
        raise UserError(f"--out {path}: exists; pass --force to overwrite it")
    return path


def official_target(out: str | Path, iteration: int, force: bool) -> Path:
    """The folder to write the published layout into; UserError when refused, a warning when `load` would
    pick another (higher) iteration from it."""
    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out {folder}: exists and is a file; the official format writes a folder")
    if not folder.is_dir():
        return folder
    names = [f"{tag}_iter_{iteration}.pth" for tag in ("mamba", "decoder", "embedding")]
    if not force and any((folder / n).exists() for n in names):
        raise UserError(f"--out {folder}: already holds iteration {iteration}; pass --force to overwrite it")
    higher = sorted({int(m[1]) for p in folder.glob("*_iter_*.pth")
                     if (m := re.fullmatch(r"(?:mamba|decoder|embedding)_iter_(\d+)\.pth", p.name))
                     and int(m[1]) > iteration})
    if higher:
        print(f"mambast: warning: {folder} also holds iteration {higher[-1]}; loading the folder picks the "
              f"highest, not {iteration} (use another --out or --iteration)", file=sys.stderr)
    return folder


def run(args) -> int:
    import torch

    from ..io import load, save_native, save_official

    if args.iteration < 0:
        raise UserError(f"--iteration must be >= 0, got {args.iteration}")
    if args.format == "official":
        if args.half:
            raise UserError("--half applies to --format native only (the published files hold float32)")
        target = official_target(args.out, args.iteration, args.force)
    else:
        target = native_target(args.out, args.force)
    model = load(args.checkpoint, dtype=None)
    if args.format == "official":
        paths = save_official(model, target, args.iteration)
        print(f"wrote {', '.join(p.name for p in paths.values())} to {target}")
    else:
        save_native(model, target, dtype=torch.float16 if args.half else None)
        print(f"wrote {target}")
    return 0
