"""Run directories and training checkpoints (writing; the readers live in `mambast.io.run`).

    RUN_DIR/config.json                 {"format": "mambast-run", "version": 1, "train": <TrainConfig dict>}
    RUN_DIR/checkpoints/step_NNNNNNNN.pt model, optimizer, step, config, RNG states, data position
    RUN_DIR/metrics.jsonl               one JSON object per logged step
    RUN_DIR/samples/step_NNNNNNNN.png   sample grids
    RUN_DIR/tb/                         TensorBoard events (when tensorboard is installed)

Every file goes through `mambast.fs.atomic_write` (temp file, fsync, rename), so a crash, a kill or a full
disk never leaves a half-written one under its name: the previous checkpoint survives and `--resume` works;
a full disk is one line naming the path (the temp files a killed save left are removed by the next run with
`mambast.fs.remove_stale_temp_files`). Only the newest `keep_last` checkpoints are kept. Checkpoints hold
tensors, numbers, strings, lists and dicts only and are always read with weights_only=True (the one torch-file
reader, `mambast.io.state_dict.torch_load_tensors`).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..fs import atomic_write, atomic_write_text, ensure_dir
from ..io.run import (
    CHECKPOINT_FORMAT,
    RUN_FORMAT,
    is_run_dir,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_run_model,
    read_run_config,
)
from ..io.state_dict import torch_save

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

def write_run_config(run_dir: str | Path, train_config: dict) -> Path:
    """Write RUN_DIR/config.json (atomically): the marker of a run directory and its effective config."""
    doc = {"format": RUN_FORMAT, "version": 1, "train": train_config}
    ensure_dir(run_dir)
    return atomic_write_text(Path(run_dir) / "config.json", json.dumps(doc, indent=2, sort_keys=True))


def save_checkpoint(run_dir: str | Path, state: dict, keep_last: int = 3) -> Path:
    """Write checkpoints/step_{state['step']:08d}.pt atomically, then drop all but the newest `keep_last`.

    A failed write (full disk, permissions) raises `mambast.fs.WriteError` naming the path and leaves the
    older checkpoints as they were.
    """
    folder = ensure_dir(Path(run_dir) / "checkpoints")
    path = folder / f"step_{int(state['step']):08d}.pt"
    state = {"format": CHECKPOINT_FORMAT, "version": 1, **state}
    atomic_write(path, lambda f: torch_save(state, f))
    for _, old in list_checkpoints(run_dir)[:-keep_last]:
        old.unlink(missing_ok=True)
    return path
