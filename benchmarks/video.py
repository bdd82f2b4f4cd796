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
convert-hed`), else a VGG-16 with RANDOM weights (labelled so in the output). frames/s: the model alone
(batches of 4) and the whole `mambast video` pipeline (decode, model, flow blend, H.264 encode) at 256 and 512 px.

    python benchmarks/video.py --vgg vgg16_hed.pth --json benchmarks/results/video.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mambast.images import load_image  # noqa: E402
from mambast.inference import Controls, Stylizer  # noqa: E402
from mambast.inference.engine import draw_seed  # noqa: E402
from mambast.io import load  # noqa: E402
from mambast.losses import content_loss, style_loss  # noqa: E402
from mambast.metrics.warping import warping_error  # noqa: E402
from mambast.nets.vgg import load_vgg  # noqa: E402
from mambast.video import VideoWriter, stylize_video  # noqa: E402
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


def pipeline_fps(model, size: int, frames: int, style, stability: float) -> float:
    """Frames/s of the whole `mambast video` path (decode, model in batches of 4, blend, H.264 encode) on a
    short camera clip upscaled to `size` px short side."""
    clip, _ = camera_clip(DEV / "content" / "00.jpg", frames)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.mp4"
        scale = size / H
        with VideoWriter(src, Fraction(30000, 1001), round(W * scale), size) as w:
            for f in clip:
                w.write(cv2.resize(f, (round(W * scale), size), interpolation=cv2.INTER_LINEAR))
        report = stylize_video(Stylizer(model, size=size), src, style, Path(tmp) / "out.mp4", Controls(),
                               batch_size=4, stability=stability, progress=False)
    return report.frames / report.seconds


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
    p.add_argument("--fps-frames", type=int, default=8, help="frames of the pipeline frames/s runs")
    p.add_argument("--fps-sizes", default="256,512")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.manual_seed(0)

    model = load(None)  # the bundled default model
    stylizer = Stylizer(model, size=None)
    style_img = load_image(args.style)
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

    sizes = [int(s) for s in args.fps_sizes.split(",") if s]
    from mambast.video import DEFAULT_STABILITY

    pipeline = {}
    for size in sizes:
        pipeline[size] = pipeline_fps(model, size, args.fps_frames, style_img, DEFAULT_STABILITY)
        print(f"pipeline ({size} px short side, stability {DEFAULT_STABILITY}): {pipeline[size]:.2f} frames/s",
              flush=True)

    print(f"\nloss network: {vgg_label}; CPU: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads (shared machine)\n")
    print(table(rows, base))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"rows": rows, "pipeline_fps": pipeline, "vgg": vgg_label,
                                               "frames": args.frames, "size": [W, H], "style": args.style,
                                               "default_stability": DEFAULT_STABILITY}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
