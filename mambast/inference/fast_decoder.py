"""The CNN decoder's faster inference form: each x2 upsampling computed at the low resolution.

Every stage after the first runs `nearest x2 upsampling -> reflection pad 1 -> 3x3 conv`. Nearest upsampling
repeats each pixel 2 x 2, and reflecting the upsampled map by one pixel gives the same pixels as replicating
the small map, so output pixel (2i + a, 2j + b) of the conv reads only a 2 x 2 window of the small map:

    out[2i + a, 2j + b] = sum over (u, v) in 2 x 2 of  W_ab[u, v] . pad_replicate(x)[i + a + u, j + b + v]

with the phase kernels W_ab the 3x3 kernel's taps summed along rows and columns (a = 0: rows {0}, {1, 2};
a = 1: rows {0, 1}, {2}; the same for columns with b). Four 2x2 convolutions on the small map replace one 3x3
convolution on the map four times its size: 16 instead of 36 multiply-adds per small pixel and channel pair
(2.25x fewer), and no upsampled copy. The numbers equal the layers' up to float rounding (the taps are summed
first), so the engine uses this form in bf16/fp16 only; fp32 runs the model's own layers. Measured on the
bundled model (AMD EPYC Zen 4, bf16, 1 thread): each upsampling conv 1.5-2x faster; the decoder at 512 px
about 1.2x faster as a whole (benchmarks/speed_cpu.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model.cnn_decoder import CNNDecoder

PHASE_TAPS = (((0,), (1, 2)), ((0, 1), (2,)))  # PHASE_TAPS[a][u]: the 3x3 rows (or columns) summed into tap u


def phase_kernels(weight: Tensor) -> list[Tensor]:
    """A 3x3 kernel (O, I, 3, 3) -> the four (O, I, 2, 2) phase kernels W_00, W_01, W_10, W_11 (docstring)."""
    rows = [torch.stack([weight[:, :, list(taps)].sum(2) for taps in PHASE_TAPS[a]], 2) for a in (0, 1)]
    return [torch.stack([rows[a][..., list(taps)].sum(-1) for taps in PHASE_TAPS[b]], -1)
            for a in (0, 1) for b in (0, 1)]


def upsampled_conv(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """conv(reflection_pad_1(nearest_x2(x))) for a 3x3 `conv`, computed on the small map: (B, I, H, W) ->
    (B, O, 2H, 2W)."""
    batch, _, H, W = x.shape
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    out = None
    for phase, kernel in enumerate(phase_kernels(conv.weight)):
        a, b = divmod(phase, 2)
        y = F.conv2d(padded[:, :, a:a + H + 1, b:b + W + 1], kernel, conv.bias)  # (B, O, H, W)
        if out is None:
            out = y.new_empty(batch, y.shape[1], H, 2, W, 2)
        out[:, :, :, a, :, b] = y
    return out.view(batch, -1, 2 * H, 2 * W)


class FastDecoder(nn.Module):
    """`decoder` (a CNNDecoder, not copied: its current weights are read at every call) with the upsampling
    convs in phase form; (B, C, H, W) tokens -> (B, 3, H s, W s). Tiles within the decoder's memory budget as
    the decoder does (CNNDecoder.forward)."""

    def __init__(self, decoder: CNNDecoder):
        super().__init__()
        self.decoder = decoder
        self.steps = plan(list(decoder))

    def layers(self, x: Tensor) -> Tensor:
        """The whole decoder on one map (or tile)."""
        for kind, mods in self.steps:
            if kind == "up_conv":
                x = upsampled_conv(x, mods[1])
            else:
                for m in mods:
                    x = m(x)
        return x

    def forward(self, tokens: Tensor) -> Tensor:
        return self.decoder(tokens, layers=self.layers)


def plan(layers: list[nn.Module]) -> list[tuple[str, tuple[nn.Module, ...]]]:
    """The decoder's layers grouped into steps: ("up_conv", (upsample, conv)) for a nearest x2 upsampling
    followed by reflection pad 1 and a 3x3 conv; ("layers", (module,)) for anything else, run as is."""
    steps, i = [], 0
    while i < len(layers):
        m = layers[i]
        window = layers[i:i + 3]
        if (isinstance(m, nn.Upsample) and len(window) == 3 and _is_nearest_x2(m)
                and _is_reflect_1(window[1]) and _is_plain_3x3(window[2])):
            steps.append(("up_conv", (m, window[2])))
            i += 3
        else:
            steps.append(("layers", (m,)))
            i += 1
    return steps


def _is_nearest_x2(m: nn.Upsample) -> bool:
    return m.mode == "nearest" and m.scale_factor in (2, 2.0, (2, 2), (2.0, 2.0)) and m.size is None


def _is_reflect_1(m: nn.Module) -> bool:
    return isinstance(m, nn.ReflectionPad2d) and tuple(m.padding) == (1, 1, 1, 1)


def _is_plain_3x3(m: nn.Module) -> bool:
    return (isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) and m.stride == (1, 1) and m.padding == (0, 0)
            and m.dilation == (1, 1) and m.groups == 1)
