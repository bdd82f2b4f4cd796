"""mambast's `eval --mode paper` next to an independent float64 re-statement of the paper's evaluation.

A protocol-shaped run: the first N content x M style images of the evaluation set are stylized by a checkpoint
(default: the bundled model) through `mambast.metrics.run_protocol` (paper mode: resize + centre crop, JPEG
outputs), then scored by mambast and by the `ref_*` functions of tests/test_eval_reference.py (StyleID's
eval_artfid.py on copy_inputs.py's layout, written from the formulas). The metric networks are random weights
saved in the real published layouts (art-fid Inception, torchvision AlexNet + lpips v0.1 heads, torchvision
VGG-19; He-initialised so their features have realistic magnitudes), so the numbers test the computation, not
image quality.

    python benchmarks/eval_reference.py --contents 5 --styles 8 --json benchmarks/results/eval_reference.json
    python benchmarks/eval_reference.py --contents 5 --styles 8 --store-size 256 --size 256   # ~8x cheaper
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the re-statement and the layout writers live with the tests

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from test_eval_reference import ref_protocol  # noqa: E402
from test_metrics import write_art_inception, write_lpips, write_vgg  # noqa: E402

from mambast.io import DEFAULT_WEIGHTS  # noqa: E402
from mambast.metrics import EvalWeights, run_protocol  # noqa: E402


def signal_preserving(path: Path) -> None:
    """Redraw every conv / linear weight of a saved state dict as N(0, 2 / fan_in) (He init), so that random
    networks give features of realistic magnitude (PyTorch's default init shrinks them layer by layer)."""
    gen = torch.Generator().manual_seed(0)
    sd = torch.load(path, weights_only=True)
    for key, value in sd.items():
        if key.endswith("weight") and value.ndim in (2, 4) and not key.startswith("lin"):
            fan_in = value[0].numel()
            sd[key] = torch.randn(value.shape, generator=gen) * (2.0 / fan_in) ** 0.5
    torch.save(sd, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "images" / "eval")
    p.add_argument("--contents", type=int, default=5)
    p.add_argument("--styles", type=int, default=8)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--store-size", type=int, help="first resize the copied inputs to this square size (a cheaper "
                   "run with the same shape: use with --size equal to it)")  # fmt: skip
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_WEIGHTS)
    p.add_argument("--json", type=Path, help="write the table and settings here")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="eval_reference_"))
    try:
        for sub, n in (("content", args.contents), ("style", args.styles)):
            (work / sub).mkdir()
            for f in sorted((args.images / sub).iterdir())[:n]:
                if args.store_size:
                    with Image.open(f) as im:
                        im.convert("RGB").resize((args.store_size,) * 2, Image.BICUBIC).save(work / sub / f.name)
                else:
                    shutil.copy(f, work / sub / f.name)
        write_art_inception(work / "art_inception.pth")
        backbone, heads = write_lpips(work)
        write_vgg(work / "vgg19.pth", "vgg19")
        for f in (work / "art_inception.pth", backbone, work / "vgg19.pth"):
            signal_preserving(f)
        files = {"inception": work / "art_inception.pth", "lpips_alexnet": backbone, "lpips_heads": heads,
                 "vgg19": work / "vgg19.pth"}  # fmt: skip
        start = time.perf_counter()
        report = run_protocol(args.checkpoint, work / "content", work / "style", work / "out", size=args.size,
                              weights=EvalWeights(**files, folder=work / "none"), progress=False)  # fmt: skip
        t_mambast = time.perf_counter() - start
        by_name = {(c.stem, s.stem): (c, s) for c in (work / "content").iterdir() for s in (work / "style").iterdir()}
        pairs = []
        for row in report["per_pair"]:
            c, s = by_name[(row["content"], row["style"])]
            pairs.append((work / "out" / "stylized" / row["stylized"], c, s))
        start = time.perf_counter()
        ref = ref_protocol(pairs, files, size=args.size, cfsd_rows=2048)
        t_ref = time.perf_counter() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)

    got = report["metrics"]
    print(f"{len(pairs)} pairs ({args.contents} contents x {args.styles} styles), size {args.size}, "
          f"random-weight networks in the published layouts; protocol: {report['protocol']}")  # fmt: skip
    print("\n| metric | mambast | float64 re-statement | relative difference |\n|---|---|---|---|")
    rows = []
    for key in ("artfid", "fid", "lpips", "lpips_gray", "cfsd"):
        rel = abs(got[key] - ref[key]) / abs(ref[key])
        rows.append({"metric": key, "mambast": got[key], "reference": ref[key], "rel_diff": rel})
        print(f"| {key} | {got[key]:.6f} | {ref[key]:.6f} | {rel:.1e} |")
    print(f"\nmambast (stylize + score): {t_mambast:.0f} s; re-statement (score only, float64): {t_ref:.0f} s")
    if args.json:
        settings = {k: (os.path.relpath(v, ROOT) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        result = {"settings": settings | {"pairs": len(pairs)}, "rows": rows, "protocol": report["protocol"],
                  "seconds_mambast": round(t_mambast, 1), "seconds_reference": round(t_ref, 1)}  # fmt: skip
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
