"""Function-preserving widening of a trained Mamba-ST (Net2Net, Chen et al. 2016, "Net2WiderNet").

Doubling d_model by duplicating every residual channel keeps the network's function exactly:

    tokens          t' = [t, t]                        (patch embedding rows duplicated)
    LayerNorm       LN([t, t]) = [LN(t), LN(t)]       (same mean and variance; gain and bias duplicated)
    projections in  W' = [W / 2, W / 2]               (in_proj, in_style_proj, CNN decoder's first conv)
    projections out W' = [W; W]                        (out_proj rows duplicated)

The SS2D interior keeps its size: expand is halved (d_inner = expand * d_model unchanged) and dt_rank is
fixed to the source's, so the scans, A, D, dt and the x/style projections are copied as they are. Small noise
(`noise`, relative to each tensor's std) then breaks the symmetry between the two copies, which gradient descent
would otherwise keep forever. Used to start the bundled default model's wider student from the earlier,
narrower default (benchmarks/train_default.py distill --widen).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..config import MambaSTConfig
from ..errors import UserError
from ..model import MambaST

# keys (by suffix) whose dim 0 is d_model: duplicated
_ROWS = ("ln_1.weight", "ln_1.bias", "norm.weight", "norm.bias", "skip_scale", "skip_scale2",
         "out_proj.weight", "patch_embed.proj.weight", "patch_embed.proj.bias", "new_ps.bias")
# keys whose dim 1 is d_model (an input): duplicated and halved
_COLS = ("in_proj.weight", "in_style_proj.weight", "cnn_decoder.1.weight")


def widened_config(cfg: MambaSTConfig) -> MambaSTConfig:
    """The config of the widened model: 2 x d_model, same d_inner and dt_rank."""
    if cfg.expand % 2:
        raise UserError(f"widening doubles d_model at a fixed d_inner, so expand must be even (got {cfg.expand})")
    return MambaSTConfig.from_dict({**cfg.to_dict(), "d_model": 2 * cfg.d_model, "expand": cfg.expand // 2,
                                    "dt_rank": cfg.resolved_dt_rank})


def _widen(key: str, value: Tensor, d_model: int) -> Tensor:
    if key.endswith("new_ps.weight"):  # the unused positional embedding: (C, C, 1, 1)
        return torch.cat([torch.cat([value, value], 0), torch.cat([value, value], 0)], 1) / 2
    if key.endswith(_ROWS) and value.shape[0] == d_model:
        return torch.cat([value, value], 0)
    if key.endswith(_COLS) and value.shape[1] == d_model:
        return torch.cat([value, value], 1) / 2
    return value


def widen(model: MambaST, noise: float = 0.0, generator: torch.Generator | None = None) -> MambaST:
    """model (d_model C, expand e) -> a model with d_model 2C, expand e/2 and the same function.

    noise: std of the symmetry-breaking perturbation, relative to each widened tensor's std (0: exact copy;
    outputs then equal the source's to float rounding). Returns a new model in eval mode."""
    cfg = model.config
    wide = MambaST(widened_config(cfg))
    state = {k: _widen(k, v, cfg.d_model) for k, v in model.state_dict().items()}
    if noise:
        for k, v in state.items():
            if v.is_floating_point() and v.shape != model.state_dict()[k].shape and v.numel() > 1:
                v = v + noise * v.float().std() * torch.randn(v.shape, generator=generator, dtype=v.dtype)
                state[k] = v
    wide.load_state_dict(state)
    return wide.eval()
