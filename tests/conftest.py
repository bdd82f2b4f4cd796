"""Shared fixtures: synthetic checkpoints (made by tests/synthetic_weights.py, no download, no shared folder)
and `require`, the one way a test states a prerequisite (skip locally, fail when the CI variable is set)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/synthetic_weights.py

from synthetic_weights import write_synthetic  # noqa: E402


def in_ci() -> bool:
    """True when the environment variable CI is set (to anything but "", "0" or "false")."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def require(condition: bool, reason: str) -> None:
    """Skip the calling test when `condition` is False, or fail it under CI: there a missing prerequisite
    (goldens, the native kernel's compiler) is a broken setup, not an optional extra."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"prerequisite missing under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def shared_dir() -> Path | None:
    """The project's shared spec folder: $MAMBAST_SHARED, else ../shared beside the checkout; None if absent.
    Only the check of the synthetic-weights recipe against the spec's own script needs it."""
    for cand in (os.environ.get("MAMBAST_SHARED"), ROOT.parent / "shared"):
        if cand and (Path(cand) / "official" / "synthetic_weights.py").exists():
            return Path(cand)
    return None


def _synthetic(tmp_path_factory, seed: int) -> Path:
    require((DATA / "golden_128" / "stylized.npy").exists(), f"goldens missing under {DATA}")
    return write_synthetic(tmp_path_factory.mktemp(f"synthetic{seed}"), seed)


@pytest.fixture(scope="session")
def synthetic_1234(tmp_path_factory) -> Path:
    """Folder with the seed-1234 synthetic checkpoint (3 model files + vgg_normalised.pth)."""
    return _synthetic(tmp_path_factory, 1234)


@pytest.fixture(scope="session")
def synthetic_77(tmp_path_factory) -> Path:
    """Folder with the seed-77 synthetic checkpoint (the non-square golden's weights)."""
    return _synthetic(tmp_path_factory, 77)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A tiny-preset native checkpoint whose outputs spread over [0, 1] (a random init gives all-black
    images once clamped): the model of the command-line tests."""
    import torch

    import mambast

    torch.manual_seed(0)
    model = mambast.MambaST(mambast.MambaSTConfig.preset("tiny"))
    with torch.no_grad():
        model.cnn_decoder[-1].weight.mul_(10)
        model.cnn_decoder[-1].bias.fill_(0.5)
    return mambast.save_native(model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture
def one_thread():
    """Single-threaded torch for the test: tiny models gain nothing from threads on shared cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
