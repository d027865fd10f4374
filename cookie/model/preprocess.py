"""Preprocessing of view features (docs/method.md section 1), before any model sees them.

counts -> log1p -> z-score; shares stay in [0, 1]; precomputed embeddings pass through; OD flows
-> a fixed-length vector per region. The z-score is fit on all regions (training is
unsupervised, there is no test split to leak into). Zero-variance columns become zeros, missing
values and masked rows become zeros (the z-scored mean) and a mask bit: never NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

ViewKind = Literal["counts", "shares", "embedding", "zscore"]


def to_tensor(x: Any) -> Tensor:
    """float32 tensor from an array-like (numpy, list, tensor)."""
    if isinstance(x, Tensor):
        return x.detach().float()
    return torch.as_tensor(np.asarray(x, dtype=np.float64)).float()


def _row_mask(x: Tensor, mask: Any | None) -> Tensor:
    if mask is None:
        return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    return torch.as_tensor(np.asarray(mask) if not isinstance(mask, Tensor) else mask).bool().to(x.device)


@dataclass
class Standardizer:
    """Column-wise z-score fit on the present rows, NaN-safe.

    Columns with (near-)zero variance get std 1, so they map to 0 instead of inf/NaN.
    """

    mean: Tensor
    std: Tensor

    @classmethod
    def fit(cls, x: Any, mask: Any | None = None, eps: float = 1e-8) -> "Standardizer":
        t = to_tensor(x)
        rows = _row_mask(t, mask)
        sub = t[rows]
        finite = torch.isfinite(sub)
        count = finite.sum(0).clamp(min=1).to(t.dtype)
        vals = torch.where(finite, sub, torch.zeros((), dtype=t.dtype))
        mean = vals.sum(0) / count
        var = (torch.where(finite, sub - mean, torch.zeros((), dtype=t.dtype)) ** 2).sum(0) / count
        std = var.sqrt()
        # relative cut-off too: a constant float32 column keeps a rounding-error std of ~1e-7 * |mean|
        tol = torch.clamp(mean.abs() * 1e-5, min=eps)
        std = torch.where(std > tol, std, torch.ones_like(std))
        return cls(mean=mean, std=std)

    def transform(self, x: Any, mask: Any | None = None) -> Tensor:
        t = to_tensor(x)
        z = (t - self.mean) / self.std
        z = torch.where(torch.isfinite(z), z, torch.zeros((), dtype=z.dtype))
        if mask is not None:
            z = torch.where(_row_mask(t, mask)[:, None], z, torch.zeros((), dtype=z.dtype))
        return z


def zscore(x: Any, mask: Any | None = None) -> Tensor:
    """Z-score every column over the present rows; masked rows and NaN -> 0."""
    return Standardizer.fit(x, mask).transform(x, mask)


def log1p_zscore(x: Any, mask: Any | None = None) -> Tensor:
    """Counts -> log1p (negative counts clipped to 0) -> z-score."""
    t = to_tensor(x)
    return zscore(torch.log1p(t.clamp(min=0.0)), mask)


def prepare_view(x: Any, kind: ViewKind = "counts", mask: Any | None = None) -> Tensor:
    """One view's features for the models: counts are log1p z-scored, shares clipped to [0, 1],
    embeddings passed through (NaN -> 0), 'zscore' z-scored without log."""
    t = to_tensor(x)
    if kind == "counts":
        out = log1p_zscore(t, mask)
    elif kind == "zscore":
        out = zscore(t, mask)
    elif kind in ("shares", "embedding"):
        out = torch.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0)
        if kind == "shares":
            out = out.clamp(0.0, 1.0)
        if mask is not None:
            out = torch.where(_row_mask(t, mask)[:, None], out, torch.zeros((), dtype=out.dtype))
    else:
        raise ValueError(f"unknown view kind {kind!r}")
    return out


def od_row_col_features(od: Any, normalise: bool = False) -> Tensor:
    """OD matrix (N, N) -> (N, 2N): a region's outflow row and inflow column, concatenated.

    With ``normalise`` the rows (columns) are divided by their sums, i.e. destination and
    origin distributions; without it they are raw counts (log1p z-score them afterwards).
    Fixed length only for a fixed N: use :func:`od_svd_features` for large or varying N.
    """
    t = to_tensor(od)
    if t.ndim == 3:
        t = t.sum(0)
    out_rows, in_cols = t, t.T
    if normalise:
        out_rows = out_rows / out_rows.sum(1, keepdim=True).clamp(min=1e-12)
        in_cols = in_cols / in_cols.sum(1, keepdim=True).clamp(min=1e-12)
    return torch.cat([out_rows, in_cols], dim=1)


def od_svd_features(od: Any, k: int = 32, log: bool = True) -> Tensor:
    """OD matrix (N, N) -> (N, 2k): truncated SVD of the (log1p) row-normalised flows.

    Left singular vectors describe where a region sends trips, right ones where it receives
    them from; scaled by the singular values. Width 2k whatever N is.
    """
    t = to_tensor(od)
    if t.ndim == 3:
        t = t.sum(0)
    t = t.clamp(min=0.0)
    if log:
        t = torch.log1p(t)
    t = t / t.sum(1, keepdim=True).clamp(min=1e-12)
    u, s, vh = torch.linalg.svd(t.double(), full_matrices=False)
    k_eff = min(k, s.shape[0])
    # deterministic signs: the largest-magnitude entry of every left vector is positive
    sign = torch.sign(u[u.abs().argmax(0), torch.arange(u.shape[1])])
    sign[sign == 0] = 1
    u, vh = u * sign, vh * sign[:, None]
    left = (u[:, :k_eff] * s[:k_eff]).float()
    right = (vh[:k_eff].T * s[:k_eff]).float()
    pad = torch.zeros(t.shape[0], k - k_eff)
    return torch.cat([left, pad, right, pad], dim=1)
