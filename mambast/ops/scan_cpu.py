"""Native CPU selective scan: a C kernel (csrc/selective_scan_cpu.c) compiled on first use, loaded with ctypes.

The kernel (forward and backward) keeps VL = 16 channels (AVX-512; 8 otherwise) in the SIMD lanes, the state
h in registers, runs sequentially over L with OpenMP over (batch, channel block), checkpoints h every 64 steps
when a backward will follow and recomputes each chunk in the backward. See docs/native-scan.md.

Build: the system C compiler ($CC, else cc, else gcc) with -O3 -march=native -fopenmp, once; the .so is cached
under $MAMBAST_CACHE_DIR (default ~/.cache/mambast) keyed by a hash of the source, flags, compiler version and
CPU flags, written atomically. MAMBAST_NO_NATIVE=1 makes `native_available()` False (the dispatcher then uses
the pure-torch scan). float64 inputs are routed to the float64 pure-torch scan (scan_torch.py).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from .shapes import check_scan_shapes

_SOURCE = Path(__file__).parent / "csrc" / "selective_scan_cpu.c"
_FLAGS = ("-O3", "-fopenmp", "-fPIC", "-shared", "-fno-math-errno", "-fno-trapping-math", "-Wno-psabi")
_P = ctypes.POINTER(ctypes.c_float)


class _Params(ctypes.Structure):
    _fields_ = [(name, _P) for name in ("u", "delta", "A", "Bt", "Ct", "Dskip", "bias", "ckpt")] + [
        (name, ctypes.c_int64)
        for name in ("su_b", "su_d", "su_t", "sd_b", "sd_d", "sd_t", "Bsz", "D", "L", "N", "G", "softplus",
                     "nthreads")
    ] + [("dtw", _P), ("dtl", _P), ("R", ctypes.c_int64)]  # low-rank delta (forward only); NULL when unused


class _FwdOut(ctypes.Structure):
    _fields_ = [("out", _P), ("last", _P)]


class _BwdIO(ctypes.Structure):
    _fields_ = [("dout", _P), ("so_b", ctypes.c_int64), ("so_d", ctypes.c_int64), ("so_t", ctypes.c_int64)] + [
        (name, _P) for name in ("du", "ddelta", "dA", "dD", "dbias", "dBt", "dCt")
    ]


# ------------------------------------------------------------------------------------------------
# build and load


def cache_dir() -> Path:
    """Where compiled kernels are cached: $MAMBAST_CACHE_DIR, else ~/.cache/mambast."""
    return Path(os.environ.get("MAMBAST_CACHE_DIR") or Path.home() / ".cache" / "mambast")


def _flags() -> tuple[str, ...]:
    """Compiler flags; the target is -march=$MAMBAST_NATIVE_ARCH (default native; e.g. x86-64-v3 for AVX2,
    x86-64 for the portable vector-extension path)."""
    return (f"-march={os.environ.get('MAMBAST_NATIVE_ARCH') or 'native'}", *_FLAGS)


def _flag_variants() -> list[tuple[str, ...]]:
    """What to try, in order: all flags; without OpenMP (a single-threaded kernel, e.g. Apple clang); also
    without -march (compilers that reject -march=native)."""
    full = _flags()
    no_omp = tuple(f for f in full if f != "-fopenmp")
    return [full, no_omp, tuple(f for f in no_omp if not f.startswith("-march="))]


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and shutil.which(name):
            return name
    return None


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.machine() + platform.processor()


def _library_path(cc: str) -> Path:
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    key = hashlib.sha256()
    for part in (_SOURCE.read_bytes(), " ".join(_flags()).encode(), version.encode(), _cpu_flags().encode()):
        key.update(part)
        key.update(b"\0")
    return cache_dir() / f"selective_scan_cpu-{key.hexdigest()[:16]}.so"


def _compile(cc: str, target: Path) -> None:
    """Compile to a temporary file next to `target`, then rename it into place (atomic)."""
    print("mambast: compiling the native CPU selective scan (once) ...", file=sys.stderr, flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.stem + ".", suffix=".tmp.so", dir=target.parent)
    os.close(fd)
    try:
        error = ""
        for flags in _flag_variants():
            result = subprocess.run([cc, *flags, "-o", tmp, str(_SOURCE)], capture_output=True, text=True,
                                    timeout=300)
            if result.returncode == 0:
                os.replace(tmp, target)
                return
            error = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(f"{cc} failed: {error}")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_load_error: str | None = None


@cache
def _library() -> ctypes.CDLL | None:
    """The loaded kernel library, compiling it first if needed; None (reason in `_load_error`) if impossible."""
    global _load_error
    try:
        cc = _compiler()
        if cc is None:
            raise RuntimeError("no C compiler found (set CC, or install gcc)")
        path = _library_path(cc)
        if not path.exists():
            _compile(cc, path)
        lib = ctypes.CDLL(str(path))
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        _load_error = str(err)
        return None
    for name in ("mst_vector_width", "mst_chunk_size", "mst_max_state"):
        getattr(lib, name).restype = ctypes.c_int
    lib.mst_num_blocks.restype = ctypes.c_int64
    lib.mst_num_blocks.argtypes = (ctypes.c_int64, ctypes.c_int64)
    lib.mst_scan_fwd.argtypes = (ctypes.POINTER(_Params), ctypes.POINTER(_FwdOut))
    lib.mst_scan_bwd.argtypes = (ctypes.POINTER(_Params), ctypes.POINTER(_BwdIO))
    return lib


def native_available() -> bool:
    """True if the native kernel is usable here (compiler present, build OK) and MAMBAST_NO_NATIVE is not set."""
    if os.environ.get("MAMBAST_NO_NATIVE", "") not in ("", "0"):
        return False
    return _library() is not None


def max_state() -> int:
    """The largest state size N the loaded kernel takes (its MST_NMAX, read from the library; 0 when the kernel
    is unavailable). Larger N (unused by Mamba-ST) goes to the pure-torch scan."""
    lib = _library() if native_available() else None
    return lib.mst_max_state() if lib is not None else 0


def unavailable_reason() -> str:
    """Why `native_available()` is False (empty if it is True)."""
    if os.environ.get("MAMBAST_NO_NATIVE", "") not in ("", "0"):
        return "disabled by MAMBAST_NO_NATIVE"
    return "" if _library() is not None else (_load_error or "unknown error")


# ------------------------------------------------------------------------------------------------
# calling the kernel


def _ptr(t: Tensor | None):
    return None if t is None else ctypes.cast(t.data_ptr(), _P)


def _f32(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.to(torch.float32)


def _params(u, delta, A, Bt, Ct, D, bias, ckpt, softplus: bool) -> _Params:
    batch, channels, length = u.shape
    return _Params(
        _ptr(u), _ptr(delta), _ptr(A), _ptr(Bt), _ptr(Ct), _ptr(D), _ptr(bias), _ptr(ckpt),
        *u.stride(), *delta.stride(), batch, channels, length, A.shape[1], Bt.shape[1], int(softplus),
        torch.get_num_threads(),
    )


def _check(rc: int, what: str) -> None:
    if rc == 1:
        raise MemoryError(f"mambast: native selective scan {what}: out of memory")
    if rc != 0:
        raise ValueError(f"mambast: native selective scan {what}: invalid arguments")


class _NativeScan(torch.autograd.Function):
    """Autograd wrapper: forward and backward both run in the C kernel (no z: applied outside)."""

    @staticmethod
    def forward(ctx, u, delta, A, Bt, Ct, D, delta_bias, delta_softplus, return_last_state):
        lib = _library()
        u32, delta32 = _f32(u), _f32(delta)
        A32 = _f32(A).contiguous()
        D32 = None if D is None else _f32(D).contiguous()
        bias32 = None if delta_bias is None else _f32(delta_bias).contiguous()
        batch, channels, length = u.shape
        state, groups = A.shape[1], Bt.shape[1]
        needs_grad = any(ctx.needs_input_grad)
        ckpt = None
        if needs_grad:
            chunks = -(-length // lib.mst_chunk_size())
            size = batch * lib.mst_num_blocks(channels, groups) * chunks * state * lib.mst_vector_width()
            ckpt = u32.new_empty(size)
        out = u32.new_empty(batch, channels, length)
        last = u32.new_empty(batch, channels, state) if return_last_state else None
        params = _params(u32, delta32, A32, Bt, Ct, D32, bias32, ckpt, delta_softplus)
        _check(lib.mst_scan_fwd(ctypes.byref(params), ctypes.byref(_FwdOut(_ptr(out), _ptr(last)))), "forward")
        if needs_grad:
            ctx.save_for_backward(u32, delta32, A32, Bt, Ct, D32, bias32, ckpt)
            ctx.delta_softplus = delta_softplus
            ctx.lib = lib  # the backward must use the build whose checkpoint layout (vector width) this is
            ctx.dtypes = [None if t is None else t.dtype for t in (u, delta, A, D, delta_bias)]
        if last is None:
            return out, None
        ctx.mark_non_differentiable(last)
        return out, last

    @staticmethod
    def backward(ctx, dout, _dlast):
        lib = ctx.lib
        u, delta, A, Bt, Ct, D, bias, ckpt = ctx.saved_tensors
        dout = dout.to(torch.float32)
        batch, channels, length = u.shape
        du, ddelta = torch.empty(batch, channels, length), torch.empty(batch, channels, length)
        dA = torch.empty(batch, *A.shape)
        dD = torch.empty(batch, channels) if D is not None else None
        dbias = torch.empty(batch, channels) if bias is not None else None
        dBt, dCt = torch.empty_like(Bt), torch.empty_like(Ct)
        params = _params(u, delta, A, Bt, Ct, D, bias, ckpt, ctx.delta_softplus)
        io = _BwdIO(_ptr(dout), *dout.stride(), _ptr(du), _ptr(ddelta), _ptr(dA), _ptr(dD), _ptr(dbias),
                    _ptr(dBt), _ptr(dCt))
        _check(lib.mst_scan_bwd(ctypes.byref(params), ctypes.byref(io)), "backward")
        dtypes = ctx.dtypes
        return (du.to(dtypes[0]), ddelta.to(dtypes[1]), dA.sum(0).to(dtypes[2]), dBt, dCt,
                None if dD is None else dD.sum(0).to(dtypes[3]),
                None if dbias is None else dbias.sum(0).to(dtypes[4]), None, None)


def _check_inputs(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> None:
    if u.device.type != "cpu":
        raise ValueError(f"mambast: the native CPU selective scan needs CPU tensors, got {u.device}")
    check_scan_shapes(u, delta, A, B, C)
    if A.is_complex():
        raise ValueError("mambast: the native CPU selective scan supports real A only")


def _grouped_transposed(M: Tensor) -> Tensor:
    """(B, G, N, L) or (B, N, L) -> contiguous float32 (B, G, L, N), the layout the kernel reads."""
    if M.dim() == 3:
        M = M.unsqueeze(1)
    return M.to(torch.float32).transpose(-1, -2).contiguous()


class _ToGrouped(torch.autograd.Function):
    """Identity-like re-layout kept differentiable: forward (B,[G,]N,L) -> (B,G,L,N), backward the inverse."""

    @staticmethod
    def forward(ctx, M):
        ctx.shape, ctx.dtype = M.shape, M.dtype
        return _grouped_transposed(M)

    @staticmethod
    def backward(ctx, grad):
        return grad.transpose(-1, -2).reshape(ctx.shape).to(ctx.dtype)


def selective_scan_cpu(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
):
    """Native CPU selective scan; contract of `mambast.ops.selective_scan`.

    u, delta, z: (B, D, L); A: (D, N); B, C: (B, G, N, L) or (B, N, L); D, delta_bias: (D,). Any strides.
    float32 state and accumulation for float32/bfloat16/float16 inputs; float64 inputs (and N > 64, or
    empty inputs) use the pure-torch scan (float64 state for float64).
    Returns out (B, D, L) in u's dtype, and h_{L-1} (B, D, N) (no gradient) if asked.
    """
    _check_inputs(u, delta, A, B, C)
    torch_path = u.dtype == torch.float64 or u.numel() == 0
    if not torch_path and not native_available():
        raise RuntimeError(f"mambast: native CPU selective scan unavailable: {unavailable_reason()}")
    if torch_path or A.shape[1] > max_state():
        from .scan_torch import selective_scan_torch

        return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    y, last = _NativeScan.apply(u, delta, A, _ToGrouped.apply(B), _ToGrouped.apply(C), D, delta_bias,
                                bool(delta_softplus), bool(return_last_state))
    if z is not None:
        y = y * F.silu(z.to(torch.float32))
    y = y.to(u.dtype)
    return (y, last.to(u.dtype)) if return_last_state else y


def lowrank_native_ok(tensors: tuple[Tensor | None, ...], A: Tensor, B: Tensor) -> bool:
    """Whether `selective_scan_cpu_lowrank` takes these inputs (u first in `tensors`): CPU float32 throughout,
    grouped 4-D B, N within the kernel's limit, non-empty, and no autograd needed. Availability of the build
    is the caller's (resolve_backend's) business."""
    u = tensors[0]
    present = [t for t in tensors if t is not None]
    return (u.device.type == "cpu" and u.numel() > 0 and B.dim() == 4 and A.shape[1] <= max_state()
            and all(t.dtype == torch.float32 for t in present)
            and not (torch.is_grad_enabled() and any(t.requires_grad for t in present)))


def selective_scan_cpu_lowrank(
    u: Tensor,
    dt_low: Tensor,
    dt_weight: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    out: Tensor | None = None,
) -> Tensor:
    """Native forward-only scan with a low-rank delta computed inside the kernel (no (B, D, L) delta tensor).

    delta[b, d] = dt_weight[d] @ dt_low[b, g] for channel d of group g = d // (D / G), then as
    `selective_scan_cpu(u, delta, A, B, C, D, delta_bias=..., delta_softplus=...)`.
    u: (B, D, L); dt_low: (B, G, R, L); dt_weight: (D, R); A: (D, N); B, C: (B, G, N, L); D, delta_bias: (D,).
    float32 only, no autograd (the caller checks). `out`: a contiguous float32 (B, D, L) tensor to write the
    result into; it may be u itself (the kernel reads each u element before writing that place), u is then
    overwritten. Returns out (B, D, L).
    """
    if not native_available():
        raise RuntimeError(f"mambast: native CPU selective scan unavailable: {unavailable_reason()}")
    _check_inputs(u, u, A, B, C)
    batch, channels, length = u.shape
    groups, rank = dt_low.shape[1], dt_low.shape[2]
    if (dt_low.shape != (batch, groups, rank, length) or dt_weight.shape != (channels, rank) or B.dim() != 4
            or B.shape[1] != groups or C.shape[1] != groups):
        raise ValueError(f"mambast: low-rank delta needs dt_low (B, G, R, L), dt_weight (D, R) and B, C with the "
                         f"same G; got {tuple(dt_low.shape)}, {tuple(dt_weight.shape)}, {tuple(B.shape)}")
    if any(t is not None and t.dtype != torch.float32 for t in (u, dt_low, dt_weight, A, B, C, D, delta_bias)):
        raise ValueError("mambast: the low-rank native scan takes float32 tensors only")
    lib = _library()
    u = u if u.stride(-1) == 1 else u.contiguous()
    if out is None:
        out = torch.empty_like(u, memory_format=torch.contiguous_format)
    elif out.shape != u.shape or out.dtype != torch.float32 or not out.is_contiguous() or out.device != u.device:
        raise ValueError(f"mambast: out must be a contiguous float32 CPU tensor of u's shape {tuple(u.shape)}, "
                         f"got {tuple(out.shape)} {out.dtype}")
    # keep every tensor the kernel reads alive in a local until the call returns
    dt_low, dt_weight, A = dt_low.contiguous(), dt_weight.contiguous(), A.contiguous()
    Bt, Ct = _grouped_transposed(B), _grouped_transposed(C)
    D = None if D is None else D.contiguous()
    delta_bias = None if delta_bias is None else delta_bias.contiguous()
    params = _params(u, u, A, Bt, Ct, D, delta_bias, None, delta_softplus)
    params.dtw, params.dtl, params.R = _ptr(dt_weight), _ptr(dt_low), rank
    _check(lib.mst_scan_fwd(ctypes.byref(params), ctypes.byref(_FwdOut(_ptr(out), None))), "forward")
    return out
