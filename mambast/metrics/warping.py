"""Temporal consistency of a stylized video: the warping error of the video-consistency literature
(Lai et al. 2018, "Learning Blind Video Temporal Consistency"; masks of Ruder et al. 2016).

For a pair of frames (t, t+k) of the *input* video, the flow is computed in both directions; the output
frame t+k is warped into frame t with the forward flow and compared with output frame t where the flow is
trustworthy (inside the picture, forward-backward consistent = not occluded, off motion boundaries):

    E(t, t+k) = sum_x M(x) |O_t(x) - warp(O_{t+k}, F_{t->t+k})(x)|^2 / (3 sum_x M(x))    pixels in [0, 1]

short-term: the mean of E(t, t+1) over all t; long-term: the mean of E(t, t+10). Lower is more stable; an
output that follows the input's motion exactly scores ~0.

The flow is OpenCV's DIS (`mambast.flow`), not FlowNet2 or RAFT as in the papers, so absolute numbers
are NOT comparable with published tables; compare methods measured here, with this function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..flow import DISFlow, to_gray, valid_mask, warp
from ..images import uint8_to_unit, unit_to_uint8

__all__ = ["WarpingError", "warping_error", "pair_error", "LONG_TERM_GAP"]

LONG_TERM_GAP = 10


@dataclass(frozen=True)
class WarpingError:
    """short_term: mean E(t, t+1); long_term: mean E(t, t+gap) (None with <= gap frames); pairs: how many
    pairs each mean covers; masked: mean fraction of pixels kept by the mask (short term)."""

    short_term: float
    long_term: float | None
    pairs: tuple[int, int]
    masked: float


def _as_float(frame) -> np.ndarray:
    """PIL, uint8 or float (H, W, 3) -> float32 (H, W, 3) in [0, 1]."""
    a = np.asarray(frame)
    if a.dtype == np.uint8:
        return uint8_to_unit(a)
    return a.astype(np.float32)


def _as_uint8(frame) -> np.ndarray:
    a = np.asarray(frame)
    return a if a.dtype == np.uint8 else unit_to_uint8(a)


def pair_error(out_a: np.ndarray, out_b: np.ndarray, fwd: np.ndarray, bwd: np.ndarray) -> tuple[float, float]:
    """(E, kept fraction) for one pair: outputs a, b (H, W, 3) float in [0, 1]; fwd = flow a->b, bwd = flow
    b->a (H, W, 2). E is nan when the mask keeps no pixel."""
    mask = valid_mask(fwd, bwd)  # (H, W) bool
    kept = int(mask.sum())
    if kept == 0:
        return float("nan"), 0.0
    diff = (out_a - warp(out_b, fwd)) ** 2  # (H, W, 3)
    return float(diff[mask].sum() / (3 * kept)), kept / mask.size


def warping_error(frames_in: Sequence, frames_out: Sequence, gap: int = LONG_TERM_GAP,
                  flow: Callable[[int, int], np.ndarray] | None = None) -> WarpingError:
    """Short- and long-term warping error of `frames_out` (the stylized video) against `frames_in` (its input).

    frames_*: sequences of T frames (H, W, 3), uint8 or float in [0, 1], or PIL images; inputs of another size
    than the outputs are resized to them (flow is computed at the output's size). flow(i, j): optional flow
    from frame i to frame j (H, W, 2) (e.g. the exact flow of a synthetic camera path); default DIS on the
    inputs. Raises ValueError for fewer than 2 frames or a length mismatch.
    """
    if len(frames_in) != len(frames_out):
        raise ValueError(f"frames_in has {len(frames_in)} frames, frames_out {len(frames_out)}")
    if len(frames_out) < 2:
        raise ValueError("warping_error needs at least 2 frames")
    outs = [_as_float(f) for f in frames_out]
    if flow is None:
        flow = _dis_flows([_as_uint8(f) for f in frames_in], outs[0].shape[:2])

    def mean_error(k: int) -> tuple[float | None, int, float]:
        errors, kept = [], []
        for t in range(len(outs) - k):
            e, frac = pair_error(outs[t], outs[t + k], flow(t, t + k), flow(t + k, t))
            kept.append(frac)
            if not np.isnan(e):
                errors.append(e)
        return (float(np.mean(errors)) if errors else None), len(errors), float(np.mean(kept)) if kept else 0.0

    short, n_short, kept = mean_error(1)
    long, n_long, _ = mean_error(gap) if len(outs) > gap else (None, 0, 0.0)
    return WarpingError(float("nan") if short is None else short, long, (n_short, n_long), kept)


def _dis_flows(frames_in: list[np.ndarray], hw: tuple[int, int]) -> Callable[[int, int], np.ndarray]:
    """flow(i, j) by DIS on the input frames at the output size (h, w), computed on demand."""
    import cv2

    h, w = hw
    grays = [to_gray(f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA))
             for f in frames_in]
    dis = DISFlow()
    return lambda i, j: dis(grays[i], grays[j])
