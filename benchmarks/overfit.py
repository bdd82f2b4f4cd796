"""How far is a student from its teacher: the overfitting test and the per-phase gap of issue 26.

    score   students on cached (content, style, teacher) triplets at the cache's size (256 px, whole images):
            pixel   mean |clamp(o) - t| (o: the student's output, t: the teacher's)
            t_style the paper's mean-std style term relu1_1..relu4_1 between o and t (the training's
                    teacher_style term, here on whole 256-px images)
            style   the paper's style term relu1_1..relu5_1 between o and the style image, and the teacher's
                    own (teacher_style_ref): style / teacher_style_ref = how far behind the teacher on style
            content the paper's content term (relu4_1 + relu5_1) between o and the content, and the teacher's
            One row per (checkpoint, cache); the caches are e.g. the training set (memorisation), dev paintings
            left out of it (held-out, training-like) and the eval paintings (evaluation only).
    speed   parameters and the CPU time of one 512-px stylization per checkpoint (alternating, best of --repeats)
    grow    every growth of mambast.train.widen.grow applied to the bundled model: the largest output
            difference to it (function preserved?), parameters, 512-px time
    profile a distillation step's parts alone (data, student, loss network on output and teacher), bf16/fp32
    step    seconds per step of the real training loop, (threads, background prefetch) settings alternating

    python benchmarks/overfit.py score --vgg vgg16_hed_norm.pth --cache cacheO cacheH cacheE --n 24 \\
        --checkpoint mambast/assets/default.safetensors RUN_DIR ... --json overfit.json
    python benchmarks/overfit.py step --vgg vgg16_hed_norm.pth --cache cacheO --variants 2:inline 2:prefetch
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
DEV = REPO.parent / "shared" / "images" / "dev"  # development images (never the eval set)
sys.path.insert(0, str(REPO))

from mambast.io import DEFAULT_WEIGHTS  # noqa: E402
from mambast.losses import content_loss, mean_std, style_loss  # noqa: E402
from mambast.model import MambaST  # noqa: E402


def load_any(path: Path) -> MambaST:
    """A weights file or a distillation run folder (its latest checkpoint), float32, eval mode."""
    from mambast.io import load
    from mambast.train.distill import load_student

    return (load_student(path) if path.is_dir() else load(path)).float().eval()


def _style_from_stats(feats: list[torch.Tensor], stats: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """mambast.losses.style_loss(feats, target) with the target given by its per-layer mean_std."""
    total = feats[0].new_zeros(())
    for f, (tm, ts) in zip(feats, stats, strict=False):
        om, osd = mean_std(f)
        total = total + F.mse_loss(om, tm) + F.mse_loss(osd, ts)
    return total


@torch.inference_mode()
def score(models: dict[str, MambaST], vgg, cache: dict[str, torch.Tensor], n: int,
          batch: int = 8) -> dict[str, dict[str, float]]:
    """Mean figures (see the module docstring) of each model over the first n triplets of `cache` (shuffle
    seeded per batch); the teacher's, style's and content's features are computed once for all models."""
    sums: dict[str, dict[str, float]] = {name: {} for name in models}
    for i in range(0, n, batch):
        c, s, t = (cache[k][i:min(i + batch, n)].float() / 255 for k in ("content", "style", "teacher"))
        ft, fs, fc = vgg(t), vgg(s), vgg(c)
        t_stats, s_stats = [mean_std(f) for f in ft], [mean_std(f) for f in fs]
        refs = {"teacher_style_ref": style_loss(ft, fs), "teacher_content_ref": content_loss(ft, fc)}
        del ft, fs
        for name, model in models.items():
            o = model(c, s, generator=torch.Generator().manual_seed(i)).clamp(0, 1)
            fo = vgg(o)
            figures = {"pixel": (o - t).abs().mean(), "t_style": _style_from_stats(fo[:4], t_stats[:4]),
                       "style": _style_from_stats(fo, s_stats), "content": content_loss(fo, fc), **refs}
            for k, v in figures.items():
                sums[name][k] = sums[name].get(k, 0.0) + float(v) * len(c)
    return {name: {k: v / n for k, v in figs.items()} for name, figs in sums.items()}


def cmd_score(args: argparse.Namespace) -> int:
    from mambast.nets.vgg import load_vgg
    from mambast.train.distill import load_cache

    torch.set_num_threads(args.threads)
    vgg = load_vgg(args.vgg)
    models = {str(p): load_any(p) for p in args.checkpoint}
    rows = []
    for path in args.cache:
        cache = load_cache(path)
        n = min(args.n, cache["content"].shape[0])
        for name, figures in score(models, vgg, cache, n).items():
            rows.append({"checkpoint": name, "cache": path.name, "n": n, **figures})
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


def cmd_speed(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    models = {str(p): load_any(p) for p in args.checkpoint}
    g = torch.Generator().manual_seed(0)
    c, s = torch.rand(1, 3, 512, 512, generator=g), torch.rand(1, 3, 512, 512, generator=g)
    best = {k: float("inf") for k in models}
    with torch.inference_mode():
        for _ in range(args.repeats):
            for k, m in models.items():
                t0 = time.perf_counter()
                m(c, s, seed=0)
                best[k] = min(best[k], time.perf_counter() - t0)
    rows = [{"checkpoint": k, "params": sum(p.numel() for p in m.parameters()), "s_512": best[k],
             "config": m.config.to_dict()} for k, m in models.items()]
    for row in rows:
        print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


GROWTHS = {"bundled": {}, "d_state 32": {"d_state": 32}, "expand 2": {"double_inner": True},
           "blocks 3+3+3": {"layers": (3, 3, 3)}, "style encoder 3": {"layers": (2, 3, 2)},
           "CNN 256/128/64": {"double_cnn": True},
           "all": {"d_state": 32, "double_inner": True, "layers": (3, 3, 3), "double_cnn": True}}


def cmd_grow(args: argparse.Namespace) -> int:
    """Each growth of GROWTHS applied to --checkpoint without noise: the largest output difference to the
    source on a 256-px dev pair (same shuffle), parameters, 512-px CPU time (alternating, best of --repeats)."""
    from mambast.images import load_image
    from mambast.train.widen import grow

    torch.set_num_threads(args.threads)
    base = load_any(args.checkpoint)
    models = {name: grow(base, **kw) if kw else base for name, kw in GROWTHS.items()}
    c, s = (torch.from_numpy(np.array(load_image(p).resize((256, 256)))).permute(2, 0, 1)[None].float() / 255
            for p in (args.content, args.style))
    rows = {}
    with torch.inference_mode():
        ref = base(c, s, seed=0)
        for name, m in models.items():
            rows[name] = {"variant": name, "params": sum(p.numel() for p in m.parameters()),
                          "max_abs_diff_256": float((m(c, s, seed=0) - ref).abs().max()), "s_512": float("inf")}
        g = torch.Generator().manual_seed(0)
        c5, s5 = torch.rand(1, 3, 512, 512, generator=g), torch.rand(1, 3, 512, 512, generator=g)
        for _ in range(args.repeats):
            for name, m in models.items():
                t0 = time.perf_counter()
                m(c5, s5, seed=0)
                rows[name]["s_512"] = min(rows[name]["s_512"], time.perf_counter() - t0)
    for row in rows.values():
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(list(rows.values()), indent=1))
    return 0


def cmd_step(args: argparse.Namespace) -> int:
    """Seconds per distillation step (wall and this process's CPU) of the real training loop
    (mambast.train.distill.distill), settings alternating: (threads, prefetch) in --variants, each run for
    --steps steps from the same weights on the same cache, --rounds times; the first step of each run is
    left out (start-up)."""
    import tempfile
    from dataclasses import replace

    from mambast.io import read_native
    from mambast.nets.vgg import load_vgg
    from mambast.train.distill import DistillConfig, distill

    vgg = load_vgg(args.vgg)
    base = DistillConfig(model=read_native(args.checkpoint)[0].to_dict(), cache_dir=str(args.cache),
                         init_from=str(args.checkpoint), crop=128, batch_size=4, lr=2e-4, warmup=10,
                         max_iter=args.steps, log_every=1, save_every=10**9,
                         weights={"pixel": 10.0, "feature": 0.1, "teacher_style": 0.3})
    variants = [(int(t), p == "prefetch") for t, p in (v.split(":") for v in args.variants)]
    times: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for threads, prefetch in variants:
            name = f"{threads} thread(s), {'prefetch' if prefetch else 'inline'}"
            with tempfile.TemporaryDirectory() as tmp:
                cpu = time.process_time()
                distill(replace(base, threads=threads, prefetch=prefetch), Path(tmp) / "run", vgg=vgg)
                cpu = time.process_time() - cpu
                log = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
            times.setdefault(name, []).extend(1 / r["it_per_s"] for r in log[1:])
            times.setdefault(name + " (process CPU s, whole run)", []).append(cpu)
            print(name, [round(1 / r["it_per_s"], 2) for r in log], f"cpu {cpu:.1f}", flush=True)
    summary = {k: {"median": sorted(v)[len(v) // 2], "all": v} for k, v in times.items()}
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    """Where a distillation step's time goes: data, student forward+backward, the loss network's pass over the
    output (forward+backward) and over the teacher (forward, no grad), each alone, bf16 autocast and fp32
    alternating, --threads threads; wall and this process's CPU seconds, medians of --repeats."""
    from mambast.nets.vgg import load_vgg
    from mambast.train.distill import batch_at, load_cache

    torch.set_num_threads(args.threads)
    model, vgg, cache = load_any(args.checkpoint).train(), load_vgg(args.vgg), load_cache(args.cache)
    c, s, t = batch_at(cache, 0, 4, 128)

    def student():
        model.zero_grad()
        model(c, s, generator=torch.Generator().manual_seed(0)).float().mean().backward()

    def output_vgg():
        x = t.clone().requires_grad_()
        sum(f.float().mean() for f in vgg.encode(x, "relu4_1")).backward()

    def teacher_vgg():
        with torch.no_grad():
            vgg.encode(t, "relu4_1")

    parts = {"data (crops)": lambda: batch_at(cache, 1, 4, 128), "student fwd+bwd": student,
             "loss VGG on the output, fwd+bwd": output_vgg, "loss VGG on the teacher, fwd": teacher_vgg}
    times: dict[str, list[tuple[float, float]]] = {}
    for rep in range(args.repeats + 1):
        for amp in (True, False):
            for name, fn in parts.items():
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                    wall, cpu = time.perf_counter(), time.process_time()
                    fn()
                    if rep:  # the first round warms up
                        times.setdefault(f"{name}, {'bf16' if amp else 'fp32'}", []).append(
                            (time.perf_counter() - wall, time.process_time() - cpu))
    rows = {k: {"wall_s": sorted(w for w, _ in v)[len(v) // 2], "cpu_s": sorted(c for _, c in v)[len(v) // 2]}
            for k, v in times.items()}
    print(json.dumps(rows, indent=1))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("score", help="student-teacher gap on cached triplets")
    s.add_argument("--vgg", type=Path, required=True)
    s.add_argument("--cache", type=Path, nargs="+", required=True)
    s.add_argument("--checkpoint", type=Path, nargs="+", required=True, help="weights files or run folders")
    s.add_argument("--n", type=int, default=24, help="triplets per cache (the first n)")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--json", type=Path)
    s.set_defaults(func=cmd_score)
    v = sub.add_parser("speed", help="parameters and 512-px CPU time")
    v.add_argument("--checkpoint", type=Path, nargs="+", required=True)
    v.add_argument("--repeats", type=int, default=3)
    v.add_argument("--threads", type=int, default=2)
    v.add_argument("--json", type=Path)
    v.set_defaults(func=cmd_speed)
    g = sub.add_parser("grow", help="every growth of the bundled model: function kept? params, 512-px time")
    g.add_argument("--checkpoint", type=Path, default=DEFAULT_WEIGHTS)
    g.add_argument("--content", type=Path, default=DEV / "content" / "00.jpg")
    g.add_argument("--style", type=Path, default=DEV / "style" / "00.jpg")
    g.add_argument("--repeats", type=int, default=3)
    g.add_argument("--threads", type=int, default=1)
    g.add_argument("--json", type=Path)
    g.set_defaults(func=cmd_grow)
    t = sub.add_parser("step", help="seconds per distillation step, settings alternating")
    t.add_argument("--vgg", type=Path, required=True)
    t.add_argument("--cache", type=Path, required=True)
    t.add_argument("--checkpoint", type=Path, default=DEFAULT_WEIGHTS)
    t.add_argument("--variants", nargs="+", default=["2:inline", "1:prefetch"], help="THREADS:inline|prefetch")
    t.add_argument("--steps", type=int, default=4)
    t.add_argument("--rounds", type=int, default=2)
    t.add_argument("--json", type=Path)
    t.set_defaults(func=cmd_step)
    f = sub.add_parser("profile", help="a step's parts timed alone (student, loss network, data), bf16 and fp32")
    f.add_argument("--vgg", type=Path, required=True)
    f.add_argument("--cache", type=Path, required=True)
    f.add_argument("--checkpoint", type=Path, default=DEFAULT_WEIGHTS)
    f.add_argument("--repeats", type=int, default=3)
    f.add_argument("--threads", type=int, default=1)
    f.add_argument("--json", type=Path)
    f.set_defaults(func=cmd_profile)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
