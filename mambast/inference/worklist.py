"""Work lists of folder and dataset runs: which content goes with which style(s), under which output name and
with which shuffle seed. Pure planning (paths and names, no image is opened), identical in every process of a
sharded run, so that a shard is a slice of one list (see jobs.py).

Output names (README "Command line"):
- `mambast stylize`: `{content_dir}/{content_stem}_stylized_{style_label}.{ext}` where `content_dir` mirrors
  the content's sub-folder below `--content` and `style_label` is the style's path below its `--style` root
  without extension, sub-folders joined by `__` (a flat style folder: just the stem); several styles mixed
  into one output (weights or a mask): their labels joined by `+`.
- `mambast stylize-dataset`: the content's relative path (sub-folders mirrored), file name kept
  (`name="content"`) or `{content_stem}_stylized_{style_label}` (`name="content-style"`), extension `ext`.
Two jobs that would still share an output (same stem, different extensions; case-only differences) are
reported by `find_conflicts`, naming both inputs.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import FieldError
from ..images import relative_names
from .naming import SEPARATOR

EXTENSIONS = {"png": "PNG", "jpg": "JPEG"}
NAMINGS = ("content", "content-style")


@dataclass(frozen=True)
class Job:
    """One output: `content` stylized with `styles` (one, or several mixed), written to `output` (relative to
    the output folder) with shuffle seed `seed` (None: no shuffle). `index`: position in the whole work list;
    `content_name` / `style_names`: the inputs' names relative to their roots (for manifests and messages);
    `seed_drawn`: the seed was drawn at random, not chosen (a resumed run accepts an output of any seed)."""

    index: int
    content: Path
    styles: tuple[Path, ...]
    output: Path
    seed: int | None
    content_name: str
    style_names: tuple[str, ...]
    seed_drawn: bool = False

    def describe(self) -> str:
        """`content + style` as the user named them (for one-line messages)."""
        return f"{self.content} + {' + '.join(str(s) for s in self.styles)}"


@dataclass(frozen=True)
class Named:
    """An input image with its name relative to the folder it was listed from."""

    path: Path
    name: Path


def named(files: Sequence[Path], root: str | Path) -> list[Named]:
    """Pair `list_images(root)` results with `relative_names` (a file root: its name)."""
    return [Named(f, n) for f, n in zip(files, relative_names(files, root), strict=True)]


def style_label(name: Path) -> str:
    """A style's part of an output name: its relative path without extension, sub-folders joined by `__`."""
    return "__".join(name.with_suffix("").parts)


def check_ext(ext: str) -> str:
    ext = ext.lower().lstrip(".")
    if ext == "jpeg":
        ext = "jpg"
    if ext not in EXTENSIONS:
        raise FieldError(f"ext must be one of {', '.join(EXTENSIONS)}, got {ext!r}", "ext")
    return ext


def pair_jobs(contents: Sequence[Named], styles: Sequence[Named], ext: str = "png", mix: bool = False,
              seed: int | None = None, shuffle: bool = True, draw=None, mix_tag: str = "") -> list[Job]:
    """`mambast stylize`: every content x style (content-major), or with `mix` one job per content with all
    styles. seed: the shuffle seed of every job (the same for all, as `mambast.stylize(..., seed=)` uses);
    None: one seed per job from `draw()` (recorded, so a batch equals single calls); shuffle off: None.
    mix_tag: appended to a mix's style label (its weights or mask), so different mixes never share a name."""
    ext = check_ext(ext)
    groups = [tuple(styles)] if mix else [(s,) for s in styles]
    jobs = []
    for c in contents:
        for group in groups:
            label = "+".join(style_label(s.name) for s in group) + (mix_tag if mix else "")
            out = c.name.parent / f"{c.name.stem}{SEPARATOR}{label}.{ext}"
            drawn = shuffle and seed is None
            job_seed = None if not shuffle else draw() if drawn else seed
            jobs.append(Job(len(jobs), c.path, tuple(s.path for s in group), out, job_seed, c.name.as_posix(),
                            tuple(s.name.as_posix() for s in group), seed_drawn=drawn))
    return jobs


def _digest(*parts: object) -> int:
    """A 62-bit integer from the parts' text: the same in every process, on every machine."""
    text = "\0".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 2


def dataset_jobs(contents: Sequence[Named], styles: Sequence[Named], per_content: int = 1, seed: int = 0,
                 ext: str = "png", name: str | None = None, shuffle: bool = True) -> list[Job]:
    """`mambast stylize-dataset`: each content with `per_content` distinct styles drawn at random.

    The draw for a content depends only on (seed, the content's relative path, the sorted style list), so it
    is the same whatever the number of processes and whatever other contents are in the run; each pair's
    shuffle seed is drawn the same way from (seed, content, style). name: "content" (keep the content's
    file name; needs per_content 1), "content-style" (`{stem}_stylized_{style}`), None: the first when
    per_content is 1, else the second. Sub-folders of the contents are mirrored.
    """
    ext = check_ext(ext)
    if per_content < 1:
        raise FieldError(f"styles_per_content must be >= 1, got {per_content}", "styles_per_content")
    if per_content > len(styles):
        raise FieldError(f"styles_per_content is {per_content} but the style folder holds {len(styles)} images",
                         "styles_per_content")
    name = name or ("content" if per_content == 1 else "content-style")
    if name not in NAMINGS:
        raise FieldError(f"name must be one of {', '.join(NAMINGS)}, got {name!r}", "name")
    if name == "content" and per_content > 1:
        raise FieldError("name 'content' keeps one output per content: it needs styles_per_content 1", "name",
                         "styles_per_content")
    jobs = []
    for c in contents:
        rel = c.name.as_posix()
        drawn = random.Random(_digest("styles", seed, rel)).sample(range(len(styles)), per_content)
        for i in drawn:
            s = styles[i]
            stem = c.name.stem if name == "content" else f"{c.name.stem}{SEPARATOR}{style_label(s.name)}"
            out = c.name.parent / f"{stem}.{ext}"
            pair_seed = _digest("shuffle", seed, rel, s.name.as_posix()) if shuffle else None
            jobs.append(Job(len(jobs), c.path, (s.path,), out, pair_seed, rel, (s.name.as_posix(),)))
    return jobs


def find_conflicts(jobs: Sequence[Job], output_dir: Path, inputs: set[Path]) -> dict[int, str]:
    """Jobs that must not run, by index -> one-line reason: an output that is an input image (`inputs`:
    resolved paths), or an output already claimed by an earlier job (compared case-insensitively: some file
    systems are); both inputs named."""
    claimed: dict[str, Job] = {}
    reasons = {}
    base = output_dir.expanduser().resolve()  # once: no file-system call per job
    for job in jobs:
        target = output_dir / job.output
        key = job.output.as_posix().casefold()
        if base / job.output in inputs:
            reasons[job.index] = f"{target}: refusing to overwrite an input image"
        elif key in claimed:
            first = claimed[key]
            reasons[job.index] = (f"{target}: {job.describe()} would have the same output name as "
                                  f"{first.describe()}; rename one of them (skipped the second)")
        else:
            claimed[key] = job
    return reasons


def shard(items: Sequence, rank: int, world: int) -> list:
    """The deterministic share of process `rank` of `world`: items rank, rank + world, ... (by index: the
    shares are disjoint and their union is everything)."""
    return list(items[rank::world])
