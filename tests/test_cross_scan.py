"""The 4-direction cross scan against its definition (architecture.md section 6), and its adjoint merge."""

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
