"""`mambast export`: convert any loadable checkpoint to the published layout or a native file."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("export", help="write a checkpoint in the published layout or as one .safetensors",
                       description="Convert a checkpoint (published folder, .safetensors, training run folder).")
    p.add_argument("checkpoint", help="what to convert")
    p.add_argument("--format", choices=("official", "native"), default="official",
                   help="official: mamba/decoder/embedding_iter_N.pth in a folder; native: one .safetensors")
    p.add_argument("--out", required=True, help="output folder (official) or .safetensors file (native)")
    p.add_argument("--iteration", type=int, default=160000, help="N in the official file names")
    p.add_argument("--half", action="store_true", help="native: store weights as float16")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..io import load, save_native, save_official

    model = load(args.checkpoint, dtype=None)
    if args.format == "official":
        paths = save_official(model, args.out, args.iteration)
        print(f"wrote {', '.join(p.name for p in paths.values())} to {args.out}")
    else:
        save_native(model, args.out, dtype=torch.float16 if args.half else None)
        print(f"wrote {args.out}")
    return 0
