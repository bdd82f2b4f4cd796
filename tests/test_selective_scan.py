"""The native CPU and pure-torch selective scans against the float64 reference loop (docs/selective-scan.md).

Every case compares the forward output and every gradient (u, delta, A, B, C, D, z, delta_bias) with the
loop of scan_ref.py run in float64 on the same (rounded) inputs.
"""

from __future__ import annotations

import importlib
import platform
import random
import warnings

import pytest
import torch
from conftest import in_ci, require

from mambast.ops import scan_cpu, selective_scan
from mambast.ops.scan_ref import selective_scan_ref
from mambast.ops.scan_torch import selective_scan_torch

dispatch_module = importlib.import_module("mambast.ops.backends")
# a skip locally, a failure under CI (conftest.require): CI machines have a C compiler
needs_native = pytest.mark.skipif(not in_ci() and not scan_cpu.native_available(),
                                  reason="native CPU scan unavailable here")


def make_inputs(seed, batch, dg, groups, length, state, three_d=False, with_D=True, with_z=False,
                with_bias=True, softplus=True, dtype=torch.float32, a_min=-4.0):
    """Random scan inputs; B/C (B, N, L) when `three_d` (then groups must be 1)."""
    g = torch.Generator().manual_seed(seed)
    channels = dg * groups

    def rnd(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=g) * scale + shift).to(dtype)

    delta = rnd(batch, channels, length, scale=0.7) if softplus else rnd(batch, channels, length).abs() * 0.3
    A = -torch.empty(channels, state).uniform_(0.05, -a_min, generator=g).to(dtype)
    bc_shape = (batch, state, length) if three_d else (batch, groups, state, length)
    return {
        "u": rnd(batch, channels, length), "delta": delta, "A": A,
        "B": rnd(*bc_shape), "C": rnd(*bc_shape),
        "D": rnd(channels) if with_D else None,
        "z": rnd(batch, channels, length) if with_z else None,
        "delta_bias": rnd(channels, scale=0.3) if with_bias and softplus else None,
    }


def run(fn, inputs, softplus, dout, last=False, dtype=None):
    """Forward (and h_{L-1} if `last`) and the gradients of <out, dout> w.r.t. every given input."""
    leaves = {k: None if v is None else v.detach().clone().to(dtype or v.dtype).requires_grad_()
              for k, v in inputs.items()}
    res = fn(**leaves, delta_softplus=softplus, return_last_state=last)
    out, h_last = res if last else (res, None)
    out.backward(dout.to(out.dtype))
    grads = {k: v.grad for k, v in leaves.items() if v is not None}
    return out.detach(), h_last, grads


def ref64(**kw):
    return selective_scan_ref(**kw, compute_dtype=torch.float64)


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x.double() - ref.double()).abs().max() / ref.double().abs().max().clamp_min(1e-6)).item()


_REF_CACHE: dict = {}


def assert_close_to_ref(fn, inputs, softplus, tol, last=True, dout=None, cache_key=None):
    """Forward, h_{L-1} and every gradient of `fn` within `tol` (relative to the max) of the float64 loop;
    the loop's results are cached under `cache_key` (when given) to share them between backends."""
    out_ref = ref64(**{k: None if v is None else v.double() for k, v in inputs.items()},
                    delta_softplus=softplus)
    dout = torch.randn(out_ref.shape, generator=torch.Generator().manual_seed(7)) if dout is None else dout
    out, h_last, grads = run(fn, inputs, softplus, dout, last=last)
    key = (cache_key, softplus, last) if cache_key is not None else None
    if key not in _REF_CACHE:
        _REF_CACHE[key] = run(selective_scan_ref, inputs, softplus, dout, last=last, dtype=torch.float64)
    ref, h_ref, grads_ref = _REF_CACHE[key] if key is not None else _REF_CACHE.pop(None)
    assert out.dtype == inputs["u"].dtype and out.shape == ref.shape
    errors = {"out": rel_err(out, ref)}
    if last:
        assert h_last.shape == (ref.shape[0], ref.shape[1], inputs["A"].shape[1])
        assert not h_last.requires_grad
        errors["last"] = rel_err(h_last, h_ref)
    for name in grads_ref:
        assert grads[name].dtype == inputs[name].dtype and grads[name].shape == inputs[name].shape
        if grads_ref[name].abs().max() > 0:
            errors["d" + name] = rel_err(grads[name], grads_ref[name])
        else:
            assert grads[name].abs().max() <= 1e-6 * grads_ref["u"].abs().max()
    bad = {k: v for k, v in errors.items() if not v <= tol}
    assert not bad, f"relative errors above {tol}: {bad}"


# (batch, channels per group, groups, L, N, 3-D B/C, D, z, bias, softplus): every listed axis value appears
GRID = [
    (1, 16, 1, 1, 16, False, True, False, True, True),
    (2, 3, 2, 7, 16, False, True, True, True, True),
    (1, 19, 4, 64, 16, False, False, False, True, True),
    (2, 19, 1, 65, 16, True, True, True, False, True),
    (1, 5, 2, 65, 4, False, True, False, False, False),
    (1, 3, 4, 300, 16, False, True, True, True, True),
    (1, 17, 1, 150, 16, True, False, False, True, True),
    (1, 3, 4, 64, 7, False, False, True, False, False),
]
random.Random(0).shuffle(GRID)


def case_id(c):
    return "b{}-dg{}-g{}-L{}-N{}{}{}{}{}{}".format(*c[:5], "-3d" if c[5] else "", "-D" if c[6] else "",
                                                   "-z" if c[7] else "", "-bias" if c[8] else "",
                                                   "-sp" if c[9] else "")


def _native(**kw):
    return scan_cpu.selective_scan_cpu(**kw)


@pytest.mark.parametrize("case", GRID, ids=case_id)
@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_matches_float64_loop(backend, case):
    if backend == "cpu":
        require(scan_cpu.native_available(), "native CPU scan unavailable here")
    batch, dg, groups, length, state, three_d, with_D, with_z, with_bias, softplus = case
    inputs = make_inputs(sum(case[:5]), batch, dg, groups, length, state, three_d, with_D, with_z, with_bias,
                         softplus)
    fn = _native if backend == "cpu" else selective_scan_torch
    assert_close_to_ref(fn, inputs, softplus, tol=2e-5, cache_key=case)


@needs_native
@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 2e-2), (torch.float16, 3e-3)])
def test_half_precision_inputs(dtype, tol):
    inputs = make_inputs(3, 1, 19, 2, 65, 16, with_z=True, dtype=dtype)
    assert_close_to_ref(_native, inputs, True, tol=tol)


@needs_native
def test_float64_inputs_route_to_float64_scan():
    inputs = make_inputs(4, 1, 5, 2, 33, 16, with_z=True, dtype=torch.float64)
    assert_close_to_ref(_native, inputs, True, tol=1e-12)


@needs_native
@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_non_contiguous_inputs(backend):
    g = torch.Generator().manual_seed(5)
    batch, groups, dg, length, state = 2, 2, 17, 70, 16
    channels = groups * dg
    inputs = {
        "u": torch.randn(batch, length, channels, generator=g).transpose(1, 2),  # channel-last memory
        "delta": torch.randn(batch, channels, 2 * length, generator=g)[..., ::2],  # time stride 2
        "A": -torch.rand(state, channels, generator=g).t() * 3,
        "B": torch.randn(batch, length, state, groups, generator=g).permute(0, 3, 2, 1),
        "C": torch.randn(batch, groups, state, length + 3, generator=g)[..., 3:],
        "D": torch.randn(2 * channels, generator=g)[::2],
        "z": None,
        "delta_bias": torch.randn(channels, generator=g) * 0.3,
    }
    assert not inputs["u"].is_contiguous() and not inputs["delta"].is_contiguous()
    dout = torch.randn(batch, length, channels, generator=g).transpose(1, 2)  # non-contiguous gradient
    fn = _native if backend == "cpu" else selective_scan_torch
    assert_close_to_ref(fn, inputs, True, tol=2e-5, dout=dout)


@needs_native
def test_stability_long_sequence_large_steps():
    """Large dt, A down to -16, L = 4096: finite, forward exact vs the float64 loop, gradients exact vs the
    float64 pure-torch scan (itself checked against the loop above)."""
    inputs = make_inputs(11, 1, 16, 1, 4096, 16, with_z=False, a_min=-16.0)
    inputs["delta"] = inputs["delta"] * 4 + 2  # dt up to ~ 10: exp(dt A) down to e^-160
    dout = torch.randn(1, 16, 4096, generator=torch.Generator().manual_seed(2))
    out, h_last, grads = run(_native, inputs, True, dout, last=True)
    assert torch.isfinite(out).all() and all(torch.isfinite(v).all() for v in grads.values())
    with torch.no_grad():
        ref, h_ref = ref64(**{k: None if v is None else v.double() for k, v in inputs.items()},
                           delta_softplus=True, return_last_state=True)
    assert rel_err(out, ref) < 2e-5 and rel_err(h_last, h_ref) < 2e-5
    _, _, grads64 = run(selective_scan_torch, inputs, True, dout, dtype=torch.float64)
    for name, ref_grad in grads64.items():
        assert rel_err(grads[name], ref_grad) < 1e-4, name


@needs_native
def test_model_layout_shapes():
    """The model's call: (1, K*Di, L) views from cross_scan, B/C (1, 4, N, L); checked against torch."""
    from mambast.ops.cross_scan import cross_scan

    g = torch.Generator().manual_seed(9)
    x = torch.randn(1, 24, 6, 10, generator=g)
    xs = cross_scan(x).flatten(1, 2)  # (1, 96, 60)
    delta = torch.randn(1, 96, 60, generator=g)
    A = -torch.exp(torch.randn(96, 16, generator=g) * 0.5)
    Bm, Cm = torch.randn(1, 4, 16, 60, generator=g), torch.randn(1, 4, 16, 60, generator=g)
    D, bias = torch.randn(96, generator=g), torch.randn(96, generator=g)
    args = (xs, delta, A, Bm, Cm, D, None, bias, True)
    out = selective_scan(*args, backend="cpu")
    with torch.no_grad():
        ref = ref64(u=xs.double(), delta=delta.double(), A=A.double(), B=Bm.double(), C=Cm.double(),
                    D=D.double(), delta_bias=bias.double(), delta_softplus=True)
    assert rel_err(out, ref) < 2e-5


@needs_native
def test_thread_count_does_not_change_result():
    """Same forward bits for any thread count; gradients equal up to dB/dC summation order."""
    inputs = make_inputs(12, 2, 40, 2, 130, 16)
    dout = torch.randn(2, 80, 130, generator=torch.Generator().manual_seed(1))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run(_native, inputs, True, dout)
        torch.set_num_threads(3)
        three = run(_native, inputs, True, dout)
        again = run(_native, inputs, True, dout)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one[0], three[0])
    for name in one[2]:
        assert rel_err(three[2][name], one[2][name]) < 1e-6, name
        assert torch.equal(three[2][name], again[2][name]), name  # deterministic for a fixed thread count


def test_no_native_env_falls_back_to_torch(monkeypatch):
    monkeypatch.setenv("MAMBAST_NO_NATIVE", "1")
    assert not scan_cpu.native_available()
    assert "MAMBAST_NO_NATIVE" in scan_cpu.unavailable_reason()
    dispatch_module._warn_fallback.cache_clear()
    try:
        inputs = make_inputs(13, 1, 6, 2, 20, 16)
        with pytest.warns(RuntimeWarning, match="pure-torch"):
            assert dispatch_module.resolve_backend("auto", "cpu") == "torch"
        out = selective_scan(**inputs, delta_softplus=True, backend="auto")
        expected = selective_scan_torch(**inputs, delta_softplus=True)
        assert torch.equal(out, expected)
        with pytest.raises(RuntimeError, match="MAMBAST_NO_NATIVE"):
            selective_scan(**inputs, delta_softplus=True, backend="cpu")
    finally:
        dispatch_module._warn_fallback.cache_clear()


@needs_native
def test_auto_backend_uses_native_on_cpu():
    dispatch_module._warn_fallback.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dispatch_module.resolve_backend("auto", "cpu") == "cpu"


def test_build_is_cached_and_failure_reported(monkeypatch, tmp_path, capfd):
    """First use compiles into $MAMBAST_CACHE_DIR (one stderr line), the next use loads the cached .so;
    without a compiler the scan reports itself unavailable instead of raising."""
    monkeypatch.setattr(scan_cpu, "_compiler", lambda: None)
    scan_cpu._library.cache_clear()
    try:
        assert not scan_cpu.native_available()
        assert "compiler" in scan_cpu.unavailable_reason()
    finally:
        monkeypatch.undo()
        scan_cpu._library.cache_clear()
    require(scan_cpu._compiler() is not None, "no C compiler here")
    monkeypatch.setenv("MAMBAST_CACHE_DIR", str(tmp_path))
    try:
        assert scan_cpu.native_available()
        assert "compiling the native CPU selective scan" in capfd.readouterr().err
        assert len(list(tmp_path.glob("selective_scan_cpu-*.so"))) == 1
        assert not list(tmp_path.glob("*.tmp*"))
        scan_cpu._library.cache_clear()
        assert scan_cpu.native_available()
        assert "compiling" not in capfd.readouterr().err
    finally:
        monkeypatch.undo()
        scan_cpu._library.cache_clear()


@needs_native
def test_checkpoint_memory_is_small():
    """Extra memory saved for the backward is O(B D N L / 64), not O(B D N L)."""
    inputs = make_inputs(14, 1, 64, 2, 256, 16)
    leaves = {k: None if v is None else v.clone().requires_grad_() for k, v in inputs.items()}
    out = _native(**leaves, delta_softplus=True)
    sizes = []
    stack = [out.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None:
            continue
        if type(fn).__name__ == "_NativeScanBackward":
            sizes = [t.numel() for t in fn.saved_tensors]
            break
        stack.extend(f for f, _ in fn.next_functions)
    assert sizes, "native autograd node not found"
    full = 1 * 128 * 16 * 256  # B D N L
    inputs_size = 2 * 128 * 256 + 2 * 2 * 16 * 256 + 128 * 16 + 2 * 128
    assert sum(sizes) - inputs_size <= full // 64 * 1.05


@pytest.mark.slow
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 target names")
@pytest.mark.parametrize("arch", ["x86-64-v3", "x86-64"])
def test_avx2_and_portable_builds(monkeypatch, arch):
    """The AVX2 (8 lanes) and the portable vector-extension (SSE2) builds give the same numbers."""
    monkeypatch.setenv("MAMBAST_NATIVE_ARCH", arch)
    scan_cpu._library.cache_clear()
    try:
        require(scan_cpu.native_available(), scan_cpu.unavailable_reason())
        assert scan_cpu._library().mst_vector_width() == 8
        for case in GRID[:4]:
            batch, dg, groups, length, state, three_d, with_D, with_z, with_bias, softplus = case
            inputs = make_inputs(sum(case[:5]), batch, dg, groups, length, state, three_d, with_D, with_z,
                                 with_bias, softplus)
            assert_close_to_ref(_native, inputs, softplus, tol=2e-5, cache_key=case)
    finally:
        monkeypatch.undo()
        scan_cpu._library.cache_clear()


@needs_native
def test_vector_exp_and_softplus_accuracy():
    """The kernel's exp and softplus, read through tiny scans, vs float64.

    L = 2, N = 1, u = (1, 0), B = C = 1, no softplus, dt = (1, 1): y_1 = exp(A) * 1;
    L = 1, N = 1, A = 0, u = B = C = 1, softplus: y_0 = softplus(delta).
    Bound: a few ulp plus the rounding of the float32 argument dt * A (relative 6e-8 * |x|), the accuracy
    of any float32 evaluation of exp(dt * A)."""
    channels = 4096
    A = -torch.linspace(0, 87, channels).reshape(channels, 1)  # exp(A) down to 1.6e-38 (normal range)
    u = torch.tensor([1.0, 0.0]).expand(1, channels, 2)
    ones = torch.ones(1, 1, 2)
    y = _native(u=u, delta=torch.ones(1, channels, 2), A=A, B=ones, C=ones)
    assert_ulp_bound(y[0, :, 1], A[:, 0].double().exp(), A[:, 0])
    delta = torch.linspace(-30, 30, channels).reshape(1, channels, 1)
    y = _native(u=torch.ones(1, channels, 1), delta=delta, A=torch.zeros(channels, 1), B=torch.ones(1, 1, 1),
                C=torch.ones(1, 1, 1), delta_softplus=True)
    assert_ulp_bound(y[0, :, 0], torch.nn.functional.softplus(delta[0, :, 0].double()), delta[0, :, 0].clamp(max=0))


def assert_ulp_bound(x: torch.Tensor, ref: torch.Tensor, arg: torch.Tensor) -> None:
    rel = ((x.double() - ref) / ref).abs()
    bound = 3e-7 + 1.2e-7 * arg.double().abs()
    assert (rel <= bound).all(), f"worst {rel.max().item():.2e} at argument {arg[(rel / bound).argmax()]}"


@pytest.mark.slow
def test_build_without_openmp(monkeypatch, tmp_path):
    """A compiler without OpenMP still gives a working (single-threaded) kernel with the same numbers."""
    require(scan_cpu._compiler() is not None, "no C compiler here")
    monkeypatch.setattr(scan_cpu, "_FLAGS", tuple(f for f in scan_cpu._FLAGS if f != "-fopenmp"))
    monkeypatch.setenv("MAMBAST_CACHE_DIR", str(tmp_path))
    scan_cpu._library.cache_clear()
    try:
        assert scan_cpu.native_available()
        case = next(c for c in GRID if c[3] == 65)
        batch, dg, groups, length, state, three_d, with_D, with_z, with_bias, softplus = case
        inputs = make_inputs(sum(case[:5]), batch, dg, groups, length, state, three_d, with_D, with_z, with_bias,
                             softplus)
        assert_close_to_ref(_native, inputs, softplus, tol=2e-5, cache_key=case)
    finally:
        monkeypatch.undo()
        scan_cpu._library.cache_clear()
