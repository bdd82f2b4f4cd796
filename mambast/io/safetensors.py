"""A small reader/writer of the safetensors format (no dependency): 8-byte little-endian header length,
a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then the raw bytes."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch

from ..errors import UserError

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}
NAMES = {v: k for k, v in DTYPES.items()}


def save_file(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None):
    """Write `tensors` (any device; saved from CPU, contiguous) to `path` atomically."""
    header, chunks, offset = {}, [], 0
    for name, t in tensors.items():
        data = t.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for c in chunks:
            f.write(c)
    os.replace(tmp, path)


def load_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors file -> (tensors on CPU, metadata). Malformed files raise UserError."""
    raw = Path(path).read_bytes()
    try:
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + n])
        metadata = header.pop("__metadata__", {}) or {}
        base, tensors = 8 + n, {}
        for name, info in header.items():
            start, end = info["data_offsets"]
            dtype = DTYPES[info["dtype"]]
            buf = bytearray(raw[base + start:base + end])
            t = torch.frombuffer(buf, dtype=dtype) if buf else torch.empty(0, dtype=dtype)
            tensors[name] = t.reshape(info["shape"])
    except (struct.error, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise UserError(f"{path}: not a valid safetensors file ({e})") from None
    return tensors, metadata
