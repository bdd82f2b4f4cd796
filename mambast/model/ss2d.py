"""SS2D: the 2-D selective scan layer of the encoders (architecture.md section 4).

    xz = in_proj(x); x, z = chunk(xz)            x: (B, H, W, Di) content path, z: gate
    x  = SiLU(DWConv3x3(x))
    xs = cross_scan(x)                           (B, K, Di, L), K = 4 directions
    [dt, B, C] = x_proj_weight[k] @ xs[:, k]     delta = dt_projs_weight[k] @ dt (inside the scan kernel on CPU)
    y  = selective_scan(xs, delta, A = -exp(A_logs), B, C, Ds, dt_projs_bias, softplus)
    out = out_proj(out_norm(cross_merge(y)) * SiLU(z))
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import cross_merge, cross_scan, selective_scan_lowrank

K = 4  # scan directions


class Unused(nn.Module):
    """Holds a tensor that the published checkpoints carry but no computation reads (a buffer, so it is
    saved, loaded and moved with the model, yet never trained). `weight` (and `bias` if given)."""

    def __init__(self, *shape: int, bias: int | None = None):
        super().__init__()
        self.register_buffer("weight", torch.zeros(shape))
        if bias is not None:
            self.register_buffer("bias", torch.zeros(bias))


def channel_first(tokens: Tensor, weight: Tensor) -> Tensor:
    """A bias-free Linear on channel-last tokens, produced channel-first: (B, H, W, C), (Do, C) -> (B, Do, H, W).

    Same numbers as Linear(tokens).permute(0, 3, 1, 2); BLAS reads the tokens transposed, so the depthwise
    conv and the cross scan get contiguous (B, Do, H, W) maps without a transposing copy.
    """
    batch, H, W, C = tokens.shape
    tokens_t = tokens.reshape(batch, H * W, C).transpose(1, 2)  # (B, C, L), a view
    return torch.bmm(weight.expand(batch, -1, -1), tokens_t).view(batch, -1, H, W)


def layer_norm_dim1(y: Tensor, norm: nn.LayerNorm) -> Tensor:
    """LayerNorm over dim 1 of (B, Di, L) with `norm`'s weight, bias and eps (biased variance, as LayerNorm)."""
    var, mean = torch.var_mean(y, dim=1, correction=0, keepdim=True)
    return (y - mean) * torch.rsqrt(var + norm.eps) * norm.weight[:, None] + norm.bias[:, None]


class SS2DBase(nn.Module):
    """Parameters shared by SS2D and ST-SS2D, with the official key names.

    in_proj (2Di, C); in_style_proj (Di, C); conv2d depthwise 3x3; x_proj_weight (K, x_proj_rows, Di);
    dt_projs_weight (K, Di, R); dt_projs_bias (K, Di); A_logs (K*Di, N); Ds (K*Di,); out_norm; out_proj (C, Di).
    """

    scan_backend: str = "auto"

    def __init__(self, d_model: int, d_state: int, d_inner: int, dt_rank: int, x_proj_rows: int,
                 style_proj: bool):
        super().__init__()
        self.d_state, self.d_inner, self.dt_rank = d_state, d_inner, dt_rank
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.in_style_proj = (nn.Linear(d_model, d_inner, bias=False) if style_proj
                              else Unused(d_inner, d_model))
        self.conv2d = nn.Conv2d(d_inner, d_inner, 3, padding=1, groups=d_inner, bias=True)
        if style_proj:  # ST-SS2D: delta and B from the style, (K, R + N, Di)
            self.style_proj_weight = nn.Parameter(torch.empty(K, dt_rank + d_state, d_inner))
        self.x_proj_weight = nn.Parameter(torch.empty(K, x_proj_rows, d_inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(K, d_inner, dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(K, d_inner))
        self.A_logs = nn.Parameter(torch.empty(K * d_inner, d_state))
        self.Ds = nn.Parameter(torch.empty(K * d_inner))
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        self.reset_mamba_parameters()

    @torch.no_grad()
    def reset_mamba_parameters(self, dt_min: float = 1e-3, dt_max: float = 1e-1, dt_floor: float = 1e-4):
        """The usual Mamba init: S4D-real A, dt bias = softplus^-1(log-uniform dt), D = 1."""
        n = torch.arange(1, self.d_state + 1, dtype=torch.float32)
        self.A_logs.copy_(torch.log(n).repeat(K * self.d_inner, 1))
        self.Ds.fill_(1.0)
        std = self.dt_rank ** -0.5
        self.dt_projs_weight.uniform_(-std, std)
        dt = torch.exp(torch.rand(K, self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        bound = 1 / math.sqrt(self.d_inner)  # nn.Linear's default, per direction
        self.x_proj_weight.uniform_(-bound, bound)
        if hasattr(self, "style_proj_weight"):
            self.style_proj_weight.uniform_(-bound, bound)

    def local_features(self, x: Tensor) -> Tensor:
        """(B, Di, H, W) -> SiLU(DWConv3x3(x)), (B, Di, H, W)."""
        return F.silu(self.conv2d(x))

    def scan(self, u: Tensor, dt_low: Tensor, B: Tensor, C: Tensor) -> Tensor:
        """The K-direction selective scan.

        u: (B, K, Di, L) scanned sequence; dt_low: (B, K, R, L); B, C: (B, K, N, L) -> y (B, K, Di, L).
        """
        batch, _, d_inner, L = u.shape
        y = selective_scan_lowrank(  # delta = dt_projs_weight[k] @ dt_low[:, k], (B, K * Di, L)
            u.reshape(batch, K * d_inner, L),
            dt_low,
            self.dt_projs_weight.reshape(K * d_inner, self.dt_rank),
            -torch.exp(self.A_logs.float()),
            B,
            C,
            D=self.Ds.float(),
            delta_bias=self.dt_projs_bias.reshape(-1).float(),
            delta_softplus=True,
            backend=self.scan_backend,
            inplace=not torch.is_grad_enabled(),  # u (a fresh cross scan) is not read again
        )
        return y.view(batch, K, d_inner, L)

    def output(self, y: Tensor, z: Tensor) -> Tensor:
        """Merge the directions, gate by the content: y (B, K, Di, L), z (B, Di, H, W) -> (B, H, W, C).

        out_norm(y) * SiLU(z) is computed channel-first (LayerNorm over Di = dim 1), and out_proj reads the
        result transposed, so no channel-last copy of the (Di, L) maps is made.
        """
        batch, d_inner, H, W = z.shape
        y = layer_norm_dim1(cross_merge(y, H, W), self.out_norm) * F.silu(z.view(batch, d_inner, H * W))
        return torch.matmul(y.transpose(1, 2), self.out_proj.weight.t()).view(batch, H, W, -1)


class SS2D(SS2DBase):
    """Self selective scan (encoders): delta, B, C and the scanned sequence all come from x."""

    def __init__(self, d_model: int, d_state: int, d_inner: int, dt_rank: int):
        super().__init__(d_model, d_state, d_inner, dt_rank, dt_rank + 2 * d_state, style_proj=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        x, z = channel_first(x, self.in_proj.weight).chunk(2, dim=1)  # (B, Di, H, W) each
        xs = cross_scan(self.local_features(x))  # (B, K, Di, L)
        x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight)  # (B, K, R + 2N, L)
        dt_low, B, C = x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=2)
        return self.output(self.scan(xs, dt_low, B, C), z)
