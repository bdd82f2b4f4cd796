"""Temporal consistency of `mambast video`: warping error, style/content loss and frames/s, per configuration.

Clips (generated, nothing downloaded):
    camera  a still development image (../shared/images/dev/content) filmed by a known camera path: a pan right
            (3 px/frame), a pan down (3 px/frame), a zoom in (1.5 %/frame); frames 256 x 320 px
    scene   a synthetic scene: three textured objects (cut from other development images) moving and one
            rotating over a slowly panning background, with occlusions; frames 256 x 320 px

Configurations (bundled default model, `mambast.load()`, one style image):
    per-frame   every frame stylized alone with the style shuffle redrawn (today's `mambast stylize` on frames)
    fixed       the style encoded once, one shuffle seed for the whole video (`mambast video --stability 0`)
    S=...       fixed + the flow-guided blend `--stability S` (a sweep; the table shows the chosen strengths)

Scores: short-term (t, t+1) and long-term (t, t+10) warping error (`mambast.metrics.warping_error`, DIS flow on
the inputs: not comparable with FlowNet2/RAFT tables); for the camera clip also with the exact flow of the
known camera path; the paper's style and content losses (`mambast.losses`) of every 3rd output frame against
the style image and the input frame, with the VGG-16 given by --vgg (HED-converted: `mambast weights
convert-hed`), else a VGG-16 with RANDOM weights (labelled so in the output).

Frames/s (first, alone with --throughput-only): the camera clip as an H.264 MP4 at 256 and 512 px short side;
the model calls alone (batches of 4, frames decoded and resized beforehand; in the caller's thread and in a
fresh thread, where the pipeline runs it) and the whole `mambast video` pipeline (decode, model, flow blend at
the default --stability, H.264 encode) with its stages overlapped in threads (the default) and one after the
other; the four alternated in each round, medians over rounds; CPU seconds per frame (all threads) beside.

    python benchmarks/video.py --throughput-only --json-throughput benchmarks/results/video_throughput_cpu.json
    OMP_WAIT_POLICY=passive python benchmarks/video.py --throughput-only \
        --json-throughput benchmarks/results/video_throughput_cpu_passive.json
    python benchmarks/video.py --vgg vgg16_hed.pth --fps-sizes "" --json benchmarks/results/video.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mambast.images import load_image, plan_size, to_tensor  # noqa: E402
from mambast.inference import Controls, Stylizer  # noqa: E402
from mambast.inference.engine import draw_seed  # noqa: E402
from mambast.io import load  # noqa: E402
from mambast.losses import content_loss, style_loss  # noqa: E402
from mambast.metrics.warping import warping_error  # noqa: E402
from mambast.nets.vgg import load_vgg  # noqa: E402
from mambast.video import VideoReader, VideoWriter, stylize_video  # noqa: E402
from mambast.video.stabilise import Stabiliser  # noqa: E402

DEV = REPO.parent / "shared" / "images" / "dev"
H, W = 256, 320


# ------------------------------------------------------------------------------------------------- clips


def camera_path(frames: int) -> list[tuple[float, float, float]]:
    """(zoom z, offset ox, oy) per frame: frame pixel x shows source pixel z * x + o. Pan right 3 px/frame,
    then down 3 px/frame, then zoom in 1.5 %/frame about the frame centre."""
    third = frames // 3
    path, z, ox, oy = [], 1.0, 60.0, 60.0
    for t in range(frames):
        if 0 < t <= third:
            ox += 3
        elif third < t <= 2 * third:
            oy += 3
        elif t > 2 * third:
            cx, cy = z * W / 2 + ox, z * H / 2 + oy  # keep the source point under the centre fixed
            z /= 1.015
            ox, oy = cx - z * W / 2, cy - z * H / 2
        path.append((z, ox, oy))
    return path


def camera_clip(image: Path, frames: int) -> tuple[list[np.ndarray], Callable[[int, int], np.ndarray]]:
    """Frames (H, W, 3) uint8 of `image` seen through `camera_path`, and the exact flow(i, j)."""
    src = np.asarray(load_image(image))
    path = camera_path(frames)
    clip = [cv2.warpAffine(src, np.float32([[z, 0, ox], [0, z, oy]]), (W, H),
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
            for z, ox, oy in path]
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)

    def flow(i: int, j: int) -> np.ndarray:
        (zi, oxi, oyi), (zj, oxj, oyj) = path[i], path[j]
        return np.stack([(zi * xs + oxi - oxj) / zj - xs, (zi * ys + oyi - oyj) / zj - ys], -1)

    return clip, flow


def scene_clip(background: Path, objects: list[Path], frames: int) -> list[np.ndarray]:
    """A background panning 1 px/frame with three textured objects: a disc moving right, a square moving
    down-left and rotating, an ellipse moving up (they overlap: occlusions)."""
    bg = np.asarray(load_image(background))
    textures = [np.asarray(load_image(p).resize((160, 160))) for p in objects]
    clip = []
    for t in range(frames):
        frame = bg[40: 40 + H, 40 + t: 40 + t + W].copy()
        specs = [  # (texture, centre x, centre y, angle, shape)
            (textures[0], 40 + 6 * t, 90, 0.0, "disc"),
            (textures[1], 250 - 4 * t, 40 + 3 * t, 3.0 * t, "square"),
            (textures[2], 160, 230 - 5 * t, 0.0, "ellipse"),
        ]
        for tex, cx, cy, angle, shape in specs:
            m = cv2.getRotationMatrix2D((80, 80), angle, 1.0)
            m[:, 2] += (cx - 80, cy - 80)
            layer = cv2.warpAffine(tex, m, (W, H), flags=cv2.INTER_LINEAR)
            alpha = np.zeros((160, 160), np.uint8)
            if shape == "disc":
                cv2.circle(alpha, (80, 80), 55, 255, -1)
            elif shape == "square":
                alpha[30:130, 30:130] = 255
            else:
                cv2.ellipse(alpha, (80, 80), (70, 40), 0, 0, 360, 255, -1)
            a = cv2.warpAffine(alpha, m, (W, H), flags=cv2.INTER_LINEAR)[..., None] / 255.0
            frame = (frame * (1 - a) + layer * a).astype(np.uint8)
        clip.append(frame)
    return clip


# ---------------------------------------------------------------------------------------------- running


def to_batch(frames: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div(255)  # (B, 3, H, W)


def stylize_clip(stylizer: Stylizer, clip: list[np.ndarray], style, redraw: bool, batch: int = 4):
    """Outputs (H, W, 3) float32 in [0, 1] per frame, and the model's frames/s (style encoding excluded)."""
    controls = Controls(seed=0)
    tokens = stylizer.style_tokens(style, stylizer.grid(W, H), controls)  # encoded once (cached anyway)
    outs, seconds = [], 0.0
    for k in range(0, len(clip), batch):
        x = to_batch(clip[k: k + batch])
        seeds = [draw_seed() for _ in range(len(x))] if redraw else None
        start = time.perf_counter()
        y = stylizer.stylize_tensor(x, [tokens], controls, seeds)
        seconds += time.perf_counter() - start
        outs += list(y.float().clamp(0, 1).permute(0, 2, 3, 1).numpy())
    return outs, len(clip) / seconds


def stabilise(clip: list[np.ndarray], outs: list[np.ndarray], strength: float) -> tuple[list[np.ndarray], float]:
    """Outputs blended with `Stabiliser(strength)`, quantised to 8 bits as written; seconds per frame."""
    stab = Stabiliser(strength)
    start = time.perf_counter()
    res = [stab(f, o) for f, o in zip(clip, outs, strict=True)]
    per_frame = (time.perf_counter() - start) / len(clip)
    return [np.round(r * 255) / 255 for r in res], per_frame


@torch.no_grad()
def losses(vgg, clip, outs, style_img, every: int = 3) -> tuple[float, float]:
    """Mean paper style loss (vs the style image at frame size) and content loss of every `every`-th frame."""
    style = to_batch([np.asarray(style_img.resize((W, H)))])
    fs = vgg(style)
    s_sum = c_sum = 0.0
    idx = list(range(0, len(clip), every))
    for i in idx:
        fo = vgg(torch.from_numpy(outs[i]).permute(2, 0, 1)[None].float())
        fc = vgg(to_batch([clip[i]]))
        s_sum += float(style_loss(fo, fs))
        c_sum += float(content_loss(fo, fc))
    return s_sum / len(idx), c_sum / len(idx)


def _clip_file(folder: Path, size: int, frames: int) -> Path:
    """The camera clip upscaled to `size` px short side (H.264 in an MP4, what users give `mambast video`)."""
    clip, _ = camera_clip(DEV / "content" / "00.jpg", frames)
    src = folder / f"in_{size}.mp4"
    width = round(W * size / H)
    with VideoWriter(src, Fraction(30000, 1001), width, size) as w:
        for f in clip:
            w.write(cv2.resize(f, (width, size), interpolation=cv2.INTER_LINEAR))
    return src


def model_only_fps(stylizer: Stylizer, src: Path, style, batch: int = 4) -> tuple[float, float]:
    """(frames/s, CPU s per frame: all threads) of the model calls alone, as `mambast video` makes them
    (batches of `batch`, style encoded once, one shuffle seed): frames decoded and resized beforehand, not
    timed."""
    with VideoReader(src) as r:
        images = [stylizer.prepare_content(Image.fromarray(f)) for f in r.frames()]
    x_all = torch.stack([to_tensor(im) for im in images])
    controls = Controls(seed=0)
    tokens = stylizer.style_tokens(style, stylizer.grid(*images[0].size), controls, x_all[0])
    start, cpu = time.perf_counter(), time.process_time()
    for k in range(0, len(x_all), batch):
        out = stylizer.render(stylizer.encode_content(x_all[k: k + batch]), [tokens], controls)
        out.float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    return len(x_all) / (time.perf_counter() - start), (time.process_time() - cpu) / len(x_all)


def in_thread(fn, *args):
    """fn(*args) in a fresh thread, as `mambast video` runs the model (see `throughput`), -> its result."""
    result = []
    thread = threading.Thread(target=lambda: result.append(fn(*args)))
    thread.start()
    thread.join()
    return result[0]


def pipeline_fps(stylizer: Stylizer, src: Path, style, stability: float, overlap: bool) -> tuple[float, float]:
    """(frames/s, CPU s per frame) of the whole `mambast video` path (decode, model in batches of 4, flow blend,
    H.264 encode), stages overlapped in threads or one after the other (`overlap`)."""
    cpu = time.process_time()
    report = stylize_video(stylizer, src, style, src.with_name("out.mp4"), Controls(), batch_size=4,
                           stability=stability, progress=False, overwrite=True, overlap=overlap)
    return report.frames / report.seconds, (time.process_time() - cpu) / report.frames


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what platform says."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# The model alone in the caller's thread and in a fresh one (where the overlapped pipeline runs it): under
# load, OpenMP's spin-waiting made the main thread's calls several times slower (OMP_WAIT_POLICY=passive
# removes the difference); the ratios use the faster of the two.
VARIANTS = ("model only (main thread)", "model only (worker thread)", "pipeline, overlapped", "pipeline, serial")


def throughput(model, sizes: list[int], frames: int, rounds: int, style, stability: float) -> list[dict]:
    """Per size: model-only, pipeline (overlapped) and pipeline (serial) frames/s, the three alternated within
    each round (the machine is shared: alternating spreads the load over all three); medians over rounds."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            src = _clip_file(Path(tmp), size, frames)
            stylizer = Stylizer(model, size=size)  # one engine: the style encoding is cached for every run
            pipeline_fps(stylizer, src, style, stability, True)  # warm-up (caches, allocator, threads)
            runs: dict[str, list[float]] = {k: [] for k in VARIANTS}
            cpu: dict[str, list[float]] = {k: [] for k in runs}
            for r in range(rounds):
                for name in runs:
                    if name.startswith("model only"):
                        run = (in_thread if name.endswith("thread)") else lambda f, *a: f(*a))
                        fps, cpu_s = run(model_only_fps, stylizer, src, style)
                    else:
                        fps, cpu_s = pipeline_fps(stylizer, src, style, stability, name.endswith("overlapped"))
                    runs[name].append(fps)
                    cpu[name].append(cpu_s)
                print(f"  [{size} px, round {r + 1}] " + ", ".join(
                    f"{k} {v[-1]:.3f} frames/s ({cpu[k][-1]:.3f} CPU s/frame)" for k, v in runs.items()), flush=True)
            with VideoReader(src) as rd:
                w, h = plan_size(rd.info.width, rd.info.height, size)
            med = {k: float(np.median(v)) for k, v in runs.items()}
            best = max(med["model only (main thread)"], med["model only (worker thread)"])  # the faster
            rows.append({"size": size, "frame": [w, h], "frames": frames, "rounds": rounds,
                         "stability": stability, "fps": runs, "median_fps": med, "cpu_s_per_frame": cpu,
                         "median_cpu_s_per_frame": {k: float(np.median(v)) for k, v in cpu.items()},
                         "overlapped_vs_model": med["pipeline, overlapped"] / best,
                         "serial_vs_model": med["pipeline, serial"] / best,
                         "precision": getattr(stylizer, "precision", "fp32")})
    return rows


def throughput_table(rows: list[dict]) -> str:
    lines = ["| output frame | model only, main thread (frames/s) | model only, worker thread | whole pipeline, "
             "overlapped | vs model | whole pipeline, serial | vs model |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["median_fps"]
        lines.append(f"| {r['frame'][0]} x {r['frame'][1]} | {m[VARIANTS[0]]:.2f} | {m[VARIANTS[1]]:.2f} | "
                     f"{m['pipeline, overlapped']:.2f} | {r['overlapped_vs_model']:.0%} | "
                     f"{m['pipeline, serial']:.2f} | {r['serial_vs_model']:.0%} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- report


def table(rows: list[dict], base: dict) -> str:
    head = ("| clip | configuration | warping error short (DIS) | vs per-frame | long-term (t, t+10) | "
            "short, exact flow | style loss | vs per-frame | content loss | model frames/s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        b = base[r["clip"]]
        exact = f"{r['short_exact']:.5f}" if r.get("short_exact") is not None else "-"
        long = f"{r['long']:.5f}" if r["long"] is not None else "-"
        lines.append(f"| {r['clip']} | {r['config']} | {r['short']:.5f} | {r['short'] / b['short']:.2f} | {long} | "
                     f"{exact} | {r['style']:.3f} | {r['style'] / b['style'] - 1:+.1%} | {r['content']:.3f} | "
                     f"{r['fps']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--style", default=str(DEV / "style" / "03.jpg"))
    p.add_argument("--vgg", default=None, help="VGG-16 loss network (mambast weights convert-hed); "
                                               "default: random weights (labelled)")
    p.add_argument("--strengths", default="0.2,0.3,0.4,0.6", help="--stability values swept")
    p.add_argument("--fps-frames", type=int, default=24, help="frames of the clip of the frames/s runs")
    p.add_argument("--fps-sizes", default="256,512")
    p.add_argument("--fps-rounds", type=int, default=2, help="rounds of the alternated frames/s runs (median)")
    p.add_argument("--throughput-only", action="store_true", help="only the frames/s table (no quality sweep)")
    p.add_argument("--json", default=None, help="quality sweep results (JSON)")
    p.add_argument("--json-throughput", default=None, help="frames/s results (JSON)")
    args = p.parse_args(argv)
    torch.manual_seed(0)

    model = load(None)  # the bundled default model
    style_img = load_image(args.style)
    from mambast.video import DEFAULT_STABILITY

    machine = {"cpu": cpu_model(), "threads": torch.get_num_threads(), "torch": torch.__version__,
               "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
               "note": "shared machine: other jobs ran at the same time; variants alternated within each round"}
    sizes = [int(s) for s in args.fps_sizes.split(",") if s]
    if sizes:
        print(f"frames/s ({args.fps_frames}-frame clip, {args.fps_rounds} rounds, stability {DEFAULT_STABILITY}; "
              f"CPU {machine['cpu']}, {machine['threads']} threads)", flush=True)
        rows = throughput(model, sizes, args.fps_frames, args.fps_rounds, style_img, DEFAULT_STABILITY)
        print(throughput_table(rows), flush=True)
        if args.json_throughput:
            out = Path(args.json_throughput)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"machine": machine, "model": "bundled default (mambast.load())",
                                       "style": _relative(args.style), "batch_size": 4, "rows": rows,
                                       "command": "python benchmarks/video.py " + " ".join(argv or sys.argv[1:])},
                                      indent=1))
    if args.throughput_only:
        return 0
    stylizer = Stylizer(model, size=None)
    if args.vgg:
        vgg, vgg_label = load_vgg(args.vgg), f"VGG-16 {Path(args.vgg).name}"
    else:
        vgg, vgg_label = load_vgg(None, layout="vgg16", allow_random=True), "VGG-16 with RANDOM weights"
    vgg.eval()
    strengths = [float(s) for s in args.strengths.split(",")]

    clips = {"camera": camera_clip(DEV / "content" / "00.jpg", args.frames),
             "scene": (scene_clip(DEV / "content" / "05.jpg",
                                  [DEV / "content" / f"{i:02d}.jpg" for i in (11, 14, 17)], args.frames), None)}
    rows, base = [], {}
    for name, (clip, exact_flow) in clips.items():
        print(f"[{name}] {len(clip)} frames {W} x {H}", flush=True)
        runs = {}
        for config, redraw in (("per-frame (shuffle redrawn)", True), ("fixed style + shuffle", False)):
            outs, fps = stylize_clip(stylizer, clip, style_img, redraw)
            runs[config] = (outs, fps, 0.0)
        fixed, fixed_fps, _ = runs["fixed style + shuffle"]
        for s in strengths:
            outs, per_frame = stabilise(clip, fixed, s)
            runs[f"fixed + stability {s:g}"] = (outs, 1 / (1 / fixed_fps + per_frame), per_frame)
        for config, (outs, fps, flow_s) in runs.items():
            quant = [np.round(o * 255) / 255 for o in outs]  # as written (8 bits)
            e = warping_error(clip, quant)
            ex = warping_error(clip, quant, flow=exact_flow) if exact_flow else None
            st, ct = losses(vgg, clip, quant, style_img)
            row = {"clip": name, "config": config, "short": e.short_term, "long": e.long_term,
                   "masked": e.masked, "short_exact": ex.short_term if ex else None,
                   "long_exact": ex.long_term if ex else None, "style": st, "content": ct, "fps": fps,
                   "blend_s_per_frame": flow_s}
            rows.append(row)
            if config.startswith("per-frame"):
                base[name] = row
            print(f"  {config:32s} short {e.short_term:.5f} long {e.long_term or float('nan'):.5f} "
                  f"exact {row['short_exact'] or float('nan'):.5f} style {st:.3f} content {ct:.3f} "
                  f"fps {fps:.2f}", flush=True)

    print(f"\nloss network: {vgg_label}; CPU: {machine['cpu']}, {machine['threads']} threads (shared machine)\n")
    print(table(rows, base))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"rows": rows, "vgg": vgg_label, "machine": machine,
                                               "frames": args.frames, "size": [W, H], "style": _relative(args.style),
                                               "default_stability": DEFAULT_STABILITY}, indent=1))
    return 0


def _relative(path: str) -> str:
    """A path relative to the repository when it lies in or beside it (results must not name this machine)."""
    p = Path(path).resolve()
    for root, prefix in ((REPO, ""), (REPO.parent, "../")):
        with contextlib.suppress(ValueError):
            return prefix + p.relative_to(root).as_posix()
    return p.name


if __name__ == "__main__":
    raise SystemExit(main())
