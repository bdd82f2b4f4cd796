"""`mambast stylize-dataset` as users run it: under torchrun with 2 CPU ranks (gloo) the same files, pixels and
manifest as one process; a run killed midway and rerun with --skip-existing writes exactly the missing files."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mambast


def _dataset(root: Path, n_contents: int, size: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    for i in range(n_contents):
        path = root / "content" / f"class{i % 3}" / f"img{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size + 8 * (i % 2), 3), np.uint8)).save(path)
    for i in range(5):
        path = root / "style" / f"art{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), np.uint8)).save(path)
    return root / "content", root / "style"


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(mambast.__file__).parent.parent)}


def _args(content, style, out, ckpt, *extra) -> list[str]:
    return ["stylize-dataset", "--content", str(content), "--style", str(style), "--output", str(out),
            "--checkpoint", str(ckpt), "--styles-per-content", "2", "--seed", "11", "--size", "0",
            "--device", "cpu", "--quiet", *extra]


def _files(out: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(out).as_posix(): np.asarray(Image.open(p)) for p in sorted(out.rglob("*.png"))}


@pytest.mark.slow
def test_two_gloo_ranks_equal_one_process(tmp_path, ckpt):
    content, style = _dataset(tmp_path, 7, 16)
    one = subprocess.run([sys.executable, "-m", "mambast", *_args(content, style, tmp_path / "one", ckpt,
                                                                  "--batch-size", "3")],
                         capture_output=True, text=True, env=_env(), timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", "29517", "-m", "mambast",
                          *_args(content, style, tmp_path / "two", ckpt, "--batch-size", "2", "--workers", "1")],
                         capture_output=True, text=True, env=_env(), timeout=300)
    assert two.returncode == 0, two.stderr
    a, b = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert len(a) == 14 and a.keys() == b.keys()
    assert all(k.startswith("class") for k in a)  # class sub-folders mirrored
    assert all(np.array_equal(a[k], b[k]) for k in a)
    rows = list(csv.DictReader((tmp_path / "one" / "manifest.csv").open()))
    assert (tmp_path / "one" / "manifest.csv").read_text() == (tmp_path / "two" / "manifest.csv").read_text()
    assert [r["output"] for r in rows] == sorted(a, key=lambda k: [r["output"] for r in rows].index(k))
    assert {r["output"] for r in rows} == set(a) and all(r["seed"].isdigit() for r in rows)
    assert not [p for p in (tmp_path / "two").iterdir() if p.name.startswith(".")]  # rank files merged away
    assert two.stdout.count("wrote 14 images") == 1  # the summary comes from rank 0 only


@pytest.mark.slow
def test_resume_after_a_killed_run_writes_exactly_the_missing_files(tmp_path, ckpt):
    content, style = _dataset(tmp_path, 30, 48)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "mambast", *_args(content, style, out, ckpt)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.rglob("*.png"))) < 3 and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert 3 <= len(before) < 60, "the run should have been killed midway"
    for name in before:  # every file present is a complete PNG (atomic writes)
        Image.open(out / name).load()

    resumed = subprocess.run([sys.executable, "-m", "mambast", *_args(content, style, out, ckpt, "--skip-existing")],
                             capture_output=True, text=True, env=_env(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"wrote {60 - len(before)} images" in resumed.stdout
    assert f"{len(before)} already there (skipped)" in resumed.stdout
    after = {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert len(after) == 60 and all(after[k] == v for k, v in before.items())  # old files untouched
    assert not [p for p in out.rglob(".*") if p.name != ".mambast-write-test"]  # no temp files left
    manifest = list(csv.DictReader((out / "manifest.csv").open()))
    assert sorted(r["output"] for r in manifest) == sorted(after)

    fresh = subprocess.run([sys.executable, "-m", "mambast", *_args(content, style, tmp_path / "fresh", ckpt)],
                           capture_output=True, text=True, env=_env(), timeout=300)
    assert fresh.returncode == 0, fresh.stderr
    a, b = _files(out), _files(tmp_path / "fresh")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert (out / "manifest.csv").read_text() == (tmp_path / "fresh" / "manifest.csv").read_text()
