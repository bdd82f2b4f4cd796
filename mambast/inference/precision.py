"""The precision policy: which dtype the model runs in (autocast), chosen per device and per model.

    "fp32"  float32 everywhere (the paper model's default; the goldens are float32)
    "bf16"  the whole model under torch.autocast(bfloat16); the selective scan reads float32, keeps float32 state
    "fp16"  the same with float16
    "auto"  "bf16" for the bundled default model on a device with native bfloat16 arithmetic (CUDA with bf16;
            a CPU with AVX512-BF16 or AMX-BF16): on the AMD Zen 4 it measured 1.4x faster than fp32 and within
            2 levels (of 255) on the goldens' inputs (AMX CPUs and CUDA: not measured yet, same rule);
            "fp32" everywhere else, and for every other model (the paper model's bf16 error was 3 levels)

`PRECISIONS` is the one list of choices (the CLI's `--precision` reads it). Measured figures: README, Speed.
"""

from __future__ import annotations

import contextlib
from functools import cache
from pathlib import Path

import torch

from ..config import PRESETS, MambaSTConfig
from ..errors import FieldError

AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS: tuple[str, ...] = ("auto", *AUTOCAST_DTYPES)
DEFAULT_PRECISION = "auto"
PRECISION_HELP = ("auto (default: bf16 for the bundled model on CPUs with AVX512-BF16/AMX and on CUDA, else fp32), "
                  "fp32, or bf16/fp16 autocast; the selective scan stays fp32")  # the CLI's --precision


def check_precision(precision: str) -> str:
    """`precision` if it is one of PRECISIONS, else a FieldError naming the field and listing the choices."""
    if precision not in PRECISIONS:
        raise FieldError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}", "precision")
    return precision


@cache
def cpu_bf16_features() -> tuple[str, ...]:
    """The native bfloat16 instruction sets of this CPU among ("avx512_bf16", "amx_bf16") (cached): from
    torch.cpu.get_capabilities() where torch has it, else from /proc/cpuinfo's flags (Linux)."""
    wanted = ("avx512_bf16", "amx_bf16")
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        try:
            caps = get()
            return tuple(name for name in wanted if caps.get(name))
        except Exception:  # noqa: BLE001 - a torch without the probe: read the flags instead
            pass
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return tuple(name for name in wanted if name in flags)


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes in bfloat16 natively: CUDA with bf16 support, or a CPU with AVX512-BF16/AMX."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(cpu_bf16_features())
    return False


def bf16_measured_safe(config: MambaSTConfig) -> bool:
    """Whether bf16 was measured within 2 levels (of 255) of fp32 for this architecture: the bundled default
    model's (benchmarks/speed_cpu.py, tests/test_precision.py); not the paper model's (3 levels)."""
    return config == PRESETS["default"]


def resolve_precision(precision: str, device: torch.device, config: MambaSTConfig) -> str:
    """The concrete precision ("fp32", "bf16" or "fp16") that `precision` means for a model of `config` on
    `device`; "auto" follows the policy in the module docstring. UserError for an unknown name."""
    if check_precision(precision) != "auto":
        return precision
    return "bf16" if native_bf16(device) and bf16_measured_safe(config) else "fp32"


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context a model call runs in for a concrete precision (a no-op for fp32)."""
    dtype = AUTOCAST_DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
