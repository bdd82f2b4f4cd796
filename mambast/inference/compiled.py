"""Compiled inference for long-lived engines (`Stylizer(..., compile=True)`): the model's four stages through
torch.compile (inductor), compiled once per input shape, with a persistent cache so a second process starts fast.

    encode_content, encode_style, decode         each torch.compile'd on first use (one graph each: the native
                                                 scan is a custom op, mambast/ops/custom_ops.py); fuse eager
    cache                                        inductor's FX graph cache in $TORCHINDUCTOR_CACHE_DIR, by
                                                 default under $MAMBAST_CACHE_DIR/inductor (~/.cache/mambast)

Outputs equal eager's within the precision's rounding (inductor reorders float sums): tested to 1e-4 in fp32.
Compiling costs minutes of CPU the first time a shape is seen (fewer with the cache), so one-shot calls stay
eager; the figures that decide whether it pays on a CPU are in benchmarks/speed_cpu.py (README, Speed).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from ..model import MambaST


def inductor_cache_dir() -> Path:
    """Where compiled graphs persist: $TORCHINDUCTOR_CACHE_DIR if set, else $MAMBAST_CACHE_DIR/inductor."""
    from ..ops.scan_cpu import cache_dir

    return Path(os.environ.get("TORCHINDUCTOR_CACHE_DIR") or cache_dir() / "inductor")


def prepare_compilation() -> None:
    """Before the first compilation of the process: point inductor's caches at `inductor_cache_dir()` (unless
    the user chose a folder), turn on its FX graph cache, and mark the native scan's availability probes as
    constants for dynamo (their answers cannot change within a process but through MAMBAST_NO_NATIVE, read
    when a graph is traced)."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(inductor_cache_dir()))
    from ..ops import scan_cpu

    for probe in (scan_cpu.native_available, scan_cpu.max_state):  # constants while tracing (no ctypes in graphs)
        torch.compiler.assume_constant_result(probe)  # marks the function (imports dynamo: only when compiling)
    try:
        import torch._inductor.config as inductor_config

        inductor_config.fx_graph_cache = True
    except (ImportError, AttributeError):  # an inductor without the option: compile anyway, uncached
        pass


class CompiledStages:
    """The model's stages, compiled where it measured faster (AMD EPYC Zen 4, bundled model, bf16, 512 px, one
    thread: encoders 0.151 -> 0.140 s, decoder 0.207 -> 0.157 s): `encode_content(padded)`,
    `encode_style(image)` and `decode(fused_tokens)` compiled, `fuse(content_tokens, style_tokens, generator,
    overwrite)` eager; the same signatures as the eager ones (MambaST and the engine's decoder)."""

    def __init__(self, model: MambaST, decode: Callable[[Tensor], Tensor]):
        prepare_compilation()
        self.encode_content = torch.compile(model.encode_content, dynamic=False)
        self.encode_style = torch.compile(model.encode_style, dynamic=False)
        self.fuse = model.fuse  # eager: compiled, it measured no faster (bf16, 512 px: 0.198 vs 0.183 s)
        self.decode = torch.compile(decode, dynamic=False)


class EagerStages:
    """The same four stages run eagerly, through `engine.model` at each call (so an engine whose model is a
    weak proxy, as `mambast.stylize`'s cached engines hold, keeps it weak)."""

    def __init__(self, engine):
        self.engine = engine

    def encode_content(self, padded: Tensor) -> Tensor:
        return self.engine.model.encode_content(padded)

    def encode_style(self, image: Tensor) -> Tensor:
        return self.engine.model.encode_style(image)

    def fuse(self, *args, **kwargs) -> Tensor:
        return self.engine.model.fuse(*args, **kwargs)

    def decode(self, fused: Tensor) -> Tensor:
        return self.engine.decode(fused)


def engine_stages(engine, compile: bool) -> EagerStages | CompiledStages:
    """The stages an engine runs: compiled (`CompiledStages`) or eager (`EagerStages`)."""
    return CompiledStages(engine.model, engine.decode) if compile else EagerStages(engine)
