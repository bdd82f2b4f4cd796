"""The default model's distillation recipe (mambast.train.distill): data stream, losses, exact resume, all in
the one training loop (mambast.train.loop)."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import torch

from mambast.config import MambaSTConfig
from mambast.errors import UserError
from mambast.nets.vgg import load_vgg
from mambast.train.distill import DistillConfig, batch_at, distill, load_cache, load_student

TINY = MambaSTConfig(d_model=32, d_state=4, content_layers=1, style_layers=1, decoder_layers=1,
                     cnn_channels=(16, 8, 8), drop_path=0.0)


def _cache(folder, n=3, size=40):
    rng = np.random.default_rng(0)
    arrays = {k: rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8) for k in ("content", "style", "teacher")}
    folder.mkdir()
    np.savez(folder / "shard_00000.npz", **arrays)
    return arrays


def _cfg(cache_dir, max_iter):
    return DistillConfig(model=TINY.to_dict(), cache_dir=str(cache_dir), crop=32, batch_size=2, max_iter=max_iter,
                         warmup=2, threads=1, save_every=2, log_every=1, amp_bf16=False,
                         weights={"pixel": 1.0, "feature": 0.1, "content": 0.01, "style": 0.01})


def test_batches_are_aligned_crops_of_the_cache(tmp_path):
    arrays = _cache(tmp_path / "cache")
    cache = load_cache(tmp_path / "cache")
    assert cache["content"].shape == (3, 3, 40, 40) and cache["content"].dtype == torch.uint8
    cfg = _cfg(tmp_path / "cache", 1)
    c, s, t = batch_at(cache, 5, cfg.batch_size, cfg.crop, cfg.seed)
    assert c.shape == s.shape == t.shape == (2, 3, 32, 32)
    c2, s2, t2 = batch_at(cache, 5, cfg.batch_size, cfg.crop, cfg.seed)
    assert torch.equal(c, c2) and torch.equal(s, s2) and torch.equal(t, t2)  # a function of (seed, step)
    # the content crop and the teacher crop come from the same pair at the same place
    found = False
    for i in range(3):
        for y in range(9):
            for x in range(9):
                cc = torch.from_numpy(arrays["content"][i, y:y + 32, x:x + 32]).permute(2, 0, 1).float() / 255
                tt = torch.from_numpy(arrays["teacher"][i, y:y + 32, x:x + 32]).permute(2, 0, 1).float() / 255
                found |= bool(torch.equal(cc, c[0]) and torch.equal(tt, t[0]))
    assert found


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
    _cache(tmp_path / "cache")
    vgg = load_vgg(None, allow_random=True)
    distill(_cfg(tmp_path / "cache", 4), tmp_path / "straight", vgg=vgg)
    distill(_cfg(tmp_path / "cache", 2), tmp_path / "resumed", vgg=vgg)
    distill(_cfg(tmp_path / "cache", 4), tmp_path / "resumed", vgg=vgg)
    a, b = load_student(tmp_path / "straight"), load_student(tmp_path / "resumed")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    logged = [line for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert len(logged) == 4 and all(k in logged[-1] for k in ('"pixel"', '"feature"', '"content"', '"style"'))
    # training moved the weights
    fresh = load_student(tmp_path / "straight").state_dict()
    torch.manual_seed(0)
    from mambast.model import MambaST

    init = MambaST(TINY).state_dict()
    assert any(not torch.equal(fresh[k], init[k]) for k in init)


def test_teacher_style_term_is_the_style_loss_against_the_teacher_output(tmp_path):
    """teacher_style = the paper's mean-std style term, relu1_1..relu4_1, with the teacher's output as target;
    zero when the student reproduces the teacher exactly, and it does not change the other terms."""
    from mambast.losses import style_loss
    from mambast.model import MambaST
    from mambast.train.distill import distill_terms

    torch.manual_seed(0)
    vgg = load_vgg(None, allow_random=True)
    model = MambaST(TINY).eval()
    c, s, t = torch.rand(3, 2, 3, 32, 32).unbind(0)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    with torch.no_grad():
        out = model(c, s, generator=gen())
        terms = distill_terms(model, vgg, c, s, t, gen(), paper_terms=False, teacher_style=True)
        plain = distill_terms(model, vgg, c, s, t, gen(), paper_terms=False)
        expected = style_loss(vgg.encode(out, "relu4_1"), vgg.encode(t, "relu4_1"))
        at_teacher = distill_terms(model, vgg, c, s, out, gen(), paper_terms=False, teacher_style=True)
    assert set(terms) == {"pixel", "feature", "teacher_style"} and set(plain) == {"pixel", "feature"}
    torch.testing.assert_close(terms["teacher_style"], expected)
    assert float(terms["teacher_style"]) > 0
    torch.testing.assert_close(terms["pixel"], plain["pixel"])
    torch.testing.assert_close(terms["feature"], plain["feature"])
    assert float(at_teacher["teacher_style"]) < 1e-6 and float(at_teacher["pixel"]) == 0.0


def test_style_colour_jitter_range():
    """p=0 leaves the style alone; hue=0.5 rotates hues anywhere on the circle, hue=0.1 at most a tenth of it."""
    from PIL import Image

    from mambast.train.distill import jitter_colour

    img = Image.new("RGB", (8, 8), (200, 40, 40))  # a saturated red: hue 0
    assert jitter_colour(img, np.random.default_rng(0), p=0.0) is img

    def hue_shifts(hue):
        rng, out = np.random.default_rng(1), []
        for _ in range(200):
            h = np.asarray(jitter_colour(img, rng, p=1.0, hue=hue).convert("HSV"))[0, 0, 0] / 256.0
            out.append(min(h, 1.0 - h))  # distance from red on the hue circle, turns
        return np.array(out)

    narrow, wide = hue_shifts(0.1), hue_shifts(0.5)
    assert narrow.max() <= 0.1 + 0.02 and wide.max() > 0.4


def test_prefetched_batches_train_the_same_weights(tmp_path):
    """The background worker (next step's crops and teacher features made while the step trains) changes only
    when they are computed: the weights equal those of the inline run."""
    from dataclasses import replace

    _cache(tmp_path / "cache")
    vgg = load_vgg(None, allow_random=True)
    cfg = replace(_cfg(tmp_path / "cache", 3), weights={"pixel": 1.0, "feature": 0.1, "teacher_style": 0.1})
    distill(replace(cfg, prefetch=False), tmp_path / "inline", vgg=vgg)
    distill(replace(cfg, prefetch=True), tmp_path / "prefetch", vgg=vgg)
    a, b = load_student(tmp_path / "inline"), load_student(tmp_path / "prefetch")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6, msg=name)


def test_teacher_features_computed_ahead_equal_the_inline_ones():
    """distill_terms with t_feats from teacher_features (in fp32 and under bf16 autocast) = computing them inside."""
    from mambast.model import MambaST
    from mambast.train.distill import distill_terms, teacher_features

    torch.manual_seed(0)
    vgg = load_vgg(None, allow_random=True)
    model = MambaST(TINY).eval()
    c, s, t = torch.rand(3, 2, 3, 32, 32).unbind(0)
    for amp in (False, True):
        with torch.no_grad():
            feats = teacher_features(vgg, t, True, amp)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                inline = distill_terms(model, vgg, c, s, t, torch.Generator().manual_seed(3), False, True)
                ahead = distill_terms(model, vgg, c, s, t, torch.Generator().manual_seed(3), False, True, feats)
        assert len(feats) == 4 and (feats[0].dtype == torch.bfloat16) == amp
        for k in inline:
            torch.testing.assert_close(ahead[k], inline[k], rtol=1e-5, atol=1e-6)


def test_a_distillation_run_is_a_training_run(tmp_path):
    """The run folder is the training loop's (config.json with the distill settings, checkpoints/step_N.pt with
    model, optimizer, step, RNG): mambast.load reads it, a resume with another recipe keeps the run's settings
    (only max_iter changes), the lr follows the linear decay to lr x lr_decay_to, and the legacy layout is
    refused for resuming."""
    import mambast
    from mambast.train.checkpoint import list_checkpoints, load_checkpoint, read_run_config
    from mambast.train.monitor import read_metrics

    _cache(tmp_path / "cache")
    vgg = load_vgg(None, allow_random=True)
    cfg = DistillConfig(**{**asdict(_cfg(tmp_path / "cache", 3)), "lr": 1e-3, "warmup": 1, "lr_decay_to": 0.1})
    result = distill(cfg, tmp_path / "run", vgg=vgg)
    assert result.step == 3 and result.checkpoint == list_checkpoints(tmp_path / "run")[-1][1]
    saved = read_run_config(tmp_path / "run")
    assert saved["distill"]["cache_dir"] == str(tmp_path / "cache") and saved["size"] == 32
    assert saved["schedule"] == "linear" and saved["min_lr"] == pytest.approx(1e-4)
    assert [round(r["lr"], 8) for r in read_metrics(tmp_path / "run")] == [1e-3, 1e-3, 5.5e-4]
    state = load_checkpoint(result.checkpoint)
    torch.testing.assert_close(mambast.load(tmp_path / "run").state_dict(), state["model"], rtol=0, atol=0)
    other = DistillConfig(**{**asdict(cfg), "lr": 5.0, "batch_size": 1, "max_iter": 4})  # only max_iter is taken
    with pytest.warns(UserWarning, match="max_iter 3 -> 4 changes the linear schedule"):
        assert distill(other, tmp_path / "run", vgg=vgg).step == 4
    assert read_run_config(tmp_path / "run")["lr"] == 1e-3 and read_run_config(tmp_path / "run")["batch_size"] == 2
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    torch.save({"model": state["model"], "config": {"model": TINY.to_dict()}}, legacy / "ckpt_0000002.pt")
    torch.testing.assert_close(load_student(legacy).state_dict(), state["model"], rtol=0, atol=0)
    with pytest.raises(UserError, match="earlier layout .* cannot be resumed; start a new run from its weights"):
        distill(cfg, legacy, vgg=vgg)


def test_distill_runs_on_the_given_device(tmp_path):
    """The objective's batches and teacher features live on the run's device (a CPU here; cuda on a GPU)."""
    from mambast.train.distill import DistillObjective
    from mambast.train.distributed import DistContext

    _cache(tmp_path / "cache")
    vgg = load_vgg(None, allow_random=True)
    train_cfg = DistillConfig(**{**asdict(_cfg(tmp_path / "cache", 2)), "device": "cpu"}).train_config()
    objective = DistillObjective(train_cfg, DistContext(device=torch.device("cpu")))
    batches = objective.batches(0, vgg)
    first, second = next(batches), next(batches)
    batches.close()
    c, s, t = batch_at(load_cache(tmp_path / "cache"), 1, 2, 32, 0)
    assert torch.equal(second["content"], c) and torch.equal(second["teacher"], t)
    assert first["content"].device.type == "cpu" and len(first["teacher_features"]) == 3


def test_a_triplet_source_and_a_deadline(tmp_path):
    """distill(..., triplets=f) trains on f(step) instead of the cache (a source returning the cache's crops gives
    the cache run's weights), and stop_at (a passed deadline) stops after the next step with a checkpoint, from
    which the run resumes exactly; without the source that run is refused in one line."""
    from dataclasses import replace

    from mambast.train.checkpoint import list_checkpoints

    _cache(tmp_path / "cache")
    cache, vgg = load_cache(tmp_path / "cache"), load_vgg(None, allow_random=True)
    cfg = _cfg(tmp_path / "cache", 3)
    distill(cfg, tmp_path / "cached", vgg=vgg)
    source = lambda step: batch_at(cache, step, 2, 32, cfg.seed)  # noqa: E731
    own = replace(cfg, cache_dir="")
    assert distill(own, tmp_path / "fn", vgg=vgg, triplets=source, stop_at=0.0).step == 1
    assert [s for s, _ in list_checkpoints(tmp_path / "fn")] == [1]
    with pytest.raises(UserError, match="drew its triplets from a Python function"):
        distill(own, tmp_path / "fn", vgg=vgg)
    assert distill(own, tmp_path / "fn", vgg=vgg, triplets=source).step == 3
    a, b = load_student(tmp_path / "cached"), load_student(tmp_path / "fn")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


class _RunsCode:
    """A pickle payload: unpickling it would call os.system (a weights_only reader must refuse it)."""

    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_distillation_checkpoints_are_never_unpickled(tmp_path, monkeypatch):
    """load_student and a resume read the checkpoints with weights_only=True, as every other torch file: a file
    that holds pickled objects is one UserError line, and its code never runs (the earlier distillation loop read
    them with weights_only=False); the earlier layout's ckpt_*.pt too."""
    monkeypatch.chdir(tmp_path)
    _cache(tmp_path / "cache")
    vgg = load_vgg(None, allow_random=True)
    distill(_cfg(tmp_path / "cache", 2), tmp_path / "run", vgg=vgg)
    ckpt = tmp_path / "run" / "checkpoints" / "step_00000002.pt"
    state = torch.load(ckpt, weights_only=True)
    torch.save({**state, "payload": _RunsCode()}, ckpt)
    with pytest.raises(UserError, match="refused: it holds pickled Python objects"):
        load_student(tmp_path / "run")
    with pytest.raises(UserError, match="refused: it holds pickled Python objects"):
        distill(_cfg(tmp_path / "cache", 4), tmp_path / "run", vgg=vgg)
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    torch.save({"model": {}, "config": {"model": TINY.to_dict()}, "payload": _RunsCode()}, legacy / "ckpt_0000002.pt")
    with pytest.raises(UserError, match="refused: it holds pickled Python objects"):
        load_student(legacy)
    assert not (tmp_path / "PWNED").exists()
