"""Training data: global statistics on the driver (one Spark aggregate over the views), and each rank's
shard read straight from the Delta tables' Parquet files (the ``deltalake`` package).

Nothing is collected to the driver but one row of statistics per view: a national grid trains
the same way as Manhattan-180. Every reader (ranks, the embedding job) pins the Delta version the
driver saw, so a feature job running meanwhile cannot make ranks read different rows.

Sharding is a deterministic function of the region id (:func:`shard_of`): every rank scans the
view tables, keeps its own rows (memory stays O(shard)) and orders them by region id.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cookie import constants as C
from cookie.exceptions import ConfigError, InputError
from cookie.preprocessing import (
    FeatureStats,
    ViewStats,
    auto_kind,
    count_space,
    feature_column,
    finalize_mean,
    finalize_std,
    present_column,
    transform_view,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from cookie.config import Config
    from cookie.config.project import ViewConfig
    from cookie.storage.delta import TableLocation

PRESENT = "_present"  # the ETL's mask column (cookie.etl.features.common.PRESENT)


# --------------------------------------------------------------------------- driver side (Spark)


@dataclass(frozen=True)
class ViewTable:
    """A view's Delta table as the trainer sees it."""

    name: str
    path: str  # storage location (also for catalog tables)
    version: int
    features: list[str]
    etl_kind: str
    etl_transform: str
    flow_values: str = "log1p"


def features_hint(cfg: Config) -> str:
    """What to run when the feature tables are missing."""
    return f"build them first: python -m cookie features --config conf/{cfg.name}.yaml"


def require_table(spark: SparkSession, cfg: Config, loc: TableLocation) -> None:
    """:class:`MissingTable` naming ``loc`` (and the ``features`` verb) when it is not a Delta table."""
    from cookie.exceptions import MissingTable
    from cookie.storage.delta import table_exists

    if not table_exists(spark, loc):
        raise MissingTable(f"table {loc.name} does not exist at {loc}; {features_hint(cfg)}")


def check_view_spec(view: ViewConfig, built: str | None, features: Sequence[str], table: str, cfg: Config) -> None:
    """:class:`InputError` when a view table was built from other view settings than the config's (the config was
    edited after the feature job ran): training on it would silently use the old features. A table written before
    the settings were stored (``built`` None) is checked on its context columns only."""
    if built is None:
        graphs = [g for g, prefix in C.CONTEXT_PREFIX.items() if any(f.startswith(prefix + "__") for f in features)]
        if sorted(graphs) == sorted(view.context):
            return
        changes = f"context columns of {graphs} in the table, the config asks for {list(view.context)}"
    elif built == view.spec():
        return
    else:
        changes = "; ".join(view.spec_changes(built))
    raise InputError(
        f"view {view.name}: table {table} was built from other settings than the config's ({changes}); "
        f"re{features_hint(cfg)}"
    )


def view_tables(spark: SparkSession, cfg: Config, names: Sequence[str] | None = None) -> list[ViewTable]:
    """The config's views (or those of ``names``), in config order, with their current Delta versions
    and feature names; :class:`MissingTable` when the feature job has not built one of them."""
    from cookie.storage import delta as tables

    out = []
    snap = tables.snapshot(cfg, spark)
    for view in cfg.views:
        if names is not None and view.name not in names:
            continue
        loc = tables.locate(cfg, C.VIEW_PREFIX + view.name)
        require_table(spark, cfg, loc)
        # the version of the newest complete feature run, not a newer one a killed run left behind
        version = snap.get(loc.name, tables.table_version(spark, loc))
        at = tables.properties_at(spark, loc, version)
        try:
            names_ = tables.feature_names(spark, loc, version, props=at)
        except KeyError as exc:
            raise InputError(f"view {view.name}: {exc.args[0]}; {features_hint(cfg)}") from exc
        check_view_spec(view, at.get(C.VIEW_CONFIG_PROPERTY), names_, loc.name, cfg)
        if loc.full_name:
            detail = spark.sql(f"DESCRIBE DETAIL {loc.sql}").first()
            assert detail is not None  # DESCRIBE DETAIL returns one row
            path = detail["location"]
        else:
            path = loc.path
        out.append(
            ViewTable(
                view.name,
                str(path),
                int(version),
                list(names_),
                at.get("cookie.view_kind", view.kind),
                view.transform,
                view.flow_values,
            )
        )
    return out


def _read_view(spark: SparkSession, vt: ViewTable) -> DataFrame:
    return spark.read.format("delta").option("versionAsOf", vt.version).load(vt.path)


def compute_stats(spark: SparkSession, cfg: Config, tables_: Sequence[ViewTable] | None = None) -> FeatureStats:
    """Global preprocessing statistics: one Spark aggregate over all the view tables.

    Per feature, over the present rows: mean and population std of the raw and of the log1p'd
    values (the kind decides which is used), the minimum (``auto`` kind of vector views) and the
    number of NaN/inf values (which fail the job under ``train.nan_policy: raise`` before any rank
    starts). The table is aggregated in long form (feature index, value): wide aggregates of
    hundreds of columns spend seconds in code generation.
    """
    from pyspark.sql import functions as F

    tables_ = list(tables_) if tables_ is not None else view_tables(spark, cfg)
    overrides = dict(cfg.train.preprocess)
    views = [v.name for v in cfg.views]
    unknown = sorted(set(overrides) - set(views))
    if unknown:
        raise ConfigError(f"train.preprocess names unknown views {unknown}; views are {views}")
    n_regions = None
    out: list[ViewStats] = []
    longs = []
    for k, vt in enumerate(tables_):
        df = _read_view(spark, vt)
        values = F.array(*[F.col(f"`{f}`").cast("double") for f in vt.features])
        longs.append(
            df.select(
                F.lit(k).alias("_v"),
                F.col(C.REGION_ID),
                F.col(PRESENT).alias("_p"),
                F.posexplode(values).alias("_i", "_x"),
            )
        )
    x, p = F.col("_x"), F.col("_p")
    finite = x.isNotNull() & ~F.isnan(x) & (F.abs(x) != F.lit(float("inf")))
    ok = p & finite
    every = functools.reduce(lambda a, b: a.unionAll(b), longs) if longs else None
    all_rows = (
        every.groupBy("_v", "_i")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum(p.cast("long")).alias("n_present"),
            F.sum(F.when(p & ~finite, 1).otherwise(0)).alias("bad"),
            F.min(F.when(ok, x)).alias("min"),
            F.avg(F.when(ok, x)).alias("mean"),
            F.stddev_pop(F.when(ok, x)).alias("std"),
            F.avg(F.when(ok, F.log1p(F.greatest(x, F.lit(0.0))))).alias("log_mean"),
            F.stddev_pop(F.when(ok, F.log1p(F.greatest(x, F.lit(0.0))))).alias("log_std"),
        )
        .collect()  # one job for every view: (views x features) rows
        if every is not None
        else []
    )
    per_view: dict[int, list[Any]] = {}
    for r in all_rows:
        per_view.setdefault(int(r["_v"]), []).append(r)
    for k, (vt, long) in enumerate(zip(tables_, longs)):
        rows = per_view.get(k, [])
        by_i = {int(r["_i"]): r for r in rows}
        if len(by_i) != len(vt.features):
            raise InputError(f"view {vt.name}: table {vt.path} has no rows; {features_hint(cfg)}")
        bad = sum(int(r["bad"] or 0) for r in rows)
        if cfg.train.nan_policy == "raise" and bad:
            first = long.where(p & ~finite).orderBy(C.REGION_ID, "_i").first()
            assert first is not None  # bad > 0: some present row has a NaN/inf
            raise InputError(
                f"view {vt.name}: {bad} NaN/inf value(s) in present regions in {vt.path} "
                f"(version {vt.version}), first in region {first[C.REGION_ID]!r}, feature "
                f"{vt.features[int(first['_i'])]!r}; fix the ETL or set train.nan_policy: zero"
            )
        n_present = int(rows[0]["n_present"] or 0)
        if n_present < 2:
            raise InputError(
                f"view {vt.name}: only {n_present} region(s) have data in {vt.path}; nothing to learn from"
            )
        if n_regions is None:
            n_regions = int(rows[0]["n"])
        kind: str = overrides.get(vt.name, "auto")
        if kind == "auto":
            mins = [r["min"] for r in rows if r["min"] is not None]
            kind = auto_kind(vt.etl_kind, vt.etl_transform, min(mins) if mins else None)
        ordered = [by_i[i] for i in range(len(vt.features))]
        if kind in ("counts", "zscore"):
            m, s = ("log_mean", "log_std") if kind == "counts" else ("mean", "std")
            mean = [finalize_mean(r[m]) for r in ordered]
            std = [finalize_std(r[s], r[m]) for r in ordered]
        else:
            mean, std = [0.0] * len(vt.features), [1.0] * len(vt.features)
        out.append(
            ViewStats(
                name=vt.name,
                kind=kind,
                features=list(vt.features),
                mean=mean,
                std=std,
                n_present=n_present,
                table=vt.path,
                table_version=vt.version,
                etl_kind=vt.etl_kind,
                count_space=count_space(kind, vt.etl_kind, list(vt.features), vt.etl_transform, vt.flow_values),
            )
        )
    return FeatureStats(views=out, n_regions=int(n_regions or 0), nan_policy=cfg.train.nan_policy)


def flat_features(spark: SparkSession, cfg: Config, stats: FeatureStats) -> DataFrame:
    """Every region (from the regions table) with its raw view features as flat columns
    ``<view>__<feature>`` and masks ``<view>___present``: the pyfunc's input format, as a DataFrame."""
    from pyspark.sql import functions as F

    from cookie.storage import delta as tables

    frame = tables.read_feature_table(spark, cfg, C.REGIONS_TABLE).select(C.REGION_ID)
    for vs in stats.views:
        df = spark.read.format("delta")
        if vs.table_version is not None:
            df = df.option("versionAsOf", vs.table_version)
        v = df.load(vs.table).select(
            C.REGION_ID,
            *[F.col(f"`{f}`").cast("double").alias(feature_column(vs.name, f)) for f in vs.features],
            F.col(PRESENT).alias(present_column(vs.name)),
        )
        frame = frame.join(v, on=C.REGION_ID, how="left")
    return frame.fillna(False, subset=[present_column(vs.name) for vs in stats.views])


# --------------------------------------------------------------------------- rank side (no Spark)


def shard_of(region_id: str, world_size: int) -> int:
    """The rank that owns a region: CRC-32 of its id modulo the world size (stable everywhere)."""
    return zlib.crc32(str(region_id).encode("utf-8")) % world_size


@dataclass
class Shard:
    """One rank's rows, ordered by region id; ``views`` already preprocessed (float32)."""

    region_ids: list[str]
    views: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.region_ids)


def _read_view_shard(vs: ViewStats, rank: int, world_size: int) -> Any:  # a pyarrow Table or None
    import pyarrow as pa
    import pyarrow.compute as pc
    from deltalake import DeltaTable

    dt = DeltaTable(vs.table, version=vs.table_version) if vs.table_version is not None else DeltaTable(vs.table)
    dataset = dt.to_pyarrow_dataset()
    cols = [C.REGION_ID, *vs.features, PRESENT]
    parts = []
    for batch in dataset.to_batches(columns=cols):
        ids = batch.column(C.REGION_ID).to_pylist()
        keep = pa.array([shard_of(i, world_size) == rank for i in ids], type=pa.bool_())
        if pc.any(keep).as_py():
            parts.append(batch.filter(keep))
    schema = dataset.schema
    table = pa.Table.from_batches(parts, schema=pa.schema([schema.field(c) for c in cols])) if parts else None
    return table


def read_shard(stats: FeatureStats, rank: int, world_size: int) -> Shard:
    """This rank's rows of every view, joined on region id and preprocessed with ``stats``.

    A region missing from a view's table counts as not having the view (mask False).
    """
    import pandas as pd

    frames = {}
    for vs in stats.views:
        table = _read_view_shard(vs, rank, world_size)
        cols = [C.REGION_ID, *vs.features, PRESENT]
        df = table.to_pandas() if table is not None else pd.DataFrame({c: [] for c in cols})
        if df[C.REGION_ID].duplicated().any():
            raise InputError(f"view {vs.name}: duplicate region ids in {vs.table}")
        frames[vs.name] = df.set_index(C.REGION_ID)
    ids = sorted(set().union(*[set(f.index) for f in frames.values()]))
    views, masks = {}, {}
    for vs in stats.views:
        df = frames[vs.name].reindex(ids)
        present = df[PRESENT].eq(True).to_numpy()
        x = df[vs.features].to_numpy(dtype=np.float64, na_value=np.nan)
        try:
            views[vs.name] = transform_view(x, present, vs, stats.nan_policy, region_ids=ids)
        except ValueError as exc:  # NaN in a present row (nan_policy 'raise'): names view and region
            raise InputError(f"{exc} (table {vs.table}, version {vs.table_version})") from exc
        masks[vs.name] = present
    return Shard(region_ids=[str(i) for i in ids], views=views, masks=masks)
