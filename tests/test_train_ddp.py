"""Data-parallel training: `torchrun --nproc_per_node 2 -m mambast train` with gloo on CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mambast.train.checkpoint import load_checkpoint, load_run_model
from mambast.train.monitor import read_metrics

ROOT = Path(__file__).resolve().parent.parent


def _folder(path: Path, n: int, seed: int) -> Path:
    path.mkdir(parents=True)
    rng = np.random.RandomState(seed)
    for i in range(n):
        Image.fromarray((rng.rand(40, 40, 3) * 255).astype(np.uint8)).save(path / f"im{i}.png")
    return path


def test_two_gloo_ranks(tmp_path):
    content, style = _folder(tmp_path / "c", 4, 0), _folder(tmp_path / "s", 2, 1)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mambast", "train", "--content-dir", str(content), "--style-dir", str(style),
           "--allow-random-vgg", "--preset", "tiny", "--size", "32", "--batch-size", "1", "--max-iter", "2",
           "--log-every", "1", "--sample-every", "2", "--out", str(out), "--no-progress", "--seed", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("step 2:") == 1  # only rank 0 reports and writes
    state = load_checkpoint(out / "checkpoints" / "step_00000002.pt")
    assert state["step"] == 2 and state["data"]["world_size"] == 2
    assert len(state["rng"]["per_rank"]) == 2
    assert not torch.equal(state["rng"]["per_rank"][0]["torch"], state["rng"]["per_rank"][1]["torch"])
    assert [r["step"] for r in read_metrics(out)] == [1, 2]
    assert all(np.isfinite(r["total"]) for r in read_metrics(out))
    assert (out / "samples" / "step_00000002.png").exists()
    model = load_run_model(out)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(model(x, x, seed=0)).all()
