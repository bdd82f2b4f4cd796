"""Export onto existing/missing paths, `weights fetch` of cut-off downloads, closed pipes, config bounds
(issue 18 items 6-7 and the questionable list)."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading

import pytest
import torch

import mambast
from mambast import MambaST, MambaSTConfig, UserError
from mambast.cli import main
from mambast.metrics.weights import fetch


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = MambaST(MambaSTConfig.preset("tiny", d_model=16, d_state=2, cnn_channels=(8, 8, 8)))
    return mambast.save_native(model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def _err(capsys, argv) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def _no_temp_files(folder):
    return [p.name for p in folder.rglob("*") if p.name.startswith(".") or ".tmp" in p.name]


# --- export ------------------------------------------------------------------------------------------------------

def test_export_refuses_bad_targets_in_one_line(tmp_path, tiny_ckpt, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    a_dir = tmp_path / "dir"
    a_dir.mkdir()
    cases = {
        ("official", str(a_file)): "exists and is a file",
        ("native", str(a_dir)): "is a folder",
        ("native", str(tmp_path / "missing" / "m.safetensors")): "does not exist",
        ("native", str(tmp_path / "m.pt")): "must end in .safetensors",
        ("native", str(a_file)): "must end in .safetensors",
    }
    for (fmt, out), want in cases.items():
        code, err = _err(capsys, ["export", str(tiny_ckpt), "--format", fmt, "--out", out])
        assert code == 2 and want in err and err.count("\n") == 1, (fmt, out, err)
    code, err = _err(capsys, ["export", str(tiny_ckpt), "--format", "official", "--out", str(a_dir), "--half"])
    assert code == 2 and "--half applies to --format native only" in err
    assert _no_temp_files(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["dir", "file.txt"]


def test_export_overwrite_needs_force_and_suffix_is_added(tmp_path, tiny_ckpt, capsys):
    assert main(["export", str(tiny_ckpt), "--format", "native", "--out", str(tmp_path / "m")]) == 0
    out = tmp_path / "m.safetensors"
    assert out.is_file() and mambast.load(out).config == mambast.load(tiny_ckpt).config
    code, err = _err(capsys, ["export", str(tiny_ckpt), "--format", "native", "--out", str(out)])
    assert code == 2 and "exists; pass --force" in err
    assert main(["export", str(tiny_ckpt), "--format", "native", "--out", str(out), "--force", "--half"]) == 0
    assert mambast.load(out, dtype=None).patch_embed.proj.weight.dtype == torch.float16
    assert _no_temp_files(tmp_path) == []


def test_export_official_same_iteration_needs_force_and_higher_warns(tmp_path, tiny_ckpt, capsys):
    folder = tmp_path / "official"
    assert main(["export", str(tiny_ckpt), "--out", str(folder), "--iteration", "20"]) == 0
    code, err = _err(capsys, ["export", str(tiny_ckpt), "--out", str(folder), "--iteration", "20"])
    assert code == 2 and "already holds iteration 20; pass --force" in err
    code, err = _err(capsys, ["export", str(tiny_ckpt), "--out", str(folder), "--iteration", "10"])
    assert code == 0 and "also holds iteration 20" in err and "picks the highest" in err
    assert main(["export", str(tiny_ckpt), "--out", str(folder), "--iteration", "20", "--force"]) == 0
    assert _no_temp_files(tmp_path) == []


def test_export_onto_a_full_disk_is_one_line(tmp_path, tiny_ckpt, capsys, monkeypatch):
    import errno

    import mambast.fs

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mambast.fs.os, "fsync", full)
    out = tmp_path / "m.safetensors"
    code, err = _err(capsys, ["export", str(tiny_ckpt), "--format", "native", "--out", str(out)])
    assert code == 2 and err == f"mambast: error: export: {out}: cannot write (no space left on the device)\n"
    code, err = _err(capsys, ["export", str(tiny_ckpt), "--out", str(tmp_path / "o")])
    assert code == 2 and "mamba_iter_160000.pth: cannot write (no space left on the device)" in err
    assert list(tmp_path.rglob("*.safetensors")) == [] and _no_temp_files(tmp_path) == []


# --- weights fetch -----------------------------------------------------------------------------------------------

class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        body = b"w" * 1024
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 20 if self.path == "/cut" else len(body)))
        self.end_headers()
        self.wfile.write(body)  # /cut: 1 KB of an announced 1 MB, then the connection closes

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_fetch_refuses_a_cut_off_download(tmp_path, server):
    with pytest.raises(UserError, match=r"was cut off: 1024 of 1048576 bytes arrived; nothing was kept"):
        fetch("art_inception", tmp_path, url=f"{server}/cut")
    assert list(tmp_path.iterdir()) == []
    path, sha = fetch("art_inception", tmp_path, url=f"{server}/whole")
    assert path.read_bytes() == b"w" * 1024
    assert json.loads((tmp_path / "manifest.json").read_text())["art_inception"]["url"] == f"{server}/whole"


def test_fetch_never_records_a_url_the_file_did_not_come_from(tmp_path, server):
    (tmp_path / "alex.pth").write_bytes(b"copied by hand")
    fetch("lpips_heads", tmp_path, url=f"{server}/whole")
    entry = json.loads((tmp_path / "manifest.json").read_text())["lpips_heads"]
    assert entry["url"] is None and len(entry["sha256"]) == 64


def test_fetch_dir_naming_a_file_is_one_line(tmp_path, capsys):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    code, err = _err(capsys, ["weights", "fetch", "art_inception", "--dir", str(a_file), "--url", "http://x/"])
    assert code == 2 and err == f"mambast: error: weights: {a_file}: exists and is a file, not a folder\n"


# --- closed pipes ------------------------------------------------------------------------------------------------

def test_a_closed_pipe_is_not_a_traceback(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "mambast", "weights", "list", "--dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `| head` that has already left
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and "Traceback" not in err and "BrokenPipeError" not in err, err


# --- config bounds -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, field", [({"dt_rank": 0}, "dt_rank"), ({"drop_path": 1.5}, "drop_path"),
                                       ({"drop_path": -0.1}, "drop_path"), ({"d_model": 0}, "d_model"),
                                       ({"content_layers": 0}, "content_layers")])
def test_model_config_bounds_name_the_field(kw, field):
    with pytest.raises(UserError, match=rf"^{field} must be"):
        MambaSTConfig(**kw)
