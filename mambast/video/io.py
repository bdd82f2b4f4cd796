"""Video and frame-folder input/output (PyAV, optional extra `mambast[video]`).

Reading: `VideoReader(path)` decodes the first video stream to RGB frames (H, W, 3) uint8 as players show
them (display matrix and non-square pixels applied), each with its presentation time and duration from its own
timestamps (not the rate the container declares), and hands the packets of the first audio stream, untouched
but for a common start offset, to a callback; `FolderReader(path)` reads an image sequence (natural name order,
`mambast.images`). Writing: `VideoWriter` encodes H.264 (yuv420p, CRF 18) with the given timestamps in the
given time base (by default an exact rational rate: 30000/1001 stays 30000/1001) and muxes the copied audio
packets without re-encoding; `FolderWriter` writes numbered PNG frames. Every file goes through `mambast.fs`
(the video is written to a temporary file and renamed when complete).

Problems meant for users (missing, corrupt, audio-only, unsupported output) are one-line `VideoError`s; a
bad setting (an output that exists without `overwrite`, a bad `rate`) is a `FieldError` naming it.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import re
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from ..errors import FieldError, UserError
from ..fs import atomic_open, atomic_write, ensure_dir, remove_stale_temp_files
from ..images import list_images, load_image

__all__ = ["VIDEO_FORMATS", "VideoError", "VideoInfo", "VideoReader", "VideoWriter", "FolderReader",
           "FolderWriter", "check_paths", "is_video_path", "parse_rate", "require_av", "source_rate", "warn"]

# Output containers by file extension (all of them take H.264 and the usual audio codecs).
VIDEO_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
INSTALL_HINT = "pip install 'mambast[video]'"


class VideoError(UserError):
    """A video that cannot be read or written (missing, corrupt, no video stream, bad rate): one line."""


def require_av():
    """The `av` module, or a one-line VideoError saying how to install it."""
    try:
        import av
    except ImportError:
        raise VideoError(f"video input/output needs PyAV: {INSTALL_HINT}") from None
    return av


def is_video_path(path: str | Path) -> bool:
    """True for a path whose extension names a video container we write (.mp4, .m4v, .mov, .mkv)."""
    return Path(path).suffix.lower() in VIDEO_FORMATS


def warn(message: str) -> None:
    """One line `mambast: warning: ...` on stderr (through tqdm, so a progress bar stays intact)."""
    from tqdm.auto import tqdm

    tqdm.write(f"mambast: warning: {message}", file=sys.stderr)


def check_paths(source: str | Path, output: str | Path, overwrite: bool = False) -> None:
    """Refuse, before any work, an output that would destroy or feed back into the input (one-line VideoError):
    the output is the input (resolved paths, links and hard links included); an output frame folder that is a
    frame-folder input, lies inside it (a later run would read the outputs as frames) or holds it. One rule for
    what exists: an output video file that exists, or an output frame folder that already holds files, is
    refused unless `overwrite` (FieldError naming `overwrite`; with it the video is replaced when the new one
    is complete; the folder's old frame_*.png go first)."""
    source, output = Path(source).expanduser(), Path(output).expanduser()
    src, out = source.resolve(), output.resolve()
    if src == out or (source.exists() and output.exists() and os.path.samefile(source, output)):
        raise VideoError(f"{output}: the output is the input; choose another output")
    if is_video_path(output) or (output.suffix and not output.is_dir()):  # a video file (other types: later)
        if output.exists() and not overwrite:
            raise FieldError(f"{output}: exists; choose another output or use overwrite to replace it", "overwrite")
        return
    if source.is_dir() and (src in out.parents or out in src.parents):
        where = "inside the input folder" if src in out.parents else "a folder holding the input"
        raise VideoError(f"{output}: the output frame folder is {where} {source}; choose a folder outside it")
    if output.is_dir() and not overwrite and any(not p.name.startswith(".") for p in output.iterdir()):
        raise FieldError(f"{output}: the output folder is not empty (its old frames would mix with the new "
                         "ones); choose an empty folder or use overwrite to replace its frame_*.png", "overwrite")


def parse_rate(text: str | float | Fraction) -> Fraction:
    """A frame rate as an exact fraction: "30000/1001", "29.97" (-> 2997/100), 25 -> Fraction; must be > 0.
    FieldError naming `rate` otherwise."""
    try:
        rate = Fraction(str(text).strip())
    except (ValueError, ZeroDivisionError):
        raise FieldError(f"rate must be a positive number or a fraction like 30000/1001, got {text!r}",
                         "rate") from None
    if rate <= 0:
        raise FieldError(f"rate must be positive, got {text!r}", "rate")
    return rate


def source_rate(source: str | Path, rate: str | float | Fraction | None) -> Fraction | None:
    """The frame rate setting for `source`, checked: None, or, for a folder of frames, a rate `parse_rate`
    takes (a video keeps its own: FieldError naming `rate`)."""
    if rate is None:
        return None
    if not Path(source).expanduser().is_dir():
        raise FieldError("rate is for a folder of frames; a video keeps its own", "rate")
    return parse_rate(rate)


@dataclass(frozen=True)
class VideoInfo:
    """What a reader knows before decoding: frame size as displayed (px: display rotation and non-square
    pixels applied), rate (frames/s as the container declares it, exact; None when unknown), frame count (the
    container's or duration x rate; None when unknown), duration (s, None when unknown), audio present,
    time_base (s per tick of the frames' timestamps), rotation (degrees counter-clockwise applied to the stored
    frames to show them upright)."""

    width: int
    height: int
    rate: Fraction | None
    frames: int | None
    duration: float | None
    has_audio: bool
    time_base: Fraction | None = None
    rotation: int = 0


class TimedFrame(NamedTuple):
    """A decoded frame: image (H, W, 3) uint8 RGB as displayed; pts and duration in ticks of the reader's
    `info.time_base` (pts on the output timeline: see `VideoReader.timed_frames`)."""

    image: np.ndarray
    pts: int
    duration: int


@dataclass(frozen=True)
class Orientation:
    """How a stored frame is shown: transposed (rows <-> columns) first, then mirrored left-right and/or
    upside down. From a display matrix (FFmpeg's AV_PKT_DATA_DISPLAYMATRIX: 9 int32, rows (a b u) (c d v)
    (x y w), a stored pixel (p, q) is shown at (a p + c q, b p + d q)), rounded to the nearest quarter turn."""

    transpose: bool = False
    flip_x: bool = False
    flip_y: bool = False

    @classmethod
    def from_matrix(cls, m: tuple[int, ...] | None) -> Orientation:
        if m is None:
            return cls()
        a, b, c, d = m[0], m[1], m[3], m[4]
        if abs(a) + abs(d) >= abs(b) + abs(c):
            return cls(False, a < 0, d < 0)
        return cls(True, c < 0, b < 0)  # x' = c q, y' = b p

    @property
    def rotation(self) -> int:
        """Counter-clockwise degrees of the quarter turn, followed by a left-right mirror if `mirrored`."""
        return _TURNS[(self.transpose, self.flip_x, self.flip_y)][0]

    @property
    def mirrored(self) -> bool:
        return _TURNS[(self.transpose, self.flip_x, self.flip_y)][1]

    def apply(self, img: np.ndarray) -> np.ndarray:
        """(H, W, C) stored -> as shown (a view)."""
        if self.transpose:
            img = img.transpose(1, 0, 2)
        if self.flip_x:
            img = img[:, ::-1]
        if self.flip_y:
            img = img[::-1]
        return img


# (transpose, flip_x, flip_y) -> (counter-clockwise quarter turn, then mirrored left-right)
_TURNS = {(False, False, False): (0, False), (True, False, True): (90, False), (False, True, True): (180, False),
          (True, True, False): (270, False), (False, True, False): (0, True), (True, True, True): (90, True),
          (False, False, True): (180, True), (True, False, False): (270, True)}


def _display_matrix(path: Path) -> tuple[int, ...] | None:
    """The display matrix of the first video frame (FFmpeg attaches the stream's to every decoded frame; PyAV
    exposes no stream side data), or None (none, or not decodable: the main decoding reports that)."""
    av = require_av()
    try:
        with av.open(str(path), "r") as c:
            for frame in c.decode(video=0):
                for sd in frame.side_data:
                    if sd.type.name == "DISPLAYMATRIX" and len(bytes(sd)) == 36:
                        return struct.unpack("=9i", bytes(sd))
                return None
    except (av.error.FFmpegError, ValueError, StopIteration):
        return None
    return None


class VideoReader:
    """`with VideoReader(path) as r: for frame in r.frames(on_audio=...)` -> RGB (H, W, 3) uint8 frames as
    displayed (display rotation/mirror applied, non-square pixels resampled to square); `r.timed_frames()`
    adds each frame's presentation time and duration.

    on_audio(packet) receives every packet of the first audio stream in demuxing order (interleaved with the
    video), for `VideoWriter.mux_audio`, with its timestamps on the same output timeline as the frames.
    Errors: VideoError naming the file (missing, not a video, corrupt, audio only).
    """

    def __init__(self, path: str | Path):
        av = require_av()
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoError(f"{self.path}: no such file" if not self.path.exists() else f"{self.path}: not a file")
        try:
            self._container = av.open(str(self.path), "r")
        except av.error.FFmpegError as e:
            raise VideoError(f"{self.path}: not a readable video ({_reason(e)})") from None
        try:
            self._video = self._container.streams.video[0] if self._container.streams.video else None
            self.audio = self._container.streams.audio[0] if self._container.streams.audio else None
            if self._video is None:
                what = "an audio-only file" if self.audio is not None else "a file"
                raise VideoError(f"{self.path}: {what} with no video stream")
            self._video.thread_type = "AUTO"
            self.orientation = Orientation.from_matrix(_display_matrix(self.path))
            self.info = self._info()
        except BaseException:
            self._container.close()
            raise

    def _info(self) -> VideoInfo:
        v, c = self._video, self._container
        rate = v.average_rate or v.guessed_rate or v.base_rate
        rate = Fraction(rate) if rate else None
        duration = None
        if v.duration is not None and v.time_base is not None:
            duration = float(v.duration * v.time_base)
        elif c.duration is not None:
            duration = c.duration / 1_000_000  # AV_TIME_BASE
        frames = v.frames or (round(duration * rate) if duration and rate else None)
        width, height = v.codec_context.width, v.codec_context.height
        if not width or not height:
            raise VideoError(f"{self.path}: the video stream has no frame size (corrupt header)")
        sar = v.sample_aspect_ratio
        self._stored_width = max(1, round(width * sar)) if sar and sar > 0 and sar != 1 else width
        width = self._stored_width
        if self.orientation.transpose:
            width, height = height, width
        time_base = Fraction(v.time_base) if v.time_base else Fraction(1, 90000)
        return VideoInfo(width, height, rate, frames, duration, self.audio is not None, time_base,
                         self.orientation.rotation)

    def origin(self) -> Fraction:
        """Where the output timeline starts (s on the file's clock): the earliest start of the video and the
        first audio stream when that is after 0 (an MPEG-TS capture starting at 10 s starts at 0), else 0 (a
        negative start, such as AAC priming, is kept as the muxers handle it). Both streams move together."""
        starts = [Fraction(s.start_time) * s.time_base for s in (self._video, self.audio)
                  if s is not None and s.start_time is not None and s.time_base]
        return max(Fraction(0), min(starts)) if starts else Fraction(0)

    def frames(self, on_audio: Callable | None = None) -> Iterator[np.ndarray]:
        """Decode every frame -> (H, W, 3) uint8 RGB; audio packets go to `on_audio` as they are demuxed."""
        for frame in self.timed_frames(on_audio):
            yield frame.image

    def timed_frames(self, on_audio: Callable | None = None) -> Iterator[TimedFrame]:
        """Decode every frame -> `TimedFrame`s (one frame behind the decoder: a duration is the gap to the next
        frame's pts; the last frame's runs to the stream's end, else its own declared duration). pts are the
        frames' own, minus `origin()`, in `info.time_base` ticks, strictly increasing: a frame without a
        timestamp (a raw H.264 stream) is put one frame after its predecessor (the predecessor's own duration,
        else 1 / info.rate); one whose timestamp is not after its predecessor's (a reset, a broken file) too,
        with one warning."""
        tb, origin = self.info.time_base, self.origin()
        shift = round(origin / tb)
        step = max(1, round(1 / (self.info.rate * tb))) if self.info.rate else 1
        held, last_pts, warned = None, None, False
        for count, frame in enumerate(self._decoded(self._shifted(on_audio, origin))):
            after = None if held is None else last_pts + (held[2] if held[2] and held[2] > 0 else step)
            pts = frame.pts if frame.pts is not None else (after if after is not None else shift)
            if after is not None and pts <= last_pts:
                if not warned:
                    warned = True
                    warn(f"{self.path}: frame timestamps that do not increase (first at frame {count}); such "
                         "frames are put one frame after the one before")
                pts = after
            if held is not None:
                yield TimedFrame(held[0], held[1] - shift, pts - held[1])
            held, last_pts = (self._picture(frame), pts, frame.duration), pts
        if held is not None:
            yield TimedFrame(held[0], held[1] - shift, self._last_duration(held[1], held[2], step))

    def _last_duration(self, pts: int, declared: int | None, step: int) -> int:
        v = self._video
        if v.duration and v.time_base == self.info.time_base:
            end = (v.start_time or 0) + v.duration
            if end > pts:
                return end - pts
        return declared if declared and declared > 0 else step

    def _shifted(self, on_audio: Callable | None, origin: Fraction) -> Callable | None:
        """on_audio with the packets' timestamps moved by -origin (s)."""
        if on_audio is None or self.audio is None or not origin:
            return on_audio
        shift = round(origin / self.audio.time_base)

        def shifted(packet) -> None:
            if packet.pts is not None:
                packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            on_audio(packet)

        return shifted

    def _picture(self, frame) -> np.ndarray:
        """A decoded frame -> (H, W, 3) uint8 RGB as displayed (square pixels, then the display orientation)."""
        if frame.width != self._stored_width and frame.width == self._video.codec_context.width:
            frame = frame.reformat(width=self._stored_width, height=frame.height, format="rgb24",
                                   interpolation="BICUBIC")
        return np.ascontiguousarray(self.orientation.apply(frame.to_ndarray(format="rgb24")))

    def _decoded(self, on_audio: Callable | None) -> Iterator:
        """The decoded av.VideoFrames; audio packets go to `on_audio` as they are demuxed."""
        av = require_av()
        streams = [self._video] + ([self.audio] if self.audio is not None and on_audio is not None else [])
        count = 0
        try:
            for packet in self._container.demux(streams):
                if packet.stream.type == "audio":
                    if packet.dts is not None:  # the demuxer's final empty packet carries no data
                        on_audio(packet)
                    continue
                for frame in packet.decode():
                    count += 1
                    yield frame
        except av.error.FFmpegError as e:
            raise VideoError(f"{self.path}: corrupt video data after {count} frame(s) ({_reason(e)})") from None
        if count == 0:
            raise VideoError(f"{self.path}: no frame could be decoded (corrupt or empty video stream)")

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def natural_key(path: Path) -> tuple:
    """Sort key of a frame's path: numbers in names compare as numbers (f2.png before f10.png), part by part."""
    return tuple(tuple((0, int(t), t) if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", part) if t)
                 for part in path.parts)


class FolderReader:
    """An image sequence: every image of a folder (`mambast.images.list_images`) in natural name order
    (`natural_key`: f1, f2, ..., f10, as file managers show them), each as (H, W, 3) uint8 RGB. Frames of
    another size than the first are resized to it (Lanczos), with one warning line on stderr naming the first
    such frame. `timed_frames`: frame i at pts i, duration 1, in ticks of 1/rate."""

    def __init__(self, path: str | Path, rate: Fraction | None = None):
        self.path = Path(path)
        self.files = sorted(list_images(self.path), key=lambda f: natural_key(f.relative_to(self.path)))
        first = load_image(self.files[0])
        self.info = VideoInfo(first.width, first.height, rate, len(self.files),
                              float(len(self.files) / rate) if rate else None, False,
                              1 / Fraction(rate) if rate else None)
        self.audio = None

    def frames(self, on_audio: Callable | None = None) -> Iterator[np.ndarray]:
        size, warned = (self.info.width, self.info.height), False
        for f in self.files:
            img = load_image(f)
            if img.size != size and not warned:
                warned = True
                warn(f"{f}: {img.width} x {img.height} px, not {size[0]} x {size[1]} like the first frame "
                     f"{self.files[0].name}; frames of another size are resized to the first one's")
            yield np.asarray(img if img.size == size else img.resize(size, Image.LANCZOS))

    def timed_frames(self, on_audio: Callable | None = None) -> Iterator[TimedFrame]:
        for i, image in enumerate(self.frames()):
            yield TimedFrame(image, i, 1)

    def __enter__(self) -> FolderReader:
        return self

    def __exit__(self, *exc) -> None:
        pass


# ------------------------------------------------------------------------------------------------ writing


class VideoWriter:
    """`with VideoWriter(path, rate, width, height, audio=reader.audio) as w: w.write(frame[, pts, duration])`

    H.264 (libx264, yuv420p, CRF `crf`). Timing: frame timestamps `pts` and `duration` in ticks of
    `time_base` (s; default 1/rate, and pts i, duration 1 when not given: exactly `rate` frames/s, so
    30000/1001 stays 30000/1001). Any strictly increasing pts are kept (variable frame rates, GIF delays), and
    the last frame lasts its duration (the container's packet durations are set so, the MP4/MOV last sample
    included). `rate` is the frame rate declared to the encoder. yuv420p needs even sides: an odd width or
    height loses its last column/row. audio: an input audio stream to copy (its packets given to `mux_audio`,
    not re-encoded, on the frames' timeline; `mux_audio` may be called from another thread than `write`).
    The file appears at `path` only once complete (`mambast.fs`).
    """

    def __init__(self, path: str | Path, rate: Fraction, width: int, height: int, audio=None, crf: int = 18,
                 time_base: Fraction | None = None):
        self.av = require_av()
        self.path = Path(path)
        fmt = VIDEO_FORMATS.get(self.path.suffix.lower())
        if fmt is None:
            raise VideoError(f"{self.path}: unsupported output type (use {', '.join(VIDEO_FORMATS)}, or a "
                             "folder for PNG frames)")
        self.width, self.height = width - width % 2, height - height % 2
        if self.width < 2 or self.height < 2:
            raise VideoError(f"{self.path}: a {width} x {height} px frame is too small to encode")
        self.rate, self._fmt, self._audio_in, self._crf = Fraction(rate), fmt, audio, crf
        self.time_base = Fraction(time_base) if time_base else 1 / self.rate
        self.frames_written = 0
        self.start: int | None = None  # pts of the first frame and end (pts + duration) of the last, in ticks
        self.end: int | None = None
        self._durations: dict[int, int] = {}  # pts -> duration of the frames inside the encoder
        self._held = None  # the latest encoded packet: muxed when the next one comes, or last of all
        self._first_dts: int | None = None
        self._lock = threading.Lock()  # audio is muxed from the decoding thread, video from the encoding one

    def __enter__(self) -> VideoWriter:
        folder = ensure_dir(self.path.parent if str(self.path.parent) else ".")
        remove_stale_temp_files(folder, glob.escape(self.path.name))  # what a killed run (SIGKILL) left
        self._file_cm = atomic_open(self.path)
        f = self._file_cm.__enter__()
        try:
            # MP4/MOV edit lists count in the movie time scale (1/1000 s by default): the video's instead,
            # so a start or an end such as 12 x 1001/30000 s stays exact
            options = {"movie_timescale": str(self._timescale())} if self._fmt in ("mp4", "mov") else {}
            self._out = self.av.open(f, "w", format=self._fmt, options=options)
            v = self._out.add_stream("libx264", rate=self.rate)
            v.width, v.height, v.pix_fmt = self.width, self.height, "yuv420p"
            v.codec_context.time_base = self.time_base
            v.options = {"crf": str(self._crf), "preset": "medium"}
            self._v = v
            self._a = None
            if self._audio_in is not None:
                try:
                    self._a = self._out.add_stream_from_template(self._audio_in)
                except (ValueError, self.av.error.FFmpegError) as e:
                    raise VideoError(f"{self.path}: cannot copy the {self._audio_in.codec_context.name} audio "
                                     f"into {self.path.suffix} ({_reason(e)}); try an .mkv output") from None
        except BaseException as e:
            self._file_cm.__exit__(type(e), e, e.__traceback__)
            raise
        return self

    def _timescale(self) -> int:
        """The MP4 video track's time scale: time_base's denominator, doubled up to >= 10000 (as FFmpeg does)."""
        scale = self.time_base.denominator
        while scale < 10000:
            scale *= 2
        return scale

    def write(self, frame: np.ndarray, pts: int | None = None, duration: int | None = None) -> None:
        """Encode one RGB frame (H, W, 3) uint8 (cropped to the writer's even size) shown at `pts` for
        `duration` ticks of `time_base` (default: right after the previous frame, for one frame at `rate`).
        ValueError if pts is not after the previous frame's."""
        if duration is None:
            duration = max(1, round(1 / (self.rate * self.time_base)))
        if pts is None:
            pts = self.end if self.end is not None else 0
        if self.start is None:
            self.start = pts
        elif pts <= self._last_pts:
            raise ValueError(f"frame pts must increase: {pts} after {self._last_pts}")
        frame = np.ascontiguousarray(frame[: self.height, : self.width])
        vf = self.av.VideoFrame.from_ndarray(frame, format="rgb24")
        vf.pts, vf.time_base = pts, self.time_base
        self._last_pts, self.end = pts, pts + duration
        self._durations[pts] = duration
        with self._lock:
            packets = self._v.encode(vf)
        self._encoded(packets)
        self.frames_written += 1

    @property
    def seconds(self) -> float:
        """Duration of the picture written so far (s)."""
        return float((self.end - self.start) * self.time_base) if self.start is not None else 0.0

    def _encoded(self, packets) -> None:
        """Give each encoded packet its frame's duration and mux it, one packet late (see `_finish`)."""
        for p in packets:
            p.duration = self._durations.pop(p.pts, 0)
            if self._first_dts is None:
                self._first_dts = p.dts
            if self._held is not None:
                self._mux(self._held)
            self._held = p

    def _finish(self) -> None:
        """Flush the encoder and mux the last packet. An MP4/MOV track lasts (last dts - first dts) + the last
        sample's duration (B-frames make dts lag pts), so that duration is set to end the picture at `end`."""
        with self._lock:
            packets = self._v.encode(None)
        self._encoded(packets)
        p = self._held
        if p is not None:
            if self._fmt in ("mp4", "mov") and p.dts is not None and self._first_dts is not None:
                p.duration = max(1, (self.end - self.start) - (p.dts - self._first_dts))
            self._mux(p)
            self._held = None

    def mux_audio(self, packet) -> None:
        """Copy one demuxed audio packet into the output (bytes unchanged; timestamps rescaled)."""
        if self._a is not None:
            packet.stream = self._a
            self._mux(packet)

    def _mux(self, packets) -> None:
        try:
            with self._lock:
                self._out.mux(packets)
        except self.av.error.FFmpegError as e:
            raise VideoError(f"{self.path}: cannot write ({_reason(e)})") from None

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._finish()
                self._out.close()
            else:  # the file is discarded: an error while closing must not hide the first one
                with contextlib.suppress(Exception):
                    self._out.close()
        finally:
            self._file_cm.__exit__(exc_type, exc, tb)


class FolderWriter:
    """Numbered PNG frames `frame_000001.png` ... in a folder (created), each written atomically. overwrite:
    first remove the folder's old `frame_*.png` (other files are left alone)."""

    def __init__(self, path: str | Path, overwrite: bool = False, **_):
        self.path = Path(path)
        self.overwrite = overwrite
        self.frames_written = 0

    def __enter__(self) -> FolderWriter:
        ensure_dir(self.path)
        remove_stale_temp_files(self.path, "frame_*.png")  # what a killed run (SIGKILL) left
        if self.overwrite:
            for old in self.path.glob("frame_*.png"):
                if old.is_file() or old.is_symlink():
                    old.unlink()
        return self

    def write(self, frame: np.ndarray, pts: int | None = None, duration: int | None = None) -> None:
        """Write the next frame (H, W, 3) uint8 as PNG (the timing is not kept: a folder has none)."""
        self.frames_written += 1
        buf = io.BytesIO()
        Image.fromarray(frame, "RGB").save(buf, format="PNG")
        atomic_write(self.path / f"frame_{self.frames_written:06d}.png", lambda f: f.write(buf.getvalue()))

    def mux_audio(self, packet) -> None:
        pass

    def __exit__(self, *exc) -> None:
        pass


def _reason(e: Exception) -> str:
    """FFmpeg's short reason (its strerror) without the file name PyAV appends."""
    return (getattr(e, "strerror", None) or str(e)).splitlines()[0][:120]
