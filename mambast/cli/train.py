"""`mambast train`: train Mamba-ST from content and style folders (one process or under torchrun)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import UserError

# options that may differ when resuming: they do not change what the run computes
RESUME_OVERRIDABLE = ("max_iter", "workers", "device", "log_every", "save_every", "sample_every", "keep_last",
                      "vgg", "content_dir", "style_dir", "grad_checkpoint", "init_from")
# command-line option -> TrainConfig field
OPTIONS = {
    "content_dir": "content_dir", "style_dir": "style_dir", "vgg": "vgg", "vgg_layout": "vgg_layout",
    "max_iter": "max_iter", "batch_size": "batch_size", "size": "size", "load_size": "load_size", "lr": "lr",
    "seed": "seed", "workers": "workers", "warmup": "warmup_iters", "schedule": "schedule", "min_lr": "min_lr",
    "grad_clip": "grad_clip", "amp": "amp", "log_every": "log_every", "save_every": "save_every",
    "sample_every": "sample_every", "keep_last": "keep_last", "device": "device", "init_from": "init_from",
}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a Mamba-ST model (the paper's recipe by default)",
        description="Train Mamba-ST on a content folder and a style folder. Run it under "
        "`torchrun --nproc_per_node K -m mambast train ...` for data-parallel training.",
    )
    p.add_argument("--content-dir", metavar="DIR", help="folder of content images (searched recursively)")
    p.add_argument("--style-dir", metavar="DIR", help="folder of style images (searched recursively)")
    p.add_argument("--vgg", metavar="PATH",
                   help="loss-network weights: vgg_normalised.pth, torchvision vgg19/vgg16, or native")
    p.add_argument("--vgg-layout", choices=("auto", "vgg_normalised", "vgg19", "vgg16"),
                   help="layout of the --vgg file (default: detected from its keys)")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory to create (config, checkpoints, metrics, samples)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the latest checkpoint of this run")
    p.add_argument("--init-from", metavar="PATH", help="fine-tune: start from these weights (published "
                   "folder, .safetensors file or run directory) instead of a fresh initialisation")
    p.add_argument("--preset", default="paper", choices=("paper", "tiny"),
                   help="named model + training configuration (default: paper, the published recipe)")
    p.add_argument("--max-iter", type=int, metavar="N", help="total training iterations (paper: 160000)")
    p.add_argument("--batch-size", type=int, metavar="N", help="images per step and rank (paper: 8)")
    p.add_argument("--size", type=int, metavar="N", help="training crop size in px (paper: 256)")
    p.add_argument("--load-size", type=int, metavar="N", help="images are resized to this square before cropping "
                   "(default: twice --size, as the paper's 512 -> 256)")
    p.add_argument("--lr", type=float, help="Adam learning rate (paper: 1e-4)")
    p.add_argument("--seed", type=int, metavar="N", help="seed of the initial weights, data order, crops and shuffles")
    p.add_argument("--workers", type=int, metavar="N", help="data-loading worker processes")
    p.add_argument("--warmup", type=int, metavar="N", help="linear learning-rate warm-up iterations (default 0)")
    p.add_argument("--schedule", choices=("constant", "cosine", "linear"), help="lr after warm-up")
    p.add_argument("--min-lr", type=float, help="final lr of the cosine / linear schedules")
    p.add_argument("--grad-clip", type=float, help="clip the global gradient norm to this (0 = off)")
    p.add_argument("--amp", choices=("auto", "bf16", "off"), help="bf16 autocast (auto: on CUDA only)")
    p.add_argument("--grad-checkpoint", action="store_true", default=None,
                   help="recompute the Mamba blocks in the backward (less memory at large sizes)")
    p.add_argument("--log-every", type=int, metavar="N", help="iterations between metrics lines")
    p.add_argument("--save-every", type=int, metavar="N", help="iterations between checkpoints")
    p.add_argument("--sample-every", type=int, metavar="N", help="iterations between sample grids (0 = never)")
    p.add_argument("--keep-last", type=int, metavar="N", help="checkpoints to keep (default 3)")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--allow-random-vgg", action="store_true", default=None,
                   help="train against a randomly initialised VGG when --vgg is not given (tests only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    """The effective TrainConfig of a new run (preset + options) or of a resumed one (saved + overrides)."""
    from ..train.checkpoint import read_run_config
    from ..train.config import TrainConfig, train_preset

    given = {field: getattr(args, opt) for opt, field in OPTIONS.items() if getattr(args, opt) is not None}
    for flag in ("grad_checkpoint", "allow_random_vgg"):
        if getattr(args, flag):
            given[flag] = True
    if args.resume:
        saved = TrainConfig.from_dict(read_run_config(args.resume))
        fixed = sorted(k for k, v in given.items() if k not in RESUME_OVERRIDABLE and getattr(saved, k) != v)
        if fixed:
            raise UserError(f"cannot change {', '.join(fixed)} when resuming (it would change the run); "
                            "start a new run with --out instead")
        return saved.replace(**given)
    if "size" in given and "load_size" not in given:
        given["load_size"] = 2 * given["size"]
    return train_preset(args.preset, **given)


def run(args: argparse.Namespace) -> int:
    from ..train.loop import train

    if args.resume and args.out and Path(args.out).resolve() != Path(args.resume).resolve():
        raise UserError("--resume continues a run in place: leave out --out (or give the same folder)")
    if not args.resume and not args.out:
        raise UserError("give --out RUN_DIR for a new run (or --resume RUN_DIR to continue one)")
    cfg = build_config(args)
    run_dir = Path(args.resume or args.out)
    result = train(cfg, run_dir, resume=bool(args.resume), progress=not args.no_progress)
    if result.checkpoint is not None and os.environ.get("RANK", "0") == "0":
        skipped = f"; skipped {len(result.bad_files)} unreadable image(s)" if result.bad_files else ""
        losses = ", ".join(f"{k} {v:.4g}" for k, v in result.losses.items())
        print(f"step {result.step}: {losses or 'nothing to do'}; checkpoint {result.checkpoint}{skipped}")
    return 0
