"""One torchrun context and one device resolver below training and inference (mambast/torchrun.py,
mambast/device.py): both join with the same timeout, both refuse more ranks than GPUs in one line, both
resolve `device` the same way (FieldError naming the field, spelled as the flag by the CLI)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as torch_dist

from mambast import torchrun
from mambast.cli import main
from mambast.device import resolve_device
from mambast.errors import FieldError, UserError
from mambast.torchrun import DistContext
from mambast.train.distributed import init_distributed

# the two ways in: inference's and training's
ENTRIES = {"inference": DistContext.from_env, "training": init_distributed}


class _Joined(Exception):
    """Raised by the fake init_process_group once it has recorded what it was asked."""


@pytest.fixture
def rank1_of_2(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    calls = []

    def fake_init(backend, **kwargs):
        calls.append((backend, kwargs))
        raise _Joined

    monkeypatch.setattr(torch_dist, "init_process_group", fake_init)
    monkeypatch.setattr(torch_dist, "is_initialized", lambda: False)
    return calls


@pytest.mark.parametrize("entry", ENTRIES)
def test_both_entries_join_gloo_with_the_same_timeout(rank1_of_2, entry):
    """Training joined with torch's default timeout (30 min) before; inference with 2 h."""
    with pytest.raises(_Joined):
        ENTRIES[entry]("cpu")
    assert rank1_of_2 == [("gloo", {"timeout": torchrun.TIMEOUT})]


@pytest.mark.parametrize("entry", ENTRIES)
def test_both_entries_refuse_more_ranks_than_gpus(rank1_of_2, monkeypatch, entry):
    """LOCAL_RANK 1 on a node with one GPU: one line before any group is joined (training went on to
    torch.cuda.set_device(cuda:1) before)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserError, match=r"rank 1: LOCAL_RANK 1 but only 1 GPU\(s\) here"):
        ENTRIES[entry]("cuda")
    assert rank1_of_2 == []


@pytest.mark.parametrize("entry", ENTRIES)
def test_one_process_without_torchrun(monkeypatch, entry):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = ENTRIES[entry]("cpu")
    assert (ctx.rank, ctx.world_size, ctx.device, ctx.owns_group) == (0, 1, torch.device("cpu"), False)
    assert ctx.gather("x") == ["x"]
    ctx.barrier()
    ctx.close()  # nothing joined: nothing to leave


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(FieldError, match=r"^device 'gpu0': unknown \(use auto, cpu, cuda or cuda:N\)$") as e:
        resolve_device("gpu0")
    assert e.value.fields == ("device",)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == resolve_device(None) == torch.device("cpu")
    with pytest.raises(FieldError, match="CUDA is not available here"):
        resolve_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("auto", local_rank=1) == resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda:0", local_rank=1) == torch.device("cuda", 0)
    with pytest.raises(FieldError, match="'cuda:2': this machine has 2 GPU"):
        resolve_device("cuda:2")


def test_the_cli_names_the_flag(tmp_path, capsys):
    """The library names the field; `mambast` spells it as the command's flag (mambast.cli.main)."""
    from PIL import Image

    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    code = main(["stylize", "--content", str(tmp_path / "a.png"), "--style", str(tmp_path / "a.png"), "--output",
                 str(tmp_path / "o"), "--device", "gpu0"])
    assert code == 2
    assert capsys.readouterr().err == ("mambast: error: stylize: --device 'gpu0': unknown "
                                       "(use auto, cpu, cuda or cuda:N)\n")
