"""The native single-file checkpoint: safetensors holding the weights, with the model config (JSON) in the
metadata, so the file rebuilds the model by itself. No pickle anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..config import MambaSTConfig
from ..errors import UserError
from ..model import MambaST
from .safetensors import load_file, save_file
from .state_dict import load_state_dict_strict

FORMAT = "mambast"


def save_native(model: MambaST, path: str | Path, dtype: torch.dtype | None = None,
                extra: dict[str, str] | None = None) -> Path:
    """Save config + weights to one .safetensors file (floats cast to `dtype` if given, e.g. float16)."""
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
             for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "version": "1", "config": json.dumps(model.config.to_dict()), **(extra or {})}
    save_file(state, path, meta)
    return Path(path)


def read_native(path: str | Path) -> tuple[MambaSTConfig, dict[str, torch.Tensor], dict[str, str]]:
    """(config, state dict, metadata) of a native checkpoint."""
    state, meta = load_file(path)
    if meta.get("format") != FORMAT or "config" not in meta:
        raise UserError(f"{path}: a safetensors file, but not a mambast checkpoint (no model config inside)")
    return MambaSTConfig.from_dict(json.loads(meta["config"])), state, meta


def load_native(path: str | Path, device: str | torch.device = "cpu",
                dtype: torch.dtype | None = torch.float32) -> MambaST:
    """MambaST (eval mode) from a native checkpoint; weights cast to `dtype` (None keeps the stored one)."""
    config, state, _ = read_native(path)
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    with torch.device("meta"):
        model = MambaST(config)
    load_state_dict_strict(model, state, str(path), assign=True)
    return model.to(device).eval()
