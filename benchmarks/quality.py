"""Building blocks of the quality benchmark (``benchmarks/bench_quality.py``).

* Views from the warehouse: :func:`load_views` reads the ``view_*`` Delta tables (aligned by region id),
  :func:`preprocess_views` applies one of two fixed per-view transforms (``log1p`` z-score, method.md's
  default, or ``linear`` z-score of the counts; Manhattan's mobility out-/in-flows are stored log1p'd by
  the ETL and are turned back into counts for ``linear``).
* Spatial context (method.md section 1, "ours, optional per view"): :func:`adjacency_from_wkb` (polygons
  that touch or overlap, as Manhattan's ``neighbors.json``), :func:`neighbour_mean` (one hop of the
  row-normalised graph, like simplified graph convolution, done once as preprocessing) and
  :func:`with_context` (each view's features followed by their neighbourhood mean).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold, train_test_split

from cookie.evaluation import metrics as M  # noqa: F401

__all__ = [
    "Selection",
    "adjacency_from_wkb",
    "load_views",
    "neighbour_mean",
    "preprocess_views",
    "select_rf",
    "select_ridge",
    "with_context",
]


# --------------------------------------------------------------------------------------------------
# views
# --------------------------------------------------------------------------------------------------
def load_views(cfg: Any, ids: Sequence[str], names: Sequence[str] | None = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, list[str]]]:
    """``(features, masks, column names)`` of the config's views, rows aligned with ``ids``.

    A region missing from a view table, or with ``_present`` false, has a False mask and zero features.
    """
    from cookie.storage.delta import read_frame as read_table

    pos = {r: i for i, r in enumerate(ids)}
    feats, masks, cols = {}, {}, {}
    for v in cfg.views:
        if names is not None and v.name not in names:
            continue
        df = read_table(cfg, f"view_{v.name}")
        df["region_id"] = df["region_id"].astype(str)
        fcols = [c for c in df.columns if c not in ("region_id", "_present")]
        X = np.zeros((len(ids), len(fcols)))
        m = np.zeros(len(ids), dtype=bool)
        rows = df["region_id"].map(pos)
        ok = rows.notna().to_numpy()
        present = df["_present"].fillna(False).to_numpy(dtype=bool) if "_present" in df.columns else np.ones(len(df), bool)
        vals = df[fcols].to_numpy(dtype=float)
        r = rows[ok].astype(int).to_numpy()
        X[r] = np.where(present[ok, None], np.nan_to_num(vals[ok]), 0.0)
        m[r] = present[ok]
        feats[v.name], masks[v.name], cols[v.name] = X, m, fcols
    return feats, masks, cols


def _z(X: np.ndarray, mask: np.ndarray) -> np.ndarray:
    rows = X[mask] if mask.any() else X
    mu, sd = rows.mean(axis=0), rows.std(axis=0)
    Z = (X - mu) / np.where(sd > 1e-12, sd, 1.0)
    return np.where(mask[:, None], Z, 0.0)


def preprocess_views(
    feats: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray],
    columns: Mapping[str, Sequence[str]],
    kinds: Mapping[str, Literal["log1p", "linear", "embedding"]],
) -> dict[str, np.ndarray]:
    """Per view: ``log1p`` -> log1p then z-score (columns named ``out_*`` / ``in_*`` of an OD view are
    already log1p'd by the ETL and are only z-scored); ``linear`` -> z-score of the counts (``out_*`` /
    ``in_*`` are turned back with expm1 first); ``embedding`` -> passed through (zeros where masked)."""
    out = {}
    for name, X in feats.items():
        kind = kinds[name]
        m = np.asarray(masks[name], dtype=bool)
        if kind == "embedding":
            out[name] = np.where(m[:, None], X, 0.0)
            continue
        logged = np.array([c.startswith(("out_", "in_")) for c in columns[name]])
        Y = np.array(X, dtype=float)
        if kind == "log1p":
            Y[:, ~logged] = np.log1p(np.clip(Y[:, ~logged], 0, None))
        elif kind == "linear":
            Y[:, logged] = np.expm1(Y[:, logged])
        else:
            raise ValueError(f"unknown preprocessing {kind!r}")
        out[name] = _z(Y, m)
    return out


# --------------------------------------------------------------------------------------------------
# spatial context
# --------------------------------------------------------------------------------------------------
def adjacency_from_wkb(wkb: Sequence[bytes], tolerance: float = 0.0) -> np.ndarray:
    """Boolean (N, N) adjacency of polygons that intersect (touch or overlap; within ``tolerance``
    coordinate units if > 0), without self-loops. On Manhattan-180 it equals HREP's ``neighbor.npy``."""
    import shapely

    geoms = shapely.from_wkb(np.asarray(list(wkb), dtype=object))
    tree = shapely.STRtree(geoms)
    if tolerance > 0:
        i, j = tree.query(geoms, predicate="dwithin", distance=tolerance)
    else:
        i, j = tree.query(geoms, predicate="intersects")
    A = np.zeros((len(geoms), len(geoms)), dtype=bool)
    A[i, j] = True
    np.fill_diagonal(A, False)
    return A


def neighbour_mean(X: np.ndarray, A: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Mean of ``X`` over each row's neighbours in ``A`` (weights, e.g. 0/1 adjacency or OD counts; rows are
    normalised) that have the view (``mask``). A row without such a neighbour keeps its own features."""
    W = np.asarray(A, dtype=float)
    m = np.ones(X.shape[0], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    W = W * m[None, :]
    deg = W.sum(axis=1, keepdims=True)
    Xm = np.where(m[:, None], X, 0.0)
    agg = (W @ Xm) / np.where(deg > 0, deg, 1.0)
    return np.where(deg > 0, agg, Xm)


def with_context(
    views: Mapping[str, np.ndarray],
    masks: Mapping[str, np.ndarray],
    graphs: Sequence[np.ndarray],
) -> dict[str, np.ndarray]:
    """Each view's features followed by their neighbourhood mean over each graph in ``graphs``."""
    return {k: np.hstack([X] + [neighbour_mean(X, G, masks[k]) for G in graphs]) for k, X in views.items()}


