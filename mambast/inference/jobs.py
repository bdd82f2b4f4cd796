"""The folder/dataset runner: a work list (worklist.py) stylized in batches, sharded over processes, resumable.

    report = run_jobs(model, jobs, output_dir, RunOptions(batch_size=8, workers=2))

- Batches: jobs whose contents have the same padded grid (after the size policy; the same exact size when a
  mask is used) are stylized together. Every job carries its own shuffle seed, so a batch gives the same
  images (<= 1e-5) as one job at a time (`Stylizer.render(..., seeds=)`).
- Inputs are decoded and resized in a torch DataLoader (`workers` processes; 0: in this process). Each
  content and each style is decoded and encoded once while it stays in a small cache (content-major pair
  lists encode N contents + M styles, not N x M): the cache is simulated when the batches are planned, so
  the workers decode exactly what the model will need.
- Outputs go to a background writer thread: atomic writes (`mambast.fs`: temp file + rename, never a
  truncated file under the final name), PNG or JPEG. A write that fails skips that job; the run goes on.
- Every output carries a stamp of what made it (provenance.py: model, input files' bytes, settings, seed).
- Sharding (sharding.py): process `rank` of `world` takes jobs rank, rank + world, ...; `skip_existing`
  leaves out jobs whose output exists with the stamp this run would give it (resume after a crash or
  preemption); an output made with other settings (or without a stamp) is made again.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import glob
import io
import json
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..errors import UserError
from ..fs import WriteError, atomic_write, atomic_write_bytes, atomic_write_text, ensure_dir, remove_stale_temp_files
from ..images import check_planned_size, image_size, load_resized, plan_size, to_pil, to_tensor
from ..model import MambaST
from ..model.mamba_st import pad_to_patches, padded_size
from .colour import match_colour
from .controls import Controls
from .engine import DEFAULT_MAX_PIXELS, EncodedContent, Stylizer
from .provenance import Stamper, read_stamp
from .sharding import Dist
from .size import check_max_pixels, check_size, fit_style, load_style, memory_guard
from .values import check_number
from .worklist import EXTENSIONS, Job, check_ext, shard

MANIFEST_FIELDS = ("content", "style", "output", "seed")


@dataclass
class RunOptions:
    """How to run a work list. size/max_pixels/precision: as `Stylizer`; controls: as `Controls` (its seed is
    not used: each job has its own); batch_size: jobs per model call (fewer where batch_size contents of one
    grid would hold more than max_pixels together); workers: DataLoader processes (0: decode
    in this process); ext/jpeg_quality: output format; skip_existing: leave out jobs whose output exists and
    was made with these settings (its stamp, see provenance.py; other outputs are made again);
    manifest: file name (in the output folder) of a CSV (`.csv`) or JSON-lines (`.jsonl`) manifest, or None;
    progress: a progress bar (rank 0 only); on_error(message): called for every skipped job."""

    size: int | None = 512
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    controls: Controls = field(default_factory=Controls)
    precision: str = "auto"
    batch_size: int = 1
    workers: int = 0
    ext: str = "png"
    jpeg_quality: int = 95
    skip_existing: bool = False
    manifest: str | None = None
    progress: bool = True
    on_error: Callable[[str], None] | None = None

    def __post_init__(self):
        self.ext = check_ext(self.ext)
        self.size, self.max_pixels = check_size(self.size), check_max_pixels(self.max_pixels)  # numbers of any type
        self.batch_size = check_number(self.batch_size, "batch_size", 1, whole=True)
        self.workers = check_number(self.workers, "workers", 0, whole=True)
        self.jpeg_quality = check_number(self.jpeg_quality, "jpeg_quality", 1, 100, whole=True)
        if self.manifest is not None and Path(self.manifest).suffix not in (".csv", ".jsonl"):
            raise UserError(f"manifest must end in .csv or .jsonl, got {self.manifest!r}")


@dataclass
class JobReport:
    """What a run did (all ranks together, on every rank): outputs written, jobs skipped because their output
    existed with this run's stamp, outputs among `written` that replaced a file made with other settings
    (or without a stamp) under skip_existing, and (job description, reason) failures."""

    written: list[Path] = field(default_factory=list)
    existing: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    replaced: list[Path] = field(default_factory=list)


# ----------------------------------------------------------------------------------------- planning


@dataclass
class _Batch:
    """Jobs stylized together (one padded grid), with what the loader must decode for them: contents
    (paths) and styles (cache keys) not in the model-side caches at that point."""

    jobs: list[Job]
    grid: tuple[int, int]
    load_contents: list[Path]
    load_styles: list[tuple]


class _LRU:
    """A least-recently-used set of keys; `touch` says whether a key was there. The planner and the runner
    replay the same sequence of touches, so both know the same cache contents without talking."""

    def __init__(self, capacity: int):
        self.capacity, self.keys = capacity, OrderedDict()

    def touch(self, key: Hashable) -> tuple[bool, list]:
        """-> (hit, keys evicted by this touch)."""
        if key in self.keys:
            self.keys.move_to_end(key)
            return True, []
        self.keys[key] = None
        evicted = []
        while len(self.keys) > self.capacity:
            evicted.append(self.keys.popitem(last=False)[0])
        return False, evicted


def _style_keys(job: Job, grid: tuple[int, int], controls: Controls) -> list[tuple]:
    """One cache key per style of the job: (path, grid, style_size); colour-matched styles depend on the
    content, so their key is unique to the job (never shared)."""
    if controls.preserve_color == "match":
        return [("match", job.index, i, s, grid) for i, s in enumerate(job.styles)]
    return [(s, grid, controls.style_size) for s in job.styles]


def _plan(jobs: Sequence[Job], engine: Stylizer, options: RunOptions, caches: tuple[int, int],
          fail: Callable[[Job, str], None]) -> list[_Batch]:
    """Group jobs into batches of one padded grid (exact size with a mask), in order of first appearance,
    and mark what each batch must load. Sizes come from image headers (no decoding); a content that cannot
    be used (unreadable, over the pixel limit, under one patch) fails its jobs here."""
    exact = options.controls.mask is not None
    open_batches: dict[tuple, list[Job]] = {}
    keyed: list[tuple[tuple[int, int], list[Job]]] = []
    sizes: dict[Path, tuple] = {}
    for job in jobs:
        if job.content not in sizes:
            try:
                w, h = plan_size(*image_size(job.content), options.size)
                check_planned_size(job.content, w, h, options.max_pixels, patch=engine.patch)
                sizes[job.content] = ((h, w), padded_size(h, w, engine.patch, str(job.content)))
            except UserError as e:
                sizes[job.content] = str(e)
        size = sizes[job.content]
        if isinstance(size, str):
            fail(job, size)
            continue
        key = size[0] if exact else size[1]
        group = open_batches.setdefault(key, [])
        group.append(job)
        grid_pixels = size[1][0] * size[1][1]
        if len(group) == options.batch_size or (options.max_pixels and (len(group) + 1) * grid_pixels >
                                                options.max_pixels):  # a batch holds at most the pixel limit
            keyed.append((size[1], open_batches.pop(key)))
    keyed += [(sizes[g[0].content][1], g) for g in open_batches.values()]
    content_lru, style_lru = _LRU(caches[0]), _LRU(caches[1])
    batches = []
    for grid, group in keyed:
        contents = [j.content for j in group if not content_lru.touch(j.content)[0]]
        styles = [k for j in group for k in _style_keys(j, grid, options.controls) if not style_lru.touch(k)[0]]
        batches.append(_Batch(group, grid, list(dict.fromkeys(contents)), list(dict.fromkeys(styles))))
    return batches


# ------------------------------------------------------------------------------------------- loading


class _Loads(Dataset):
    """Decodes what batch i needs, in a DataLoader worker: {"contents": {path: (3, h, w) | error},
    "styles": {key: (3, H, W) | error}} (errors as one-line strings: a bad file fails only its jobs)."""

    def __init__(self, batches: list[_Batch], size: int | None, max_pixels: int | None, patch: int,
                 controls: Controls):
        self.batches, self.size, self.max_pixels, self.patch = batches, size, max_pixels, patch
        self.controls = controls

    def __len__(self) -> int:
        return len(self.batches)

    def _content(self, path: Path) -> Tensor:
        return to_tensor(load_resized(path, self.size, self.max_pixels, patch=self.patch))

    def __getitem__(self, i: int) -> dict:
        batch = self.batches[i]
        contents = {p: _attempt(self._content, p) for p in batch.load_contents}
        styles = {}
        for key in batch.load_styles:
            if key[0] == "match":  # ("match", job index, slot, path, grid): recoloured to its content
                job = next(j for j in batch.jobs if j.index == key[1])
                content = contents.get(job.content)
                if content is None:
                    content = _attempt(self._content, job.content)
                styles[key] = content if isinstance(content, str) else _attempt(self._style, key[3], key[4],
                                                                                 content)
            else:
                styles[key] = _attempt(self._style, key[0], key[1])
        return {"contents": contents, "styles": styles}

    def _style(self, path: Path, grid: tuple[int, int], content: Tensor | None = None) -> Tensor:
        """As `Stylizer.prepare_style`: the style brought to the padded grid (H, W) -> (3, H, W)."""
        style_size = self.controls.style_size
        x = to_tensor(fit_style(load_style(path, style_size, self.max_pixels), grid[1], grid[0], style_size,
                                self.max_pixels, str(path)))
        return x if content is None else match_colour(x, content)


def _identity(x):
    return x


def _attempt(fn, *args):
    try:
        with memory_guard(str(args[0])):  # a failed allocation is one line, skipping what needed it
            return fn(*args)
    except UserError as e:
        return str(e)


# -------------------------------------------------------------------------------------------- writing


class _Writer:
    """A background thread writing outputs atomically (PNG/JPEG) while the model computes the next batch."""

    def __init__(self, output_dir: Path, ext: str, jpeg_quality: int, fail: Callable[[Job, str], None],
                 depth: int, stamper: Stamper):
        self.output_dir, self.format, self.stamper = output_dir, EXTENSIONS[ext], stamper
        self.options = {"quality": jpeg_quality} if self.format == "JPEG" else {}
        self.fail, self.written = fail, []
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.thread = threading.Thread(target=self._loop, name="mambast-writer", daemon=True)
        self.thread.start()

    def put(self, job: Job, image: Tensor) -> None:
        self.queue.put((job, image))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()

    def _loop(self) -> None:
        while (item := self.queue.get()) is not None:
            job, image = item
            target = self.output_dir / job.output
            try:
                ensure_dir(target.parent)
                pil = to_pil(image)
                options = {**self.options, **self.stamper.stamp(job).save_options(self.format)}
                atomic_write(target, lambda f, pil=pil, o=options: pil.save(f, format=self.format, **o))
                self.written.append(job)
            except WriteError as e:
                self.fail(job, str(e))
            except Exception as e:  # noqa: BLE001 - an encoder error must not kill the writer thread
                self.fail(job, f"{target}: cannot write ({type(e).__name__}: {e})".splitlines()[0])


# --------------------------------------------------------------------------------------------- running


class _Runner:
    """One process's share: plans, loads, stylizes and writes its jobs."""

    def __init__(self, model: MambaST, output_dir: Path, options: RunOptions, fail: Callable[[Job, str], None],
                 stamper: Stamper):
        self.options, self.output_dir, self.fail, self.stamper = options, output_dir, fail, stamper
        self.engine = Stylizer(model, size=options.size, max_pixels=options.max_pixels,
                               precision=options.precision)
        self.contents: dict[Path, EncodedContent | str] = {}
        self.styles: dict[tuple, Tensor | str] = {}

    def _capacities(self, jobs: Sequence[Job]) -> tuple[int, int]:
        """Cache sizes: contents B + 1 (a content-major list reuses one content over consecutive batches);
        styles: every distinct style of the run up to 128 (all pairs: each style encoded once per grid, as
        long as they fit), at least 16, and always room for one batch's styles."""
        b, per_job = self.options.batch_size, max((len(j.styles) for j in jobs), default=1)
        distinct = len({s for j in jobs for s in j.styles})
        return b + 1, min(max(16, distinct), 128) + b * per_job

    def run(self, jobs: Sequence[Job], bar) -> list[Job]:
        self.capacities = self._capacities(jobs)
        self.content_lru, self.style_lru = _LRU(self.capacities[0]), _LRU(self.capacities[1])
        batches = _plan(jobs, self.engine, self.options, self.capacities, self._fail_and_count(bar))
        o = self.options
        loads = _Loads(batches, o.size, o.max_pixels, self.engine.patch, o.controls)
        loader = DataLoader(loads, batch_size=None, shuffle=False, num_workers=o.workers,
                            collate_fn=_identity, prefetch_factor=2 if o.workers else None,
                            persistent_workers=False)
        writer = _Writer(self.output_dir, o.ext, o.jpeg_quality, self.fail, depth=2 * o.batch_size + 2,
                         stamper=self.stamper)
        self.last_use = {job.content: i for i, batch in enumerate(batches) for job in batch.jobs}
        try:
            for i, (batch, loaded) in enumerate(zip(batches, loader, strict=True)):
                self._batch(batch, loaded, writer, i)
                bar.update(len(batch.jobs))
        finally:
            writer.close()
        return writer.written

    def _fail_and_count(self, bar):
        def fail(job: Job, reason: str) -> None:
            self.fail(job, reason)
            bar.update(1)
        return fail

    @torch.inference_mode()
    def _batch(self, batch: _Batch, loaded: dict, writer: _Writer, index: int) -> None:
        """Stylize batch `index`. The decoded images in `loaded` are released once encoded; the content tokens
        become the decoder's running buffer when nothing reads them later (a batch copy, or the content's last
        batch: full-size photos, docs/memory.md)."""
        engine, controls = self.engine, self.options.controls
        self._encode_contents(loaded.pop("contents"))
        self._encode_styles(loaded.pop("styles"))
        ready, tokens = [], []
        for job in batch.jobs:  # replay the planner's cache touches in its order
            content = self._touch(self.content_lru, self.contents, job.content)
            styles = [self._touch(self.style_lru, self.styles, k) for k in _style_keys(job, batch.grid, controls)]
            error = next((x for x in (content, *styles) if isinstance(x, str)), None)
            if error is not None:
                self.fail(job, error)
            else:
                ready.append((job, content))
                tokens.append(styles)
        if not ready:
            return
        encoded = _stack([c for _, c in ready])
        slots = [_cat([t[i] for t in tokens]) for i in range(len(tokens[0]))]  # (B, H/p, W/p, C) each
        seeds = [job.seed for job, _ in ready] if controls.shuffle else None
        consume = len(ready) > 1 or self.last_use[ready[0][0].content] == index
        if len(ready) == 1 and consume:
            self.contents.pop(ready[0][0].content)  # its tokens are overwritten below: never read them again
        try:
            with memory_guard(f"{len(ready)} pair(s) at {batch.grid[1]} x {batch.grid[0]} px",
                              "ask for a smaller size or batch size"):
                out = engine._render(encoded, slots, controls, seeds, None,  # = render, consuming the tokens
                                     consume=consume).float().cpu()  # (B, 3, h|H, w|W)
        except UserError as e:  # e.g. a mask that does not fit the number of styles, or memory
            for job, _ in ready:
                self.fail(job, str(e))
            return
        for (job, content), image in zip(ready, out, strict=True):
            h, w = content.image.shape[-2:]
            writer.put(job, image[:, :h, :w])

    def _touch(self, lru: _LRU, values: dict, key):
        _, evicted = lru.touch(key)
        value = values[key]
        for k in evicted:
            values.pop(k, None)
        return value

    def _encode_contents(self, loaded: dict) -> None:
        """Encode the batch's newly loaded contents (one padded grid, any exact sizes) in one model call:
        each padded by the engine's own rule, as `Stylizer.encode_content` does."""
        engine = self.engine
        good = [(p, x.to(engine.device, engine.dtype)[None]) for p, x in loaded.items() if not isinstance(x, str)]
        self.contents.update({p: x for p, x in loaded.items() if isinstance(x, str)})
        if good:
            try:
                with memory_guard(f"{good[0][0]}" + (f" and {len(good) - 1} more" if len(good) > 1 else "")):
                    padded = _cat([pad_to_patches(x, engine.patch) for _, x in good])  # (n, 3, H, W)
                    with engine.autocast():
                        tokens = engine.model.encode_content(padded)
            except UserError as e:  # not enough memory: these contents' jobs fail with this line
                self.contents.update({p: str(e) for p, _ in good})
                return
            for i, (path, x) in enumerate(good):
                self.contents[path] = EncodedContent(x, padded[i:i + 1], tokens[i:i + 1])

    def _encode_styles(self, loaded: dict) -> None:
        """Encode the batch's newly loaded styles (one grid) in one model call."""
        good = [(k, x) for k, x in loaded.items() if not isinstance(x, str)]
        self.styles.update({k: x for k, x in loaded.items() if isinstance(x, str)})
        if good:
            engine = self.engine
            try:
                with memory_guard(f"{len(good)} style(s) at {good[0][1].shape[-1]} x {good[0][1].shape[-2]} px"), \
                        engine.autocast():
                    x = _cat([x[None] for _, x in good]).to(engine.device, engine.dtype)
                    tokens = engine.model.encode_style(x)
            except UserError as e:  # not enough memory: these styles' jobs fail with this line
                self.styles.update({k: str(e) for k, _ in good})
                return
            self.styles.update({k: tokens[i:i + 1] for i, (k, _) in enumerate(good)})


def _cat(tensors: list[Tensor]) -> Tensor:
    """torch.cat along dim 0, without a copy for one tensor (a 12-MP token map is 384 MB)."""
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)


def _stack(contents: list[EncodedContent]) -> EncodedContent:
    """One batch from single encoded contents of one padded grid (a batch of one is that content itself, not
    a copy). Contents of different sizes are carried padded (the render then covers the padded grid, cropped
    per job afterwards: the same pixels, since the decoder sees the padded grid either way)."""
    if len(contents) == 1:
        return contents[0]
    padded = torch.cat([c.padded for c in contents])
    tokens = torch.cat([c.tokens for c in contents])
    sizes = {tuple(c.image.shape[-2:]) for c in contents}
    image = torch.cat([c.image for c in contents]) if len(sizes) == 1 else padded
    return EncodedContent(image, padded, tokens)


# ------------------------------------------------------------------------------------------- entry point


def check_output_dir(output_dir: str | Path) -> Path:
    """Create the output folder and prove a file can be written there; WriteError (one line) otherwise:
    nothing could be written at all."""
    out = ensure_dir(output_dir)
    probe = out / f".mambast-write-test.{os.getpid()}"
    try:
        atomic_write_bytes(probe, bytes(4096))  # one block: a full disk fails here, not on every output
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return out


def run_jobs(model: MambaST, jobs: Sequence[Job], output_dir: str | Path, options: RunOptions | None = None,
             dist: Dist | None = None, refused: dict[int, str] | None = None) -> JobReport:
    """Stylize `jobs` (the whole work list, identical in every process) into `output_dir`.

    This process does its shard (`dist`: rank/world; None: everything). refused: job index -> reason for jobs
    that must not run (see `worklist.find_conflicts`), reported once. Returns the report of all processes
    (complete on every rank). Raises WriteError if the output folder cannot be written at all.
    """
    options = options or RunOptions()
    dist = dist or Dist()
    out = Path(output_dir)
    check_output_dir(out)
    if options.skip_existing:  # a resumed run: remove the temp files a killed run left, before anyone writes
        if dist.rank == 0:
            remove_stale_temp_files(out, recursive=True)
        dist.barrier()
    refused = refused or {}
    failed: list[tuple[int, str, str]] = []
    lock = threading.Lock()

    def fail(job: Job, reason: str) -> None:
        with lock:
            failed.append((job.index, job.describe(), reason))
        if options.on_error:
            options.on_error(reason)

    if dist.rank == 0:
        for job in jobs:
            if job.index in refused:
                fail(job, refused[job.index])
    mine = [j for j in shard(jobs, dist.rank, dist.world_size) if j.index not in refused]
    stamper = Stamper(model, options.size, options.controls, options.precision, EXTENSIONS[options.ext],
                      options.jpeg_quality)
    existing, stale = _kept_outputs(mine, out, stamper) if options.skip_existing else ([], set())
    kept = {j.index for j in existing}
    todo = [j for j in mine if j.index not in kept]
    bar = tqdm(total=len(todo), desc="stylize", unit="img", disable=not options.progress or dist.rank != 0)
    with contextlib.closing(bar):
        written = _Runner(model, out, options, fail, stamper).run(todo, bar)
    done = sorted(written + existing, key=lambda j: j.index)
    if options.manifest:
        _write_rank_manifest(out, options.manifest, dist, done)
    parts = dist.gather((failed, [j.index for j in written], [j.index for j in existing],
                         [j.index for j in written if j.index in stale]))
    report = JobReport()
    by_index = {j.index: j for j in jobs}
    for part_failed, part_written, part_existing, part_replaced in parts:
        report.failed += [(d, r) for _, d, r in sorted(part_failed)]
        report.written += [out / by_index[i].output for i in part_written]
        report.existing += [out / by_index[i].output for i in part_existing]
        report.replaced += [out / by_index[i].output for i in part_replaced]
    if options.manifest and dist.rank == 0:
        _merge_manifests(out, options.manifest, dist.world_size)
    dist.barrier()
    return report


def _kept_outputs(jobs: Sequence[Job], out: Path, stamper: Stamper) -> tuple[list[Job], set[int]]:
    """skip_existing: (jobs whose output exists with the stamp this run would write, with the seed it records;
    indices of jobs whose output exists but was made otherwise, or carries no stamp: made again)."""
    kept, stale = [], set()
    for job in jobs:
        target = out / job.output
        if not target.exists():
            continue
        found = read_stamp(target)
        if stamper.matches(job, found):
            kept.append(dataclasses.replace(job, seed=found.seed))
        else:
            stale.add(job.index)
    return kept, stale


def _manifest_rows(jobs: Sequence[Job]) -> list[dict]:
    return [{"content": j.content_name, "style": "+".join(j.style_names), "output": j.output.as_posix(),
             "seed": "" if j.seed is None else j.seed, "index": j.index} for j in jobs]


def _rank_file(out: Path, manifest: str, rank: int) -> Path:
    return out / f".{manifest}.rank{rank}.jsonl"


def _write_rank_manifest(out: Path, manifest: str, dist: Dist, done: Sequence[Job]) -> None:
    lines = "".join(json.dumps(r) + "\n" for r in _manifest_rows(done))
    atomic_write_text(_rank_file(out, manifest, dist.rank), lines)


def _merge_manifests(out: Path, manifest: str, world: int) -> None:
    """Rank 0: the per-rank manifests merged in work-list order into `out/manifest` (CSV or JSON lines)."""
    rows = []
    for rank in range(world):
        path = _rank_file(out, manifest, rank)
        rows += [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]
    rows.sort(key=lambda r: r.pop("index"))
    if manifest.endswith(".jsonl"):
        text = "".join(json.dumps(r) + "\n" for r in rows)
    else:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        text = buf.getvalue()
    atomic_write_text(out / manifest, text)
    for path in out.glob(f".{glob.escape(manifest)}.rank*.jsonl"):  # also those a larger killed run left
        with contextlib.suppress(OSError):
            path.unlink()
