"""Watching a run: the metrics file (JSON lines), TensorBoard events when available, sample grids."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from ..fs import WriteError, atomic_write, atomic_write_text, describe_os_error, ensure_dir
from ..images import to_pil

__all__ = ["MetricsLog", "sample_grid", "save_sample_grid", "read_metrics"]

GRID_COLUMNS = ("content", "style", "Ics", "Icc", "Iss")


class MetricsLog:
    """Appends one JSON object per logged step to RUN_DIR/metrics.jsonl (and TensorBoard scalars).

    On resume the file is cut back to the resumed step (rewritten atomically), so it never holds the same step
    twice. A line that cannot be written (full disk) raises `mambast.fs.WriteError` naming the file.
    """

    def __init__(self, run_dir: str | Path, resume_step: int = 0, tensorboard: bool = True):
        self.path = ensure_dir(run_dir) / "metrics.jsonl"
        if resume_step and self.path.exists():
            keep = [line for line in self.path.read_text().splitlines() if _step_of(line) <= resume_step]
            atomic_write_text(self.path, "".join(line + "\n" for line in keep))
        elif not resume_step:
            atomic_write_text(self.path, "")
        try:
            self._file = open(self.path, "a")
        except OSError as e:
            raise WriteError(f"{self.path}: cannot write ({describe_os_error(e)})") from None
        self.tb = _tensorboard(Path(run_dir) / "tb") if tensorboard else None

    def write(self, step: int, values: dict[str, float]) -> None:
        record = {"step": step, **{k: _finite(v) for k, v in values.items()}}
        try:  # appended, not atomic: a torn last line is dropped on resume (_step_of)
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        except OSError as e:
            raise WriteError(f"{self.path}: cannot write ({describe_os_error(e)})") from None
        if self.tb is not None:
            for key, value in values.items():
                self.tb.add_scalar(f"train/{key}", value, step)

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:  # the buffered tail could not be written (full disk): write() already said so
            pass
        if self.tb is not None:
            self.tb.close()


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The records of RUN_DIR/metrics.jsonl."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62  # drop unparsable lines (a torn last write)


def _finite(v: float) -> float | str:
    return v if math.isfinite(v) else str(v)


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: metrics.jsonl only
        return None
    return SummaryWriter(str(folder))


def sample_grid(images: dict[str, Tensor], rows: int = 4, columns: tuple[str, ...] = GRID_COLUMNS) -> Image.Image:
    """One row per sample (at most `rows`), one column per name in `columns` (the paper's objective: content |
    style | Ics | Icc | Iss), clamped to [0, 1].

    images: {name: (B, 3, H, W)}, every name of `columns` included.
    """
    cols = [images[name].detach().float().cpu()[:rows] for name in columns]
    grid = torch.cat([torch.cat(list(col), dim=1) for col in cols], dim=2)  # (3, rows*H, 5*W)
    return to_pil(grid)


def save_sample_grid(run_dir: str | Path, step: int, images: dict[str, Tensor],
                     columns: tuple[str, ...] = GRID_COLUMNS) -> Path:
    """Write sample_grid(images, columns=columns) as RUN_DIR/samples/step_NNNNNNNN.png atomically (WriteError
    naming the path when it cannot)."""
    path = ensure_dir(Path(run_dir) / "samples") / f"step_{step:08d}.png"
    grid = sample_grid(images, columns=columns)
    return atomic_write(path, lambda f: grid.save(f, format="PNG"))
