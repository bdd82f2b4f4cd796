"""CNN decoder (architecture.md section 7): tokens back to pixels, x2 nearest upsampling per stage.

The module is an nn.Sequential whose indices are the published `decoder_iter_N.pth` keys (1, 5, 8, ...).
"""

from __future__ import annotations

from torch import Tensor, nn


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

    def __init__(self, d_model: int = 512, channels: tuple[int, ...] = (256, 128, 64)):
        super().__init__(*cnn_decoder_layers(d_model, tuple(channels)))

    def forward(self, tokens: Tensor) -> Tensor:
        return super().forward(tokens)
