"""Frechet Inception Distance (Heusel et al., NeurIPS 2017: "GANs Trained by a Two Time-Scale Update Rule").

FID = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1^1/2 S_2 S_1^1/2)^1/2)
between Gaussian fits (mean, unbiased covariance) of two feature sets. The trace term equals the nuclear norm
of S_1^1/2 S_2^1/2; from features it is computed exactly as the nuclear norm of
R_1 R_2^T / sqrt((n_1-1)(n_2-1)),
R_i the triangular factor of the centred features (X_i = Q_i R_i), which stays finite and accurate when there
are fewer images than feature dimensions (rank-deficient covariances), where scipy's sqrtm of S_1 S_2 fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mambast.images import load_image

from .preprocess import for_metric

__all__ = [
    "ImageTooSmall", "fid_from_features", "fid_infinity", "frechet_distance", "gaussian_stats",
    "inception_features", "min_side",
]  # fmt: skip


class ImageTooSmall(ValueError):
    """An image below the smallest size a metric network can take (the message names the file)."""


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) features -> mean (d,), unbiased covariance (d, d) in float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need an (n >= 2, d) feature array, got shape {x.shape}")
    return x.mean(0), np.cov(x, rowvar=False)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric PSD square root via eigendecomposition (negative round-off eigenvalues clipped to 0)."""
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance of N(mu1, sigma1) and N(mu2, sigma2): (d,), (d, d) each.

    The trace term uses the eigenvalues of sqrt(S1) S2 sqrt(S1) (symmetric PSD):
    singular covariances are fine.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError(f"mismatched statistics: {mu1.shape} vs {mu2.shape}, {s1.shape} vs {s2.shape}")
    r1 = _psd_sqrt(s1)
    m = r1 @ s2 @ r1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean, 0.0))


def fid_from_features(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """FID between feature sets a (n1, d) and b (n2, d), n1, n2 >= 2; exact for any n vs d."""
    xa = np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64)
    xb = np.asarray(b.detach().cpu() if isinstance(b, torch.Tensor) else b, dtype=np.float64)
    if xa.ndim != 2 or xb.ndim != 2 or xa.shape[1] != xb.shape[1] or min(len(xa), len(xb)) < 2:
        raise ValueError(f"need (n >= 2, d) features with equal d, got {xa.shape} and {xb.shape}")
    mu_a, mu_b = xa.mean(0), xb.mean(0)
    ca, cb = xa - mu_a, xb - mu_b
    na, nb = len(xa) - 1, len(xb) - 1
    ra = np.linalg.qr(ca, mode="r")  # (min(n1, d), d)
    rb = np.linalg.qr(cb, mode="r")
    nuclear = np.linalg.svd(ra @ rb.T, compute_uv=False).sum()
    tr_a, tr_b = (ca * ca).sum() / na, (cb * cb).sum() / nb
    diff = mu_a - mu_b
    return float(max(diff @ diff + tr_a + tr_b - 2 * nuclear / np.sqrt(na * nb), 0.0))


def fid_infinity(
    a: np.ndarray, b: np.ndarray, num_points: int = 15, min_n: int | None = None, seed: int = 0
) -> tuple[float, list[tuple[int, float]]]:
    """FID_inf (Chong & Forsyth, CVPR 2020) of paired feature sets a, b (n, d) each -> (FID_inf, [(N, FID_N)]).

    FID_N is computed on `num_points` subset sizes N evenly spaced from `min_n` (default max(2, n // 10)) to n,
    each on one random subset of N row indices shared by a and b (rows are pairs: stylized image i and the style
    image it was made with), then FID_N = FID_inf + k / N is fitted by least squares and extrapolated to
    1/N = 0. Not what StyleID's script reports under that name (see docs/evaluation.md): an extra.
    """
    xa, xb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n = len(xa)
    if xa.shape != xb.shape or xa.ndim != 2:
        raise ValueError(f"FID_inf needs paired (n, d) feature sets of one shape, got {xa.shape}, {xb.shape}")
    low = max(2, n // 10) if min_n is None else int(min_n)
    if num_points < 2 or low < 2 or low >= n:
        raise ValueError(f"FID_inf needs num_points >= 2 and 2 <= min_n < n, got {num_points}, {low}, n={n}")
    sizes = np.unique(np.linspace(low, n, num_points).astype(int))
    if len(sizes) < 2:
        raise ValueError(f"FID_inf: subset sizes {sizes.tolist()} give fewer than 2 points")
    rng = np.random.default_rng(seed)
    points = []
    for size in sizes:
        idx = rng.permutation(n)[:size]
        points.append((int(size), fid_from_features(xa[idx], xb[idx])))
    inv = np.array([1.0 / s for s, _ in points])
    values = np.array([v for _, v in points])
    _slope, intercept = np.polyfit(inv, values, 1)
    return float(intercept), points


def min_side(model: torch.nn.Module) -> int:
    """Smallest image side (px) `model` (an InceptionV3) accepts: 75 for layouts fed at native size, else 1."""
    return 75 if getattr(model, "layout", "art") == "art" else 1


@torch.no_grad()
def inception_features(
    model: torch.nn.Module,
    paths: Sequence[Path],
    mode: str = "paper",
    size: int = 512,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    desc: str = "inception",
    progress: bool = True,
) -> np.ndarray:
    """(n, 2048) float64 pool features of the images at `paths` (read by `mambast.images.load_image`, then
    preprocessed for FID by `mode`, see `metrics.preprocess`).

    Consecutive same-size images form a batch (images of different sizes are never stacked). Raises
    ImageTooSmall (naming the file) for an image below `min_side(model)`, ImageError for an unreadable one.
    """
    feats: list[np.ndarray] = []
    batch: list[torch.Tensor] = []
    smallest = min_side(model)

    def flush() -> None:
        if batch:
            feats.append(model(torch.stack(batch).to(device)).double().cpu().numpy())
            batch.clear()

    for path in tqdm(paths, desc=desc, unit="img", disable=not progress, leave=False):
        x = for_metric(load_image(path), mode, size, "fid")  # (3, H, W)
        if min(x.shape[-2:]) < smallest:
            raise ImageTooSmall(
                f"{path}: {x.shape[-1]}x{x.shape[-2]} px after preprocessing, the Inception needs >= {smallest} px"
            )
        if batch and (x.shape != batch[0].shape or len(batch) >= batch_size):
            flush()
        batch.append(x)
    flush()
    return np.concatenate(feats) if feats else np.zeros((0, 2048))
