"""Stylize a frame sequence with the engine (`mambast.inference.Stylizer`), stable by construction:

- the style is encoded once per video (`Stylizer.style_tokens`, on the first frame's grid; with
  preserve_color="match" it is recoloured to the first frame);
- the style shuffle uses one fixed seed for every frame (controls.seed, default 0), so every frame sees the
  same permutation of style tokens and the only frame-to-frame change comes from the content;
- frames go through the model in batches of `batch_size`;
- then, if `stability` > 0, the flow-guided temporal blend of `stabilise.Stabiliser`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..errors import UserError
from ..images import pixels_to_uint8, plan_size, to_tensor, unit_to_uint8
from ..inference import Controls, Stylizer
from ..inference.values import check_number
from .io import (
    FolderReader,
    FolderWriter,
    VideoError,
    VideoReader,
    VideoWriter,
    check_paths,
    is_video_path,
    source_rate,
    warn,
)
from .pipeline import background
from .stabilise import Stabiliser

__all__ = ["DEFAULT_SEED", "DEFAULT_STABILITY", "VideoReport", "stylize_frames", "stylize_video", "video_controls"]

DEFAULT_SEED = 0  # the shuffle seed of a video when none is given
DEFAULT_STABILITY = 0.3  # benchmarks/video.py: the best trade-off (README "Video")


def video_controls(controls: Controls | None) -> Controls:
    """Controls with a fixed shuffle seed (DEFAULT_SEED unless one is given)."""
    controls = controls or Controls()
    return controls if controls.seed is not None else dataclasses.replace(controls, seed=DEFAULT_SEED)


def _batches(items: Iterable, n: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def _as_uint8(frame, index: int) -> np.ndarray:
    """frames[index] as (H, W, 3) uint8 (`mambast.images.pixels_to_uint8`); else UserError."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise UserError(f"frames[{index}]: expected an RGB array (H, W, 3), got shape {frame.shape}")
    return pixels_to_uint8(frame, f"frames[{index}]", "frames")


def _same_size(frames: Iterable, start: int = 0) -> Iterator[np.ndarray]:
    """uint8 frames; one warning line naming the first frame whose size differs from frames[0]'s."""
    shape, warned = None, False
    for i, frame in enumerate(frames, start):
        frame = _as_uint8(frame, i)
        shape = shape or frame.shape
        if frame.shape != shape and not warned:
            warned = True
            warn(f"frames[{i}]: {frame.shape[1]} x {frame.shape[0]} px, not {shape[1]} x {shape[0]} like frames[0]; "
                 "frames of another size are resized to the first one's")
        yield frame


def stylize_frames(stylizer: Stylizer, frames: Iterable[np.ndarray], style, controls: Controls | None = None,
                   batch_size: int = 4, stability: float = DEFAULT_STABILITY,
                   overlap: bool = True) -> Iterator[np.ndarray]:
    """RGB frames (H, W, 3) uint8 (or floats in [0, 1]) -> stylized frames (h, w, 3) uint8 at the stylizer's
    working size, lazily, in order. Frames of another size than the first are resized to the first one's, with
    one warning line on stderr. style: a path or PIL image; controls: see `video_controls` (a fixed seed is
    filled in). Errors: UserError naming frames[i] for another shape/dtype or floats outside [0, 1].

    overlap: run the stages in threads (`pipeline.background`): reading `frames` and preparing batches, the
    model, the flow blend, each while the consumer (an encoder) takes the previous outputs. The outputs are
    the same either way; False runs everything in the caller's thread, one step after the other. The settings
    are checked at the call, before any frame is read."""
    batch_size, stability = _settings(batch_size, stability)
    return _stylize_frames(stylizer, frames, style, video_controls(controls), batch_size, stability, overlap)


def _settings(batch_size: int, stability: float) -> tuple[int, float]:
    """(batch_size, stability) checked: FieldError naming the first bad one."""
    return (check_number(batch_size, "batch_size", 1, whole=True),  # 2.5 was one batch of the whole video
            check_number(stability, "stability", 0, 1))


def _stylize_frames(stylizer: Stylizer, frames: Iterable[np.ndarray], style, controls: Controls, batch_size: int,
                    stability: float, overlap: bool) -> Iterator[np.ndarray]:
    """`stylize_frames` once its settings are checked: the stages, chained lazily."""
    stages: list = []

    def stage(items: Iterator, depth: int, name: str) -> Iterator:
        stages.append(background(items, depth, name) if overlap else items)
        return stages[-1]

    try:
        batches = stage(_prepared(stylizer, frames, batch_size), 2, "mambast-video-read")
        outputs = stage(_stylized(stylizer, batches, style, controls), 2, "mambast-video-model")
        yield from stage(_blended(outputs, stability), 2 * batch_size, "mambast-video-blend")
    finally:  # downstream first, each joined before the next is closed (a traceback may keep them all alive)
        for s in reversed(stages):
            s.close()


def _prepared(stylizer: Stylizer, frames: Iterable, batch_size: int) -> Iterator[tuple[list[np.ndarray], Tensor]]:
    """Batches of (input frames at the working size (h, w, 3) uint8, the same as a (B, 3, h, w) tensor in
    [0, 1]); every frame at the first one's working size."""
    size = None
    for batch in _batches(_same_size(frames), batch_size):
        images = [stylizer.prepare_content(Image.fromarray(f)) for f in batch]
        size = size or images[0].size
        images = [im if im.size == size else im.resize(size, Image.LANCZOS) for im in images]
        yield [np.asarray(im) for im in images], torch.stack([to_tensor(im) for im in images])


def _stylized(stylizer: Stylizer, batches: Iterable, style, controls: Controls) -> Iterator:
    """(input frames, stylized (B, h, w, 3) float32 in [0, 1]) per batch: the style encoded once, on the first
    frame's grid, one shuffle permutation for all."""
    tokens = None
    for images, x in batches:
        if tokens is None:
            tokens = stylizer.style_tokens(style, stylizer.grid(x.shape[-1], x.shape[-2]), controls, x[0])
        out = stylizer.render(stylizer.encode_content(x), [tokens], controls)  # (B, 3, h, w)
        yield images, out.float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()


def _blended(outputs: Iterable, stability: float) -> Iterator[np.ndarray]:
    """Each stylized frame through the flow blend (in order), as (h, w, 3) uint8."""
    stabiliser = Stabiliser(stability)
    for images, out in outputs:
        for image, o in zip(images, out, strict=True):
            yield unit_to_uint8(stabiliser(image, o))


@dataclass
class VideoReport:
    """What `stylize_video` did: frames written, output size (px), frame rate (frames/s: the source's declared
    rate when the frames follow it, else their average over the video: a variable-rate source), audio
    copied, seconds taken, duration of the written video (s; None for a frame folder), whether the frames came
    at the declared rate (False: a variable rate, `rate` is the average)."""

    frames: int
    width: int
    height: int
    rate: Fraction | None
    audio: bool
    seconds: float
    duration: float | None = None
    declared_rate: bool = True


def stylize_video(stylizer: Stylizer, source: str | Path, style, output: str | Path,
                  controls: Controls | None = None, batch_size: int = 4, stability: float = DEFAULT_STABILITY,
                  rate: str | float | Fraction | None = None, progress: bool = True, overwrite: bool = False,
                  overlap: bool = True) -> VideoReport:
    """Stylize a video file or a folder of frames into a video file (.mp4/.m4v/.mov/.mkv: H.264, every frame
    at its source time, audio copied in sync; see `VideoWriter`) or a folder of PNG frames. A video is read as
    it displays (`VideoReader`: rotation, mirror and non-square pixels applied) and written upright.

    rate: frames/s of a frame-folder source (`parse_rate`: 25, "30000/1001"; needed only for a video output;
    default 25; FieldError naming `rate` for a video source, which keeps its own). overwrite: replace
    an existing output video, or write into a frame folder that already holds files (its old frame_*.png are
    removed first); without it both are refused. overlap: decode, model, flow blend and encode in overlapping
    threads (`stylize_frames`; same output). Errors: one-line VideoError / ImageError (missing, corrupt,
    audio-only, unwritable output; refused before any work: the output is the input, an output frame folder
    inside/holding the input folder, an output that exists without overwrite).
    """
    from tqdm.auto import tqdm

    source, output = Path(source), Path(output)
    _settings(batch_size, stability)  # before anything is opened
    rate = source_rate(source, rate)
    check_paths(source, output, overwrite)
    reader = FolderReader(source, rate or Fraction(25)) if source.is_dir() else VideoReader(source)
    with reader:
        info = reader.info
        width, height = plan_size(info.width, info.height, stylizer.size)
        if is_video_path(output):
            writer = VideoWriter(output, info.rate or Fraction(25), width, height, audio=reader.audio,
                                 time_base=info.time_base)
        elif output.suffix and not output.is_dir():
            raise VideoError(f"{output}: unsupported output type (use .mp4, .m4v, .mov, .mkv, or a folder for "
                             "PNG frames)")
        else:
            writer = FolderWriter(output, overwrite=overwrite)
        start = time.perf_counter()
        with writer, tqdm(total=info.frames, unit="frame", disable=not progress, dynamic_ncols=True) as bar:
            times: deque[tuple[int, int]] = deque()  # (pts, duration) of the frames inside stylize_frames

            def images() -> Iterator[np.ndarray]:
                for f in reader.timed_frames(on_audio=writer.mux_audio):
                    times.append((f.pts, f.duration))
                    yield f.image

            # closed (its threads stopped) before the writer and the reader close, on an error or Ctrl-C too
            with contextlib.closing(stylize_frames(stylizer, images(), style, controls, batch_size, stability,
                                                   overlap)) as outputs:
                for frame in outputs:
                    writer.write(frame, *times.popleft())
                    bar.update(1)
    seconds = time.perf_counter() - start
    if isinstance(writer, VideoWriter):  # even sides for yuv420p; the rate the frames kept
        rate = _rate(info.rate, writer)
        return VideoReport(writer.frames_written, writer.width, writer.height, rate, reader.audio is not None,
                           seconds, writer.seconds, rate == info.rate)
    return VideoReport(writer.frames_written, width, height, info.rate, False, seconds, None)


def _rate(declared: Fraction | None, writer: VideoWriter) -> Fraction | None:
    """The declared rate when the written frames follow it (average within 0.5 %), else their average rate."""
    if writer.frames_written == 0 or writer.seconds <= 0:
        return declared
    average = writer.frames_written / Fraction(writer.seconds)
    if declared and abs(average / declared - 1) <= Fraction(1, 200):
        return declared
    return average.limit_denominator(1000)
