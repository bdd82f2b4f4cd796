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
from .state_dict import load_state_dict_strict, strip_wrapper_prefixes, unwrap_model

FORMAT = "mambast"


def save_native(model: MambaST, path: str | Path, dtype: torch.dtype | None = None,
                extra: dict[str, str] | None = None) -> Path:
    """Save config + weights to one .safetensors file (floats cast to `dtype` if given, e.g. float16).

    A torch.compile / DataParallel / DDP wrapper is unwrapped first, so the keys are the model's own. The
    file is written atomically; a failure is a one-line `mambast.fs.WriteError` naming `path` (nothing is left
    behind). `extra` adds string metadata (e.g. a model card); the metadata keys are written sorted, so the
    same model gives the same bytes.
    """
    model = unwrap_model(model)
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
             for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "version": "1", "config": json.dumps(model.config.to_dict()), **(extra or {})}
    return save_file(state, Path(path).expanduser(), meta)


def read_native(path: str | Path) -> tuple[MambaSTConfig, dict[str, torch.Tensor], dict[str, str]]:
    """(config, state dict, metadata) of a native checkpoint."""
    state, meta = load_file(path)
    if meta.get("format") != FORMAT or "config" not in meta:
        raise UserError(f"{path}: a safetensors file, but not a mambast checkpoint (no model config inside)")
    try:
        config = json.loads(meta["config"])
    except ValueError as e:
        raise UserError(f"{path}: the model config in the metadata is not JSON ({e})") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: the model config in the metadata is not a JSON object")
    try:
        config = MambaSTConfig.from_dict(config)
    except (TypeError, ValueError, UserError) as e:
        raise UserError(f"{path}: invalid model config in the metadata ({e})") from None
    return config, strip_wrapper_prefixes(state, str(path)), meta


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
