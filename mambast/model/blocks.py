"""VSS and ST-VSS blocks, the two encoders and the Mamba-ST decoder (docs/model.md sections 3 and 5).

    VSS block:     x = input * skip_scale + DropPath(SS2D(ln_1(input)));            out = norm(x)
    ST-VSS block:  x = input * skip_scale + DropPath(ST_SS2D(ln_1(input), style));   out = norm(x)
    encoder:       tokens = block(tokens) + tokens, per block (no final norm)
    decoder:       content = block(content, shuffle(style)) + content, per block; then decoder.norm
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .memory import layer_norm_
from .shuffle import Generators, shuffle_order, shuffle_tokens
from .ss2d import SS2D, NormedTokens, Unused

__all__ = ["DropPath", "VSSBlock", "STVSSBlock", "Encoder", "Decoder", "MambaCore", "Generators",
           "shuffle_tokens"]
from .st_ss2d import STSS2D


class DropPath(nn.Module):
    """Stochastic depth: zero a sample's branch with probability p in training, rescale the rest."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty(x.shape[0], *([1] * (x.dim() - 1))).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class _BlockBase(nn.Module):
    """skip_scale (C,), skip_scale2 (C,; stored but unused), ln_1, self_attention, norm (official order)."""

    def __init__(self, d_model: int, drop_path: float, attention: nn.Module):
        super().__init__()
        self.skip_scale = nn.Parameter(torch.ones(d_model))
        self.register_buffer("skip_scale2", torch.ones(d_model))  # in the checkpoints, never used
        self.ln_1 = nn.LayerNorm(d_model)
        self.self_attention = attention
        self.drop_path = DropPath(drop_path)
        self.norm = nn.LayerNorm(d_model)

    def normed(self, x: Tensor) -> Tensor | NormedTokens:
        """ln_1(x); lazily (NormedTokens: LayerNorm folded into the layer's projections) when the layer runs
        in channel blocks, so no normalised copy of the token map is alive (docs/memory.md)."""
        if self.self_attention.block_plan(x) is not None:
            return NormedTokens(x, self.ln_1)
        return self.ln_1(x)


class VSSBlock(_BlockBase):
    """Encoder block: (B, H, W, C) -> (B, H, W, C)."""

    def __init__(self, d_model: int, d_state: int, d_inner: int, dt_rank: int, drop_path: float = 0.0):
        super().__init__(d_model, drop_path, SS2D(d_model, d_state, d_inner, dt_rank))

    def forward(self, x: Tensor) -> Tensor:
        branch = self.drop_path(self.self_attention(self.normed(x)))
        x = torch.mul(x, self.skip_scale).add_(branch)  # x * skip_scale + branch, one buffer
        del branch  # freed before the norm allocates (full-size photos: docs/memory.md)
        return self.norm(x)


class STVSSBlock(_BlockBase):
    """Decoder block: content (B, H, W, C), style (B, H, W, C), shuffle order -> (B, H, W, C)."""

    def __init__(self, d_model: int, d_state: int, d_inner: int, dt_rank: int, drop_path: float = 0.1):
        super().__init__(d_model, drop_path, STSS2D(d_model, d_state, d_inner, dt_rank))

    def forward(self, content: Tensor, style: Tensor, order: Tensor | None = None) -> Tensor:
        """`order`: the style shuffle's permutation (shuffle.py), applied inside ST-SS2D; None: as given."""
        fused = self.drop_path(self.self_attention(self.normed(content), style, order))  # style not normed here
        x = torch.mul(content, self.skip_scale).add_(fused)
        del fused
        return self.norm(x)


class Encoder(nn.Module):
    """A stack of VSS blocks, each wrapped in one more residual; keys `layers.i.*`."""

    def __init__(self, depth: int, d_model: int, d_state: int, d_inner: int, dt_rank: int):
        super().__init__()
        self.layers = nn.ModuleList(VSSBlock(d_model, d_state, d_inner, dt_rank) for _ in range(depth))

    def forward(self, tokens: Tensor) -> Tensor:
        for block in self.layers:
            tokens = block(tokens).add_(tokens)  # block(tokens) + tokens, no second buffer
        return tokens


class Decoder(nn.Module):
    """The Mamba-ST decoder: ST-VSS blocks fusing the style into the content, then a LayerNorm."""

    def __init__(self, depth: int, d_model: int, d_state: int, d_inner: int, dt_rank: int, drop_path: float):
        super().__init__()
        self.layers = nn.ModuleList(
            STVSSBlock(d_model, d_state, d_inner, dt_rank, drop_path) for _ in range(depth))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, content: Tensor, style: Tensor, generator: Generators = None,
                overwrite: bool = False) -> Tensor:
        """content, style: encoded tokens (B, H, W, C); a fresh shuffle per block when `generator` is set
        (one generator, or one per sample: see `shuffle.shuffle_order`). overwrite (inference only): each
        block's residual sum is written into `content` itself (same numbers; one (B, H, W, C) map fewer
        alive, for full-size photos), so the caller's content tokens are consumed."""
        if overwrite and torch.is_grad_enabled() and content.requires_grad:
            raise ValueError("overwrite=True is for inference: it would destroy tensors autograd needs")
        for block in self.layers:
            fused = block(content, style, shuffle_order(style, generator))
            content = content.add_(fused) if overwrite else fused.add_(content)
            del fused
        return layer_norm_(content, self.norm) if overwrite else self.norm(content)  # in place: memory.py


class MambaCore(nn.Module):
    """What the published `mamba_iter_N.pth` holds: encoder_c, encoder_s, decoder and the unused new_ps."""

    def __init__(self, cfg):
        super().__init__()
        dims = (cfg.d_model, cfg.d_state, cfg.d_inner, cfg.resolved_dt_rank)
        self.encoder_c = Encoder(cfg.content_layers, *dims)
        self.encoder_s = Encoder(cfg.style_layers, *dims)
        self.decoder = Decoder(cfg.decoder_layers, *dims, drop_path=cfg.drop_path)
        self.new_ps = Unused(cfg.d_model, cfg.d_model, 1, 1, bias=cfg.d_model)  # unused positional embedding
