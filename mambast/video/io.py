"""Video and frame-folder input/output (PyAV, optional extra `mambast[video]`).

Reading: `VideoReader(path)` decodes the first video stream to RGB frames (H, W, 3) uint8 and hands the
packets of the first audio stream, untouched, to a callback; `FolderReader(path)` reads an image sequence
(sorted names, `mambast.images`). Writing: `VideoWriter` encodes H.264 (yuv420p, CRF 18) at an exact rational
frame rate (30000/1001 stays 30000/1001: frame i has pts i in a 1/rate time base) and muxes the copied audio
packets without re-encoding; `FolderWriter` writes numbered PNG frames. Every file goes through `mambast.fs`
(the video is written to a temporary file and renamed when complete).

Problems meant for users (missing, corrupt, audio-only, unsupported output) are one-line `VideoError`s.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError
from ..fs import atomic_open, atomic_write, ensure_dir
from ..images import list_images, load_image

__all__ = ["VIDEO_FORMATS", "VideoError", "VideoInfo", "VideoReader", "VideoWriter", "FolderReader",
           "FolderWriter", "check_paths", "is_video_path", "parse_rate", "require_av", "warn"]

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


def check_paths(source: str | Path, output: str | Path, overwrite: bool = False,
                overwrite_hint: str = "overwrite=True") -> None:
    """Refuse, before any work, an output that would destroy or feed back into the input (one-line VideoError):
    the output is the input (resolved paths, links and hard links included); an output frame folder that is a
    frame-folder input, lies inside it (a later run would read the outputs as frames) or holds it; an output
    frame folder that already holds files, unless `overwrite` (then its old frame_*.png go first)."""
    source, output = Path(source).expanduser(), Path(output).expanduser()
    src, out = source.resolve(), output.resolve()
    if src == out or (source.exists() and output.exists() and os.path.samefile(source, output)):
        raise VideoError(f"{output}: the output is the input; choose another output")
    if is_video_path(output) or (output.suffix and not output.is_dir()):
        return  # a video file (or an unsupported type, refused later)
    if source.is_dir() and (src in out.parents or out in src.parents):
        where = "inside the input folder" if src in out.parents else "a folder holding the input"
        raise VideoError(f"{output}: the output frame folder is {where} {source}; choose a folder outside it")
    if output.is_dir() and not overwrite and any(not p.name.startswith(".") for p in output.iterdir()):
        raise VideoError(f"{output}: the output folder is not empty (its old frames would mix with the new "
                         f"ones); choose an empty folder or pass {overwrite_hint} to replace its frame_*.png")


def parse_rate(text: str | float | Fraction) -> Fraction:
    """A frame rate as an exact fraction: "30000/1001", "29.97" (-> 2997/100), 25 -> Fraction; must be > 0."""
    try:
        rate = Fraction(str(text).strip())
    except (ValueError, ZeroDivisionError):
        raise VideoError(f"frame rate must be a positive number or a fraction like 30000/1001, got {text!r}") \
            from None
    if rate <= 0:
        raise VideoError(f"frame rate must be positive, got {text!r}")
    return rate


@dataclass(frozen=True)
class VideoInfo:
    """What a reader knows before decoding: frame size (px), rate (frames/s, exact), frame count (the
    container's or duration x rate; None when unknown), duration (s, None when unknown), audio present."""

    width: int
    height: int
    rate: Fraction | None
    frames: int | None
    duration: float | None
    has_audio: bool


# ------------------------------------------------------------------------------------------------ reading


class VideoReader:
    """`with VideoReader(path) as r: for frame in r.frames(on_audio=...)` -> RGB (H, W, 3) uint8 frames.

    on_audio(packet) receives every packet of the first audio stream in demuxing order (interleaved with the
    video), for `VideoWriter.mux_audio`. Errors: VideoError naming the file (missing, not a video, corrupt,
    audio only, no frame rate).
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
        return VideoInfo(width, height, rate, frames, duration, self.audio is not None)

    def frames(self, on_audio: Callable | None = None) -> Iterator[np.ndarray]:
        """Decode every frame -> (H, W, 3) uint8 RGB; audio packets go to `on_audio` as they are demuxed."""
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
                    yield frame.to_ndarray(format="rgb24")
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


class FolderReader:
    """An image sequence: every image of a folder in sorted name order (`mambast.images.list_images`), each
    as (H, W, 3) uint8 RGB. Frames of another size than the first are resized to it (Lanczos), with one
    warning line on stderr naming the first such frame."""

    def __init__(self, path: str | Path, rate: Fraction | None = None):
        self.path = Path(path)
        self.files = list_images(self.path)
        first = load_image(self.files[0])
        self.info = VideoInfo(first.width, first.height, rate, len(self.files),
                              float(len(self.files) / rate) if rate else None, False)
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

    def __enter__(self) -> FolderReader:
        return self

    def __exit__(self, *exc) -> None:
        pass


# ------------------------------------------------------------------------------------------------ writing


class VideoWriter:
    """`with VideoWriter(path, rate, width, height, audio=reader.audio) as w: w.write(frame) ...`

    H.264 (libx264, yuv420p, CRF `crf`) at exactly `rate` frames/s. yuv420p needs even sides: an odd width or
    height loses its last column/row. audio: an input audio stream to copy (its packets given to
    `mux_audio`, not re-encoded). The file appears at `path` only once complete (`mambast.fs`).
    """

    def __init__(self, path: str | Path, rate: Fraction, width: int, height: int, audio=None, crf: int = 18):
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
        self.frames_written = 0

    def __enter__(self) -> VideoWriter:
        ensure_dir(self.path.parent if str(self.path.parent) else ".")
        self._file_cm = atomic_open(self.path)
        f = self._file_cm.__enter__()
        try:
            self._out = self.av.open(f, "w", format=self._fmt)
            v = self._out.add_stream("libx264", rate=self.rate)
            v.width, v.height, v.pix_fmt = self.width, self.height, "yuv420p"
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

    def write(self, frame: np.ndarray) -> None:
        """Encode one RGB frame (H, W, 3) uint8 (cropped to the writer's even size)."""
        frame = np.ascontiguousarray(frame[: self.height, : self.width])
        vf = self.av.VideoFrame.from_ndarray(frame, format="rgb24")
        vf.pts, vf.time_base = self.frames_written, 1 / self.rate
        self._mux(self._v.encode(vf))
        self.frames_written += 1

    def mux_audio(self, packet) -> None:
        """Copy one demuxed audio packet into the output (bytes unchanged; timestamps rescaled)."""
        if self._a is not None:
            packet.stream = self._a
            self._mux(packet)

    def _mux(self, packets) -> None:
        try:
            self._out.mux(packets)
        except self.av.error.FFmpegError as e:
            raise VideoError(f"{self.path}: cannot write ({_reason(e)})") from None

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._mux(self._v.encode(None))  # flush the encoder
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
        if self.overwrite:
            for old in self.path.glob("frame_*.png"):
                if old.is_file() or old.is_symlink():
                    old.unlink()
        return self

    def write(self, frame: np.ndarray) -> None:
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
