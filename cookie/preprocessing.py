"""The one preprocessing module: per-view statistics and their application, for training, serving
(the registered pyfunc, the embeddings table) and the benchmarks alike.

numpy only (no Spark, no torch), so the same code runs in the driver's Spark aggregate's consumer,
in every training rank, in the Spark tasks that compute the embeddings table and inside the
registered MLflow model. The statistics are computed once, on all regions, by the driver
(:func:`cookie.training.data.compute_stats`) and shipped everywhere as a plain dict.

Per view (the method specification section 1, cookie.model.preprocess):

* ``counts``: ``log1p(max(x, 0))`` then z-score (counts, lengths, areas, shares of OSM views,
  benchmark count vectors);
* ``zscore``: z-score only (OD flows, log1p'd or not by the ETL's ``flow_values``; raster statistics;
  precomputed embeddings with negative values);
* ``shares``: clipped to [0, 1];
* ``embedding``: passed through.

The z-score uses the mean and population standard deviation over the regions that have the
view (``_present``); a (near-)constant column gets std 1, as in
a rounding-error std of a constant float32 column counts as constant too. Missing views (mask False)
become zero rows, never NaN.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from cookie.constants import CONTEXT_PREFIX, PRESENT_SUFFIX
from cookie.constants import FEATURE_SEP as SEP

STD_EPS = 1e-8

KINDS = ("counts", "zscore", "shares", "embedding")

#: Where a feature's counts are, for the 'thin' augmentation: ``log`` (the model sees log1p(count), z-scored),
#: ``linear`` (the count itself, z-scored) or ``none`` (not a count).
COUNT_SPACES = ("none", "log", "linear")


def feature_column(view: str, feature: str) -> str:
    """Flat column name of one feature: ``<view>__<feature>``."""
    return f"{view}{SEP}{feature}"


def present_column(view: str) -> str:
    """Flat column name of a view's mask: ``<view>___present`` (True = the region has the view)."""
    return f"{view}{PRESENT_SUFFIX}"


@dataclass
class ViewStats:
    """What a view needs for preprocessing, and where its training data came from."""

    name: str
    kind: str  # one of KINDS
    features: list[str]
    mean: list[float]
    std: list[float]
    n_present: int = 0
    table: str = ""  # table location (path) read by the ranks
    table_version: int | None = None  # Delta version used, so every reader sees the same rows
    etl_kind: str = ""  # the ETL's view kind (points, flows, ...)
    count_space: list[str] = field(default_factory=list)  # per feature, of COUNT_SPACES; empty: no counts

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"view {self.name}: unknown preprocessing kind {self.kind!r}")
        if len(self.mean) != len(self.features) or len(self.std) != len(self.features):
            raise ValueError(f"view {self.name}: {len(self.features)} features but {len(self.mean)} means")

    @property
    def columns(self) -> list[str]:
        return [feature_column(self.name, f) for f in self.features]

    def count_spaces(self) -> list[str]:
        """Per feature, where its counts are (``none`` everywhere when the view holds none)."""
        return self.count_space or ["none"] * len(self.features)


@dataclass
class FeatureStats:
    """Preprocessing of every view, in the model's view order."""

    views: list[ViewStats]
    n_regions: int = 0
    nan_policy: str = "raise"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def view_names(self) -> list[str]:
        return [v.name for v in self.views]

    @property
    def view_dims(self) -> dict[str, int]:
        return {v.name: len(v.features) for v in self.views}

    def view(self, name: str) -> ViewStats:
        for v in self.views:
            if v.name == name:
                return v
        raise KeyError(f"unknown view {name!r}; views are {self.view_names}")

    def input_columns(self) -> list[str]:
        """Every flat feature column, in order (masks not included)."""
        return [c for v in self.views for c in v.columns]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureStats:
        views = [ViewStats(**v) for v in d["views"]]
        return cls(
            views=views,
            n_regions=int(d.get("n_regions", 0)),
            nan_policy=d.get("nan_policy", "raise"),
            extra=dict(d.get("extra", {})),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureStats:
        return cls.from_dict(json.loads(text))


def auto_kind(etl_kind: str, etl_transform: str = "none", min_value: float | None = None) -> str:
    """What ``train.preprocess: auto`` means for a view: points, lines and polygons are counts, lengths and
    shares (log1p, z-score); flows (OD cells as the ETL's ``flow_values``) and raster statistics are z-scored; vectors are counts
    when no value is negative and the ETL did not log1p them (benchmark count matrices), else z-scored."""
    if etl_kind in ("points", "lines", "polygons"):
        return "counts"
    if etl_kind in ("flows", "raster") or etl_transform == "log1p":
        return "zscore"
    return "counts" if min_value is not None and min_value >= 0 else "zscore"


#: Flows features that are trip counts whatever ``flow_values`` says; the SVD components are no counts.
FLOW_COUNT_FEATURES = ("outflow", "inflow", "self_flow")


def count_space(
    kind: str, etl_kind: str, features: list[str], etl_transform: str = "none", flow_values: str = "log1p"
) -> list[str]:
    """Where each feature's counts are once preprocessed (``kind``), from what the ETL wrote: counts views and vectors
    preprocessed as counts are log1p'd by training; vectors the ETL log1p'd are log1p counts; a flows view's OD cells
    are log1p(trips) or trips as ``flow_values`` says, its outflow, inflow and self-flow trips, its SVD components no
    counts. Context columns (``ctx_<graph>__<feature>``, neighbour means) follow their feature."""
    if kind == "counts":
        return ["log"] * len(features)
    if kind != "zscore":
        return ["none"] * len(features)
    if etl_kind == "vectors" and etl_transform == "log1p":
        return ["log"] * len(features)
    if etl_kind != "flows":
        return ["none"] * len(features)
    context = tuple(prefix + SEP for prefix in CONTEXT_PREFIX.values())
    out = []
    for name in features:
        base = name.split(SEP, 1)[1] if name.startswith(context) else name
        if base in FLOW_COUNT_FEATURES:
            out.append("linear")
        elif base.startswith(("out_svd_", "in_svd_")) or not base.startswith(("out_", "in_")):
            out.append("none")
        else:
            out.append("log" if flow_values == "log1p" else "linear")
    return out


def finalize_std(std: float | None, mean: float | None = None) -> float:
    """Population std from the aggregate; None (no rows), NaN or ~0 -> 1.

    The cut-off is relative to the mean too: a constant float32 column keeps a rounding-error std of
    about 1e-7 * |mean|, which must not blow up into a feature.
    """
    tol = max(STD_EPS, abs(mean) * 1e-5) if mean is not None and math.isfinite(mean) else STD_EPS
    if std is None or not math.isfinite(std) or std <= tol:
        return 1.0
    return float(std)


def finalize_mean(mean: float | None) -> float:
    if mean is None or not math.isfinite(mean):
        return 0.0
    return float(mean)


def transform_view(
    x: Any,
    present: Any | None,
    stats: ViewStats,
    nan_policy: str = "raise",
    region_ids: Any | None = None,
) -> np.ndarray:
    """Raw features (N, d) of one view -> model input (N, d) float32; masked rows are zeros.

    ``nan_policy='raise'`` fails on a NaN/inf in a present row (naming the first region), since
    the ETL never writes one and a silent zero would hide the bug; ``'zero'`` maps it to the
    mean (0 after z-scoring).
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != len(stats.features):
        raise ValueError(f"view {stats.name}: expected (N, {len(stats.features)}) features, got {a.shape}")
    p = np.ones(a.shape[0], dtype=bool) if present is None else np.asarray(present, dtype=bool).reshape(-1)
    if p.shape[0] != a.shape[0]:
        raise ValueError(f"view {stats.name}: {p.shape[0]} mask rows for {a.shape[0]} feature rows")
    finite = np.isfinite(a)
    bad_rows = p & ~finite.all(axis=1)
    if nan_policy == "raise" and bad_rows.any():
        i = int(np.flatnonzero(bad_rows)[0])
        where = f"region {str(np.asarray(region_ids)[i])!r}" if region_ids is not None else f"row {i}"
        col = stats.features[int(np.flatnonzero(~finite[i])[0])]
        raise ValueError(
            f"view {stats.name}: NaN/inf in {int(bad_rows.sum())} present row(s), first at {where}, "
            f"feature {col!r} (set train.nan_policy: zero to treat them as the mean)"
        )
    if stats.kind == "counts":
        with np.errstate(invalid="ignore"):
            a = np.log1p(np.clip(a, 0.0, None))
    if stats.kind in ("counts", "zscore"):
        a = (a - np.asarray(stats.mean, dtype=np.float64)) / np.asarray(stats.std, dtype=np.float64)
    elif stats.kind == "shares":
        a = np.clip(a, 0.0, 1.0)
    out = np.where(np.isfinite(a) & p[:, None], a, 0.0)
    return out.astype(np.float32)


def fit_view(
    name: str, x: Any, present: Any | None = None, kind: str = "zscore", features: list[str] | None = None
) -> ViewStats:
    """Statistics of one view from an in-memory array (tests, benchmarks, small data); the training job
    computes the same figures with one Spark aggregate (:func:`cookie.training.data.compute_stats`)."""
    a = np.asarray(x, dtype=np.float64)
    p = np.ones(a.shape[0], dtype=bool) if present is None else np.asarray(present, dtype=bool).reshape(-1)
    rows = a[p]
    if kind == "counts":
        with np.errstate(invalid="ignore"):
            rows = np.log1p(np.clip(rows, 0.0, None))
    finite = np.isfinite(rows)
    cnt = finite.sum(axis=0)
    vals = np.where(finite, rows, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = vals.sum(axis=0) / np.maximum(cnt, 1)
        var = (np.where(finite, rows - mean, 0.0) ** 2).sum(axis=0) / np.maximum(cnt, 1)
    names = features or [f"f{i}" for i in range(a.shape[1])]
    if kind in ("counts", "zscore"):
        m = [finalize_mean(float(v) if c else None) for v, c in zip(mean, cnt)]
        sd = [finalize_std(float(np.sqrt(v)) if c else None, mm) for v, c, mm in zip(var, cnt, m)]
    else:
        m, sd = [0.0] * a.shape[1], [1.0] * a.shape[1]
    return ViewStats(name=name, kind=kind, features=names, mean=m, std=sd, n_present=int(p.sum()))


def zscore(x: Any, present: Any | None = None) -> np.ndarray:
    """Z-score every column over the present rows; masked rows, NaN and constant columns -> 0."""
    st = fit_view("x", x, present, "zscore")
    return transform_view(x, present, st, nan_policy="zero")


def log1p_zscore(x: Any, present: Any | None = None) -> np.ndarray:
    """Counts -> log1p (negative counts clipped to 0) -> z-score."""
    st = fit_view("x", x, present, "counts")
    return transform_view(x, present, st, nan_policy="zero")
