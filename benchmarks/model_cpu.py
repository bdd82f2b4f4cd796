"""CPU inference benchmark of the paper-size Mamba-ST (issue: core), each point in its own process.

    python benchmarks/model_cpu.py [--sizes 256 512] [--repeats 3] [--json OUT]

For each size: seconds per image (the best of --repeats after one warm-up, over --rounds alternating processes:
the least disturbed run on a shared machine) and peak RSS of the whole model,
and of the same model with its selective scan replaced by a no-op (y = u), which isolates the scan's cost.
Reported ratio = full / no-scan (target <= 1.3 on a 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def child(size: int, mode: str, repeats: int, backend: str, weights: str | None = None) -> dict:
    import torch

    from mambast import MambaST
    from mambast.model.ss2d import SS2DBase

    torch.manual_seed(0)
    if mode == "weights":  # another model (e.g. the bundled default) timed in the same run
        from mambast.io import load

        model = load(weights).eval()
        mode = "full"
    else:
        model = MambaST().eval()
    if mode == "noscan":
        SS2DBase.scan = lambda self, u, *args, **kwargs: u  # the model with its scan removed (y = u)
    else:
        model.set_scan_backend(backend)
    content, style = torch.rand(1, 3, size, size), torch.rand(1, 3, size, size)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            model(content, style, seed=0)
            if i:  # the first call warms up (and compiles the native kernel once)
                times.append(time.perf_counter() - t0)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": min(times), "median": statistics.median(times), "peak_mb": round(peak_mb, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="alternating full / no-scan processes per size")
    ap.add_argument("--backend", default="auto", help="scan backend of the full model")
    ap.add_argument("--weights", default=None, help="also time this model file (full scan) against the paper model")
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", nargs=2, metavar=("SIZE", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1], args.repeats, args.backend, args.weights)))
        return
    import torch

    results = {"threads": torch.get_num_threads(), "backend": args.backend}
    print(f"{'size':>5} {'full s':>8} {'no-scan s':>10} {'ratio':>6} {'full peak MB':>13}")
    for size in args.sizes:
        row = {}
        for _ in range(args.rounds):
            for mode in ("full", "noscan", *(("weights",) if args.weights else ())):
                cmd = [sys.executable, __file__, "--child", str(size), mode, "--repeats", str(args.repeats),
                       "--backend", args.backend, *(("--weights", args.weights) if args.weights else ())]
                res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
                if mode not in row or res["seconds"] < row[mode]["seconds"]:
                    row[mode] = res
        row["ratio"] = row["full"]["seconds"] / row["noscan"]["seconds"]
        results[str(size)] = row
        print(f"{size:>5} {row['full']['seconds']:>8.3f} {row['noscan']['seconds']:>10.3f} {row['ratio']:>6.2f} "
              f"{row['full']['peak_mb']:>13.0f}")
        if args.weights:
            row["weights_over_paper"] = row["weights"]["seconds"] / row["full"]["seconds"]
            print(f"      {args.weights}: {row['weights']['seconds']:.3f} s, "
                  f"{row['weights_over_paper']:.2f} x the paper model")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
