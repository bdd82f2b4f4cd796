"""Optical flow on input frames (OpenCV's DIS flow, `opencv-python-headless`: no weights to download),
warping, and the masks of the video style-transfer literature (Ruder et al. 2016, "Artistic style transfer
for videos"; used by Lai et al. 2018 for the warping error). Below both of its users: the flow blend of
`mambast video` (video/stabilise.py) and the warping error (metrics/warping.py).

Convention: `flow(a, b)` is (H, W, 2) float32 (dx, dy) px such that pixel x of frame a shows the same point
as x + flow(x) of frame b; `warp(b, flow)` samples b at x + flow(x), i.e. brings b into a's coordinates.
"""

from __future__ import annotations

import numpy as np

from .errors import UserError
from .images import unit_to_uint8

__all__ = ["DISFlow", "require_cv2", "to_gray", "warp", "inside_mask", "consistency_mask", "motion_boundary_mask",
           "valid_mask"]


def require_cv2():
    """The cv2 module, or a one-line UserError saying how to install it."""
    try:
        import cv2
    except ImportError:
        raise UserError("optical flow needs OpenCV: pip install 'mambast[video]'") from None
    return cv2


def to_gray(frame: np.ndarray) -> np.ndarray:
    """RGB (H, W, 3) uint8, or float in [0, 1] -> (H, W) uint8 luma (what DIS works on)."""
    if frame.dtype != np.uint8:
        frame = unit_to_uint8(frame)
    return require_cv2().cvtColor(np.ascontiguousarray(frame), require_cv2().COLOR_RGB2GRAY)


class DISFlow:
    """Dense inverse search flow (Kroeger et al. 2016) with OpenCV's "medium" preset by default.

    `flow(a, b)`: two RGB or gray frames of one size -> (H, W, 2) float32 flow from a to b (see module doc).
    """

    PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}

    def __init__(self, preset: str = "medium"):
        cv2 = require_cv2()
        self._dis = cv2.DISOpticalFlow_create(self.PRESETS[preset])

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a = a if a.ndim == 2 else to_gray(a)
        b = b if b.ndim == 2 else to_gray(b)
        if a.shape != b.shape:
            raise ValueError(f"flow: frames of different sizes {a.shape} and {b.shape}")
        return self._dis.calc(a, b, None)


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs, ys


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """`image` (H, W[, C]) sampled at x + flow(x) (bilinear; borders replicated, see `inside_mask`)."""
    cv2 = require_cv2()
    h, w = flow.shape[:2]
    xs, ys = _grid(h, w)
    return cv2.remap(image, xs + flow[..., 0], ys + flow[..., 1], interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def inside_mask(flow: np.ndarray) -> np.ndarray:
    """(H, W) bool: x + flow(x) lies inside the frame (a point that did not leave the picture)."""
    h, w = flow.shape[:2]
    xs, ys = _grid(h, w)
    x, y = xs + flow[..., 0], ys + flow[..., 1]
    return (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)


def consistency_mask(fwd: np.ndarray, bwd: np.ndarray) -> np.ndarray:
    """(H, W) bool, True where the forward flow a->b and the backward flow b->a agree (not occluded):
    |fwd + bwd(x + fwd)|^2 <= 0.01 (|fwd|^2 + |bwd(x + fwd)|^2) + 0.5 (Ruder et al. 2016, eq. 7)."""
    back = warp(bwd, fwd)  # (H, W, 2): the backward flow at the forward flow's target
    lhs = ((fwd + back) ** 2).sum(-1)
    rhs = 0.01 * ((fwd**2).sum(-1) + (back**2).sum(-1)) + 0.5
    return lhs <= rhs


def motion_boundary_mask(flow: np.ndarray) -> np.ndarray:
    """(H, W) bool, True away from motion boundaries: |grad u|^2 + |grad v|^2 <= 0.01 |flow|^2 + 0.002
    (Ruder et al. 2016)."""
    gy_u, gx_u = np.gradient(flow[..., 0])
    gy_v, gx_v = np.gradient(flow[..., 1])
    grad = gx_u**2 + gy_u**2 + gx_v**2 + gy_v**2
    return grad <= 0.01 * (flow**2).sum(-1) + 0.002


def valid_mask(fwd: np.ndarray, bwd: np.ndarray, boundaries: bool = True) -> np.ndarray:
    """(H, W) bool: pixels of frame a whose flow a->b is trustworthy (inside, consistent, and, if
    `boundaries`, off motion boundaries)."""
    mask = inside_mask(fwd) & consistency_mask(fwd, bwd)
    return mask & motion_boundary_mask(fwd) if boundaries else mask
