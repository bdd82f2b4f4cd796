"""Distillation of a Mamba-ST student from a teacher's cached outputs (the bundled default model's recipe).

Training-only: the teacher (Magenta's arbitrary-stylization network, ONNX, run with onnxruntime; install
`mambast[distill]`) is needed only to build the cache; the training loop itself needs torch and the loss VGG.

    cache  N augmented (content, style) pairs at `size` px and the teacher's output for each, as uint8 shards
           (content, style, teacher: (n, size, size, 3) each) in one folder
    train  student(c, s) against the teacher output t on random crops of the cached triplets:
           loss = w_pixel L1(o, t) + w_feature sum_{relu1_1..relu3_1} MSE(F(o), F(t))
                  + w_teacher_style style(o, t)  (mean-std of relu1_1..relu4_1 matched to the teacher's output)
                  + w_content content(o, c) + w_style style(o, s)          (F: the frozen loss VGG)
           teacher_style is the paper's style term aimed at the teacher's output instead of the style image:
           a texture-level target that agrees with the pixel term (the style image's statistics pull
           against it) and penalises the washed-out, regressed-to-the-mean colours a pixel loss alone leaves.

Training runs in the one training loop (`mambast.train.loop.train`): `DistillConfig.train_config()` is a
TrainConfig whose `distill` field selects `DistillObjective` (the cached triplets as the data stream, the terms
above as the loss), so a distillation run folder is a training run folder like any other (config.json,
checkpoints/step_N.pt, metrics.jsonl; `mambast.load(RUN)` reads it, `mambast train --resume RUN` continues it).
Every step's crops are drawn from (seed, step), so a resumed run continues exactly where it stopped.

    from mambast.train.distill import DistillConfig, distill
    result = distill(DistillConfig(cache_dir="cache", vgg="vgg16_hed_norm.pth", device="cuda"), "runs/d1")
    result.checkpoint, result.step, result.losses        # a mambast.train.loop.TrainResult
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance

from ..config import MambaSTConfig
from ..errors import UserError
from ..fs import atomic_write, ensure_dir
from ..images import list_images, load_image, uint8_to_unit, unit_to_uint8
from ..io.run import is_legacy_distill_run, latest_checkpoint, read_run_config
from ..model import MambaST
from .config import TrainConfig
from .distill_objective import (  # noqa: F401 - the objective's parts, re-exported with the recipe
    DistillObjective,
    Triplets,
    batch_at,
    distill_terms,
    load_cache,
    teacher_features,
)
from .distributed import DistContext

MAGENTA_INPUTS = ("content_image", "mobilenet_conv/Conv/BiasAdd")


# ----------------------------------------------------------------------------------------------- teacher


class MagentaTeacher:
    """Magenta's arbitrary-stylization network (Ghiasi et al. 2017) from two ONNX files, at any image size.

    predict_onnx: style image (1, 256, 256, 3) in [0, 1] -> style vector (1, 1, 1, 100);
    transform_onnx: content (1, H, W, 3) in [0, 1] + style vector -> stylized (1, H, W, 3) in [0, 1]. The
    transform file is exported for 384 x 384; its H and W are made symbolic here (the graph is convolutional).
    """

    def __init__(self, predict_onnx: str | Path, transform_onnx: str | Path, threads: int = 1) -> None:
        try:
            import onnx
            import onnxruntime as ort
        except ImportError as e:
            raise UserError("the distillation teacher needs onnx and onnxruntime: "
                            "pip install 'mambast[distill]'") from e
        model = onnx.load(str(transform_onnx))
        for value in (model.graph.input[0], model.graph.output[0]):
            dims = value.type.tensor_type.shape.dim
            for i, name in ((1, "H"), (2, "W")):
                dims[i].ClearField("dim_value")
                dims[i].dim_param = name
        del model.graph.value_info[:]  # stale 384-px shapes of the intermediate tensors
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        cpu = ["CPUExecutionProvider"]
        self.predict = ort.InferenceSession(str(predict_onnx), options, providers=cpu)
        self.transform = ort.InferenceSession(model.SerializeToString(), options, providers=cpu)

    def style_vector(self, style: np.ndarray) -> np.ndarray:
        """style: (256, 256, 3) uint8 -> (1, 1, 1, 100) float32."""
        x = uint8_to_unit(style)[None]
        return self.predict.run(None, {self.predict.get_inputs()[0].name: x})[0]

    def __call__(self, content: np.ndarray, style: np.ndarray) -> np.ndarray:
        """content: (H, W, 3) uint8, style: (256, 256, 3) uint8 -> stylized (H, W, 3) uint8."""
        x = uint8_to_unit(content)[None]
        out = self.transform.run(None, {MAGENTA_INPUTS[0]: x, MAGENTA_INPUTS[1]: self.style_vector(style)})[0][0]
        return unit_to_uint8(out)


# ----------------------------------------------------------------------------------------------- cache


def random_square(img: Image.Image, size: int, rng: np.random.Generator, min_frac: float, p_full: float) -> Image.Image:
    """A random square crop (side min_frac..1 of the short side; the whole centre square with p_full), resized
    to size x size (bicubic), flipped left-right with p = 0.5."""
    w, h = img.size
    short = min(w, h)
    side = short if rng.random() < p_full else int(rng.integers(max(16, round(min_frac * short)), short + 1))
    left, top = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    out = img.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
    return out.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else out


def jitter_colour(img: Image.Image, rng: np.random.Generator, p: float = 0.5, hue: float = 0.1) -> Image.Image:
    """Style colour jitter (with probability p): hue rotation up to +-hue turn, saturation x0.6..1.4, brightness
    x0.8..1.2. hue = 0.5 gives any hue: the student then has to read the palette from the style."""
    if rng.random() >= p:
        return img
    hsv = np.array(img.convert("HSV"), dtype=np.int16)
    hsv[..., 0] = (hsv[..., 0] + int(rng.uniform(-hue, hue) * 256)) % 256
    img = Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")
    img = ImageEnhance.Color(img).enhance(rng.uniform(0.6, 1.4))
    return ImageEnhance.Brightness(img).enhance(rng.uniform(0.8, 1.2))


def build_cache(teacher: MagentaTeacher, content_dirs: list[Path], style_dirs: list[Path], out_dir: Path,
                pairs: int, size: int = 256, shard: int = 100, seed: int = 0, jitter_p: float = 0.5,
                jitter_hue: float = 0.1) -> list[Path]:
    """Write `pairs` augmented (content, style, teacher output) triplets as shards shard_00000.npz, ...

    Contents: random crops (40-100 % of the short side, the whole image with p = 0.3) at size px, flips.
    Styles: random crops (30-100 %, whole with p = 0.3) at 256 px (the teacher's style size), flips, colour
    jitter (jitter_colour(p=jitter_p, hue=jitter_hue)). Existing shards are kept (an interrupted build
    continues; a bigger `pairs` with other settings appends shards built with those). Returns the shard paths.
    """
    contents = [p for d in content_dirs for p in list_images(d)]
    styles = [p for d in style_dirs for p in list_images(d)]
    if not contents or not styles:
        raise UserError(f"no images in content_dirs {content_dirs} or style_dirs {style_dirs}")
    ensure_dir(out_dir)
    cache: dict[Path, Image.Image] = {}

    def image(path: Path) -> Image.Image:
        if path not in cache:
            cache[path] = load_image(path)
        return cache[path]

    paths = []
    for k in range(0, pairs, shard):
        path = out_dir / f"shard_{k // shard:05d}.npz"
        paths.append(path)
        if path.exists():
            continue
        rng = np.random.default_rng([seed, k])
        c, s, t = [], [], []
        for _ in range(min(shard, pairs - k)):
            ci = np.asarray(random_square(image(contents[rng.integers(len(contents))]), size, rng, 0.4, 0.3))
            si = random_square(image(styles[rng.integers(len(styles))]), 256, rng, 0.3, 0.3)
            si = np.asarray(jitter_colour(si, rng, jitter_p, jitter_hue))
            c.append(ci), s.append(si), t.append(teacher(ci, si))
        arrays = {"content": np.stack(c), "style": np.stack(s), "teacher": np.stack(t)}
        atomic_write(path, lambda f, a=arrays: np.savez(f, **a))
        print(f"{path.name}: {len(c)} pairs", flush=True)
    return paths


# ----------------------------------------------------------------------------------------------- training


@dataclass
class DistillConfig:
    """One distillation run, as the flat recipe benchmarks/train_default.py distill gives; `train_config()` is the
    TrainConfig the training loop runs. crop: training crop side (px) taken from the cached `size`-px triplets
    (the style crop is an independent crop of the style, so both keep the teacher's texture scale). weights:
    of the terms pixel, feature, teacher_style, content, style (see the module docstring)."""

    model: dict = field(default_factory=lambda: MambaSTConfig().to_dict())
    cache_dir: str = ""
    vgg: str = ""
    init_from: str | None = None
    widen_noise: float | None = None  # set: init_from is doubled in width first (train/widen.py), this noise
    grow: dict | None = None  # set: init_from is grown first (train/widen.grow's keyword arguments)
    crop: int = 128
    batch_size: int = 4
    lr: float = 3e-4
    warmup: int = 100
    lr_decay_to: float = 1.0  # lr at max_iter as a fraction of lr (linear after warm-up); 1 = constant
    max_iter: int = 10_000
    weights: dict = field(default_factory=lambda: {"pixel": 1.0, "feature": 0.1, "content": 0.0, "style": 0.0})
    amp_bf16: bool = True
    prefetch: bool = True  # the next step's crops and teacher features are made in a background thread
    seed: int = 0
    threads: int = 2  # torch CPU threads of the process (not part of the run's config)
    save_every: int = 100
    log_every: int = 10
    device: str = "auto"  # auto (CUDA when there is one), cpu, cuda or cuda:N

    def train_config(self) -> TrainConfig:
        """The TrainConfig of this recipe: crop -> size, warmup -> warmup_iters, lr_decay_to -> a linear schedule
        to min_lr = lr x lr_decay_to (constant when 1), weights -> loss_weights, amp_bf16 -> amp, the last two
        checkpoints kept, no sample grids; cache_dir and prefetch -> distill, widen_noise and grow ->
        init_growth. FieldError (naming TrainConfig's fields) on settings that cannot work."""
        growth = {"widen_noise": self.widen_noise, "grow": self.grow}
        return TrainConfig(
            preset="distill", model=dict(self.model), vgg=self.vgg or None, size=self.crop, load_size=self.crop,
            batch_size=self.batch_size, workers=0, seed=self.seed, max_iter=self.max_iter, lr=self.lr,
            schedule="constant" if self.lr_decay_to == 1 else "linear", warmup_iters=self.warmup,
            min_lr=self.lr * self.lr_decay_to, loss_weights=dict(self.weights),
            amp="bf16" if self.amp_bf16 else "off", init_from=self.init_from, log_every=self.log_every,
            save_every=self.save_every, keep_last=2, sample_every=0, device=self.device,
            distill={"cache_dir": str(self.cache_dir), "prefetch": self.prefetch},
            init_growth=growth if self.widen_noise is not None or self.grow else None)


def distill(cfg: DistillConfig, run_dir: str | Path, vgg=None, progress: bool = False,
            triplets: Triplets | None = None, stop_at: float | None = None):
    """Run (or resume) a distillation run in run_dir with the training loop; -> its mambast.train.loop.TrainResult
    (.checkpoint: the last checkpoint's path).

    A run_dir that holds checkpoints is resumed: its config.json is kept except max_iter and device (the
    recipe given only says how long and where). cfg.threads sets torch's CPU threads. vgg: the loss network
    already loaded (default: cfg.vgg's file). triplets: step -> (content, style, teacher) batches instead of
    cfg.cache_dir's (see DistillObjective; the run records source "python"). stop_at: a time.monotonic()
    deadline (see loop.train). UserError for a run folder of the earlier distillation layout (ckpt_*.pt): it
    cannot be resumed, only started from (init_from)."""
    from .loop import train

    run_dir = Path(run_dir).expanduser()
    if is_legacy_distill_run(run_dir):
        raise UserError(f"{run_dir}: a distillation run of the earlier layout (ckpt_*.pt) cannot be resumed; start "
                        f"a new run from its weights (init_from {run_dir})")
    torch.set_num_threads(cfg.threads)
    train_cfg = cfg.train_config()
    if triplets is not None:
        train_cfg = train_cfg.replace(distill={**train_cfg.distill, "source": "python"})
    resume = latest_checkpoint(run_dir) is not None
    if resume:
        saved = TrainConfig.from_dict(read_run_config(run_dir))
        if saved.distill is None:
            raise UserError(f"{run_dir}: a training run of the paper's objective, not a distillation run")
        train_cfg = saved.replace(max_iter=train_cfg.max_iter, device=train_cfg.device)
    objective = functools.partial(_objective, triplets=triplets)
    return train(train_cfg, run_dir, resume=resume, progress=progress, vgg=vgg, objective=objective, stop_at=stop_at)


def _objective(cfg: TrainConfig, ctx: DistContext, run_dir: Path, triplets: Triplets | None) -> DistillObjective:
    return DistillObjective(cfg, ctx, triplets)


def load_student(run_dir: str | Path) -> MambaST:
    """The latest model of a distillation run folder, float32 in eval mode on the CPU (`mambast.io.load`: a
    training run folder, or one of the earlier distillation layout, ckpt_*.pt; read with weights_only=True)."""
    from ..io import load

    return load(run_dir)
