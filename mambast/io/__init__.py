"""Checkpoints: the published three-file layout, the native safetensors file, training run directories."""

from __future__ import annotations

from pathlib import Path

import torch

from ..device import resolve_device
from ..errors import UserError
from .native import load_native, read_native, save_native
from .official import is_official_dir, load_official, save_official
from .run import is_legacy_distill_run, is_run_dir, load_legacy_distill, load_run_model

DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "default.safetensors"

__all__ = ["load", "load_native", "save_native", "read_native", "load_official", "save_official",
           "load_run_model", "DEFAULT_WEIGHTS"]


def load(path: str | Path | None = None, device: str | torch.device = "cpu",
         dtype: torch.dtype | None = torch.float32):
    """A MambaST in eval mode from `path`, resolved in this order:

    None -> the default model bundled in the package; a directory with mamba_iter_N.pth,
    decoder_iter_N.pth, embedding_iter_N.pth -> the published layout (highest N); a training run
    directory -> its latest checkpoint (a distillation run folder of the earlier layout, ckpt_N.pt, too); a
    .safetensors file -> a native checkpoint; one of the three published files -> its directory.
    device: "auto", "cpu", "cuda", "cuda:N" or a torch.device (mambast.device.resolve_device: FieldError
    naming `device` for one torch does not know or this machine does not have).
    """
    device = resolve_device(device)
    if path is None:
        if not DEFAULT_WEIGHTS.exists():
            raise UserError("no default model is bundled with this install; give a checkpoint path (a "
                            "published-weights folder, a .safetensors file or a training run folder)")
        path = DEFAULT_WEIGHTS
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{path}: no such checkpoint file or folder")
    if path.is_file() and path.suffix == ".pth" and "_iter_" in path.name:
        path = path.parent
    if path.is_dir():
        model = _load_dir(path, device)
    elif path.suffix == ".safetensors":
        model = load_native(path, device, dtype=None)  # cast once, below
    else:
        raise UserError(f"{path}: unknown checkpoint type (expected a .safetensors file, a published-weights "
                        "folder or a training run folder)")
    return model.to(dtype) if dtype is not None else model


def _load_dir(path: Path, device):
    if is_official_dir(path):
        return load_official(path, device=device)
    if is_run_dir(path):
        return load_run_model(path, device=device)
    if is_legacy_distill_run(path):  # a distillation run of the earlier layout (ckpt_*.pt)
        return load_legacy_distill(path, device=device)
    raise UserError(f"{path}: neither a published-weights folder (mamba_iter_N.pth, decoder_iter_N.pth, "
                    "embedding_iter_N.pth) nor a training run folder")
