"""benchmarks/gpu.py --smoke: the GPU benchmark runs end to end on the CPU (Triton interpreter, tiny shapes), so
it runs unchanged the first time a GPU is at hand."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_benchmark_smoke_covers_every_section(tmp_path):
    pytest.importorskip("triton")
    out = tmp_path / "smoke.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--smoke", "--no-sweep", "--json",
                           str(out)], capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["errors"] == [] and r["correctness"]["ok"]
    ips = r["summary"]["images_per_s"]
    for size in (16, 32):
        for batch in (1, 2):
            for precision in ("fp32", "bf16"):
                assert ips[f"mamba-st auto {size}px b{batch} {precision}"] > 0
                for kind in ("plain", "sdpa"):
                    assert ips[f"attention-{kind} {size}px b{batch} {precision}"] > 0
    assert all(row["finite"] for row in r["model_inference"])
    train = r["training_iteration"]["triton"]
    assert train["loss_finite"] and train["batch"] == 1 and math.isfinite(train["ms"])
    assert any(row.get("backend") == "triton" and "ms" in row for row in r["scan_timings"])
