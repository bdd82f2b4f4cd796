"""`--precision` on the CPU: seconds per image and max abs error against fp32, paper-size model (synthetic
published-layout weights from shared/official, seed 1234), through the engine (`Stylizer(precision=)`).

    python benchmarks/precision_cpu.py --sizes 256 512 --repeats 3 --json benchmarks/results/precision_cpu.json

Each (size, precision): best of `repeats` timed calls after one warm-up (precisions alternating within each
repeat), the same content/style/shuffle seed;
error: max |output - output of the first precision (fp32)| over the raw (unclamped) output and over the 8-bit image.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from mambast import MambaST, MambaSTConfig, load  # noqa: E402
from mambast.inference import Controls, Stylizer  # noqa: E402


def paper_model(tmp: Path) -> tuple[MambaST, str]:
    for cand in (os.environ.get("MAMBAST_SHARED"), ROOT.parent / "shared"):
        gen = Path(cand or "/nonexistent") / "official" / "synthetic_weights.py"
        if gen.exists():
            subprocess.run([sys.executable, str(gen), str(tmp), "--seed", "1234"], check=True, capture_output=True)
            return load(tmp, device="cpu"), "synthetic published-layout weights, seed 1234"
    torch.manual_seed(0)
    return MambaST(MambaSTConfig()).eval(), "random init"


def to_8bit(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round()


def measure(model: MambaST, precisions: list[str], content: torch.Tensor, style: torch.Tensor, repeats: int):
    """{precision: (raw output (1, 3, h, w), best seconds)}: the precisions alternate within each repeat, so
    the noise of a shared machine hits all of them alike."""
    engines = {p: Stylizer(model, size=None, precision=p) for p in precisions}

    def once(engine):
        with torch.inference_mode(), engine.autocast():
            tokens = model.encode_style(style)
        return engine.stylize_tensor(content, [tokens], Controls(seed=0))

    outs = {p: once(e) for p, e in engines.items()}  # warm-up
    times: dict[str, list[float]] = {p: [] for p in precisions}
    for _ in range(repeats):
        for p, engine in engines.items():
            t0 = time.perf_counter()
            outs[p] = once(engine)
            times[p].append(time.perf_counter() - t0)
    return {p: (outs[p], min(times[p])) for p in precisions}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model, weights = paper_model(Path(tmp))
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    cpu = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")), "?")
    result = {"cpu": cpu, "amx_bf16": " amx_bf16" in flags, "avx512_bf16": " avx512_bf16" in flags,
              "threads": torch.get_num_threads(), "torch": torch.__version__, "weights": weights, "rows": []}
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    for size in args.sizes:
        g = torch.Generator().manual_seed(size)
        content, style = torch.rand(1, 3, size, size, generator=g), torch.rand(1, 3, size, size, generator=g)
        results = measure(model, args.precisions, content, style, args.repeats)
        ref, base = results[args.precisions[0]]
        for precision, (out, seconds) in results.items():
            row = {"size": size, "precision": precision, "s_per_image": round(seconds, 3)}
            if precision != args.precisions[0]:
                row["max_abs_err_raw"] = float((out - ref).abs().max())
                row["max_abs_err_8bit"] = int((to_8bit(out) - to_8bit(ref)).abs().max())
                row["speedup_vs_first"] = round(base / seconds, 2)
            result["rows"].append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
