"""Video timing and geometry (issue 25, kinds 1 and 2), on tiny generated clips decoded back with PyAV.

Timing: every frame keeps its presentation time relative to the audio, whatever the container declares:
a variable-frame-rate MKV declaring 60 fps, a WebM declaring 1000 fps, a GIF with a 0.5 s hold, an MPEG-TS
whose streams start at 1.4 s, an MP4 whose video starts 0.5 s after its audio. Geometry: a frame stored
landscape with a display rotation (phones) or a mirror, and non-square pixels, are read and written as they
display."""

from __future__ import annotations

import importlib.util
from fractions import Fraction

import numpy as np
import pytest
from conftest import require
from PIL import Image

require(importlib.util.find_spec("av") is not None and importlib.util.find_spec("cv2") is not None,
        "PyAV and OpenCV (pip install -e '.[video]')")

import av  # noqa: E402

from mambast.cli import main  # noqa: E402
from mambast.video import VideoReader  # noqa: E402

# A recording with dropped frames: irregular gaps (0.6 s, 0.05 s...), 1.7 s of picture.
VFR_TIMES = [0.0, 0.1, 0.2, 0.8, 0.85, 1.3, 1.5]
VFR_END = 1.7
SR = 48000


def _picture(i: int, size: tuple[int, int]) -> np.ndarray:
    """Frame i of a clip (H, W, 3): colour ramps across and down, a bar whose position encodes i."""
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)
    img[..., 2] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    img[:, (4 * i) % w:, 1] = 200
    return img


def make_timed_clip(path, times, end, tb, codec="libx264", rate=60, fmt=None, size=(32, 24), pix="yuv420p",
                    audio=True, audio_start=0.0, audio_end=None, sar=None, rotation=None, hflip=False,
                    options=None):
    """A clip whose frame i is shown at times[i] s (pts in `tb`), the last until `end` s, declaring `rate`
    frames/s; AAC stereo (a tone) from `audio_start` to `audio_end` (default `end`) s."""
    out = av.open(str(path), "w", format=fmt, options=options or {})
    v = out.add_stream(codec, rate=rate)
    v.width, v.height, v.pix_fmt = size[0], size[1], pix
    v.codec_context.time_base = tb
    if sar is not None:
        v.codec_context.sample_aspect_ratio = sar
    if rotation is not None or hflip:
        v.set_display_rotation(rotation or 0, hflip=hflip)
    a = out.add_stream("aac", rate=SR) if audio else None
    if a is not None:
        a.layout = "stereo"
    durations = {}  # pts -> ticks: packets carry them (the encoders leave 0), so the last frame lasts
    for i, t in enumerate(times):
        frame = av.VideoFrame.from_ndarray(_picture(i, size), format="rgb24")
        frame.pts, frame.time_base = round(t / tb), tb
        durations[frame.pts] = round(((times[i + 1] if i + 1 < len(times) else end) - t) / tb)
        out.mux(_with_durations(v.encode(frame), durations))
    out.mux(_with_durations(v.encode(None), durations))
    if a is not None:
        n = round(((audio_end or end) - audio_start) * SR)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / SR)).astype(np.float32)
        for k in range(0, n, 1024):
            frame = av.AudioFrame.from_ndarray(np.stack([tone[k:k + 1024]] * 2), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = SR, round(audio_start * SR) + k
            out.mux(a.encode(frame))
        out.mux(a.encode(None))
    out.close()
    return path


def _with_durations(packets, durations):
    for p in packets:
        p.duration = durations[p.pts]
    return packets


def timeline(path):
    """(frame times s, end of the picture s, first audio time s or None) as a player sees them: decoded frames'
    pts; the end is the video stream's start + duration when the container has it, else the last frame's
    pts + duration."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [(f.pts * f.time_base, f.duration * f.time_base) for f in c.decode(v)]
        if v.duration:
            end = (v.start_time or 0) * v.time_base + v.duration * v.time_base
        else:
            end = frames[-1][0] + frames[-1][1]
    audio = None
    with av.open(str(path)) as c:  # a fresh demuxer (a seek back would start at the video's key frame)
        if c.streams.audio:
            audio = min(p.pts * p.time_base for p in c.demux(c.streams.audio[0]) if p.pts is not None)
    return [float(t) for t, _ in frames], float(end), None if audio is None else float(audio)


@pytest.fixture
def style(tmp_path):
    path = tmp_path / "style.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (20, 20, 3), np.uint8)).save(path)
    return path


def _run(src, out, style, ckpt, *extra):
    assert main(["video", str(src), "--style", str(style), "--output", str(out), "--size", "0", "--checkpoint",
                 str(ckpt), "--device", "cpu", "--quiet", "--stability", "0", *extra]) == 0


def _same_timing(src, out, frame_s):
    """Every frame at its source time relative to the first audio (or the first frame), same end, within
    `frame_s` (one frame)."""
    t_in, end_in, a_in = timeline(src)
    t_out, end_out, a_out = timeline(out)
    assert len(t_out) == len(t_in)
    zero_in = a_in if a_in is not None else t_in[0]
    zero_out = a_out if a_out is not None else t_out[0]
    assert np.allclose(np.array(t_out) - zero_out, np.array(t_in) - zero_in, atol=frame_s), (t_in, t_out)
    assert end_out - zero_out == pytest.approx(end_in - zero_in, abs=frame_s)
    return t_in, t_out, end_in, end_out


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_variable_rate_mkv_declaring_60_fps_keeps_every_frame_time(tmp_path, style, ckpt, ext, capsys):
    src = make_timed_clip(tmp_path / "vfr.mkv", VFR_TIMES, VFR_END, Fraction(1, 1000), rate=60)
    with av.open(str(src)) as c:
        assert c.streams.video[0].average_rate == 60  # what the header declares
    out = tmp_path / f"out{ext}"
    _run(src, out, style, ckpt)
    assert "7 frames (32 x 24 at a variable rate, 4.12 fps on average, audio copied)" in capsys.readouterr().out
    t_in, t_out, _, end_out = _same_timing(src, out, 1 / 60)
    assert np.allclose(t_out, VFR_TIMES, atol=0.002)
    assert end_out == pytest.approx(VFR_END, abs=0.02)


def test_webm_declaring_1000_fps_keeps_every_frame_time(tmp_path, style, ckpt):
    src = make_timed_clip(tmp_path / "rec.webm", VFR_TIMES, VFR_END, Fraction(1, 1000), codec="libvpx", rate=1000,
                          audio=False)
    with av.open(str(src)) as c:
        assert c.streams.video[0].average_rate == 1000
    out = tmp_path / "out.mp4"
    _run(src, out, style, ckpt)
    _, t_out, _, end_out = _same_timing(src, out, 1 / 60)
    assert np.allclose(t_out, VFR_TIMES, atol=0.002)
    assert end_out == pytest.approx(VFR_END, abs=0.02)


def test_gif_frame_delays_and_its_last_hold_are_kept(tmp_path, style, ckpt):
    times = [0.0, 0.1, 0.6, 0.7]  # the second frame holds 0.5 s, the last 0.5 s too
    src = make_timed_clip(tmp_path / "anim.gif", times, 1.2, Fraction(1, 100), codec="gif", rate=10, pix="rgb8",
                          audio=False)
    assert timeline(src)[1] == pytest.approx(1.2)
    out = tmp_path / "out.mp4"
    _run(src, out, style, ckpt)
    _, t_out, _, end_out = _same_timing(src, out, 0.01)
    assert np.allclose(t_out, times, atol=0.002) and end_out == pytest.approx(1.2, abs=0.002)


def test_streams_starting_late_keep_their_offset_and_start_at_zero(tmp_path, style, ckpt):
    """MPEG-TS (both streams start at 10 s, as a capture) and an MP4 whose picture starts 0.5 s after its sound."""
    times = [i / 25 for i in range(10)]
    ts = make_timed_clip(tmp_path / "cam.ts", [10 + t for t in times], 10.4, Fraction(1, 90000), rate=25,
                         fmt="mpegts", audio_start=10.0)
    t_in, _, a_in = timeline(ts)
    assert t_in[0] > 9.9 and a_in > 9.9  # a capture that starts at 10 s
    _run(ts, tmp_path / "ts.mp4", style, ckpt)
    _, t_out, _, _ = _same_timing(ts, tmp_path / "ts.mp4", 1 / 25)
    assert t_out[0] < 0.05  # the common start is removed, not kept as 10 s of nothing
    late = make_timed_clip(tmp_path / "late.mp4", [0.5 + t for t in times], 0.9, Fraction(1, 12800), rate=25,
                           audio_start=0.0)
    t_in, _, a_in = timeline(late)
    assert t_in[0] - a_in == pytest.approx(0.5, abs=0.03)
    _run(late, tmp_path / "late_out.mp4", style, ckpt)
    _, t_out, _, _ = _same_timing(late, tmp_path / "late_out.mp4", 1 / 25)


@pytest.mark.parametrize("name, fmt, codec", [("raw.h264", "h264", "libx264"), ("old.avi", "avi", "mpeg4")])
def test_streams_without_timestamps_or_with_coarse_ones(tmp_path, style, ckpt, name, fmt, codec):
    """A raw H.264 stream has no timestamps (its frames' durations come from the stream's timing info, 0.1 s,
    while the demuxer guesses 25 fps); an AVI counts in whole frames (time base 1/10 s)."""
    times = [i / 10 for i in range(5)]
    src = make_timed_clip(tmp_path / name, times, 0.5, Fraction(1, 10), codec=codec, rate=10, fmt=fmt, audio=False)
    out = tmp_path / "out.mp4"
    _run(src, out, style, ckpt)
    t_out, end, _ = timeline(out)
    assert np.allclose(t_out, times, atol=1e-3) and end == pytest.approx(0.5, abs=1e-3)


def test_constant_rate_stays_exact(tmp_path, style, ckpt):
    """30000/1001 in, 30000/1001 out: every frame at i * 1001/30000 s exactly (the MP4's time scale)."""
    rate = Fraction(30000, 1001)
    times = [i / rate for i in range(12)]
    src = make_timed_clip(tmp_path / "ntsc.mp4", times, 12 / rate, Fraction(1, 30000), rate=rate, audio=False,
                          options={"movie_timescale": "30000"})  # edit lists in ms would end it at 0.4 s
    out = tmp_path / "out.mp4"
    _run(src, out, style, ckpt)
    t_out, end, _ = timeline(out)
    assert t_out == [float(t) for t in times] and end == float(12 / rate)
    with av.open(str(out)) as c:
        assert c.streams.video[0].average_rate == rate


# ------------------------------------------------------------------------------------------------ geometry


def _displayed(path):
    """The first frame as a player shows it: the stored frame with its display matrix applied (PyAV's
    rotation is counter-clockwise degrees), and with square pixels."""
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        img = frame.to_ndarray(format="rgb24")
        sar = c.streams.video[0].sample_aspect_ratio
        return np.rot90(img, frame.rotation // 90), sar


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotated_phone_video_is_read_and_written_upright(tmp_path, style, ckpt, rotation):
    src = make_timed_clip(tmp_path / "phone.mp4", [0.0, 0.04], 0.08, Fraction(1, 12800), rate=25, size=(48, 16),
                          rotation=rotation, audio=False)
    shown, _ = _displayed(src)
    with VideoReader(src) as r:
        assert (r.info.width, r.info.height) == (shown.shape[1], shown.shape[0])
        first = next(iter(r.frames()))
    assert np.abs(first.astype(int) - shown).mean() < 3  # the picture as displayed (codec noise only)
    out = tmp_path / "out.mp4"
    _run(src, out, style, ckpt)
    with av.open(str(out)) as c:
        frame = next(c.decode(video=0))
        assert frame.rotation == 0 and (frame.width, frame.height) == (shown.shape[1], shown.shape[0])
    _run(src, tmp_path / "frames", style, ckpt)
    assert Image.open(tmp_path / "frames" / "frame_000001.png").size == (shown.shape[1], shown.shape[0])


def test_mirrored_display_matrix_is_applied(tmp_path):
    src = make_timed_clip(tmp_path / "selfie.mp4", [0.0], 0.04, Fraction(1, 12800), rate=25, size=(48, 16),
                          rotation=90, hflip=True, audio=False)
    with av.open(str(src)) as c:
        stored = next(c.decode(video=0)).to_ndarray(format="rgb24")
    with VideoReader(src) as r:
        first = next(iter(r.frames()))
    expected = np.rot90(stored, 1)[:, ::-1]  # rotate 90 degrees counter-clockwise, then mirror left-right
    assert first.shape == expected.shape == (48, 16, 3)
    assert np.abs(first.astype(int) - expected).mean() < 3
    assert np.abs(first.astype(int) - np.rot90(stored, 1)).mean() > 20  # the mirror matters


def test_non_square_pixels_are_read_as_displayed(tmp_path, style, ckpt):
    """A 32 x 24 frame with 2:1 pixels displays 64 x 24: read at that size, written with square pixels."""
    src = make_timed_clip(tmp_path / "anamorphic.mkv", [0.0, 0.04], 0.08, Fraction(1, 1000), rate=25,
                          sar=Fraction(2, 1), audio=False)
    with VideoReader(src) as r:
        assert (r.info.width, r.info.height) == (64, 24)
        first = next(iter(r.frames()))
    with av.open(str(src)) as c:
        stored = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert first.shape == (24, 64, 3)
    assert np.abs(first[:, ::2].astype(int) - stored).mean() < 8
    out = tmp_path / "out.mp4"
    _run(src, out, style, ckpt)
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.width, v.height) == (64, 24) and v.sample_aspect_ratio in (None, 0, 1)
