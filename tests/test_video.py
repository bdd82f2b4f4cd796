"""`mambast video` and mambast.video: a 2-second synthetic clip with audio keeps its frame count, exact
rational frame rate, duration and audio packets; frame folders in/out; one-line errors; the shuffle is fixed
for the whole video; the flow blend steadies a flickering static shot and leaves a scene cut alone."""

from __future__ import annotations

import importlib.util
from fractions import Fraction

import numpy as np
import pytest
import torch
from conftest import require
from PIL import Image

require(importlib.util.find_spec("av") is not None and importlib.util.find_spec("cv2") is not None,
        "PyAV and OpenCV (pip install -e '.[video]')")

import av  # noqa: E402

import mambast  # noqa: E402
from mambast.cli import main  # noqa: E402
from mambast.inference import Controls, Stylizer  # noqa: E402
from mambast.video import VideoReader, VideoWriter, stylize_frames  # noqa: E402
from mambast.video.stabilise import Stabiliser  # noqa: E402

NTSC = Fraction(30000, 1001)


def make_clip(path, seconds=2.0, rate=NTSC, size=(32, 24), audio=True, video=True):
    """A synthetic clip: MPEG-4 Part 2 video (a moving bar over a colour ramp) and AAC stereo audio (a tone)."""
    out = av.open(str(path), "w")
    n, sr = round(seconds * rate), 48000
    v = out.add_stream("mpeg4", rate=rate) if video else None  # every stream added before the first packet
    a = out.add_stream("aac", rate=sr) if audio else None
    if v is not None:
        v.width, v.height, v.pix_fmt = size[0], size[1], "yuv420p"
    if a is not None:
        a.layout = "stereo"
    if v is not None:
        for i in range(n):
            img = np.zeros((size[1], size[0], 3), np.uint8)
            img[..., 0] = np.linspace(0, 255, size[0], dtype=np.uint8)
            img[:, i % size[0]:, 1] = 200
            out.mux(v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(v.encode(None))
    if a is not None:
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * sr)) / sr)).astype(np.float32)
        for k in range(0, len(tone), 1024):
            frame = av.AudioFrame.from_ndarray(np.stack([tone[k:k + 1024]] * 2), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = sr, k
            out.mux(a.encode(frame))
        out.mux(a.encode(None))
    out.close()
    return path


def probe(path):
    """(frames, average rate, video duration s, container duration s, (w, h), audio packets' bytes or None)."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info = (v.frames, v.average_rate, float(v.duration * v.time_base), c.duration / 1e6, (v.width, v.height))
        audio = None
        if c.streams.audio:
            audio = [bytes(p) for p in c.demux(c.streams.audio[0]) if p.dts is not None]
    return (*info, audio)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


@pytest.fixture
def style(tmp_path):
    path = tmp_path / "style.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (20, 20, 3), np.uint8)).save(path)
    return path


def test_reader_writer_roundtrip_keeps_rate_count_duration_and_audio(clip, tmp_path):
    frames_in, rate_in, dur_in, cdur_in, _, audio_in = probe(clip)
    assert (frames_in, rate_in) == (60, NTSC) and len(audio_in) > 80
    out = tmp_path / "copy.mp4"
    with VideoReader(clip) as r:
        assert (r.info.width, r.info.height, r.info.rate, r.info.frames, r.info.has_audio) == (32, 24, NTSC, 60, True)
        decoded = []
        with VideoWriter(out, r.info.rate, 32, 24, audio=r.audio) as w:
            for f in r.frames(on_audio=w.mux_audio):
                decoded.append(f)
                w.write(f)
    frames, rate, dur, cdur, size, audio = probe(out)
    assert (frames, rate, size) == (60, NTSC, (32, 24))
    assert dur == pytest.approx(60 * 1001 / 30000, abs=1e-6) == pytest.approx(dur_in, abs=1e-6)
    assert cdur == pytest.approx(cdur_in, abs=1 / 30)
    assert audio == audio_in  # the same packets, byte for byte: copied, not re-encoded
    with VideoReader(out) as r:  # H.264 at CRF 18: the pictures survive
        again = list(r.frames())
    assert np.abs(np.stack(again).astype(int) - np.stack(decoded)).mean() < 3


def test_cli_video_keeps_rate_duration_and_audio(tmp_path, ckpt, style, capsys):
    src = make_clip(tmp_path / "in.mp4", rate=Fraction(15000, 1001))  # 30 frames over 2.002 s
    _, _, dur_in, _, _, audio_in = probe(src)
    out = tmp_path / "out" / "styled.mp4"
    assert main(["video", str(src), "--style", str(style), "--output", str(out), "--size", "16", "--checkpoint",
                 str(ckpt), "--device", "cpu", "--quiet", "--batch-size", "8"]) == 0
    frames, rate, dur, _, size, audio = probe(out)
    assert (frames, rate) == (30, Fraction(15000, 1001))
    assert dur == pytest.approx(dur_in, abs=1e-6)
    assert size == (20, 16)  # 32 x 24 -> short side 16 -> 21 x 16 -> even width for yuv420p
    assert audio == audio_in
    assert "wrote 30 frames (20 x 16 at 15000/1001 fps, audio copied)" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["styled.mp4"]  # no temporary file left behind


def _noise_frames(folder, sizes, name="f{}.png"):
    """A folder of random-noise PNG frames, one per (h, w) in `sizes` (seed 0), named name.format(i)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(folder / name.format(i))
    return folder


def test_frame_folders_in_and_out(tmp_path, ckpt, style, capsys):
    frames = _noise_frames(tmp_path / "frames", [(16, 24)] * 3, "f{:03d}.png")
    common = ["--style", str(style), "--size", "0", "--checkpoint", str(ckpt), "--device", "cpu", "--quiet"]
    assert main(["video", str(frames), "--output", str(tmp_path / "out"), *common]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["frame_000001.png", "frame_000002.png", "frame_000003.png"]
    assert Image.open(tmp_path / "out" / written[0]).size == (24, 16)
    assert main(["video", str(frames), "--output", str(tmp_path / "f.mkv"), "--fps", "30000/1001", *common]) == 0
    assert probe(tmp_path / "f.mkv")[1] == NTSC  # a folder takes its rate from --fps
    assert probe(tmp_path / "f.mkv")[4] == (24, 16)


def test_compile_flag_builds_a_compiled_engine(tmp_path, ckpt, style, monkeypatch):
    """--compile asks the engine for torch.compile (the compiled engine's own equality to eager is tested in
    test_compiled.py, slow); without the flag the engine stays eager."""
    import mambast.inference as inference

    asked = []

    class Recording(Stylizer):
        def __init__(self, *args, compile=False, **kwargs):
            asked.append(compile)
            super().__init__(*args, **kwargs)  # eager: compiling would take minutes

    monkeypatch.setattr(inference, "Stylizer", Recording)
    frames = _noise_frames(tmp_path / "frames", [(16, 24)] * 2, "f{:03d}.png")
    common = ["--style", str(style), "--size", "0", "--checkpoint", str(ckpt), "--device", "cpu", "--quiet"]
    assert main(["video", str(frames), "--output", str(tmp_path / "a"), *common]) == 0
    assert main(["video", str(frames), "--output", str(tmp_path / "b"), "--compile", *common]) == 0
    assert asked == [False, True]

def _one_error_line(capsys, argv, expected):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mambast: error: ") and expected in err, err


def test_corrupt_audio_only_and_bad_arguments_are_one_line(tmp_path, clip, style, capsys):
    out = str(tmp_path / "o.mp4")
    audio = make_clip(tmp_path / "tone.m4a", video=False)
    _one_error_line(capsys, ["video", str(audio), "--style", str(style), "--output", out],
                    "tone.m4a: an audio-only file with no video stream")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clip.read_bytes()[:2000])  # truncated before the index: not a readable video
    _one_error_line(capsys, ["video", str(broken), "--style", str(style), "--output", out],
                    "broken.mp4: not a readable video")
    junk = tmp_path / "junk.mov"
    junk.write_bytes(b"not a video at all" * 50)
    _one_error_line(capsys, ["video", str(junk), "--style", str(style), "--output", out], "junk.mov: not a readable")
    _one_error_line(capsys, ["video", str(tmp_path / "missing.mp4"), "--style", str(style), "--output", out],
                    "missing.mp4: no such file")
    _one_error_line(capsys, ["video", str(clip), "--style", str(style), "--output", out, "--stability", "1.5"],
                    "--stability must be a number in [0, 1], got 1.5")
    _one_error_line(capsys, ["video", str(clip), "--style", str(style), "--output", out, "--fps", "25"],
                    "--fps is for a folder of frames")
    _one_error_line(capsys, ["video", str(clip), "--style", str(style), "--output", str(tmp_path / "o.avi"),
                             "--checkpoint", "none-such"], "")  # some one-line error (checkpoint or type)
    assert not (tmp_path / "o.mp4").exists()


def test_one_shuffle_for_the_whole_video(ckpt):
    """The same frame anywhere in the video, in any batch position, gets the same stylization (the style
    encoded once, one shuffle seed); a redrawn shuffle would change it."""
    stylizer = Stylizer(mambast.load(ckpt), size=None)
    frame = np.random.default_rng(3).integers(0, 255, (16, 24, 3), np.uint8)
    style = Image.fromarray(np.random.default_rng(4).integers(0, 255, (16, 16, 3), np.uint8))
    outs = list(stylize_frames(stylizer, [frame] * 5, style, batch_size=2, stability=0))
    assert all(np.array_equal(o, outs[0]) for o in outs[1:])
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255
    tokens = stylizer.style_tokens(style, stylizer.grid(24, 16))
    a, b = (stylizer.stylize_tensor(x, [tokens], Controls(), seeds=[s]) for s in (1, 2))
    assert (a - b).abs().max() > 1e-5  # the shuffle matters: a redrawn one would change every frame
    seed0 = stylizer.stylize_tensor(x, [tokens], Controls(), seeds=[0])[0].clamp(0, 1).permute(1, 2, 0).numpy()
    assert np.array_equal(outs[0], (seed0 * 255 + 0.5).astype(np.uint8))  # the default seed is 0


def test_stabiliser_steadies_a_static_shot_and_skips_a_cut():
    rng = np.random.default_rng(0)
    import cv2

    still = (cv2.GaussianBlur(rng.random((48, 64, 3)).astype(np.float32), (0, 0), 3) * 255).astype(np.uint8)
    look = still.astype(np.float32) / 255
    flicker = [np.clip(look + rng.normal(0, 0.05, look.shape).astype(np.float32), 0, 1) for _ in range(6)]
    assert Stabiliser(0.0)(still, flicker[0]) is flicker[0]  # S = 0: off
    stab = Stabiliser(0.5)
    steady = [stab(still, f) for f in flicker]
    raw_diff = np.mean([np.mean((a - b) ** 2) for a, b in zip(flicker[:-1], flicker[1:], strict=True)])
    new_diff = np.mean([np.mean((a - b) ** 2) for a, b in zip(steady[2:-1], steady[3:], strict=True)])
    assert new_diff < 0.6 * raw_diff
    other = np.ascontiguousarray(np.flipud(np.fliplr(still)))  # a cut: nothing of the last frame is visible
    cut = stab(other, flicker[0])
    assert np.mean(np.abs(cut - flicker[0])) < 0.2 * np.mean(np.abs(steady[-1] - flicker[0]))


def test_an_interrupted_write_leaves_no_file(tmp_path):
    out = tmp_path / "x.mp4"
    with pytest.raises(KeyboardInterrupt), VideoWriter(out, NTSC, 33, 24) as w:
        w.write(np.zeros((24, 33, 3), np.uint8))
        assert (w.width, w.height) == (32, 24)  # yuv420p: even sides
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []  # neither the video nor its temporary file


def test_an_output_that_is_or_overlaps_the_input_is_refused_before_any_work(tmp_path, clip, style, capsys):
    src = tmp_path / "in" / "clip.mp4"
    src.parent.mkdir()
    src.write_bytes(clip.read_bytes())
    before = src.read_bytes()
    common = ["--style", str(style), "--checkpoint", "none-such"]  # refused before the checkpoint is looked at
    _one_error_line(capsys, ["video", str(src), "--output", str(src), *common], "the output is the input")
    (tmp_path / "link.mp4").symlink_to(src)
    _one_error_line(capsys, ["video", str(tmp_path / "link.mp4"), "--output", str(src), *common],
                    "the output is the input")
    (tmp_path / "hard.mp4").hardlink_to(src)
    _one_error_line(capsys, ["video", str(src), "--output", str(tmp_path / "hard.mp4"), *common],
                    "the output is the input")
    assert src.read_bytes() == before
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.new("RGB", (24, 16), (10, 20, 30)).save(frames / "a.png")
    for out, expected in [(frames, "the output is the input"), (frames / "styled", "inside the input folder"),
                          (tmp_path, "a folder holding the input")]:
        _one_error_line(capsys, ["video", str(frames), "--output", str(out), *common], expected)
    assert sorted(p.name for p in frames.iterdir()) == ["a.png"]


def test_a_non_empty_output_folder_needs_overwrite_and_then_loses_its_old_frames(tmp_path, ckpt, style, capsys):
    frames = _noise_frames(tmp_path / "frames", [(16, 24)] * 3)
    out = tmp_path / "out"
    out.mkdir()
    for i in range(1, 7):  # an earlier run's 6 frames
        Image.new("RGB", (24, 16)).save(out / f"frame_{i:06d}.png")
    (out / "notes.txt").write_text("mine")
    common = ["--style", str(style), "--size", "0", "--checkpoint", str(ckpt), "--device", "cpu", "--quiet"]
    _one_error_line(capsys, ["video", str(frames), "--output", str(out), *common], "--overwrite")
    assert len(list(out.glob("frame_*.png"))) == 6
    assert main(["video", str(frames), "--output", str(out), "--overwrite", *common]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["frame_000001.png", "frame_000002.png", "frame_000003.png",
                                                     "notes.txt"]


def test_float_frames_in_0_1_equal_uint8_and_other_arrays_are_one_line(ckpt):
    stylizer = Stylizer(mambast.load(ckpt), size=None)
    frame = np.random.default_rng(3).integers(0, 255, (16, 24, 3), np.uint8)
    style = Image.fromarray(np.random.default_rng(4).integers(0, 255, (16, 16, 3), np.uint8))
    ref = list(stylize_frames(stylizer, [frame], style, stability=0))
    floats = list(stylize_frames(stylizer, [frame.astype(np.float32) / 255], style, stability=0))
    assert np.array_equal(floats[0], ref[0])
    for bad, expected in [(frame.astype(np.float32), r"frames\[0\]: float frames must be in \[0, 1\]"),
                          (frame.astype(np.uint16), r"frames\[0\]: expected uint8 \(0-255\), bool or float"),
                          (frame[..., 0], r"frames\[0\]: expected an RGB array \(H, W, 3\)")]:
        with pytest.raises(mambast.errors.UserError, match=expected):
            list(stylize_frames(stylizer, [bad], style, stability=0))


def test_frames_of_another_size_are_resized_with_one_warning(tmp_path, ckpt, style, capsys):
    frames = _noise_frames(tmp_path / "frames", [(16, 24), (16, 24), (20, 30), (12, 18)])
    assert main(["video", str(frames), "--output", str(tmp_path / "out"), "--style", str(style), "--size", "0",
                 "--checkpoint", str(ckpt), "--device", "cpu", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mambast: warning: ") and "f2.png: 30 x 20 px" in err, err
    assert {Image.open(p).size for p in (tmp_path / "out").iterdir()} == {(24, 16)}
    stylizer = Stylizer(mambast.load(ckpt), size=None)
    arrays = [np.zeros((16, 24, 3), np.uint8), np.zeros((20, 30, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)]
    outs = list(stylize_frames(stylizer, arrays, Image.open(style), stability=0))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "frames[1]: 30 x 20 px" in err, err
    assert {o.shape for o in outs} == {(16, 24, 3)}
