"""Training data: two image folders streamed as (content, style) pairs, deterministic given the seed.

Every sample is addressed by its position p in an endless stream. Position p of the content stream is
image perm_e[p mod n] of epoch e = p div n, where perm_e is a permutation seeded by (seed, "content", e)
(likewise for styles, with their own n); its random crop is drawn from a generator seeded by (seed, p).
So the data a step sees depends only on (seed, step, rank, world size, batch size): worker processes,
restarts and resumes cannot change it, and the data-order position of a run is simply its step.

Step t of rank r (of W ranks) with batch B reads positions (t W + r) B ... (t W + r) B + B - 1, so the
ranks read disjoint shards of the one stream. Unreadable files are replaced by the next readable image
of the same permutation and reported with their reason ("PATH: why"; the loop counts them); they never stop
a run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import UserError
from ..images import ImageError, image_folder, load_image, to_tensor

__all__ = ["PairStream", "StepSampler", "find_images", "make_loader", "mix_seed"]

_MASK64 = (1 << 64) - 1
MAX_RETRIES = 64


def mix_seed(*parts: int) -> int:
    """A well-mixed non-negative 63-bit seed from integers (splitmix64 over the parts)."""
    h = 0x9E3779B97F4A7C15
    for part in parts:
        h = (h ^ (int(part) & _MASK64)) & _MASK64
        h = (h + 0x9E3779B97F4A7C15) & _MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 31
    return h & ((1 << 63) - 1)


def find_images(folder: str | Path, role: str, exclude: str | Path | None = None) -> list[Path]:
    """Every image file under `folder` (flat or nested, sorted; hidden names skipped; `exclude`, e.g. the run
    folder, left out): `mambast.images.image_folder` with the config field (`content_dir` / `style_dir`) its
    FieldError names when the folder is missing or holds no image."""
    return image_folder(folder, f"{role}_dir", exclude)


class PairStream(Dataset):
    """Position p -> {"content": (3, size, size), "style": (3, size, size), "bad": [unreadable paths]}.

    Each image is resized to load_size x load_size (bilinear, aspect not kept) and randomly cropped to
    size x size: the paper's transform with load_size 512, size 256.
    """

    def __init__(self, content: Sequence[Path], style: Sequence[Path], size: int, load_size: int, seed: int):
        self.paths = {"content": [str(p) for p in content], "style": [str(p) for p in style]}
        self.size, self.load_size, self.seed = size, load_size, seed
        self._perms: dict[tuple[str, int], Tensor] = {}

    def __len__(self) -> int:  # an endless stream; samplers give the positions
        return 1 << 62

    def _perm(self, kind: str, epoch: int) -> Tensor:
        key = (kind, epoch)
        if key not in self._perms:
            if len(self._perms) > 4:
                self._perms.clear()
            g = torch.Generator().manual_seed(mix_seed(self.seed, 1 if kind == "content" else 2, epoch))
            self._perms[key] = torch.randperm(len(self.paths[kind]), generator=g)
        return self._perms[key]

    def _load(self, kind: str, position: int, bad: list[str]) -> Image.Image:
        paths = self.paths[kind]
        n = len(paths)
        perm = self._perm(kind, position // n)
        for k in range(min(n, MAX_RETRIES)):
            path = paths[int(perm[(position + k) % n])]
            try:
                return load_image(path, size_hint=(self.load_size, self.load_size))  # JPEG: draft decode
            except ImageError as e:  # its one line names the file and the reason (corrupt, too large, ...)
                bad.append(str(e) if str(e).startswith(path) else f"{path}: {e}")
            except OSError as e:
                bad.append(f"{path}: {e.strerror or e}")
        raise UserError(f"{min(n, MAX_RETRIES)} {kind} images in a row are unreadable (e.g. {bad[-1]})")

    def _transform(self, img: Image.Image, kind: int, position: int) -> Tensor:
        img = img.resize((self.load_size, self.load_size), Image.BILINEAR)
        g = torch.Generator().manual_seed(mix_seed(self.seed, 3, kind, position))
        top, left = torch.randint(0, self.load_size - self.size + 1, (2,), generator=g).tolist()
        return to_tensor(img.crop((left, top, left + self.size, top + self.size)))

    def __getitem__(self, position: int) -> dict:
        bad: list[str] = []
        content = self._transform(self._load("content", position, bad), 1, position)
        style = self._transform(self._load("style", position, bad), 2, position)
        return {"content": content, "style": style, "bad": bad}


class StepSampler(Sampler[int]):
    """Endless positions for steps start, start+1, ... of one rank: (t W + r) B + b, b < B."""

    def __init__(self, start_step: int, batch_size: int, rank: int = 0, world_size: int = 1):
        self.start, self.batch, self.rank, self.world = start_step, batch_size, rank, world_size

    def __iter__(self) -> Iterator[int]:
        step = self.start
        while True:
            base = (step * self.world + self.rank) * self.batch
            yield from range(base, base + self.batch)
            step += 1


def collate(items: list[dict]) -> dict:
    """Stack content/style to (B, 3, S, S); concatenate the unreadable-file lists."""
    return {
        "content": torch.stack([it["content"] for it in items]),
        "style": torch.stack([it["style"] for it in items]),
        "bad": [p for it in items for p in it["bad"]],
    }


def make_loader(
    stream: PairStream, start_step: int, batch_size: int, workers: int, rank: int = 0, world_size: int = 1
) -> Iterator[dict]:
    """An endless iterator of batches for steps start_step, start_step + 1, ... of this rank."""
    loader = DataLoader(
        stream,
        batch_size=batch_size,
        sampler=StepSampler(start_step, batch_size, rank, world_size),
        num_workers=workers,
        collate_fn=collate,
        persistent_workers=False,
        prefetch_factor=2 if workers else None,
    )
    return iter(loader)
