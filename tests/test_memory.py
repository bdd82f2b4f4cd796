"""Bounded-memory inference (docs/memory.md): channel blocks in SS2D/ST-SS2D and CNN-decoder tiles give the
all-at-once outputs, are chosen from the memory budget, and never run under autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import require
from test_model import lively_

from mambast import MambaST, MambaSTConfig, UserError
from mambast.model.memory import block_plan
from mambast.model.ss2d import SS2DBase
from mambast.ops import scan_cpu

# d_model 128, d_inner 256 (the first bundled model's architecture): the block plans below are worked out for it
SMALL = MambaSTConfig(d_model=128, d_state=16, content_layers=2, style_layers=2, decoder_layers=2,
                      cnn_channels=(128, 64, 32), drop_path=0.0)


@pytest.fixture(scope="module")
def small():
    return lively_(MambaST(SMALL), seed=2).eval()


def _plans(model: MambaST, budget: int | None, tokens: int) -> set:
    cfg = model.config
    layers = [m for m in model.modules() if isinstance(m, SS2DBase)]
    probe = torch.empty(1, 1, tokens, cfg.d_model)
    with torch.inference_mode():
        for layer in layers:
            layer.memory_budget = budget
        plans = {layer.block_plan(probe) for layer in layers}
    for layer in layers:
        del layer.memory_budget
    assert plans == {block_plan(tokens, cfg.d_inner, cfg.d_model, cfg.resolved_dt_rank, cfg.d_state, 4, budget)}
    return plans


@pytest.mark.parametrize("budget,expect", [(1, (16, False)), (800_000, (48, False)), (1_000_000, (32, True)),
                                           (1_300_000, (64, True))])
def test_blocked_equals_all_at_once(small, budget, expect):
    """Blocks of 16/32/48/64 of the 256 channels (48: a partial last block), features recomputed or kept: the
    outputs of the unblocked model (batch of 2, 14 x 10 tokens, shuffle on), to float rounding."""
    g = torch.Generator().manual_seed(0)
    c, s = torch.rand(2, 3, 112, 80, generator=g), torch.rand(1, 3, 96, 96, generator=g)
    assert _plans(small, budget, 2 * 14 * 10) == {expect}
    with torch.inference_mode():
        small.set_memory_budget(None)
        ref = small(c, s, seed=3)
        small.set_memory_budget(budget)
        out = small(c, s, seed=3)
    small.set_memory_budget()
    assert ref.abs().max() > 0.05
    assert (out - ref).abs().max() <= 1e-5


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_blocked_on_each_cpu_backend(small, backend):
    if backend == "cpu":
        require(scan_cpu.native_available(), f"native CPU scan unavailable: {scan_cpu.unavailable_reason()}")
    c, s = torch.rand(1, 3, 48, 64), torch.rand(1, 3, 48, 64)
    small.set_scan_backend(backend)
    try:
        with torch.inference_mode():
            ref = small.set_memory_budget(None)(c, s, shuffle=False)
            out = small.set_memory_budget(1)(c, s, shuffle=False)
    finally:
        small.set_scan_backend("auto").set_memory_budget()
    assert (out - ref).abs().max() <= 1e-5


def test_cnn_decoder_tiles_equal_the_whole_map(small):
    """20 x 27 tokens in 8 x 8 tiles with the receptive halo: the same pixels, at every tile seam."""
    decoder = small.cnn_decoder
    assert decoder.receptive_halo() == 4  # 1 + 4/2 + 2/4 + 2/8 tokens of 3x3 convs, rounded up
    tokens = torch.randn(1, 128, 20, 27, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        decoder.memory_budget = None
        ref = decoder(tokens)
        decoder.memory_budget = 1
        tiled = decoder(tokens)
        too_small = decoder.forward_tiles(tokens, 8, 1)  # a halo below the receptive radius is visibly wrong
    small.set_memory_budget()
    assert tiled.shape == ref.shape == (1, 3, 160, 216)
    assert (tiled - ref).abs().max() <= 1e-5
    assert (too_small - ref).abs().max() > 1e-3


def test_autograd_never_blocks(small):
    """Training runs all channels at once whatever the budget (the blocked path is inference-only)."""
    layer = small.mamba.encoder_c.layers[0].self_attention
    tokens = torch.rand(1, 6, 6, small.config.d_model)
    layer.memory_budget = 1
    try:
        with torch.inference_mode():
            assert layer.block_plan(tokens) is not None
        with torch.enable_grad():
            assert layer.block_plan(tokens) is None
    finally:
        layer.memory_budget = type(layer).memory_budget


def test_budget_is_validated_and_model_wide(small):
    for bad in (0, -5, True, 1.5, "1GB"):
        with pytest.raises(UserError, match="memory budget"):
            small.set_memory_budget(bad)
    small.set_memory_budget(12345)
    layers = [m for m in small.modules() if isinstance(m, SS2DBase)]
    assert len(layers) == 6 and all(m.memory_budget == 12345 for m in layers)
    assert small.cnn_decoder.memory_budget == 12345
    small.set_memory_budget()
    assert all(m.memory_budget == type(m).memory_budget for m in layers)


def test_plan_grows_blocks_with_budget_and_keeps_y_only_when_it_fits():
    tokens = 187_500  # a 4000 x 3000 photo, paper model (Di 1024, C 512, R 32, N 16)
    assert block_plan(tokens, 1024, 512, 32, 16, 4, None) is None
    assert block_plan(tokens, 1024, 512, 32, 16, 4, 10**12) is None  # fits: all at once
    assert block_plan(tokens, 1024, 512, 32, 16, 4, 768 * 2**20) == (32, False)  # the default budget
    small_plan = block_plan(tokens, 1024, 512, 32, 16, 4, 2**29)
    large_plan = block_plan(tokens, 1024, 512, 32, 16, 4, 2**31)
    assert small_plan[0] % 16 == 0 and small_plan[0] < large_plan[0] <= 1024
    assert not small_plan[1]


def test_decoder_overwrite_is_exact_and_only_where_asked(small):
    """fuse(overwrite=True) writes the residual stream and then its final LayerNorm into the caller's content
    tokens (two token maps less at 12 MP) with bit-identical results; without it the tokens are untouched;
    autograd refuses it."""
    from mambast.inference import Controls, Stylizer

    g = torch.Generator().manual_seed(1)
    c, s = torch.rand(1, 3, 64, 96, generator=g), torch.rand(1, 3, 64, 96, generator=g)
    with torch.inference_mode():
        tokens, style = small.encode_content(c), small.encode_style(s)
        kept = tokens.clone()
        ref = small.fuse(tokens, style, torch.Generator().manual_seed(4))
        assert torch.equal(tokens, kept)
        out = small.fuse(tokens, style, torch.Generator().manual_seed(4), overwrite=True)
    assert torch.equal(out, ref)
    assert not torch.equal(tokens, kept)  # consumed
    assert out.data_ptr() == tokens.data_ptr()  # the final norm too (layer_norm_): no second token map
    with pytest.raises(ValueError, match="inference"):
        small.fuse(small.encode_content(c), small.encode_style(s).detach(), overwrite=True)
    engine = Stylizer(small, size=None)
    encoded = engine.encode_content(c)
    before = encoded.tokens.clone()
    first = engine.render(encoded, [style], Controls(seed=2))
    assert torch.equal(encoded.tokens, before)  # render keeps a caller's encoding reusable
    assert torch.equal(engine.render(encoded, [style], Controls(seed=2)), first)
    assert torch.equal(engine.stylize_tensor(c, [style], Controls(seed=2)), first)  # one-shot call consumes


def test_lazy_layer_norm_projection_equals_the_materialised_one():
    """NormedTokens: LayerNorm folded into the projection (tokens with a mean offset, as residual streams
    have) equals projecting the normalised map."""
    from torch import nn

    from mambast.model.ss2d import NormedTokens, channel_first

    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(2, 5, 7, 12, generator=g) * 3 + 5, torch.randn(9, 12, generator=g)
    norm = nn.LayerNorm(12)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5, generator=g), norm.bias.uniform_(-0.5, 0.5, generator=g)
        lazy = NormedTokens(x, norm)
        out, ref = channel_first(lazy, w), channel_first(norm(x), w)
    assert out.shape == ref.shape == (2, 9, 5, 7)
    assert (out - ref).abs().max() <= 1e-5



def _live_tensor_bytes(floor: int) -> int:
    """Bytes of the distinct tensor storages of at least `floor` bytes that Python code holds right now, less
    the parameters and buffers of every module."""
    import gc
    import warnings
    import weakref

    objects = gc.get_objects()
    with warnings.catch_warnings():  # isinstance on a deprecated torch alias (torch.distributed.reduce_op) warns
        warnings.simplefilter("ignore", FutureWarning)
        modules = [m for m in objects  # a weak proxy whose model is gone raises on isinstance: left out
                   if type(m) not in weakref.ProxyTypes and isinstance(m, torch.nn.Module)]
    weights = {t.untyped_storage().data_ptr() for m in modules
               for t in (*m.parameters(recurse=False), *m.buffers(recurse=False))}
    storages = {}
    for obj in objects:
        if type(obj) is torch.Tensor:
            storage = obj.untyped_storage()
            if storage.nbytes() >= floor and storage.data_ptr() not in weights:
                storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def test_command_line_holds_no_more_than_the_one_shot_engine(small, tmp_path, monkeypatch):
    """Issue 25: `mambast stylize --size 0` (the folder runner) held the content tokens, the padded image and
    the style tokens twice each (batch copies of a batch of one), the style image at the content's size
    through the whole render and a residual stream apart from the content tokens: about 1.5 GB more than
    `Stylizer.stylize` at 12 MP (3.8-4.2 GB against 2.5 GiB). Tensors alive at the entry of every ST-SS2D
    layer and of the CNN decoder (those of at least one token map, weights left out): the command holds no
    more than the engine's one-shot call."""
    import gc

    from PIL import Image

    from mambast.cli import main
    from mambast.inference import Stylizer
    from mambast.io.native import save_native
    from mambast.model.cnn_decoder import CNNDecoder
    from mambast.model.st_ss2d import STSS2D

    rng = np.random.default_rng(0)
    content, style = tmp_path / "c.png", tmp_path / "s.png"
    Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(content)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(style)
    token_map = 8 * 12 * small.config.d_model * 4  # bytes
    peak = [0]

    def counting(cls):
        original = cls.forward

        def forward(self, *args, **kwargs):
            peak[0] = max(peak[0], _live_tensor_bytes(token_map))
            return original(self, *args, **kwargs)
        monkeypatch.setattr(cls, "forward", forward)

    counting(STSS2D)
    counting(CNNDecoder)
    gc.collect()  # what earlier tests left in reference cycles is not either side's (it failed after test_jobs)
    ref = np.asarray(Stylizer(small, size=0).stylize(content, style, seed=1))
    engine_peak, peak[0] = peak[0], 0
    gc.collect()
    assert main(["stylize", "--checkpoint", str(save_native(small, tmp_path / "small.safetensors")),
                 "--content", str(content), "--style", str(style), "--output", str(tmp_path / "out"),
                 "--size", "0", "--seed", "1", "--quiet"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "c_stylized_s.png")), ref)
    assert engine_peak >= 3 * token_map  # content and style tokens and the block's normed input, at least
    assert peak[0] <= engine_peak, f"command {peak[0] / token_map:.1f} token maps, engine {engine_peak / token_map:.1f}"
