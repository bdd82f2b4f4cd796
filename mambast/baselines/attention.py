"""Attention style-transfer baseline with StyTr2's layout (Deng et al., "StyTr2: Image Style Transfer with
Transformers", CVPR 2022), written from the paper's description for the time / memory comparison.

    content, style (B, 3, h, w) --shared patch embedding (8x8 conv)--> tokens (B, L, d), L = hw/64
    content: + content-aware positional encoding (CAPE: 18x18 average pool -> 1x1 conv -> bilinear upsample)
    content encoder: 3 layers [self-attention, FFN 2048], post-norm;  style encoder: 3 layers, no position
    decoder: 3 layers [self-attention on content, cross-attention content -> style, FFN 2048], post-norm
    CNN decoder (x8 upsampling, the same module as Mamba-ST) -> (B, 3, h, w)

d = 512, 8 heads. `attention="plain"` materialises the (B, heads, L, L) score matrix and its softmax, as
StyTr2 ships it; `attention="sdpa"` uses torch's fused scaled_dot_product_attention (fused kernels).
Randomly initialised: it is a cost model, not a trained stylizer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from mambast.model import CNNDecoder, PatchEmbed

__all__ = ["AttentionSTConfig", "AttentionST"]


@dataclass
class AttentionSTConfig:
    """StyTr2-like sizes; attention: "plain" (explicit L x L) or "sdpa" (fused kernel)."""

    d_model: int = 512
    heads: int = 8
    ffn: int = 2048
    encoder_layers: int = 3
    decoder_layers: int = 3
    patch_size: int = 8
    cape_pool: int = 18
    cnn_channels: tuple[int, ...] = (256, 128, 64)
    attention: str = "plain"


class Attention(nn.Module):
    """Multi-head attention: q (B, Lq, d), k, v (B, Lk, d) -> (B, Lq, d)."""

    def __init__(self, d: int, heads: int, kind: str) -> None:
        super().__init__()
        if kind not in ("plain", "sdpa"):
            raise ValueError(f"attention must be 'plain' or 'sdpa', got {kind!r}")
        self.heads, self.kind = heads, kind
        self.q, self.k, self.v, self.out = (nn.Linear(d, d) for _ in range(4))

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        b, lq, d = q.shape
        split = lambda t: t.view(b, -1, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(q)), split(self.k(k)), split(self.v(v))  # (B, h, L, d/h)
        if self.kind == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v)
        else:
            scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)  # (B, h, Lq, Lk) materialised
            y = scores.softmax(-1) @ v
        return self.out(y.transpose(1, 2).reshape(b, lq, d))


class FFN(nn.Module):
    """Linear(d, ffn) -> ReLU -> Linear(ffn, d)."""

    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.relu(self.fc1(x)))


class EncoderLayer(nn.Module):
    """Post-norm: x = LN(x + SelfAttn(x + pos, x + pos, x)); x = LN(x + FFN(x))."""

    def __init__(self, cfg: AttentionSTConfig) -> None:
        super().__init__()
        self.attn = Attention(cfg.d_model, cfg.heads, cfg.attention)
        self.ffn = FFN(cfg.d_model, cfg.ffn)
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)

    def forward(self, x: Tensor, pos: Tensor | None) -> Tensor:
        qk = x if pos is None else x + pos
        x = self.norm1(x + self.attn(qk, qk, x))
        return self.norm2(x + self.ffn(x))


class DecoderLayer(nn.Module):
    """Post-norm: self-attention on content, cross-attention content -> style, FFN."""

    def __init__(self, cfg: AttentionSTConfig) -> None:
        super().__init__()
        self.self_attn = Attention(cfg.d_model, cfg.heads, cfg.attention)
        self.cross_attn = Attention(cfg.d_model, cfg.heads, cfg.attention)
        self.ffn = FFN(cfg.d_model, cfg.ffn)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(cfg.d_model) for _ in range(3))

    def forward(self, c: Tensor, s: Tensor, pos: Tensor) -> Tensor:
        q = c + pos
        c = self.norm1(c + self.self_attn(q, q, c))
        c = self.norm2(c + self.cross_attn(c + pos, s, s))
        return self.norm3(c + self.ffn(c))


class AttentionST(nn.Module):
    """The StyTr2-layout baseline: (B, 3, h, w) content, style, h, w multiples of 8 -> (B, 3, h, w)."""

    def __init__(self, cfg: AttentionSTConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or AttentionSTConfig()
        self.patch_embed = PatchEmbed(cfg.d_model, cfg.patch_size)
        self.cape = nn.Conv2d(cfg.d_model, cfg.d_model, 1)
        self.encoder_c = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.encoder_s = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        self.cnn_decoder = CNNDecoder(cfg.d_model, cfg.cnn_channels)

    def content_position(self, tokens: Tensor) -> Tensor:
        """CAPE: (B, d, H, W) -> (B, d, H, W) positional code from an 18x18 average pool of the content."""
        pooled = F.adaptive_avg_pool2d(tokens, self.cfg.cape_pool)
        return F.interpolate(self.cape(pooled), size=tokens.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, content: Tensor, style: Tensor) -> Tensor:
        c = self.patch_embed(content).permute(0, 3, 1, 2)  # (B, d, H, W)
        s = self.patch_embed(style).permute(0, 3, 1, 2)
        b, d, h, w = c.shape
        pos = self.content_position(c).flatten(2).transpose(1, 2)  # (B, L, d)
        c, s = c.flatten(2).transpose(1, 2), s.flatten(2).transpose(1, 2)
        for layer in self.encoder_c:
            c = layer(c, pos)
        for layer in self.encoder_s:
            s = layer(s, None)
        for layer in self.decoder:
            c = layer(c, s, pos)
        return self.cnn_decoder(c.transpose(1, 2).reshape(b, d, h, w))
