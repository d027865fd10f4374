"""Building blocks of the quality benchmark (``benchmarks/bench_quality.py``).

* Views from the warehouse: :func:`load_views` reads the ``view_*`` Delta tables (aligned by region id),
  :func:`preprocess_views` applies one of two fixed per-view transforms (``log1p`` z-score, method.md's
  default, or ``linear`` z-score of the counts; Manhattan's mobility out-/in-flows are stored log1p'd by
  the ETL and are turned back into counts for ``linear``).
* Spatial context (method.md section 1, "ours, optional per view"): :func:`adjacency_from_wkb` (polygons
  that touch or overlap, as Manhattan's ``neighbors.json``), :func:`neighbour_mean` (one hop of the
  row-normalised graph, like simplified graph convolution, done once as preprocessing) and
  :func:`with_context` (each view's features followed by their neighbourhood mean).
* Choosing without test rows: :func:`select_ridge` and :func:`select_rf` pick one of several candidate
  feature matrices inside the *training* rows of every outer split of a protocol (inner CV / inner
  validation split) and report the per-split choices (votes) and the nested estimate. When every split
  votes for the same candidate, fixing that candidate gives exactly the nested estimate, so its published
  protocol number involved no selection on test rows.
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

from cookie.evaluation import metrics as M

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
    from cookie.evaluation.tables import read_table

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


# --------------------------------------------------------------------------------------------------
# selection inside training rows
# --------------------------------------------------------------------------------------------------
@dataclass
class Selection:
    """Per outer split: the candidate chosen on the training rows, and the nested test estimate."""

    choices: list[str]
    inner_scores: list[dict[str, float]]
    nested: dict[str, float] = field(default_factory=dict)

    @property
    def votes(self) -> dict[str, int]:
        return dict(Counter(self.choices))

    @property
    def winner(self) -> str:
        """The candidate chosen most often (ties: the first in candidate order among the tied)."""
        counts = Counter(self.choices)
        best = max(counts.values())
        for c in self.inner_scores[0]:
            if counts.get(c, 0) == best:
                return c
        return self.choices[0]

    @property
    def unanimous(self) -> bool:
        return len(set(self.choices)) == 1


def _ridge_oof_r2(X: np.ndarray, ys: Sequence[np.ndarray], splits: list[tuple[np.ndarray, np.ndarray]], alpha: float) -> float:
    scores = []
    for y in ys:
        pred = np.zeros(len(y))
        for tr, te in splits:
            pred[te] = Ridge(alpha=alpha).fit(X[tr], y[tr]).predict(X[te])
        scores.append(M.r2(y, np.maximum(pred, 0.0)))
    return float(np.mean(scores))


def select_ridge(
    candidates: Mapping[str, np.ndarray],
    targets: Sequence[np.ndarray],
    n_splits: int = 5,
    inner_splits: int = 5,
    inner_seeds: Sequence[int] = (0, 1, 2),
    alpha: float = 1.0,
) -> Selection:
    """Choose a candidate per outer fold of the published unshuffled ``KFold(n_splits)`` by inner shuffled
    K-fold on that fold's training rows only (mean R2 over ``targets`` and ``inner_seeds``); ``nested``
    holds the outer R2 per target (``"R2_<i>"``) of the per-fold choices with Ridge(alpha), clipped at 0."""
    names = list(candidates)
    n = len(targets[0])
    outer = list(KFold(n_splits=n_splits).split(np.arange(n)))
    choices, inner = [], []
    preds = [np.zeros(n) for _ in targets]
    for tr, te in outer:
        sc = {}
        for c in names:
            X = candidates[c][tr]
            vals = []
            for s in inner_seeds:
                splits = list(KFold(n_splits=inner_splits, shuffle=True, random_state=s).split(X))
                vals.append(_ridge_oof_r2(X, [y[tr] for y in targets], splits, alpha))
            sc[c] = float(np.mean(vals))
        best = max(names, key=lambda c: sc[c])
        choices.append(best)
        inner.append(sc)
        for p, y in zip(preds, targets):
            p[te] = np.maximum(Ridge(alpha=alpha).fit(candidates[best][tr], y[tr]).predict(candidates[best][te]), 0.0)
    nested = {f"R2_{i}": M.r2(y, p) for i, (y, p) in enumerate(zip(targets, preds))}
    return Selection(choices=choices, inner_scores=inner, nested=nested)


def select_rf(
    candidates: Mapping[str, np.ndarray],
    y: np.ndarray,
    seeds: Sequence[int] = (1, 2, 3),
    test_size: float = 0.2,
    val_size: float = 0.2,
    n_estimators: int = 100,
    n_jobs: int | None = 2,
) -> Selection:
    """RegionDCL's split per seed (``train_test_split(test_size, random_state=s)``); the candidate is chosen
    on a validation split of the training rows (``val_size``, same seed) with
    ``RandomForestRegressor(n_estimators, random_state=s)``; the test rows are never used for the choice.
    ``nested["R2"]`` is the mean test R2 of the chosen candidates (refitted on all training rows)."""
    names = list(candidates)
    idx = np.arange(len(y))
    choices, inner, tests = [], [], []
    for s in seeds:
        tr, te = train_test_split(idx, test_size=test_size, random_state=s)
        fit, val = train_test_split(tr, test_size=val_size, random_state=s)
        sc = {}
        for c in names:
            rf = RandomForestRegressor(n_estimators=n_estimators, random_state=s, n_jobs=n_jobs)
            rf.fit(candidates[c][fit], y[fit])
            sc[c] = M.r2(y[val], rf.predict(candidates[c][val]))
        best = max(names, key=lambda c: sc[c])
        choices.append(best)
        inner.append(sc)
        rf = RandomForestRegressor(n_estimators=n_estimators, random_state=s, n_jobs=n_jobs)
        rf.fit(candidates[best][tr], y[tr])
        tests.append(M.r2(y[te], rf.predict(candidates[best][te])))
    return Selection(choices=choices, inner_scores=inner, nested={"R2": float(np.mean(tests))})
