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


# ----------------------------------------------------------------------------------------------- growing
#
# `grow` enlarges a trained model along the other axes, each step function-preserving (noise 0):
#
#   d_state N -> N'     the new state dims get fresh B rows and C rows of zero: y = sum_n C_n h_n is unchanged,
#                       and dL/dC_n = h_n != 0, so the new dims start learning at once (A: S4D-real log(n))
#   expand e -> 2e      every SS2D interior channel duplicated: in_proj (x and z rows), conv, dt projections, A,
#                       D, out_norm duplicated; x_proj / style_proj (sums over Di) and out_proj halved per copy.
#                       LayerNorm over [y, y] is [LN(y), LN(y)], so the output is the same
#   more blocks         appended VSS / ST-VSS blocks with a fresh interior and norm (gain, bias) = 0: the block
#                       outputs 0, and the encoder's and decoder's outer residual (tokens = block(t) + t) passes
#                       the tokens on; the zero gain still gets a gradient, so the block opens up in training
#   CNN widths x2       every decoder conv's output channels duplicated (ReLU, reflection padding and nearest
#                       upsampling act per channel) and the next conv's input weights halved per copy


def grown_config(cfg: MambaSTConfig, d_state: int | None = None, double_inner: bool = False,
                 layers: tuple[int, int, int] | None = None, double_cnn: bool = False) -> MambaSTConfig:
    """The config of `grow(model, ...)`: d_state, 2 x expand, (content, style, decoder) block counts, 2 x CNN
    widths. Raises UserError on a shrink (growth only)."""
    layers = layers or (cfg.content_layers, cfg.style_layers, cfg.decoder_layers)
    old = (cfg.content_layers, cfg.style_layers, cfg.decoder_layers)
    if (d_state or cfg.d_state) < cfg.d_state or any(n < o for n, o in zip(layers, old, strict=True)):
        raise UserError(f"grow only adds: d_state {cfg.d_state} -> {d_state}, layers {old} -> {layers}")
    return MambaSTConfig.from_dict({
        **cfg.to_dict(), "d_state": d_state or cfg.d_state, "expand": cfg.expand * (2 if double_inner else 1),
        "dt_rank": cfg.resolved_dt_rank, "content_layers": layers[0], "style_layers": layers[1],
        "decoder_layers": layers[2], "cnn_channels": [c * (2 if double_cnn else 1) for c in cfg.cnn_channels]})


def _dup(t: Tensor, dim: int, halve: bool = False) -> Tensor:
    """[t, t] along dim (halved when the dim is summed over downstream)."""
    out = torch.cat([t, t], dim)
    return out / 2 if halve else out


def _grow_inner(key: str, v: Tensor, k: int) -> Tensor:
    """One SS2D/ST-SS2D tensor with its Di interior channels duplicated (k scan directions)."""
    name = key.rsplit(".", 2)[-2:]
    leaf = ".".join(name)
    if leaf in ("in_proj.weight",):  # (2Di, C): [x; z] -> [x; x; z; z]
        x, z = v.chunk(2, 0)
        return torch.cat([x, x, z, z], 0)
    if leaf in ("in_style_proj.weight", "conv2d.weight", "conv2d.bias", "out_norm.weight", "out_norm.bias"):
        return _dup(v, 0)
    if name[-1] in ("x_proj_weight", "style_proj_weight"):  # (K, rows, Di): summed over Di
        return _dup(v, 2, halve=True)
    if name[-1] in ("dt_projs_weight", "dt_projs_bias"):  # (K, Di, ...)
        return _dup(v, 1)
    if name[-1] in ("A_logs", "Ds"):  # (K * Di, ...) direction-major
        return _dup(v.reshape(k, -1, *v.shape[1:]), 1).reshape(-1, *v.shape[1:])
    if leaf == "out_proj.weight":  # (C, Di)
        return _dup(v, 1, halve=True)
    return v


def _grow_state(key: str, v: Tensor, fresh: Tensor, n_old: int, dt_rank: int) -> Tensor:
    """One tensor with d_state n_old -> fresh's: new B rows and A columns from `fresh`, new C rows zero."""
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "A_logs":  # (K Di, N)
        return torch.cat([v, fresh[:v.shape[0], n_old:]], 1)
    fresh = fresh[..., :v.shape[-1]]  # the source's Di (grow may double it afterwards)
    if leaf == "x_proj_weight" and v.shape[1] == dt_rank + 2 * n_old:  # SS2D: [dt | B | C]
        dt, b, c = v.split([dt_rank, n_old, n_old], 1)
        n_new = (fresh.shape[1] - dt_rank) // 2
        new_b = fresh[:, dt_rank + n_old:dt_rank + n_new]
        return torch.cat([dt, b, new_b, c, torch.zeros_like(new_b)], 1)
    if leaf == "x_proj_weight":  # ST-SS2D: C rows only
        return torch.cat([v, torch.zeros_like(fresh[:, n_old:])], 1)
    if leaf == "style_proj_weight":  # ST-SS2D: [dt | B]
        return torch.cat([v, fresh[:, dt_rank + n_old:]], 1)
    return v


def _grow_cnn(model: MambaST, state: dict[str, Tensor]) -> None:
    """Double every CNN decoder width in `state` (in place): conv outputs duplicated, next inputs halved."""
    convs = [i for i, m in enumerate(model.cnn_decoder) if isinstance(m, torch.nn.Conv2d)]
    for n, i in enumerate(convs):
        w, b = f"cnn_decoder.{i}.weight", f"cnn_decoder.{i}.bias"
        if n > 0:  # input from a doubled conv
            state[w] = _dup(state[w], 1, halve=True)
        if n < len(convs) - 1:  # not the RGB output conv
            state[w], state[b] = _dup(state[w], 0), _dup(state[b], 0)


def grow(model: MambaST, d_state: int | None = None, double_inner: bool = False,
         layers: tuple[int, int, int] | None = None, double_cnn: bool = False, noise: float = 0.0,
         generator: torch.Generator | None = None) -> MambaST:
    """A larger model computing the same function (see the table above): d_state N -> d_state, expand x2
    (double_inner), (content, style, decoder) block counts -> layers (new blocks appended), CNN widths x2.

    noise: symmetry-breaking perturbation of the duplicated tensors (relative to each one's std; 0 = exact).
    The new blocks and state dims are already asymmetric (fresh init). Returns a new model in eval mode."""
    from ..model.ss2d import K

    cfg = model.config
    big_cfg = grown_config(cfg, d_state, double_inner, layers, double_cnn)
    with torch.random.fork_rng(devices=[]):  # the fresh parts: seeded from `generator`, global RNG untouched
        if generator is not None:
            torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
        big = MambaST(big_cfg)
    fresh = big.state_dict()
    state, duplicated = {}, set()
    for key, v in model.state_dict().items():
        if ".self_attention." in key and big_cfg.d_state != cfg.d_state:
            v = _grow_state(key, v, fresh[key], cfg.d_state, cfg.resolved_dt_rank)
        if ".self_attention." in key and double_inner:
            v, before = _grow_inner(key, v, K), v
            if v.shape != before.shape:
                duplicated.add(key)
        state[key] = v
    if double_cnn:
        before = {k: v.shape for k, v in state.items()}
        _grow_cnn(model, state)
        duplicated |= {k for k in before if state[k].shape != before[k]}
    for key, v in fresh.items():  # the appended blocks: fresh interior, closed by a zero output norm
        if key not in state:
            state[key] = torch.zeros_like(v) if key.endswith((".norm.weight", ".norm.bias")) else v
    if noise:
        for key in duplicated:
            v = state[key]
            if v.is_floating_point() and v.numel() > 1:
                state[key] = v + noise * v.float().std() * torch.randn(v.shape, generator=generator, dtype=v.dtype)
    big.load_state_dict(state)
    return big.eval()


def grow_source(model: MambaST, widen_noise: float | None = None, grow_args: dict | None = None,
                seed: int = 0) -> MambaST:
    """The starting model of a run whose init_from is grown first (TrainConfig.init_growth): `model` doubled in
    width with widen(noise=widen_noise) when widen_noise is set, then grow(**grow_args) when given; each one's
    noise and fresh parts drawn from a generator seeded with `seed`. -> a float32 model."""
    model = model.float()
    if widen_noise is not None:
        model = widen(model, widen_noise, torch.Generator().manual_seed(seed))
    if grow_args:
        model = grow(model, **grow_args, generator=torch.Generator().manual_seed(seed))
    return model
