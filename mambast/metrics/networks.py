"""The evaluation's metric networks: which weight files, loaded once, and which metrics each one serves.

A metric whose weight files are not found is skipped with the reason (`Networks.skipped`); a bad or empty
file given by path is an error (UserError), before any work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .fid import min_side
from .weights import resolve, sha256_file

__all__ = ["EvalWeights", "Networks", "METRICS_OF", "LPIPS_MIN_SIDE", "LOSSES_MIN_SIDE", "load_networks",
           "usable_networks"]  # fmt: skip

LPIPS_MIN_SIDE = 31  # AlexNet's smallest input (11x11/4 conv and two 3x3/2 pools)
LOSSES_MIN_SIDE = 17  # vgg_normalised down to relu5_1 (four ceil-mode pools)

METRICS_OF = {  # network key -> the metrics it serves
    "fid": ("fid", "fid_inf", "artfid"),
    "lpips": ("lpips", "lpips_gray", "artfid"),
    "cfsd": ("cfsd",),
    "losses": ("content_loss", "style_loss"),
    "fid_imagenet": ("fid_imagenet",),
}


@dataclass
class EvalWeights:
    """Weight-file paths given by the user (None: look in `folder`; missing: metric skipped)."""

    inception: str | Path | None = None  # art_inception.pth -> fid, artfid
    lpips_alexnet: str | Path | None = None  # AlexNet backbone -> lpips, lpips_gray, artfid
    lpips_heads: str | Path | None = None  # lpips v0.1 alex.pth
    vgg19: str | Path | None = None  # torchvision VGG-19 -> cfsd
    vgg: str | Path | None = None  # vgg_normalised.pth -> content_loss, style_loss
    fid_inception: str | Path | None = None  # pytorch-fid / torchvision Inception -> fid_imagenet
    folder: str | Path | None = None


@dataclass
class Networks:
    """The loaded metric networks: nets {"fid" | "lpips" | "cfsd" | "losses" | "fid_imagenet": module},
    skipped {metric: why}, used {weight name: {"path", "sha256"}}."""

    nets: dict[str, torch.nn.Module] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    used: dict[str, dict[str, str]] = field(default_factory=dict)


def _skip(skipped: dict[str, str], key: str, why: str, overwrite: bool = False) -> None:
    """Record `why` for every metric of network `key` (ArtFID says which of its networks is missing)."""
    for m in METRICS_OF[key]:
        reason = why if m != "artfid" else f"needs {key}: {why}"
        if overwrite:
            skipped[m] = reason
        else:
            skipped.setdefault(m, reason)


def load_networks(weights: EvalWeights | None, device: str | torch.device = "cpu") -> Networks:
    """Load each metric network whose weight files are found (UserError for a bad or empty file)."""
    from mambast.nets.inception import load_inception
    from mambast.nets.lpips_net import load_lpips
    from mambast.nets.vgg import load_vgg

    w = weights or EvalWeights()
    out = Networks()

    def want(key: str, names: tuple[str, ...], explicit: tuple, loader: Callable) -> None:
        paths = []
        for name, path in zip(names, explicit, strict=True):
            found, why = resolve(name, path, w.folder)
            if found is None:
                _skip(out.skipped, key, why)
                return
            paths.append(found)
        out.nets[key] = loader(*paths)
        for name, path in zip(names, paths, strict=True):
            out.used[name] = {"path": str(path), "sha256": sha256_file(path)}

    want("fid", ("art_inception",), (w.inception,), lambda p: load_inception(p, "auto", device))
    want(
        "lpips",
        ("lpips_alexnet", "lpips_heads"),
        (w.lpips_alexnet, w.lpips_heads),
        lambda a, h: load_lpips(a, h, device),
    )
    want("cfsd", ("vgg19",), (w.vgg19,), lambda p: load_vgg(p, layout="vgg19", device=device))
    want("losses", ("vgg_normalised",), (w.vgg,), lambda p: load_vgg(p, layout="vgg_normalised", device=device))
    want("fid_imagenet", ("pt_inception",), (w.fid_inception,), lambda p: load_inception(p, "auto", device))
    return out


def usable_networks(networks: Networks, mode: str, size: int) -> tuple[dict[str, torch.nn.Module], dict[str, str]]:
    """The networks that can score under (mode, size) -> (nets, skipped {metric: why}); `networks` unchanged.

    In "paper" mode every FID / LPIPS / loss input has short side `size`: a network that cannot take that
    is left out, with the reason, before any work."""
    nets, skipped = dict(networks.nets), dict(networks.skipped)
    if mode != "paper":
        return nets, skipped
    needs = {"lpips": LPIPS_MIN_SIDE, "losses": LOSSES_MIN_SIDE}
    needs |= {key: min_side(nets[key]) for key in ("fid", "fid_imagenet") if key in nets}
    for key, smallest in needs.items():
        if key in nets and size < smallest:
            del nets[key]
            _skip(skipped, key, f"size {size} is below the {smallest} px its network needs (short side, paper mode)",
                  overwrite=True)  # fmt: skip
    return nets, skipped
