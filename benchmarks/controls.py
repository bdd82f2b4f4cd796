"""The creative controls, measured and pictured (issue: alpha, colour, style mixing, masks).

    python benchmarks/controls.py --vgg vgg16_hed.pth --json benchmarks/results/controls_cpu.json \
        --pictures docs/controls

1. Alpha sweep on the evaluation pairs (every content x the first --styles styles of ../shared/images/eval,
   --size px, seed 0): the paper's content and style losses (mambast.losses, VGG loss network from --vgg,
   e.g. the HED VGG-16 of `mambast weights convert-hed`) of the output for each alpha. Style loss should fall
   as alpha rises and content loss rise.
2. Colour preservation: mean |Cb, Cr| difference between output and content, plain vs "luminance" vs "match".
3. --pictures DIR: one picture per control made with the model (default: the bundled one) on the bundled
   example pair and a second style from the development set: alpha sweep, colour preservation, two-style
   mix, mask.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import mambast  # noqa: E402
from mambast.images import list_images, load_image, to_tensor  # noqa: E402
from mambast.inference import Controls, Stylizer  # noqa: E402
from mambast.inference.colour import rgb_to_ycbcr  # noqa: E402
from mambast.losses import content_loss, style_loss  # noqa: E402

EVAL = REPO.parent / "shared" / "images" / "eval"
EXAMPLES = REPO / "mambast" / "assets" / "examples"
SECOND_STYLE = REPO.parent / "shared" / "images" / "dev" / "style"


def alpha_sweep(engine: Stylizer, vgg, alphas: list[float], n_styles: int) -> dict:
    contents = list_images(EVAL / "content")
    styles = list_images(EVAL / "style")[:n_styles]
    sums = {a: {"content": 0.0, "style": 0.0, "chroma": 0.0} for a in alphas}
    n = 0
    for c_path in contents:
        c_img = engine.prepare_content(c_path)
        c = to_tensor(c_img)[None]
        enc = engine.encode_content(c)
        grid = engine.grid(*c_img.size)
        with torch.inference_mode():
            fc = vgg(c)
        for s_path in styles:
            tokens = engine.style_tokens(s_path, grid)
            s = to_tensor(load_image(s_path).resize(c_img.size, Image.LANCZOS))[None]
            with torch.inference_mode():
                fs = vgg(s)
                for a in alphas:
                    out = engine.render(enc, [tokens], Controls(alpha=a, seed=0)).clamp(0, 1)
                    fo = vgg(out)
                    sums[a]["content"] += content_loss(fo, fc).item()
                    sums[a]["style"] += style_loss(fo, fs).item()
            n += 1
    return {"pairs": n, "by_alpha": {str(a): {k: v / n for k, v in d.items() if k != "chroma"}
                                     for a, d in sums.items()}}


def colour_figures(engine: Stylizer, n_styles: int) -> dict:
    contents = list_images(EVAL / "content")
    styles = list_images(EVAL / "style")[:n_styles]
    diffs = {"plain": [], "luminance": [], "match": []}
    for c_path in contents:
        for s_path in styles:
            c = to_tensor(engine.prepare_content(c_path))
            for method in diffs:
                ctl = Controls(seed=0, preserve_color=None if method == "plain" else method)
                out = to_tensor(engine.stylize(c_path, s_path, ctl))
                diffs[method].append((rgb_to_ycbcr(out)[1:] - rgb_to_ycbcr(c)[1:]).abs().mean().item() * 255)
    return {m: float(np.mean(v)) for m, v in diffs.items()}


def _label(img: Image.Image, text: str) -> Image.Image:
    out = Image.new("RGB", (img.width, img.height + 18), "white")
    out.paste(img, (0, 18))
    ImageDraw.Draw(out).text((4, 3), text, fill="black")
    return out


def _strip(images: list[tuple[str, Image.Image]], height: int = 192) -> Image.Image:
    tiles = [_label(im.resize((round(im.width * height / im.height), height), Image.LANCZOS), t)
             for t, im in images]
    out = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), tiles[0].height), "white")
    x = 0
    for t in tiles:
        out.paste(t, (x, 0))
        x += t.width + 4
    return out


def pictures(engine: Stylizer, out_dir: Path, second_style: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    content, style = EXAMPLES / "astronaut.jpg", EXAMPLES / "renoir_gondola.jpg"
    c_img, s_img, s2_img = load_image(content), load_image(style), load_image(second_style)
    written = []

    def save(name: str, strip: Image.Image):
        path = out_dir / name
        strip.save(path, quality=88)
        written.append(path)

    sweep = [(f"alpha {a}", engine.stylize(content, style, Controls(alpha=a, seed=0)))
             for a in (0.0, 0.25, 0.5, 0.75, 1.0)]
    save("alpha.jpg", _strip([("content", c_img), *sweep, ("style", s_img)]))
    save("colour.jpg", _strip([("content", c_img), ("style", s_img),
                               ("plain", engine.stylize(content, style, Controls(seed=0))),
                               ("--preserve-color luminance",
                                engine.stylize(content, style, Controls(seed=0, preserve_color="luminance"))),
                               ("--preserve-color match",
                                engine.stylize(content, style, Controls(seed=0, preserve_color="match")))]))
    mix = [(f"{w:.2f} / {1 - w:.2f}", engine.stylize(content, [style, second_style],
                                                     Controls(seed=0, style_weights=(w, 1 - w))))
           for w in (1.0, 0.75, 0.5, 0.25, 0.0)]
    save("mix.jpg", _strip([("style A", s_img), *mix, ("style B", s2_img)]))
    w, h = engine.prepare_content(content).size
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).ellipse((w * 0.18, h * 0.02, w * 0.82, h * 0.75), fill=255)
    masked = engine.stylize(content, [style, second_style], Controls(seed=0, mask=mask))
    save("mask.jpg", _strip([("content", c_img), ("mask (dark: A, light: B)", mask.convert("RGB")),
                             ("style A", s_img), ("style B", s2_img), ("--mask", masked)]))
    return written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vgg", type=Path, default=None, help="VGG loss network for the alpha sweep")
    p.add_argument("--checkpoint", default=None, help="default: the bundled model")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--styles", type=int, default=4, help="eval styles per content in the sweep")
    p.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    p.add_argument("--pictures", type=Path, default=None)
    p.add_argument("--second-style", type=Path, default=None, help="style B of the mix/mask pictures")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(2)
    model = mambast.load(args.checkpoint)
    engine = Stylizer(model, size=args.size)
    result: dict = {"checkpoint": args.checkpoint or "bundled default", "size": args.size}
    t = time.perf_counter()
    if args.vgg:
        from mambast.nets.vgg import load_vgg

        result["alpha_sweep"] = alpha_sweep(engine, load_vgg(args.vgg).eval(), args.alphas, args.styles)
        for a, d in result["alpha_sweep"]["by_alpha"].items():
            print(f"alpha {a}: content {d['content']:.3f}  style {d['style']:.3f}")
    result["chroma_diff_255"] = colour_figures(engine, args.styles)
    print("mean |CbCr(output) - CbCr(content)| (0-255):", result["chroma_diff_255"])
    if args.pictures:
        second = args.second_style or sorted(list_images(SECOND_STYLE))[0]
        result["pictures"] = [str(x) for x in pictures(engine, args.pictures, second)]
        result["second_style"] = str(Path(second).name)
    result["seconds"] = time.perf_counter() - t
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
