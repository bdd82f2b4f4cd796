"""Benchmark of the native CPU selective scan against the pure-torch fallback (the model's call shape).

    python benchmarks/scan_cpu.py --json bench_scan_cpu.json

B = 1, D = 4096, N = 16, B/C grouped (1, 4, 16, L), softplus + delta_bias + D skip, float32.
Times: forward without grad ("fwd"), forward that saves checkpoints for a backward ("fwd+ckpt"), and the
backward alone ("bwd"); median of --repeats runs (the torch fallback: L = 1024 only, one run). The "cpu"
columns are the process CPU time of the same calls (all threads summed): on a machine shared with other
work they show the kernel's own cost when the wall times are inflated by waiting for a core.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from mambast.ops.scan_cpu import native_available, selective_scan_cpu, selective_scan_cpu_lowrank, unavailable_reason
from mambast.ops.scan_torch import selective_scan_torch


def make_inputs(length: int, channels: int = 4096, state: int = 16, groups: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        u=torch.randn(1, channels, length, generator=g),
        delta=torch.randn(1, channels, length, generator=g) * 0.5 - 1.0,
        A=-torch.exp(torch.randn(channels, state, generator=g) * 0.5),
        B=torch.randn(1, groups, state, length, generator=g),
        C=torch.randn(1, groups, state, length, generator=g),
        D=torch.randn(channels, generator=g),
        delta_bias=torch.randn(channels, generator=g) * 0.3,
    )


def time_backend(fn, inputs: dict, repeats: int) -> dict:
    """Median wall times in ms (forward without grad, forward with grad, backward), and the median CPU time
    of the same calls summed over all threads ("cpu_" keys; robust on a machine shared with other work)."""
    wall: dict[str, list[float]] = {"fwd": [], "fwd+ckpt": [], "bwd": []}
    cpu: dict[str, list[float]] = {"fwd": [], "fwd+ckpt": [], "bwd": []}

    def timed(name, call, *args, **kwargs):
        w, c = time.perf_counter(), time.process_time()
        result = call(*args, **kwargs)
        wall[name].append(time.perf_counter() - w)
        cpu[name].append(time.process_time() - c)
        return result

    for _ in range(repeats):
        with torch.no_grad():
            timed("fwd", fn, **inputs, delta_softplus=True)
        leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
        out = timed("fwd+ckpt", fn, **leaves, delta_softplus=True)
        timed("bwd", out.backward, torch.ones_like(out))
    res = {k: 1e3 * statistics.median(v) for k, v in wall.items()}
    res.update({"best_" + k: 1e3 * min(v) for k, v in wall.items()})
    res.update({"cpu_" + k: 1e3 * statistics.median(v) for k, v in cpu.items()})
    return res


def time_lowrank(length: int, repeats: int, rank: int = 32) -> dict:
    """Forward (no grad) of the model's inference call: delta = dt_weight @ dt_low (rank R) inside the kernel."""
    inputs = make_inputs(length)
    g = torch.Generator().manual_seed(1)
    inputs.pop("delta")
    inputs["dt_low"] = torch.randn(1, 4, rank, length, generator=g)
    inputs["dt_weight"] = torch.randn(4096, rank, generator=g) * 0.3 / rank ** 0.5
    times, cpu = [], []
    with torch.no_grad():
        selective_scan_cpu_lowrank(**inputs, delta_softplus=True)  # warm-up
        for _ in range(repeats):
            w, c = time.perf_counter(), time.process_time()
            selective_scan_cpu_lowrank(**inputs, delta_softplus=True)
            times.append(time.perf_counter() - w)
            cpu.append(time.process_time() - c)
    return {"fwd": 1e3 * statistics.median(times), "best_fwd": 1e3 * min(times),
            "cpu_fwd": 1e3 * statistics.median(cpu)}


def model_share(size: int = 256, repeats: int = 3) -> dict:
    """CPU time of a paper-size MambaST forward (random weights, inference) and of its 9 native scan calls."""
    from mambast import MambaST, MambaSTConfig
    from mambast.ops import scan_cpu

    model = MambaST(MambaSTConfig()).eval()
    original, spent = scan_cpu.selective_scan_cpu_lowrank, [0.0, 0]

    def timed(*args, **kwargs):
        t0 = time.process_time()
        result = original(*args, **kwargs)
        spent[0] += time.process_time() - t0
        spent[1] += 1
        return result

    g = torch.Generator().manual_seed(0)
    content, style = torch.rand(1, 3, size, size, generator=g), torch.rand(1, 3, size, size, generator=g)
    scan_cpu.selective_scan_cpu_lowrank = timed  # what the model calls at inference on the CPU
    try:
        with torch.inference_mode():
            model(content, style, shuffle=False)  # warm-up
            runs = []
            for _ in range(repeats):
                spent[:] = [0.0, 0]
                t0 = time.process_time()
                model(content, style, shuffle=False)
                runs.append((time.process_time() - t0, spent[0], spent[1]))
    finally:
        scan_cpu.selective_scan_cpu_lowrank = original
    total, scan, calls = sorted(runs)[len(runs) // 2]
    return {"size": size, "model_cpu_ms": 1e3 * total, "scan_cpu_ms": 1e3 * scan, "scan_calls": calls,
            "model_over_model_without_scan": total / (total - scan)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-torch", action="store_true", help="skip the (slow) pure-torch fallback")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--model-share", action="store_true",
                        help="also time a paper-size MambaST forward at 256 px and the share of its scans")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not native_available():
        raise SystemExit(f"mambast: native CPU selective scan unavailable: {unavailable_reason()}")
    rows, lowrank = [], []
    for length in args.lengths:
        inputs = make_inputs(length)
        with torch.no_grad():  # warm-up (and first-use compilation)
            selective_scan_cpu(**inputs, delta_softplus=True)
        rows.append({"backend": "native", "L": length, **time_backend(selective_scan_cpu, inputs, args.repeats)})
        lowrank.append({"L": length, **time_lowrank(length, args.repeats)})
        if length == 1024 and not args.no_torch:
            with torch.no_grad():  # warm-up
                selective_scan_torch(**make_inputs(64), delta_softplus=True)
            rows.append({"backend": "torch", "L": length, **time_backend(selective_scan_torch, inputs, 1)})
    print(f"threads={torch.get_num_threads()}  B=1 D=4096 N=16 G=4 float32, ms: wall median | wall best | "
          "CPU time median (all threads)")
    print(f"{'backend':8} {'L':>5} {'fwd':>8} {'fwd+ckpt':>8} {'bwd':>8} | {'fwd':>8} {'bwd':>8} | "
          f"{'fwd':>8} {'bwd':>8}")
    for r in rows:
        print(f"{r['backend']:8} {r['L']:>5} {r['fwd']:>8.1f} {r['fwd+ckpt']:>8.1f} {r['bwd']:>8.1f} | "
              f"{r['best_fwd']:>8.1f} {r['best_bwd']:>8.1f} | {r['cpu_fwd']:>8.1f} {r['cpu_bwd']:>8.1f}")
    native = {r["L"]: r for r in rows if r["backend"] == "native"}
    for r in rows:
        if r["backend"] == "torch":
            n = native[r["L"]]
            print(f"speed-up native vs torch at L={r['L']}: fwd {r['fwd'] / n['fwd']:.0f}x, "
                  f"bwd {r['bwd'] / n['bwd']:.0f}x")
    for r in lowrank:
        print(f"native, low-rank delta (R=32, the model's inference call), L={r['L']}: fwd median "
              f"{r['fwd']:.1f} ms, best {r['best_fwd']:.1f} ms, CPU {r['cpu_fwd']:.1f} ms")
    share = model_share() if args.model_share else None
    if share:
        print(f"MambaST forward at {share['size']} px: {share['model_cpu_ms']:.0f} ms CPU, of which "
              f"{share['scan_calls']} scans {share['scan_cpu_ms']:.0f} ms: model / model without scan = "
              f"{share['model_over_model_without_scan']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": torch.get_num_threads(), "cpu": _cpu_name(), "rows": rows, "lowrank": lowrank,
                       "model": share}, f,
                      indent=1)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return ""


if __name__ == "__main__":
    main()
