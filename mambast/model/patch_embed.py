"""Patch embedding (docs/model.md section 2): one strided convolution, shared by content and style."""

from __future__ import annotations

from torch import Tensor, nn


class PatchEmbed(nn.Module):
    """Conv2d(3, d_model, patch, stride patch) with bias; official keys `proj.weight`, `proj.bias`."""

    def __init__(self, d_model: int = 512, patch_size: int = 8):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, d_model, kernel_size=patch_size, stride=patch_size)

    def forward(self, image: Tensor) -> Tensor:
        """(B, 3, h, w) -> tokens (B, H, W, C), H = h / patch, W = w / patch (channel-last)."""
        return self.proj(image).permute(0, 2, 3, 1)
