"""Training robustness (issue 18 "questionable" list, issue 16 item 2 for training writers): what each
decision in docs/training.md promises."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

import mambast.train.loop as loop
import mambast.train.objective as objective
from mambast.cli import main
from mambast.config import PRESETS
from mambast.errors import UserError
from mambast.fs import WriteError
from mambast.io import DEFAULT_WEIGHTS, read_native
from mambast.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from mambast.train.config import train_preset
from mambast.train.monitor import MetricsLog

pytestmark = [pytest.mark.filterwarnings("ignore:training against a randomly initialised VGG"),
              pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.RandomState(0)
    for name, n in (("content", 2), ("style", 2)):
        (root / name).mkdir()
        for i in range(n):
            Image.fromarray((rng.rand(40, 48, 3) * 255).astype(np.uint8)).save(root / name / f"im{i}.png")
    return root / "content", root / "style"


def _cfg(data, **kw):
    base = dict(content_dir=str(data[0]), style_dir=str(data[1]), allow_random_vgg=True, size=32, load_size=40,
                batch_size=1, workers=0, log_every=1, save_every=1, sample_every=0, seed=3)
    return train_preset("tiny", **{**base, **kw})


def test_extending_a_decaying_schedule_warns_with_both_rates(tmp_path, data):
    cfg = _cfg(data, max_iter=2, schedule="cosine", lr=1e-3, min_lr=1e-5)
    loop.train(cfg, tmp_path, progress=False)
    with pytest.warns(UserWarning, match=r"max_iter 2 -> 4 changes the cosine schedule: the learning rate at "
                                         r"step 2 goes from 1e-05 to 0.000505"):
        loop.train(cfg.replace(max_iter=4), tmp_path, resume=True, progress=False)


def test_non_finite_gradients_stop_before_the_update(tmp_path, data, monkeypatch, capsys):
    real = objective.total_loss

    def poisoned(terms, weights):  # finite value, infinite gradient from step 2 on
        loss = real(terms, weights)
        return loss + torch.sqrt(loss - loss.detach()) if poison["on"] else loss

    poison = {"on": False}
    monkeypatch.setattr(objective, "total_loss", poisoned)
    cfg = _cfg(data, max_iter=2)
    loop.train(cfg, tmp_path / "run", progress=False)
    poison["on"] = True
    code = main(["train", "--resume", str(tmp_path / "run"), "--max-iter", "4", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "the gradients became" in err and "at step 2" in err
    assert f"--init-from {tmp_path / 'run'}" in err and "a lower --lr or a --grad-clip" in err
    latest = load_checkpoint(list_checkpoints(tmp_path / "run")[-1][1])
    assert latest["step"] == 2 and all(torch.isfinite(v).all() for v in latest["model"].values())


def test_resume_refuses_another_world_size(tmp_path, data):
    loop.train(_cfg(data, max_iter=1), tmp_path, progress=False)
    path = list_checkpoints(tmp_path)[-1][1]
    state = load_checkpoint(path)
    state["data"]["world_size"] = 2
    torch.save(state, path)
    with pytest.raises(UserError, match=r"trained by 2 process\(es\), not 1: resuming would change the global"):
        loop.train(_cfg(data, max_iter=2), tmp_path, resume=True, progress=False)


def test_resume_refuses_another_loss_network(tmp_path, data):
    from mambast.nets.vgg import load_vgg, save_vgg

    files = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        vgg = load_vgg(None, allow_random=True)
        vgg.features.apply(lambda m: torch.nn.init.normal_(m.weight, std=0.05) if hasattr(m, "weight") else None)
        files.append(tmp_path / f"vgg{seed}.pth")
        save_vgg(files[-1], {f"{k}": v for k, v in vgg.features.state_dict().items()}, "vgg_normalised", "none")
    cfg = _cfg(data, max_iter=1, vgg=str(files[0]), allow_random_vgg=False)
    loop.train(cfg, tmp_path / "run", progress=False)
    assert load_checkpoint(list_checkpoints(tmp_path / "run")[-1][1])["loss_network"]["layout"] == "vgg_normalised"
    with pytest.raises(UserError, match="is not the loss network this run was trained with"):
        loop.train(cfg.replace(max_iter=2, vgg=str(files[1])), tmp_path / "run", resume=True, progress=False)
    loop.train(cfg.replace(max_iter=2), tmp_path / "run", resume=True, progress=False)  # the same file: fine


def test_cli_refuses_resume_with_init_from_and_names_flags(tmp_path, data, capsys):
    code = main(["train", "--resume", str(tmp_path), "--init-from", str(tmp_path)])
    assert code == 2 and "--init-from starts a new run; --resume continues one" in capsys.readouterr().err
    code = main(["train", "--out", str(tmp_path / "r"), "--content-dir", str(data[0]), "--style-dir", str(data[1]),
                 "--preset", "tiny", "--max-iter", "0"])
    assert code == 2 and capsys.readouterr().err == "mambast: error: train: --max-iter must be >= 1, got 0\n"
    code = main(["train", "--out", str(tmp_path / "r"), "--content-dir", str(data[0]), "--style-dir", str(data[1]),
                 "--preset", "tiny", "--drop-path", "1.5"])
    assert code == 2 and capsys.readouterr().err == "mambast: error: train: --drop-path must be in [0, 1), got 1.5\n"
    assert not (tmp_path / "r").exists()


def test_old_option_spellings_still_parse():
    from mambast.cli import build_parser

    args = build_parser().parse_args(["train", "--out", "x", "--warmup", "5", "--grad-checkpoint",
                                      "--allow-random-vgg", "--loss-weights", "style=5"])
    assert (args.warmup_iters, args.grad_checkpoint, args.allow_random_vgg) == (5, True, True)
    assert args.loss_weights == {"style": 5.0}


@pytest.mark.skipif(not DEFAULT_WEIGHTS.exists(), reason="no bundled default model in this install")
def test_default_preset_is_the_bundled_architecture():
    config, _, _ = read_native(DEFAULT_WEIGHTS)
    assert PRESETS["default"] == config
    assert loop.init_source_config("default") == config
    assert train_preset("default").model_config() == config


def test_sigterm_saves_like_ctrl_c(tmp_path, data, monkeypatch):
    real = loop._note_bad

    def note(run, bad, bar):
        if run.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        real(run, bad, bar)

    monkeypatch.setattr(loop, "_note_bad", note)
    with pytest.raises(loop.Terminated):
        loop.train(_cfg(data, max_iter=5, save_every=0), tmp_path, progress=False)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_killed_save_leaves_nothing_that_lasts(tmp_path, data):
    loop.train(_cfg(data, max_iter=1), tmp_path, progress=False)
    stale = tmp_path / "checkpoints" / f".step_00000002.pt.{2**22 + 12345}.tmp"  # a PID above pid_max: dead
    stale.write_bytes(b"half a checkpoint")
    loop.train(_cfg(data, max_iter=2), tmp_path, resume=True, progress=False)
    assert not stale.exists() and [s for s, _ in list_checkpoints(tmp_path)] == [1, 2]


def test_metrics_log_on_a_full_disk_is_one_line(tmp_path, monkeypatch):
    log = MetricsLog(tmp_path, tensorboard=False)

    def full(text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(log._file, "write", full)
    with pytest.raises(WriteError, match=rf"^{tmp_path / 'metrics.jsonl'}: cannot write \(no space left"):
        log.write(1, {"total": 1.0})
    log.close()


@pytest.fixture()
def tiny_disk(tmp_path):
    """A real 256 KiB tmpfs (needs root and mount); skipped where it cannot be mounted."""
    where = tmp_path / "disk"
    where.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)], capture_output=True)
    except OSError:
        pytest.skip("no mount command")
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()[:80]})")
    yield where
    subprocess.run(["umount", str(where)], check=False)


def test_checkpoint_on_a_really_full_disk(tiny_disk):
    small = {"step": 1, "model": {"w": torch.zeros(1000)}, "config": {}}
    save_checkpoint(tiny_disk, small)
    big = {"step": 2, "model": {"w": torch.zeros(1_000_000)}, "config": {}}  # 4 MB onto 256 KiB
    with pytest.raises(WriteError, match=r"step_00000002\.pt: cannot write \(no space left on the device\)$"):
        save_checkpoint(tiny_disk, big)
    assert [s for s, _ in list_checkpoints(tiny_disk)] == [1]
    assert torch.equal(load_checkpoint(list_checkpoints(tiny_disk)[0][1])["model"]["w"], small["model"]["w"])
    assert sorted(p.name for p in (tiny_disk / "checkpoints").iterdir()) == ["step_00000001.pt"]
    import mambast

    model = mambast.MambaST(mambast.MambaSTConfig.preset("tiny"))
    with pytest.raises(WriteError, match=r"m\.safetensors: cannot write \(no space left on the device\)$"):
        mambast.save_native(model, tiny_disk / "m.safetensors")
    assert json.dumps(sorted(p.name for p in tiny_disk.iterdir())) == '["checkpoints"]'


def test_sample_grid_and_lock_on_an_unwritable_disk(tmp_path, monkeypatch):
    import mambast.fs
    from mambast.train.lock import run_lock
    from mambast.train.monitor import save_sample_grid

    images = {k: torch.zeros(1, 3, 8, 8) for k in ("content", "style", "Ics", "Icc", "Iss")}

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mambast.fs.os, "fsync", full)
    with pytest.raises(WriteError, match=r"samples/step_00000007\.png: cannot write \(no space left on the device\)$"):
        save_sample_grid(tmp_path, 7, images)
    assert list((tmp_path / "samples").iterdir()) == []
    monkeypatch.undo()

    def refused(*args, **kwargs):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("mambast.train.lock.os.open", refused)
    with pytest.raises(WriteError, match=r"\.lock: cannot write \(permission denied\)$"):
        with run_lock(tmp_path / "run"):
            pass


def test_training_onto_a_really_full_disk_then_resume(tmp_path, data, capsys):
    """End to end on a real 6 MiB tmpfs: the step-1 checkpoint (about 4 MB for tiny) fits, step 2's does not;
    one line naming the file, the step-1 checkpoint intact; after growing the disk, --resume finishes."""
    where = tmp_path / "disk"
    where.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(where)], capture_output=True)
    except OSError:
        pytest.skip("no mount command")
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()[:80]})")
    try:
        run = where / "run"
        argv = ["train", "--preset", "tiny", "--content-dir", str(data[0]), "--style-dir", str(data[1]),
                "--allow-random-vgg", "--size", "32", "--load-size", "40", "--batch-size", "1", "--workers", "0",
                "--save-every", "1", "--sample-every", "0", "--max-iter", "2", "--no-progress", "--out", str(run)]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err == (f"mambast: error: train: {run}/checkpoints/step_00000002.pt: cannot write (no space left on "
                       "the device)")
        assert [s for s, _ in list_checkpoints(run)] == [1]
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000001.pt"]
        subprocess.run(["mount", "-o", "remount,size=64m", str(where)], check=True)
        assert main(["train", "--resume", str(run), "--no-progress"]) == 0
        assert [s for s, _ in list_checkpoints(run)] == [1, 2]
    finally:
        subprocess.run(["umount", str(where)], check=False)
