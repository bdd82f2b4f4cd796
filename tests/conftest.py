"""Shared fixtures: the project's shared/ folder (spec, synthetic-weights generator) and synthetic checkpoints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


def shared_dir() -> Path | None:
    """$MAMBAST_SHARED, else ../shared beside the checkout (where CI and development machines have it)."""
    for cand in (os.environ.get("MAMBAST_SHARED"), ROOT.parent / "shared", Path("/work/shared")):
        if cand and (Path(cand) / "official" / "synthetic_weights.py").exists():
            return Path(cand)
    return None


def _synthetic(tmp_path_factory, seed: int) -> Path:
    shared = shared_dir()
    if shared is None:
        pytest.skip("shared/official/synthetic_weights.py not found (set MAMBAST_SHARED)")
    out = tmp_path_factory.mktemp(f"synthetic{seed}")
    subprocess.run([sys.executable, str(shared / "official" / "synthetic_weights.py"), str(out),
                    "--seed", str(seed)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def synthetic_1234(tmp_path_factory) -> Path:
    """Folder with the seed-1234 synthetic checkpoint (3 model files + vgg_normalised.pth)."""
    return _synthetic(tmp_path_factory, 1234)


@pytest.fixture(scope="session")
def synthetic_77(tmp_path_factory) -> Path:
    return _synthetic(tmp_path_factory, 77)
