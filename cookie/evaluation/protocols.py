"""Downstream protocols on frozen region embeddings, each as published.

Every protocol takes an embedding matrix ``X`` of shape ``(N, d)`` (rows = regions, in the same order as
the labels) and returns a :class:`ProtocolResult`: mean (and std over runs) of its metrics, the per-run
metrics, the parameters, and out-of-fold / test predictions aligned with the rows of ``X`` for maps.

Published protocols (numbers comparable with the papers):

* :func:`ridge_kfold` -- MVURE / MGFN / HREP ``tasks.py`` (5 folds) and HAFusion (10 folds):
  ``Ridge(alpha=1)``, ``KFold(n_splits)`` **without shuffling**, predictions clipped at 0, MAE / RMSE / R2
  on the concatenated out-of-fold predictions.
* :func:`kmeans_clustering` -- MGFN ``lu_classify``: ``KMeans(12, random_state=3)`` -> NMI / ARI against the
  community districts.
* :func:`rf_split` -- RegionDCL population density: per seed ``train_test_split(test_size=0.2,
  random_state=s)`` and ``RandomForestRegressor(100, random_state=s)``; mean +- std over seeds 1..10.
* :func:`landuse_mlp` -- RegionDCL land use: ``Linear(d,512)-Sigmoid-Linear(512,k)-Softmax``, KL loss,
  Adam(0.01), StepLR(10, 0.8), batch 64; test score at the best *validation* epoch.

Added protocols (ours, reported beside the published ones):

* :func:`ridge_kfold_repeated` -- the Ridge protocol with ``KFold(shuffle=True, random_state=s)`` over 10
  seeds, mean +- std, so that differences can be told from noise;
* :func:`spatial_block_cv` -- spatial block cross-validation: whole blocks of regions (e.g. from
  :func:`grid_blocks`) are held out together (``GroupKFold``, or shuffled group folds per seed);
* :func:`kmeans_clustering_repeated` -- KMeans over several random states;
* :func:`dominant_class` -- arg-max land-use class with a logistic regression, shuffled stratified K-fold,
  accuracy and macro-F1.

No protocol selects an epoch, a model or a hyper-parameter on test rows: the only selection (the MLP's
epoch) is made on a validation split carved out of the training rows.

Standard deviations are population standard deviations over runs (``np.std``, ``ddof=0``), as RegionDCL
reports them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike
from sklearn.cluster import KMeans
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from cookie.evaluation import metrics as M
from cookie.evaluation.selection import PartChoice

if TYPE_CHECKING:
    import torch

__all__ = [
    "ProtocolResult",
    "dominant_class",
    "grid_blocks",
    "kmeans_clustering",
    "kmeans_clustering_repeated",
    "landuse_mlp",
    "rf_split",
    "ridge_kfold",
    "ridge_kfold_repeated",
    "spatial_block_cv",
]


_F = TypeVar("_F", bound=Callable[..., Any])
_T = TypeVar("_T")


def _one_blas_thread(fn: _F) -> _F:
    """Run ``fn`` with one BLAS thread.

    The protocols multiply small matrices (a few thousand rows) many times over: OpenBLAS's threads cost more
    than they give there. On 2 cores the 50 logistic regressions of :func:`dominant_class` on 2,033 NYC tracts
    took 200 s with two BLAS threads and 20 s with one. Random forests and KMeans use their own threads.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------
# result object
# --------------------------------------------------------------------------------------------------
@dataclass
class ProtocolResult:
    """Outcome of one protocol run.

    Attributes:
        protocol: short id of the protocol, e.g. ``"ridge-kfold5"`` or ``"rf-split-x10"``.
        mean: metric name -> value (the mean over runs; the single value for one-run protocols).
        std: metric name -> std over runs, or ``None`` for a protocol with a single run.
        runs: one dict per run (seed, and for the MLP its epoch budget and chosen epoch) with its metrics.
        predictions: predictions aligned with the rows of ``X`` (out-of-fold for cross-validation; for
            split protocols the mean over the runs in which the row was a test row, NaN if never tested;
            cluster ids for KMeans; class ids for classification), or ``None``.
        params: the protocol's parameters.
        extra: protocol-specific arrays (fold ids, per-seed predictions, test masks, ...).
    """

    protocol: str
    mean: dict[str, float]
    std: dict[str, float | None]
    runs: list[dict[str, Any]]
    predictions: np.ndarray | None
    params: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        """Alias of :attr:`mean`."""
        return self.mean

    @property
    def n_runs(self) -> int:
        return len(self.runs)

    def __getitem__(self, metric: str) -> float:
        return self.mean[metric]

    def as_dict(self) -> dict[str, Any]:
        """Metrics as a flat dict: ``{"R2": .., "R2_std": .., ...}`` (no arrays)."""
        out: dict[str, Any] = {"protocol": self.protocol, "n_runs": self.n_runs}
        for k, v in self.mean.items():
            out[k] = v
            out[f"{k}_std"] = self.std.get(k)
        return out

    def to_records(self, dataset: str, method: str, task: str) -> list[dict[str, Any]]:
        """Records ``(dataset, method, task, protocol, metric, mean, std)`` for :mod:`cookie.evaluation.report`."""
        return [
            {
                "dataset": dataset,
                "method": method,
                "task": task,
                "protocol": self.protocol,
                "metric": k,
                "mean": float(v),
                "std": None if self.std.get(k) is None else float(self.std[k]),  # type: ignore[arg-type]
            }
            for k, v in self.mean.items()
        ]


def _summarise(
    runs: Sequence[Mapping[str, Any]], names: Sequence[str]
) -> tuple[dict[str, float], dict[str, float | None]]:
    mean = {k: float(np.mean([r[k] for r in runs])) for k in names}
    if len(runs) > 1:
        std: dict[str, float | None] = {k: float(np.std([r[k] for r in runs])) for k in names}
    else:
        std = dict.fromkeys(names)
    return mean, std


# --------------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------------
def _as_X(X: ArrayLike) -> np.ndarray:
    arr = np.asarray(X, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"X must be (N, d), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("X contains NaN or inf; restrict to regions that have an embedding first")
    return arr


def _as_y(y: ArrayLike, n: int) -> np.ndarray:
    arr = np.asarray(y, dtype=float)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"y must be (N,) or (N, 1), got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"X has {n} rows but y has {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("y contains NaN or inf")
    return arr


_REG_METRICS = ("MAE", "RMSE", "R2")


def _clip(pred: np.ndarray, clip_min: float | None) -> np.ndarray:
    if clip_min is None:
        return pred
    clipped: np.ndarray = np.maximum(pred, clip_min)
    return clipped


def _oof_predict(
    X: np.ndarray,
    y: np.ndarray,
    splits: Iterable[tuple[np.ndarray, np.ndarray]],
    make_model: Callable[[], Any],
    groups: np.ndarray | None = None,
    choices: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold predictions (in row order) and the fold id of each row.

    A :class:`PartChoice` model gets the training rows' ``groups`` (its inner split then keeps blocks
    whole), and its choice per fold is appended to ``choices``.
    """
    pred = np.full(y.shape[0], np.nan)
    fold = np.full(y.shape[0], -1, dtype=int)
    for k, (tr, te) in enumerate(splits):
        model = _fit(make_model(), X[tr], y[tr], None if groups is None else groups[tr], choices)
        pred[te] = model.predict(X[te])
        fold[te] = k
    if np.any(fold < 0):
        raise RuntimeError("some rows were never in a test fold")
    return pred, fold


def _fit(model: Any, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None, choices: list[str] | None) -> Any:
    """``model`` fitted on ``X, y``; a :class:`PartChoice` also gets ``groups`` and reports its choice."""
    if isinstance(model, PartChoice):
        model.fit(X, y, groups=groups)
        if choices is not None:
            choices.append(model.chosen_)
    else:
        model.fit(X, y)
    return model


def _choosing(
    make: Callable[[], Any], parts: Mapping[str, np.ndarray] | None, n_inner: int, seed: int | None = None
) -> Callable[[], Any]:
    """``make`` itself, or (with candidate ``parts``) a factory of :class:`PartChoice` models around it."""
    if not parts:
        return make
    return lambda: PartChoice(make, parts, n_inner=n_inner, random_state=0 if seed is None else seed)


def _with_choices(params: dict[str, Any], parts: Mapping[str, np.ndarray] | None, choices: list[str]) -> dict[str, Any]:
    """``params`` plus, when parts were chosen, the candidates and how often each was chosen."""
    if parts:
        params["parts"] = list(parts)
        params["part_votes"] = {p: choices.count(p) for p in parts}
    return params


def _ridge_factory(alpha: float) -> Callable[[], Ridge]:
    return lambda: Ridge(alpha=alpha)


# --------------------------------------------------------------------------------------------------
# Ridge K-fold (MVURE / MGFN / HREP / HAFusion)
# --------------------------------------------------------------------------------------------------
@_one_blas_thread
def ridge_kfold(
    X: ArrayLike,
    y: ArrayLike,
    n_splits: int = 5,
    alpha: float = 1.0,
    clip_min: float | None = 0.0,
    parts: Mapping[str, np.ndarray] | None = None,
) -> ProtocolResult:
    """The published Manhattan-180 regression protocol.

    ``Ridge(alpha)`` fitted on each fold of ``KFold(n_splits)`` **without shuffling** (folds are contiguous
    blocks of rows in their given order), predictions clipped at ``clip_min`` (0), and MAE / RMSE / R2
    computed once on the concatenated out-of-fold predictions. Crime and check-in use ``n_splits=5``
    (MVURE / MGFN / HREP); service calls use ``n_splits=10`` (HAFusion).

    Returns a single-run :class:`ProtocolResult` (``std`` is ``None``); ``predictions`` are the clipped
    out-of-fold predictions in row order and ``extra["fold"]`` the fold id of each row.

    ``parts`` (``{name: column indices of X}``, here and in every supervised protocol): on each training
    part the candidate is chosen by an inner split of those rows (:class:`PartChoice`; 5 shuffled folds for
    Ridge), and ``params["part_votes"]`` counts the choices.
    """
    Xa = _as_X(X)
    ya = _as_y(y, Xa.shape[0])
    splits = KFold(n_splits=n_splits).split(Xa)
    choices: list[str] = []
    pred, fold = _oof_predict(Xa, ya, splits, _choosing(_ridge_factory(alpha), parts, 5), choices=choices)
    pred = _clip(pred, clip_min)
    run = {"seed": None, **M.regression_metrics(ya, pred)}
    mean, std = _summarise([run], _REG_METRICS)
    return ProtocolResult(
        protocol=f"ridge-kfold{n_splits}",
        mean=mean,
        std=std,
        runs=[run],
        predictions=pred,
        params=_with_choices(
            {"n_splits": n_splits, "alpha": alpha, "shuffle": False, "clip_min": clip_min}, parts, choices
        ),
        extra={"fold": fold},
    )


@_one_blas_thread
def ridge_kfold_repeated(
    X: ArrayLike,
    y: ArrayLike,
    n_splits: int = 5,
    alpha: float = 1.0,
    seeds: Iterable[int] = range(1, 11),
    clip_min: float | None = 0.0,
    parts: Mapping[str, np.ndarray] | None = None,
) -> ProtocolResult:
    """The Ridge protocol repeated with shuffled folds: ``KFold(n_splits, shuffle=True, random_state=s)``.

    Per seed, MAE / RMSE / R2 on that seed's concatenated out-of-fold predictions; the result is the
    mean +- std over seeds. ``predictions`` is the mean out-of-fold prediction over seeds;
    ``extra["predictions_per_seed"]`` has shape ``(n_seeds, N)``.
    """
    Xa = _as_X(X)
    ya = _as_y(y, Xa.shape[0])
    seeds = list(seeds)
    runs, preds = [], []
    choices: list[str] = []
    for s in seeds:
        splits = KFold(n_splits=n_splits, shuffle=True, random_state=s).split(Xa)
        pred, _ = _oof_predict(Xa, ya, splits, _choosing(_ridge_factory(alpha), parts, 5, s), choices=choices)
        pred = _clip(pred, clip_min)
        preds.append(pred)
        runs.append({"seed": s, **M.regression_metrics(ya, pred)})
    mean, std = _summarise(runs, _REG_METRICS)
    per_seed = np.vstack(preds)
    return ProtocolResult(
        protocol=f"ridge-kfold{n_splits}-shuffled-x{len(seeds)}",
        mean=mean,
        std=std,
        runs=runs,
        predictions=per_seed.mean(axis=0),
        params=_with_choices(
            {"n_splits": n_splits, "alpha": alpha, "shuffle": True, "seeds": seeds, "clip_min": clip_min},
            parts,
            choices,
        ),
        extra={"predictions_per_seed": per_seed},
    )


# --------------------------------------------------------------------------------------------------
# spatial block cross-validation
# --------------------------------------------------------------------------------------------------
def grid_blocks(
    coords: ArrayLike,
    cell_size: float | tuple[float, float] | None = None,
    n_bins: int | tuple[int, int] | None = None,
) -> np.ndarray:
    """Block id per region from its point coordinates binned to a regular grid.

    Args:
        coords: ``(N, 2)`` array of x / y (or lon / lat, or projected metres) per region, e.g. centroids.
        cell_size: grid cell size in the units of ``coords`` (one value or one per axis), or
        n_bins: the number of cells per axis over the bounding box instead.

    Returns:
        ``(N,)`` int array of consecutive block ids ``0..B-1`` (only occupied cells get an id), ordered by
        cell (x first, then y).
    """
    c = np.asarray(coords, dtype=float)
    if c.ndim != 2 or c.shape[1] != 2:
        raise ValueError(f"coords must be (N, 2), got {c.shape}")
    if (cell_size is None) == (n_bins is None):
        raise ValueError("give exactly one of cell_size and n_bins")
    lo = c.min(axis=0)
    if n_bins is not None:
        nb = np.broadcast_to(np.asarray(n_bins, dtype=float), (2,))
        span = c.max(axis=0) - lo
        size = np.where(span > 0, span / nb, 1.0)
        cells = np.minimum(np.floor((c - lo) / size), nb - 1).astype(int)
    else:
        size = np.broadcast_to(np.asarray(cell_size, dtype=float), (2,))
        if np.any(size <= 0):
            raise ValueError("cell_size must be positive")
        cells = np.floor((c - lo) / size).astype(int)
    _, ids = np.unique(cells, axis=0, return_inverse=True)
    return ids.reshape(-1).astype(int)


def _shuffled_group_folds(groups: np.ndarray, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """GroupKFold-like balanced folds with the groups visited in a seeded random order."""
    uniq, inv, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if len(uniq) < n_splits:
        raise ValueError(f"{len(uniq)} groups cannot make {n_splits} folds")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    # largest groups first (stable on the shuffled order) so that the folds stay balanced
    order = order[np.argsort(-counts[order], kind="stable")]
    fold_of_group = np.empty(len(uniq), dtype=int)
    sizes = np.zeros(n_splits, dtype=int)
    for g in order:
        k = int(np.argmin(sizes))
        fold_of_group[g] = k
        sizes[k] += counts[g]
    fold = fold_of_group[inv.reshape(-1)]
    idx = np.arange(len(groups))
    return [(idx[fold != k], idx[fold == k]) for k in range(n_splits)]


@_one_blas_thread
def spatial_block_cv(
    X: ArrayLike,
    y: ArrayLike,
    blocks: ArrayLike,
    n_splits: int = 5,
    model: str | Callable[[], Any] = "ridge",
    alpha: float = 1.0,
    seeds: Iterable[int] | None = None,
    n_estimators: int = 100,
    n_jobs: int | None = None,
    clip_min: float | None = 0.0,
    parts: Mapping[str, np.ndarray] | None = None,
) -> ProtocolResult:
    """Spatial block cross-validation: the regions of one block are always in the same fold.

    Args:
        blocks: ``(N,)`` block id per region (e.g. :func:`grid_blocks` of the centroids).
        model: ``"ridge"`` (``Ridge(alpha)``), ``"rf"`` (``RandomForestRegressor(n_estimators,
            random_state=seed)``) or a zero-argument factory returning a scikit-learn regressor.
        seeds: ``None`` for one deterministic ``GroupKFold(n_splits)``; otherwise, per seed, groups are
            assigned to balanced folds in a seeded random order, and the result is mean +- std over seeds.

    Metrics per run are MAE / RMSE / R2 on the concatenated out-of-fold predictions (clipped at
    ``clip_min``). With ``parts``, the inner split that chooses among them keeps blocks whole too
    (``GroupKFold(5)`` of the training blocks for Ridge, one 20 % hold-out of blocks for a forest).
    """
    Xa = _as_X(X)
    ya = _as_y(y, Xa.shape[0])
    groups = np.asarray(blocks).reshape(-1)
    if groups.shape[0] != Xa.shape[0]:
        raise ValueError(f"X has {Xa.shape[0]} rows but blocks has {groups.shape[0]}")
    seed_list: list[int | None] = [None] if seeds is None else list(seeds)

    def factory(seed: int | None) -> Callable[[], Any]:
        if callable(model):
            return model
        if model == "ridge":
            return _ridge_factory(alpha)
        if model == "rf":
            rs = 0 if seed is None else seed
            return lambda: RandomForestRegressor(n_estimators=n_estimators, random_state=rs, n_jobs=n_jobs)
        raise ValueError(f"unknown model {model!r}")

    runs, preds, folds = [], [], []
    choices: list[str] = []
    n_inner = 1 if model == "rf" else 5
    for s in seed_list:
        if s is None:
            if len(np.unique(groups)) < n_splits:
                raise ValueError(f"{len(np.unique(groups))} groups cannot make {n_splits} folds")
            splits = list(GroupKFold(n_splits=n_splits).split(Xa, ya, groups))
        else:
            splits = _shuffled_group_folds(groups, n_splits, s)
        make = _choosing(factory(s), parts, n_inner, s)
        pred, fold = _oof_predict(Xa, ya, splits, make, groups=groups, choices=choices)
        pred = _clip(pred, clip_min)
        preds.append(pred)
        folds.append(fold)
        runs.append({"seed": s, **M.regression_metrics(ya, pred)})
    mean, std = _summarise(runs, _REG_METRICS)
    name = model if isinstance(model, str) else "custom"
    per_seed = np.vstack(preds)
    suffix = "" if seeds is None else f"-x{len(seed_list)}"
    return ProtocolResult(
        protocol=f"{name}-spatial-block{n_splits}{suffix}",
        mean=mean,
        std=std,
        runs=runs,
        predictions=per_seed.mean(axis=0),
        params=_with_choices(
            {
                "n_splits": n_splits,
                "model": name,
                "alpha": alpha,
                "seeds": None if seeds is None else seed_list,
                "n_blocks": len(np.unique(groups)),
                "clip_min": clip_min,
            },
            parts,
            choices,
        ),
        extra={"predictions_per_seed": per_seed, "fold_per_seed": np.vstack(folds)},
    )


# --------------------------------------------------------------------------------------------------
# KMeans clustering (MGFN land-usage task)
# --------------------------------------------------------------------------------------------------
@_one_blas_thread
def kmeans_clustering(
    X: ArrayLike,
    labels: ArrayLike,
    n_clusters: int = 12,
    random_state: int = 3,
    n_init: int | str = 10,
) -> ProtocolResult:
    """MGFN's land-usage task: ``KMeans(n_clusters=12, random_state=3)`` on ``X``, NMI / ARI vs ``labels``.

    ``n_init=10`` is scikit-learn's default at the time the protocol was published (before 1.4 changed it
    to ``"auto"``, which is 1 run for k-means++). ``predictions`` are the cluster ids.
    """
    Xa = _as_X(X)
    lab = np.asarray(labels).reshape(-1)
    if lab.shape[0] != Xa.shape[0]:
        raise ValueError(f"X has {Xa.shape[0]} rows but labels has {lab.shape[0]}")
    km = KMeans(n_clusters=n_clusters, random_state=random_state, n_init=n_init)
    clusters = km.fit_predict(Xa)
    run = {"seed": random_state, **M.clustering_metrics(lab, clusters)}
    mean, std = _summarise([run], ("NMI", "ARI"))
    return ProtocolResult(
        protocol=f"kmeans{n_clusters}",
        mean=mean,
        std=std,
        runs=[run],
        predictions=clusters,
        params={"n_clusters": n_clusters, "random_state": random_state, "n_init": n_init},
    )


@_one_blas_thread
def kmeans_clustering_repeated(
    X: ArrayLike,
    labels: ArrayLike,
    n_clusters: int = 12,
    seeds: Iterable[int] = range(1, 11),
    n_init: int | str = 10,
) -> ProtocolResult:
    """:func:`kmeans_clustering` over several random states; mean +- std of NMI / ARI.

    ``predictions`` are the cluster ids of the first seed; ``extra["clusters_per_seed"]`` has them all.
    """
    Xa = _as_X(X)
    lab = np.asarray(labels).reshape(-1)
    seeds = list(seeds)
    runs, clusters = [], []
    for s in seeds:
        r = kmeans_clustering(Xa, lab, n_clusters=n_clusters, random_state=s, n_init=n_init)
        runs.append(r.runs[0])
        assert r.predictions is not None  # kmeans_clustering returns the cluster ids
        clusters.append(r.predictions)
    mean, std = _summarise(runs, ("NMI", "ARI"))
    per_seed = np.vstack(clusters)
    return ProtocolResult(
        protocol=f"kmeans{n_clusters}-x{len(seeds)}",
        mean=mean,
        std=std,
        runs=runs,
        predictions=per_seed[0],
        params={"n_clusters": n_clusters, "seeds": seeds, "n_init": n_init},
        extra={"clusters_per_seed": per_seed},
    )


# --------------------------------------------------------------------------------------------------
# RegionDCL population density
# --------------------------------------------------------------------------------------------------
@_one_blas_thread
def rf_split(
    X: ArrayLike,
    y: ArrayLike,
    seeds: Iterable[int] = range(1, 11),
    test_size: float = 0.2,
    n_estimators: int = 100,
    n_jobs: int | None = None,
    parts: Mapping[str, np.ndarray] | None = None,
) -> ProtocolResult:
    """RegionDCL's population-density protocol.

    Per seed ``s``: ``train_test_split(X, y, test_size=0.2, random_state=s)``, then
    ``RandomForestRegressor(n_estimators=100, random_state=s)`` fitted on the train part and scored on
    the test part (MAE / RMSE / R2, no clipping). Result: mean +- std over seeds (RegionDCL: 1..10).
    ``n_jobs`` only changes speed, not the numbers.

    ``predictions``: per row, the mean test prediction over the seeds in which it was a test row (NaN if
    never); ``extra["predictions_per_seed"]`` is ``(n_seeds, N)`` with NaN on train rows and
    ``extra["test_mask"]`` the matching boolean mask. With ``parts``, the part is chosen per seed on one
    20 % validation split of the training rows (the same forest, fitted on the other 80 %).
    """
    Xa = _as_X(X)
    ya = _as_y(y, Xa.shape[0])
    seeds = list(seeds)
    idx = np.arange(Xa.shape[0])
    runs: list[dict[str, Any]] = []
    choices: list[str] = []
    per_seed = np.full((len(seeds), Xa.shape[0]), np.nan)
    for i, s in enumerate(seeds):
        tr, te = train_test_split(idx, test_size=test_size, random_state=s)
        make = functools.partial(RandomForestRegressor, n_estimators=n_estimators, random_state=s, n_jobs=n_jobs)
        pred = _fit(_choosing(make, parts, 1, s)(), Xa[tr], ya[tr], None, choices).predict(Xa[te])
        per_seed[i, te] = pred
        runs.append({"seed": s, **M.regression_metrics(ya[te], pred)})
    mean, std = _summarise(runs, _REG_METRICS)
    test_mask = ~np.isnan(per_seed)
    with np.errstate(invalid="ignore"):
        avg = np.where(
            test_mask.any(axis=0), np.nansum(per_seed, axis=0) / np.maximum(test_mask.sum(axis=0), 1), np.nan
        )
    return ProtocolResult(
        protocol=f"rf-split-x{len(seeds)}",
        mean=mean,
        std=std,
        runs=runs,
        predictions=avg,
        params=_with_choices({"seeds": seeds, "test_size": test_size, "n_estimators": n_estimators}, parts, choices),
        extra={"predictions_per_seed": per_seed, "test_mask": test_mask},
    )


# --------------------------------------------------------------------------------------------------
# RegionDCL land use (distribution regression with an MLP)
# --------------------------------------------------------------------------------------------------
def _mlp(d: int, k: int, hidden: int):  # type: ignore[no-untyped-def]
    from torch import nn

    return nn.Sequential(nn.Linear(d, hidden), nn.Sigmoid(), nn.Linear(hidden, k), nn.Softmax(dim=-1))


def _kl_rows(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-row KL(target || out), as ``F.kl_div(out.log(), target, reduction="none").sum(-1)``."""
    import torch.nn.functional as F

    return F.kl_div(out.log(), target, reduction="none").sum(dim=-1)


@dataclass(frozen=True)
class _LanduseFit:
    """The training settings of :func:`landuse_mlp` that every seed shares."""

    epochs: tuple[int, ...]
    test_size: float
    val_size: float
    hidden: int
    lr: float
    step_size: int
    gamma: float
    batch_size: int
    continue_training: bool
    device: str
    num_threads: int | None


def _landuse_seed(
    Xa: np.ndarray, Ya: np.ndarray, s: int, fit: _LanduseFit
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """The runs of seed ``s`` (one per epoch budget) and their test predictions, with ``fit.num_threads`` torch
    threads; a worker process runs it as it is."""
    import torch

    prev_threads = torch.get_num_threads()
    if fit.num_threads is not None:
        torch.set_num_threads(fit.num_threads)
    try:
        return _landuse_seed_runs(torch, Xa, Ya, s, fit)
    finally:
        torch.set_num_threads(prev_threads)


def _landuse_seed_runs(
    torch: Any, Xa: np.ndarray, Ya: np.ndarray, s: int, fit: _LanduseFit
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    n, d = Xa.shape
    k = Ya.shape[1]
    idx = np.arange(n)
    dev = torch.device(fit.device)
    runs: list[dict[str, Any]] = []
    per_run_pred: list[np.ndarray] = []
    train_idx, test_idx = train_test_split(idx, test_size=fit.test_size, random_state=s)
    tr_pos, va_pos = train_test_split(np.arange(len(train_idx)), test_size=fit.val_size, random_state=s)
    tr_idx, va_idx = train_idx[tr_pos], train_idx[va_pos]
    x_tr = torch.from_numpy(Xa[tr_idx]).to(dev)
    y_tr = torch.from_numpy(Ya[tr_idx]).to(dev)
    x_va = torch.from_numpy(Xa[va_idx]).to(dev)
    y_va = torch.from_numpy(Ya[va_idx]).to(dev)
    x_te = torch.from_numpy(Xa[test_idx]).to(dev)

    with torch.random.fork_rng(devices=[]):
        state = None
        for budget in fit.epochs:
            if state is None or not fit.continue_training:
                torch.manual_seed(s)
                model = _mlp(d, k, fit.hidden).to(dev)
                opt = torch.optim.Adam(model.parameters(), lr=fit.lr)
                sched = torch.optim.lr_scheduler.StepLR(opt, step_size=fit.step_size, gamma=fit.gamma)
                gen = torch.Generator().manual_seed(s)
                state = True
            best_val = float("inf")
            best: dict[str, Any] = {}
            for ep in range(budget):
                model.train()
                perm = torch.randperm(x_tr.shape[0], generator=gen).to(dev)
                for b in range(0, x_tr.shape[0], fit.batch_size):
                    bi = perm[b : b + fit.batch_size]
                    opt.zero_grad()
                    loss = _kl_rows(model(x_tr[bi]), y_tr[bi]).mean()
                    loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
                    opt.step()
                sched.step()
                model.eval()
                with torch.no_grad():
                    val_loss = float(_kl_rows(model(x_va), y_va).mean())
                    if val_loss < best_val:
                        best_val = val_loss
                        out = model(x_te)
                        best = {
                            "best_epoch": ep + 1,
                            "val_KL": val_loss,
                            "pred": out.cpu().numpy().astype(float),
                        }
            if not best:  # validation loss never finite: record the last epoch, flagged
                with torch.no_grad():
                    best = {
                        "best_epoch": None,
                        "val_KL": float("nan"),
                        "pred": model(x_te).cpu().numpy().astype(float),
                    }
            pred = best.pop("pred")
            run = {"seed": s, "epochs": budget, **best, **M.distribution_metrics(Ya[test_idx], pred)}
            runs.append(run)
            full = np.full((n, k), np.nan)
            full[test_idx] = pred
            per_run_pred.append(full)
    return runs, per_run_pred


def _per_seed(job: Callable[[int], _T], seeds: list[int], n_jobs: int | None) -> list[_T]:
    """``job(s)`` for every seed, in seed order: in this process, or with ``n_jobs`` > 1 (-1: one per seed) in
    that many worker processes, each with one BLAS thread as the protocols have here (:func:`_one_blas_thread`).
    A job is one seed's whole single-threaded computation, so where it runs changes its speed, not its figures."""
    if n_jobs is None or n_jobs == 1 or len(seeds) < 2:
        return [job(s) for s in seeds]
    from joblib import Parallel, delayed

    workers = len(seeds) if n_jobs < 0 else min(n_jobs, len(seeds))
    out: list[_T] = Parallel(n_jobs=workers, backend="loky", max_nbytes=None)(
        delayed(_one_blas_thread(job))(s) for s in seeds
    )
    return out


def _landuse_runs(
    Xa: np.ndarray, Ya: np.ndarray, seeds: list[int], fit: _LanduseFit, n_jobs: int | None
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """The training loops of :func:`landuse_mlp`: one run per (seed, epoch budget), in seed order; the seeds in
    ``n_jobs`` worker processes on the CPU (see :func:`_per_seed`)."""
    job = functools.partial(_landuse_seed, Xa, Ya, fit=fit)
    per_seed = _per_seed(job, seeds, n_jobs if fit.device == "cpu" else None)
    runs = [run for seed_runs, _ in per_seed for run in seed_runs]
    preds = [pred for _, seed_preds in per_seed for pred in seed_preds]
    return runs, preds


@_one_blas_thread
def landuse_mlp(
    X: ArrayLike,
    Y: ArrayLike,
    seeds: Iterable[int] = range(1, 11),
    epochs: Sequence[int] = (100, 150),
    test_size: float = 0.2,
    val_size: float = 0.2,
    hidden: int = 512,
    lr: float = 0.01,
    step_size: int = 10,
    gamma: float = 0.8,
    batch_size: int = 64,
    continue_training: bool = True,
    device: str = "cpu",
    num_threads: int | None = 1,
    n_jobs: int | None = None,
    parts: Mapping[str, np.ndarray] | None = None,
) -> ProtocolResult:
    """RegionDCL's land-use protocol: predict class shares ``Y`` (N, k) from ``X``.

    Per seed ``s`` (RegionDCL: 1..10):

    * ``train_test_split(rows, test_size=0.2, random_state=s)`` gives the test rows, and
      ``train_test_split(train_rows, test_size=val_size, random_state=s)`` the validation rows. This is
      RegionDCL's code for its "0.6,0.2,0.2" split: the validation part is 20 % *of the non-test rows*,
      so the split is really 64/16/20; pass ``val_size=0.25`` for an exact 60/20/20.
    * MLP ``Linear(d, hidden) - Sigmoid - Linear(hidden, k) - Softmax``, loss ``KLDivLoss(batchmean)``
      of ``log(output)`` against the shares, ``Adam(lr=0.01)``, ``StepLR(step_size=10, gamma=0.8)``
      stepped each epoch, shuffled mini-batches of 64.
    * For each epoch budget in ``epochs`` (100, then 150) one run is recorded: the test L1 / KL / cosine
      at the epoch with the lowest validation KL within that budget (strict improvement; the first such
      epoch wins). The test rows never influence training or the choice of epoch.
    * ``continue_training=True`` reproduces RegionDCL's code, where the 150-epoch run *continues* the
      same model, optimiser and scheduler after the 100-epoch run (best-epoch tracking restarts);
      ``False`` trains a fresh model (same seed) for each budget.

    Result: mean +- std over all ``len(seeds) * len(epochs)`` runs, as RegionDCL averages them.
    ``runs`` carry ``seed``, ``epochs``, ``best_epoch`` (1-based within the budget) and the metrics;
    ``predictions`` (N, k) is the mean test prediction per row over the runs that tested it (NaN if
    none); ``extra["predictions_per_run"]`` is ``(n_runs, N, k)``. Deterministic for fixed seeds on CPU
    (and a fixed ``num_threads``); the global torch RNG state is left unchanged.

    ``num_threads`` sets torch's intra-op threads for the call (restored afterwards; ``None`` leaves them):
    the model is tiny, and one thread is fastest -- on a loaded 2-core machine two threads were 10x slower.
    ``n_jobs`` > 1 (or -1: one per seed) trains the seeds in that many worker processes on the CPU: faster
    (the NYC tracts: 83 s -> 46 s on 2 cores), the same figures to the bit, since every seed runs the same
    single-threaded loop either way.

    With ``parts``, every run is trained on each part, and the part with the lowest validation KL (at its
    best epoch) is the run's: the choice uses the validation rows only, like the epoch's.
    """
    import torch

    Xa = _as_X(X).astype(np.float32)
    Ya = np.asarray(Y, dtype=np.float32)
    if Ya.ndim != 2 or Ya.shape[0] != Xa.shape[0]:
        raise ValueError(f"Y must be (N, k) with N={Xa.shape[0]}, got {Ya.shape}")
    if not np.all(np.isfinite(Ya)) or np.any(Ya < 0):
        raise ValueError("Y must hold finite, non-negative class shares")
    seeds = list(seeds)
    epochs = [int(e) for e in epochs]
    candidates = dict(parts) if parts else {"": np.arange(Xa.shape[1])}
    fit = _LanduseFit(
        tuple(epochs),
        test_size,
        val_size,
        hidden,
        lr,
        step_size,
        gamma,
        batch_size,
        continue_training,
        str(torch.device(device)),
        num_threads,
    )
    per_part = {
        name: _landuse_runs(np.ascontiguousarray(Xa[:, cols]), Ya, seeds, fit, n_jobs)
        for name, cols in candidates.items()
    }

    def val_kl(name: str, i: int) -> float:
        v = per_part[name][0][i]["val_KL"]
        return float(v) if np.isfinite(v) else float("inf")

    n_runs = len(seeds) * len(epochs)
    choices = [min(candidates, key=lambda c: val_kl(c, i)) for i in range(n_runs)]
    runs = [per_part[c][0][i] for i, c in enumerate(choices)]
    per_run_pred = [per_part[c][1][i] for i, c in enumerate(choices)]
    if parts:
        for run, c in zip(runs, choices):
            run["part"] = c

    mean, std = _summarise(runs, ("L1", "KL", "cosine"))
    stack = np.stack(per_run_pred)
    tested = ~np.isnan(stack[:, :, 0])
    cnt = tested.sum(axis=0)
    avg = np.where(cnt[:, None] > 0, np.nansum(stack, axis=0) / np.maximum(cnt, 1)[:, None], np.nan)
    return ProtocolResult(
        protocol=f"mlp-landuse-x{len(runs)}",
        mean=mean,
        std=std,
        runs=runs,
        predictions=avg,
        params=_with_choices(
            {
                "seeds": seeds,
                "epochs": epochs,
                "test_size": test_size,
                "val_size": val_size,
                "hidden": hidden,
                "lr": lr,
                "step_size": step_size,
                "gamma": gamma,
                "batch_size": batch_size,
                "continue_training": continue_training,
                "num_threads": num_threads,
            },
            parts,
            choices,
        ),
        extra={"predictions_per_run": stack},
    )


# --------------------------------------------------------------------------------------------------
# dominant land-use class (ours)
# --------------------------------------------------------------------------------------------------
def _logreg(C: float, max_iter: int, standardize: bool) -> Any:
    lr = LogisticRegression(C=C, max_iter=max_iter)
    return make_pipeline(StandardScaler(), lr) if standardize else lr


def _dominant_seed(
    Xk: np.ndarray,
    yk: np.ndarray,
    s: int,
    n_splits: int,
    C: float,
    max_iter: int,
    standardize: bool,
    parts: Mapping[str, np.ndarray] | None,
) -> tuple[np.ndarray, list[str]]:
    """Seed ``s`` of :func:`dominant_class`: its out-of-fold classes and the part chosen on each fold."""
    make = functools.partial(_logreg, C, max_iter, standardize)
    choices: list[str] = []
    pred_k = np.full(len(yk), -1, dtype=int)
    for tr, te in StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=s).split(Xk, yk):
        m = _fit(_choosing(make, parts, 1, s)(), Xk[tr], yk[tr], None, choices)
        pred_k[te] = m.predict(Xk[te])
    return pred_k, choices


@_one_blas_thread
def dominant_class(
    X: ArrayLike,
    Y_shares: ArrayLike,
    n_splits: int = 5,
    seeds: Iterable[int] = range(1, 11),
    C: float = 1.0,
    max_iter: int = 2000,
    standardize: bool = True,
    drop_empty: bool = True,
    n_jobs: int | None = None,
    parts: Mapping[str, np.ndarray] | None = None,
) -> ProtocolResult:
    """Dominant-class classification: ``argmax`` of the class shares, predicted by a logistic regression.

    Per seed: ``StratifiedKFold(n_splits, shuffle=True, random_state=seed)``; on each fold a pipeline
    ``StandardScaler`` (fitted on the training folds only; skipped if ``standardize=False``) +
    ``LogisticRegression(C, max_iter)`` with fixed hyper-parameters; accuracy and macro-F1 (over the
    classes present) on the seed's out-of-fold predictions. Result: mean +- std over seeds.

    Rows whose shares are all zero (no land use) have no dominant class and are dropped when
    ``drop_empty`` (their prediction is -1). ``predictions`` are the first seed's out-of-fold classes;
    ``extra["predictions_per_seed"]`` has every seed's, ``extra["y"]`` the true classes. With ``parts``,
    the part is chosen per fold on one stratified 20 % hold-out of the training rows. ``n_jobs`` > 1 runs the
    seeds in that many worker processes, with the same figures.
    """
    Xa = _as_X(X)
    S = np.asarray(Y_shares, dtype=float)
    if S.ndim != 2 or S.shape[0] != Xa.shape[0]:
        raise ValueError(f"Y_shares must be (N, k) with N={Xa.shape[0]}, got {S.shape}")
    y = np.argmax(S, axis=1)
    keep = np.ones(len(y), dtype=bool)
    if drop_empty:
        keep = S.sum(axis=1) > 0
        y = np.where(keep, y, -1)
    Xk, yk = Xa[keep], y[keep]
    classes = np.unique(yk)
    min_count = int(np.min(np.bincount(yk)[classes]))
    if min_count < n_splits:
        raise ValueError(f"the rarest class has {min_count} rows, fewer than n_splits={n_splits}")
    seeds = list(seeds)

    job = functools.partial(
        _dominant_seed, Xk, yk, n_splits=n_splits, C=C, max_iter=max_iter, standardize=standardize, parts=parts
    )
    runs, preds = [], []
    choices: list[str] = []
    for s, (pred_k, seed_choices) in zip(seeds, _per_seed(job, seeds, n_jobs)):
        choices += seed_choices
        full = np.full(len(y), -1, dtype=int)
        full[keep] = pred_k
        preds.append(full)
        runs.append({"seed": s, **M.classification_metrics(yk, pred_k, labels=classes)})
    mean, std = _summarise(runs, ("accuracy", "macro_F1"))
    per_seed = np.vstack(preds)
    return ProtocolResult(
        protocol=f"logreg-dominant-skfold{n_splits}-x{len(seeds)}",
        mean=mean,
        std=std,
        runs=runs,
        predictions=per_seed[0],
        params=_with_choices(
            {
                "n_splits": n_splits,
                "seeds": seeds,
                "C": C,
                "max_iter": max_iter,
                "standardize": standardize,
                "drop_empty": drop_empty,
                "n_classes": len(classes),
            },
            parts,
            choices,
        ),
        extra={"predictions_per_seed": per_seed, "y": y},
    )
