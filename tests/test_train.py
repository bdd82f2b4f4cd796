"""The training loop on CPU with the tiny preset at 32 px: learning, exact resume, run directories."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import mambast
from mambast.errors import UserError
from mambast.train.checkpoint import is_run_dir, load_checkpoint, load_run_model
from mambast.train.config import train_preset
from mambast.train.loop import enable_grad_checkpointing, train
from mambast.train.monitor import read_metrics

pytestmark = [pytest.mark.filterwarnings("ignore:training against a randomly initialised VGG"),
              pytest.mark.usefixtures("one_thread")]


def _folder(path, n, seed, size=(48, 40)):
    path.mkdir(parents=True)
    rng = np.random.RandomState(seed)
    for i in range(n):
        ramp = np.linspace(0, 255, size[0])[None, :, None] * rng.rand(1, 1, 3)
        noise = rng.rand(size[1], size[0], 3) * 60
        Image.fromarray(np.clip(ramp + noise, 0, 255).astype(np.uint8)).save(path / f"im{i}.png")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return _folder(root / "content", 3, 0), _folder(root / "style", 2, 1)


def _cfg(data, **kw):
    content, style = data
    base = dict(content_dir=str(content), style_dir=str(style), allow_random_vgg=True, size=32, load_size=40,
                batch_size=1, workers=0, log_every=1, save_every=0, sample_every=0, seed=3)
    return train_preset("tiny", **{**base, **kw})


def _final_state(run_dir):
    return load_checkpoint(sorted((run_dir / "checkpoints").glob("step_*.pt"))[-1])


def test_tiny_run_lowers_the_loss(tmp_path):
    content = _folder(tmp_path / "c", 1, 5)
    style = _folder(tmp_path / "s", 1, 6)
    cfg = _cfg((content, style), load_size=32, lr=5e-4, max_iter=10, sample_every=5)  # no crop: one pair
    result = train(cfg, tmp_path / "run", progress=False)
    totals = [r["total"] for r in read_metrics(tmp_path / "run")]
    assert len(totals) == 10 and all(np.isfinite(totals))
    assert np.mean(totals[-3:]) < 0.7 * np.mean(totals[:3])  # measured: 0.42 (31.3 -> 12.3)
    assert result.step == 10 and result.checkpoint.name == "step_00000010.pt"
    grid = Image.open(tmp_path / "run" / "samples" / "step_00000010.png")
    assert grid.size == (5 * 32, 32)  # content | style | Ics | Icc | Iss


def test_exact_resume_and_run_directory(tmp_path, data):
    straight = train(_cfg(data, max_iter=4), tmp_path / "a", progress=False)
    half = train(_cfg(data, max_iter=2, workers=1), tmp_path / "b", progress=False)
    assert half.step == 2
    with pytest.raises(UserError, match="already holds a training run"):
        train(_cfg(data, max_iter=4), tmp_path / "b", progress=False)
    resumed = train(_cfg(data, max_iter=4, workers=1), tmp_path / "b", resume=True, progress=False)
    assert straight.step == resumed.step == 4
    a, b = _final_state(tmp_path / "a"), _final_state(tmp_path / "b")
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    exp_a = a["optimizer"]["state"][0]["exp_avg_sq"]
    assert torch.equal(exp_a, b["optimizer"]["state"][0]["exp_avg_sq"])
    assert [r["step"] for r in read_metrics(tmp_path / "b")] == [1, 2, 3, 4]
    assert [r["total"] for r in read_metrics(tmp_path / "a")] == [r["total"] for r in read_metrics(tmp_path / "b")]
    # the checkpoint carries config, step, data position and RNG states; the run dir its config
    assert b["step"] == 4 and b["data"]["position"] == 4 and b["config"]["size"] == 32
    assert b["rng"]["per_rank"][0]["torch"].dtype == torch.uint8
    assert json.loads((tmp_path / "b" / "config.json").read_text())["train"]["max_iter"] == 4
    # inference from a run directory: load_run_model and mambast.load agree with the checkpoint
    assert is_run_dir(tmp_path / "b")
    model = load_run_model(tmp_path / "b")
    assert not model.training
    torch.testing.assert_close(model.state_dict(), b["model"], rtol=0, atol=0)
    via_load = mambast.load(tmp_path / "b")
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(via_load(x, x, seed=0), model(x, x, seed=0), rtol=0, atol=0)
    # fine-tuning starts from the given weights: one step away from them, not from a fresh init
    tuned = train(_cfg(data, max_iter=1, init_from=str(tmp_path / "b"), lr=1e-12), tmp_path / "c", progress=False)
    start = _final_state(tmp_path / "c")["model"]
    assert tuned.step == 1 and json.loads((tmp_path / "c" / "config.json").read_text())["train"]["init_from"]
    torch.testing.assert_close(start, b["model"], rtol=1e-6, atol=1e-9)
    # the architecture comes from the init_from file, whatever the preset asked for
    train(_cfg(data, max_iter=1, init_from=str(tmp_path / "b"), lr=1e-12).replace(
        model={**b["config"]["model"], "d_model": 32}, preset="tiny"), tmp_path / "d", progress=False)
    assert _final_state(tmp_path / "d")["config"]["model"] == b["config"]["model"]


def test_grad_checkpointing_gives_the_same_gradients(data):
    from mambast import MambaST
    from mambast.nets.vgg import load_vgg
    from mambast.train.losses import total_loss, training_losses

    torch.manual_seed(0)
    model = MambaST(_cfg(data).model_config()).train()
    vgg = load_vgg(None, allow_random=True)
    c, s = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)

    def grads():
        model.zero_grad()
        torch.manual_seed(1)  # DropPath masks
        total_loss(training_losses(model, vgg, c, s, generator=torch.Generator().manual_seed(2))).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    plain = grads()
    assert enable_grad_checkpointing(model) == 3  # tiny: 1 + 1 encoder blocks, 1 decoder block
    ckpt = grads()
    for name, g in plain.items():
        torch.testing.assert_close(ckpt[name], g, rtol=1e-5, atol=1e-7, msg=name)


def test_cli_errors_before_anything_starts(tmp_path, data, capsys):
    from mambast.cli import main

    content, style = data
    out = tmp_path / "run"
    rc = main(["train", "--content-dir", str(content), "--style-dir", str(style), "--out", str(out),
               "--preset", "tiny", "--size", "32"])
    assert rc == 2 and "vgg_normalised.pth" in capsys.readouterr().err
    rc = main(["train", "--content-dir", str(tmp_path / "nope"), "--style-dir", str(style), "--out", str(out),
               "--allow-random-vgg"])
    assert rc == 2 and "--content-dir" in capsys.readouterr().err
    assert not out.exists()
    rc = main(["train", "--resume", str(tmp_path)])
    assert rc == 2 and "not a mambast training run" in capsys.readouterr().err


def test_a_run_folder_is_trained_by_one_process_at_a_time(tmp_path, data):
    from mambast.train.lock import run_lock

    run_dir = tmp_path / "run"
    with run_lock(run_dir):  # as if another training process held the folder
        with pytest.raises(UserError, match=r"run is being trained by pid \d+"):
            train(_cfg(data, max_iter=1), run_dir, progress=False)
        assert not (run_dir / "checkpoints").exists()  # nothing was written
    assert train(_cfg(data, max_iter=1), run_dir, progress=False).step == 1  # released: the run goes ahead
    assert train(_cfg(data, max_iter=2), run_dir, resume=True, progress=False).step == 2  # and again
