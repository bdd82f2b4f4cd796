"""Pure-torch selective scan: correct on any device, used where no faster kernel exists."""

from __future__ import annotations

from .scan_ref import selective_scan_ref


def selective_scan_torch(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                         return_last_state=False):
    """Same contract as `mambast.ops.selective_scan`; float32 state (float64 for float64 inputs)."""
    return selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
