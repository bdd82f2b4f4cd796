"""LPIPS with the AlexNet backbone and the v0.1 linear heads, loading the `lpips` package's weight layout.

LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018):
images in [-1, 1] are shifted / scaled per channel, AlexNet features are taken after relu1..relu5, each unit-
normalised over channels, the squared differences are weighted per channel by a non-negative 1x1 conv
("linear head", no bias), averaged over space and summed over the five layers.

Weights, two files (or one file holding both):
    backbone   torchvision's ImageNet AlexNet (``alexnet-owt-7be5be79.pth``:
               ``features.{0,3,6,8,10}.weight|bias``,
               classifier ignored) or the lpips package's full model keys ``net.slice{1..5}.{0,3,6,8,10}.*``.
    heads      the lpips package's ``weights/v0.1/alex.pth``: ``lin{0..4}.model.1.weight`` of shapes
               (1, 64|192|384|256|256, 1, 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from mambast.errors import UserError
from mambast.io.state_dict import torch_load_tensors

__all__ = ["LPIPSAlex", "LPIPSWeightsError", "load_lpips"]

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
CHANNELS = (64, 192, 384, 256, 256)
CONV_INDEX = (0, 3, 6, 8, 10)  # indices of the five convs in torchvision's alexnet.features
CONV_SHAPES = ((64, 3, 11, 11), (192, 64, 5, 5), (384, 192, 3, 3), (256, 384, 3, 3), (256, 256, 3, 3))


class LPIPSWeightsError(UserError):
    """LPIPS weights missing, unreadable or not in the expected layout (one-line message)."""


class LinearHead(nn.Module):
    """Dropout (a no-op at eval) then a 1x1 conv to one channel without bias; key ``model.1.weight``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class LPIPSAlex(nn.Module):
    """LPIPS distance with AlexNet features (v0.1 heads).

    forward(x, y: (B, 3, H, W) RGB in [0, 1], same size, H, W >= 31) -> (B,) distances; 0 for x == y.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.lins = nn.ModuleList(LinearHead(c) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def taps(self, x: Tensor) -> list[Tensor]:
        """(B, 3, H, W) in [0, 1] -> relu1..relu5 AlexNet features, each unit-normalised over channels."""
        h = ((2 * x - 1) - self.shift) / self.scale
        out = []
        for i, module in enumerate(self.features):
            h = module(h)
            if i - 1 in CONV_INDEX:  # the ReLU right after each conv
                out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """(B, 3, H, W) x2 in [0, 1] -> (B,) LPIPS distances."""
        if x.shape != y.shape:
            raise ValueError(
                f"LPIPS needs images of the same size, got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        total = x.new_zeros(x.shape[0])
        for lin, fx, fy in zip(self.lins, self.taps(x), self.taps(y), strict=True):
            total = total + lin((fx - fy).pow(2)).mean(dim=(1, 2, 3))
        return total


def _read(path: Path, what: str) -> dict[str, Tensor]:
    obj = torch_load_tensors(path, f"LPIPS {what} weights", LPIPSWeightsError)
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise LPIPSWeightsError(f"{path} is not a state dict")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _backbone_keys(sd: Mapping[str, Tensor], path: Path) -> dict[str, Tensor]:
    """Map torchvision ``features.N.*`` or lpips ``net.sliceK.N.*`` keys to ``features.N.*`` (checked)."""
    out: dict[str, Tensor] = {}
    problems = []
    for k, (idx, shape) in enumerate(zip(CONV_INDEX, CONV_SHAPES, strict=True)):
        for name, want in (("weight", shape), ("bias", shape[:1])):
            for key in (f"features.{idx}.{name}", f"net.slice{k + 1}.{idx}.{name}"):
                if key in sd:
                    break
            else:
                problems.append(f"missing features.{idx}.{name}")
                continue
            if tuple(sd[key].shape) != want:
                problems.append(f"{key} {tuple(sd[key].shape)} != {want}")
            out[f"features.{idx}.{name}"] = sd[key]
    if problems:
        raise LPIPSWeightsError(
            f"{path} is not an AlexNet backbone (torchvision or lpips layout): {', '.join(problems[:4])}"
        )
    return out


def _head_keys(sd: Mapping[str, Tensor], path: Path) -> dict[str, Tensor]:
    """Map ``lin{k}.model.1.weight`` keys to ``lins.{k}.model.1.weight`` (checked)."""
    out: dict[str, Tensor] = {}
    problems = []
    for k, c in enumerate(CHANNELS):
        key = f"lin{k}.model.1.weight"
        if key not in sd:
            problems.append(f"missing {key}")
        elif tuple(sd[key].shape) != (1, c, 1, 1):
            problems.append(f"{key} {tuple(sd[key].shape)} != {(1, c, 1, 1)}")
        else:
            out[f"lins.{k}.model.1.weight"] = sd[key]
    if problems:
        raise LPIPSWeightsError(f"{path} does not hold LPIPS v0.1 linear heads: {', '.join(problems[:4])}")
    return out


def load_lpips(
    alexnet: str | Path, heads: str | Path | None = None, device: str | torch.device = "cpu"
) -> LPIPSAlex:
    """Load :class:`LPIPSAlex` from an AlexNet backbone file and the v0.1 heads file (or one file)."""
    backbone_sd = _read(Path(alexnet), "AlexNet")
    heads_path = Path(heads) if heads is not None else Path(alexnet)
    heads_sd = _read(heads_path, "linear-head") if heads is not None else backbone_sd
    model = LPIPSAlex()
    state = {**_backbone_keys(backbone_sd, Path(alexnet)), **_head_keys(heads_sd, heads_path)}
    model.load_state_dict(state)
    return model.to(device)
