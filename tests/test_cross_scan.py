"""The 4-direction cross scan against its definition (docs/model.md section 6), and its adjoint merge."""

from __future__ import annotations

import torch

from mambast.ops import cross_merge, cross_scan


def test_directions_follow_the_definition():
    H, W = 3, 5
    x = torch.arange(H * W, dtype=torch.float32).view(1, 1, H, W)
    xs = cross_scan(x)[0, :, 0]  # (4, L)
    row_major = [h * W + w for h in range(H) for w in range(W)]
    col_major = [h * W + w for w in range(W) for h in range(H)]
    assert xs[0].tolist() == row_major
    assert xs[1].tolist() == col_major
    assert xs[2].tolist() == row_major[::-1]
    assert xs[3].tolist() == col_major[::-1]


def test_merge_is_the_adjoint_and_gradients_are_exact():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 6, dtype=torch.float64, generator=g)
    y = torch.randn(2, 4, 3, 24, dtype=torch.float64, generator=g)
    lhs = (cross_scan(x) * y).sum()
    rhs = (x.flatten(2) * cross_merge(y, 4, 6)).sum()
    torch.testing.assert_close(lhs, rhs)
    assert torch.autograd.gradcheck(cross_scan, (x.requires_grad_(),))
    assert torch.autograd.gradcheck(lambda t: cross_merge(t, 4, 6), (y.requires_grad_(),))


def test_backend_table_pairs_each_scan_with_its_cross_scan():
    """One object per backend: "torch" (and the CPU backends) never use the Triton cross scan, on CUDA either;
    "triton" does; the model's choice reaches every SS2D layer."""
    from mambast import MambaST, MambaSTConfig
    from mambast.model.ss2d import SS2DBase
    from mambast.ops import BACKENDS, get_backend

    for name in ("torch", "cpu", "ref"):
        assert get_backend(name, "cuda").cross_impl == "torch"
    assert get_backend("triton", "cuda").cross_impl == "triton"
    assert set(BACKENDS) == {"auto", "ref", "torch", "cpu", "mamba_ssm", "triton"}
    model = MambaST(MambaSTConfig.preset("tiny")).set_scan_backend("torch")
    layers = [m for m in model.modules() if isinstance(m, SS2DBase)]
    assert len(layers) == 3
    cuda = torch.device("cuda")  # resolving needs no GPU
    assert all(m.backend(cuda).name == "torch" and m.backend(cuda).cross_impl == "torch" for m in layers)
    x = torch.randn(1, 3, 4, 5)
    torch.testing.assert_close(get_backend("triton", "cpu").cross_scan(x), cross_scan(x), rtol=0, atol=0)
    assert get_backend("torch", "cpu").available() and get_backend("ref", "cuda").unavailable_reason() == ""
    import importlib.util

    has_triton = importlib.util.find_spec("triton") is not None
    assert get_backend("triton", "cuda").available() == has_triton


def test_backend_name_is_checked():
    import pytest

    from mambast import MambaST, MambaSTConfig, UserError
    from mambast.ops import get_backend

    with pytest.raises(ValueError, match="unknown selective-scan backend 'cuda'"):
        get_backend("cuda", "cpu")
    with pytest.raises(UserError, match="unknown scan backend"):
        MambaST(MambaSTConfig.preset("tiny")).set_scan_backend("fast")

