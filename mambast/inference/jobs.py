"""The folder/dataset runner: a work list (worklist.py) stylized in batches, sharded over processes, resumable.

    report = run_jobs(model, jobs, output_dir, RunOptions(batch_size=8, workers=2))

- Batches: jobs whose contents have the same padded grid (after the size policy; the same exact size when a
  mask is used) are stylized together. Every job carries its own shuffle seed, so a batch gives the same
  images (<= 1e-5) as one job at a time (`Stylizer.render(..., seeds=)`).
- Inputs are decoded and resized in a torch DataLoader (`workers` processes; 0: in this process) by the
  engine's own `Preprocessor` (preprocess.py: size policy, style fit, colour match), and encoded by the
  engine's batch primitives (`Stylizer.encode_contents`, `encode_styles`, `render`): this module plans,
  loads, writes and shards, the engine computes. Each content and each style is decoded and encoded once
  while it is kept (content-major pair lists encode N contents + M styles, not N x M): the planner decides
  what each batch loads and what is dropped after it, so the workers decode exactly what the model needs.
- An input that cannot be used travels as a `Failure` (preprocess.py) where its tensor would have been: only
  the jobs that need it fail, each with that one line.
- Outputs go to a background writer thread: atomic writes (`mambast.fs`: temp file + rename, never a
  truncated file under the final name), PNG or JPEG. A write that fails skips that job; the run goes on.
- Every output carries a stamp of what made it (provenance.py: model, input files' bytes, settings, seed).
- Sharding (mambast.torchrun.DistContext): process `rank` of `world` takes jobs rank, rank + world, ...; `skip_existing`
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
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..errors import FieldError, UserError
from ..fs import WriteError, atomic_write, atomic_write_bytes, atomic_write_text, ensure_dir, remove_stale_temp_files
from ..images import to_pil
from ..torchrun import DistContext
from .controls import Controls
from .engine import DEFAULT_MAX_PIXELS, EncodedContent, Stylizer, cat
from .preprocess import ContentPlan, Failure, Preprocessor, attempt
from .provenance import Stamper, read_stamp
from .size import check_max_pixels, check_size, check_style_size, memory_guard
from .style_cache import StyleKey
from .values import check_number
from .worklist import EXTENSIONS, Job, check_ext, shard

if TYPE_CHECKING:
    from ..model import MambaST

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
        if self.controls is not None:  # a style size no style can have within the limit: before any work
            check_style_size(self.controls.style_size, self.max_pixels)
        if self.manifest is not None and Path(self.manifest).name != self.manifest:
            raise FieldError(f"manifest takes a file name (written in the output folder), got {self.manifest!r}",
                             "manifest")
        if self.manifest is not None and Path(self.manifest).suffix not in (".csv", ".jsonl"):
            raise FieldError(f"manifest must end in .csv or .jsonl, got {self.manifest!r}", "manifest")


@dataclass
class JobReport:
    """What a run did (all ranks together, on every rank): outputs written, jobs skipped because their output
    existed with this run's stamp, outputs among `written` that replaced a file made with other settings
    (or without a stamp) under skip_existing, (job description, reason) failures, and the seconds the run
    took (this process: from checking the output folder to the merged report)."""

    written: list[Path] = field(default_factory=list)
    existing: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    replaced: list[Path] = field(default_factory=list)
    seconds: float = 0.0


# ----------------------------------------------------------------------------------------- planning


@dataclass
class _Batch:
    """Jobs stylized together (one padded grid), what the loader must decode for them (contents by path,
    styles by key, not kept from earlier batches) and what is no longer needed once they are loaded (dropped
    before the batch renders)."""

    jobs: list[Job]
    grid: tuple[int, int]
    load_contents: list[Path]
    load_styles: list[StyleKey]
    drop_contents: list[Path] = field(default_factory=list)
    drop_styles: list[StyleKey] = field(default_factory=list)


class _LRU:
    """A least-recently-used set of keys (the planner's model of what the runner keeps): `touch` says whether
    a key was there and which keys it pushed out."""

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

    def schedule(self, keys: Sequence[Hashable]) -> tuple[list, list]:
        """Touch `keys` in order -> (keys to load: not kept, in first-use order; keys to drop: pushed out and
        not among `keys`)."""
        load, drop = [], []
        for key in keys:
            hit, evicted = self.touch(key)
            if not hit:
                load.append(key)
            drop += evicted
        wanted = set(keys)
        return list(dict.fromkeys(load)), [k for k in dict.fromkeys(drop) if k not in wanted]


def style_keys(job: Job, grid: tuple[int, int], controls: Controls) -> list[StyleKey]:
    """One key per style of the job: (path, grid, style_size); a colour-matched style depends on the job's
    content, so its key names the job (never shared)."""
    matched = job.index if controls.preserve_color == "match" else None
    return [StyleKey(s, tuple(grid), controls.style_size, matched_to=matched) for s in job.styles]


def _plan(jobs: Sequence[Job], pre: Preprocessor, options: RunOptions, caches: tuple[int, int],
          fail: Callable[[Job, str], None]) -> list[_Batch]:
    """Group jobs into batches of one padded grid (exact size with a mask), in order of first appearance,
    and mark what each batch must load and may drop. Sizes come from image headers (`Preprocessor.plan`, no
    decoding); a content that cannot be used (unreadable, over the pixel limit, under one patch) fails its
    jobs here."""
    exact = options.controls.mask is not None
    open_batches: dict[tuple, list[Job]] = {}
    keyed: list[tuple[tuple[int, int], list[Job]]] = []
    plans: dict[Path, ContentPlan | Failure] = {}
    for job in jobs:
        if job.content not in plans:
            plans[job.content] = attempt(pre.plan, job.content)
        plan = plans[job.content]
        if isinstance(plan, Failure):
            fail(job, str(plan))
            continue
        key = plan.size if exact else plan.grid
        group = open_batches.setdefault(key, [])
        group.append(job)
        grid_pixels = plan.grid[0] * plan.grid[1]
        if len(group) == options.batch_size or (options.max_pixels and (len(group) + 1) * grid_pixels >
                                                options.max_pixels):  # a batch holds at most the pixel limit
            keyed.append((plan.grid, open_batches.pop(key)))
    keyed += [(plans[g[0].content].grid, g) for g in open_batches.values()]
    content_lru, style_lru = _LRU(caches[0]), _LRU(caches[1])
    batches = []
    for grid, group in keyed:
        contents = content_lru.schedule([j.content for j in group])
        styles = style_lru.schedule([k for j in group for k in style_keys(j, grid, options.controls)])
        batches.append(_Batch(group, grid, contents[0], styles[0], contents[1], styles[1]))
    return batches


# ------------------------------------------------------------------------------------------- loading


class _Loads(Dataset):
    """Decodes what batch i needs, in a DataLoader worker, with the engine's preprocessor:
    {"contents": {path: (3, h, w) | Failure}, "styles": {key: (3, H, W) | Failure}} (a bad file fails only
    its jobs)."""

    def __init__(self, batches: list[_Batch], pre: Preprocessor, controls: Controls):
        self.batches, self.pre, self.controls = batches, pre, controls

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> dict:
        batch = self.batches[i]
        contents = {p: attempt(self.pre.content, p) for p in batch.load_contents}
        return {"contents": contents, "styles": {k: self._style(k, batch, contents) for k in batch.load_styles}}

    def _style(self, key: StyleKey, batch: _Batch, contents: dict) -> Tensor | Failure:
        """The style of `key` on its grid, colour-matched to its job's content when the key names a job."""
        content = None
        if key.matched_to is not None:
            job = next(j for j in batch.jobs if j.index == key.matched_to)
            content = contents.get(job.content)
            if content is None:  # kept from an earlier batch: decoded again for its colours
                content = attempt(self.pre.content, job.content)
            if isinstance(content, Failure):
                return content
        return attempt(self.pre.style, key.source, key.grid, self.controls, content)


def _identity(x):
    return x


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
    """One process's share: plans, loads and writes its jobs; the engine encodes and renders them."""

    def __init__(self, model: MambaST, output_dir: Path, options: RunOptions, fail: Callable[[Job, str], None],
                 stamper: Stamper):
        self.options, self.output_dir, self.fail, self.stamper = options, output_dir, fail, stamper
        self.engine = Stylizer(model, size=options.size, max_pixels=options.max_pixels, style_cache=None,
                               precision=options.precision)  # its style cache: kept and dropped as planned
        self.contents: dict[Path, EncodedContent | Failure] = {}

    def _capacities(self, jobs: Sequence[Job]) -> tuple[int, int]:
        """Cache sizes: contents B + 1 (a content-major list reuses one content over consecutive batches);
        styles: every distinct style of the run up to 128 (all pairs: each style encoded once per grid, as
        long as they fit), at least 16, and always room for one batch's styles."""
        b, per_job = self.options.batch_size, max((len(j.styles) for j in jobs), default=1)
        distinct = len({s for j in jobs for s in j.styles})
        return b + 1, min(max(16, distinct), 128) + b * per_job

    def run(self, jobs: Sequence[Job], bar) -> list[Job]:
        o, pre = self.options, self.engine.preprocessor
        batches = _plan(jobs, pre, o, self._capacities(jobs), self._fail_and_count(bar))
        loader = DataLoader(_Loads(batches, pre, o.controls), batch_size=None, shuffle=False,
                            num_workers=o.workers, collate_fn=_identity, prefetch_factor=2 if o.workers else None,
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
        for path in batch.drop_contents:
            self.contents.pop(path, None)
        engine.styles.drop(batch.drop_styles)
        ready, tokens = [], []
        for job in batch.jobs:
            content = self.contents[job.content]
            styles = [engine.styles.get(k) for k in style_keys(job, batch.grid, controls)]
            failure = next((x for x in (content, *styles) if isinstance(x, Failure)), None)
            if failure is not None:
                self.fail(job, str(failure))
            else:
                ready.append((job, content))
                tokens.append(styles)
        if not ready:
            return
        encoded = EncodedContent.cat([c for _, c in ready])
        slots = [cat([t[i] for t in tokens]) for i in range(len(tokens[0]))]  # (B, H/p, W/p, C) each
        seeds = [job.seed for job, _ in ready] if controls.shuffle else None
        consume = len(ready) > 1 or self.last_use[ready[0][0].content] == index
        if len(ready) == 1 and consume:
            self.contents.pop(ready[0][0].content)  # its tokens are overwritten below: never read them again
        try:
            with memory_guard(f"{len(ready)} pair(s) at {batch.grid[1]} x {batch.grid[0]} px",
                              "ask for a smaller size or batch size"):
                out = engine.render(encoded, slots, controls, seeds, consume=consume).float().cpu()  # (B, 3, h|H, w|W)
        except UserError as e:  # e.g. a mask that does not fit the number of styles, or memory
            for job, _ in ready:
                self.fail(job, str(e))
            return
        for (job, content), image in zip(ready, out, strict=True):
            h, w = content.image.shape[-2:]
            writer.put(job, image[:, :h, :w])

    def _encode_contents(self, loaded: dict[Path, Tensor | Failure]) -> None:
        """Encode the batch's newly loaded contents (one padded grid, any exact sizes) in one model call
        (`Stylizer.encode_contents`); a failed allocation fails these contents' jobs with one line."""
        good = {p: x for p, x in loaded.items() if not isinstance(x, Failure)}
        self.contents.update({p: x for p, x in loaded.items() if isinstance(x, Failure)})
        if good:
            paths = list(good)
            what = f"{paths[0]}" + (f" and {len(paths) - 1} more" if len(paths) > 1 else "")
            encoded = attempt(self.engine.encode_contents, list(good.values()), what=what)
            if isinstance(encoded, Failure):
                encoded = [encoded] * len(paths)
            self.contents.update(zip(paths, encoded, strict=True))

    def _encode_styles(self, loaded: dict[StyleKey, Tensor | Failure]) -> None:
        """Encode the batch's newly loaded styles (one grid) in one model call (`Stylizer.encode_styles`)
        into the engine's style cache; a failed allocation fails these styles' jobs with one line."""
        for key, value in loaded.items():
            if isinstance(value, Failure):
                self.engine.styles.put(key, value)
        good = {k: x for k, x in loaded.items() if not isinstance(x, Failure)}
        if good:
            first = next(iter(good.values()))
            what = f"{len(good)} style(s) at {first.shape[-1]} x {first.shape[-2]} px"
            encoded = attempt(self.engine.encode_styles, list(good.values()), what=what)
            for key, tokens in zip(good, [encoded] * len(good) if isinstance(encoded, Failure) else encoded,
                                   strict=True):
                self.engine.styles.put(key, tokens)


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
             dist: DistContext | None = None, refused: dict[int, str] | None = None) -> JobReport:
    """Stylize `jobs` (the whole work list, identical in every process) into `output_dir`.

    This process does its shard (`dist`: rank/world; None: everything). refused: job index -> reason for jobs
    that must not run (see `worklist.find_conflicts`), reported once. Returns the report of all processes
    (complete on every rank). Raises WriteError if the output folder cannot be written at all.
    """
    start = time.perf_counter()
    options = options or RunOptions()
    dist = dist or DistContext()
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
    report.seconds = time.perf_counter() - start
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


def _write_rank_manifest(out: Path, manifest: str, dist: DistContext, done: Sequence[Job]) -> None:
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
