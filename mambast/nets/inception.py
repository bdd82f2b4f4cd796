"""Inception-v3 pool-feature extractor (2048-d) that loads the published FID state dicts, without torchvision.

Three weight layouts are understood (all share torchvision's ``Inception3`` backbone key names,
``Conv2d_1a_3x3.conv.weight`` ... ``Mixed_7c.branch_pool.bn.running_var``):

    "art"          the art-fid package's ``art_inception.pth`` (Wright & Ommer, GCPR 2022): the backbone plus
                   two classifier heads ``fc1`` / ``fc2`` and two auxiliary heads
                   ``AuxLogits1`` / ``AuxLogits2``.
                   Input as art-fid feeds it: RGB in [0, 1], no resizing, no normalisation.
    "torchvision"  torchvision's ImageNet ``inception_v3_google-*.pth`` (heads ``fc`` and ``AuxLogits``).
                   Input: resized to 299 x 299 (bilinear), ImageNet mean / std, then torchvision's
                   ``transform_input`` (on by default with these weights), which maps each normalised channel
                   back to (x - 0.5) / 0.5: x_c * std_c / 0.5 + (mean_c - 0.5) / 0.5.
    "pytorch-fid"  pytorch-fid's ``pt_inception-2015-12-05-*.pth`` (the TF FID graph: 1008-way ``fc``, average
                   pools that exclude padding, max pool in the last block).
                   Input: 299 x 299 (bilinear), 2x - 1.

The heads are loaded (so a file round-trips) but never used: the feature is the global average pool of
Mixed_7c, (B, 2048). Reference: Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mambast.errors import UserError
from mambast.io.state_dict import torch_load_tensors

__all__ = [
    "LAYOUTS", "InceptionV3", "InceptionWeightsError", "detect_layout", "load_inception",
    "transform_input",
]  # fmt: skip

LAYOUTS = ("art", "torchvision", "pytorch-fid")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class InceptionWeightsError(UserError):
    """Inception weights missing, unreadable or not in a known layout (one-line message)."""


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU; keys ``conv.*``, ``bn.*``."""

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: Tensor, tf_style: bool) -> Tensor:
    """3x3 stride-1 average pool; the TF FID graph does not count the zero padding."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=not tf_style)


class InceptionA(nn.Module):
    """35 x 35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | pool-1x1 -> 224 + pool_features channels."""

    def __init__(self, cin: int, pool_features: int, tf_style: bool = False) -> None:
        super().__init__()
        self.tf_style = tf_style
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool(x, self.tf_style))
        return torch.cat([self.branch1x1(x), b5, b3, bp], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([b3, bd, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    """17 x 17 block with factorised 7x7 convolutions -> 768 channels."""

    def __init__(self, cin: int, c7: int, tf_style: bool = False) -> None:
        super().__init__()
        self.tf_style = tf_style
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for i in range(1, 6):
            bd = getattr(self, f"branch7x7dbl_{i}")(bd)
        bp = self.branch_pool(_avg_pool(x, self.tf_style))
        return torch.cat([self.branch1x1(x), b7, bd, bp], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """8 x 8 block with split 1x3 / 3x1 branches -> 2048 channels. pool: "avg", "avg_tf" or "max"."""

    def __init__(self, cin: int, pool: str = "avg") -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        if self.pool == "max":
            pooled = F.max_pool2d(x, 3, stride=1, padding=1)
        else:
            pooled = _avg_pool(x, self.pool == "avg_tf")
        return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pooled)], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on the 17 x 17 grid (loaded, never run here)."""

    def __init__(self, cin: int, num_classes: int) -> None:
        super().__init__()
        self.conv0 = BasicConv2d(cin, 128, 1)
        self.conv1 = BasicConv2d(128, 768, 5)
        self.fc = nn.Linear(768, num_classes)


class InceptionV3(nn.Module):
    """Inception-v3 backbone returning the (B, 2048) pool features, with the layout's heads (loaded, unused).

    layout: one of LAYOUTS. heads: {head name: number of classes}, e.g. {"fc1": 1000, "fc2": 1000} with
    aux heads {"AuxLogits1": ..., ...} (default: the layout's usual heads with 1000 / 1008 classes).
    forward(x (B, 3, H, W) RGB in [0, 1]) -> (B, 2048); H, W >= 75 (after the layout's resizing).
    """

    def __init__(self, layout: str = "art", heads: Mapping[str, int] | None = None) -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise InceptionWeightsError(
                f"unknown Inception layout {layout!r}; choose one of {', '.join(LAYOUTS)}"
            )
        self.layout = layout
        tf = layout == "pytorch-fid"
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32, tf)
        self.Mixed_5c = InceptionA(256, 64, tf)
        self.Mixed_5d = InceptionA(288, 64, tf)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128, tf)
        self.Mixed_6c = InceptionC(768, 160, tf)
        self.Mixed_6d = InceptionC(768, 160, tf)
        self.Mixed_6e = InceptionC(768, 192, tf)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, "avg_tf" if tf else "avg")
        self.Mixed_7c = InceptionE(2048, "max" if tf else "avg")
        for name, classes in (dict(heads) if heads is not None else default_heads(layout)).items():
            head = InceptionAux(768, classes) if name.startswith("AuxLogits") else nn.Linear(2048, classes)
            self.add_module(name, head)
        self.requires_grad_(False)
        self.eval()

    def preprocess(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> the input convention of the layout's weights."""
        if self.layout == "art":
            return x
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        if self.layout == "pytorch-fid":
            return 2 * x - 1
        mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return transform_input((x - mean) / std)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 2048) global-average-pooled Mixed_7c features."""
        x = self.preprocess(x)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean(dim=(2, 3))


def transform_input(x: Tensor) -> Tensor:
    """torchvision ``Inception3(transform_input=True)``: ImageNet-normalised (B, 3, H, W) -> per channel
    x * std / 0.5 + (mean - 0.5) / 0.5 (the convention the Google weights were trained with)."""
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return x * (std / 0.5) + (mean - 0.5) / 0.5


def default_heads(layout: str) -> dict[str, int]:
    """The classifier heads a file of `layout` usually carries (files set the class counts)."""
    if layout == "art":
        return {"AuxLogits1": 1000, "AuxLogits2": 1000, "fc1": 1000, "fc2": 1000}
    if layout == "pytorch-fid":
        return {"fc": 1008}
    return {"AuxLogits": 1000, "fc": 1000}


def detect_layout(state_dict: Mapping[str, Tensor]) -> str:
    """Layout from the head keys: fc1/fc2 -> "art", 1008-way fc -> "pytorch-fid", else "torchvision"."""
    if "fc1.weight" in state_dict or "fc2.weight" in state_dict:
        return "art"
    fc = state_dict.get("fc.weight")
    if fc is not None and fc.shape[0] == 1008:
        return "pytorch-fid"
    return "torchvision"


def _heads_in(state_dict: Mapping[str, Tensor]) -> dict[str, int]:
    """{head name: classes} for every fc* / AuxLogits* head present in the file."""
    heads: dict[str, int] = {}
    for key, value in state_dict.items():
        top, _, rest = key.partition(".")
        if top.startswith("fc") and rest == "weight":
            heads[top] = int(value.shape[0])
        elif top.startswith("AuxLogits") and rest == "fc.weight":
            heads[top] = int(value.shape[0])
    return heads


def _check_keys(model: nn.Module, state_dict: Mapping[str, Tensor], path: Path) -> None:
    """Raise one line naming the missing / mis-shaped / unexpected keys, if any."""
    want = model.state_dict()
    missing = [k for k in want if k not in state_dict and not k.endswith("num_batches_tracked")]
    shaped = [
        f"{k} {tuple(state_dict[k].shape)} != {tuple(v.shape)}"
        for k, v in want.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    unexpected = [k for k in state_dict if k not in want]
    problems = [
        f"{label} {', '.join(items[:4])}{' ...' if len(items) > 4 else ''}"
        for label, items in (("missing", missing), ("mis-shaped", shaped), ("unexpected", unexpected))
        if items
    ]
    if problems:
        raise InceptionWeightsError(
            f"{path} is not an Inception-v3 state dict in the {model.layout!r} layout: " + "; ".join(problems)
        )


def load_inception(path: str | Path, layout: str = "auto", device: str | torch.device = "cpu") -> InceptionV3:
    """Load an eval-mode :class:`InceptionV3` from a state-dict file, checking every key and shape.

    layout: "auto" (from the head keys, see :func:`detect_layout`) or one of LAYOUTS.
    """
    path = Path(path)
    obj = torch_load_tensors(path, "Inception weights", InceptionWeightsError)
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise InceptionWeightsError(f"{path} is not an Inception-v3 state dict")
    state_dict = {k.removeprefix("module."): v for k, v in obj.items()}
    if layout == "auto":
        layout = detect_layout(state_dict)
    model = InceptionV3(layout, heads=_heads_in(state_dict))
    _check_keys(model, state_dict, path)
    model.load_state_dict(state_dict, strict=False)
    return model.to(device)
