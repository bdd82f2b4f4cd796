"""`--stability S`: blend each stylized frame with the previous *final* output warped by optical flow.

For frame t (inputs I, stylized O, final outputs P):

    back  = flow(I_t, I_{t-1})                       where each pixel of t was in t-1 (DIS, on the inputs)
    M     = inside & forward-backward consistent & off motion boundaries     (flow.valid_mask; 0 = occluded)
    B     = O_t + S * M * (warp(P_{t-1}, back) - O_t)                       the temporal blend
    P_t   = blur(B) + g * (B - blur(B))                                   detail restored (see below)

S = 0 is off (P = O). Because P_{t-1} already carries the blend, the temporal filter is recursive: a point
visible for many frames converges to an exponential average of its stylizations, while newly visible or
occluded pixels take the fresh stylization (M = 0). A scene cut fails the consistency check almost everywhere,
so it resets the blend by itself.

Averaging stylizations that differ from frame to frame (the flicker) also averages their texture away: the
blend alone raised the paper's style loss by ~20 % at S = 0.2 (benchmarks/video.py). So the blend's fine
detail (B - blur(B), Gaussian sigma 3 px) is rescaled by a local gain g = sqrt(E_O / E_B), the ratio of the
local detail energies (sum over channels of the squared detail, Gaussian sigma 6 px) of the fresh
stylization and of the blend, clipped to [1, sqrt((1 + S) / (1 - S))] (the variance an exponential average
with weight S removes from uncorrelated texture). Where the frames agree g = 1 and nothing changes.
"""

from __future__ import annotations

import numpy as np

from ..flow import DISFlow, require_cv2, to_gray, valid_mask, warp

__all__ = ["Stabiliser", "restore_detail"]

DETAIL_SIGMA = 3.0  # px: the detail band whose energy is restored
ENERGY_SIGMA = 6.0  # px: the neighbourhood over which detail energy is compared


def restore_detail(blend: np.ndarray, fresh: np.ndarray, max_gain: float) -> np.ndarray:
    """`blend` (H, W, 3) float32 with its fine detail rescaled to the local detail energy of `fresh`
    (gain in [1, max_gain]; see the module doc)."""
    cv2 = require_cv2()

    def detail(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        base = cv2.GaussianBlur(x, (0, 0), DETAIL_SIGMA)
        d = x - base
        return base, cv2.GaussianBlur((d * d).sum(-1), (0, 0), ENERGY_SIGMA)  # (H, W, 3), (H, W)

    base, e_blend = detail(blend)
    _, e_fresh = detail(fresh)
    gain = np.sqrt((e_fresh + 1e-6) / (e_blend + 1e-6)).clip(1.0, max_gain)[..., None]  # (H, W, 1)
    return base + gain * (blend - base)


class Stabiliser:
    """Stateful: call once per frame, in order. `strength` S in [0, 1]; `flow` a DISFlow (or any callable
    with its signature)."""

    def __init__(self, strength: float, flow: DISFlow | None = None):
        if not 0 <= strength <= 1:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        self.strength = float(strength)
        self._flow = flow
        self._prev_gray: np.ndarray | None = None
        self._prev_out: np.ndarray | None = None

    def __call__(self, frame_in: np.ndarray, out: np.ndarray) -> np.ndarray:
        """frame_in: input frame (H, W, 3) uint8 at the output's size; out: its stylization (H, W, 3) float32 in
        [0, 1] -> the stabilised output (H, W, 3) float32."""
        if self.strength == 0:
            return out
        gray = to_gray(frame_in)
        result = out
        if self._prev_gray is not None and self._prev_gray.shape == gray.shape:
            if self._flow is None:
                self._flow = DISFlow()
            back = self._flow(gray, self._prev_gray)  # t -> t-1
            fwd = self._flow(self._prev_gray, gray)  # t-1 -> t
            mask = valid_mask(back, fwd).astype(np.float32)[..., None]  # (H, W, 1)
            blend = out + (self.strength * mask) * (warp(self._prev_out, back) - out)
            s = min(self.strength, 0.99)
            result = np.clip(restore_detail(blend, out, float(np.sqrt((1 + s) / (1 - s)))), 0.0, 1.0)
        self._prev_gray, self._prev_out = gray, result
        return result
