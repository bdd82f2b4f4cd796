"""The overlapped video pipeline (issue 23, item 4): the same frames as one step after the other, errors
raised where the caller is, and no stage left running when the caller stops."""

from __future__ import annotations

import importlib.util
import threading
import time

import numpy as np
import pytest
from conftest import require
from PIL import Image

require(importlib.util.find_spec("av") is not None and importlib.util.find_spec("cv2") is not None,
        "PyAV and OpenCV (pip install -e '.[video]')")

import mambast  # noqa: E402
from mambast.errors import UserError  # noqa: E402
from mambast.inference import Stylizer  # noqa: E402
from mambast.video import stylize_frames  # noqa: E402
from mambast.video.pipeline import background  # noqa: E402


def _stages() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("mambast-video", "test-stage"))]


def _moving(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    base = rng.integers(0, 255, (24, 48, 3), np.uint8)
    return [np.ascontiguousarray(np.roll(base, 2 * i, axis=1)[:, :40]) for i in range(n)]


def test_overlapped_stages_give_the_same_frames(ckpt):
    stylizer = Stylizer(mambast.load(ckpt), size=None)
    style = Image.fromarray(np.random.default_rng(4).integers(0, 255, (16, 16, 3), np.uint8))
    frames = _moving(7)  # two batches of 3 and a last one of 1; the flow blend on
    serial = list(stylize_frames(stylizer, frames, style, batch_size=3, stability=0.3, overlap=False))
    overlapped = list(stylize_frames(stylizer, iter(frames), style, batch_size=3, stability=0.3))
    assert len(serial) == 7 and all(np.array_equal(a, b) for a, b in zip(serial, overlapped, strict=True))
    assert not np.array_equal(serial[1], serial[0])  # the frames differ: their order is checked too
    assert _stages() == []


def test_an_error_in_a_stage_is_raised_in_the_caller_and_every_stage_stops(ckpt):
    stylizer = Stylizer(mambast.load(ckpt), size=None)
    style = Image.fromarray(np.zeros((16, 16, 3), np.uint8))
    frames = _moving(5)
    frames[3] = frames[3][..., 0]  # not RGB: the reading stage refuses it
    got = []
    with pytest.raises(UserError, match=r"frames\[3\]: expected an RGB array"):
        for f in stylize_frames(stylizer, frames, style, batch_size=2, stability=0):
            got.append(f)
    assert len(got) == 2 and _stages() == []


def test_a_consumer_that_stops_stops_the_stages_upstream():
    produced = []

    def source():
        for i in range(1000):
            produced.append(i)
            yield i

    stage = background(background(source(), 2, "test-stage-1"), 2, "test-stage-2")
    assert [next(stage) for _ in range(3)] == [0, 1, 2]
    stage.close()  # the consumer leaves (an error, Ctrl-C): both threads end, the source is not drained
    assert _stages() == [] and len(produced) < 12
    time.sleep(0.3)
    assert len(produced) < 12
    with pytest.raises(ValueError, match="depth must be >= 1"):
        next(background([], 0))


def test_an_interrupted_video_stops_every_stage_before_its_files_close(tmp_path, ckpt, monkeypatch):
    """Ctrl-C (or SIGTERM) while frame 3 is encoded: the stages, which decode and mux audio into the same file,
    are stopped before the writer discards its temporary file and the reader closes its container."""
    from fractions import Fraction

    from mambast.video import VideoWriter, stylize_video

    src = tmp_path / "in.mp4"
    with VideoWriter(src, Fraction(25), 40, 24) as w:
        for f in _moving(12):
            w.write(f)
    written = []

    def write(self, frame, pts=None, duration=None):
        written.append(pts)
        if len(written) == 3:
            assert len(_stages()) == 3  # decoding, model and blend run meanwhile
            raise KeyboardInterrupt

    monkeypatch.setattr(VideoWriter, "write", write)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(KeyboardInterrupt):
        stylize_video(Stylizer(mambast.load(ckpt), size=None), src, np.zeros((16, 16, 3), np.uint8), out / "o.mp4",
                      batch_size=2, progress=False)
    assert _stages() == [] and list(out.iterdir()) == []
