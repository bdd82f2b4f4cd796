"""GPU check and benchmark: the selective scan backends, the whole model, the attention baseline, training.

    python benchmarks/gpu.py --json gpu.json             # a CUDA machine (H100/H200): inside 8 minutes
    python benchmarks/gpu.py --smoke --json smoke.json   # any machine: CPU, Triton interpreter, tiny shapes

Sections, in order (each one is guarded: a failure is recorded in the JSON and the run goes on; after
--budget-s seconds, 360 by default, later timed items are skipped and recorded as skipped):
    1. device-to-device copy bandwidth (bytes read + written per second): the memory-traffic yardstick
    2. correctness on the device: Triton scan (forward and every gradient) vs the float64 loop, small shapes;
       Triton cross scan/merge vs the torch ops
    3. whole-model inference, MambaST(MambaSTConfig()) (the paper preset) random init: images/s and peak
       memory at 256/512/1024 px x batch 1/8/32 x fp32/bf16 (the engine's precision context: autocast, the
       scan in float32); Triton vs mamba_ssm at 512 px batch 8 when mamba_ssm is importable
    4. the StyTr2-layout attention baseline (mambast.baselines.attention), plain attention and torch's SDPA:
       images/s and peak memory at 256/512/1024 px x batch 1/8 x fp32/bf16 (plain skipped where its L x L
       scores alone would exceed half the GPU)
    5. one paper-preset training iteration (batch 8, 256 px, 3 passes + VGG losses + Adam) per scan backend
    6. scan timings, B=8, D=4096 (G=4 groups, as Mamba-ST), N=16, L=1024 and 4096, fp32 and bf16: forward and
       forward+backward for triton, mamba_ssm (when importable) and the torch fallback (where affordable),
       each with its memory-traffic floor ratio (time / (bytes it must read + write / copy bandwidth))
    7. a small sweep of Triton tile sizes at L=4096 fp32 (--no-sweep skips it)
Peak GPU memory is recorded for every timed item; one JSON goes to --json (default
benchmarks/results/gpu.json, or gpu_smoke.json with --smoke). Targets (issue 5): forward at L=4096 within 2x
of its floor, forward+backward within 3x, Triton at least as fast as mamba_ssm, 1024 px inference under 2 GB.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", type=Path, default=None, help="write all results to this JSON file")
    p.add_argument("--smoke", action="store_true",
                   help="tiny shapes on the CPU through TRITON_INTERPRET=1 (tests the script, no GPU needed)")
    p.add_argument("--no-sweep", action="store_true", help="skip the Triton tile-size sweep")
    p.add_argument("--no-model", action="store_true", help="skip whole-model inference and training")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions per item (default 10; smoke 1)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="stop starting new timed items after this many seconds (default 360 on a GPU: the whole "
                        "run stays inside 8 minutes; no limit with --smoke); what was skipped is recorded")
    return p.parse_args(argv)


ARGS = parse_args()
if ARGS.smoke:
    os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported anywhere
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from mambast.ops import scan_triton  # noqa: E402
from mambast.ops.cross_scan import cross_merge, cross_scan  # noqa: E402
from mambast.ops.scan_ref import selective_scan_ref  # noqa: E402
from mambast.ops.selective_scan import selective_scan  # noqa: E402

SMOKE = ARGS.smoke
if not SMOKE and not torch.cuda.is_available():
    sys.exit("benchmarks/gpu.py: no CUDA device here; run with --smoke to test the script on the CPU")
DEV = torch.device("cpu" if SMOKE else "cuda")
REPS = ARGS.reps or (1 if SMOKE else 10)
HAS_MAMBA_SSM = importlib.util.find_spec("mamba_ssm") is not None and not SMOKE
RESULTS: dict = {"smoke": SMOKE, "errors": []}
START = time.perf_counter()
DEFAULT_JSON = ROOT / "benchmarks" / "results" / ("gpu_smoke.json" if SMOKE else "gpu.json")


# ---------------------------------------------------------------------------------------------- helpers


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def over_budget() -> bool:
    """True once the run has used its --budget-s (later timed items are skipped and recorded as such)."""
    budget = ARGS.budget_s if ARGS.budget_s is not None else (math.inf if SMOKE else 360.0)
    return time.perf_counter() - START > budget


def sync() -> None:
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def reset_peak() -> None:
    if DEV.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gb() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 3) if DEV.type == "cuda" else None


def timed(fn, reps: int = REPS, warmup: int = 0 if SMOKE else 1) -> float:
    """Median wall time of fn() in milliseconds (CUDA events on the GPU)."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(reps):
        if DEV.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def section(name: str, fn):
    """Run one section; record its error (one line) and go on."""
    log(f"== {name}")
    t0 = time.perf_counter()
    try:
        RESULTS[name] = fn()
    except Exception as e:  # noqa: BLE001 - a benchmark records failures and carries on
        msg = f"{name}: {type(e).__name__}: {e}".splitlines()[0]
        log(f"FAILED {msg}")
        RESULTS["errors"].append({"section": name, "error": msg, "traceback": traceback.format_exc()})
        RESULTS[name] = {"error": msg}
    log(f"   {name} took {time.perf_counter() - t0:.1f} s")


# ---------------------------------------------------------------------------------------- 1. bandwidth


def copy_bandwidth() -> dict:
    nbytes = (8 << 20) if SMOKE else (2 << 30)
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=DEV).uniform_()
    dst = torch.empty_like(src)
    ms = timed(lambda: dst.copy_(src), reps=max(REPS, 3), warmup=2)
    gbps = 2 * nbytes / (ms * 1e-3) / 1e9
    log(f"   copy {nbytes / 2**30:.2f} GiB: {ms:.3f} ms -> {gbps:.0f} GB/s (read + write)")
    return {"bytes": nbytes, "ms": ms, "GBps": gbps}


# -------------------------------------------------------------------------------------- 2. correctness


def scan_inputs(batch, groups, dim, nstate, length, dtype, seed=0, with_z=False):
    """Mamba-ST-like scan arguments: u, delta (B, D, L), A (D, N) < 0, B/C (B, G, N, L), D, delta_bias."""
    g = torch.Generator(device=DEV).manual_seed(seed)

    def rnd(*shape, scale=1.0, shift=0.0):
        return (torch.randn(*shape, generator=g, device=DEV) * scale + shift)

    return {
        "u": rnd(batch, dim, length).to(dtype),
        "delta": rnd(batch, dim, length, scale=0.5, shift=-1.0).to(dtype),
        "A": -torch.exp(rnd(dim, nstate, scale=0.5)),
        "B": rnd(batch, groups, nstate, length).to(dtype),
        "C": rnd(batch, groups, nstate, length).to(dtype),
        "D": rnd(dim),
        "z": rnd(batch, dim, length).to(dtype) if with_z else None,
        "delta_bias": rnd(dim, scale=0.3),
    }


def max_rel_error(got, want) -> float:
    return ((got.double() - want.double()).abs().max() / want.double().abs().max().clamp_min(1e-30)).item()


def check_scan_case(batch, groups, dim, nstate, length, dtype, with_z, tol_out, tol_grad) -> dict:
    x = scan_inputs(batch, groups, dim, nstate, length, dtype, seed=length, with_z=with_z)
    names = [k for k, v in x.items() if v is not None]
    ref_in = {k: v.double().requires_grad_() if v is not None else None for k, v in x.items()}
    tri_in = {k: v.clone().requires_grad_() if v is not None else None for k, v in x.items()}
    ref, ref_last = selective_scan_ref(**ref_in, delta_softplus=True, return_last_state=True)
    out, last = scan_triton.selective_scan_triton(**tri_in, delta_softplus=True, return_last_state=True)
    cot = torch.randn(ref.shape, device=DEV, dtype=torch.float64)
    ref_g = torch.autograd.grad(ref, [ref_in[k] for k in names], cot)
    tri_g = torch.autograd.grad(out, [tri_in[k] for k in names], cot.to(out.dtype))
    errors = {"out": max_rel_error(out, ref), "last_state": max_rel_error(last, ref_last)}
    errors.update({f"d{k}": max_rel_error(a, b) for k, a, b in zip(names, tri_g, ref_g, strict=True)})
    grad_ok = all(v <= tol_grad for k, v in errors.items() if k.startswith("d"))
    ok = errors["out"] <= tol_out and errors["last_state"] <= tol_out and grad_ok
    shape = dict(B=batch, G=groups, D=dim, N=nstate, L=length, dtype=str(dtype).split(".")[-1], z=with_z)
    log(f"   scan {shape}: {'ok' if ok else 'MISMATCH'}, worst rel. error {max(errors.values()):.2e}")
    return {"shape": shape, "ok": ok, "max_rel_errors": errors}


def correctness() -> dict:
    f32, bf16 = torch.float32, torch.bfloat16
    cases = [(1, 2, 6, 4, 37, f32, True, 1e-5, 1e-4), (1, 4, 4, 4, 70, bf16, False, 2e-2, 5e-2)]
    if not SMOKE:
        cases += [(1, 4, 12, 16, 70, bf16, False, 2e-2, 5e-2), (2, 4, 64, 16, 300, f32, False, 1e-5, 1e-4),
                  (2, 1, 24, 16, 1000, f32, True, 1e-5, 1e-4), (2, 4, 64, 16, 1000, bf16, False, 2e-2, 5e-2)]
    scans = [check_scan_case(*c) for c in cases]
    crosses = []
    for H, W, dtype in ((3, 5, f32), (16, 24, bf16), (64, 64, f32)):
        from mambast.ops.cross_scan_triton import cross_merge_triton, cross_scan_triton

        x = torch.randn(2, 8, H, W, device=DEV).to(dtype)
        y = torch.randn(2, 4, 8, H * W, device=DEV).to(dtype)
        scan_ok = torch.equal(cross_scan_triton(x), cross_scan(x))
        merge_err = max_rel_error(cross_merge_triton(y, H, W), cross_merge(y.float(), H, W))
        ok = scan_ok and merge_err <= (1e-6 if dtype == f32 else 1e-2)
        crosses.append({"H": H, "W": W, "dtype": str(dtype).split(".")[-1], "ok": ok,
                        "merge_rel_error": merge_err})
    log(f"   cross scan/merge: {'ok' if all(c['ok'] for c in crosses) else 'MISMATCH'}")
    return {"ok": all(c["ok"] for c in scans + crosses), "scan": scans, "cross": crosses}


# ------------------------------------------------------------------------------------------ 3. timings


def traffic_bytes(batch, groups, dim, nstate, length, dtype) -> tuple[int, int]:
    """(forward, forward + backward) bytes that must cross memory at least: inputs read, outputs written."""
    s = torch.finfo(dtype).bits // 8
    seq, bc = batch * dim * length * s, batch * groups * nstate * length * s
    params = 4 * dim * (nstate + 2)  # A, D, delta_bias (fp32)
    fwd = 3 * seq + 2 * bc + params  # read u, delta, B, C; write out
    bwd = 5 * seq + 4 * bc + 2 * params  # read u, delta, dout, B, C; write du, ddelta, dB, dC (+ params)
    return fwd, fwd + bwd


def run_backend(name: str, x: dict):
    if name == "triton":
        return scan_triton.selective_scan_triton(**x, delta_softplus=True)
    return selective_scan(**x, delta_softplus=True, backend=name)


def time_scan(name, batch, groups, dim, nstate, length, dtype, backward, bandwidth) -> dict:
    x = scan_inputs(batch, groups, dim, nstate, length, dtype, seed=1)
    x = {k: v for k, v in x.items() if v is not None}
    row = dict(backend=name, B=batch, G=groups, D=dim, N=nstate, L=length, dtype=str(dtype).split(".")[-1],
               pass_="fwd+bwd" if backward else "fwd")
    reset_peak()
    if backward:
        leaves = {k: v.requires_grad_() for k, v in x.items()}
        dout = torch.randn(batch, dim, length, device=DEV, dtype=dtype)

        def step():
            torch.autograd.grad(run_backend(name, leaves), list(leaves.values()), dout)
    else:

        def step():
            with torch.no_grad():
                run_backend(name, x)

    reps = REPS if name != "torch" else min(REPS, 2)
    row["ms"] = timed(step, reps=reps)
    row["peak_GB"] = peak_gb()
    floor_bytes = traffic_bytes(batch, groups, dim, nstate, length, dtype)[1 if backward else 0]
    if bandwidth:
        row["floor_ms"] = floor_bytes / (bandwidth * 1e9) * 1e3
        row["floor_ratio"] = row["ms"] / row["floor_ms"]
    log(f"   {name:9s} {row['pass_']:7s} L={length:5d} {row['dtype']:8s} {row['ms']:9.3f} ms"
        + (f"  {row['floor_ratio']:.2f}x floor" if "floor_ratio" in row else "")
        + (f"  peak {row['peak_GB']} GB" if row["peak_GB"] is not None else ""))
    return row


def torch_affordable(length: int, backward: bool, dtype) -> bool:
    """The float loop: forward always; its autograd keeps ~10 MB per step at D=4096: only L=1024 fp32."""
    return SMOKE or (dtype == torch.float32 and (not backward or length <= 1024))


def scan_shapes():
    if SMOKE:
        return dict(batch=1, groups=4, dim=8, nstate=4), (16, 40)
    return dict(batch=8, groups=4, dim=4096, nstate=16), (1024, 4096)


def scan_timings() -> list:
    bandwidth = (RESULTS.get("copy_bandwidth") or {}).get("GBps")
    shape, lengths = scan_shapes()
    backends = ["triton"] + (["mamba_ssm"] if HAS_MAMBA_SSM else []) + ["torch"]
    rows = []
    for length in lengths:
        for dtype in (torch.float32, torch.bfloat16):
            for backward in (False, True):
                for name in backends:
                    if name == "torch" and not torch_affordable(length, backward, dtype):
                        continue
                    if over_budget():
                        rows.append(dict(backend=name, L=length, dtype=str(dtype), backward=backward,
                                         skipped="time budget"))
                        continue
                    try:
                        rows.append(time_scan(name, **shape, length=length, dtype=dtype, backward=backward,
                                              bandwidth=bandwidth))
                    except Exception as e:  # noqa: BLE001
                        msg = f"{type(e).__name__}: {e}".splitlines()[0]
                        log(f"   {name} L={length} {dtype} backward={backward}: FAILED {msg}")
                        rows.append(dict(backend=name, L=length, dtype=str(dtype), backward=backward,
                                         error=msg))
    return rows


SWEEP = [  # chunk, fwd_block_d, fwd_warps, bwd_block_d, bwd_warps, bwd_channel_iters (the first: the default)
    (64, 4, 8, 2, 8, 8), (64, 4, 8, 4, 16, 1), (64, 4, 8, 2, 8, 32), (32, 8, 8, 2, 8, 8),
    (16, 16, 8, 8, 16, 8), (32, 4, 4, 2, 8, 1),
]


def tile_sweep() -> list:
    bandwidth = (RESULTS.get("copy_bandwidth") or {}).get("GBps")
    shape, lengths = scan_shapes()
    saved = scan_triton.TritonScanConfig(**vars(scan_triton.CONFIG))
    rows = []
    try:
        for values in SWEEP[: 2 if SMOKE else None]:
            keys = ("chunk", "fwd_block_d", "fwd_warps", "bwd_block_d", "bwd_warps", "bwd_channel_iters")
            cfg = dict(zip(keys, values, strict=True))
            scan_triton.set_config(**cfg)
            for backward in (False, True):
                if over_budget():
                    rows.append({**cfg, "skipped": "time budget"})
                    continue
                try:
                    row = time_scan("triton", **shape, length=lengths[-1], dtype=torch.float32,
                                    backward=backward, bandwidth=bandwidth)
                except Exception as e:  # noqa: BLE001
                    row = {"error": f"{type(e).__name__}: {e}".splitlines()[0]}
                    log(f"   config {cfg}: FAILED {row['error']}")
                rows.append({**cfg, **row})
    finally:
        scan_triton.set_config(**vars(saved))
    return rows


# --------------------------------------------------------------------------------------- 5./6. model


def build_model():
    try:
        from mambast.config import MambaSTConfig
        from mambast.model import MambaST
    except ImportError as e:
        raise RuntimeError(f"skipped: mambast.model / mambast.config not importable ({e})") from e
    # smoke: a minute model (the interpreter runs every Triton program in Python); else the paper model
    cfg = MambaSTConfig(d_model=16, d_state=4, expand=1, content_layers=1, style_layers=1, decoder_layers=1,
                        cnn_channels=(8, 8, 8)) if SMOKE else MambaSTConfig()
    torch.manual_seed(0)
    return MambaST(cfg).to(DEV), cfg


def model_backends() -> list[str]:
    return ["triton"] + (["mamba_ssm"] if HAS_MAMBA_SSM else [])


def infer_grid():
    """(sizes, batches) of the images/s grid."""
    return ((16, 32), (1, 2)) if SMOKE else ((256, 512, 1024), (1, 8, 32))


def time_inference(model, size: int, batch: int, precision: str, backend: str | None = None) -> dict:
    """images/s of one stylization (both encoders, ST-VSS decoder, CNN decoder) of `batch` pairs at size x size
    through the engine's precision context (`Stylizer(precision=)`: autocast, the scan in float32)."""
    from mambast.inference import Stylizer

    row = dict(size=size, batch=batch, precision=precision, backend=backend or "auto")
    if over_budget():
        return {**row, "skipped": "time budget"}
    try:
        if backend:
            model.set_scan_backend(backend)
        engine = Stylizer(model, size=None, precision=precision)
        content = torch.rand(batch, 3, size, size, device=DEV)
        style = torch.rand(batch, 3, size, size, device=DEV)
        last = {}

        def run():
            with torch.inference_mode(), engine.autocast():
                last["out"] = model(content, style, seed=0)

        reset_peak()
        ms = timed(run, reps=min(REPS, 3))
        row.update(ms=ms, images_per_s=batch / (ms / 1e3), peak_GB=peak_gb(),
                   finite=bool(torch.isfinite(last["out"].float()).all()))
    except Exception as e:  # noqa: BLE001 - out of memory and the like: recorded, the grid goes on
        row["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:200]
    finally:
        if backend:
            model.set_scan_backend("auto")
        reset_peak()
    log(f"   inference {row}")
    return row


def model_inference() -> list:
    """The paper model (random weights): images/s at 256/512/1024 px x batch 1/8/32 x fp32/bf16 with the
    default backend (Triton, or mamba_ssm when installed), and Triton vs mamba_ssm at 512 px batch 8."""
    model, _ = build_model()
    model.eval()
    sizes, batches = infer_grid()
    rows = [time_inference(model, size, batch, precision)
            for size in sizes for batch in batches for precision in ("fp32", "bf16")]
    if HAS_MAMBA_SSM:
        for backend in ("triton", "mamba_ssm"):
            rows += [time_inference(model, 512, 8, precision, backend) for precision in ("fp32", "bf16")]
    return rows


def attention_memory_ok(size: int, batch: int, kind: str) -> bool:
    """Plain attention materialises (B, 8 heads, L, L) fp32 scores (and their softmax): skip where that alone
    would take more than half of the GPU (it would only run out of memory)."""
    if kind != "plain" or DEV.type != "cuda":
        return True
    tokens = (size // 8) ** 2
    need = 2 * batch * 8 * tokens * tokens * 4
    return need < 0.5 * torch.cuda.get_device_properties(0).total_memory


def attention_baseline() -> list:
    """The StyTr2-layout attention baseline (mambast.baselines.attention, random weights), plain and SDPA:
    images/s at 256/512/1024 px, batch 1 and 8, fp32 and bf16 autocast, peak GPU memory."""
    from mambast.baselines.attention import AttentionST, AttentionSTConfig

    sizes, batches = infer_grid()
    rows = []
    for kind in ("plain", "sdpa"):
        cfg = (AttentionSTConfig(d_model=16, heads=2, ffn=32, encoder_layers=1, decoder_layers=1, cape_pool=2,
                                 cnn_channels=(8, 8, 8), attention=kind) if SMOKE
               else AttentionSTConfig(attention=kind))
        torch.manual_seed(0)
        model = AttentionST(cfg).to(DEV).eval()
        for size in sizes:
            for batch in batches[:2]:
                for precision in ("fp32", "bf16"):
                    row = dict(attention=kind, size=size, batch=batch, precision=precision)
                    if over_budget():
                        row["skipped"] = "time budget"
                    elif not attention_memory_ok(size, batch, kind):
                        row["skipped"] = "the L x L scores would not fit"
                    else:
                        row.update(time_attention(model, size, batch, precision))
                    log(f"   attention {row}")
                    rows.append(row)
        del model
        reset_peak()
    return rows


def time_attention(model, size: int, batch: int, precision: str) -> dict:
    content = torch.rand(batch, 3, size, size, device=DEV)
    style = torch.rand(batch, 3, size, size, device=DEV)

    def run():
        with torch.inference_mode(), torch.autocast(DEV.type, torch.bfloat16, enabled=precision == "bf16"):
            model(content, style)

    try:
        reset_peak()
        ms = timed(run, reps=min(REPS, 3))
        return {"ms": ms, "images_per_s": batch / (ms / 1e3), "peak_GB": peak_gb()}
    except Exception as e:  # noqa: BLE001
        return {"error": f"{type(e).__name__}: {e}".splitlines()[0][:200]}
    finally:
        reset_peak()


def training_iteration() -> dict:
    try:
        from mambast.nets.vgg import VGGEncoder
        from mambast.train.losses import total_loss, training_losses
    except ImportError as e:
        raise RuntimeError(f"skipped: training not available on this checkout ({e})") from e
    model, _ = build_model()
    model.train()
    vgg = VGGEncoder().to(DEV)  # random weights: the cost, not the values, is measured
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch, size = (1, 32) if SMOKE else (8, 256)
    content = torch.rand(batch, 3, size, size, device=DEV)
    style = torch.rand(batch, 3, size, size, device=DEV)
    rows = {}
    for backend in model_backends():
        model.set_scan_backend(backend)

        losses = []

        def step(losses=losses):
            opt.zero_grad(set_to_none=True)
            loss = total_loss(training_losses(model, vgg, content, style))
            loss.backward()
            opt.step()
            losses.append(loss.item())

        reset_peak()
        ms = timed(step, reps=min(REPS, 3))
        rows[backend] = {"batch": batch, "size": size, "ms": ms, "images_per_s": batch / (ms / 1e3),
                         "peak_GB": peak_gb(), "loss_finite": all(math.isfinite(v) for v in losses)}
        log(f"   training iteration ({backend}): {rows[backend]}")
    return rows


# -------------------------------------------------------------------------------------------- summary


def summary() -> dict:
    rows = [r for r in RESULTS.get("scan_timings") or [] if isinstance(r, dict) and "ms" in r]
    shape, lengths = scan_shapes()

    def find(backend, length, dtype, pass_):
        for r in rows:
            if (r["backend"], r["L"], r["dtype"], r["pass_"]) == (backend, length, dtype, pass_):
                return r
        return None

    out = {}
    fwd = find("triton", lengths[-1], "float32", "fwd")
    both = find("triton", lengths[-1], "float32", "fwd+bwd")
    if fwd and "floor_ratio" in fwd:
        out["fwd_floor_ratio_L4096_fp32"] = fwd["floor_ratio"]
        out["fwd_within_2x_floor"] = fwd["floor_ratio"] <= 2
    if both and "floor_ratio" in both:
        out["fwdbwd_floor_ratio_L4096_fp32"] = both["floor_ratio"]
        out["fwdbwd_within_3x_floor"] = both["floor_ratio"] <= 3
    speedups = {}
    for r in rows:
        if r["backend"] != "triton":
            continue
        for other in ("mamba_ssm", "torch"):
            o = find(other, r["L"], r["dtype"], r["pass_"])
            if o:
                speedups[f"{other}/triton {r['pass_']} L={r['L']} {r['dtype']}"] = o["ms"] / r["ms"]
    out["speedups"] = speedups
    big = [r for r in RESULTS.get("model_inference") or [] if isinstance(r, dict) and r.get("size") == 1024
           and "peak_GB" in r and r["peak_GB"] is not None]
    if big:
        out["inference_1024_peak_GB"] = {f"{r['backend']} b{r['batch']} {r['precision']}": r["peak_GB"]
                                         for r in big}
    ips = {}
    for r in RESULTS.get("model_inference") or []:
        if isinstance(r, dict) and "images_per_s" in r:
            ips[f"mamba-st {r['backend']} {r['size']}px b{r['batch']} {r['precision']}"] = round(r["images_per_s"], 2)
    for r in RESULTS.get("attention_baseline") or []:
        if isinstance(r, dict) and "images_per_s" in r:
            ips[f"attention-{r['attention']} {r['size']}px b{r['batch']} {r['precision']}"] = round(
                r["images_per_s"], 2)
    out["images_per_s"] = ips
    return out


def environment() -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "device": torch.cuda.get_device_name() if DEV.type == "cuda" else "cpu (Triton interpreter)",
           "mamba_ssm": HAS_MAMBA_SSM, "triton_config": vars(scan_triton.CONFIG).copy()}
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    if DEV.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["memory_GB"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return env


def main() -> int:
    t0 = time.perf_counter()
    RESULTS["environment"] = environment()
    log(f"environment: {RESULTS['environment']}")
    section("copy_bandwidth", copy_bandwidth)
    section("correctness", correctness)
    if not ARGS.no_model:
        section("model_inference", model_inference)
        section("attention_baseline", attention_baseline)
        section("training_iteration", training_iteration)
    section("scan_timings", scan_timings)
    if not ARGS.no_sweep:
        section("tile_sweep", tile_sweep)
    RESULTS["summary"] = summary()
    RESULTS["total_s"] = time.perf_counter() - t0
    log(f"summary: {json.dumps(RESULTS['summary'], indent=1)}")
    log(f"done in {RESULTS['total_s']:.0f} s, {len(RESULTS['errors'])} section error(s)")
    path = ARGS.json or DEFAULT_JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(RESULTS, indent=1, default=str))
    log(f"wrote {path}")
    ok = (RESULTS.get("correctness") or {}).get("ok", False)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
