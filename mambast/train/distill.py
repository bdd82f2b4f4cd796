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

Every step's data and style shuffle are drawn from (seed, step), so a resumed run (latest checkpoint in the run
folder: model + optimizer + step) continues exactly where it stopped.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance
from torch import Tensor

from ..config import MambaSTConfig
from ..errors import UserError
from ..fs import atomic_write, atomic_write_text, ensure_dir
from ..images import list_images, load_image, uint8_to_unit, unit_to_uint8
from ..io.state_dict import torch_load_tensors
from ..losses import content_loss, feature_loss, style_loss
from ..model import MambaST

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
    """One distillation run. crop: training crop side (px) taken from the cached `size`-px triplets (the style
    crop is an independent crop of the style, so both keep the teacher's texture scale)."""

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
    threads: int = 2
    save_every: int = 100
    log_every: int = 10


def batch_at(cache: dict[str, Tensor], step: int, cfg: DistillConfig) -> tuple[Tensor, Tensor, Tensor]:
    """The step's (content, style, teacher) crops, (B, 3, crop, crop) floats in [0, 1]; a function of (seed, step)."""
    rng = np.random.default_rng([cfg.seed, step])
    n, size = cache["content"].shape[0], cache["content"].shape[-1]
    idx = rng.integers(0, n, cfg.batch_size)
    crops_c, crops_s, crops_t = [], [], []
    for i in idx:
        y, x = rng.integers(0, size - cfg.crop + 1, 2)
        sy, sx = rng.integers(0, cache["style"].shape[-1] - cfg.crop + 1, 2)
        crops_c.append(cache["content"][i, :, y:y + cfg.crop, x:x + cfg.crop])
        crops_t.append(cache["teacher"][i, :, y:y + cfg.crop, x:x + cfg.crop])
        crops_s.append(cache["style"][i, :, sy:sy + cfg.crop, sx:sx + cfg.crop])
    return tuple(torch.stack(v).float() / 255.0 for v in (crops_c, crops_s, crops_t))


def teacher_features(vgg, teacher: Tensor, teacher_style: bool, amp_bf16: bool) -> list[Tensor]:
    """The loss network's features of the teacher's output (B, 3, H, W) in [0, 1], relu1_1..relu3_1 (..relu4_1
    with teacher_style), without autograd, under the training's bf16 autocast when amp_bf16 (the values
    distill_terms would compute itself)."""
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp_bf16):
        return vgg.encode(teacher, "relu4_1" if teacher_style else "relu3_1")


def distill_terms(model: MambaST, vgg, content: Tensor, style: Tensor, teacher: Tensor,
                  generator: torch.Generator, paper_terms: bool = True,
                  teacher_style: bool = False, t_feats: list[Tensor] | None = None) -> dict[str, Tensor]:
    """Unweighted terms {"pixel", "feature"(, "teacher_style")(, "content", "style")} for one batch (all
    (B, 3, H, W) in [0, 1]).

    paper_terms=False skips the content and style terms (and the VGG passes past relu3_1/relu4_1 they need);
    teacher_style adds the mean-std match of relu1_1..relu4_1 to the teacher's output. t_feats: the teacher's
    features if already computed (teacher_features), else computed here."""
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
    return terms


def lr_at(step: int, cfg: DistillConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.max_iter - cfg.warmup)
    return cfg.lr * (1.0 - (1.0 - cfg.lr_decay_to) * frac)


def _latest(run_dir: Path) -> Path | None:
    ckpts = sorted(run_dir.glob("ckpt_*.pt"))
    return ckpts[-1] if ckpts else None


def load_student(run_dir: Path) -> MambaST:
    """The latest checkpoint's model of a distillation run (eval mode)."""
    ckpt = _latest(Path(run_dir))
    if ckpt is None:
        raise UserError(f"no ckpt_*.pt in run_dir {run_dir}")
    state = torch_load_tensors(ckpt)
    model = MambaST(MambaSTConfig.from_dict(state["config"]["model"]))
    model.load_state_dict(state["model"])
    return model.eval()


def train(cfg: DistillConfig, run_dir: Path, vgg=None) -> Path:
    """Run (or resume) a distillation run in run_dir; returns the last checkpoint's path.

    vgg: the loss network (default: load_vgg(cfg.vgg)). A resumed run keeps its config.json except max_iter
    and threads, and continues bit-exactly (each step's data and shuffle depend only on (seed, step))."""
    from ..nets.vgg import load_vgg

    torch.set_num_threads(cfg.threads)
    run_dir = ensure_dir(run_dir)
    ckpt = _latest(run_dir)
    if ckpt is None:
        atomic_write_text(run_dir / "config.json", json.dumps(asdict(cfg), indent=1))
    else:
        cfg = DistillConfig(**{**json.loads((run_dir / "config.json").read_text()),
                               "max_iter": cfg.max_iter, "threads": cfg.threads})
    torch.manual_seed(cfg.seed)
    model = MambaST(MambaSTConfig.from_dict(cfg.model))
    if cfg.init_from and ckpt is None:
        src = Path(cfg.init_from)
        source = load_student(src) if src.is_dir() else _load_any(src)
        if cfg.widen_noise is not None:
            from .widen import widen

            source = widen(source.float(), cfg.widen_noise, torch.Generator().manual_seed(cfg.seed))
        if cfg.grow:
            from .widen import grow

            source = grow(source.float(), **cfg.grow, generator=torch.Generator().manual_seed(cfg.seed))
        model.load_state_dict(source.state_dict())
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    step = 0
    if ckpt is not None:
        state = torch_load_tensors(ckpt)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
    model.train()
    vgg = vgg if vgg is not None else load_vgg(cfg.vgg)
    cache = load_cache(Path(cfg.cache_dir))
    log = (run_dir / "metrics.jsonl").open("a")
    window, t0 = [], time.time()
    teacher_style = bool(cfg.weights.get("teacher_style"))

    def prepare(at: int) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:  # step `at`'s crops + teacher features
        content, style, teacher = batch_at(cache, at, cfg)
        return content, style, teacher, teacher_features(vgg, teacher, teacher_style, cfg.amp_bf16)

    worker = ThreadPoolExecutor(1) if cfg.prefetch else None
    upcoming = worker.submit(prepare, step) if worker else None
    while step < cfg.max_iter:
        content, style, teacher, t_feats = upcoming.result() if worker else prepare(step)
        if worker and step + 1 < cfg.max_iter:
            upcoming = worker.submit(prepare, step + 1)  # runs while this step trains
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.amp_bf16):
            terms = distill_terms(model, vgg, content, style, teacher, gen,
                                  paper_terms=bool(cfg.weights.get("content") or cfg.weights.get("style")),
                                  teacher_style=teacher_style, t_feats=t_feats)
        loss = sum(cfg.weights[k] * v.float() for k, v in terms.items() if cfg.weights.get(k))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        window.append({k: float(v.detach()) for k, v in terms.items()} | {"total": float(loss.detach())})
        if step % cfg.log_every == 0:
            mean = {k: sum(w[k] for w in window) / len(window) for k in window[0]}
            rec = {"step": step, "lr": lr_at(step - 1, cfg), "sec_per_step": (time.time() - t0) / len(window), **mean}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            window, t0 = [], time.time()
        if step % cfg.save_every == 0 or step == cfg.max_iter:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                     "config": asdict(cfg)}
            path = run_dir / f"ckpt_{step:07d}.pt"
            atomic_write(path, lambda f, s=state: torch.save(s, f))
            for old in sorted(run_dir.glob("ckpt_*.pt"))[:-2]:
                old.unlink()
    if worker:
        worker.shutdown()
    return _latest(run_dir)


def _load_any(path: Path) -> MambaST:
    from ..io import load

    return load(path)
