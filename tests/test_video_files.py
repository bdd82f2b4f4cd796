"""Files around `mambast video` (issue 25, kinds 8-10): frame folders read in natural name order, one rule for
an output that exists (a video file like a frame folder: refused unless overwrite), no temporary file left by
a killed run (SIGTERM cleans up; what SIGKILL leaves is removed by the next run)."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction

import numpy as np
import pytest
from conftest import require
from PIL import Image

require(importlib.util.find_spec("av") is not None and importlib.util.find_spec("cv2") is not None,
        "PyAV and OpenCV (pip install -e '.[video]')")

import mambast  # noqa: E402
from mambast.cli import main  # noqa: E402
from mambast.errors import FieldError  # noqa: E402
from mambast.fs import remove_stale_temp_files  # noqa: E402
from mambast.inference import Stylizer  # noqa: E402
from mambast.video import VideoWriter, stylize_video  # noqa: E402
from mambast.video.io import FolderReader  # noqa: E402

DEAD_PID = 2**22 + 12345  # above Linux's pid_max: no such process


@pytest.fixture
def style(tmp_path):
    path = tmp_path / "style.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (20, 20, 3), np.uint8)).save(path)
    return path


def _one_error_line(capsys, argv, expected):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mambast: error: video: ") and expected in err, err


def test_frame_folder_is_read_in_natural_order(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(1, 13):  # f1.png ... f12.png, frame i all grey level 20 i
        Image.new("RGB", (8, 8), (20 * i,) * 3).save(folder / f"f{i}.png")
    (folder / "sub").mkdir()  # and sub/f2.png after every top-level name, as before
    Image.new("RGB", (8, 8), (255, 0, 0)).save(folder / "sub" / "f2.png")
    reader = FolderReader(folder, Fraction(25))
    assert [f.relative_to(folder).as_posix() for f in reader.files] == [f"f{i}.png" for i in range(1, 13)] + [
        "sub/f2.png"]
    levels = [int(f[0, 0, 0]) for f in reader.frames()]
    assert levels == [20 * i for i in range(1, 13)] + [255]


def _clip(path, frames=3, size=(24, 16)):
    with VideoWriter(path, Fraction(25), *size) as w:
        for i in range(frames):
            w.write(np.full((size[1], size[0], 3), 10 * i % 256, np.uint8))
    return path


def test_an_existing_output_video_needs_overwrite_like_a_frame_folder(tmp_path, ckpt, style, capsys):
    src = _clip(tmp_path / "in.mp4")
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an earlier result")
    common = ["--style", str(style), "--size", "0", "--checkpoint", str(ckpt), "--device", "cpu", "--quiet"]
    _one_error_line(capsys, ["video", str(src), "--output", str(out), *common],
                    f"{out}: exists; choose another output or use --overwrite to replace it")
    assert out.read_bytes() == b"an earlier result"
    stylizer = Stylizer(mambast.load(ckpt), size=None)
    with pytest.raises(FieldError, match="use overwrite to replace it") as e:  # the library names its field
        stylize_video(stylizer, src, style, out, progress=False)
    assert e.value.fields == ("overwrite",)
    assert out.read_bytes() == b"an earlier result"
    assert main(["video", str(src), "--output", str(out), "--overwrite", *common]) == 0
    assert out.stat().st_size > 100 and out.read_bytes() != b"an earlier result"
    assert stylize_video(stylizer, src, style, out, progress=False, overwrite=True).frames == 3


def test_bad_settings_are_refused_by_the_library_before_any_work(tmp_path, ckpt, style, capsys):
    """The library checks its settings (FieldError naming the field) before a frame is read or a file
    written, and `mambast video` shows them as its flags. Before: a rate given for a video source was
    ignored; stylize_frames checked batch_size and stability only when the first frame was asked for."""
    from mambast.video import stylize_frames

    src = _clip(tmp_path / "in.mp4")
    stylizer = Stylizer(mambast.load(ckpt), size=None)
    cases = [(dict(rate=25), "rate", "rate is for a folder of frames; a video keeps its own"),
             (dict(batch_size=0), "batch_size", "batch_size must be a whole number >= 1, got 0"),
             (dict(stability=1.5), "stability", "stability must be a number in [0, 1], got 1.5")]
    for kwargs, field, message in cases:
        with pytest.raises(FieldError) as e:
            stylize_video(stylizer, src, style, tmp_path / "out.mp4", progress=False, **kwargs)
        assert (str(e.value), e.value.fields) == (message, (field,))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "style.png"]  # nothing written
    with pytest.raises(FieldError, match="^batch_size must be"):
        stylize_frames(stylizer, iter(()), style, batch_size=2.5)  # at the call, not at the first frame
    common = ["--style", str(style), "--size", "0", "--checkpoint", str(ckpt), "--device", "cpu", "--quiet",
              "--output", str(tmp_path / "o")]
    for extra, message in [(["--batch-size", "0"], "--batch-size must be a whole number >= 1, got 0"),
                           (["--fps", "0"], "--fps must be positive, got '0'"),
                           (["--fps", "x"], "--fps must be a positive number or a fraction like 30000/1001")]:
        folder = tmp_path / "frames"
        folder.mkdir(exist_ok=True)
        Image.new("RGB", (24, 16)).save(folder / "f1.png")
        _one_error_line(capsys, ["video", str(folder), *common, *extra], message)


def test_stale_temp_files_of_dead_writers_are_removed(tmp_path):
    (tmp_path / f".out.mp4.{DEAD_PID}.tmp").write_bytes(b"killed")
    (tmp_path / f".out.mp4.{os.getpid()}.tmp").write_bytes(b"live writer")  # a live process: kept
    (tmp_path / f".other.mp4.{DEAD_PID}.tmp").write_bytes(b"not ours")  # another output's: kept
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / f".out.mp4.{DEAD_PID}.tmp").write_bytes(b"below")
    assert remove_stale_temp_files(tmp_path, "out.mp4") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["sub", f".out.mp4.{os.getpid()}.tmp", f".other.mp4.{DEAD_PID}.tmp"])
    assert remove_stale_temp_files(tmp_path, recursive=True) == 2  # any name, below too
    # a video writer cleans up after a killed run of the same output; a frame writer after its frames'
    (tmp_path / f".out.mp4.{DEAD_PID}.tmp").write_bytes(b"killed")
    _clip(tmp_path / "out.mp4")
    assert not (tmp_path / f".out.mp4.{DEAD_PID}.tmp").exists()
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / f".frame_000002.png.{DEAD_PID}.tmp").write_bytes(b"killed")
    with mambast.video.io.FolderWriter(frames) as w:
        w.write(np.zeros((8, 8, 3), np.uint8))
    assert sorted(p.name for p in frames.iterdir()) == ["frame_000001.png"]


def test_sigterm_removes_the_temporary_output(tmp_path, ckpt, style):
    """`mambast video` killed by SIGTERM (kill, docker stop) mid-run: exit 130 like Ctrl-C, nothing left."""
    src = _clip(tmp_path / "in.mp4", frames=400, size=(64, 48))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "mambast", "video", str(src), "--output", str(out_dir / "o.mp4"),
                             "--style", str(style), "--size", "0", "--checkpoint", str(ckpt), "--device", "cpu",
                             "--quiet"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any(out_dir.iterdir()) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "finished before it could be stopped: make the clip longer"
        time.sleep(0.2)  # some frames in
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "mambast: interrupted" in err, err
    assert list(out_dir.iterdir()) == []
