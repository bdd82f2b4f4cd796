"""Training data, presets, schedules and checkpoint files (no model training here: fast)."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import torch
from PIL import Image

from mambast.errors import UserError
from mambast.fs import WriteError
from mambast.train.checkpoint import (
    is_run_dir,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    write_run_config,
)
from mambast.train.config import TrainConfig, train_preset
from mambast.train.data import PairStream, StepSampler, find_images
from mambast.train.optim import lr_at


def _write_images(folder, n, size=(40, 36), seed=0, ext="png"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    for i in range(n):
        sub = folder / ("nested" if i % 2 else "")
        sub.mkdir(exist_ok=True)
        Image.fromarray((rng.rand(size[1], size[0], 3) * 255).astype(np.uint8)).save(sub / f"im{i}.{ext}")
    return folder


def test_find_images_nested_and_errors(tmp_path):
    _write_images(tmp_path / "c", 3)
    (tmp_path / "c" / "notes.txt").write_text("not an image")
    assert [p.name for p in find_images(tmp_path / "c", "content")] == ["im0.png", "im2.png", "im1.png"]
    with pytest.raises(UserError, match="^content_dir .*no such folder"):
        find_images(tmp_path / "missing", "content")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="^style_dir: .*no images"):
        find_images(tmp_path / "empty", "style")


def test_find_images_leaves_out_the_run_folder(tmp_path):
    """A run folder inside the content folder: its sample PNGs are never training data."""
    _write_images(tmp_path / "c", 2)
    _write_images(tmp_path / "c" / "run" / "samples", 2)
    assert len(find_images(tmp_path / "c", "content")) == 4
    found = find_images(tmp_path / "c", "content", exclude=tmp_path / "c" / "run")
    assert [p.name for p in found] == ["im0.png", "im1.png"]


def test_stream_is_deterministic_and_uses_the_paper_transform(tmp_path):
    c = find_images(_write_images(tmp_path / "c", 3, seed=1), "content")
    s = find_images(_write_images(tmp_path / "s", 2, seed=2), "style")
    a, b = PairStream(c, s, 32, 48, seed=5), PairStream(c, s, 32, 48, seed=5)
    other = PairStream(c, s, 32, 48, seed=6)
    for p in (0, 1, 7):  # position 7 is in the third content epoch
        x, y = a[p], b[p]
        assert x["content"].shape == (3, 32, 32) and x["style"].shape == (3, 32, 32)
        assert torch.equal(x["content"], y["content"]) and torch.equal(x["style"], y["style"])
        assert 0.0 <= x["content"].min() and x["content"].max() <= 1.0
    assert any(not torch.equal(a[p]["content"], other[p]["content"]) for p in range(3))
    # every content image appears once per epoch (a permutation), epochs are reshuffled
    firsts = {tuple(a[p]["content"][:, 0, 0].tolist()) for p in range(3)}
    assert len(firsts) == 3
    # load_size == size: the whole image resized to size x size (aspect not kept), nothing cropped
    whole = PairStream(c, s, 32, 32, seed=5)
    first = c[int(whole._perm("content", 0)[0])]
    expect = np.asarray(Image.open(first).convert("RGB").resize((32, 32), Image.BILINEAR), dtype=np.float32)
    torch.testing.assert_close(whole[0]["content"], torch.from_numpy(expect / 255).permute(2, 0, 1))


def test_step_sampler_shards_ranks():
    def take(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    r0 = take(StepSampler(0, 2, rank=0, world_size=2), 6)
    r1 = take(StepSampler(0, 2, rank=1, world_size=2), 6)
    assert r0 == [0, 1, 4, 5, 8, 9] and r1 == [2, 3, 6, 7, 10, 11]
    assert take(StepSampler(2, 2, rank=0, world_size=2), 2) == [8, 9]  # resume at step 2
    assert take(StepSampler(3, 4), 4) == [12, 13, 14, 15]


def test_corrupt_images_are_skipped_and_reported(tmp_path):
    folder = _write_images(tmp_path / "c", 2)
    (folder / "garbage.jpg").write_bytes(b"this is not a jpeg")
    (folder / "empty.png").write_bytes(b"")
    good = folder / "im0.png"
    (folder / "truncated.png").write_bytes(good.read_bytes()[:200])
    styles = find_images(_write_images(tmp_path / "s", 1), "style")
    stream = PairStream(find_images(folder, "content"), styles, 32, 40, seed=0)
    bad = set()
    for p in range(5):  # one content epoch: every file is tried once
        item = stream[p]
        assert item["content"].shape == (3, 32, 32) and torch.isfinite(item["content"]).all()
        bad.update(item["bad"])
    reasons = {entry.split(": ", 1)[0].rsplit("/", 1)[-1]: entry.split(": ", 1)[1] for entry in bad}
    assert set(reasons) == {"garbage.jpg", "empty.png", "truncated.png"}
    assert "empty file" in reasons["empty.png"] and all(reasons.values())  # each with its reason


def test_all_unreadable_is_a_clear_error(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x.png").write_bytes(b"nope")
    styles = find_images(_write_images(tmp_path / "s", 1), "style")
    with pytest.raises(UserError, match="unreadable"):
        PairStream(find_images(tmp_path / "c", "content"), styles, 32, 40, seed=0)[0]


def test_paper_preset_is_the_published_recipe():
    cfg = train_preset("paper")
    assert (cfg.size, cfg.load_size, cfg.batch_size, cfg.lr, cfg.max_iter) == (256, 512, 8, 1e-4, 160_000)
    assert cfg.schedule == "constant" and cfg.warmup_iters == 0 and cfg.style_shuffle
    assert cfg.loss_weights == {"content": 7.0, "style": 10.0, "identity1": 70.0, "identity2": 1.0}
    assert cfg.model["d_model"] == 512 and cfg.model["drop_path"] == 0.1
    tiny = train_preset("tiny", size=32, load_size=48)
    assert tiny.model["d_model"] == 64 and tiny.size == 32
    back = TrainConfig.from_dict(json.loads(json.dumps(tiny.to_dict())))
    assert back == tiny
    with pytest.raises(UserError, match="unknown training preset"):
        train_preset("huge")
    with pytest.raises(UserError, match="multiple of the patch size"):
        train_preset("tiny", size=36, load_size=48)


def test_resume_refuses_changed_settings(tmp_path):
    from mambast.cli.train import build_config

    cfg = train_preset("tiny", size=32, load_size=48)
    write_run_config(tmp_path, cfg.to_dict())
    assert is_run_dir(tmp_path) and not is_run_dir(tmp_path / "nope")
    from mambast.cli import build_parser

    args = build_parser().parse_args(["train", "--resume", str(tmp_path)])
    args.max_iter = 99
    assert build_config(args).max_iter == 99
    args.lr = 1.0
    with pytest.raises(UserError, match="cannot change lr when resuming"):
        build_config(args)


def test_lr_schedules():
    cfg = train_preset("tiny", max_iter=110, lr=1e-3, warmup_iters=10, schedule="cosine", min_lr=1e-5)
    assert lr_at(0, cfg) == pytest.approx(1e-4) and lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(60, cfg) == pytest.approx((1e-3 + 1e-5) / 2)
    assert lr_at(110, cfg) == pytest.approx(1e-5)
    lin = cfg.replace(schedule="linear")
    assert lr_at(60, lin) == pytest.approx((1e-3 + 1e-5) / 2) and lr_at(35, lin) == pytest.approx(
        1e-3 + (1e-5 - 1e-3) * 0.25)
    assert lr_at(5, train_preset("paper")) == 1e-4


def test_checkpoints_atomic_and_pruned(tmp_path, monkeypatch):
    state = {"step": 0, "model": {"w": torch.arange(3.0)}, "config": {}}
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, {**state, "step": step}, keep_last=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3, 4]
    loaded = load_checkpoint(tmp_path / "checkpoints" / "step_00000004.pt")
    assert loaded["step"] == 4 and torch.equal(loaded["model"]["w"], torch.arange(3.0))

    def crash(obj, f):  # a full disk half-way through writing
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(WriteError, match=r"step_00000005\.pt: cannot write \(no space left on the device\)$"):
        save_checkpoint(tmp_path, {**state, "step": 5}, keep_last=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3, 4]
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    (tmp_path / "checkpoints" / "step_00000009.pt").write_bytes(b"junk")
    with pytest.raises(UserError, match="cannot read training checkpoint"):
        load_checkpoint(tmp_path / "checkpoints" / "step_00000009.pt")
