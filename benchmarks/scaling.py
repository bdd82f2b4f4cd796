"""Inference time and peak memory vs image size: Mamba-ST (paper size) against an attention baseline.

    python benchmarks/scaling.py [--sizes 256 512 768 1024] [--json OUT.json] [--plot OUT.png] [--device cpu]

Models (random weights; cost does not depend on the values):
    mambast         MambaST(MambaSTConfig.preset("paper")): d 512, 3 + 3 + 3 blocks, selective scan "auto"
    attention       StyTr2's layout (mambast.baselines.attention), d 512, 8 heads, 3 + 3 encoder layers,
                    3 decoder layers, FFN 2048, the L x L attention matrix materialised (as StyTr2 ships it)
    attention_sdpa  the same with torch's fused scaled_dot_product_attention

Every (model, size) point runs in its own subprocess: build the model, one warm-up pass (unless --no-warmup),
then --repeats timed passes (content and style both size x size, batch 1, torch.no_grad). seconds = the
fastest timed pass; peak_mb = the child's peak RSS (resource.getrusage) on CPU,
torch.cuda.max_memory_allocated on CUDA.
A point is not run (recorded with "stopped": why) when its estimated attention-matrix memory exceeds --max-mb
(16 GiB, or 75% of the available memory if less), when a smaller size of the same model already failed, or
when it ran past --timeout.

JSON: {"mambast": {"256": {"seconds": s, "peak_mb": m}, ...}, "attention": {...}, "attention_sdpa": {...},
"meta": {...}}; the plot (matplotlib, optional) is log-log, seconds and peak memory vs image side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

MODELS = ("mambast", "attention", "attention_sdpa")


def build(model: str):
    """The model named `model` in eval mode (random weights)."""
    import torch

    torch.manual_seed(0)
    if model == "mambast":
        from mambast.config import MambaSTConfig
        from mambast.model import MambaST

        return MambaST(MambaSTConfig.preset("paper")).eval()
    from mambast.baselines.attention import AttentionST, AttentionSTConfig

    return AttentionST(AttentionSTConfig(attention="sdpa" if model == "attention_sdpa" else "plain")).eval()


def worker(model: str, size: int, device: str, repeats: int, warmup: bool, threads: int) -> dict:
    """Run one point in this process -> {"seconds", "peak_mb", "rss_model_mb"}."""
    import resource

    import torch

    torch.set_num_threads(threads)
    net = build(model).to(device)
    rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    x = torch.rand(1, 3, size, size, device=device)
    y = torch.rand(1, 3, size, size, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    kw = {"seed": 0} if model == "mambast" else {}
    times = []
    with torch.no_grad():
        if warmup:
            net(x, y, **kw)
            sync()
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        for _ in range(repeats):
            start = time.perf_counter()
            net(x, y, **kw)
            sync()
            times.append(time.perf_counter() - start)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": round(min(times), 4), "peak_mb": round(peak, 1), "rss_model_mb": round(rss_model, 1)}


def attention_matrix_mb(model: str, size: int) -> float:
    """Estimated peak of the plain attention's L x L tensors: scores, softmax, one temporary (fp32)."""
    if model != "attention":
        return 0.0
    tokens = (size // 8) ** 2
    return 3 * 8 * tokens * tokens * 4 / 2**20


def default_max_mb() -> float:
    """16 GiB, or 75% of the memory available now if that is less (never push a shared machine into OOM)."""
    try:
        with open("/proc/meminfo") as fh:
            avail = next(int(line.split()[1]) for line in fh if line.startswith("MemAvailable")) / 1024
    except (OSError, StopIteration):
        return 16384.0
    return min(16384.0, 0.75 * avail)


def run_point(model: str, size: int, args: argparse.Namespace) -> dict:
    """Run one point in a fresh subprocess; {"seconds", "peak_mb", ...} or {"stopped": why}."""
    cmd = [sys.executable, __file__, "--_worker", model, str(size), "--device", args.device,
           "--repeats", str(args.repeats), "--threads", str(args.threads)]  # fmt: skip
    cmd += ["--no-warmup"] if args.no_warmup else []
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"seconds": None, "peak_mb": None, "stopped": f"ran past --timeout {args.timeout} s"}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["killed (out of memory?)"])[-1][:200]
        return {"seconds": None, "peak_mb": None, "stopped": f"failed (exit {proc.returncode}): {tail}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def plot(results: dict, path: Path) -> bool:
    """Log-log plot of seconds and peak MB vs size; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for model in MODELS:
        pts = [(int(s), r) for s, r in results.get(model, {}).items() if r.get("seconds") is not None]
        if not pts:
            continue
        xs = [s for s, _ in pts]
        stopped = [s for s, r in results[model].items() if r.get("seconds") is None]
        label = model + (f" (stopped at {', '.join(stopped)} px)" if stopped else "")
        axes[0].plot(xs, [r["seconds"] for _, r in pts], "o-", label=label)
        axes[1].plot(xs, [r["peak_mb"] for _, r in pts], "o-", label=label)
    for ax, label in zip(axes, ("seconds per image", "peak memory (MB)"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("image side (px)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    meta = results["meta"]
    fig.suptitle(f"Mamba-ST vs attention (StyTr2 layout), {meta['device']}, batch 1")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 768, 1024])
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--plot", type=Path, help="write a log-log PNG here (needs matplotlib)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=1, help="timed passes per point (fastest reported)")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up pass")
    p.add_argument("--threads", type=int, default=min(16, os.cpu_count() or 1), help="CPU threads")
    p.add_argument("--max-mb", type=float, default=default_max_mb(), help="attention L x L memory cap (MB)")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per point before it is stopped")
    p.add_argument("--_worker", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._worker:
        print(json.dumps(worker(args._worker[0], int(args._worker[1]), args.device, args.repeats,
                                not args.no_warmup, args.threads)))  # fmt: skip
        return 0
    import torch

    cuda = args.device.startswith("cuda")
    device_name = torch.cuda.get_device_name() if cuda else f"{platform.machine()}, {os.cpu_count()} cores"
    results: dict = {m: {} for m in args.models}
    results["meta"] = {"device": f"{args.device} ({device_name})", "threads": args.threads,
                       "torch": torch.__version__, "repeats": args.repeats, "warmup": not args.no_warmup,
                       "batch": 1, "peak": "CUDA max_memory_allocated" if cuda else "process peak RSS",
                       "max_mb": args.max_mb, "timeout_s": args.timeout}  # fmt: skip
    for model in args.models:
        failed = None
        for size in sorted(args.sizes):
            est = attention_matrix_mb(model, size)
            if failed:
                res = {"seconds": None, "peak_mb": None, "stopped": f"not run: {failed}"}
            elif est > args.max_mb:
                why = f"not run: L x L attention needs ~{est / 1024:.1f} GiB > --max-mb {args.max_mb:.0f}"
                res = {"seconds": None, "peak_mb": None, "stopped": why}
            else:
                res = run_point(model, size, args)
            if res.get("seconds") is None and not failed:
                failed = f"{size} px already stopped"
            results[model][str(size)] = res
            print(f"{model:15s} {size:5d}  " + (f"{res['seconds']:.3f} s  {res['peak_mb']:.0f} MB"
                  if res.get("seconds") is not None else res["stopped"]), flush=True)  # fmt: skip
            if args.json:
                args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.plot and not plot(results, args.plot):
        print("matplotlib not installed: no plot (pip install matplotlib)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
