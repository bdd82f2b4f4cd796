"""How an evaluation runs, as two small dataclasses checked once, when they are made.

`EvalOptions` says how the pairs are preprocessed and scored (`score`, `evaluate`, `run_protocol`);
`StylizeOptions` how `run_protocol` stylizes them first. A bad value is a one-line `FieldError` naming the
field as spelled here (`cfsd_chunk must be an integer >= 1, got -4`); front-ends spell fields their own way
(`mambast.cli.main`: `--cfsd-chunk`).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from mambast.device import resolve_device
from mambast.errors import FieldError

from .preprocess import MODES

__all__ = ["STYLE_SETS", "STYLIZED_FORMATS", "EvalOptions", "StylizeOptions"]

STYLE_SETS = ("pairs", "unique")  # FID style set: one style image per scored pair (copy_inputs.py) / each once
STYLIZED_FORMATS = ("jpg", "png")


def _whole(options: object, name: str, low: int) -> None:
    """FieldError unless field `name` of `options` is a whole number (int, numpy integer; not a bool) >= low;
    stored back as a Python int."""
    value = getattr(options, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise FieldError(f"{name} must be an integer >= {low}, got {value!r}", name)
    object.__setattr__(options, name, int(value))  # frozen dataclass: normalised once, at construction


def _choice(value: object, name: str, choices: tuple[str, ...], optional: bool = False) -> None:
    """FieldError unless `value` is one of `choices` (or None when optional)."""
    if not (optional and value is None) and value not in choices:
        raise FieldError(f"{name} must be one of {', '.join(choices)}, got {value!r}", name)


@dataclass(frozen=True)
class EvalOptions:
    """How pairs are preprocessed and scored (see docs/evaluation.md).

    mode: "paper" (StyleID's eval_artfid.py as the paper ran it: FID / LPIPS inputs at short side `size` px)
        or "native" (every image as stored, art-fid conventions).
    size: short side in px of the "paper" inputs, and of the contents `run_protocol` stylizes (>= 8, one patch).
    fid_style_set: FID reference set, "pairs" (the style of every scored pair, copy_inputs.py) or "unique"
        (each style once); None: "pairs" in "paper" mode, "unique" in "native" mode (`style_set`).
    fid_inf: also FID_inf (an extra, `fid_infinity`), from `fid_inf_points` subset sizes (>= 2).
    batch_size: Inception batch (same-size images only); cfsd_chunk: CFSD rows per chunk; contact_cell: the
        contact sheet's cell in px (>= 8); device: torch device of the metric networks and the stylizer
        (mambast.device.resolve_device: "auto", "cpu", "cuda", "cuda:N"; stored resolved);
        progress: progress bars.
    FieldError naming the first bad field.
    """

    mode: str = "paper"
    size: int = 512
    fid_style_set: str | None = None
    fid_inf: bool = False
    fid_inf_points: int = 15
    batch_size: int = 8
    cfsd_chunk: int = 256
    contact_cell: int = 128
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        _choice(self.mode, "mode", MODES)
        _choice(self.fid_style_set, "fid_style_set", STYLE_SETS, optional=True)
        for name, low in (("size", 8), ("batch_size", 1), ("cfsd_chunk", 1), ("contact_cell", 8),
                          ("fid_inf_points", 2)):  # fmt: skip
            _whole(self, name, low)
        object.__setattr__(self, "device", str(resolve_device(self.device)))  # the one resolver: "auto", checks

    @property
    def style_set(self) -> str:
        """The FID style set in use: `fid_style_set`, or the mode's default."""
        return self.fid_style_set or ("pairs" if self.mode == "paper" else "unique")


@dataclass(frozen=True)
class StylizeOptions:
    """How `run_protocol` stylizes every pair: seed: the style-shuffle seed of every pair (>= 0; None: one
    drawn per pair), shuffle: the style shuffle on/off, stylized_format: "jpg" or "png" (None: "jpg" in
    "paper" mode, what the published evaluation writes; "png" in "native" mode; `format_for`).
    FieldError naming the first bad field."""

    seed: int | None = 0
    shuffle: bool = True
    stylized_format: str | None = None

    def __post_init__(self) -> None:
        if self.seed is not None:
            _whole(self, "seed", 0)
        _choice(self.stylized_format, "stylized_format", STYLIZED_FORMATS, optional=True)

    def format_for(self, mode: str) -> str:
        """The stylized files' format under `mode`."""
        return self.stylized_format or ("jpg" if mode == "paper" else "png")
