"""Deterministic synthetic Mamba-ST checkpoints in the published file layout, so the golden tests run from a
plain clone (the goldens in tests/data/ were computed by the published code from these weights).

    python tests/synthetic_weights.py OUT_DIR [--seed 1234] [--iter 160000]

writes OUT_DIR/mamba_iter_N.pth, decoder_iter_N.pth, embedding_iter_N.pth and vgg_normalised.pth: plain state
dicts of float32 tensors with every key and shape of the published files (mambast/io/official_layout.json).

The recipe (the project's spec, shared/official/synthetic_weights.py, describes it; tests/test_synthetic_weights.py
checks that both give the same bytes): every tensor comes from its own numpy legacy RandomState, seeded with
crc32("{seed}:{file tag}:{key}") & 0x7FFFFFFF, drawn in float64 and stored as float32, scaled by kind:
    A_logs          log(uniform(1, 16))                       (A = -exp(A_logs) in [-16, -1])
    dt_projs_bias   softplus^-1(dt), dt log-uniform in [1e-3, 1e-1]
    1-D weights     1 + 0.1 N(0, 1)    (LayerNorm/conv weights, skip_scale, skip_scale2, Ds)
    other 1-D       0.05 N(0, 1)       (biases)
    >= 2-D          N(0, 1) / sqrt(fan_in), fan_in = numel / rows, or the last dimension for the stacked
                    x_proj/style_proj/dt_projs weights
and two decoder exceptions: `28.bias` = 0.5 + 0.05 N(0, 1) (output centred on mid-grey), `28.weight` x 4.
"""

from __future__ import annotations

import argparse
import json
import math
import zlib
from pathlib import Path

import numpy as np

LAYOUT = Path(__file__).resolve().parent.parent / "mambast" / "io" / "official_layout.json"
STACKED = ("x_proj_weight", "style_proj_weight", "dt_projs_weight")  # (K, rows, fan_in)
ONE_PLUS = ("weight", "skip_scale", "skip_scale2", "Ds")  # 1-D parameters that multiply


def _rng(seed: int, tag: str, key: str) -> np.random.RandomState:
    return np.random.RandomState(zlib.crc32(f"{seed}:{tag}:{key}".encode()) & 0x7FFFFFFF)


def _dt_bias(rng: np.random.RandomState, n: int) -> np.ndarray:
    """softplus^-1 of dt = exp(uniform(log 1e-3, log 1e-1)): the usual Mamba dt init."""
    lo, hi = math.log(0.001), math.log(0.1)
    dt = np.exp(rng.uniform(0, 1, size=n) * (hi - lo) + lo)
    return dt + np.log(-np.expm1(-dt))


def synthetic_tensor(tag: str, key: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """One tensor of file `tag` ("mamba", "decoder", "embedding", "vgg"), float32 of `shape`."""
    rng, n = _rng(seed, tag, key), int(np.prod(shape))
    if tag == "decoder" and key == "28.bias":
        values = 0.5 + 0.05 * rng.standard_normal(n)
    elif "A_logs" in key:
        values = np.log(rng.uniform(1.0, 16.0, size=n))
    elif "dt_projs_bias" in key:
        values = _dt_bias(rng, n)
    elif len(shape) == 1:
        values = (1.0 + 0.1 * rng.standard_normal(n) if key.rsplit(".", 1)[-1] in ONE_PLUS
                  else 0.05 * rng.standard_normal(n))
    else:
        fan_in = shape[-1] if key.endswith(STACKED) else n // shape[0]
        values = rng.standard_normal(n) / math.sqrt(fan_in)
        if tag == "decoder" and key == "28.weight":
            values = 4 * values
    return values.reshape(shape).astype(np.float32)


def file_names(iteration: int) -> dict[str, str]:
    """{tag: file name} of the published layout for training step `iteration`."""
    return {"mamba": f"mamba_iter_{iteration}.pth", "decoder": f"decoder_iter_{iteration}.pth",
            "embedding": f"embedding_iter_{iteration}.pth", "vgg": "vgg_normalised.pth"}


def synthetic_state_dicts(seed: int) -> dict[str, dict[str, np.ndarray]]:
    """{tag: {key: float32 array}} in the layout's key order."""
    layout = json.loads(LAYOUT.read_text())
    return {tag: {key: synthetic_tensor(tag, key, tuple(shape), seed) for key, shape in spec["tensors"]}
            for tag, spec in layout.items()}


def write_synthetic(out_dir: Path, seed: int = 1234, iteration: int = 160000) -> Path:
    """Write the four .pth files to `out_dir` (created) and return it."""
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = file_names(iteration)
    for tag, state in synthetic_state_dicts(seed).items():
        torch.save({k: torch.from_numpy(v) for k, v in state.items()}, out_dir / names[tag])
    return out_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--iter", type=int, default=160000)
    args = ap.parse_args()
    write_synthetic(args.out_dir, args.seed, args.iter)
    print(f"wrote {', '.join(file_names(args.iter).values())} to {args.out_dir}")


if __name__ == "__main__":
    main()
