"""The CUDA kernel of the mamba_ssm package (Apache-2.0), when it is installed."""

from __future__ import annotations


def selective_scan_mamba_ssm(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                             return_last_state=False):
    """Same contract as `mambast.ops.selective_scan`; needs CUDA tensors and `pip install mamba_ssm`."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise RuntimeError("backend='mamba_ssm' needs the mamba_ssm package (pip install mamba_ssm)") from e
    return selective_scan_fn(u, delta, A, B.contiguous(), C.contiguous(), D, z, delta_bias,
                             delta_softplus, return_last_state)
