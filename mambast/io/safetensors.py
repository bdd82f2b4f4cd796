"""safetensors files: parsed by the `safetensors` library (a fuzzed, memory-mapping parser that rejects what
the format forbids), written by a small deterministic writer.

Why our own writer: the library's writer orders the `__metadata__` keys differently from one run to the next,
so the same model would export to different bytes (and SHA-256s). Ours writes the metadata keys sorted and
the tensors in the given order; files it writes are checked against the library's parser in the tests.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..errors import UserError
from ..fs import atomic_write
from .state_dict import first_line, require_file

NAMES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
         torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
         torch.bool: "BOOL"}


def save_file(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write `tensors` (any device; saved from CPU, contiguous) and string `metadata` to `path` atomically
    (`mambast.fs.atomic_write`: never a half-written file; WriteError naming the path)."""
    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in sorted(metadata.items())}
    for name, t in tensors.items():
        if t.dtype not in NAMES:
            raise ValueError(f"tensor {name!r}: dtype {t.dtype} cannot be stored in safetensors here")
        data = t.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)

    def write(f):
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for c in chunks:
            f.write(c)

    return atomic_write(path, write)


def load_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file -> (tensors on CPU, metadata). Empty, malformed or forbidden files (bad header
    length, JSON, dtypes, shapes, overlapping or out-of-file offsets, non-string metadata) raise one UserError
    line naming the file."""
    path = require_file(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name).clone() for name in f.keys()}  # clone: off the memory map
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError, KeyError, OverflowError) as e:
        raise UserError(f"{path}: not a valid safetensors file ({first_line(e, 160)})") from None
    return tensors, metadata
