"""ST-SS2D: content and style fused inside the selective scan (architecture.md section 5).

    xz = in_proj(content); x, z = chunk(xz)          gate z from the CONTENT
    s  = in_style_proj(style)
    x  = SiLU(DWConv(x));  s = SiLU(DWConv(s))       the same depthwise conv for both streams
    C        = x_proj_weight[k] @ cross_scan(x)      C (the "query") from the CONTENT
    [dt, B]  = style_proj_weight[k] @ cross_scan(s)  delta and B (the "key") from the STYLE
    y = selective_scan(u = cross_scan(s), delta, A, B, C, D, ...)   the STYLE is the scanned sequence
    out = out_proj(out_norm(cross_merge(y)) * SiLU(z))
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..ops import cross_scan
from .ss2d import SS2DBase, channel_first


class STSS2D(SS2DBase):
    """Style-transfer selective scan; extra parameter style_proj_weight (K, R + N, Di)."""

    def __init__(self, d_model: int, d_state: int, d_inner: int, dt_rank: int):
        super().__init__(d_model, d_state, d_inner, dt_rank, d_state, style_proj=True)

    def forward(self, content: Tensor, style: Tensor) -> Tensor:
        """content, style: (B, H, W, C) on the same grid -> (B, H, W, C)."""
        x, z = channel_first(content, self.in_proj.weight).chunk(2, dim=1)  # (B, Di, H, W) each
        xs = cross_scan(self.local_features(x))  # (B, K, Di, L)
        ss = cross_scan(self.local_features(channel_first(style, self.in_style_proj.weight)))  # (B, K, Di, L)
        C = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight)  # (B, K, N, L)
        dt_low, B = torch.einsum("bkdl,kcd->bkcl", ss, self.style_proj_weight).split(
            [self.dt_rank, self.d_state], dim=2)
        return self.output(self.scan(ss, dt_low, B, C), z)
