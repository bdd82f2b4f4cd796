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
    bands   where the gap is, by scale: output and teacher split into a Laplacian pyramid (band k holds detail
            of 2^k..2^(k+1) px; the last, "low", everything coarser than 2^K px), and per band the mean
            |student band - teacher band| beside the mean |teacher band| (a student with nothing in that band
            scores 1.0 on their ratio). The 8-px token grid sits between bands 2 (4-8 px) and 3 (8-16 px).
    probe   is the missing detail in the content? The student frozen, a small full-resolution conv head
            (content + student output -> a zero-initialised correction) is fitted by pixel L1 to the teacher
            on one cache and scored band by band on others: if the head closes the fine bands on held-out
            styles, the information the student lacks is the content's own detail below the 8-px token grid
            (what its tokens lose), not the style's
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


def laplacian_bands(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """x (B, 3, H, W) -> levels detail bands (x_k - up(down(x_k)), finest first) and the low-pass rest."""
    bands = []
    for _ in range(levels):
        low = F.avg_pool2d(x, 2)
        bands.append(x - F.interpolate(low, size=x.shape[-2:], mode="bilinear", align_corners=False))
        x = low
    return bands + [x]


@torch.inference_mode()
def band_gap(models: dict[str, MambaST], cache: dict[str, torch.Tensor], n: int, levels: int = 5,
             batch: int = 8) -> dict[str, dict[str, float]]:
    """Per model and band (`b0` 1-2 px ... `low`): `err_bK` = mean |o_band - t_band|, `ref_bK` = mean |t_band|
    (0..1 units) over the first n triplets (the generator seeded per batch, as `score`)."""
    names = [f"b{k}" for k in range(levels)] + ["low"]
    sums: dict[str, dict[str, float]] = {name: {} for name in models}
    for i in range(0, n, batch):
        c, s, t = (cache[k][i:min(i + batch, n)].float() / 255 for k in ("content", "style", "teacher"))
        tb = laplacian_bands(t, levels)
        for name, model in models.items():
            ob = laplacian_bands(model(c, s, generator=torch.Generator().manual_seed(i)).clamp(0, 1), levels)
            for band, o_k, t_k in zip(names, ob, tb, strict=True):
                for key, v in ((f"err_{band}", (o_k - t_k).abs().mean()), (f"ref_{band}", t_k.abs().mean())):
                    sums[name][key] = sums[name].get(key, 0.0) + float(v) * len(c)
    return {name: {k: v / n for k, v in figs.items()} for name, figs in sums.items()}


def cmd_bands(args: argparse.Namespace) -> int:
    from mambast.train.distill import load_cache

    torch.set_num_threads(args.threads)
    models = {str(p): load_any(p) for p in args.checkpoint}
    rows = []
    for path in args.cache:
        cache = load_cache(path)
        n = min(args.n, cache["content"].shape[0])
        for name, figures in band_gap(models, cache, n, args.levels).items():
            rows.append({"checkpoint": name, "cache": path.name, "n": n, **figures})
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


class DetailHead(torch.nn.Module):
    """(content, student output) (B, 3, H, W) each -> output + correction; full resolution, 3x3 convs, the last
    one zero-initialised (so it starts as the student)."""

    def __init__(self, width: int = 32, depth: int = 3) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = []
        for i in range(depth - 1):
            layers += [torch.nn.Conv2d(6 if i == 0 else width, width, 3, padding=1), torch.nn.ReLU()]
        layers.append(torch.nn.Conv2d(width, 3, 3, padding=1))
        torch.nn.init.zeros_(layers[-1].weight)
        torch.nn.init.zeros_(layers[-1].bias)
        self.net = torch.nn.Sequential(*layers)

    def forward(self, content: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return out + self.net(torch.cat([content, out], 1))


@torch.inference_mode()
def _student_outputs(model: MambaST, cache: dict[str, torch.Tensor], n: int, batch: int = 8) -> torch.Tensor:
    outs = []
    for i in range(0, n, batch):
        c, s = (cache[k][i:min(i + batch, n)].float() / 255 for k in ("content", "style"))
        outs.append(model(c, s, generator=torch.Generator().manual_seed(i)).clamp(0, 1))
    return torch.cat(outs)


def cmd_probe(args: argparse.Namespace) -> int:
    from mambast.train.distill import load_cache

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_any(args.checkpoint)
    caches = {p.name: load_cache(p) for p in [args.train, *args.cache]}
    data = {}
    for name, cache in caches.items():
        n = min(args.n if name != args.train.name else cache["content"].shape[0], cache["content"].shape[0])
        data[name] = (cache["content"][:n].float() / 255, _student_outputs(model, cache, n),
                      cache["teacher"][:n].float() / 255)
    head = DetailHead(args.width, args.depth)
    opt = torch.optim.Adam(head.parameters(), lr=args.lr)
    c, o, t = data[args.train.name]
    g = torch.Generator().manual_seed(0)
    for step in range(args.steps):
        idx = torch.randint(0, c.shape[0], (args.batch_size,), generator=g)
        y, x = (int(v) for v in torch.randint(0, c.shape[-1] - args.crop + 1, (2,), generator=g))
        crop = (slice(None), slice(None), slice(y, y + args.crop), slice(x, x + args.crop))
        loss = (head(c[idx][crop], o[idx][crop]) - t[idx][crop]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % 50 == 0:
            print(json.dumps({"step": step + 1, "pixel": float(loss)}), flush=True)
    rows = []
    names = [f"b{k}" for k in range(5)] + ["low"]
    with torch.inference_mode():
        for name, (c, o, t) in data.items():
            tb = laplacian_bands(t, 5)
            for label, out in (("student", o), ("student + head", head(c, o).clamp(0, 1))):
                ob = laplacian_bands(out, 5)
                row = {"cache": name, "model": label, "pixel": float((out - t).abs().mean())}
                row |= {f"ratio_{b}": float((ok - tk).abs().mean() / tk.abs().mean())
                        for b, ok, tk in zip(names, ob, tb, strict=True)}
                rows.append(row)
                print(json.dumps(row), flush=True)
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
    b = sub.add_parser("bands", help="the student-teacher gap split by scale (Laplacian pyramid bands)")
    b.add_argument("--cache", type=Path, nargs="+", required=True)
    b.add_argument("--checkpoint", type=Path, nargs="+", required=True, help="weights files or run folders")
    b.add_argument("--n", type=int, default=24, help="triplets per cache (the first n)")
    b.add_argument("--levels", type=int, default=5)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--json", type=Path)
    b.set_defaults(func=cmd_bands)
    r = sub.add_parser("probe", help="fit a full-resolution detail head on the frozen student: is the content's "
                       "detail what it lacks?")
    r.add_argument("--checkpoint", type=Path, default=DEFAULT_WEIGHTS)
    r.add_argument("--train", type=Path, required=True, help="cache the head is fitted on (all its triplets)")
    r.add_argument("--cache", type=Path, nargs="+", required=True, help="caches it is scored on (and --train)")
    r.add_argument("--n", type=int, default=24, help="triplets per scoring cache (the first n)")
    r.add_argument("--steps", type=int, default=1000)
    r.add_argument("--batch-size", type=int, default=8)
    r.add_argument("--crop", type=int, default=128)
    r.add_argument("--lr", type=float, default=1e-3)
    r.add_argument("--width", type=int, default=32)
    r.add_argument("--depth", type=int, default=3)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--json", type=Path)
    r.set_defaults(func=cmd_probe)
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
