"""Frechet Inception Distance (Heusel et al., NeurIPS 2017: "GANs Trained by a Two Time-Scale Update Rule").

FID = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1^1/2 S_2 S_1^1/2)^1/2)
between Gaussian fits (mean, unbiased covariance) of two feature sets. The trace term equals the nuclear norm
of S_1^1/2 S_2^1/2; from features it is computed exactly as the nuclear norm of
R_1 R_2^T / sqrt((n_1-1)(n_2-1)),
R_i the triangular factor of the centred features (X_i = Q_i R_i), which stays finite and accurate when there
are fewer images than feature dimensions (rank-deficient covariances), where scipy's sqrtm of S_1 S_2 fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .preprocess import load_for_metric

__all__ = ["fid_from_features", "frechet_distance", "gaussian_stats", "inception_features", "fid_folders"]


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
    """(n, 2048) pool features of the images at `paths`, preprocessed by `mode` (see metrics.preprocess).

    Images of different sizes are never stacked together: consecutive same-size images form a batch.
    """
    feats: list[np.ndarray] = []
    batch: list[torch.Tensor] = []

    def flush() -> None:
        if batch:
            feats.append(model(torch.stack(batch).to(device)).double().cpu().numpy())
            batch.clear()

    for path in tqdm(paths, desc=desc, unit="img", disable=not progress, leave=False):
        x = load_for_metric(path, mode, size)
        if batch and (x.shape != batch[0].shape or len(batch) >= batch_size):
            flush()
        batch.append(x)
    flush()
    return np.concatenate(feats) if feats else np.zeros((0, 2048))


def fid_folders(
    model: torch.nn.Module, a: Iterable[Path], b: Iterable[Path], mode: str = "paper", size: int = 512, **kw
) -> float:
    """FID between two image lists (e.g. `mambast.images.list_images(folder)`), features from `model`."""
    fa = inception_features(model, list(a), mode, size, desc="features A", **kw)
    fb = inception_features(model, list(b), mode, size, desc="features B", **kw)
    return fid_from_features(fa, fb)
