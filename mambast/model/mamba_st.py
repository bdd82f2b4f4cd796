"""Mamba-ST: patch embedding -> content/style encoders -> ST-VSS decoder -> CNN decoder (docs/model.md 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import MambaSTConfig
from ..errors import UserError
from .blocks import Generators, MambaCore
from .cnn_decoder import CNNDecoder
from .memory import DEFAULT_MEMORY_BUDGET
from .patch_embed import PatchEmbed
from .shuffle import draw_seed
from .ss2d import SS2DBase


class MambaST(nn.Module):
    """The Mamba-ST style-transfer network.

    Submodules map one-to-one to the published files: `patch_embed` (embedding_iter_N.pth),
    `mamba` (mamba_iter_N.pth: encoder_c, encoder_s, decoder, new_ps), `cnn_decoder` (decoder_iter_N.pth).
    """

    def __init__(self, config: MambaSTConfig | None = None):
        super().__init__()
        self.config = cfg = config or MambaSTConfig()
        self.patch_embed = PatchEmbed(cfg.d_model, cfg.patch_size)
        self.mamba = MambaCore(cfg)
        self.cnn_decoder = CNNDecoder(cfg.d_model, cfg.cnn_channels)
        if cfg.init == "official":
            official_init_(self.mamba)

    def set_scan_backend(self, backend: str) -> MambaST:
        """Select the scan backend of every SS2D layer: "auto" (per device), "cpu", "torch", "triton",
        "mamba_ssm" or "ref" (mambast.ops.backends). The scan, its low-rank form and the cross scan/merge all
        come from that one backend."""
        from ..ops.backends import BACKENDS

        if backend not in BACKENDS:
            raise UserError(f"unknown scan backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        for module in self.modules():
            if isinstance(module, SS2DBase):
                module.set_scan_backend(backend)
        return self

    def set_memory_budget(self, budget: int | None = DEFAULT_MEMORY_BUDGET) -> MambaST:
        """Bound inference memory: `budget` bytes for the working set of one SS2D/ST-SS2D layer and of the
        CNN decoder (default 768 MiB). Layers above it run their channels in blocks and the CNN decoder in
        tiles (outputs equal to float rounding; docs/memory.md); None runs everything at once. Training
        (autograd on) never blocks."""
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
            raise UserError(f"memory budget must be a positive number of bytes or None, got {budget!r}")
        for module in self.modules():
            if isinstance(module, SS2DBase | CNNDecoder):
                module.memory_budget = budget
        return self

    def forward(self, content: Tensor, style: Tensor, shuffle: bool = True, seed: int | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        """Stylize: content (B, 3, h, w), style (B or 1, 3, h', w'), floats in [0, 1] -> raw (B, 3, h, w).

        Any h, w >= patch_size: the content is reflection-padded to a multiple of the patch size (at least
        two patches) and the output cropped back; the style is resized (bilinear, antialiased) to the
        padded content size so both give the same token grid. The output is the CNN decoder's raw, unclamped result.
        The style shuffle (on by default, as published) draws from `generator`, else from a generator
        seeded with `seed`, else from torch's global RNG; `shuffle=False` turns it off.
        Equal to decode(fuse(encode_content(padded content), encode_style(resized style))), cropped.
        """
        h, w = content.shape[-2:]
        content = pad_to_patches(content, self.config.patch_size)
        style = match_size(style, content)
        gen = shuffle_generator(generator, seed) if shuffle else None
        fused = self.fuse(self.encode_content(content), self.encode_style(style), gen,
                          overwrite=not torch.is_grad_enabled())  # the content tokens are used once here
        return self.decode(fused)[..., :h, :w]

    def encode_content(self, content: Tensor) -> Tensor:
        """Content encoder: padded content (B, 3, H*p, W*p) in [0, 1] -> content tokens (B, H, W, C)."""
        return self.mamba.encoder_c(self.patch_embed(content))

    def encode_style(self, style: Tensor) -> Tensor:
        """Style encoder: style (B, 3, H*p, W*p) in [0, 1], already on the content's grid -> (B, H, W, C)."""
        return self.mamba.encoder_s(self.patch_embed(style))

    def fuse(self, content_tokens: Tensor, style_tokens: Tensor, generator: Generators = None,
             overwrite: bool = False) -> Tensor:
        """The Mamba-ST decoder (ST-VSS blocks, style shuffled per block when `generator` is given: one
        generator for the batch or one per sample): content tokens (B, H, W, C), style tokens (B or 1, H, W, C)
        -> fused tokens (B, H, W, C). overwrite=True (inference) uses content_tokens as the decoder's running
        buffer, destroying them: one token map less memory (Decoder.forward)."""
        if style_tokens.shape[0] != content_tokens.shape[0]:
            style_tokens = style_tokens.expand(content_tokens.shape[0], -1, -1, -1)
        return self.mamba.decoder(content_tokens, style_tokens, generator, overwrite=overwrite)

    def decode(self, fused_tokens: Tensor) -> Tensor:
        """CNN decoder: fused tokens (B, H, W, C) -> raw image (B, 3, H*p, W*p), not clamped."""
        return self.cnn_decoder(fused_tokens.permute(0, 3, 1, 2))


def shuffle_generator(generator: torch.Generator | None, seed: int | None) -> torch.Generator:
    """The generator the style shuffle draws from: the given one, a seeded one, or one seeded from torch's
    global RNG (so `torch.manual_seed` makes unseeded calls reproducible too)."""
    if generator is not None:
        return generator
    return torch.Generator().manual_seed(draw_seed() if seed is None else seed)


def padded_size(h: int, w: int, patch: int, name: str = "image") -> tuple[int, int]:
    """(h, w) rounded up to multiples of `patch`, at least two patches each; error (naming `name`) below one
    patch."""
    if h < patch or w < patch:
        raise UserError(f"{name}: {w} x {h} px is smaller than one {patch} x {patch} patch")
    return max(-(-h // patch), 2) * patch, max(-(-w // patch), 2) * patch


def pad_to_patches(image: Tensor, patch: int) -> Tensor:
    """Pad (B, 3, h, w) at the bottom/right to multiples of `patch`, at least 2 patches per side (the CNN
    decoder's reflection padding needs a 2 x 2 token grid); reflection padding, replicate where the image is
    too small to reflect."""
    h, w = image.shape[-2:]
    H, W = padded_size(h, w, patch)
    pad_h, pad_w = H - h, W - w
    if pad_h or pad_w:
        mode = "reflect" if pad_h < h and pad_w < w else "replicate"
        image = F.pad(image, (0, pad_w, 0, pad_h), mode=mode)
    return image


def match_size(style: Tensor, content: Tensor) -> Tensor:
    """Resize the style (bilinear, antialiased) to the content's size; broadcast a batch of 1."""
    if style.shape[-2:] != content.shape[-2:]:
        style = F.interpolate(style, size=content.shape[-2:], mode="bilinear", align_corners=False,
                              antialias=True)
    if style.shape[0] != content.shape[0]:
        if style.shape[0] != 1:
            raise UserError(f"style batch ({style.shape[0]}) must be 1 or equal the content batch "
                            f"({content.shape[0]})")
        style = style.expand(content.shape[0], -1, -1, -1)
    return style


@torch.no_grad()
def official_init_(module: nn.Module) -> None:
    """The published code's init (docs/model.md section 9): after the usual Mamba init, every parameter
    with two or more dimensions (A_logs and the stacked projections included) is redrawn Xavier-uniform."""
    for p in module.parameters():
        if p.dim() >= 2:
            nn.init.xavier_uniform_(p)
