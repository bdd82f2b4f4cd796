"""The training loop: one process, or one of K torchrun ranks (DistributedDataParallel).

The one loop for every recipe: what differs (the data stream and the loss terms) is an objective
(`mambast.train.objective`: the paper's, or the distillation of `mambast.train.distill`, chosen by the
config); the model, optimiser and schedule, seeding, autocast, finite checks, checkpoints, resume, metrics
and sample grids are the loop's.

Determinism: the model is initialised from the seed; step t's data depends only on (seed, t, rank, world
size, batch size) (see data.py); and before step t every rank reseeds torch's global RNG (DropPath) and a
fresh style-shuffle generator from (seed, t, rank). So a run's result does not depend on where it was
interrupted: on CPU, N steps straight and N/2 steps + resume + N/2 steps give bit-identical weights.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from tqdm import tqdm

from ..errors import FieldError, UserError
from ..fs import remove_stale_temp_files
from ..model import MambaST
from ..model.blocks import STVSSBlock, VSSBlock
from ..nets.vgg import load_vgg
from ..signals import Terminated, sigterm_as_interrupt
from .checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint, write_run_config
from .config import TrainConfig
from .data import mix_seed
from .distributed import DistContext, gather_lists, init_distributed, mean_over_ranks, shutdown
from .lock import run_lock
from .monitor import MetricsLog, save_sample_grid
from .objective import ObjectiveFactory, autocast, make_objective
from .optim import build_optimizer, lr_at, set_lr

__all__ = ["TrainResult", "train", "enable_grad_checkpointing"]


@dataclass
class TrainResult:
    """What a finished (or stopped) run reports."""

    run_dir: Path
    step: int
    losses: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None
    bad_files: list[str] = field(default_factory=list)


def enable_grad_checkpointing(model: nn.Module) -> int:
    """Recompute every VSS / ST-VSS block in the backward instead of storing its activations.

    DropPath inside a block draws from torch's global RNG, which checkpoint() restores for the recompute;
    the style shuffle happens outside the blocks. Returns the number of blocks wrapped.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, (VSSBlock, STVSSBlock)) and not hasattr(module, "_unwrapped_forward"):
            module._unwrapped_forward = module.forward
            module.forward = functools.partial(_checkpointed, module._unwrapped_forward)
            count += 1
    return count


def _checkpointed(forward, *args):
    if not torch.is_grad_enabled():
        return forward(*args)
    return checkpoint(forward, *args, use_reentrant=False)


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _restore_rng(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class _Run:
    """The state of one run on one rank."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, ctx: DistContext, resume: bool,
                 vgg: nn.Module | None = None, source: MambaST | None = None,
                 objective: ObjectiveFactory = make_objective):
        self.cfg, self.run_dir, self.ctx = cfg, run_dir, ctx
        self.objective = objective(cfg, ctx, run_dir)  # its data is checked before the loss network loads
        if vgg is None:
            vgg = load_vgg(cfg.vgg, cfg.vgg_layout, allow_random=cfg.allow_random_vgg, device=ctx.device)
            if cfg.vgg is None and ctx.is_main:
                warnings.warn("training against a randomly initialised VGG (allow_random_vgg): for tests only",
                              UserWarning, stacklevel=3)
        self.vgg = vgg.to(ctx.device)
        self.loss_network = _loss_network_id(cfg, self.vgg)
        torch.manual_seed(mix_seed(cfg.seed, 0))  # the same initial weights on every rank and every run
        self.model = MambaST(cfg.model_config()).to(ctx.device).train()
        self.optimizer = build_optimizer(self.model, cfg)
        self.step, self.bad, self.checkpoint = 0, set(), None
        if resume:
            self._resume()
        elif source is not None:
            from ..io.state_dict import load_state_dict_strict

            load_state_dict_strict(self.model, source.state_dict(), f"init_from {cfg.init_from}")
        if ctx.is_main:  # the effective config (a resume may extend max_iter or change intervals)
            write_run_config(run_dir, cfg.to_dict())
        if cfg.grad_checkpoint:
            enable_grad_checkpointing(self.model)
        self.net = self.model
        if ctx.distributed:
            # the depthwise conv's gradient layout differs from DDP's bucket view: harmless, only slower
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    def _resume(self) -> None:
        path = latest_checkpoint(self.run_dir)
        if path is None:
            raise UserError(f"{self.run_dir}: the run has no checkpoint yet (nothing to resume)")
        state = load_checkpoint(path, map_location="cpu")
        _check_resumable(state, self.cfg, self.ctx, self.loss_network, path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.bad = set(state["data"].get("bad_files", []))
        rng = state["rng"]["per_rank"]
        if len(rng) == self.ctx.world_size:
            _restore_rng(rng[self.ctx.rank], self.ctx.device)
        self.checkpoint = path

    def state(self, bad_files: list[str], rng: list[dict]) -> dict:
        return {
            "step": self.step,
            "config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": {"scheme": "reseeded per step from (seed, step, rank)", "seed": self.cfg.seed,
                    "per_rank": rng},
            "data": {"position": self.step, "world_size": self.ctx.world_size,
                     "batch_size": self.cfg.batch_size, "bad_files": bad_files},
            "loss_network": self.loss_network,
        }

    def _diverged(self, what: str) -> FieldError:
        """The one-line stop for a non-finite loss or gradient: the run's checkpoints hold finite weights (the
        update was not applied); a new run can start from the latest with other settings."""
        where = (f"its latest checkpoint {self.checkpoint.name} holds finite weights: start a new run from it "
                 f"with init_from {self.run_dir} and a lower lr or a grad_clip (resuming keeps this run's "
                 "settings)") if self.checkpoint else "lower lr or set grad_clip"
        return FieldError(f"{what} at step {self.step}; {where}", "init_from", "lr", "grad_clip")

    def train_step(self, batch: dict) -> tuple[dict[str, float], dict]:
        """One optimiser step on `batch` -> ({term: value, "total": value}, the objective's images)."""
        cfg, ctx = self.cfg, self.ctx
        set_lr(self.optimizer, lr_at(self.step, cfg))
        torch.manual_seed(mix_seed(cfg.seed, 10, self.step, ctx.rank))
        shuffles = torch.Generator().manual_seed(mix_seed(cfg.seed, 11, self.step, ctx.rank))
        with autocast(cfg, ctx.device):
            terms, loss, images = self.objective.loss(self.net, self.vgg, batch, shuffles)
        if not math.isfinite(loss.item()):
            raise self._diverged(f"the loss became {loss.item()}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        else:  # the global norm only (no rescaling pass; foreach kernels: one call, not one per parameter)
            norm = torch.nn.utils.get_total_norm([p.grad for p in self.model.parameters() if p.grad is not None])
        if not math.isfinite(norm.item()):  # stop before the step: the weights (and checkpoints) stay finite
            raise self._diverged(f"the gradients became {norm.item()}")
        self.optimizer.step()
        self.step += 1
        values = {k: v.item() for k, v in terms.items()}
        values["total"] = loss.item()
        return values, images


def _save(run: _Run) -> Path | None:
    """Every rank calls this (the bad-file lists and RNG states are gathered); rank 0 writes."""
    bad = gather_lists(run.ctx, sorted(run.bad))
    rng = _gather_rng(run.ctx)
    if not run.ctx.is_main:
        return None
    run.checkpoint = save_checkpoint(run.run_dir, run.state(bad, rng), run.cfg.keep_last)
    return run.checkpoint


def _gather_rng(ctx: DistContext) -> list[dict]:
    mine = _rng_state(ctx.device)
    if not ctx.distributed:
        return [mine]
    import torch.distributed as dist

    parts: list = [None] * ctx.world_size
    dist.all_gather_object(parts, {k: v.tolist() for k, v in mine.items()})
    return [{k: torch.tensor(v, dtype=torch.uint8) for k, v in p.items()} for p in parts]


def _check_new_run_dir(run_dir: Path) -> None:
    if list_checkpoints(run_dir):
        raise FieldError(f"{run_dir} already holds a training run; continue it with resume or choose another "
                         "run folder", "resume")


def train(cfg: TrainConfig, run_dir: str | Path, resume: bool = False, progress: bool = True,
          vgg: nn.Module | None = None, objective: ObjectiveFactory | None = None,
          stop_at: float | None = None) -> TrainResult:
    """Train until cfg.max_iter steps (continuing the latest checkpoint of run_dir when `resume`).

    The objective is the paper's, or the distillation when cfg.distill is set (`mambast.train.objective`).
    Logs every cfg.log_every steps (metrics.jsonl: each term's mean over those steps; progress bar,
    TensorBoard), writes a sample grid every cfg.sample_every steps and a checkpoint every cfg.save_every
    steps and at the end; under torchrun each rank trains on its own data shard and only rank 0 writes files.

    vgg: the loss network, already loaded (default: load_vgg(cfg.vgg, cfg.vgg_layout)). objective:
    (cfg, ctx, run_dir) -> Objective, instead of `make_objective` (e.g. a DistillObjective with its own triplet
    source). stop_at: a time.monotonic() deadline: the run stops after the step that passes it (on any rank)
    with a checkpoint, before max_iter (the schedule is still max_iter's).
    """
    run_dir = Path(run_dir).expanduser()
    source = None
    if not resume:
        _check_new_run_dir(run_dir)
        if cfg.init_from:  # fine-tuning: the architecture is the init_from file's, whatever the preset says
            source = init_source(cfg)
            cfg = cfg.replace(model=source.config.to_dict())
    is_rank0 = int(os.environ.get("RANK", "0")) == 0  # under torchrun, rank 0 holds the run folder's lock
    with run_lock(run_dir) if is_rank0 else contextlib.nullcontext(), sigterm_as_interrupt():
        if is_rank0:  # what a killed save left (the lock says no writer of this run is alive)
            remove_stale_temp_files(run_dir, recursive=True)
        ctx = init_distributed(cfg.device)
        try:
            result = _train(cfg, run_dir, ctx, resume, progress, vgg, source, objective or make_objective, stop_at)
        except BaseException:
            shutdown(ctx, finished=False)
            raise
        shutdown(ctx)
        return result


def _load_init(path: str) -> MambaST:
    """The model of an init_from path (`mambast.io.load`): a published folder, .safetensors file, run folder (a
    distillation run of the earlier layout included), or "default" (the bundled model, when no such path
    exists)."""
    from ..io import load

    return load(None if path == "default" and not Path(path).exists() else path, device="cpu")


def init_source(cfg: TrainConfig) -> MambaST:
    """The model a new run with cfg.init_from starts from: its weights, grown first when cfg.init_growth says
    so (mambast.train.widen.grow_source)."""
    model = _load_init(cfg.init_from)
    growth = cfg.init_growth or {}
    if growth.get("widen_noise") is not None or growth.get("grow"):
        from .widen import grow_source

        model = grow_source(model, growth.get("widen_noise"), growth.get("grow"), cfg.seed)
    return model


def init_source_config(path: str):
    """The MambaSTConfig of an init_from path (see `_load_init`), DropPath kept from the file."""
    return _load_init(path).config


def _loss_network_id(cfg: TrainConfig, vgg: nn.Module) -> dict:
    """What identifies the loss network of a run: its layout and the SHA-256 of its weights file."""
    sha = None
    if cfg.vgg:
        digest = hashlib.sha256()
        with open(cfg.vgg, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        sha = digest.hexdigest()
    return {"layout": str(getattr(vgg, "layout", cfg.vgg_layout)), "sha256": sha}


def _check_resumable(state: dict, cfg: TrainConfig, ctx: DistContext, loss_network: dict, path: Path) -> None:
    """Refuse a resume that would silently change the run (world size, loss network); warn when a longer
    max_iter restarts a decaying schedule."""
    data = state.get("data", {})
    saved_world = int(data.get("world_size", ctx.world_size))
    if saved_world != ctx.world_size:
        raise UserError(f"{path}: this run was trained by {saved_world} process(es), not {ctx.world_size}: resuming "
                        "would change the global batch and the data order; resume with the same number, or start "
                        f"a new run from it (init_from {path.parent.parent})")
    saved_net = state.get("loss_network")
    if saved_net and saved_net.get("sha256") and loss_network.get("sha256") != saved_net["sha256"]:
        raise FieldError(f"{path}: the vgg file given ({loss_network.get('sha256') or 'none'}) is not the loss "
                         f"network this run was trained with (sha256 {saved_net['sha256']}, layout "
                         f"{saved_net.get('layout')}); give that file, or start a new run", "vgg")
    old = state.get("config", {})
    old_max = int(old.get("max_iter", cfg.max_iter))
    if cfg.max_iter != old_max and cfg.schedule != "constant":
        step = int(state["step"])
        before = lr_at(step, TrainConfig.from_dict({**old, "max_iter": old_max}))
        warnings.warn(f"max_iter {old_max} -> {cfg.max_iter} changes the {cfg.schedule} schedule: the learning "
                      f"rate at step {step} goes from {before:.3g} to {lr_at(step, cfg):.3g}", UserWarning,
                      stacklevel=4)


def _train(cfg: TrainConfig, run_dir: Path, ctx: DistContext, resume: bool, progress: bool,
           vgg: nn.Module | None, source: MambaST | None, objective: ObjectiveFactory,
           stop_at: float | None) -> TrainResult:
    run = _Run(cfg, run_dir, ctx, resume, vgg, source, objective)
    start = run.step
    if start >= cfg.max_iter:
        return TrainResult(run_dir, start, checkpoint=run.checkpoint, bad_files=sorted(run.bad))
    batches = run.objective.batches(start, run.vgg)
    log = MetricsLog(run_dir, start) if ctx.is_main else None
    bar = tqdm(total=cfg.max_iter, initial=start, disable=not (progress and ctx.is_main), unit="it",
               dynamic_ncols=True, desc="train")
    values: dict[str, float] = {}
    window: dict[str, float] = defaultdict(float)  # sums of the values since the last metrics line
    t_last, n_last = time.perf_counter(), start
    saved = run.checkpoint
    try:
        while run.step < cfg.max_iter:
            batch = next(batches)
            _note_bad(run, batch.get("bad", ()), bar)
            values, images = run.train_step(batch)
            for k, v in values.items():
                window[k] += v
            bar.update(1)
            step = run.step
            if cfg.log_every and (step % cfg.log_every == 0 or step == cfg.max_iter):
                values = mean_over_ranks(ctx, {k: v / (step - n_last) for k, v in window.items()})
                now = time.perf_counter()
                rate = (step - n_last) / max(now - t_last, 1e-9)
                t_last, n_last, window = now, step, defaultdict(float)
                if log is not None:
                    log.write(step, {**values, "lr": lr_at(step - 1, cfg), "it_per_s": rate,
                                     "skipped_files": len(run.bad)})
                bar.set_postfix({_SHORT.get(k, k): f"{v:.3g}" for k, v in values.items()}, refresh=False)
            if ctx.is_main and cfg.sample_every and step % cfg.sample_every == 0:
                save_sample_grid(run_dir, step, images, run.objective.grid_columns)
            if (cfg.save_every and step % cfg.save_every == 0) or step == cfg.max_iter:
                saved = _save(run) or saved
            elif stop_at is not None and _past(stop_at, ctx):
                saved = _save(run) or saved
                break
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (Terminated)
        if not ctx.distributed and run.step > start:
            saved = _save(run)
            why = "terminated" if isinstance(stop, Terminated) else "interrupted"
            bar.write(f"{why}: saved {saved}; continue with `mambast train --resume {run_dir}`")
        raise
    finally:
        batches.close()  # ends the objective's loader workers or prefetch thread
        bar.close()
        if log is not None:
            log.close()
    return TrainResult(run_dir, run.step, values, saved, sorted(run.bad))


def _past(deadline: float, ctx: DistContext) -> bool:
    """Whether any rank has passed `deadline` (time.monotonic()); every rank must call it."""
    return mean_over_ranks(ctx, {"late": float(time.monotonic() >= deadline)})["late"] > 0


_SHORT = {"content": "c", "style": "s", "identity1": "id1", "identity2": "id2"}  # progress-bar names


def _note_bad(run: _Run, bad: list[str], bar: tqdm) -> None:
    """Report each newly skipped image once, with its reason ("PATH: why")."""
    for entry in bad:
        if entry not in run.bad:
            run.bad.add(entry)
            bar.write(f"skipping image {entry} ({len(run.bad)} skipped so far)")
