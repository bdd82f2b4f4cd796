"""Triton selective scan and cross scan/merge, run on the CPU through Triton's interpreter.

TRITON_INTERPRET=1 is set before triton is first imported (mambast's Triton modules import it lazily), so
the very kernels that run on a GPU execute here on CPU tensors. Forward and every gradient are compared
with the float64 reference loop; shapes are tiny because the interpreter is slow.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed (pip install triton==3.9.0): Triton kernels untested",
                allow_module_level=True)
if os.environ["TRITON_INTERPRET"] in ("", "0") and not torch.cuda.is_available():
    pytest.skip("TRITON_INTERPRET=0 and no GPU: the Triton kernels cannot run here", allow_module_level=True)

from mambast.ops import scan_triton  # noqa: E402
from mambast.ops.cross_scan import cross_merge, cross_scan  # noqa: E402
from mambast.ops.cross_scan_triton import cross_merge_triton, cross_scan_triton  # noqa: E402
from mambast.ops.scan_ref import selective_scan_ref  # noqa: E402
from mambast.ops.selective_scan import resolve_backend, selective_scan  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() and os.environ["TRITON_INTERPRET"] in ("", "0") else "cpu"
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


@pytest.fixture
def small_tiles():
    """Chunks of 8 steps, 2-channel blocks, 2 blocks per backward program: tiny shapes cross boundaries."""
    saved = scan_triton.TritonScanConfig(**vars(scan_triton.CONFIG))
    scan_triton.set_config(chunk=8, fwd_block_d=2, bwd_block_d=2, bwd_channel_iters=2)
    yield
    scan_triton.set_config(**vars(saved))


def make_inputs(batch, groups, group_dim, nstate, length, *, with_D=True, with_z=True, with_bias=True,
                bc_3d=False, delta_scale=0.5, seed=0):
    """float64 inputs of the scan (None for the switched-off options), A negative as in Mamba."""
    g = torch.Generator().manual_seed(seed)
    dim = groups * group_dim

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    bc_shape = (batch, nstate, length) if bc_3d else (batch, groups, nstate, length)
    return {
        "u": rnd(batch, dim, length),
        "delta": rnd(batch, dim, length) * delta_scale,
        "A": -torch.rand(dim, nstate, generator=g, dtype=torch.float64) - 0.2,
        "B": rnd(*bc_shape),
        "C": rnd(*bc_shape),
        "D": rnd(dim) if with_D else None,
        "z": rnd(batch, dim, length) if with_z else None,
        "delta_bias": rnd(dim) * 0.3 if with_bias else None,
    }


def run_both(inputs, softplus, dtype=torch.float32, return_last_state=True, prepare=None):
    """(reference outputs, their grads, Triton outputs, their grads) for one random output cotangent."""
    ref_in = {k: None if v is None else v.clone().requires_grad_() for k, v in inputs.items()}
    tri_in = {k: None if v is None else v.to(DEVICE, dtype).requires_grad_() for k, v in inputs.items()}
    call = {k: (prepare(v) if prepare and v is not None else v) for k, v in tri_in.items()}
    ref_out, ref_last = selective_scan_ref(**ref_in, delta_softplus=softplus, return_last_state=True)
    result = scan_triton.selective_scan_triton(**call, delta_softplus=softplus,
                                               return_last_state=return_last_state)
    out, last = result if return_last_state else (result, None)
    cot = torch.randn(ref_out.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    used = [k for k, v in inputs.items() if v is not None]
    ref_grads = torch.autograd.grad(ref_out, [ref_in[k] for k in used], cot)
    grads = torch.autograd.grad(out, [tri_in[k] for k in used], cot.to(DEVICE, out.dtype))
    ref_grads, grads = dict(zip(used, ref_grads, strict=True)), dict(zip(used, grads, strict=True))
    return (ref_out, ref_last, ref_grads), (out, last, grads)


def assert_close(name, got, want, rtol, atol_frac):
    """Max abs error within rtol * |want| + atol_frac * max|want| (relative to the tensor's scale)."""
    got = got.detach().double().cpu()
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    tol = rtol * want.abs() + atol_frac * want.abs().max()
    err = (got - want).abs()
    assert bool((err <= tol).all()), f"{name}: max error {err.max().item():.3g}, scale {want.abs().max():.3g}"


CASES = {
    # G, channels per group, N, L, options
    "G1_odd_channels_BC3d_all_options": (1, 5, 4, 19, dict(bc_3d=True), True),
    "G2_no_options": (2, 3, 5, 17, dict(with_D=False, with_z=False, with_bias=False), False),
    "G4_D_softplus_only": (4, 3, 4, 9, dict(with_z=False, with_bias=False), True),
    "G2_z_bias_no_softplus": (2, 1, 3, 24, dict(with_D=False), False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_forward_and_every_gradient_vs_float64_loop(case, small_tiles):
    groups, group_dim, nstate, length, opts, softplus = CASES[case]
    batch = 1 if groups == 4 else 2
    inputs = make_inputs(batch, groups, group_dim, nstate, length, **opts)
    (ref, ref_last, ref_g), (out, last, grads) = run_both(inputs, softplus)
    assert out.dtype == torch.float32 and last.dtype == torch.float32
    assert not last.requires_grad
    assert_close("out", out, ref, 1e-5, 1e-5)
    assert_close("last_state", last, ref_last.detach(), 1e-5, 1e-5)
    assert set(grads) == {k for k, v in inputs.items() if v is not None}
    for name in grads:
        assert_close(f"d{name}", grads[name], ref_g[name], 1e-4, 2e-5)


def test_softplus_threshold_and_log1p_tails(small_tiles):
    """delta + bias beyond +-20: softplus passes through above 20, log1p(exp(x)) stays exact far below 0."""
    inputs = make_inputs(1, 1, 3, 4, 11, with_z=False, delta_scale=25.0, seed=3)
    (ref, _, ref_g), (out, _, grads) = run_both(inputs, True)
    assert_close("out", out, ref, 1e-5, 1e-5)
    for name in ("delta", "delta_bias", "A", "u"):
        assert_close(f"d{name}", grads[name], ref_g[name], 1e-4, 2e-5)


def test_default_tiles_and_non_contiguous_inputs():
    """The default chunk (64) with L = 70 crossing one boundary; every input a strided view."""
    inputs = make_inputs(1, 2, 3, 4, 70, seed=5)

    def strided(t):  # same values, non-contiguous memory (transposed copy viewed back)
        if t.dim() == 1:
            return t.repeat_interleave(2)[::2]
        return t.transpose(0, -1).contiguous().transpose(0, -1)

    (ref, ref_last, ref_g), (out, last, grads) = run_both(inputs, True, prepare=strided)
    assert_close("out", out, ref, 1e-5, 1e-5)
    assert_close("last_state", last, ref_last.detach(), 1e-5, 1e-5)
    for name in grads:
        assert_close(f"d{name}", grads[name], ref_g[name], 1e-4, 2e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_float32_state(dtype, small_tiles):
    inputs = make_inputs(1, 2, 3, 4, 13, seed=11)
    # the reference sees the same rounded inputs, so only the output/gradient rounding differs
    inputs = {k: None if v is None else v.to(dtype).double() for k, v in inputs.items()}
    (ref, ref_last, ref_g), (out, last, grads) = run_both(inputs, True, dtype=dtype)
    assert out.dtype == dtype and last.dtype == dtype
    assert_close("out", out, ref, 2e-2, 1e-2)
    assert_close("last_state", last, ref_last.detach(), 2e-2, 1e-2)
    for name in grads:
        assert grads[name].dtype == dtype
        assert_close(f"d{name}", grads[name], ref_g[name], 3e-2, 2e-2)


def test_without_last_state_and_single_step(small_tiles):
    inputs = make_inputs(2, 1, 2, 3, 1, seed=2)
    (ref, _, ref_g), (out, last, grads) = run_both(inputs, True, return_last_state=False)
    assert last is None
    assert_close("out", out, ref, 1e-5, 1e-5)
    for name in grads:
        assert_close(f"d{name}", grads[name], ref_g[name], 1e-4, 2e-5)


def test_dispatcher_backend_triton_without_autograd(small_tiles):
    """Through `selective_scan`; no input needs a gradient, so only the last state is kept (2 slots)."""
    x = make_inputs(1, 2, 2, 3, 21, seed=4)
    x = {k: None if v is None else v.float().to(DEVICE) for k, v in x.items()}
    got, got_last = selective_scan(**x, delta_softplus=True, return_last_state=True, backend="triton")
    want, want_last = selective_scan_ref(**{k: None if v is None else v.double().cpu() for k, v in x.items()},
                                         delta_softplus=True, return_last_state=True)
    assert_close("out", got, want, 1e-5, 1e-5)
    assert_close("last_state", got_last, want_last, 1e-5, 1e-5)


@pytest.mark.skipif(importlib.util.find_spec("mamba_ssm") is not None, reason="mamba_ssm installed")
def test_auto_picks_triton_on_cuda_without_mamba_ssm():
    assert resolve_backend("auto", "cuda") == "triton"


def test_clear_errors(monkeypatch):
    x = make_inputs(1, 2, 2, 3, 4)
    with pytest.raises(ValueError, match="multiple of the B/C groups"):
        three_channels = (x["u"][:, :3], x["delta"][:, :3], x["A"][:3], x["B"], x["C"])
        scan_triton.selective_scan_triton(*(t.float() for t in three_channels))
    with pytest.raises(ValueError, match="power of two"):
        scan_triton.set_config(chunk=48)
    if DEVICE == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        with pytest.raises(RuntimeError, match="needs CUDA tensors"):
            scan_triton.selective_scan_triton(*(x[k].float() for k in ("u", "delta", "A", "B", "C")))


@pytest.mark.slow
def test_bigger_grid_vs_float64_loop():
    """Default tiles, several blocks per group and chunks: G = 4, 8 channels per group, N = 16, L = 150."""
    inputs = make_inputs(2, 4, 8, 16, 150, seed=9)
    (ref, ref_last, ref_g), (out, last, grads) = run_both(inputs, True)
    assert_close("out", out, ref, 1e-5, 1e-5)
    assert_close("last_state", last, ref_last.detach(), 1e-5, 1e-5)
    for name in grads:
        assert_close(f"d{name}", grads[name], ref_g[name], 1e-4, 2e-5)


# ---------------------------------------------------------------------------------------------- cross scan


@pytest.mark.parametrize("hw", [(3, 5), (4, 4), (1, 7)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cross_scan_and_merge_match_torch(hw, dtype):
    H, W = hw
    g = torch.Generator().manual_seed(H * 10 + W)
    x = torch.randn(2, 3, H, W, generator=g).to(DEVICE, dtype)
    y = torch.randn(2, 4, 3, H * W, generator=g).to(DEVICE, dtype)
    assert torch.equal(cross_scan_triton(x), cross_scan(x))  # a permutation: exact
    want = cross_merge(y.float(), H, W)
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(cross_merge_triton(y, H, W).float(), want, rtol=tol, atol=tol)


def test_cross_scan_merge_adjoint_and_backward():
    """<scan(x), y> = <x, merge(y)>, and autograd of each equals the torch ops' (the other map)."""
    H, W = 3, 4
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, H, W, generator=g, dtype=torch.float64).float().to(DEVICE).requires_grad_()
    y = torch.randn(2, 4, 5, H * W, generator=g, dtype=torch.float64).float().to(DEVICE).requires_grad_()
    lhs = (cross_scan_triton(x).double() * y.double()).sum()
    rhs = (x.double() * cross_merge_triton(y, H, W).view(2, 5, H, W).double()).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-5, atol=1e-5)
    dy = torch.randn(2, 4, 5, H * W, generator=g).to(DEVICE)
    (gx,) = torch.autograd.grad(cross_scan_triton(x), x, dy)
    (gx_ref,) = torch.autograd.grad(cross_scan(x), x, dy)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-6, atol=1e-6)
    dx = torch.randn(2, 5, H * W, generator=g).to(DEVICE)
    (gy,) = torch.autograd.grad(cross_merge_triton(y, H, W), y, dx)
    (gy_ref,) = torch.autograd.grad(cross_merge(y, H, W), y, dx)
    torch.testing.assert_close(gy, gy_ref, rtol=0, atol=0)
    x_nc = x.detach().transpose(2, 3).contiguous().transpose(2, 3)  # non-contiguous input
    assert torch.equal(cross_scan_triton(x_nc), cross_scan(x_nc))


AOT_SCRIPT = r"""
import os, re, subprocess, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from mambast.ops import scan_triton as st

fwd, bwd = st._kernels()
ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas-blackwell")
ints = ["L", "dim", "group_dim", "groups", "nstate", "blocks_per_group", "n_chunks"]
cfg = st.CONFIG
for kernel, block_d, warps, extra in ((fwd, cfg.fwd_block_d, cfg.fwd_warps, ["n_slots"]),
                                      (bwd, cfg.bwd_block_d, cfg.bwd_warps, [])):
    for dtype in ("fp32", "bf16"):
        params = kernel.arg_names
        consts = dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True, BLOCK_D=block_d, BLOCK_N=16,
                      CHUNK=cfg.chunk, **({} if extra else {"CH_ITERS": cfg.bwd_channel_iters}))
        fp32_ptrs = ("A_ptr", "D_ptr", "bias_ptr", "states_ptr", "dA_ptr", "dB_ptr", "dC_ptr", "dD_ptr",
                     "dbias_ptr")
        sig = {p: "constexpr" if p in consts else "i32" if p in ints + extra
               else "*fp32" if p in fp32_ptrs else f"*{dtype}" for p in params}
        k = triton.compile(ASTSource(fn=kernel, signature=sig, constexprs=consts),
                           target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
        with open("k.ptx", "w") as f:
            f.write(k.asm["ptx"])
        info = subprocess.run([ptxas, "-arch=sm_90a", "-v", "k.ptx", "-o", "k.cubin"], capture_output=True,
                              text=True).stderr
        regs = int(re.search(r"Used (\d+) registers", info).group(1))
        spill = int(re.search(r"(\d+) bytes spill stores", info).group(1))
        print(kernel.fn.__name__, dtype, regs, spill)
"""


@pytest.mark.slow
def test_kernels_compile_for_h100_without_spills(tmp_path):
    """The real (not interpreted) compile path: Triton -> PTX -> ptxas for sm_90, no GPU needed."""
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "TRITON_INTERPRET": "0",
           "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", AOT_SCRIPT], cwd=tmp_path, env=env, capture_output=True,
                         text=True)
    if run.returncode and "ptxas" in run.stderr and "No such file" in run.stderr:
        pytest.skip("this triton wheel has no bundled ptxas")
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [line.split() for line in run.stdout.splitlines()]
    assert len(rows) == 4
    for name, dtype, regs, spill in rows:
        assert int(regs) <= 255 and int(spill) == 0, f"{name} {dtype}: {regs} registers, {spill} B spilled"


def test_model_forward_and_backward_on_the_triton_scan():
    """A minute MambaST through backend="triton" equals the torch backend, output and parameter gradients."""
    config = pytest.importorskip("mambast.config", reason="mambast.config not on this checkout")
    model_mod = pytest.importorskip("mambast.model", reason="mambast.model not on this checkout")
    cfg = config.MambaSTConfig(d_model=16, d_state=4, expand=1, content_layers=1, style_layers=1,
                               decoder_layers=1, cnn_channels=(8, 8, 8), drop_path=0.0)
    torch.manual_seed(0)
    model = model_mod.MambaST(cfg).to(DEVICE)
    g = torch.Generator().manual_seed(3)
    content, style = (torch.rand(1, 3, 24, 16, generator=g).to(DEVICE) for _ in range(2))
    results = {}
    for backend in ("torch", "triton"):
        model.set_scan_backend(backend)
        model.zero_grad(set_to_none=True)
        out = model(content, style, seed=5)
        out.square().mean().backward()
        results[backend] = (out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                                           if p.grad is not None})
    (ref_out, ref_grads), (out, grads) = results["torch"], results["triton"]
    torch.testing.assert_close(out, ref_out, rtol=1e-4, atol=1e-5)
    assert ref_grads.keys() == grads.keys() and any("A_log" in n for n in grads)
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=2e-3, atol=1e-5, msg=name)
