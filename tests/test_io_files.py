"""Checkpoints as untrusted input (issue 16 items 7-8, issue 18 items 5 and 8): the safetensors library parses,
malformed files are one line, wrapper prefixes are removed, fuzzed files never give another exception."""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file as library_load_file
from torch import nn

import mambast
from mambast import MambaST, MambaSTConfig, UserError
from mambast.io import DEFAULT_WEIGHTS, load_native, read_native
from mambast.io.official import load_official
from mambast.io.run import load_checkpoint
from mambast.io.safetensors import load_file, save_file
from mambast.io.state_dict import strip_wrapper_prefixes, torch_load_tensors, unwrap_model


def _tiny() -> MambaST:
    torch.manual_seed(0)
    return MambaST(MambaSTConfig.preset("tiny", d_model=16, d_state=2, cnn_channels=(8, 8, 8)))


def _one_line_user_error(call) -> str:
    with pytest.raises(UserError) as e:
        call()
    assert "\n" not in str(e.value)
    return str(e.value)


# --- the bundled file through the library: bit-identical tensors -------------------------------------------------

@pytest.mark.skipif(not DEFAULT_WEIGHTS.exists(), reason="no bundled default model in this install")
def test_bundled_model_reads_bit_identical_through_the_library():
    raw = DEFAULT_WEIGHTS.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    config, state, meta = read_native(DEFAULT_WEIGHTS)
    assert meta["format"] == "mambast" and json.loads(meta["config"]) == config.to_dict()
    assert sorted(state) == sorted(k for k in header if k != "__metadata__")
    for name, t in state.items():  # the exact bytes of the file, tensor by tensor
        start, end = header[name]["data_offsets"]
        assert t.contiguous().view(-1).view(torch.uint8).numpy().tobytes() == raw[8 + n + start:8 + n + end], name
        assert list(t.shape) == header[name]["shape"]


def test_writer_is_deterministic_and_library_compatible(tmp_path):
    model = _tiny()
    a = mambast.save_native(model, tmp_path / "a.safetensors", extra={"z": "1", "b": "2", "m": "3"})
    b = mambast.save_native(model, tmp_path / "b.safetensors", extra={"m": "3", "b": "2", "z": "1"})
    assert a.read_bytes() == b.read_bytes()
    ours = library_load_file(str(a))  # the reference parser reads what we write
    for k, v in model.state_dict().items():
        assert torch.equal(ours[k], v), k


# --- malformed safetensors: what the format forbids is refused in one line ----------------------------------------

def _st(header, data: bytes, n: int | None = None) -> bytes:
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    return struct.pack("<Q", len(blob) if n is None else n) + blob + data


X = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
MALFORMED = {
    "metadata a JSON list": _st({"__metadata__": ["a"], "x": X}, bytes(8)),
    "metadata value not a string": _st({"__metadata__": {"a": 1}, "x": X}, bytes(8)),
    "header length beyond the file": _st({"x": X}, bytes(8), n=1 << 40),
    "shape -1": _st({"x": {**X, "shape": [-1]}}, bytes(8)),
    "overlapping offsets": _st({"x": X, "y": {**X, "data_offsets": [4, 12]}}, bytes(12)),
    "data beyond the file": _st({"x": {**X, "shape": [4], "data_offsets": [0, 16]}}, bytes(8)),
    "shape and size disagree": _st({"x": {**X, "shape": [3]}}, bytes(8)),
    "unknown dtype": _st({"x": {**X, "dtype": "F99"}}, bytes(8)),
    "header not JSON": struct.pack("<Q", 8) + b"{oops   ",
    "shorter than its length": b"\x02\x00",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_safetensors_is_one_line(tmp_path, case):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(MALFORMED[case])
    msg = _one_line_user_error(lambda: mambast.load(path))
    assert msg.startswith(f"{path}: not a valid safetensors file (")


@pytest.mark.parametrize("suffix", [".safetensors", "/mamba_iter_5.pth", "/checkpoints/step_00000001.pt"])
def test_empty_files_say_empty_file(tmp_path, suffix):
    path = tmp_path / ("m" + suffix if suffix.startswith(".") else suffix.lstrip("/"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    if suffix.endswith(".pth"):
        for tag in ("decoder", "embedding"):
            (tmp_path / f"{tag}_iter_5.pth").write_bytes(b"")
        call = lambda: mambast.load(tmp_path)  # noqa: E731
    elif suffix.endswith(".pt"):
        call = lambda: load_checkpoint(path)  # noqa: E731
    else:
        call = lambda: mambast.load(path)  # noqa: E731
    assert "empty file" in _one_line_user_error(call)


# --- wrapper prefixes (DataParallel / DDP `module.`, torch.compile `_orig_mod.`) ----------------------------------

@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod."])
def test_published_layout_with_wrapper_prefixes_loads(tmp_path, prefix):
    model = _tiny()
    paths = mambast.save_official(model, tmp_path, iteration=3)
    for p in paths.values():
        sd = torch.load(p, weights_only=True)
        torch.save({prefix + k: v for k, v in sd.items()}, p)
    back = load_official(tmp_path)
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_partly_prefixed_keys_name_the_file_and_the_keys(tmp_path):
    paths = mambast.save_official(_tiny(), tmp_path, iteration=3)
    sd = torch.load(paths["embedding"], weights_only=True)
    torch.save({"module.proj.weight": sd["proj.weight"], "proj.bias": sd["proj.bias"]}, paths["embedding"])
    msg = _one_line_user_error(lambda: mambast.load(tmp_path))
    assert str(paths["embedding"]) in msg and "module.proj.weight" in msg and "'module.'" in msg


def test_unrecognised_layout_names_the_folder(tmp_path):
    paths = mambast.save_official(_tiny(), tmp_path, iteration=3)
    sd = torch.load(paths["embedding"], weights_only=True)
    torch.save({"net.proj.weight": sd["proj.weight"], "net.proj.bias": sd["proj.bias"]}, paths["embedding"])
    msg = _one_line_user_error(lambda: mambast.load(tmp_path))
    assert msg.startswith(f"{tmp_path}: published layout not recognised") and "net.proj.weight" in msg


def test_strip_wrapper_prefixes_leaves_plain_keys():
    sd = {"a.b": torch.zeros(1), "c": torch.ones(1)}
    assert strip_wrapper_prefixes(sd, "x") is sd
    assert list(strip_wrapper_prefixes({"module.module.a": sd["c"]}, "x")) == ["a"]


def test_save_native_unwraps_compile_and_data_parallel(tmp_path):
    model = _tiny()
    wrapped = [torch.compile(model), nn.DataParallel(model), torch.compile(nn.DataParallel(model))]
    for i, w in enumerate(wrapped):
        assert unwrap_model(w) is model
        path = mambast.save_native(w, tmp_path / f"w{i}.safetensors")
        assert all(not k.startswith(("module.", "_orig_mod.")) for k in load_file(path)[0])
        back = load_native(path)
        for k, v in model.state_dict().items():
            assert torch.equal(back.state_dict()[k], v), k
    paths = mambast.save_official(wrapped[2], tmp_path / "official", iteration=1)
    assert "proj.weight" in torch.load(paths["embedding"], weights_only=True)


def test_native_file_with_prefixed_keys_loads(tmp_path):
    model = _tiny()
    meta = {"format": "mambast", "version": "1", "config": json.dumps(model.config.to_dict())}
    save_file({"_orig_mod." + k: v for k, v in model.state_dict().items()}, tmp_path / "c.safetensors", meta)
    back = mambast.load(tmp_path / "c.safetensors")
    assert torch.equal(back.patch_embed.proj.weight, model.patch_embed.proj.weight)


# --- fuzzing: every damaged file loads or is the one-line error, never another exception ----------------------

def _mutations(raw: bytes, rng: random.Random, n: int, hot: int):
    """n damaged copies: byte flips (mostly in the first `hot` and last 512 bytes, where the headers are),
    truncations and inserted junk."""
    for i in range(n):
        b = bytearray(raw)
        kind = i % 4
        if kind == 3:
            yield bytes(b[:rng.randrange(len(b))])
            continue
        for _ in range(rng.randint(1, 4)):
            region = rng.random()
            pos = (rng.randrange(min(hot, len(b))) if region < 0.6 else
                   len(b) - 1 - rng.randrange(min(512, len(b))) if region < 0.8 else rng.randrange(len(b)))
            if kind == 2:
                b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            else:
                b[pos] = rng.randrange(256) if kind == 0 else b[pos] ^ (1 << rng.randrange(8))
        yield bytes(b)


def _fuzz(path, raw, load, n, hot):
    rng = random.Random(1234)
    outcomes = {"loaded": 0, "refused": 0}
    for i, data in enumerate(_mutations(raw, rng, n, hot)):
        path.write_bytes(data)
        try:
            load()
            outcomes["loaded"] += 1
        except UserError as e:
            assert "\n" not in str(e), (i, str(e))
            outcomes["refused"] += 1
        except Exception as e:  # pragma: no cover - the failure this test exists to catch
            pytest.fail(f"case {i}: {type(e).__name__}: {e}")
    return outcomes


def test_fuzz_native_safetensors(tmp_path):
    path = mambast.save_native(_tiny(), tmp_path / "m.safetensors")
    raw = path.read_bytes()
    hot = 8 + struct.unpack("<Q", raw[:8])[0]
    outcomes = _fuzz(path, raw, lambda: mambast.load(path), 300, hot)
    assert outcomes["refused"] > 100 and sum(outcomes.values()) == 300


def test_fuzz_published_pth(tmp_path):
    paths = mambast.save_official(_tiny(), tmp_path, iteration=1)
    raw = paths["embedding"].read_bytes()  # a small zip: pickle, tensor record, central directory
    outcomes = _fuzz(paths["embedding"], raw, lambda: mambast.load(tmp_path), 300, 1024)
    assert outcomes["refused"] > 100 and sum(outcomes.values()) == 300
    raw = paths["mamba"].read_bytes()
    outcomes = _fuzz(paths["mamba"], raw, lambda: torch_load_tensors(paths["mamba"]), 100, 4096)
    assert outcomes["refused"] > 30


# --- layers: loading a run folder does not import the training package -------------------------------------------

def test_io_does_not_import_train():
    code = ("import sys, mambast, mambast.io, mambast.io.run, mambast.losses; "
            "print([m for m in sys.modules if m.startswith('mambast.train')])")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_empty_vgg_file_says_empty_file(tmp_path):
    from mambast.nets.vgg import load_vgg

    (tmp_path / "vgg.pth").write_bytes(b"")
    assert "empty file" in _one_line_user_error(lambda: load_vgg(tmp_path / "vgg.pth"))
