"""Folder-run throughput on the CPU: pairs/s of `mambast stylize` for the paper-size model (random weights) on a
40-pair folder (8 contents x 5 styles from shared/images/dev), at 256 px.

    python benchmarks/throughput.py --rounds 2 --json benchmarks/results/throughput_cpu.json

Variants, each a fresh process (the run's own timer: after the model is loaded, until the last file is written),
in alternating rounds (round 1: every variant, round 2: every variant, ...) so that the noise of a shared
machine hits all of them; the best round of each is reported:
    loop       the pre-batching `stylize_pairs` loop (engine calls one pair at a time, PNG written inline)
    b1         `mambast stylize --batch-size 1 --workers 0` (the runner, one pair per model call)
    b8w1       `--batch-size 8 --workers 1` (a DataLoader process decodes, the writer thread writes)
    2 ranks    `torchrun --nproc_per_node 2 ... --batch-size 1` and `--batch-size 8` (gloo, 1 thread per rank)
Single processes use all cores as torch threads; the two ranks use one thread each (torchrun's default).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def find_shared() -> Path:
    for cand in (os.environ.get("MAMBAST_SHARED"), ROOT.parent / "shared"):
        if cand and (Path(cand) / "images" / "dev").is_dir():
            return Path(cand)
    sys.exit("throughput.py: shared/images/dev not found (set MAMBAST_SHARED)")


def prepare(tmp: Path, n_contents: int, n_styles: int) -> tuple[Path, Path, Path]:
    """Copy the first images of shared/images/dev into a content and a style folder; save a paper-size model."""
    import shutil

    import torch

    import mambast
    from mambast import MambaST, MambaSTConfig

    dev = find_shared() / "images" / "dev"
    for kind, n in (("content", n_contents), ("style", n_styles)):
        (tmp / kind).mkdir()
        for f in sorted((dev / kind).iterdir())[:n]:
            shutil.copy(f, tmp / kind / f.name)
    torch.manual_seed(0)
    ckpt = mambast.save_native(MambaST(MambaSTConfig()), tmp / "paper.safetensors")
    return tmp / "content", tmp / "style", ckpt


def baseline_loop(content: str, style: str, out: str, ckpt: str, size: int) -> None:
    """The folder loop `mambast stylize` ran before batching: one pair per engine call, PNG saved inline."""
    from mambast.images import list_images, to_pil, to_tensor
    from mambast.inference import Controls, Stylizer
    from mambast.io import load

    model = load(ckpt, device="cpu")
    contents, styles = list_images(content), list_images(style)
    start = time.perf_counter()
    engine = Stylizer(model, size=size, style_cache=max(16, len(styles)))
    controls = Controls(seed=0)
    Path(out).mkdir(parents=True, exist_ok=True)
    n = 0
    for c in contents:
        img = engine.prepare_content(c)
        encoded = engine.encode_content(to_tensor(img)[None])
        grid = engine.grid(*img.size)
        for s in styles:
            tokens = engine.style_tokens(s, grid, controls, encoded.image[0])
            to_pil(engine.render(encoded, [tokens], controls)[0]).save(Path(out) / f"{c.stem}_stylized_{s.stem}.png")
            n += 1
    print(f"wrote {n} images to {out} in {time.perf_counter() - start:.1f} s")


def run(cmd: list[str], env: dict) -> tuple[int, float]:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    m = re.search(r"wrote (\d+) images? to .* in ([\d.]+) s", proc.stdout)
    return int(m.group(1)), float(m.group(2))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--contents", type=int, default=8)
    p.add_argument("--styles", type=int, default=5)
    p.add_argument("--only", nargs="*", default=None, help="run only these variants")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each variant is kept")
    p.add_argument("--baseline-loop", nargs=4, metavar=("CONTENT", "STYLE", "OUT", "CKPT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.baseline_loop:
        baseline_loop(*args.baseline_loop, size=args.size)
        return 0

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OMP_NUM_THREADS", None)
    results = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "size": args.size,
               "pairs": args.contents * args.styles, "variants": {}}
    try:
        with open("/proc/cpuinfo") as f:
            results["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        content, style, ckpt = prepare(tmp, args.contents, args.styles)
        common = ["--content", str(content), "--style", str(style), "--checkpoint", str(ckpt), "--size",
                  str(args.size), "--seed", "0", "--device", "cpu", "--quiet"]
        stylize = [sys.executable, "-m", "mambast", "stylize"]
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
                    "-m", "mambast", "stylize"]
        variants = {
            "loop": [sys.executable, __file__, "--size", str(args.size), "--baseline-loop", str(content), str(style),
                     str(tmp / "out-loop"), str(ckpt)],
            "b1": [*stylize, *common, "--output", str(tmp / "out-b1"), "--batch-size", "1", "--workers", "0"],
            "b8w1": [*stylize, *common, "--output", str(tmp / "out-b8"), "--batch-size", "8", "--workers", "1"],
            "2ranks_b1": [*torchrun, *common, "--output", str(tmp / "out-r1"), "--batch-size", "1"],
            "2ranks_b8": [*torchrun, *common, "--output", str(tmp / "out-r8"), "--batch-size", "8"],
        }
        for round_ in range(args.rounds):
            for name, cmd in variants.items():
                if args.only and name not in args.only:
                    continue
                out = Path(cmd[cmd.index("--output") + 1]) if "--output" in cmd else Path(cmd[-2])
                shutil.rmtree(out, ignore_errors=True)
                n, seconds = run(cmd, env)
                row = results["variants"].setdefault(name, {"pairs": n, "rounds_s": []})
                row["rounds_s"].append(seconds)
                row["seconds"] = min(row["rounds_s"])
                row["pairs_per_s"] = round(n / row["seconds"], 3)
                print(f"round {round_ + 1} {name:10s} {n} pairs in {seconds:6.1f} s: {n / seconds:.2f} pairs/s",
                      flush=True)
    base = results["variants"].get("loop", {}).get("pairs_per_s")
    if base:
        results["speedup_vs_loop"] = {k: round(v["pairs_per_s"] / base, 2) for k, v in results["variants"].items()}
        print(json.dumps(results["speedup_vs_loop"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
