"""The distillation objective of the training loop: a student against a teacher's outputs (see
mambast.train.distill for the recipe, the teacher and the cache it reads).

    loss = w_pixel L1(o, t) + w_feature sum_{relu1_1..relu3_1} MSE(F(o), F(t))
           + w_teacher_style style(o, t) + w_content content(o, c) + w_style style(o, s)    (F: the loss VGG)

`DistillObjective` is what `mambast.train.objective.make_objective` builds for a TrainConfig with `distill` set:
its data stream is crops of the cached (content, style, teacher) triplets (`load_cache`, `batch_at`: a
function of (seed, step)) or a given `triplets(step)` source, made one step ahead in a background thread with
the teacher's loss-network features (`teacher_features`); its loss is `distill_terms` weighted by
cfg.loss_weights. It sits below the loop (mambast.train.loop) and the recipe (mambast.train.distill).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import FieldError, UserError
from ..losses import content_loss, feature_loss, style_loss
from ..model import MambaST
from .config import TrainConfig
from .distributed import DistContext

__all__ = ["DistillObjective", "Triplets", "batch_at", "distill_terms", "load_cache", "teacher_features"]


def load_cache(cache_dir: Path) -> dict[str, Tensor]:
    """All shards -> {"content", "style", "teacher"}: (N, 3, size, size) uint8 tensors."""
    shards = sorted(Path(cache_dir).glob("shard_*.npz"))
    if not shards:
        raise UserError(f"no shard_*.npz in cache_dir {cache_dir}")
    parts = [np.load(p) for p in shards]
    return {k: torch.from_numpy(np.concatenate([p[k] for p in parts])).permute(0, 3, 1, 2).contiguous()
            for k in ("content", "style", "teacher")}


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
