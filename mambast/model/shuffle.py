"""The style shuffle (docs/model.md section 5): a random permutation of the L = H * W style positions, drawn
per decoder block. The permutation is drawn once (`shuffle_order`) and applied where it is cheapest: to the
tokens (`permute_tokens`), or, in the bounded-memory path, to each block of projected channels
(`permute_positions`), which gives the same numbers without a shuffled copy of the style (docs/memory.md)."""

from __future__ import annotations

import torch
from torch import Tensor

Generators = torch.Generator | list[torch.Generator] | None

SEED_HIGH = 2**62  # drawn shuffle seeds lie in [0, SEED_HIGH)


def draw_seed(high: int = SEED_HIGH) -> int:
    """A fresh shuffle seed in [0, high), drawn from torch's global RNG (so `torch.manual_seed` makes runs
    without a seed reproducible too): the one draw behind `MambaST.forward` without a seed, the engine's and
    the web UI's (which asks for seeds a browser's numbers hold exactly)."""
    return int(torch.randint(0, high, (1,)).item())


def shuffle_order(style: Tensor, generator: Generators) -> Tensor | None:
    """The permutation for style tokens (B, H, W, C): (1, L) indices from one generator (shared over the batch,
    as published) or (B, L) from a list of B generators (so a batch equals B single calls); None without a
    generator (no shuffle). Drawn on the generator's device (CPU generators for any model device, so a seed
    gives the same output on every device), returned on the style's device."""
    if generator is None:
        return None
    batch, H, W, _ = style.shape
    if isinstance(generator, torch.Generator):
        return torch.randperm(H * W, generator=generator, device=generator.device).to(style.device)[None]
    if len(generator) != batch:
        raise ValueError(f"{len(generator)} shuffle generators for a batch of {batch}")
    return torch.stack([torch.randperm(H * W, generator=g, device=g.device) for g in generator]).to(style.device)


def permute_tokens(tokens: Tensor, order: Tensor | None) -> Tensor:
    """tokens (B, H, W, C) with positions reordered: out[b, l] = tokens[b, order[b or 0, l]] (None: as is)."""
    if order is None:
        return tokens
    batch, H, W, C = tokens.shape
    flat = tokens.reshape(batch, H * W, C)
    if order.shape[0] == 1:
        return flat[:, order[0]].reshape(batch, H, W, C)
    return torch.gather(flat, 1, order[:, :, None].expand(-1, -1, C)).reshape(batch, H, W, C)


def permute_positions(maps: Tensor, order: Tensor | None) -> Tensor:
    """Channel-first maps (B, c, H, W) with positions reordered as `permute_tokens` does (None: as is)."""
    if order is None:
        return maps
    batch, channels, H, W = maps.shape
    flat = maps.reshape(batch, channels, H * W)
    if order.shape[0] == 1:
        return flat[:, :, order[0]].view(batch, channels, H, W)
    return torch.gather(flat, 2, order[:, None, :].expand(-1, channels, -1)).view(batch, channels, H, W)


def shuffle_tokens(style: Tensor, generator: Generators) -> Tensor:
    """The style shuffle on tokens (B, H, W, C): `permute_tokens(style, shuffle_order(style, generator))`."""
    return permute_tokens(style, shuffle_order(style, generator))
