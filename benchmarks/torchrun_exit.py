"""How many complete torchrun runs fail at process exit (issue 25, kind 7), for one or more checkouts.

    git worktree add /tmp/mambast_old <commit>        # the code to compare against
    python benchmarks/torchrun_exit.py --src /tmp/mambast_old --src . --runs 40 [--command train] [--nproc 2]

Each round runs the same small job once per source, alternating, each a fresh `torchrun --nproc_per_node K
-m mambast ...` with PYTHONPATH at that source (OMP_NUM_THREADS=1, CPU, gloo): `stylize-dataset` (6 contents
x 2 styles, tiny model, --workers 1 --batch-size 2) or `train` (tiny preset, 2 steps). A run fails when
torchrun exits non-zero; its stderr says whether a rank aborted ("terminate called", SIGABRT). Also counted:
the runs whose ranks still had process-group threads (gloo) alive when the command returned (the precursor
of the abort; measured with a small runner script instead of `-m mambast`, every `--threads-every` round).
Results go to benchmarks/results/torchrun_exit.json (or --out).
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

SETUP = r"""
import sys, numpy as np, torch
from pathlib import Path
from PIL import Image
import mambast
root = Path(sys.argv[1])
rng = np.random.default_rng(0)
for i in range(6):
    p = root / "content" / f"class{i % 2}" / f"img{i}.png"
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (16, 16 + 8 * (i % 2), 3), np.uint8)).save(p)
for i in range(4):
    p = root / "style" / f"art{i}.png"
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), np.uint8)).save(p)
torch.manual_seed(0)
model = mambast.MambaST(mambast.MambaSTConfig.preset("tiny"))
mambast.save_native(model, root / "tiny.safetensors")
"""

# what a rank looks like when the command has returned: its threads (gloo's are named gloo_* / pt_gloo_*)
RUNNER = r"""
import os, sys
from mambast.cli import main
code = main(sys.argv[1:])
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
print("THREADS", int("gloo" in " ".join(names)), flush=True)
try:
    from mambast.torchrun import exit_process
except ImportError:  # a checkout from before it
    sys.exit(code)
exit_process(code)
"""


def _command(kind: str, data: Path, out: Path) -> list[str]:
    if kind == "train":
        return ["train", "--content-dir", str(data / "content" / "class0"), "--style-dir", str(data / "style"),
                "--allow-random-vgg", "--preset", "tiny", "--size", "32", "--batch-size", "1", "--max-iter", "2",
                "--log-every", "1", "--sample-every", "100", "--out", str(out), "--no-progress", "--seed", "4"]
    return ["stylize-dataset", "--content", str(data / "content"), "--style", str(data / "style"), "--output",
            str(out), "--checkpoint", str(data / "tiny.safetensors"), "--styles-per-content", "2", "--size", "0",
            "--device", "cpu", "--quiet", "--workers", "1", "--batch-size", "2"]


def _run(src: str, args, data: Path, work: Path, runner: Path | None) -> dict:
    out = Path(tempfile.mkdtemp(dir=work))
    target = [str(runner)] if runner else ["-m", "mambast"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.nproc),
           *target, *_command(args.command, data, out / "out")]
    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve()), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True, timeout=900)
    return {"rc": proc.returncode, "abort": "terminate called" in proc.stderr or "SIGABRT" in proc.stderr,
            "threads_left": proc.stdout.count("THREADS 1") if runner else None,
            "seconds": time.perf_counter() - start,
            "stderr_tail": proc.stderr[-600:] if proc.returncode else ""}


def _label(src: str) -> str:
    """A source as its commit (plus "+changes" when its work tree differs), not a machine path."""
    git = ["git", "-C", src]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True).stdout.strip()
    return f"{commit or src}{'+changes' if dirty else ''}"


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", action="append", help="checkout to run (repeat to compare; default: this one)")
    p.add_argument("--runs", type=int, default=20, help="rounds (each runs every source once)")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--command", choices=("stylize-dataset", "train"), default="stylize-dataset")
    p.add_argument("--threads-every", type=int, default=5, help="every Nth round uses the thread-counting runner")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "torchrun_exit.json"))
    args = p.parse_args()
    srcs = args.src or ["."]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data"
        subprocess.run([sys.executable, "-c", SETUP, str(data)], check=True, env={**os.environ,
                                                                                  "PYTHONPATH": str(ROOT)})
        runner = work / "runner.py"
        runner.write_text(RUNNER)
        results: dict[str, list[dict]] = {s: [] for s in srcs}
        for i in range(args.runs):
            use_runner = args.threads_every > 0 and i % args.threads_every == 0
            for src in srcs:
                r = _run(src, args, data, work, runner if use_runner else None)
                results[src].append(r)
                left = "" if r["threads_left"] is None else f", ranks with gloo threads left: {r['threads_left']}"
                print(f"round {i + 1}/{args.runs} {src}: rc {r['rc']}{' (abort)' if r['abort'] else ''}{left}"
                      f" {r['seconds']:.0f} s", flush=True)
    summary = {}
    for src, rs in results.items():
        src = _label(src)
        counted = [r for r in rs if r["threads_left"] is not None]
        summary[src] = {"runs": len(rs), "failed": sum(r["rc"] != 0 for r in rs),
                        "aborted": sum(r["abort"] for r in rs),
                        "runner_runs": len(counted),
                        "runs_with_threads_left": sum(r["threads_left"] > 0 for r in counted),
                        "median_seconds": sorted(r["seconds"] for r in rs)[len(rs) // 2],
                        "failures": [r["stderr_tail"] for r in rs if r["rc"]][:5]}
    argv = [_label(a) if a in srcs else a for a in sys.argv[1:]]  # commits, not machine paths
    record = {"command": " ".join(["python", "benchmarks/torchrun_exit.py", *argv]),
              "job": args.command, "nproc": args.nproc, "cpu": _cpu(), "cores": os.cpu_count(),
              "load_average_at_end": os.getloadavg(), "python": platform.python_version(),
              "torch": subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                                      capture_output=True, text=True).stdout.strip(),
              "results": summary}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({s: {k: v for k, v in r.items() if k != "failures"} for s, r in summary.items()}, indent=1))


if __name__ == "__main__":
    main()
