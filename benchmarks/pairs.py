"""Folder-run time of `stylize_pairs` (N contents x M styles), or of the evaluation protocol's run
(`--eval`: `mambast.metrics.run_protocol`, paper mode, no metric weights: stylize every pair, pair, report),
for before/after comparisons.

    git worktree add /tmp/mambast_old <commit>         # the code to compare against
    python benchmarks/pairs.py --src /tmp/mambast_old --src . --contents 10 --styles 20 --size 256 --rounds 2
    python benchmarks/pairs.py --src /tmp/mambast_old --src . --contents 3 --styles 3 --size 256 --rounds 5 --eval

Each (src, round) runs in a fresh subprocess importing `mambast` from that checkout; rounds alternate between
sources so machine noise hits both; the best round per source is reported, with the process CPU seconds of
that run (less sensitive to other processes than the wall time on a shared machine). Inputs: the
development images.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT.parent / "shared" / "images" / "dev"

CHILD = r"""
import sys, time, json, tempfile
sys.path.insert(0, {src!r})
import torch
torch.set_num_threads({threads})
import mambast
from pathlib import Path
try:
    from mambast.inference import stylize_pairs
except ImportError:
    from mambast.stylize import stylize_pairs
contents = sorted(Path({content!r}).glob("*"))[:{n}]
styles = sorted(Path({style!r}).glob("*"))[:{m}]
model = mambast.load({checkpoint!r})
if {paper!r}:
    model = mambast.MambaST(mambast.MambaSTConfig.preset("paper")).eval()
out = tempfile.mkdtemp()
t, cpu = time.perf_counter(), time.process_time()
if {eval!r}:  # the protocol's run: both the old keyword API and the options one take these keywords
    import shutil
    from mambast.metrics import EvalWeights, run_protocol
    for name, files in (("content", contents), ("style", styles)):
        Path(out, name).mkdir()
        for f in files:
            shutil.copy(f, Path(out, name, f.name))
    t, cpu = time.perf_counter(), time.process_time()
    report = run_protocol({checkpoint!r} or mambast.io.DEFAULT_WEIGHTS, Path(out, "content"), Path(out, "style"),
                          Path(out, "eval"), size={size}, progress=False, weights=EvalWeights(folder=Path(out, "none")))
    written = report["stylize"]["written"]
else:
    written = len(stylize_pairs(model, contents, styles, out, size={size}, seed=0, progress=False).written)
print(json.dumps({{"seconds": time.perf_counter() - t, "cpu": time.process_time() - cpu, "written": written,
                  "file": mambast.__file__}}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", action="append", required=True, help="checkout to import mambast from (repeat)")
    p.add_argument("--contents", type=int, default=10)
    p.add_argument("--styles", type=int, default=20)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--paper", action="store_true", help="paper-size model with random weights (default: bundled)")
    p.add_argument("--eval", action="store_true", help="time `run_protocol` (eval's stylize step and report; "
                   "bundled weights) instead of `stylize_pairs`")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    if args.eval and args.paper:
        p.error("--paper applies to stylize_pairs; --eval stylizes with the bundled weights")
    best: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for r in range(args.rounds):
        for src in args.src:
            code = CHILD.format(src=str(Path(src).resolve()), threads=args.threads, content=str(DEV / "content"),
                                style=str(DEV / "style"), n=args.contents, m=args.styles, checkpoint=None,
                                paper=args.paper, size=args.size, eval=args.eval)
            res = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                            check=True, cwd=tempfile.gettempdir()).stdout.strip().splitlines()[-1])
            print(f"round {r} {src}: {res['seconds']:.1f} s ({res['cpu']:.1f} s CPU) for {res['written']} pairs "
                  f"({res['file']})")
            if res["seconds"] < best.get(src, float("inf")):
                best[src], cpu[src] = res["seconds"], res["cpu"]
    base = best[args.src[0]]
    for src, s in best.items():
        print(f"{src}: best {s:.1f} s ({cpu[src]:.1f} s CPU), {args.contents * args.styles / s:.2f} pairs/s, "
              f"{s / base:.2f}x of first")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "best_s": best,
                                         "cpu_s_of_best": cpu}, indent=1))


if __name__ == "__main__":
    main()
