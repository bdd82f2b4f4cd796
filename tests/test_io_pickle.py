"""No torch file is ever unpickled (issue 24 item 3): every loader reads through the one reader
(mambast.io.state_dict.torch_load_tensors, weights_only=True), which refuses a file holding a pickle payload
(here: unpickling it would create a marker file) before any of its code runs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mambast
from mambast.config import MambaSTConfig
from mambast.errors import UserError
from mambast.nets.inception import load_inception
from mambast.nets.lpips_net import load_lpips
from mambast.nets.vgg import load_vgg
from mambast.train import loop
from mambast.train.checkpoint import latest_checkpoint, load_checkpoint, load_run_model
from mambast.train.config import train_preset
from mambast.train.distill import DistillConfig, distill, load_student

pytestmark = [pytest.mark.filterwarnings("ignore:training against a randomly initialised VGG"),
              pytest.mark.usefixtures("one_thread")]

TINY = MambaSTConfig(d_model=32, d_state=4, content_layers=1, style_layers=1, decoder_layers=1,
                     cnn_channels=(16, 8, 8), drop_path=0.0)
REFUSED = "refused: it holds pickled Python objects, not only tensors, and loading it could run code"


class Payload:
    """Unpickling this creates `marker` (open(marker, "w")): the code a hostile checkpoint would run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A paper-objective run and a distillation run (2 steps each), image folders and a teacher cache."""
    root = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    for name in ("content", "style"):
        (root / name).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    (root / "cache").mkdir()
    np.savez(root / "cache" / "shard_00000.npz",
             **{k: rng.integers(0, 256, (2, 40, 40, 3), dtype=np.uint8) for k in ("content", "style", "teacher")})
    paper = _paper_cfg(root, 2)
    loop.train(paper, root / "paper", progress=False)
    distill(_distill_cfg(root, 2), root / "distill", vgg=load_vgg(None, allow_random=True))
    return root


def _paper_cfg(root: Path, steps: int, **kw):
    return train_preset("tiny", content_dir=str(root / "content"), style_dir=str(root / "style"), model=TINY.to_dict(),
                        allow_random_vgg=True, size=32, load_size=40, batch_size=1, workers=0, max_iter=steps,
                        sample_every=0, **kw)


def _distill_cfg(root: Path, steps: int, **kw) -> DistillConfig:
    return DistillConfig(model=TINY.to_dict(), cache_dir=str(root / "cache"), crop=32, batch_size=1, warmup=1,
                         max_iter=steps, threads=1, amp_bf16=False, **kw)


def _poison(path: Path, marker: Path) -> None:
    """Rewrite the torch file `path` with a payload beside what it held (a dict)."""
    state = torch.load(path, weights_only=True) if path.exists() else {}
    torch.save({**state, "payload": Payload(marker)}, path)


def _copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _published(folder: Path) -> Path:
    torch.manual_seed(0)
    mambast.save_official(mambast.MambaST(TINY), folder, iteration=1)
    return folder / "decoder_iter_1.pth"


def _legacy_distill(folder: Path) -> Path:
    folder.mkdir()
    torch.save({"model": mambast.MambaST(TINY).state_dict(), "config": {"model": TINY.to_dict()}},
               folder / "ckpt_0000002.pt")
    return folder / "ckpt_0000002.pt"


# (name, make(tmp, runs) -> (file to poison, load())): every loader of a torch file in the package
def _cases():
    def model_published(tmp, runs):
        return _published(tmp / "pub"), lambda: mambast.load(tmp / "pub")

    def model_run_folder(tmp, runs):
        run = _copy_run(runs / "paper", tmp / "run")
        return latest_checkpoint(run), lambda: mambast.load(run)

    def training_checkpoint(tmp, runs):
        run = _copy_run(runs / "paper", tmp / "run")
        return latest_checkpoint(run), lambda: load_checkpoint(latest_checkpoint(run))

    def training_run_model(tmp, runs):
        run = _copy_run(runs / "paper", tmp / "run")
        return latest_checkpoint(run), lambda: load_run_model(run)

    def training_resume(tmp, runs):
        run = _copy_run(runs / "paper", tmp / "run")
        return latest_checkpoint(run), lambda: loop.train(_paper_cfg(runs, 3), run, resume=True, progress=False)

    def distill_student(tmp, runs):
        run = _copy_run(runs / "distill", tmp / "run")
        return latest_checkpoint(run), lambda: load_student(run)

    def distill_resume(tmp, runs):
        run = _copy_run(runs / "distill", tmp / "run")
        vgg = load_vgg(None, allow_random=True)
        return latest_checkpoint(run), lambda: distill(_distill_cfg(runs, 3), run, vgg=vgg)

    def distill_legacy_student(tmp, runs):
        return _legacy_distill(tmp / "old"), lambda: load_student(tmp / "old")

    def init_from_run_folder(tmp, runs):
        run = _copy_run(runs / "paper", tmp / "run")
        return latest_checkpoint(run), lambda: loop.train(_paper_cfg(runs, 1, init_from=str(run)), tmp / "new",
                                                          progress=False)

    def init_from_published_folder(tmp, runs):
        return _published(tmp / "pub"), lambda: loop.train(_paper_cfg(runs, 1, init_from=str(tmp / "pub")),
                                                           tmp / "new", progress=False)

    def distill_init_from_legacy_folder(tmp, runs):
        vgg = load_vgg(None, allow_random=True)
        return _legacy_distill(tmp / "old"), lambda: distill(_distill_cfg(runs, 1, init_from=str(tmp / "old")),
                                                             tmp / "new", vgg=vgg)

    def vgg(tmp, runs):
        path = tmp / "vgg.pth"
        torch.save(load_vgg(None, allow_random=True).features.state_dict(), path)
        return path, lambda: load_vgg(path)

    def inception(tmp, runs):
        return tmp / "inception.pth", lambda: load_inception(tmp / "inception.pth")

    def lpips_backbone(tmp, runs):
        return tmp / "alex.pth", lambda: load_lpips(tmp / "alex.pth")

    def lpips_heads(tmp, runs):
        torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11)}, tmp / "alex.pth")
        return tmp / "heads.pth", lambda: load_lpips(tmp / "alex.pth", tmp / "heads.pth")

    return [(f.__name__, f) for f in (model_published, model_run_folder, training_checkpoint, training_run_model,
                                      training_resume, distill_student, distill_resume, distill_legacy_student,
                                      init_from_run_folder, init_from_published_folder,
                                      distill_init_from_legacy_folder, vgg, inception, lpips_backbone, lpips_heads)]


def test_the_payload_runs_when_unpickled(tmp_path):
    """The test's payload is real: torch.load(weights_only=False) runs it (what every loader must never do)."""
    marker = tmp_path / "marker"
    _poison(tmp_path / "x.pt", marker)
    torch.load(tmp_path / "x.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize(("name", "make"), _cases(), ids=[n for n, _ in _cases()])
def test_every_loader_refuses_a_pickle_payload(tmp_path, runs, name, make):
    path, load = make(tmp_path, runs)
    marker = tmp_path / "marker"
    _poison(path, marker)
    with pytest.raises(UserError, match=re.escape(f"{path}: {REFUSED} (it names ")) as refused:
        load()
    assert "\n" not in str(refused.value)
    assert not marker.exists()


def test_torch_load_is_called_in_one_place():
    """The one reader: no other module of the package calls torch.load."""
    package = Path(mambast.__file__).parent
    callers = sorted(str(p.relative_to(package)) for p in package.rglob("*.py") if "torch.load(" in p.read_text())
    assert callers == ["io/state_dict.py"]
