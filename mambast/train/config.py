"""`TrainConfig`: everything a training run needs, as plain data, and the named training presets.

A preset is a model configuration name (MambaSTConfig.preset) plus training hyper-parameters:

    paper   the published recipe (architecture.md 10): paper model, 512x512 resize + random 256 crop, batch 8,
            Adam lr 1e-4 constant, 160k iterations, loss weights 7 / 10 / 70 / 1, DropPath 0.1 in the decoder.
    tiny    the small model at 64 px crops of 128x128 resizes, batch 2: tests and CPU experiments.

The effective configuration is saved as config.json in the run directory and in every checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from ..config import MambaSTConfig, dataclass_from_dict
from ..errors import UserError
from .losses import LossWeights

__all__ = ["TrainConfig", "TRAIN_PRESETS", "train_preset"]

AMP_MODES = ("auto", "bf16", "off")
SCHEDULES = ("constant", "cosine", "linear")


@dataclass
class TrainConfig:
    """A training run's settings. `model` is a MambaSTConfig as a dict; paths are strings."""

    preset: str = "paper"
    model: dict = field(default_factory=lambda: MambaSTConfig.preset("paper").to_dict())
    content_dir: str = ""
    style_dir: str = ""
    vgg: str | None = None
    vgg_layout: str = "auto"
    allow_random_vgg: bool = False  # tests only: train against a randomly initialised VGG
    # data: resize every image to load_size x load_size (aspect not kept), then a random size x size crop
    size: int = 256
    load_size: int = 512
    batch_size: int = 8
    workers: int = 2
    seed: int = 0
    # optimisation
    max_iter: int = 160_000
    lr: float = 1e-4
    schedule: str = "constant"  # after warm-up: constant, cosine or linear decay to min_lr at max_iter
    warmup_iters: int = 0
    min_lr: float = 0.0
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    loss_weights: dict = field(default_factory=lambda: LossWeights().to_dict())
    style_shuffle: bool = True
    amp: str = "auto"  # auto = bf16 autocast on CUDA, off on CPU
    grad_checkpoint: bool = False
    init_from: str | None = None  # start from these weights (published folder, .safetensors, run dir)
    # bookkeeping
    log_every: int = 10
    save_every: int = 5_000
    keep_last: int = 3
    sample_every: int = 1_000
    device: str = "auto"

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)
        self.validate()

    def validate(self) -> None:
        """Raise UserError (one line) on settings that cannot work."""
        checks = [
            (self.size >= 32, f"--size must be >= 32 px, got {self.size}"),
            (self.load_size >= self.size, f"--load-size ({self.load_size}) must be >= --size ({self.size})"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.max_iter >= 1, f"--max-iter must be >= 1, got {self.max_iter}"),
            (self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (self.workers >= 0, f"--workers must be >= 0, got {self.workers}"),
            (self.keep_last >= 1, f"keep_last must be >= 1, got {self.keep_last}"),
            (self.amp in AMP_MODES, f"amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}"),
            (min(self.log_every, self.save_every, self.sample_every) >= 0, "intervals must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        patch = self.model_config().patch_size
        if self.size % patch:
            raise UserError(f"--size ({self.size}) must be a multiple of the patch size {patch}")

    def model_config(self) -> MambaSTConfig:
        return MambaSTConfig.from_dict(dict(self.model))

    def weights(self) -> LossWeights:
        return LossWeights(**self.loss_weights)

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
