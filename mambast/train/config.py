"""`TrainConfig`: everything a training run needs, as plain data, and the named training presets.

A preset is a model configuration name (MambaSTConfig.preset) plus training hyper-parameters:

    paper   the published recipe (docs/model.md section 10): paper model, 512x512 resize + random 256 crop, batch 8,
            Adam lr 1e-4 constant, 160k iterations, loss weights 7 / 10 / 70 / 1, DropPath 0.1 in the decoder.
    default the bundled model's architecture (MambaSTConfig.preset("default")) with the settings of the first
            phase of the first default model's CPU recipe (benchmarks/train_default.py train): 64 px crops of
            128x128 resizes, batch 4, lr 3e-4, 50 warm-up steps, no DropPath. (The bundled model itself was
            then distilled from a teacher: benchmarks/train_default.py distill, docs/default-model.md.)
    tiny    the small model at 64 px crops of 128x128 resizes, batch 2: tests and CPU experiments.

A config whose `distill` field is set trains against a teacher's cached outputs instead of the paper's losses
(`mambast.train.distill.DistillConfig.train_config` builds one); the loop, checkpoints and resume are the same.

The effective configuration is saved as config.json in the run directory and in every checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from ..config import FieldError, MambaSTConfig, dataclass_from_dict
from ..errors import UserError
from .losses import DISTILL_TERMS, LOSS_NAMES, LossWeights

__all__ = ["TrainConfig", "TRAIN_PRESETS", "train_preset"]

AMP_MODES = ("auto", "bf16", "off")
SCHEDULES = ("constant", "cosine", "linear")


def _opt(default, help: str, factory=None, **cli):  # noqa: A002 - `help` as argparse spells it
    """A TrainConfig field with its command-line help (and argparse extras: choices, metavar, flag, aliases)."""
    meta = {"help": help, **cli}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """A training run's settings. `model` is a MambaSTConfig as a dict; paths are strings.

    The `mambast train` options are generated from these fields (mambast/cli/train.py): each field's
    metadata carries its help text; `cli=False` keeps a field off the command line.
    """

    preset: str = _opt("paper", "", cli=False)
    model: dict = _opt(None, "", factory=lambda: MambaSTConfig.preset("paper").to_dict(), cli=False)
    content_dir: str = _opt("", "folder of content images (searched recursively)", metavar="DIR")
    style_dir: str = _opt("", "folder of style images (searched recursively)", metavar="DIR")
    vgg: str | None = _opt(None, "loss-network weights: vgg_normalised.pth, torchvision vgg19/vgg16, or native",
                           metavar="PATH")
    vgg_layout: str = _opt("auto", "layout of the vgg file (default: detected from its keys)",
                           choices=("auto", "vgg_normalised", "vgg19", "vgg16"))
    allow_random_vgg: bool = _opt(False, "train against a randomly initialised VGG when no vgg is given "
                                  "(tests only)")
    # data: resize every image to load_size x load_size (aspect not kept), then a random size x size crop
    size: int = _opt(256, "training crop size in px (paper: 256)", metavar="N")
    load_size: int = _opt(512, "images are resized to this square before cropping (default: twice size, as "
                          "the paper's 512 -> 256)", metavar="N")
    batch_size: int = _opt(8, "images per step and process (paper: 8)", metavar="N")
    workers: int = _opt(2, "data-loading worker processes", metavar="N")
    seed: int = _opt(0, "seed of the initial weights, data order, crops and shuffles", metavar="N")
    # optimisation
    max_iter: int = _opt(160_000, "total training iterations (paper: 160000)", metavar="N")
    lr: float = _opt(1e-4, "Adam learning rate (paper: 1e-4)")
    schedule: str = _opt("constant", "learning rate after warm-up: constant, or cosine / linear decay to min_lr "
                         "at max_iter", choices=("constant", "cosine", "linear"))
    warmup_iters: int = _opt(0, "linear learning-rate warm-up iterations (default 0)", metavar="N",
                             aliases=("--warmup",))
    min_lr: float = _opt(0.0, "final learning rate of the cosine / linear schedules")
    grad_clip: float = _opt(0.0, "clip the global gradient norm to this (0 = off)")
    betas: tuple[float, float] = _opt((0.9, 0.999), "Adam betas", metavar=("B1", "B2"))
    weight_decay: float = _opt(0.0, "Adam weight decay")
    loss_weights: dict = _opt(None, "weights of the loss terms, e.g. content=7,style=10,identity1=70,identity2=1 "
                              "(the ones not given keep their value)", factory=lambda: LossWeights().to_dict(),
                              metavar="NAME=W,...")
    style_shuffle: bool = _opt(True, "shuffle the style tokens (the paper's; --no-style-shuffle turns it off)")
    amp: str = _opt("auto", "bf16 autocast (auto: on CUDA only)", choices=AMP_MODES)
    grad_checkpoint: bool = _opt(False, "recompute the Mamba blocks in the backward (less memory at large sizes)")
    init_from: str | None = _opt(None, "fine-tune: start from these weights (published folder, .safetensors file, "
                                 "run directory, or 'default' for the bundled model); the architecture is "
                                 "taken from them", metavar="PATH")
    # bookkeeping
    log_every: int = _opt(10, "iterations between metrics lines", metavar="N")
    save_every: int = _opt(5_000, "iterations between checkpoints", metavar="N")
    keep_last: int = _opt(3, "checkpoints to keep (default 3)", metavar="N")
    sample_every: int = _opt(1_000, "iterations between sample grids (0 = never)", metavar="N")
    device: str = _opt("auto", "auto (default), cpu, cuda or cuda:N")
    # set by mambast.train.distill, not on the command line (a resumed run keeps them)
    distill: dict | None = _opt(None, "distillation instead of the paper's losses: {cache_dir, prefetch, source}; "
                                "loss_weights then weigh DISTILL_TERMS (mambast.train.distill)", cli=False)
    init_growth: dict | None = _opt(None, "init_from grown before training: {widen_noise, grow} "
                                    "(mambast.train.widen.grow_source)", cli=False)

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)
        self.validate()

    def validate(self) -> None:
        """Raise FieldError (one line naming the fields, not command-line flags) on settings that cannot work."""
        checks = [
            (self.size >= 32, f"size must be >= 32 px, got {self.size}", ("size",)),
            (self.load_size >= self.size, f"load_size ({self.load_size}) must be >= size ({self.size})",
             ("load_size", "size")),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}", ("batch_size",)),
            (self.max_iter >= 1, f"max_iter must be >= 1, got {self.max_iter}", ("max_iter",)),
            (math.isfinite(self.lr) and self.lr > 0, f"lr must be > 0, got {self.lr}", ("lr",)),
            (math.isfinite(self.min_lr) and self.min_lr >= 0, f"min_lr must be >= 0, got {self.min_lr}", ("min_lr",)),
            (self.warmup_iters >= 0, f"warmup_iters must be >= 0, got {self.warmup_iters}", ("warmup_iters",)),
            (math.isfinite(self.grad_clip) and self.grad_clip >= 0, f"grad_clip must be >= 0, got {self.grad_clip}",
             ("grad_clip",)),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}", ("weight_decay",)),
            (len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
             f"betas must be two numbers in [0, 1), got {list(self.betas)}", ("betas",)),
            (self.workers >= 0, f"workers must be >= 0, got {self.workers}", ("workers",)),
            (self.keep_last >= 1, f"keep_last must be >= 1, got {self.keep_last}", ("keep_last",)),
            (self.amp in AMP_MODES, f"amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}", ("amp",)),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}", ("schedule",)),
        ]
        for name in ("log_every", "save_every", "sample_every"):
            checks.append((getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}", (name,)))
        for ok, message, names in checks:
            if not ok:
                raise FieldError(message, *names)
        known = DISTILL_TERMS if self.distill is not None else LOSS_NAMES
        unknown = sorted(set(self.loss_weights) - set(known))
        if unknown:
            raise FieldError(f"loss_weights: unknown terms {', '.join(unknown)} (known: {', '.join(known)})",
                             "loss_weights")
        patch = self.model_config().patch_size
        if self.size % patch:
            raise FieldError(f"size ({self.size}) must be a multiple of the patch size {patch}", "size")

    def model_config(self) -> MambaSTConfig:
        return MambaSTConfig.from_dict(dict(self.model))

    def weights(self) -> LossWeights:
        return LossWeights(**{**LossWeights().to_dict(), **self.loss_weights})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        d["model"] = self.model_config().to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return dataclass_from_dict(cls, d, "training config")

    def replace(self, **changes) -> TrainConfig:
        return replace(self, **changes)


def _preset(model: str, **train) -> TrainConfig:
    return TrainConfig(preset=model, model=MambaSTConfig.preset(model).to_dict(), **train)


TRAIN_PRESETS = {
    "paper": dict(model="paper"),
    "default": dict(model="default", size=64, load_size=128, batch_size=4, lr=3e-4, warmup_iters=50, workers=0,
                    log_every=10, save_every=50, sample_every=250, keep_last=2),
    "tiny": dict(model="tiny", size=64, load_size=128, batch_size=2, max_iter=2_000, lr=2e-4, log_every=10,
                 save_every=500, sample_every=250, workers=0),
}


def train_preset(name: str, **overrides) -> TrainConfig:
    """The named training preset with `overrides` applied (None values are ignored)."""
    if name not in TRAIN_PRESETS:
        raise UserError(f"unknown training preset {name!r}; choose one of {', '.join(TRAIN_PRESETS)}")
    spec = dict(TRAIN_PRESETS[name])
    cfg = _preset(spec.pop("model"), **spec)
    cfg = cfg.replace(preset=name, **{k: v for k, v in overrides.items() if v is not None})
    return cfg
