"""ST-SS2D: content and style fused inside the selective scan (docs/model.md section 5).

    xz = in_proj(content); x, z = chunk(xz)          gate z from the CONTENT
    s  = in_style_proj(style)
    x  = SiLU(DWConv(x));  s = SiLU(DWConv(s))       the same depthwise conv for both streams
    C        = x_proj_weight[k] @ cross_scan(x)      C (the "query") from the CONTENT
    [dt, B]  = style_proj_weight[k] @ cross_scan(s)  delta and B (the "key") from the STYLE
    y = selective_scan(u = cross_scan(s), delta, A, B, C, D, ...)   the STYLE is the scanned sequence
    out = out_proj(out_norm(cross_merge(y)) * SiLU(z))

On large images at inference the channels run in blocks within the model's memory budget (ss2d.py, memory.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..ops.backends import ScanBackend
from .shuffle import permute_tokens
from .ss2d import SS2DBase, channel_first


class STSS2D(SS2DBase):
    """Style-transfer selective scan; extra parameter style_proj_weight (K, R + N, Di)."""

    def __init__(self, d_model: int, d_state: int, d_inner: int, dt_rank: int):
        super().__init__(d_model, d_state, d_inner, dt_rank, d_state, style_proj=True)

    def forward(self, content: Tensor, style: Tensor, order: Tensor | None = None) -> Tensor:
        """content, style: (B, H, W, C) on the same grid; order: the style shuffle's permutation, (1 or B, L)
        indices, or None (shuffle.py) -> (B, H, W, C)."""
        backend = self.backend(content.device)
        plan = self.block_plan(content)
        if plan is not None:
            return self.forward_blocked(content, style, order, plan, backend)
        style = permute_tokens(style, order)
        x, z = channel_first(content, self.in_proj.weight).chunk(2, dim=1)  # (B, Di, H, W) each
        xs = backend.cross_scan(self.local_features(x))  # (B, K, Di, L)
        style_di = channel_first(style, self.in_style_proj.weight)  # (B, Di, H, W)
        ss = backend.cross_scan(self.local_features(style_di))  # (B, K, Di, L)
        C = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight)  # (B, K, N, L)
        del xs
        dt_low, B = torch.einsum("bkdl,kcd->bkcl", ss, self.style_proj_weight).split(
            [self.dt_rank, self.d_state], dim=2)
        y = self.scan(ss, dt_low, B, C, backend, out=ss if self.scan_inplace() else None)
        return self.output(y, z, backend)

    def forward_blocked(self, content: Tensor, style: Tensor, order: Tensor | None, plan: tuple[int, bool],
                        backend: ScanBackend) -> Tensor:
        """`forward` one block of channels at a time (inference; see `SS2DBase.output_blocked`); the shuffle
        is applied to each block's projected style channels, so no shuffled copy of the style exists."""
        x_rows, s_rows = self.in_proj.weight[:self.d_inner], self.in_style_proj.weight

        def s_of(channels: slice) -> Tensor:  # the style's conv features, shuffled, (B, dc, H, W)
            return self.features(style, s_rows[channels], channels, order)

        def c_of(channels: slice) -> Tensor:  # the content's, (B, dc, H, W)
            return self.features(content, x_rows[channels], channels)

        kept = self.kept_buffer(plan, content)
        C, dt_low, B = self.projections_blocked([c_of, s_of], [self.x_proj_weight, self.style_proj_weight],
                                                ["C", "dt B"], plan[0], backend, content, kept)
        return self.output_blocked(s_of, dt_low, B, C, content, plan[0], backend, kept)
