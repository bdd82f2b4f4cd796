"""The engine's one cache of style encodings, keyed by what an encoding is made of (a typed `StyleKey`).

A style's tokens depend on the style's content, the grid it is fitted to, `style_size`, the precision and the
model's weights; a colour-matched style ("match") also on one content. `Stylizer.style_tokens` keys a style by
a `Fingerprint` of its bytes or pixels; a folder run (jobs.py), whose files are read once, by its path and
the job it is matched to, and drops what its planner says is no longer needed.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from torch import Tensor

from .preprocess import Failure, is_path


@dataclass(frozen=True)
class Fingerprint:
    """What a style is made of: a file's bytes (kind "file", size = byte count) or an RGB image's pixels
    (kind "pixels", size = (width, height), mode), hashed with BLAKE2b (160 bits)."""

    kind: str
    size: int | tuple[int, int]
    digest: str
    mode: str | None = None

    @classmethod
    def of(cls, style: Image.Image | str | os.PathLike) -> Fingerprint | None:
        """The fingerprint of a file or an in-memory image; None when the file cannot be read (it is then
        read, and refused in one line, by the preprocessor)."""
        digest = hashlib.blake2b(digest_size=20)
        if not is_path(style):
            digest.update(style.tobytes())
            return cls("pixels", style.size, digest.hexdigest(), style.mode)
        try:
            with open(style, "rb") as f:
                size = 0
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
        except OSError:
            return None
        return cls("file", size, digest.hexdigest())


@dataclass(frozen=True)
class StyleKey:
    """One style encoding: source (a Fingerprint, or a file's Path in a folder run), grid (padded (H, W) px
    of the content), style_size (None: stretched), precision and weights (the model's in-place version) of
    the engine; matched_to: the job whose content the style was colour-matched to (None: not matched)."""

    source: Fingerprint | Path
    grid: tuple[int, int]
    style_size: int | None
    precision: str = ""
    weights: int = 0
    matched_to: int | None = None


class StyleCache:
    """Style encodings (tokens (1, H/p, W/p, C), or the Failure that stopped one) by StyleKey; beyond
    `capacity` (None: unbounded, the owner drops) the least recently used go first."""

    def __init__(self, capacity: int | None):
        self.capacity = capacity
        self._items: OrderedDict[StyleKey, Tensor | Failure] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: StyleKey) -> bool:
        return key in self._items

    def get(self, key: StyleKey) -> Tensor | Failure | None:
        """The entry of `key` (now the most recently used), or None."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: StyleKey, value: Tensor | Failure) -> None:
        """Store an entry (the most recently used), dropping the least recently used beyond capacity."""
        self._items[key] = value
        self._items.move_to_end(key)
        while self.capacity is not None and len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def drop(self, keys: Iterable[StyleKey]) -> None:
        """Forget these entries (absent ones are ignored)."""
        for key in keys:
            self._items.pop(key, None)
