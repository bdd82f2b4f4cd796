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
import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance
from torch import Tensor

from ..config import MambaSTConfig
from ..errors import FieldError, UserError
from ..fs import atomic_write, ensure_dir
from ..images import list_images, load_image, uint8_to_unit, unit_to_uint8
from ..io.run import is_run_dir, latest_checkpoint, load_run_model, read_run_config
from ..io.state_dict import load_state_dict_strict, torch_load_tensors
from ..losses import content_loss, feature_loss, style_loss
from ..model import MambaST
from .config import TrainConfig
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


def load_cache(cache_dir: Path) -> dict[str, Tensor]:
    """All shards -> {"content", "style", "teacher"}: (N, 3, size, size) uint8 tensors."""
    shards = sorted(Path(cache_dir).glob("shard_*.npz"))
    if not shards:
        raise UserError(f"no shard_*.npz in cache_dir {cache_dir}")
    parts = [np.load(p) for p in shards]
    return {k: torch.from_numpy(np.concatenate([p[k] for p in parts])).permute(0, 3, 1, 2).contiguous()
            for k in ("content", "style", "teacher")}


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


def batch_at(cache: dict[str, Tensor], step: int, batch_size: int, crop: int, seed: int = 0,
             rank: int = 0, world_size: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """The step's (content, style, teacher) crops, (batch_size, 3, crop, crop) floats in [0, 1]; a function of
    (seed, step) (and of rank under torchrun, so that the ranks draw different pairs)."""
    rng = np.random.default_rng([seed, step] + ([rank, world_size] if world_size > 1 else []))
    n, size = cache["content"].shape[0], cache["content"].shape[-1]
    idx = rng.integers(0, n, batch_size)
    crops_c, crops_s, crops_t = [], [], []
    for i in idx:
        y, x = rng.integers(0, size - crop + 1, 2)
        sy, sx = rng.integers(0, cache["style"].shape[-1] - crop + 1, 2)
        crops_c.append(cache["content"][i, :, y:y + crop, x:x + crop])
        crops_t.append(cache["teacher"][i, :, y:y + crop, x:x + crop])
        crops_s.append(cache["style"][i, :, sy:sy + crop, sx:sx + crop])
    return tuple(torch.stack(v).float() / 255.0 for v in (crops_c, crops_s, crops_t))


def teacher_features(vgg, teacher: Tensor, teacher_style: bool, amp_bf16: bool) -> list[Tensor]:
    """The loss network's features of the teacher's output (B, 3, H, W) in [0, 1], relu1_1..relu3_1 (..relu4_1
    with teacher_style), without autograd, under bf16 autocast on the teacher's device when amp_bf16 (the values
    distill_terms would compute itself under the training's autocast)."""
    with torch.no_grad(), torch.autocast(teacher.device.type, dtype=torch.bfloat16, enabled=amp_bf16):
        return vgg.encode(teacher, "relu4_1" if teacher_style else "relu3_1")


def distill_terms(model: MambaST, vgg, content: Tensor, style: Tensor, teacher: Tensor,
                  generator: torch.Generator, paper_terms: bool = True,
                  teacher_style: bool = False, t_feats: list[Tensor] | None = None) -> dict[str, Tensor]:
    """Unweighted terms {"pixel", "feature"(, "teacher_style")(, "content", "style")} for one batch (all
    (B, 3, H, W) in [0, 1]).

    paper_terms=False skips the content and style terms (and the VGG passes past relu3_1/relu4_1 they need);
    teacher_style adds the mean-std match of relu1_1..relu4_1 to the teacher's output. t_feats: the teacher's
    features if already computed (teacher_features), else computed here."""
    return _distill_pass(model, vgg, content, style, teacher, generator, paper_terms, teacher_style, t_feats)[0]


def _distill_pass(model, vgg, content, style, teacher, generator, paper_terms, teacher_style, t_feats):
    """distill_terms and the student's output (B, 3, H, W)."""
    out = model(content, style, generator=generator)
    last_t = "relu4_1" if teacher_style else "relu3_1"
    o_feats = vgg.encode(out, "relu5_1" if paper_terms else last_t)
    if t_feats is None:
        with torch.no_grad():
            t_feats = vgg.encode(teacher, last_t)
    terms = {"pixel": F.l1_loss(out.float(), teacher), "feature": feature_loss(o_feats[:3], t_feats[:3])}
    if teacher_style:
        terms["teacher_style"] = style_loss(o_feats[:4], t_feats)
    if paper_terms:
        with torch.no_grad():
            c_feats, s_feats = vgg(content), vgg(style)
        terms |= {"content": content_loss(o_feats, c_feats), "style": style_loss(o_feats, s_feats)}
    return terms, out


Triplets = Callable[[int], tuple[Tensor, Tensor, Tensor]]  # step -> (content, style, teacher), (B, 3, S, S)


class DistillObjective:
    """The distillation as an objective of the training loop (`mambast.train.objective`), built from a
    TrainConfig with `distill` set: batches are batch_at crops of the cache (cfg.size px, cfg.batch_size), or
    what `triplets(step)` returns (e.g. a teacher run on the fly; floats in [0, 1] of one size, any device), on
    the run's device with the teacher's loss-network features, made one step ahead in a background thread when
    distill["prefetch"]; the loss is distill_terms weighted by cfg.loss_weights (terms of weight 0 skipped)."""

    grid_columns = ("content", "style", "output", "teacher")

    def __init__(self, cfg: TrainConfig, ctx: DistContext, triplets: Triplets | None = None):
        self.cfg, self.ctx, self.triplets = cfg, ctx, triplets
        if triplets is None:
            if cfg.distill.get("source") == "python":
                raise FieldError("this distillation run drew its triplets from a Python function "
                                 "(distill(..., triplets=)): resume it the same way", "distill")
            if not cfg.distill.get("cache_dir"):
                raise FieldError("distill: no cache_dir given (a folder of teacher triplets)", "distill")
            self.cache = load_cache(Path(cfg.distill["cache_dir"]))
        self.prefetch = bool(cfg.distill.get("prefetch", True))
        self.weights = {k: float(w) for k, w in cfg.loss_weights.items() if w}
        self.paper_terms = bool(self.weights.get("content") or self.weights.get("style"))
        self.teacher_style = "teacher_style" in self.weights
        self.amp = cfg.amp == "bf16" or (cfg.amp == "auto" and ctx.device.type == "cuda")

    def prepare(self, step: int, vgg) -> dict[str, Tensor | list[Tensor]]:
        """Step `step`'s batch on the run's device: content, style, teacher crops and teacher_features."""
        cfg, ctx = self.cfg, self.ctx
        if self.triplets is not None:
            crops = self.triplets(step)
        else:
            crops = batch_at(self.cache, step, cfg.batch_size, cfg.size, cfg.seed, ctx.rank, ctx.world_size)
        content, style, teacher = (x.to(ctx.device) for x in crops)
        return {"content": content, "style": style, "teacher": teacher,
                "teacher_features": teacher_features(vgg, teacher, self.teacher_style, self.amp)}

    def batches(self, start_step: int, vgg) -> Iterator[dict]:
        if not self.prefetch:
            yield from (self.prepare(step, vgg) for step in itertools.count(start_step))
            return
        with ThreadPoolExecutor(1) as worker:  # step t + 1's batch is made while step t trains
            upcoming = worker.submit(self.prepare, start_step, vgg)
            for step in itertools.count(start_step + 1):
                batch = upcoming.result()
                upcoming = worker.submit(self.prepare, step, vgg) if step < self.cfg.max_iter else None
                yield batch
                if upcoming is None:
                    return

    def loss(self, net, vgg, batch, generator):
        terms, out = _distill_pass(net, vgg, batch["content"], batch["style"], batch["teacher"], generator,
                                   self.paper_terms, self.teacher_style, batch["teacher_features"])
        total = sum(self.weights[k] * v.float() for k, v in terms.items() if k in self.weights)
        images = {"content": batch["content"], "style": batch["style"], "output": out, "teacher": batch["teacher"]}
        return terms, total, images


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
    if is_legacy_run(run_dir):
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


def is_legacy_run(path: str | Path) -> bool:
    """A distillation run folder of the earlier layout (RUN/ckpt_NNNNNNN.pt, written by the distillation's own
    loop before it ran in the training loop)."""
    path = Path(path)
    return path.is_dir() and not is_run_dir(path) and any(path.glob("ckpt_*.pt"))


def load_student(run_dir: str | Path) -> MambaST:
    """The latest model of a distillation run folder, float32 in eval mode on the CPU (a training run folder;
    one of the earlier layout, ckpt_*.pt, is read too). Every file is read with weights_only=True."""
    if not is_legacy_run(run_dir):
        return load_run_model(run_dir)
    ckpt = sorted(Path(run_dir).glob("ckpt_*.pt"))[-1]
    state = torch_load_tensors(ckpt)
    try:
        model = MambaST(MambaSTConfig.from_dict(dict(state["config"]["model"])))
    except (KeyError, TypeError):
        raise UserError(f"{ckpt}: a distillation checkpoint without a model config") from None
    load_state_dict_strict(model, state["model"], str(ckpt))
    return model.eval()
