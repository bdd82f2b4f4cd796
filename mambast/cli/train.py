"""`mambast train`: train Mamba-ST from content and style folders (one process or under torchrun).

The options are generated from the config dataclasses: one `--field-name` per TrainConfig field (help from the
field's metadata) and per MambaSTConfig field (the architecture, overriding the preset's), so a new setting
needs no second copy here. Library errors name fields (`max_iter must be >= 1`); `mambast.cli.main` maps them to flags.
"""

from __future__ import annotations

import argparse
import os
import sys
import types
import typing
import warnings
from dataclasses import fields
from pathlib import Path

from ..config import MambaSTConfig
from ..errors import UserError

# fields that may differ when resuming: they do not change what the run computes
RESUME_OVERRIDABLE = ("max_iter", "workers", "device", "log_every", "save_every", "sample_every", "keep_last",
                      "vgg", "content_dir", "style_dir", "grad_checkpoint")
MODEL_GROUP = "model architecture (a new run only; default: the preset's)"


def flag(name: str) -> str:
    """The command-line spelling of a config field: max_iter -> --max-iter."""
    return "--" + name.replace("_", "-")


def _loss_weights(text: str) -> dict[str, float]:
    """"content=7,style=10" -> {"content": 7.0, "style": 10.0}."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise argparse.ArgumentTypeError(f"expected NAME=WEIGHT[,NAME=WEIGHT...], got {text!r}")
    return out


def _add_field(group, name: str, hint, meta: dict) -> None:
    """One option for one dataclass field, its argparse type read off the type hint."""
    names = [flag(name), *meta.get("aliases", ())]
    kw = {"dest": name, "default": None, "help": meta.get("help") or argparse.SUPPRESS}
    if "metavar" in meta:
        kw["metavar"] = meta["metavar"]
    if "choices" in meta:
        kw["choices"] = meta["choices"]
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType)  # `str | None`
    base = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    if base is bool:
        kw["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(base) is tuple:
        items = typing.get_args(base)
        kw.update(type=items[0], nargs=len(items) if Ellipsis not in items else "+")
        if name == "cnn_channels":
            kw["nargs"] = "+"
    elif base is dict:
        kw["type"] = _loss_weights
    else:
        kw["type"] = base
    group.add_argument(*names, **kw)


def register(subparsers) -> None:
    from ..train.config import TRAIN_PRESETS, TrainConfig

    p = subparsers.add_parser(
        "train",
        help="train a Mamba-ST model (the paper's recipe by default)",
        description="Train Mamba-ST on a content folder and a style folder. Run it under "
        "`torchrun --nproc_per_node K -m mambast train ...` for data-parallel training.",
    )
    p.add_argument("--out", metavar="RUN_DIR", help="run directory to create (config, checkpoints, metrics, samples)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the latest checkpoint of this run")
    p.add_argument("--preset", default="paper", choices=tuple(TRAIN_PRESETS),
                   help="named model + training configuration: paper (the published recipe; the default), "
                   "default (the bundled model's architecture and CPU recipe) or tiny (tests)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        if f.metadata.get("cli", True):
            _add_field(p, f.name, hints[f.name], dict(f.metadata))
    model = p.add_argument_group(MODEL_GROUP)
    model_hints = typing.get_type_hints(MambaSTConfig)
    for f in fields(MambaSTConfig):
        _add_field(model, f.name, model_hints[f.name], dict(f.metadata))
    p.set_defaults(func=run)


def _given(args: argparse.Namespace, cls) -> dict:
    return {f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None}


def build_config(args: argparse.Namespace):
    """The effective TrainConfig of a new run (preset + options) or of a resumed one (saved + overrides)."""
    from ..io.run import read_run_config
    from ..train.config import TrainConfig, train_preset

    given = {k: v for k, v in _given(args, TrainConfig).items() if k not in ("preset", "model")}
    model = _given(args, MambaSTConfig)
    if args.resume:
        if getattr(args, "init_from", None):
            raise UserError("--init-from starts a new run; --resume continues one with its own weights: give one")
        saved = TrainConfig.from_dict(read_run_config(args.resume))
        if "loss_weights" in given:
            given["loss_weights"] = {**saved.loss_weights, **given["loss_weights"]}
        fixed = sorted(k for k, v in given.items() if k not in RESUME_OVERRIDABLE and getattr(saved, k) != v)
        fixed += sorted(k for k, v in model.items() if saved.model.get(k) != (list(v) if isinstance(v, list) else v))
        if fixed:
            raise UserError(f"cannot change {', '.join(fixed)} when resuming (it would change the run); "
                            "start a new run with --out instead")
        return saved.replace(**given)
    if "size" in given and "load_size" not in given:
        given["load_size"] = 2 * given["size"]
    cfg = train_preset(args.preset)
    if "loss_weights" in given:
        given["loss_weights"] = {**cfg.loss_weights, **given["loss_weights"]}
    if model:
        given["model"] = MambaSTConfig.from_dict({**cfg.model, **model}).to_dict()
    return train_preset(args.preset, **given)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"mambast: warning: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from ..train.loop import train

    if args.resume and args.out and Path(args.out).resolve() != Path(args.resume).resolve():
        raise UserError("--resume continues a run in place: leave out --out (or give the same folder)")
    if not args.resume and not args.out:
        raise UserError("give --out RUN_DIR for a new run (or --resume RUN_DIR to continue one)")
    cfg = build_config(args)  # FieldErrors (library field names) become flags in mambast.cli.main
    run_dir = Path(args.resume or args.out)
    with warnings.catch_warnings():  # library warnings (e.g. a changed schedule on resume) as one line
        warnings.showwarning = _show_warning
        result = train(cfg, run_dir, resume=bool(args.resume), progress=not args.no_progress)
    if result.checkpoint is not None and os.environ.get("RANK", "0") == "0":
        skipped = f"; skipped {len(result.bad_files)} unreadable image(s)" if result.bad_files else ""
        losses = ", ".join(f"{k} {v:.4g}" for k, v in result.losses.items())
        print(f"step {result.step}: {losses or 'nothing to do'}; checkpoint {result.checkpoint}{skipped}")
    return 0
