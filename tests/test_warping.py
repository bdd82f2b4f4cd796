"""The warping error (mambast.metrics.warping): ~0 for an output that follows the input's motion exactly
(a per-pixel colour map of the input), growing with per-frame noise; masks and flow conventions."""

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from mambast.flow import DISFlow, consistency_mask, inside_mask, motion_boundary_mask, warp  # noqa: E402
from mambast.metrics.warping import warping_error  # noqa: E402


def _texture(h, w, seed=0):
    """A smooth random RGB texture (H, W, 3) uint8: blurred noise, good for optical flow."""
    rng = np.random.default_rng(seed)
    blurred = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 4.0)
    return ((blurred - blurred.min()) / (blurred.max() - blurred.min()) * 255).astype(np.uint8)


def _pan(frames=13, step=1, size=64, seed=0):
    """A camera pan: frame t is the window of a larger texture shifted right by t * step px (DIS on 64 px
    frames follows the 10 px of the long-term pairs; 20 px is beyond it)."""
    big = _texture(size, size + frames * step, seed)
    return [big[:, t * step: t * step + size] for t in range(frames)]


def _colour_map(frame):
    """A per-pixel colour map (channel swap + inversion + gamma): output follows the input exactly."""
    f = frame.astype(np.float32) / 255.0
    return np.stack([1 - f[..., 2], f[..., 0] ** 2, f[..., 1]], -1)


def test_dis_flow_convention_on_a_shift():
    a = _texture(64, 80)
    b = np.roll(a, 3, axis=1)  # content moves 3 px right: pixel x of a is x + 3 in b
    flow = DISFlow()(a, b)
    inner = flow[8:-8, 8:-8]
    assert np.median(inner[..., 0]) == pytest.approx(3.0, abs=0.1)
    assert np.median(inner[..., 1]) == pytest.approx(0.0, abs=0.1)
    warped = warp(b.astype(np.float32), flow)  # b brought into a's coordinates
    assert np.abs(warped[8:-8, 8:-8] - a[8:-8, 8:-8]).mean() < 2.0  # of 255


def test_masks_on_exact_flows():
    h, w = 20, 30
    fwd = np.zeros((h, w, 2), np.float32)
    fwd[..., 0] = 4.0  # everything moves 4 px right
    bwd = -fwd
    assert consistency_mask(fwd, bwd).all()
    inside = inside_mask(fwd)
    assert inside[:, : w - 4].all() and not inside[:, w - 3:].any()  # the last 4 columns left the picture
    bad = bwd.copy()
    bad[:, :10] = 0.0  # inconsistent backward flow where the forward flow lands in columns 4..9
    cm = consistency_mask(fwd, bad)
    assert not cm[:, :6].any() and cm[:, 10:].all()
    edge = np.zeros((h, w, 2), np.float32)
    edge[:, 15:, 0] = 5.0  # a motion boundary at column 15
    mb = motion_boundary_mask(edge)
    assert not mb[:, 14:16].any() and mb[:, :12].all() and mb[:, 18:].all()


def test_warping_error_zero_for_colour_map_and_grows_with_noise():
    frames = _pan()
    clean = [_colour_map(f) for f in frames]
    base = warping_error(frames, clean)
    assert base.pairs == (12, 3)  # 13 frames: 12 short-term pairs, 3 long-term (t, t+10)
    assert base.masked > 0.8
    assert base.short_term < 2e-4 and base.long_term < 2e-4
    rng = np.random.default_rng(1)
    errors = []
    for sigma in (0.02, 0.05, 0.1):
        noisy = [np.clip(c + rng.normal(0, sigma, c.shape).astype(np.float32), 0, 1) for c in clean]
        e = warping_error(frames, noisy)
        # independent noise on both frames: E ~ 2 sigma^2 (a little less: clipping, bilinear averaging)
        assert 0.6 * 2 * sigma**2 < e.short_term < 1.2 * 2 * sigma**2 + base.short_term
        errors.append(e.short_term)
    assert errors[0] < errors[1] < errors[2]
    assert errors[0] > 10 * base.short_term


def test_warping_error_with_exact_flow_and_inputs_resized():
    frames = _pan(frames=4, step=3)
    outs = [_colour_map(f) for f in frames]

    def exact(i, j):
        f = np.zeros((64, 64, 2), np.float32)
        f[..., 0] = -3.0 * (j - i)  # the camera moves right: content moves left in the frame
        return f

    e = warping_error(frames, outs, flow=exact)
    assert e.short_term < 1e-10 and e.long_term is None and e.pairs == (3, 0)
    big_inputs = [cv2.resize(f, (128, 128), interpolation=cv2.INTER_CUBIC) for f in frames]
    assert warping_error(big_inputs, outs).short_term < 2e-4  # inputs resized to the outputs' size


def test_warping_error_arguments():
    frames = _pan(frames=3)
    with pytest.raises(ValueError, match="frames_in has 3 frames, frames_out 2"):
        warping_error(frames, frames[:2])
    with pytest.raises(ValueError, match="at least 2 frames"):
        warping_error(frames[:1], frames[:1])
