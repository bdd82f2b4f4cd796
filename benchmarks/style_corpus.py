"""Write a style corpus (mambast.train.styles; docs/style-corpus.md) to a folder and measure its speed.

    python benchmarks/style_corpus.py --out DIR --count 5000 --seed 0 --dev ../shared/images/dev [--workers 2]
    python benchmarks/style_corpus.py --out DIR --count 48 --dev ../shared/images/dev \
        --grid docs/style-corpus-samples.jpg

Writes DIR/style_NNNNNN.jpg (or .png), DIR/manifest.csv (index, file, family, params as JSON: the generator
and its parameters, source files, package licences) and DIR/summary.json (count, seconds, images/s, CPU,
family counts), and prints the summary. Images are deterministic per (seed, index, size, sources), so
--start lets several runs (or machines) fill one corpus. --grid writes a contact sheet of the first images.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from memory import cpu_name  # benchmarks/memory.py (this folder is on sys.path when run as a script)
from PIL import Image

from mambast.errors import UserError
from mambast.train.styles import Sources, StyleCorpus, write_manifest

_CORPUS: StyleCorpus | None = None


def _init_worker(corpus: StyleCorpus) -> None:
    """Single-threaded OpenCV in each worker (the processes are the parallelism)."""
    import cv2

    cv2.setNumThreads(1)
    global _CORPUS
    _CORPUS = corpus


def _write_one(job: tuple[int, str, str, int]) -> dict:
    """Make image `index` and save it as out/NAME; returns its manifest row (with the time to make and write it:
    wall and CPU ms; the CPU time is what a loaded, shared machine does not inflate)."""
    index, out, fmt, quality = job
    t0, c0 = time.perf_counter(), time.process_time()
    img, params = _CORPUS.sample(index)
    name = f"style_{index:06d}.{fmt}"
    pil = Image.fromarray(img)
    if fmt == "jpg":
        pil.save(Path(out) / name, quality=quality, subsampling=0)  # 4:4:4: colour detail kept
    else:
        pil.save(Path(out) / name, compress_level=1)
    ms, cpu_ms = (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000
    return {**params, "index": index, "file": name, "ms": round(ms, 1), "cpu_ms": round(cpu_ms, 1)}


def write_corpus(corpus: StyleCorpus, out: Path, start: int, count: int, workers: int, fmt: str,
                 quality: int) -> tuple[list[dict], float]:
    """Write images start..start+count-1 with `workers` processes; returns (manifest rows, seconds)."""
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(i, str(out), fmt, quality) for i in range(start, start + count)]
    t0 = time.perf_counter()
    if workers <= 1:
        _init_worker(corpus)
        rows = [_write_one(j) for j in jobs]
    else:
        with get_context().Pool(workers, _init_worker, (corpus,)) as pool:
            rows = pool.map(_write_one, jobs, chunksize=8)
    return rows, time.perf_counter() - t0


def contact_sheet(out: Path, rows: list[dict], grid: Path, cols: int, n_rows: int, thumb: int) -> None:
    """A cols x n_rows grid of the first images' thumbnails (thumb px), JPEG q85."""
    sheet = Image.new("RGB", (cols * thumb, n_rows * thumb), "white")
    for k, row in enumerate(rows[: cols * n_rows]):
        im = Image.open(out / row["file"]).convert("RGB").resize((thumb, thumb), Image.LANCZOS)
        sheet.paste(im, ((k % cols) * thumb, (k // cols) * thumb))
    grid.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(grid, quality=85, optimize=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="style_corpus", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--count", type=int, default=5000)
    p.add_argument("--start", type=int, default=0, help="first index")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=256, help="side in px")
    p.add_argument("--dev", type=Path, help="development images (style/ = paintings, content/ = photos)")
    p.add_argument("--no-packages", action="store_true", help="leave out images shipped in installed packages")
    p.add_argument("--workers", type=int, default=1, help="processes")
    p.add_argument("--format", choices=["jpg", "png"], default="jpg")
    p.add_argument("--quality", type=int, default=92, help="JPEG quality")
    p.add_argument("--grid", type=Path, help="also write a contact sheet of the first images here (JPEG)")
    p.add_argument("--grid-shape", default="8x6", help="COLSxROWS of the contact sheet")
    p.add_argument("--thumb", type=int, default=128, help="contact sheet thumbnail side (px)")
    args = p.parse_args(argv)
    if args.count < 1 or args.start < 0 or args.workers < 1:
        p.error("--count and --workers must be >= 1, --start >= 0")
    return args


def run(args: argparse.Namespace) -> dict:
    """Write the corpus, manifest, summary (and grid); returns the summary."""
    corpus = StyleCorpus(args.seed, args.size, Sources.from_dev(args.dev, not args.no_packages))
    rows, seconds = write_corpus(corpus, args.out, args.start, args.count, args.workers, args.format, args.quality)
    write_manifest(args.out / "manifest.csv", rows)
    counts = Counter(r["family"] for r in rows)
    summary = {"count": len(rows), "seconds": round(seconds, 1), "images_per_s": round(len(rows) / seconds, 2),
               "workers": args.workers, "size": args.size, "seed": args.seed, "start": args.start,
               "cpu": cpu_name(), "cores": os.cpu_count(), "shares": corpus.shares,
               "families": {k: counts[k] for k in corpus.shares},
               "cpu_s_per_image": round(float(np.mean([r["cpu_ms"] for r in rows])) / 1000, 4),
               "cpu_ms_per_image": {k: round(float(np.mean([r["cpu_ms"] for r in rows if r["family"] == k])), 1)
                                    for k in corpus.shares if counts[k]},
               "wall_ms_per_image": {k: round(float(np.mean([r["ms"] for r in rows if r["family"] == k])), 1)
                                     for k in corpus.shares if counts[k]},
               "distinct_files": len({r["file"] for r in rows}),
               "package_images": [str(p) for _, p in corpus.sources.package]}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if args.grid:
        cols, n_rows = (int(v) for v in args.grid_shape.lower().split("x"))
        contact_sheet(args.out, rows, args.grid, cols, n_rows, args.thumb)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = run(args)
    except (UserError, OSError) as e:
        print(f"style_corpus: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "package_images"}, indent=1))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
