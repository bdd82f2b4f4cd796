"""Frozen VGG loss network: relu1_1 .. relu5_1 features for the style-transfer losses and metrics.

Three weight layouts are understood:

    "vgg_normalised"  the AdaIN / StyTr2 / Mamba-ST file `vgg_normalised.pth`: a 1x1 colour conv first, then
                      reflection-padded 3x3 convs, max-pool with ceil_mode; keys "0.weight" ... "51.bias".
                      Input: RGB in [0, 1], no extra normalisation (the 1x1 conv does it).
    "vgg19", "vgg16"  torchvision ImageNet state dicts (keys "features.N.weight", classifier ignored); zero
                      padding; input: RGB in [0, 1] normalised with the ImageNet mean / std.

plus a small native file: a torch file (loaded with ``weights_only=True``) holding
``{"layout": <one of the above>, "input": "imagenet" | "caffe_bgr" | "none", "state_dict": {...}}``,
written by :func:`save_vgg`. "caffe_bgr" feeds the network BGR pixels in 0..255 minus the Caffe mean
[103.939, 116.779, 123.68] (the original Caffe VGG convention).

Every layout is cut after relu5_1: layers beyond it in a file are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import FieldError
from ..fs import atomic_write, ensure_dir
from ..io.state_dict import torch_load_tensors, torch_save

__all__ = [
    "LAYOUTS",
    "INPUTS",
    "TAPS",
    "VGGEncoder",
    "VGGWeightsError",
    "load_vgg",
    "save_vgg",
    "detect_layout",
]

LAYOUTS = ("vgg_normalised", "vgg19", "vgg16")
INPUTS = ("none", "imagenet", "caffe_bgr")
TAPS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)

WHERE_TO_GET = (
    "give its path as vgg: vgg_normalised.pth (the AdaIN / StyTr2 release, e.g. from "
    "github.com/naoto0804/pytorch-AdaIN or github.com/diyiiyiii/StyTR-2) or torchvision's ImageNet "
    "vgg19-dcbb9e9d.pth / vgg16-397923af.pth (download.pytorch.org/models/)"
)


class VGGWeightsError(FieldError):
    """VGG weights missing, unreadable or not matching the requested layout (one-line message naming the field
    `vgg`, which front-ends spell their own way: the CLI's --vgg)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "vgg")


# Channel plan per block up to relu5_1: (number of 3x3 convs in the block, out channels).
_PLANS = {
    "vgg19": ((2, 64), (2, 128), (4, 256), (4, 512), (1, 512)),
    "vgg16": ((2, 64), (2, 128), (3, 256), (3, 512), (1, 512)),
    "vgg_normalised": ((2, 64), (2, 128), (4, 256), (4, 512), (1, 512)),
}


@dataclass(frozen=True)
class _Layout:
    modules: list[nn.Module]
    taps: tuple[int, ...]  # index of the ReLU module of relu{i}_1, i = 1..5
    conv_shapes: dict[int, tuple[int, ...]]  # module index -> conv weight shape
    prefix: str  # state-dict key prefix of the module indices in files ("features." or "")


def _build_layout(layout: str) -> _Layout:
    """The nn.Sequential module list (up to relu5_1) and its tap indices for `layout`."""
    reflect = layout == "vgg_normalised"
    modules: list[nn.Module] = []
    conv_shapes: dict[int, tuple[int, ...]] = {}
    taps: list[int] = []
    in_ch = 3
    if reflect:
        conv_shapes[0] = (3, 3, 1, 1)
        modules.append(nn.Conv2d(3, 3, 1))
    for block, (n_convs, out_ch) in enumerate(_PLANS[layout]):
        if block > 0:
            modules.append(nn.MaxPool2d(2, 2, ceil_mode=reflect))
        for i in range(n_convs):
            if reflect:
                modules.append(nn.ReflectionPad2d(1))
                conv = nn.Conv2d(in_ch, out_ch, 3)
            else:
                conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
            conv_shapes[len(modules)] = (out_ch, in_ch, 3, 3)
            modules.append(conv)
            modules.append(nn.ReLU())
            if i == 0:
                taps.append(len(modules) - 1)
            in_ch = out_ch
    return _Layout(modules, tuple(taps), conv_shapes, "" if reflect else "features.")


class VGGEncoder(nn.Module):
    """Frozen VGG feature extractor cut after relu5_1.

    forward(x: (B, 3, H, W) RGB in [0, 1]) -> [relu1_1 (B,64,H,W), relu2_1 (B,128,H/2,W/2),
    relu3_1 (B,256,H/4,W/4), relu4_1 (B,512,H/8,W/8), relu5_1 (B,512,H/16,W/16)]
    (spatial sizes rounded up for "vgg_normalised", whose pools use ceil_mode, down otherwise).
    """

    def __init__(self, layout: str = "vgg_normalised", input_norm: str | None = None) -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise VGGWeightsError(f"unknown VGG layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
        input_norm = input_norm or ("none" if layout == "vgg_normalised" else "imagenet")
        if input_norm not in INPUTS:
            raise VGGWeightsError(f"unknown VGG input {input_norm!r}; choose one of {', '.join(INPUTS)}")
        spec = _build_layout(layout)
        self.layout = layout
        self.input_norm = input_norm
        self.taps = spec.taps
        self.features = nn.Sequential(*spec.modules)
        mean, scale = _input_affine(input_norm)
        self.register_buffer("in_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("in_scale", torch.tensor(scale).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGEncoder:
        """Always stays in eval mode: the loss network is frozen."""
        return super().train(False)

    def normalize(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> the network's own input convention."""
        if self.input_norm == "none":
            return x
        if self.input_norm == "caffe_bgr":
            x = x.flip(1)
        return (x - self.in_mean) * self.in_scale

    def encode(self, x: Tensor, last: str = "relu5_1") -> list[Tensor]:
        """Features relu1_1 .. `last` (inclusive), running the network only as far as needed."""
        if last not in TAPS:
            raise ValueError(f"unknown VGG tap {last!r}; choose one of {', '.join(TAPS)}")
        depth = TAPS.index(last)
        min_side = 2**depth + 1 if self.layout == "vgg_normalised" else 2**depth
        if min(x.shape[-2:]) < min_side:
            raise ValueError(
                f"VGG input {tuple(x.shape[-2:])} too small to reach {last}: "
                f"needs at least {min_side} px a side"
            )
        stop = self.taps[depth]
        h = self.normalize(x)
        feats = []
        for i, module in enumerate(self.features):
            h = module(h)
            if i in self.taps:
                feats.append(h)
            if i == stop:
                break
        return feats

    def relu3_1(self, x: Tensor) -> Tensor:
        """relu3_1 features (B, 256, H/4, W/4) alone, stopping the network there (CFSD)."""
        return self.encode(x, "relu3_1")[-1]

    def forward(self, x: Tensor) -> list[Tensor]:
        """(B, 3, H, W) RGB in [0, 1] -> [relu1_1, relu2_1, relu3_1, relu4_1, relu5_1]."""
        return self.encode(x, "relu5_1")


def _input_affine(input_norm: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, scale) with normalised = (x - mean) * scale, x in [0, 1] (BGR-flipped first for caffe_bgr)."""
    if input_norm == "imagenet":
        return IMAGENET_MEAN, tuple(1.0 / s for s in IMAGENET_STD)
    if input_norm == "caffe_bgr":
        return tuple(m / 255.0 for m in CAFFE_BGR_MEAN), (255.0, 255.0, 255.0)
    return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


def detect_layout(state_dict: Mapping[str, Tensor]) -> str:
    """Guess the layout of a raw VGG state dict from its key names and shapes."""
    keys = set(_strip_prefix(state_dict, "module."))
    w0 = state_dict.get("0.weight", state_dict.get("module.0.weight"))
    if w0 is not None and tuple(w0.shape) == (3, 3, 1, 1):
        return "vgg_normalised"
    if "features.16.weight" in keys:
        return "vgg19"
    if "features.17.weight" in keys:
        return "vgg16"
    sample = ", ".join(sorted(keys)[:4]) or "no keys"
    raise VGGWeightsError(
        f"cannot tell the VGG layout of these weights ({sample}, ...); "
        "pass layout= vgg_normalised, vgg19 or vgg16"
    )


def _strip_prefix(state_dict: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _select_weights(state_dict: Mapping[str, Tensor], layout: str) -> dict[str, Tensor]:
    """Map a file's keys onto VGGEncoder.features keys, checking names and shapes (one-line error)."""
    spec = _build_layout(layout)
    sd = _strip_prefix(state_dict, "module.")
    if spec.prefix and not any(k.startswith(spec.prefix) for k in sd):
        sd = {spec.prefix + k: v for k, v in sd.items()}  # bare "N.weight" keys of a features-only dict
    out: dict[str, Tensor] = {}
    missing, shaped = [], []
    for idx, shape in spec.conv_shapes.items():
        for name, want in (("weight", shape), ("bias", shape[:1])):
            key = f"{spec.prefix}{idx}.{name}"
            if key not in sd:
                missing.append(key)
            elif tuple(sd[key].shape) != want:
                shaped.append(f"{key} {tuple(sd[key].shape)} != {want}")
            else:
                out[f"{idx}.{name}"] = sd[key].detach().float()
    expected = {f"{spec.prefix}{idx}.{name}" for idx in spec.conv_shapes for name in ("weight", "bias")}
    unexpected = [k for k in sd if k not in expected and not _known_extra(k, spec.prefix, layout)]
    problems = []
    if missing:
        problems.append(f"missing {_short(missing)}")
    if shaped:
        problems.append(f"mis-shaped {_short(shaped)}")
    if unexpected:
        problems.append(f"unexpected {_short(unexpected)}")
    if problems:
        raise VGGWeightsError(f"VGG weights do not match layout {layout!r}: " + "; ".join(problems))
    return out


def _known_extra(key: str, prefix: str, layout: str) -> bool:
    """Keys a full file legitimately holds beyond relu5_1 (deeper convs, classifier)."""
    if layout != "vgg_normalised" and key.startswith("classifier."):
        return True
    rest = key[len(prefix):] if key.startswith(prefix) else None
    if rest is None:
        return False
    head, _, name = rest.partition(".")
    cut = len(_build_layout(layout).modules)
    return head.isdigit() and int(head) >= cut and name in ("weight", "bias")


def _short(items: list[str], n: int = 6) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def load_vgg(
    path: str | Path | None,
    layout: str = "auto",
    allow_random: bool = False,
    input_norm: str | None = None,
    device: str | torch.device = "cpu",
) -> VGGEncoder:
    """Load a frozen eval-mode VGG loss network returning [relu1_1, ..., relu5_1] for RGB inputs in [0, 1].

    path: a vgg_normalised.pth, a torchvision vgg19/vgg16 state dict, or a native file from :func:`save_vgg`.
    layout: "auto" (detect from the keys) or one of LAYOUTS. input_norm overrides the layout's default input
    convention ("none" for vgg_normalised, "imagenet" for vgg19/vgg16, or what a native file says).
    allow_random: with path None, return randomly initialised weights (tests only; never for real training).
    """
    if layout != "auto" and layout not in LAYOUTS:
        raise VGGWeightsError(f"unknown VGG layout {layout!r}; choose auto or one of {', '.join(LAYOUTS)}")
    if path is None:
        if not allow_random:
            raise VGGWeightsError(f"the training losses need VGG weights; {WHERE_TO_GET}")
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(0)  # deterministic random VGG so tests agree across runs
        vgg = VGGEncoder("vgg_normalised" if layout == "auto" else layout, input_norm)
        torch.random.set_rng_state(gen_state)
        return vgg.to(device)
    obj = torch_load_tensors(path, "VGG weights", VGGWeightsError, f"; {WHERE_TO_GET}")
    if not isinstance(obj, Mapping):
        raise VGGWeightsError(f"{path} is not a VGG state dict (found {type(obj).__name__})")
    if "state_dict" in obj and "layout" in obj:
        file_layout, file_input = str(obj["layout"]), str(obj.get("input", "")) or None
        if layout not in ("auto", file_layout):
            raise VGGWeightsError(f"{path} holds a {file_layout!r} VGG, not {layout!r}")
        layout, input_norm = file_layout, input_norm or file_input
        state_dict = obj["state_dict"]
    else:
        state_dict = obj
    if not all(isinstance(v, Tensor) for v in state_dict.values()):
        raise VGGWeightsError(f"{path} is not a VGG state dict (non-tensor values)")
    if layout == "auto":
        layout = detect_layout(state_dict)
    vgg = VGGEncoder(layout, input_norm)
    vgg.features.load_state_dict(_select_weights(state_dict, layout))
    return vgg.to(device)


def save_vgg(path: str | Path, state_dict: Mapping[str, Tensor], layout: str, input_norm: str) -> None:
    """Write the native VGG file: {"layout", "input", "state_dict"} (checked against `layout` first).

    state_dict uses the layout's own key names ("N.weight" for vgg_normalised, "features.N.weight" for
    vgg19/vgg16); only the layers up to relu5_1 are stored.
    """
    if layout not in LAYOUTS:
        raise VGGWeightsError(f"unknown VGG layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if input_norm not in INPUTS:
        raise VGGWeightsError(f"unknown VGG input {input_norm!r}; choose one of {', '.join(INPUTS)}")
    prefix = _build_layout(layout).prefix
    selected = {prefix + k: v.contiguous() for k, v in _select_weights(state_dict, layout).items()}

    doc = {"layout": layout, "input": input_norm, "state_dict": selected}
    path = Path(path).expanduser()
    ensure_dir(path.parent)
    atomic_write(path, lambda f: torch_save(doc, f))  # WriteError naming the path on a full disk
