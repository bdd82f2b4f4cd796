"""SS2D: the 2-D selective scan layer of the encoders (docs/model.md section 4).

    xz = in_proj(x); x, z = chunk(xz)            x: (B, H, W, Di) content path, z: gate
    x  = SiLU(DWConv3x3(x))
    xs = cross_scan(x)                           (B, K, Di, L), K = 4 directions
    [dt, B, C] = x_proj_weight[k] @ xs[:, k]     delta = dt_projs_weight[k] @ dt (inside the scan kernel on CPU)
    y  = selective_scan(xs, delta, A = -exp(A_logs), B, C, Ds, dt_projs_bias, softplus)
    out = out_proj(out_norm(cross_merge(y)) * SiLU(z))

At inference on large images the layer runs its Di channels in blocks within a memory budget (memory.py,
docs/memory.md): every step above is per channel except the x_proj reduction (accumulated over blocks) and
out_norm (LayerNorm statistics accumulated over blocks, then applied block by block).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.backends import ScanBackend, check_backend_name, get_backend
from .memory import DEFAULT_MEMORY_BUDGET, block_plan, release_freed_memory
from .shuffle import permute_positions

K = 4  # scan directions


class Unused(nn.Module):
    """Holds a tensor that the published checkpoints carry but no computation reads (a buffer, so it is
    saved, loaded and moved with the model, yet never trained). `weight` (and `bias` if given)."""

    def __init__(self, *shape: int, bias: int | None = None):
        super().__init__()
        self.register_buffer("weight", torch.zeros(shape))
        if bias is not None:
            self.register_buffer("bias", torch.zeros(bias))


class NormedTokens:
    """LayerNorm(tokens) that is never materialised (bounded-memory inference, docs/memory.md). Its projections
    are computed from the raw tokens, LayerNorm folded in:

        W (gamma (x - mean) rstd + beta) = rstd ((W gamma) x - mean (W gamma) 1) + W beta

    (mean and rstd per position, computed once), so a projection costs one plain matmul plus a per-position
    fix-up on its output, and no (B, H, W, C) normalised copy exists. tokens (B, H, W, C), norm over C."""

    def __init__(self, tokens: Tensor, norm: nn.LayerNorm):
        self.tokens, self.norm = tokens, norm
        self.shape, self.device, self.dtype = tokens.shape, tokens.device, tokens.dtype
        batch, H, W, C = tokens.shape
        var, mean = torch.var_mean(tokens.reshape(batch, 1, H * W, C).float(), dim=-1, correction=0)
        self.mean, self.rstd = mean, torch.rsqrt(var + norm.eps)  # (B, 1, L) each

    def new_zeros(self, *size, **kwargs) -> Tensor:
        return self.tokens.new_zeros(*size, **kwargs)

    def new_empty(self, *size, **kwargs) -> Tensor:
        return self.tokens.new_empty(*size, **kwargs)

    def project(self, weight: Tensor) -> Tensor:
        """(Do, C) -> LayerNorm(tokens) @ weight.T, channel-first (B, Do, H, W)."""
        batch, H, W, _ = self.shape
        scaled = weight * self.norm.weight  # W gamma, (Do, C)
        out = channel_first(self.tokens, scaled).view(batch, -1, H * W)  # (B, Do, L)
        out.addcmul_(scaled.sum(1)[None, :, None], self.mean, value=-1.0).mul_(self.rstd)
        out.add_((weight @ self.norm.bias)[None, :, None])
        return out.view(batch, -1, H, W)


def channel_first(tokens: Tensor | NormedTokens, weight: Tensor) -> Tensor:
    """A bias-free Linear on channel-last tokens, produced channel-first: (B, H, W, C), (Do, C) -> (B, Do, H, W).

    Same numbers as Linear(tokens).permute(0, 3, 1, 2); BLAS reads the tokens transposed, so the depthwise
    conv and the cross scan get contiguous (B, Do, H, W) maps without a transposing copy.
    """
    if isinstance(tokens, NormedTokens):
        return tokens.project(weight)
    batch, H, W, C = tokens.shape
    tokens_t = tokens.reshape(batch, H * W, C).transpose(1, 2)  # (B, C, L), a view
    return torch.bmm(weight.expand(batch, -1, -1), tokens_t).view(batch, -1, H, W)


def layer_norm_dim1(y: Tensor, norm: nn.LayerNorm) -> Tensor:
    """LayerNorm over dim 1 of (B, Di, L) with `norm`'s weight, bias and eps (biased variance, as LayerNorm)."""
    var, mean = torch.var_mean(y, dim=1, correction=0, keepdim=True)
    return (y - mean) * torch.rsqrt(var + norm.eps) * norm.weight[:, None] + norm.bias[:, None]


class SS2DBase(nn.Module):
    """Parameters shared by SS2D and ST-SS2D, with the official key names, and the scan/merge/output steps.

    in_proj (2Di, C); in_style_proj (Di, C); conv2d depthwise 3x3; x_proj_weight (K, x_proj_rows, Di);
    dt_projs_weight (K, Di, R); dt_projs_bias (K, Di); A_logs (K*Di, N); Ds (K*Di,); out_norm; out_proj (C, Di).
    `scan_backend` (a name of mambast.ops.BACKENDS) and `memory_budget` (bytes or None) are set model-wide by
    `MambaST.set_scan_backend` / `set_memory_budget`.
    """

    scan_backend: str = "auto"
    memory_budget: int | None = DEFAULT_MEMORY_BUDGET

    def __init__(self, d_model: int, d_state: int, d_inner: int, dt_rank: int, x_proj_rows: int,
                 style_proj: bool):
        super().__init__()
        self.d_state, self.d_inner, self.dt_rank = d_state, d_inner, dt_rank
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.in_style_proj = (nn.Linear(d_model, d_inner, bias=False) if style_proj
                              else Unused(d_inner, d_model))
        self.conv2d = nn.Conv2d(d_inner, d_inner, 3, padding=1, groups=d_inner, bias=True)
        if style_proj:  # ST-SS2D: delta and B from the style, (K, R + N, Di)
            self.style_proj_weight = nn.Parameter(torch.empty(K, dt_rank + d_state, d_inner))
        self.x_proj_weight = nn.Parameter(torch.empty(K, x_proj_rows, d_inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(K, d_inner, dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(K, d_inner))
        self.A_logs = nn.Parameter(torch.empty(K * d_inner, d_state))
        self.Ds = nn.Parameter(torch.empty(K * d_inner))
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        self.reset_mamba_parameters()

    @torch.no_grad()
    def reset_mamba_parameters(self, dt_min: float = 1e-3, dt_max: float = 1e-1, dt_floor: float = 1e-4):
        """The usual Mamba init: S4D-real A, dt bias = softplus^-1(log-uniform dt), D = 1."""
        n = torch.arange(1, self.d_state + 1, dtype=torch.float32)
        self.A_logs.copy_(torch.log(n).repeat(K * self.d_inner, 1))
        self.Ds.fill_(1.0)
        std = self.dt_rank ** -0.5
        self.dt_projs_weight.uniform_(-std, std)
        dt = torch.exp(torch.rand(K, self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        bound = 1 / math.sqrt(self.d_inner)  # nn.Linear's default, per direction
        self.x_proj_weight.uniform_(-bound, bound)
        if hasattr(self, "style_proj_weight"):
            self.style_proj_weight.uniform_(-bound, bound)

    # ---- configuration -------------------------------------------------------------------------------

    def set_scan_backend(self, backend: str) -> None:
        """Use `backend` (a name of mambast.ops.BACKENDS, "auto" resolved per device) for scan and cross scan."""
        self.scan_backend = check_backend_name(backend)

    def backend(self, device: torch.device) -> ScanBackend:
        """The backend object this layer runs on `device` (scan, low-rank scan, cross scan/merge)."""
        return get_backend(self.scan_backend, device.type)

    def block_plan(self, tokens: Tensor) -> tuple[int, bool] | None:
        """(channels per block, keep merged y) for bounded-memory inference on tokens (B, H, W, C), or None
        to run all channels at once (autograd on, no budget, or the whole layer fits; see memory.py)."""
        if torch.is_grad_enabled() or torch.is_autocast_enabled(tokens.device.type):  # blocks: float32 only
            return None
        batch, H, W, C = tokens.shape
        return block_plan(batch * H * W, self.d_inner, C, self.dt_rank, self.d_state, K, self.memory_budget)

    # ---- the steps -----------------------------------------------------------------------------------

    def local_features(self, x: Tensor) -> Tensor:
        """(B, Di, H, W) -> SiLU(DWConv3x3(x)), (B, Di, H, W)."""
        return F.silu(self.conv2d(x))

    def features(self, tokens: Tensor, weight: Tensor, channels: slice, order: Tensor | None = None) -> Tensor:
        """SiLU(DWConv3x3(tokens @ weight.T)) for the conv channels `channels`: tokens (B, H, W, C), weight
        (dc, C) -> (B, dc, H, W); positions reordered by `order` (the style shuffle) before the conv."""
        x = permute_positions(channel_first(tokens, weight), order)  # (B, dc, H, W)
        conv_w, conv_b = self.conv2d.weight[channels], self.conv2d.bias[channels]
        return F.silu(F.conv2d(x, conv_w, conv_b, padding=1, groups=x.shape[1]))

    def scan(self, u: Tensor, dt_low: Tensor, B: Tensor, C: Tensor, backend: ScanBackend,
             channels: slice = slice(None), out: Tensor | None = None) -> Tensor:
        """The K-direction selective scan of the conv channels `channels` (all by default).

        u: (B, K, dc, L) scanned sequence; dt_low: (B, K, R, L); B, C: (B, K, N, L); `out`: where to write
        the result (may be u, see ScanBackend.scan_lowrank) -> y (B, K, dc, L).
        """
        if torch.is_autocast_enabled(u.device.type):  # bf16/fp16 run: the scan reads float32, state float32
            with torch.autocast(u.device.type, enabled=False):  # (the native CPU kernel runs as in fp32)
                return self.scan(*(t.float() for t in (u, dt_low, B, C)), backend, channels)
        batch, _, dc, L = u.shape
        per_direction = (K, self.d_inner)
        A_logs = self.A_logs.view(*per_direction, self.d_state)[:, channels].reshape(K * dc, self.d_state)
        y = backend.scan_lowrank(  # delta = dt_projs_weight[k] @ dt_low[:, k], (B, K * dc, L)
            u.reshape(batch, K * dc, L),
            dt_low,
            self.dt_projs_weight[:, channels].reshape(K * dc, self.dt_rank),
            -torch.exp(A_logs.float()),
            B,
            C,
            D=self.Ds.view(per_direction)[:, channels].reshape(-1).float(),
            delta_bias=self.dt_projs_bias[:, channels].reshape(-1).float(),
            delta_softplus=True,
            out=None if out is None else out.view(batch, K * dc, L),
        )
        return y.view(batch, K, dc, L)

    def output(self, y: Tensor, z: Tensor, backend: ScanBackend) -> Tensor:
        """Merge the directions, gate by the content: y (B, K, Di, L), z (B, Di, H, W) -> (B, H, W, C).

        out_norm(y) * SiLU(z) is computed channel-first (LayerNorm over Di = dim 1), and out_proj reads the
        result transposed, so no channel-last copy of the (Di, L) maps is made.
        """
        batch, d_inner, H, W = z.shape
        merged = backend.cross_merge(y, H, W)  # (B, Di, L)
        y = layer_norm_dim1(merged, self.out_norm) * F.silu(z.view(batch, d_inner, H * W))
        return torch.matmul(y.transpose(1, 2), self.out_proj.weight.t()).view(batch, H, W, -1)

    def scan_inplace(self) -> bool:
        """Whether the scan may overwrite its input u (a fresh cross scan read by nothing else): no autograd."""
        return not torch.is_grad_enabled()

    # ---- bounded memory (inference) ------------------------------------------------------------------

    def blocks(self, size: int) -> list[slice]:
        """The channel blocks [0, size), [size, 2 size), ... of Di."""
        return [slice(i, min(i + size, self.d_inner)) for i in range(0, self.d_inner, size)]

    def projections_blocked(self, streams, weights: list[Tensor], splits: list[str], block: int,
                            backend: ScanBackend, like: Tensor, kept: Tensor | None = None) -> list[Tensor]:
        """Sum x_proj-style projections over channel blocks, straight into the layouts the scan reads.

        streams[i](channels) -> (B, dc, H, W), the conv features of stream i for those channels (cross-scanned
        here); weights[i] (K, rows_i, Di), its rows split as splits[i] says: "dt" R rows, "B"/"C" N rows each
        (e.g. "dt B C"). `kept` (B, Di, L), optional: where the LAST stream's features are stored, so that the
        scan need not recompute them. Returns one (B, K, rows, L) tensor per split, in order: dt_low contiguous,
        B/C in `backend.bc_buffer`'s layout. No (B, K, Di, L) tensor and no per-block temporary of this size.
        """
        batch, H, W, _ = like.shape
        sizes = [[self.dt_rank if name == "dt" else self.d_state for name in names.split()] for names in splits]
        outs = [like.new_zeros(batch, K, self.dt_rank, H * W) if name == "dt"
                else backend.bc_buffer((batch, K, self.d_state, H * W), like)
                for names in splits for name in names.split()]
        for channels in self.blocks(block):
            at = 0
            for i, (stream, weight, rows) in enumerate(zip(streams, weights, sizes, strict=True)):
                maps = stream(channels)  # (B, dc, H, W)
                if kept is not None and i == len(streams) - 1:
                    kept[:, channels] = maps.view(batch, -1, H * W)
                xs = backend.cross_scan(maps)  # (B, K, dc, L)
                del maps
                dc, L = xs.shape[2], xs.shape[3]
                xs = xs.view(batch * K, dc, L)
                start = 0
                for n in rows:
                    w = weight[:, start:start + n, channels].expand(batch, -1, -1, -1).reshape(batch * K, n, dc)
                    outs[at].view(batch * K, n, L).baddbmm_(w, xs)  # += W[k] @ xs[b, k]
                    start, at = start + n, at + 1
        release_freed_memory()
        return outs

    def output_blocked(self, u_of, dt_low: Tensor, B: Tensor, C: Tensor, gate_tokens: Tensor, block: int,
                       backend: ScanBackend, kept: Tensor | None = None) -> Tensor:
        """`scan` + `output` one block of channels at a time, without any (B, Di, L) tensor but `kept`.

        u_of(channels) -> the conv features of the scanned stream for those channels (B, dc, H, W), recomputed
        per call, unless `kept` (B, Di, L) holds them (`projections_blocked` stored them there; each block's
        merged y then replaces its features in place); dt_low (B, K, R, L), B and C (B, K, N, L) as `scan`;
        gate_tokens (B, H, W, C) the content the gate z is projected from. -> (B, H, W, C).

        Every block is scanned once. out_norm's statistics over Di are accumulated per position while the
        blocks are scanned (mean and M2, Chan's pairwise update, float32). With `kept`, a second pass
        normalises each kept block, gates it and accumulates out_proj. Without it the normalisation is
        factored out of the sum (mean and rstd are per position, so they commute with out_proj):

            out = rstd * sum_b W_b (w_b y_b g_b)  +  sum_b W_b ((bias_b - mean * rstd * w_b) g_b),

        g = SiLU(z), W_b = out_proj's columns of block b; the first sum is accumulated with the scan, the
        second needs only z, so no block is scanned twice.
        """
        batch, H, W, _ = gate_tokens.shape
        L = H * W
        w_all, b_all = self.out_norm.weight, self.out_norm.bias
        z_rows = self.in_proj.weight[self.d_inner:]
        out = gate_tokens.new_zeros(batch, L, self.out_proj.weight.shape[0])

        def gate(channels: slice) -> Tensor:  # SiLU(z) of the block, (B, dc, L)
            return F.silu(channel_first(gate_tokens, z_rows[channels]).view(batch, -1, L))

        def project(y: Tensor, channels: slice) -> None:  # out += y^T @ out_proj[:, block]^T
            out.baddbmm_(y.transpose(1, 2), self.out_proj.weight[:, channels].t().expand(batch, -1, -1))

        mean = gate_tokens.new_zeros(batch, 1, L, dtype=torch.float32)
        m2 = torch.zeros_like(mean)
        count = 0
        for channels in self.blocks(block):
            maps = kept[:, channels].view(batch, -1, H, W) if kept is not None else u_of(channels)
            u = backend.cross_scan(maps)
            del maps
            y = backend.cross_merge(self.scan(u, dt_low, B, C, backend, channels, out=u), H, W)  # (B, dc, L)
            del u
            var_b, mean_b = torch.var_mean(y.float(), dim=1, correction=0, keepdim=True)  # (B, 1, L)
            n = y.shape[1]
            delta = mean_b - mean
            mean.add_(delta, alpha=n / (count + n))
            m2.add_(var_b * n).add_(delta.square_(), alpha=count * n / (count + n))
            count += n
            if kept is not None:
                kept[:, channels] = y
            else:
                project(y.mul_(w_all[channels, None]).mul_(gate(channels)).to(out.dtype), channels)
        rstd = torch.rsqrt(m2.div_(count).add_(self.out_norm.eps))  # (B, 1, L)
        if kept is None:
            out.mul_(rstd.transpose(1, 2))
            shift = mean.mul_(rstd)  # mean * rstd, (B, 1, L)
        for channels in self.blocks(block):
            w, b = w_all[channels, None], b_all[channels, None]
            if kept is not None:
                y = (kept[:, channels] - mean) * rstd * w + b
            else:
                y = b - shift * w  # (B, dc, L)
            project(y.to(out.dtype).mul_(gate(channels)), channels)
        release_freed_memory()
        return out.view(batch, H, W, -1)

    def kept_buffer(self, plan: tuple[int, bool], like: Tensor) -> Tensor | None:
        """The (B, Di, L) buffer for the scanned stream's features, then its merged y, when `plan` keeps it."""
        batch, H, W, _ = like.shape
        return like.new_empty(batch, self.d_inner, H * W) if plan[1] else None


class SS2D(SS2DBase):
    """Self selective scan (encoders): delta, B, C and the scanned sequence all come from x."""

    def __init__(self, d_model: int, d_state: int, d_inner: int, dt_rank: int):
        super().__init__(d_model, d_state, d_inner, dt_rank, dt_rank + 2 * d_state, style_proj=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        backend = self.backend(x.device)
        plan = self.block_plan(x)
        if plan is not None:
            return self.forward_blocked(x, plan, backend)
        x, z = channel_first(x, self.in_proj.weight).chunk(2, dim=1)  # (B, Di, H, W) each
        xs = backend.cross_scan(self.local_features(x))  # (B, K, Di, L)
        x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight)  # (B, K, R + 2N, L)
        dt_low, B, C = x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=2)
        y = self.scan(xs, dt_low, B, C, backend, out=xs if self.scan_inplace() else None)
        return self.output(y, z, backend)

    def forward_blocked(self, x: Tensor, plan: tuple[int, bool], backend: ScanBackend) -> Tensor:
        """`forward` one block of channels at a time (inference; see `output_blocked`): x (B, H, W, C)."""
        x_rows = self.in_proj.weight[:self.d_inner]

        def x_of(channels: slice) -> Tensor:  # (B, dc, H, W)
            return self.features(x, x_rows[channels], channels)

        kept = self.kept_buffer(plan, x)
        dt_low, B, C = self.projections_blocked([x_of], [self.x_proj_weight], ["dt B C"], plan[0], backend, x,
                                                kept)
        return self.output_blocked(x_of, dt_low, B, C, x, plan[0], backend, kept)
