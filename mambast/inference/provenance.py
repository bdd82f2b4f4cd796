"""What made an output image, written into the image itself, so that a resumed run (`skip_existing`) keeps only
the files the current settings would make again.

Every output of a folder/dataset run carries a stamp (a PNG text chunk or a JPEG comment, key `mambast`):

    {"made_with": <hex digest>, "seed": <shuffle seed or null>}

`made_with` is a SHA-256 over everything that changes the pixels apart from the seed: the model (its
architecture and every weight), the bytes of the content and style files, the size policy, every
`Controls` field but the seed (a mask by its pixels), the precision ("auto" as resolved for this model on
this device) and the output format (JPEG: quality).
It leaves out what changes only float rounding (device, batch size, number of processes, decode workers),
what only refuses inputs (max_pixels), and the mambast version. A job whose seed the user did not choose
(drawn at random, as `mambast stylize` does without --seed) accepts any recorded seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .controls import Controls
from .precision import resolve_precision
from .worklist import Job

KEY = "mambast"
VERSION = 1  # of what the digest covers: a change here makes every older stamp a mismatch


@dataclasses.dataclass(frozen=True)
class Stamp:
    """made_with: hex digest of the settings and inputs (seed excluded); seed: the shuffle seed (None: off)."""

    made_with: str
    seed: int | None

    def text(self) -> str:
        return json.dumps({"made_with": self.made_with, "seed": self.seed})

    def save_options(self, image_format: str) -> dict:
        """Keyword arguments for `PIL.Image.save` that embed this stamp (PNG text chunk / JPEG comment)."""
        if image_format == "JPEG":
            return {"comment": f"{KEY} {self.text()}".encode()}
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text(KEY, self.text())
        return {"pnginfo": info}


def read_stamp(path: Path) -> Stamp | None:
    """The stamp of an existing output (header only, no decoding); None when there is none or the file cannot
    be read as an image (an older mambast's output, someone else's file, a damaged file)."""
    try:
        with Image.open(path) as im:
            text = im.info.get(KEY)
            comment = im.info.get("comment", b"")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None
    if text is None and isinstance(comment, bytes) and comment.startswith(f"{KEY} ".encode()):
        text = comment[len(KEY) + 1:].decode("utf-8", "replace")
    try:
        data = json.loads(text) if isinstance(text, str) else None
        seed = data["seed"]
        if not isinstance(data["made_with"], str) or not (seed is None or isinstance(seed, int)):
            return None
        return Stamp(data["made_with"], seed)
    except (ValueError, KeyError, TypeError):
        return None


class Stamper:
    """Computes the stamp of every job of one run. The model is hashed once; each input file once (by its
    bytes, lazily, thread-safe: the writer thread stamps while the model computes)."""

    def __init__(self, model: torch.nn.Module, size: int | None, controls: Controls, precision: str,
                 image_format: str, jpeg_quality: int):
        self.settings = {
            "version": VERSION,
            "model": model_digest(model),
            "size": size or None,
            "controls": _controls_record(controls),
            "precision": _resolved(precision, model),
            "format": image_format,
            "jpeg_quality": jpeg_quality if image_format == "JPEG" else None,
        }
        self._files: dict[Path, str] = {}
        self._lock = threading.Lock()

    def stamp(self, job: Job) -> Stamp:
        record = {**self.settings, "content": self._file(job.content), "styles": [self._file(s) for s in job.styles]}
        digest = hashlib.sha256(json.dumps(record, sort_keys=True, default=_plain).encode()).hexdigest()
        return Stamp(digest, None if job.seed is None else int(job.seed))

    def matches(self, job: Job, found: Stamp | None) -> bool:
        """Whether an output stamped `found` is what this job would write (any seed when the job's seed was
        drawn at random, with the shuffle on)."""
        if found is None:
            return False
        wanted = self.stamp(job)
        seed_ok = found.seed == wanted.seed or (job.seed_drawn and found.seed is not None)
        return found.made_with == wanted.made_with and seed_ok

    def _file(self, path: Path) -> str:
        digest = self._files.get(path)
        if digest is None:
            try:
                with open(path, "rb") as f:
                    digest = hashlib.file_digest(f, "sha256").hexdigest()
            except OSError as e:  # unreadable: nothing can match it (the job itself fails when it loads)
                digest = f"unreadable: {e.strerror}"
            with self._lock:
                self._files[path] = digest
        return digest


def model_digest(model: torch.nn.Module) -> str:
    """SHA-256 over the model's configuration (if it has one) and every tensor of its state dict (name,
    dtype, shape, bytes): two models with this digest compute the same function."""
    h = hashlib.sha256()
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        h.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _resolved(precision: str, model: torch.nn.Module) -> str:
    """The concrete precision the engine will run ("auto" differs by device and model, so it is resolved)."""
    config = getattr(model, "config", None)
    if precision != "auto" or config is None:
        return precision
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return resolve_precision(precision, device, config)


def _controls_record(controls: Controls) -> dict:
    """Every Controls field but the seed (each job has its own), the mask as a digest of its pixels."""
    record = {}
    for f in dataclasses.fields(controls):
        value = getattr(controls, f.name)
        if f.name == "seed":
            continue
        if f.name == "mask" and value is not None:
            value = _mask_digest(value)
        elif isinstance(value, tuple):
            value = list(value)
        record[f.name] = value
    return record


def _mask_digest(mask) -> str:
    """A mask given as a path (file bytes), a PIL image or an array (mode/dtype, size, pixels)."""
    if isinstance(mask, Image.Image):
        return hashlib.sha256(f"{mask.mode}|{mask.size}|".encode() + mask.tobytes()).hexdigest()
    if isinstance(mask, (np.ndarray, torch.Tensor)):
        a = np.ascontiguousarray(np.asarray(mask))
        return hashlib.sha256(f"{a.dtype}|{a.shape}|".encode() + a.tobytes()).hexdigest()
    try:
        with open(mask, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as e:  # the run refuses it anyway
        return f"unreadable: {e.strerror}"


def _plain(value):
    """JSON for numpy/torch scalars a user's sweep may put in the controls."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot record {type(value).__name__} in an output stamp")
