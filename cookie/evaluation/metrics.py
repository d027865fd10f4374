"""Metrics used by the downstream protocols.

Definitions follow the published evaluation code so that numbers are comparable:

* regression (MVURE / MGFN / HREP / HAFusion ``tasks.py``, RegionDCL ``evaluator.py``, which call
  scikit-learn): :func:`mae`, :func:`rmse`, :func:`r2` are scikit-learn's ``mean_absolute_error``,
  ``root_mean_squared_error`` and ``r2_score`` (R2 = 1 - SS_res / SS_tot, negative for a model worse than
  the mean);
* land-use distributions (RegionDCL ``evaluator.py``): per-region quantities averaged over regions:
  :func:`l1_distance` (sum over classes of |p - q|), :func:`kl_divergence`
  (KL(true || predicted), as ``F.kl_div(pred.log(), true, reduction="batchmean")``) and
  :func:`cosine_similarity` (row-wise cosine, as ``torch.cosine_similarity``);
* classification: :func:`accuracy`, :func:`macro_f1` (scikit-learn's ``accuracy_score`` and
  ``f1_score(average="macro", zero_division=0)``);
* clustering (MGFN ``lu_classify``): :func:`nmi`, :func:`ari` (scikit-learn's
  ``normalized_mutual_info_score`` with the arithmetic mean, and ``adjusted_rand_score``).

scikit-learn has no row-averaged L1 / KL / cosine with torch's conventions, so those three are numpy here.
All functions take array-likes and return a plain ``float``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from sklearn import metrics as _skm

__all__ = [
    "accuracy",
    "ari",
    "classification_metrics",
    "clustering_metrics",
    "cosine_similarity",
    "distribution_metrics",
    "kl_divergence",
    "l1_distance",
    "macro_f1",
    "mae",
    "nmi",
    "r2",
    "regression_metrics",
    "rmse",
]


def _pair_1d(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    if t.ndim != 1 or p.ndim != 1:
        raise ValueError(f"expected 1-D targets and predictions, got shapes {t.shape} and {p.shape}")
    if t.shape != p.shape:
        raise ValueError(f"shape mismatch: {t.shape} vs {p.shape}")
    if t.size == 0:
        raise ValueError("empty input")
    return t, p


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute error (scikit-learn's ``mean_absolute_error``)."""
    t, p = _pair_1d(y_true, y_pred)
    return float(_skm.mean_absolute_error(t, p))


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Root mean squared error (scikit-learn's ``root_mean_squared_error``)."""
    t, p = _pair_1d(y_true, y_pred)
    return float(_skm.root_mean_squared_error(t, p))


def r2(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Coefficient of determination, ``1 - SS_res / SS_tot`` (scikit-learn's ``r2_score``).

    A constant target gives 1.0 for a perfect prediction and 0.0 otherwise, as scikit-learn does.
    """
    t, p = _pair_1d(y_true, y_pred)
    return float(_skm.r2_score(t, p))


def regression_metrics(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """``{"MAE", "RMSE", "R2"}``."""
    return {"MAE": mae(y_true, y_pred), "RMSE": rmse(y_true, y_pred), "R2": r2(y_true, y_pred)}


def _pair_2d(p_true: ArrayLike, p_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(p_true, dtype=float)
    p = np.asarray(p_pred, dtype=float)
    if t.ndim == 1:
        t = t[None, :]
    if p.ndim == 1:
        p = p[None, :]
    if t.shape != p.shape or t.ndim != 2:
        raise ValueError(f"expected matching (n, k) arrays, got {t.shape} and {p.shape}")
    if t.shape[0] == 0:
        raise ValueError("empty input")
    return t, p


def l1_distance(p_true: ArrayLike, p_pred: ArrayLike) -> float:
    """Mean over rows of ``sum_k |p_true - p_pred|`` (RegionDCL's land-use L1)."""
    t, p = _pair_2d(p_true, p_pred)
    return float(np.mean(np.sum(np.abs(t - p), axis=1)))


def kl_divergence(p_true: ArrayLike, p_pred: ArrayLike, eps: float = 0.0) -> float:
    """Mean over rows of ``KL(p_true || p_pred) = sum_k t_k (log t_k - log p_k)``.

    Terms with ``t_k == 0`` count 0 (torch's ``kl_div`` uses ``xlogy``). A zero prediction where the
    target is positive gives ``inf`` unless ``eps > 0``, in which case predictions are clipped to
    ``[eps, 1]`` first.
    """
    t, p = _pair_2d(p_true, p_pred)
    if eps > 0:
        p = np.clip(p, eps, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(t > 0, t * (np.log(np.where(t > 0, t, 1.0)) - np.log(p)), 0.0)
    return float(np.mean(np.sum(terms, axis=1)))


def cosine_similarity(p_true: ArrayLike, p_pred: ArrayLike, eps: float = 1e-8) -> float:
    """Mean over rows of the cosine between ``p_true`` and ``p_pred`` (norms clamped at ``eps``).

    A zero row (for instance a region without land use) therefore scores 0.
    """
    t, p = _pair_2d(p_true, p_pred)
    nt = np.maximum(np.linalg.norm(t, axis=1), eps)
    npred = np.maximum(np.linalg.norm(p, axis=1), eps)
    return float(np.mean(np.sum(t * p, axis=1) / (nt * npred)))


def distribution_metrics(p_true: ArrayLike, p_pred: ArrayLike) -> dict[str, float]:
    """``{"L1", "KL", "cosine"}`` for class-share distributions."""
    return {
        "L1": l1_distance(p_true, p_pred),
        "KL": kl_divergence(p_true, p_pred),
        "cosine": cosine_similarity(p_true, p_pred),
    }


def _labels_1d(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    if t.shape != p.shape or t.size == 0:
        raise ValueError(f"expected matching non-empty label vectors, got {t.shape} and {p.shape}")
    return t, p


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Fraction of exact label matches (scikit-learn's ``accuracy_score``)."""
    t, p = _labels_1d(y_true, y_pred)
    return float(_skm.accuracy_score(t, p))


def macro_f1(y_true: ArrayLike, y_pred: ArrayLike, labels: ArrayLike | None = None) -> float:
    """Unweighted mean of per-class F1 over ``labels`` (default: classes present in either input):
    scikit-learn's ``f1_score(average="macro", zero_division=0)``, so a class with no true and no
    predicted member scores 0.
    """
    t, p = _labels_1d(y_true, y_pred)
    lab = None if labels is None else np.asarray(labels).ravel()
    return float(_skm.f1_score(t, p, labels=lab, average="macro", zero_division=0))


def classification_metrics(y_true: ArrayLike, y_pred: ArrayLike, labels: ArrayLike | None = None) -> dict[str, float]:
    """``{"accuracy", "macro_F1"}``."""
    return {"accuracy": accuracy(y_true, y_pred), "macro_F1": macro_f1(y_true, y_pred, labels)}


def nmi(labels_true: ArrayLike, labels_pred: ArrayLike) -> float:
    """Normalised mutual information, arithmetic normalisation (scikit-learn's default)."""
    return float(_skm.normalized_mutual_info_score(np.asarray(labels_true).ravel(), np.asarray(labels_pred).ravel()))


def ari(labels_true: ArrayLike, labels_pred: ArrayLike) -> float:
    """Adjusted Rand index."""
    return float(_skm.adjusted_rand_score(np.asarray(labels_true).ravel(), np.asarray(labels_pred).ravel()))


def clustering_metrics(labels_true: ArrayLike, labels_pred: ArrayLike) -> dict[str, float]:
    """``{"NMI", "ARI"}``."""
    return {"NMI": nmi(labels_true, labels_pred), "ARI": ari(labels_true, labels_pred)}
