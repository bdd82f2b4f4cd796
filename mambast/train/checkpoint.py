"""Run directories and training checkpoints.

    RUN_DIR/config.json                 {"format": "mambast-run", "version": 1, "train": <TrainConfig dict>}
    RUN_DIR/checkpoints/step_NNNNNNNN.pt model, optimizer, step, config, RNG states, data position
    RUN_DIR/metrics.jsonl               one JSON object per logged step
    RUN_DIR/samples/step_NNNNNNNN.png   sample grids
    RUN_DIR/tb/                         TensorBoard events (when tensorboard is installed)

Checkpoints are written to a temporary file, flushed and renamed into place, so a crash never leaves a
half-written one; only the newest `keep_last` are kept. They hold tensors, numbers, strings, lists and
dicts only and are always read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from ..config import MambaSTConfig
from ..errors import UserError

__all__ = [
    "CHECKPOINT_FORMAT",
    "RUN_FORMAT",
    "is_run_dir",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_run_model",
    "read_run_config",
    "save_checkpoint",
    "write_run_config",
]

RUN_FORMAT = "mambast-run"
CHECKPOINT_FORMAT = "mambast-train-checkpoint"
_STEP_FILE = re.compile(r"step_(\d+)\.pt")


def _atomic_write_bytes(path: Path, write) -> None:
    """Call write(file) on a temp file beside `path`, fsync it, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def write_run_config(run_dir: str | Path, train_config: dict) -> Path:
    """Write RUN_DIR/config.json (atomically): the marker of a run directory and its effective config."""
    doc = {"format": RUN_FORMAT, "version": 1, "train": train_config}
    text = json.dumps(doc, indent=2, sort_keys=True).encode()
    path = Path(run_dir) / "config.json"
    _atomic_write_bytes(path, lambda f: f.write(text))
    return path


def read_run_config(run_dir: str | Path) -> dict:
    """The TrainConfig dict stored in RUN_DIR/config.json."""
    path = Path(run_dir) / "config.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{run_dir}: not a mambast training run ({path.name}: {e})") from None
    if not isinstance(doc, dict) or doc.get("format") != RUN_FORMAT:
        raise UserError(f"{run_dir}: not a mambast training run (config.json lacks format {RUN_FORMAT!r})")
    return doc["train"]


def is_run_dir(path: str | Path) -> bool:
    """True for a directory written by `mambast train` (its config.json carries the run marker)."""
    path = Path(path)
    try:
        doc = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("format") == RUN_FORMAT


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """[(step, path)] of the complete checkpoints of a run, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    found = []
    for p in folder.glob("step_*.pt") if folder.is_dir() else []:
        m = _STEP_FILE.fullmatch(p.name)
        if m:
            found.append((int(m[1]), p))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1][1] if ckpts else None


def save_checkpoint(run_dir: str | Path, state: dict, keep_last: int = 3) -> Path:
    """Write checkpoints/step_{state['step']:08d}.pt atomically, then drop all but the newest `keep_last`."""
    path = Path(run_dir) / "checkpoints" / f"step_{int(state['step']):08d}.pt"
    state = {"format": CHECKPOINT_FORMAT, "version": 1, **state}
    _atomic_write_bytes(path, lambda f: torch.save(state, f))
    for _, old in list_checkpoints(run_dir)[:-keep_last]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a training checkpoint with weights_only=True; one-line UserError when it is not one."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such checkpoint") from None
    except Exception as e:  # corrupt, truncated or not a torch file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{path}: unreadable checkpoint ({first[:160]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path}: not a mambast training checkpoint")
    return state


def _require_latest(run_dir: str | Path) -> Path:
    if not is_run_dir(run_dir):
        raise UserError(f"{run_dir}: not a mambast training run directory (no config.json run marker)")
    path = latest_checkpoint(run_dir)
    if path is None:
        raise UserError(f"{run_dir}: the run has no checkpoint yet (checkpoints/step_*.pt)")
    return path


def load_run_model(run_dir: str | Path, device: str | torch.device = "cpu"):
    """The MambaST of the latest checkpoint of a run directory, in eval mode on `device`."""
    from ..io.state_dict import load_state_dict_strict
    from ..model import MambaST

    path = _require_latest(run_dir)
    state = load_checkpoint(path)
    with torch.device("meta"):  # no random init: every tensor comes from the checkpoint
        model = MambaST(MambaSTConfig.from_dict(dict(state["config"]["model"])))
    load_state_dict_strict(model, state["model"], str(path), assign=True)
    return model.to(device).eval()
