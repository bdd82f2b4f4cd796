"""What a training run optimises, as the one training loop (`mambast.train.loop`) sees it.

An objective gives each step's batch and turns it into loss terms; the loop owns everything else (model,
optimiser and schedule, per-step seeding, autocast, the finite-loss and gradient checks, checkpoints and
resume, the metrics log and sample grids, torchrun):

    PaperObjective    the paper's four terms on (content, style) crops of two image folders (losses.py, data.py)
    DistillObjective  a student against a teacher's outputs (mambast.train.distill_objective; the recipe:
                      mambast.train.distill), chosen by a TrainConfig whose `distill` field is set

    objective = make_objective(cfg, ctx, run_dir)    # checks its data before the loss network is loaded
    batches = objective.batches(start_step, vgg)     # endless iterator of step start_step, start_step + 1, ...
    terms, total, images = objective.loss(net, vgg, batch, generator)

A batch is a dict; its optional "bad" list names unreadable files the loop reports and counts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor, nn

from .config import TrainConfig
from .data import PairStream, find_images, make_loader
from .distributed import DistContext
from .losses import loss_terms, total_loss
from .monitor import GRID_COLUMNS

__all__ = ["Objective", "ObjectiveFactory", "PaperObjective", "autocast", "make_objective"]


class Objective(Protocol):
    """The part of a training run that differs between recipes: the data stream and the loss."""

    grid_columns: tuple[str, ...]  # the images of a sample grid's row, names of `loss`'s images

    def batches(self, start_step: int, vgg: nn.Module) -> Iterator[dict]:
        """Endless batches for steps start_step, start_step + 1, ... of this rank; a function of the step."""

    def loss(self, net: nn.Module, vgg: nn.Module, batch: dict,
             generator: torch.Generator) -> tuple[dict[str, Tensor], Tensor, dict[str, Tensor]]:
        """(unweighted terms, weighted total, images for the sample grid) of one batch; `generator` draws the
        style shuffles. Called under the run's autocast."""


ObjectiveFactory = Callable[[TrainConfig, DistContext, Path], Objective]  # make_objective's signature


def autocast(cfg: TrainConfig, device: torch.device):
    """The run's bf16 autocast on `device` (amp "bf16", or "auto" on CUDA), else a null context."""
    if cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class PaperObjective:
    """The paper's objective (losses.py): content, style, identity1, identity2 on (content, style) crops of the
    content_dir and style_dir images (data.py), weighted by cfg.loss_weights."""

    grid_columns = GRID_COLUMNS

    def __init__(self, cfg: TrainConfig, ctx: DistContext, run_dir: Path):
        contents = find_images(cfg.content_dir, "content", exclude=run_dir)  # never the run's own samples
        styles = find_images(cfg.style_dir, "style", exclude=run_dir)
        self.cfg, self.ctx = cfg, ctx
        self.stream = PairStream(contents, styles, cfg.size, cfg.load_size, cfg.seed)

    def batches(self, start_step: int, vgg: nn.Module) -> Iterator[dict]:
        cfg, ctx = self.cfg, self.ctx
        yield from make_loader(self.stream, start_step, cfg.batch_size, cfg.workers, ctx.rank, ctx.world_size)

    def loss(self, net, vgg, batch, generator):
        content = batch["content"].to(self.ctx.device, non_blocking=True)
        style = batch["style"].to(self.ctx.device, non_blocking=True)
        terms, images = loss_terms(net, vgg, content, style, self.cfg.style_shuffle, generator)
        total = total_loss({k: v.float() for k, v in terms.items()}, self.cfg.weights())
        images.update(content=content, style=style)
        return terms, total, images


def make_objective(cfg: TrainConfig, ctx: DistContext, run_dir: Path) -> Objective:
    """The objective `cfg` names: the distillation when cfg.distill is set, else the paper's."""
    if cfg.distill is not None:
        from .distill_objective import DistillObjective

        return DistillObjective(cfg, ctx)
    return PaperObjective(cfg, ctx, run_dir)
