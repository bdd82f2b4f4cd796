"""CNN decoder (docs/model.md section 7): tokens back to pixels, x2 nearest upsampling per stage.

The module is an nn.Sequential whose indices are the published `decoder_iter_N.pth` keys (1, 5, 8, ...).
At inference on large token maps it runs in overlapping tiles within the model's memory budget (memory.py):
every layer is local, so a tile with a halo of the decoder's receptive radius gives the same pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from .memory import DEFAULT_MEMORY_BUDGET, FLOAT, decoder_tile


def _conv(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, 3)]


def cnn_decoder_layers(d_model: int, channels: tuple[int, ...]) -> list[nn.Module]:
    """Layers for len(channels) upsampling stages; (512, (256, 128, 64)) is the paper's decoder.

    stage 0: conv d_model -> c0, up; stage 1: 3 x conv c0 -> c0, conv c0 -> c1, up; stage i > 1:
    conv c(i-1) -> c(i-1), conv c(i-1) -> ci, up; then conv c_last -> c_last, conv c_last -> 3 (no ReLU).
    """
    relu, up = nn.ReLU, lambda: nn.Upsample(scale_factor=2, mode="nearest")
    layers = [*_conv(d_model, channels[0]), relu(), up()]
    for i in range(1, len(channels)):
        for _ in range(3 if i == 1 else 1):
            layers += [*_conv(channels[i - 1], channels[i - 1]), relu()]
        layers += [*_conv(channels[i - 1], channels[i]), relu(), up()]
    layers += [*_conv(channels[-1], channels[-1]), relu(), *_conv(channels[-1], 3)]
    return layers


class CNNDecoder(nn.Sequential):
    """(B, C, H, W) tokens -> (B, 3, H * 2^stages, W * 2^stages) raw image (not clamped)."""

    memory_budget: int | None = DEFAULT_MEMORY_BUDGET  # bytes, set model-wide by MambaST.set_memory_budget

    def __init__(self, d_model: int = 512, channels: tuple[int, ...] = (256, 128, 64)):
        super().__init__(*cnn_decoder_layers(d_model, tuple(channels)))

    def forward(self, tokens: Tensor, layers: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """(B, C, H, W) -> (B, 3, H * s, W * s); in tiles when the whole map exceeds the memory budget at
        inference. layers: what computes the decoder on a whole map or a tile (default: the layers in order;
        the inference engine passes an equivalent faster form, mambast.inference.fast_decoder)."""
        batch, _, H, W = tokens.shape
        halo, bytes_per_token = self.receptive_halo(), self.bytes_per_token()
        tile = None if torch.is_grad_enabled() else decoder_tile(H, W, batch, bytes_per_token, halo,
                                                                 self.memory_budget)
        if tile is None or (tile >= H and tile >= W):
            return (layers or super().forward)(tokens)
        return self.forward_tiles(tokens, tile, halo, layers)

    def forward_tiles(self, tokens: Tensor, tile: int, halo: int,
                      layers: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """The decoder on tile x tile token windows, each read with `halo` tokens of context per side (at least
        the receptive radius: the pixels then equal the whole-map pass's) and cropped to its core."""
        batch, _, H, W = tokens.shape
        scale = self.upsampling()
        out = None
        for i in range(0, H, tile):
            for j in range(0, W, tile):
                i0, j0 = max(i - halo, 0), max(j - halo, 0)
                i1, j1 = min(i + tile + halo, H), min(j + tile + halo, W)
                piece = (layers or super().forward)(tokens[:, :, i0:i1, j0:j1])  # (B, 3, (i1 - i0) s, (j1 - j0) s)
                if out is None:
                    out = piece.new_empty(batch, piece.shape[1], H * scale, W * scale)
                core = piece[:, :, (i - i0) * scale:(min(i + tile, H) - i0) * scale,
                             (j - j0) * scale:(min(j + tile, W) - j0) * scale]
                out[:, :, i * scale:i * scale + core.shape[2], j * scale:j * scale + core.shape[3]] = core
        return out

    def upsampling(self) -> int:
        """Output pixels per token side (2^stages)."""
        return 2 ** sum(isinstance(m, nn.Upsample) for m in self)

    def receptive_halo(self) -> int:
        """Tokens of context a tile needs per side: the receptive radius of the 3x3 convs, each counted at its
        resolution (radius 1 px there = 1 / (upsampling so far) tokens), rounded up."""
        radius, scale = 0.0, 1
        for m in self:
            if isinstance(m, nn.Upsample):
                scale *= 2
            elif isinstance(m, nn.Conv2d):
                radius += (m.kernel_size[0] // 2) / scale
        return math.ceil(radius)

    def bytes_per_token(self) -> int:
        """float32 bytes per token of the largest layer's input + padded input + output (one image)."""
        worst, scale, channels = 0, 1, self[1].in_channels
        for m in self:
            if isinstance(m, nn.Upsample):
                scale *= 2
            elif isinstance(m, nn.Conv2d):
                worst = max(worst, (2 * m.in_channels + m.out_channels) * scale * scale)
                channels = m.out_channels
        return FLOAT * max(worst, channels)
