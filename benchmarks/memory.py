"""Full-resolution photos: peak memory and time of the paper-size model, blocked vs all-at-once (docs/memory.md).

    python benchmarks/memory.py                      # 1, 4, 12 MP; cli and blocked everywhere, all-at-once to 4 MP
    python benchmarks/memory.py --sizes 12 --modes cli

Each case runs in a fresh subprocess (so ru_maxrss is that case's peak): the paper model (random official init,
float32, CPU), a 4:3 content photo and a 512 px style as JPEG files, stylized at the photo's full size.
"cli" is the command users run, `mambast stylize --checkpoint DIR --size 0` (`mambast.cli.main` in the case's
process; the model saved beforehand in the published layout, and loaded by the command); "blocked" is the
engine's one-shot call (`Stylizer(size=0).stylize`) at the default memory budget (`model.set_memory_budget()`),
"unblocked" the same with `set_memory_budget(None)`. Reported: peak RSS of the process (MB, includes the Python
runtime, the model and the image buffers), seconds for the stylize call or command (wall and CPU time of the
process) and both per megapixel; the CPU's model name and its AVX-512 / AMX flags (oneDNN and MKL pick their
kernels by them). Results go to benchmarks/results/memory.json and the table to stdout.

`--proxy-of 12` runs the smaller photos with the budget scaled by their share of the 12-MP photo's tokens
(1 MP: 0.083 x 768 MiB), which gives the 12-MP block plan (32-channel blocks, features recomputed) and decoder
tiles of the same share of the map: every tensor the photo sizes is then 1/12 of the 12-MP one, so
(peak - fixed) scales by 12 (fixed: the process on a 64 x 48 photo). A check for shared machines where a 12-MP
run takes hours; the allocator's behaviour does not scale exactly, so it is an estimate, labelled as one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = {0: (64, 48), 1: (1152, 864), 4: (2304, 1728), 12: (4000, 3000)}  # width x height, 4:3; 0: fixed cost


def photo(path: Path, width: int, height: int, seed: int) -> Path:
    """A smooth colour field with texture, saved as JPEG (realistic decode cost and file size)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.ogrid[0:height, 0:width]
    img = np.empty((height, width, 3), np.uint8)
    for c in range(3):
        field = np.sin(x / (97 + 31 * c) + c) * np.cos(y / (83 + 17 * c)) * 0.35 + 0.5
        field += rng.normal(0, 0.04, (height, width))
        img[..., c] = (field.clip(0, 1) * 255).astype(np.uint8)
    Image.fromarray(img).save(path, quality=92)
    return path


def paper_model():
    import torch

    from mambast import MambaST

    torch.manual_seed(0)
    return MambaST().eval()


def run_case(mp: int, mode: str, folder: Path, budget: int) -> dict:
    """One measurement in this process: stylize the `mp` MP photo of `folder` with the paper model in `mode`,
    at memory budget `budget` (bytes) unless mode is "unblocked"."""
    import torch

    from mambast.model.cnn_decoder import CNNDecoder
    from mambast.model.ss2d import SS2DBase

    SS2DBase.memory_budget = CNNDecoder.memory_budget = budget  # the defaults of every model, the CLI's too
    width, height = SIZES[mp]
    content, style = folder / f"content_{mp}.jpg", folder / "style.jpg"
    start, cpu = time.perf_counter(), time.process_time()
    if mode == "cli":
        from PIL import Image

        from mambast.cli import main as cli

        out_dir = folder / f"out_{mp}_{os.getpid()}"
        code = cli(["stylize", "--checkpoint", str(folder / "paper"), "--content", str(content), "--style",
                    str(style), "--output", str(out_dir), "--size", "0", "--seed", "0", "--quiet"])
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        assert code == 0, f"mambast stylize exited {code}"
        with Image.open(out_dir / f"{content.stem}_stylized_{style.stem}.png") as out:
            assert out.size == (width, height)
    else:
        from mambast.inference import Stylizer

        model = paper_model()
        model.set_memory_budget(None if mode == "unblocked" else budget)
        engine = Stylizer(model, size=0, max_pixels=None)
        start, cpu = time.perf_counter(), time.process_time()
        out = engine.stylize(content, style, seed=0)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        assert out.size == (width, height)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    megapixels = width * height / 1e6
    return {"mp": mp, "mode": mode, "width": width, "height": height, "seconds": round(seconds, 2),
            "seconds_per_mp": round(seconds / megapixels, 3), "cpu_seconds": round(cpu, 2),
            "cpu_seconds_per_mp": round(cpu / megapixels, 3), "peak_rss_mb": round(peak_mb),
            "threads": torch.get_num_threads()}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The CPU's vector flags that choose oneDNN's and MKL's kernels (AVX-512 variants, AMX)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return sorted(f for f in line.split(":", 1)[1].split() if f.startswith(("avx512", "amx")))
    except OSError:
        pass
    return []


def tokens(mp: int) -> int:
    """8 x 8 px patches of the `mp` photo (its token grid, padded to whole patches)."""
    width, height = SIZES[mp]
    return -(-width // 8) * -(-height // 8)


def model_budget() -> int:
    from mambast.model.memory import DEFAULT_MEMORY_BUDGET

    return DEFAULT_MEMORY_BUDGET


def table(rows: list[dict]) -> str:
    lines = ["| photo | mode | peak RSS | seconds | s / MP | CPU s / MP |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['width']} x {r['height']} | {r['mode']} | {r['error']} | | | |")
            continue
        lines.append(f"| {r['width']} x {r['height']} ({r['width'] * r['height'] / 1e6:.1f} MP) | {r['mode']} | "
                     f"{r['peak_rss_mb'] / 1024:.2f} GiB | {r['seconds']:.1f} | {r['seconds_per_mp']:.2f} | "
                     f"{r['cpu_seconds_per_mp']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 12], choices=sorted(SIZES))
    ap.add_argument("--modes", nargs="+", default=["cli", "blocked", "unblocked"],
                    choices=["cli", "blocked", "unblocked"])
    ap.add_argument("--max-unblocked-mp", type=int, default=4, help="skip all-at-once runs above this size")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "memory.json")
    ap.add_argument("--append", action="store_true", help="keep the other rows of an existing --out file")
    ap.add_argument("--proxy-of", type=int, choices=sorted(SIZES), help="scale the budget to this size's plan")
    ap.add_argument("--case", nargs=4, metavar=("MP", "MODE", "FOLDER", "BUDGET"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(int(args.case[0]), args.case[1], Path(args.case[2]), int(args.case[3]))))
        return
    rows = []
    tmp = tempfile.TemporaryDirectory()
    folder = Path(tmp.name)  # the photos are written here, outside the measured processes
    photo(folder / "style.jpg", 512, 512, 1)
    if "cli" in args.modes:
        from mambast.io.official import save_official

        save_official(paper_model(), folder / "paper")
    for mp in args.sizes:
        photo(folder / f"content_{mp}.jpg", *SIZES[mp], 0)
        for mode in args.modes:
            if mode == "unblocked" and mp > args.max_unblocked_mp:
                continue
            budget = model_budget()
            if args.proxy_of and mp:
                budget = int(budget * tokens(mp) / tokens(args.proxy_of))
            proc = subprocess.run([sys.executable, __file__, "--case", str(mp), mode, str(folder), str(budget)],
                                  capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0:
                width, height = SIZES[mp]
                row = {"mp": mp, "mode": mode, "width": width, "height": height,
                       "error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
            else:
                row = json.loads(proc.stdout.strip().splitlines()[-1])
            row.update(budget_bytes=budget, **({"proxy_of": args.proxy_of} if args.proxy_of and mp else {}))
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.append and args.out.exists():
        done = {(r["mp"], r["mode"]) for r in rows}
        previous = json.loads(args.out.read_text())
        if previous.get("cpu") != cpu_name():  # one CPU per file: its figures differ by CPU
            sys.exit(f"{args.out} holds rows measured on {previous.get('cpu')!r}: write another --out")
        old = previous["rows"]
        rows = sorted([r for r in old if (r["mp"], r["mode"]) not in done] + rows,
                      key=lambda r: (r["mp"], r["mode"]))
    result = {"cpu": cpu_name(), "cpu_flags": cpu_flags(), "load_average": os.getloadavg(),
              "python": platform.python_version(),
              "model": "paper (MambaST(), random official init, float32)", "budget_bytes": model_budget(),
              "rows": rows}
    tmp.cleanup()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
