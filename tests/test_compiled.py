"""Compiled inference: the native scan as a custom op (one graph under torch.compile), and a compiled engine
equal to the eager one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_model import lively_

from mambast import MambaST, MambaSTConfig
from mambast.images import to_tensor
from mambast.inference import Controls, Stylizer
from mambast.inference.compiled import CompiledStages, EagerStages, inductor_cache_dir
from mambast.ops import custom_ops, scan_cpu

pytestmark = pytest.mark.skipif(not (custom_ops.AVAILABLE and scan_cpu.native_available()),
                                reason="needs torch.library.custom_op and the native CPU scan")


@pytest.fixture(scope="module")
def tiny():
    return lively_(MambaST(MambaSTConfig.preset("tiny"))).eval()


def _scan_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    batch, groups, channels, rank, state, length = 2, 4, 8, 3, 5, 11
    u = torch.randn(batch, channels, length, generator=g)
    dt_low = torch.randn(batch, groups, rank, length, generator=g)
    dt_weight = torch.randn(channels, rank, generator=g) * 0.3
    A = -torch.rand(channels, state, generator=g) - 0.5
    B, C = (torch.randn(batch, groups, state, length, generator=g) for _ in range(2))
    D, bias = torch.randn(channels, generator=g), torch.randn(channels, generator=g) * 0.1
    return u, dt_low, dt_weight, A, B, C, D, bias


def test_custom_op_equals_the_kernel_and_has_a_fake():
    args = _scan_inputs()
    ref = scan_cpu.selective_scan_cpu_lowrank(*args, delta_softplus=True)
    out = torch.ops.mambast.scan_lowrank_cpu(*args, True)
    assert torch.equal(out, ref)
    torch.library.opcheck(torch.ops.mambast.scan_lowrank_cpu.default, (*args, True),
                          test_utils=("test_schema", "test_faketensor"))


_TRACE_ONE_GRAPH = """
import sys
import torch
sys.path.insert(0, sys.argv[1])
from test_model import lively_
from mambast import MambaST, MambaSTConfig
from mambast.inference.compiled import prepare_compilation

tiny = lively_(MambaST(MambaSTConfig.preset("tiny"))).eval()
prepare_compilation()
x = torch.rand(1, 3, 32, 40)
with torch.inference_mode():
    for fn in (tiny.encode_content, tiny.encode_style):
        explained = torch._dynamo.explain(fn)(x)
        print(explained.graph_count, explained.graph_break_count, explained.break_reasons)
"""


def test_model_traces_in_one_graph():
    """Each encoder is one graph under dynamo (the native scan as a custom op, no graph break). In its own
    process: dynamo's global state left behind in this one changed what later tests count as live tensors."""
    run = subprocess.run([sys.executable, "-c", _TRACE_ONE_GRAPH, str(Path(__file__).parent)], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines() == ["1 0 []", "1 0 []"], run.stdout


def test_engine_stages_and_cache_dir(tiny, monkeypatch, tmp_path):
    assert isinstance(Stylizer(tiny).stages, EagerStages)
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("MAMBAST_CACHE_DIR", str(tmp_path))
    assert inductor_cache_dir() == tmp_path / "inductor"


@pytest.mark.slow
def test_compiled_engine_equals_eager(tiny):
    content = Image.effect_noise((40, 32), 60).convert("RGB")
    style = Image.effect_noise((32, 32), 90).convert("RGB")
    eager = Stylizer(tiny, size=None)
    compiled = Stylizer(tiny, size=None, compile=True)
    assert isinstance(compiled.stages, CompiledStages)
    c = to_tensor(content)[None]
    hw = eager.grid(40, 32)
    ref = eager.stylize_tensor(c, [eager.style_tokens(style, hw)], Controls(seed=3))
    out = compiled.stylize_tensor(c, [compiled.style_tokens(style, hw)], Controls(seed=3))
    assert out.shape == ref.shape == (1, 3, 32, 40)
    assert (out - ref).abs().max().item() <= 1e-4
