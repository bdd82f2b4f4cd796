"""`selective_scan_lowrank`: the native kernel's in-kernel delta projection against the float64 loop run on
delta = dt_weight @ dt_low formed explicitly, and its autograd fallback against `selective_scan`."""

from __future__ import annotations

import pytest
import torch
from conftest import in_ci

from mambast.ops import scan_cpu, selective_scan, selective_scan_lowrank
from mambast.ops.scan_ref import selective_scan_ref

needs_native = pytest.mark.skipif(not in_ci() and not scan_cpu.native_available(),
                                  reason="native CPU scan unavailable here")  # under CI: a failure


def make_inputs(seed: int, batch: int, dg: int, groups: int, rank: int, length: int, state: int = 16,
                with_D: bool = True, with_bias: bool = True) -> dict:
    g = torch.Generator().manual_seed(seed)
    channels = dg * groups
    return {
        "u": torch.randn(batch, channels, length, generator=g),
        "dt_low": torch.randn(batch, groups, rank, length, generator=g),
        "dt_weight": torch.randn(channels, rank, generator=g) * 0.5 / rank ** 0.5,
        "A": -torch.empty(channels, state).uniform_(0.05, 8.0, generator=g),
        "B": torch.randn(batch, groups, state, length, generator=g),
        "C": torch.randn(batch, groups, state, length, generator=g),
        "D": torch.randn(channels, generator=g) if with_D else None,
        "delta_bias": torch.randn(channels, generator=g) * 0.3 if with_bias else None,
    }


def explicit_delta(dt_low: torch.Tensor, dt_weight: torch.Tensor) -> torch.Tensor:
    """delta[b, d, l] = sum_r dt_weight[d, r] dt_low[b, d // (D / G), r, l], as a loop over the groups."""
    batch, groups, _, length = dt_low.shape
    dg = dt_weight.shape[0] // groups
    return torch.cat([dt_weight[g * dg:(g + 1) * dg] @ dt_low[:, g] for g in range(groups)], dim=1)


def reference(inputs: dict, softplus: bool) -> torch.Tensor:
    x = {k: None if v is None else v.double() for k, v in inputs.items()}
    delta = explicit_delta(x.pop("dt_low"), x.pop("dt_weight"))
    return selective_scan_ref(delta=delta, **x, delta_softplus=softplus, compute_dtype=torch.float64)


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return ((x.double() - ref).abs().max() / ref.abs().max()).item()


@needs_native
@pytest.mark.parametrize("groups,dg,rank", [(1, 16, 1), (2, 19, 3), (4, 37, 8), (4, 5, 32)])
@pytest.mark.parametrize("length", [1, 7, 64, 65, 300])
def test_native_lowrank_matches_float64_loop(groups, dg, rank, length):
    inputs = make_inputs(groups * 1000 + length, 2, dg, groups, rank, length)
    with torch.no_grad():
        out = selective_scan_lowrank(**inputs, delta_softplus=True, backend="cpu")
    assert rel_err(out, reference(inputs, True)) < 2e-5


@needs_native
@pytest.mark.parametrize("with_D,with_bias,softplus", [(False, False, False), (True, False, True),
                                                       (False, True, True)])
def test_native_lowrank_options(with_D, with_bias, softplus):
    inputs = make_inputs(5, 1, 21, 4, 4, 130, with_D=with_D, with_bias=with_bias)
    if not softplus:
        inputs["dt_weight"] = inputs["dt_weight"].abs()  # delta >= 0 without the softplus
        inputs["dt_low"] = inputs["dt_low"].abs()
    with torch.no_grad():
        out = selective_scan_lowrank(**inputs, delta_softplus=softplus, backend="cpu")
    assert rel_err(out, reference(inputs, softplus)) < 2e-5


@needs_native
def test_native_lowrank_out_may_be_u_and_gives_the_same_result():
    inputs = make_inputs(3, 1, 40, 4, 8, 257)
    with torch.no_grad():
        expected = selective_scan_lowrank(**inputs, delta_softplus=True, backend="cpu")
        assert torch.equal(inputs["u"], make_inputs(3, 1, 40, 4, 8, 257)["u"])  # u untouched without `out`
        u = inputs["u"].clone()
        out = selective_scan_lowrank(**{**inputs, "u": u}, delta_softplus=True, backend="cpu", out=u)
    assert out.data_ptr() == u.data_ptr()
    assert torch.equal(out, expected)
    assert not torch.equal(inputs["u"], u)  # the input really was overwritten (and only when asked)


@pytest.mark.parametrize("backend", ["torch", "ref"])
def test_lowrank_out_argument_on_other_backends(backend):
    inputs = make_inputs(4, 1, 6, 4, 3, 20)
    with torch.no_grad():
        expected = selective_scan_lowrank(**inputs, delta_softplus=True, backend=backend)
        out = torch.full_like(inputs["u"], float("nan"))
        got = selective_scan_lowrank(**inputs, delta_softplus=True, backend=backend, out=out)
    assert got.data_ptr() == out.data_ptr() and torch.equal(out, expected)


@needs_native
def test_native_out_must_fit():
    inputs = make_inputs(3, 1, 16, 4, 8, 10)
    with torch.no_grad(), pytest.raises(ValueError, match="out must be"):
        selective_scan_lowrank(**inputs, backend="cpu", out=torch.empty(1, 64, 11))


def test_lowrank_with_autograd_equals_selective_scan_on_explicit_delta():
    """With gradients needed (any backend), delta is formed and `selective_scan` runs: same values and grads."""
    inputs = make_inputs(11, 1, 9, 4, 3, 33)
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    out = selective_scan_lowrank(**leaves, delta_softplus=True)
    out.square().sum().backward()
    twins = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    delta = explicit_delta(twins["dt_low"], twins["dt_weight"])
    expected = selective_scan(delta=delta, **{k: twins[k] for k in ("u", "A", "B", "C", "D", "delta_bias")},
                              delta_softplus=True)
    expected.square().sum().backward()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    for name in inputs:
        torch.testing.assert_close(leaves[name].grad, twins[name].grad, rtol=1e-4, atol=1e-4)


@needs_native
def test_lowrank_rejects_mismatched_groups():
    inputs = make_inputs(1, 1, 8, 4, 2, 16)
    inputs["dt_low"] = inputs["dt_low"][:, :2]
    with torch.no_grad(), pytest.raises(ValueError, match="low-rank delta"):
        selective_scan_lowrank(**inputs, backend="cpu")
