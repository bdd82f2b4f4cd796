"""VSS and ST-VSS blocks, the two encoders and the Mamba-ST decoder (architecture.md sections 3 and 5).

    VSS block:     x = input * skip_scale + DropPath(SS2D(ln_1(input)));            out = norm(x)
    ST-VSS block:  x = input * skip_scale + DropPath(ST_SS2D(ln_1(input), style));   out = norm(x)
    encoder:       tokens = block(tokens) + tokens, per block (no final norm)
    decoder:       content = block(content, shuffle(style)) + content, per block; then decoder.norm
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .ss2d import SS2D, Unused
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


class VSSBlock(_BlockBase):
    """Encoder block: (B, H, W, C) -> (B, H, W, C)."""

    def __init__(self, d_model: int, d_state: int, d_inner: int, dt_rank: int, drop_path: float = 0.0):
        super().__init__(d_model, drop_path, SS2D(d_model, d_state, d_inner, dt_rank))

    def forward(self, x: Tensor) -> Tensor:
        branch = self.drop_path(self.self_attention(self.ln_1(x)))
        x = torch.mul(x, self.skip_scale).add_(branch)  # x * skip_scale + branch, one buffer
        del branch  # freed before the norm allocates (full-size photos: docs/memory.md)
        return self.norm(x)


class STVSSBlock(_BlockBase):
    """Decoder block: content (B, H, W, C), (shuffled) style (B, H, W, C) -> (B, H, W, C)."""

    def __init__(self, d_model: int, d_state: int, d_inner: int, dt_rank: int, drop_path: float = 0.1):
        super().__init__(d_model, drop_path, STSS2D(d_model, d_state, d_inner, dt_rank))

    def forward(self, content: Tensor, style: Tensor) -> Tensor:
        fused = self.drop_path(self.self_attention(self.ln_1(content), style))  # the style is not normed here
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


Generators = torch.Generator | list[torch.Generator] | None


def shuffle_tokens(style: Tensor, generator: Generators) -> Tensor:
    """The style shuffle: a random permutation of the H*W positions.

    style: (B, H, W, C). `generator` None means no shuffle; one generator draws one permutation shared over
    the batch (as published); a list of B generators draws one permutation per sample, so a batch equals B
    single calls with those generators. Permutations are drawn on the generator's device (CPU generators for
    any model device), so a seed gives the same output on every device.
    """
    if generator is None:
        return style
    batch, H, W, C = style.shape
    if isinstance(generator, torch.Generator):
        perm = torch.randperm(H * W, generator=generator, device=generator.device).to(style.device)
        return style.reshape(batch, H * W, C)[:, perm].reshape(batch, H, W, C)
    if len(generator) != batch:
        raise ValueError(f"{len(generator)} shuffle generators for a batch of {batch}")
    perms = torch.stack([torch.randperm(H * W, generator=g, device=g.device) for g in generator])  # (B, L)
    index = perms.to(style.device)[:, :, None].expand(-1, -1, C)
    return torch.gather(style.reshape(batch, H * W, C), 1, index).reshape(batch, H, W, C)


class Decoder(nn.Module):
    """The Mamba-ST decoder: ST-VSS blocks fusing the style into the content, then a LayerNorm."""

    def __init__(self, depth: int, d_model: int, d_state: int, d_inner: int, dt_rank: int, drop_path: float):
        super().__init__()
        self.layers = nn.ModuleList(
            STVSSBlock(d_model, d_state, d_inner, dt_rank, drop_path) for _ in range(depth))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, content: Tensor, style: Tensor, generator: Generators = None) -> Tensor:
        """content, style: encoded tokens (B, H, W, C); a fresh shuffle per block when `generator` is set
        (one generator, or one per sample: see `shuffle_tokens`)."""
        for block in self.layers:
            content = block(content, shuffle_tokens(style, generator)).add_(content)
        return self.norm(content)


class MambaCore(nn.Module):
    """What the published `mamba_iter_N.pth` holds: encoder_c, encoder_s, decoder and the unused new_ps."""

    def __init__(self, cfg):
        super().__init__()
        dims = (cfg.d_model, cfg.d_state, cfg.d_inner, cfg.rank)
        self.encoder_c = Encoder(cfg.content_layers, *dims)
        self.encoder_s = Encoder(cfg.style_layers, *dims)
        self.decoder = Decoder(cfg.decoder_layers, *dims, drop_path=cfg.drop_path)
        self.new_ps = Unused(cfg.d_model, cfg.d_model, 1, 1, bias=cfg.d_model)  # unused positional embedding
