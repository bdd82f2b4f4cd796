"""Reading training run folders (written by `mambast.train`; the layout is described in
mambast/train/checkpoint.py): the run marker, the stored config, the checkpoints, the latest model.

This lives in `io` so that loading a run folder (`mambast.load(RUN_DIR)`, eval, export) does not import the
training package; `mambast.train.checkpoint` writes these files and re-exports the readers. A distillation
run folder of the earlier layout (RUN/ckpt_NNNNNNN.pt beside its own config.json, written before the
distillation ran in the training loop) is read too (`is_legacy_distill_run`, `load_legacy_distill`), never
resumed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from ..config import MambaSTConfig
from ..errors import UserError
from .state_dict import first_line, load_state_dict_strict, torch_load_tensors

__all__ = ["CHECKPOINT_FORMAT", "RUN_FORMAT", "is_legacy_distill_run", "is_run_dir", "latest_checkpoint",
           "list_checkpoints", "load_checkpoint", "load_legacy_distill", "load_run_model", "read_run_config",
           "require_latest"]

RUN_FORMAT = "mambast-run"
CHECKPOINT_FORMAT = "mambast-train-checkpoint"
_STEP_FILE = re.compile(r"step_(\d+)\.pt")


def read_run_config(run_dir: str | Path) -> dict:
    """The TrainConfig dict stored in RUN_DIR/config.json."""
    path = Path(run_dir) / "config.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{run_dir}: not a mambast training run ({path.name}: {first_line(e)})") from None
    if not isinstance(doc, dict) or doc.get("format") != RUN_FORMAT or not isinstance(doc.get("train"), dict):
        raise UserError(f"{run_dir}: not a mambast training run (config.json lacks format {RUN_FORMAT!r})")
    return doc["train"]


def is_run_dir(path: str | Path) -> bool:
    """True for a directory written by `mambast train` (its config.json carries the run marker)."""
    try:
        doc = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("format") == RUN_FORMAT


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """[(step, path)] of the complete checkpoints of a run, oldest first (hidden temp files are not listed)."""
    folder = Path(run_dir) / "checkpoints"
    found = []
    for p in folder.glob("step_*.pt") if folder.is_dir() else []:
        m = _STEP_FILE.fullmatch(p.name)
        if m:
            found.append((int(m[1]), p))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint of a run, or None."""
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1][1] if ckpts else None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a training checkpoint with the one torch-file reader (`torch_load_tensors`: weights_only=True);
    one-line UserError when it is not one (missing, empty, truncated, corrupt, pickled objects, another kind of
    file)."""
    state = torch_load_tensors(path, "training checkpoint", map_location=map_location)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path}: not a mambast training checkpoint")
    return state


def require_latest(run_dir: str | Path) -> Path:
    """The newest checkpoint of a run folder; one UserError line when it is not a run or has none."""
    if not is_run_dir(run_dir):
        raise UserError(f"{run_dir}: not a mambast training run directory (no config.json run marker)")
    path = latest_checkpoint(run_dir)
    if path is None:
        raise UserError(f"{run_dir}: the run has no checkpoint yet (checkpoints/step_*.pt)")
    return path


def load_run_model(run_dir: str | Path, device: str | torch.device = "cpu"):
    """The MambaST of the latest checkpoint of a run directory, in eval mode on `device`."""
    from ..model import MambaST

    path = require_latest(run_dir)
    state = load_checkpoint(path)
    try:
        config = MambaSTConfig.from_dict(dict(state["config"]["model"]))
        weights = state["model"]
    except (KeyError, TypeError) as e:
        raise UserError(f"{path}: training checkpoint without a model config ({first_line(e)})") from None
    with torch.device("meta"):  # no random init: every tensor comes from the checkpoint
        model = MambaST(config)
    load_state_dict_strict(model, weights, str(path), assign=True)
    return model.to(device).eval()


def is_legacy_distill_run(path: str | Path) -> bool:
    """A distillation run folder of the earlier layout: ckpt_*.pt files and no run marker."""
    path = Path(path)
    return path.is_dir() and not is_run_dir(path) and any(path.glob("ckpt_*.pt"))


def load_legacy_distill(run_dir: str | Path, device: str | torch.device = "cpu"):
    """The MambaST of the newest ckpt_*.pt of an earlier-layout distillation folder, in eval mode on `device`."""
    from ..model import MambaST

    path = sorted(Path(run_dir).glob("ckpt_*.pt"))[-1]
    state = torch_load_tensors(path, "distillation checkpoint")
    try:
        config = MambaSTConfig.from_dict(dict(state["config"]["model"]))
        weights = state["model"]
    except (KeyError, TypeError) as e:
        raise UserError(f"{path}: distillation checkpoint without a model config ({first_line(e)})") from None
    with torch.device("meta"):
        model = MambaST(config)
    load_state_dict_strict(model, weights, str(path), assign=True)
    return model.to(device).eval()
