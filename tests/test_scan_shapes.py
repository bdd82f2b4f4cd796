"""One check of the selective scan's argument shapes (mambast/ops/shapes.py) for every backend: the same
bad shape is the same one-line ValueError whichever backend runs (before, only the native CPU kernel checked
every shape; the pure-torch and reference scans failed somewhere inside, or not at all)."""

from __future__ import annotations

import pytest
import torch

from mambast.ops import get_backend

BACKENDS = [name for name in ("ref", "torch", "cpu") if get_backend(name, "cpu").available()]


def _inputs(batch=2, channels=4, state=3, length=5, groups=2):
    g = torch.Generator().manual_seed(0)
    u = torch.randn(batch, channels, length, generator=g)
    return dict(u=u, delta=torch.rand(batch, channels, length, generator=g),
                A=-torch.rand(channels, state, generator=g),
                B=torch.randn(batch, groups, state, length, generator=g),
                C=torch.randn(batch, groups, state, length, generator=g))


BAD = [
    (dict(delta=torch.rand(2, 4, 6)), r"u and delta must be \(B, D, L\) of one shape, got \(2, 4, 5\) and \(2, 4, 6\)"),
    (dict(A=-torch.rand(5, 3)), r"A must be \(D, N\) with D = 4, got \(5, 3\)"),
    (dict(B=torch.randn(2, 2, 3, 7)), r"B must be \(B, G, N, L\) or \(B, N, L\) with B = 2, N = 3, L = 5, got "
                                      r"\(2, 2, 3, 7\)"),
    (dict(C=torch.randn(1, 2, 3, 5)), r"C must be .* got \(1, 2, 3, 5\)"),
    (dict(B=torch.randn(2, 3, 3, 5), C=torch.randn(2, 3, 3, 5)),
     r"channels \(4\) must be a multiple of the B/C groups \(3\)"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("change", "message"), BAD)
def test_every_backend_refuses_the_same_bad_shapes_alike(backend, change, message):
    args = {**_inputs(), **change}
    with pytest.raises(ValueError, match=f"^mambast: {message}"):
        get_backend(backend, "cpu").scan(args["u"], args["delta"], args["A"], args["B"], args["C"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_good_shapes_pass(backend):
    args = _inputs()
    out = get_backend(backend, "cpu").scan(args["u"], args["delta"], args["A"], args["B"], args["C"])
    assert out.shape == (2, 4, 5) and torch.isfinite(out).all()
