"""Strict state-dict loading with one clear error, and safe torch-file reading."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError


def torch_load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """torch.load with weights_only=True: a file that holds other pickled objects (which could run code
    when loaded) is refused with a clear message, never unpickled."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsupported object"
        raise UserError(f"{path}: refused: it holds pickled Python objects, not only tensors, and loading it "
                        f"could run code ({first[:160]})") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise UserError(f"{path}: cannot read this checkpoint ({str(e).splitlines()[0][:200]})") from None
    return obj


def _listing(name: str, items: list[str], limit: int = 8) -> str:
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return f"{len(items)} {name}: {', '.join(items[:limit])}{more}"


def load_state_dict_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str,
                           assign: bool = False) -> None:
    """Load `state` into `module` requiring every key consumed and every shape equal; otherwise raise one
    UserError listing missing, unexpected and mis-shaped keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shaped:
        parts = [_listing(n, i) for n, i in (("missing", missing), ("unexpected", unexpected),
                                             ("mis-shaped", shaped)) if i]
        raise UserError(f"{source}: checkpoint does not match the model: {'; '.join(parts)}")
    module.load_state_dict(state, strict=True, assign=assign)
