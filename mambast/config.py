"""`MambaSTConfig`: every architectural choice of the model, as data. The defaults are the paper's model."""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

from .errors import FieldError, UserError


def dataclass_from_dict(cls, d: dict, what: str):
    """`cls(**d)`, refusing unknown keys with one line (configs read back from checkpoints and run folders)."""
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise UserError(f"unknown {what} keys: {', '.join(unknown)}")
    return cls(**d)


@dataclass(frozen=True)
class MambaSTConfig:
    """Mamba-ST hyper-parameters (docs/model.md section 1); the defaults are the published model.

    d_model: token width C; expand: d_inner = expand * d_model; d_state: N; dt_rank: R (None -> ceil(C/16));
    patch_size: patch embedding stride, a power of two (one x2 upsampling per halving in the CNN decoder);
    content_layers / style_layers / decoder_layers: VSS / VSS / ST-VSS block counts; drop_path: DropPath
    rate of the decoder blocks (training only); cnn_channels: widths of the CNN decoder stages;
    init: "official" (Xavier re-init of every >= 2-D parameter of the Mamba part, as published) or "mamba".
    """

    d_model: int = field(default=512, metadata={"help": "token width C (paper: 512)"})
    d_state: int = field(default=16, metadata={"help": "SSM state size N (paper: 16)"})
    expand: int = field(default=2, metadata={"help": "d_inner = expand * d_model (paper: 2)"})
    dt_rank: int | None = field(default=None, metadata={"help": "rank R of the step-size projection "
                                                                "(default: ceil(d_model / 16))"})
    patch_size: int = field(default=8, metadata={"help": "patch embedding stride, a power of two (paper: 8)"})
    content_layers: int = field(default=3, metadata={"help": "VSS blocks of the content encoder (paper: 3)"})
    style_layers: int = field(default=3, metadata={"help": "VSS blocks of the style encoder (paper: 3)"})
    decoder_layers: int = field(default=3, metadata={"help": "ST-VSS blocks of the decoder (paper: 3)"})
    drop_path: float = field(default=0.1, metadata={"help": "DropPath rate of the decoder blocks, in [0, 1)"})
    cnn_channels: tuple[int, int, int] = field(default=(256, 128, 64),
                                               metadata={"help": "widths of the CNN decoder stages"})
    init: str = field(default="official", metadata={"help": "weight init: official or mamba"})

    def __post_init__(self):
        object.__setattr__(self, "cnn_channels", tuple(int(c) for c in self.cnn_channels))
        for f in ("d_model", "d_state", "expand", "dt_rank", "patch_size", "content_layers", "style_layers",
                  "decoder_layers"):  # numpy integers are integers too (stored as int: JSON, equality)
            value = getattr(self, f)
            if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
                object.__setattr__(self, f, int(value))
        counts = {"d_model": self.d_model, "d_state": self.d_state, "expand": self.expand,
                  "content_layers": self.content_layers, "style_layers": self.style_layers,
                  "decoder_layers": self.decoder_layers}
        for name, value in counts.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise FieldError(f"{name} must be an integer >= 1, got {value!r}", name)
        if self.dt_rank is not None and (not isinstance(self.dt_rank, int) or self.dt_rank < 1):
            raise FieldError(f"dt_rank must be an integer >= 1 (or None for ceil(d_model / 16)), got {self.dt_rank!r}",
                             "dt_rank")
        if not 0.0 <= self.drop_path < 1.0:
            raise FieldError(f"drop_path must be in [0, 1), got {self.drop_path!r}", "drop_path")
        if min(self.cnn_channels, default=1) < 1:
            raise FieldError(f"cnn_channels must be >= 1, got {list(self.cnn_channels)}", "cnn_channels")
        p = self.patch_size
        if p < 2 or p & (p - 1):
            raise FieldError(f"patch_size must be a power of two >= 2, got {p}", "patch_size")
        if len(self.cnn_channels) != p.bit_length() - 1:
            raise FieldError(f"cnn_channels needs one width per x2 upsampling stage: {p.bit_length() - 1} "
                            f"for patch_size {p}, got {len(self.cnn_channels)}", "cnn_channels", "patch_size")
        if self.init not in ("official", "mamba"):
            raise FieldError(f"init must be 'official' or 'mamba', got {self.init!r}", "init")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def resolved_dt_rank(self) -> int:
        """The dt_rank the model is built with: the field, or ceil(d_model / 16) when it is None."""
        return self.dt_rank if self.dt_rank is not None else math.ceil(self.d_model / 16)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cnn_channels"] = list(self.cnn_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> MambaSTConfig:
        return dataclass_from_dict(cls, d, "model config")

    @classmethod
    def preset(cls, name: str, **overrides) -> MambaSTConfig:
        """A named configuration from PRESETS: "paper" (the published model), "default" (the architecture of
        the model bundled with the package, mambast/assets/default.safetensors) or "tiny" (tests/CPU)."""
        if name not in PRESETS:
            raise UserError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        return replace(PRESETS[name], **overrides)


# The one registry of model architectures. "default" must equal the config stored in the bundled
# default.safetensors (tests/test_train_robust.py checks it): the CLI can fine-tune it with --init-from default.
PRESETS: dict[str, MambaSTConfig] = {
    "paper": MambaSTConfig(),
    "default": MambaSTConfig(d_model=256, d_state=16, expand=1, dt_rank=8, content_layers=2, style_layers=2,
                             decoder_layers=2, cnn_channels=(128, 64, 32), drop_path=0.0),
    "tiny": MambaSTConfig(d_model=64, d_state=8, content_layers=1, style_layers=1, decoder_layers=1,
                          cnn_channels=(64, 32, 16)),
}
