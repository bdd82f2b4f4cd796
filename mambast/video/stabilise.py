"""`--stability S`: blend each stylized frame with the previous *final* output warped by optical flow.

For frame t (inputs I, stylized O, final outputs P):

    back  = flow(I_t, I_{t-1})                       where each pixel of t was in t-1 (DIS, on the inputs)
    M     = inside & forward-backward consistent & off motion boundaries     (flow.valid_mask; 0 = occluded)
    P_t   = O_t + S * M * (warp(P_{t-1}, back) - O_t)

S = 0 is off (P = O). Because P_{t-1} already carries the blend, the temporal filter is recursive: a point
visible for many frames converges to an exponential average of its stylizations, while newly visible or
occluded pixels take the fresh stylization (M = 0). A scene cut fails the consistency check almost everywhere,
so it resets the blend by itself.
"""

from __future__ import annotations

import numpy as np

from .flow import DISFlow, to_gray, valid_mask, warp

__all__ = ["Stabiliser"]


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
            result = out + (self.strength * mask) * (warp(self._prev_out, back) - out)
        self._prev_gray, self._prev_out = gray, result
        return result
