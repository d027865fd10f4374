"""The feature job: config in, Delta tables out (regions, view_<name>, label_<name>, etl_runs).

Everything is computed and validated before the first write, then each table is replaced in one
Delta commit, so a bad input stops the job before any table changes, and a rerun of the same config
writes the same contents as a new version.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.util import inheritable_thread_target

from cookie import constants as C
from cookie.config import (
    ArraySource,
    Config,
    FileRegions,
    H3Regions,
    IdRegions,
    OsmSource,
    RasterSource,
    TableSource,
    TripsSource,
    VectorSource,
    ViewConfig,
)
from cookie.etl.context import flow_edges, region_adjacency, with_context
from cookie.etl.copies import copied_columns, fingerprints
from cookie.etl.features.common import (
    FEATURES,
    POINT_PIECE_VERTICES,
    SUBDIVIDE_VERTICES,
    ViewResult,
    not_finite,
    subdivided,
)
from cookie.etl.features.flows import od_features, trips_to_edges
from cookie.etl.features.lines import road_lengths
from cookie.etl.features.points import poi_counts
from cookie.etl.features.polygons import polygon_cover
from cookie.etl.features.raster import raster_bands, read_rasters, zonal_stats
from cookie.etl.features.vectors import region_vectors
from cookie.etl.regions import (
    RegionsResult,
    bbox_area,
    check_extent,
    extent_area,
    regions_from_file,
    regions_from_ids,
    regions_h3,
)
from cookie.etl.sources.arrays import array_frame, load_array, matrix_edges, read_table_source
from cookie.etl.sources.osm import converted_layers
from cookie.etl.sources.vector import check_numeric, read_vector, spark_path
from cookie.exceptions import ConfigError, InputError
from cookie.spark import start_python_workers
from cookie.storage import delta as tables

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass
class TableReport:
    table: str
    rows: int
    features: int
    version: int
    stats: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class RunReport:
    run_id: str
    config: str
    warehouse: str
    seconds: float
    tables: list[TableReport]
    inputs: dict[str, str]

    def as_text(self) -> str:
        lines = [
            f"run {self.run_id} ({self.config}) -> {self.warehouse}  [{self.seconds:.1f} s]",
            f"{'table':<24}{'rows':>8}{'features':>10}{'version':>9}{'seconds':>9}  rejected/notes",
        ]
        for t in self.tables:
            notes = ", ".join(f"{k}={v}" for k, v in t.stats.items() if v) or "-"
            lines.append(f"{t.table:<24}{t.rows:>8}{t.features:>10}{t.version:>9}{t.seconds:>9.1f}  {notes}")
        return "\n".join(lines)


class _Inputs:
    """Resolves config sources into DataFrames, converting OSM once per run. Views are built in threads
    (``spark.parallel_tables``): ``lock`` guards what they share (the OSM conversion, the OD edges, the context
    graphs), so each is made once. The regions' pieces, which the points, lines and polygons views join
    against, are cut once, in the background (:meth:`cut_regions`)."""

    def __init__(self, spark: SparkSession, cfg: Config):
        self.spark, self.cfg = spark, cfg
        self.lock = threading.RLock()
        self._osm: dict[str, tuple[str, dict[str, int]]] = {}
        self.used: dict[str, str] = {}
        self.od_edges: dict[str, tuple[DataFrame, dict[str, int]]] = {}  # flows view -> its OD edges, stats
        self._pieces: dict[int, Future[DataFrame]] = {}  # vertices per piece -> the kept pieces

    def cut_regions(self, regions: DataFrame, sizes: Iterable[int]) -> None:
        """Start cutting the kept regions into pieces of each size (:func:`subdivided`) and keeping them, in a
        thread of their own: the cutting runs in one task, beside the regions' checks and the views' reading of
        their sources, and views of one size share it."""
        todo = [size for size in sorted(set(sizes)) if size not in self._pieces]
        if not todo:
            return
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cookie-pieces")
        for size in todo:
            self._pieces[size] = pool.submit(inheritable_thread_target(self.spark)(_kept), subdivided(regions, size))
        pool.shutdown(wait=False)

    def pieces(self, regions: DataFrame, size: int) -> DataFrame:
        """The regions' pieces of at most ``size`` vertices, waiting for :meth:`cut_regions` (called here if
        nothing started it)."""
        with self.lock:
            self.cut_regions(regions, [size])
            job = self._pieces[size]
        return job.result()

    def release(self) -> None:
        """Drop the pieces once the views are built (waiting for a cutting still under way)."""
        for job in self._pieces.values():
            if job.exception() is None:
                job.result().unpersist()

    def path(self, name: str) -> str:
        src = self.cfg.sources[name]
        p = self.cfg.resolve(src.path)
        self.used[name] = p
        return p

    def osm_layer(self, name: str, layer: str) -> DataFrame:
        with self.lock:
            if name not in self._osm:
                cache = str(Path(self.cfg.resolve(self.cfg.output.warehouse)) / "_cache" / "osm")
                self._osm[name] = converted_layers(self.path(name), cache)
        folder, counts = self._osm[name]
        if layer not in counts:
            raise InputError(
                f"source {name}: unknown OSM layer {layer!r}; layers are {[k for k in counts if not k.startswith('_')]}"
            )
        df = self.spark.read.format("geoparquet").load(spark_path(f"{folder}/{layer}.parquet"))
        return df.select(F.col("osm_id").alias("feature_id"), F.col("category").alias(C.CATEGORY), C.GEOMETRY)

    def features(self, view: ViewConfig) -> DataFrame:
        """feature_id, category, geometry for point/line/polygon views."""
        src = self.cfg.sources[view.source]
        if isinstance(src, OsmSource):
            if not view.layer:
                raise InputError(f"view {view.name}: an osm_pbf source needs 'layer'")
            return self.osm_layer(view.source, view.layer)
        if isinstance(src, VectorSource):
            path = self.path(view.source)
            df = read_vector(self.spark, path, src.format, src.crs, src.lon_column, src.lat_column)
            if view.category_column:
                if view.category_column not in df.columns:
                    raise InputError(
                        f"{path}: category column {view.category_column!r} not found "
                        f"(view {view.name}); columns are {[c for c in df.columns if c != C.GEOMETRY]}"
                    )
                cat = F.coalesce(F.col(view.category_column).cast("string"), F.lit("unknown"))
            else:
                cat = F.lit("all")
            return df.select(F.monotonically_increasing_id().alias("feature_id"), cat.alias(C.CATEGORY), C.GEOMETRY)
        raise InputError(f"view {view.name}: kind {view.kind} cannot read a {src.kind} source")


def build_regions(spark: SparkSession, cfg: Config, inputs: _Inputs) -> RegionsResult:
    rc = cfg.regions
    if isinstance(rc, FileRegions):
        return regions_from_file(spark, rc, cfg.resolve(rc.path))
    if isinstance(rc, IdRegions):
        return regions_from_ids(
            _region_ids(spark, cfg, inputs, rc), f"regions.source {rc.source}" if rc.source else "regions.count"
        )
    assert isinstance(rc, H3Regions)
    if rc.bbox:
        area = bbox_area(spark, rc.bbox)
    elif rc.area_path:
        area = read_vector(spark, cfg.resolve(rc.area_path)).select(C.GEOMETRY)
    else:
        name = rc.area_from_source
        assert name is not None  # H3Regions gives exactly one of bbox, area_path, area_from_source
        src = cfg.sources[name]
        if isinstance(src, OsmSource):
            frames = [inputs.osm_layer(name, layer) for layer in ("roads", "buildings", "pois")]
        elif isinstance(src, VectorSource):
            frames = [read_vector(spark, inputs.path(name), src.format, src.crs, src.lon_column, src.lat_column)]
        else:
            raise InputError(f"regions.area_from_source: {name} is not a spatial source")
        area = extent_area(frames)
    return regions_h3(area, rc)


def _region_ids(spark: SparkSession, cfg: Config, inputs: _Inputs, rc: IdRegions) -> DataFrame:
    """One ``region_id`` column: the ids of the regions' source, or 0..count-1."""
    if rc.count is not None:
        return spark.range(rc.count).select(F.col("id").cast("string").alias(C.REGION_ID))
    assert rc.source is not None  # IdRegions gives exactly one of source, count
    src = cfg.sources[rc.source]
    if isinstance(src, ArraySource):
        ids, _ = load_array(src, inputs.path(rc.source))
        return spark.createDataFrame([(i,) for i in ids], f"{C.REGION_ID} string")
    if isinstance(src, TableSource):
        return read_table_source(spark, src, inputs.path(rc.source)).select(C.REGION_ID)
    raise ConfigError(f"regions.source: {rc.source!r} is a {src.kind} source, not an array or table")


def od_edges(
    spark: SparkSession, cfg: Config, inputs: _Inputs, regions: DataFrame, view: ViewConfig
) -> tuple[DataFrame, dict[str, int]]:
    """The OD edges of a flows view (origin, destination, trips), read once per run and kept, so the view and
    the 'flows' context of other views use the same edges."""
    with inputs.lock:
        if view.name not in inputs.od_edges:
            src = cfg.sources[view.source]
            extra: dict[str, int] = {}
            if isinstance(src, ArraySource):
                path = inputs.path(view.source)
                ids, arr = load_array(src, path)
                edges, extra = matrix_edges(spark, ids, arr, where=f"{path} (view {view.name})")
            elif isinstance(src, TripsSource):
                edges, extra = _trip_edges(spark, cfg, inputs, regions, view, src)
            else:
                raise InputError(f"view {view.name}: flows need an array or trips source, not {src.kind}")
            inputs.od_edges[view.name] = (edges.persist(StorageLevel.MEMORY_AND_DISK), extra)
        return inputs.od_edges[view.name]


def context_graphs(
    spark: SparkSession, cfg: Config, inputs: _Inputs, regions: DataFrame, view: ViewConfig, cache: dict[str, DataFrame]
) -> dict[str, DataFrame]:
    """The edge lists (src, dst, weight) of the view's context graphs, in its ``context`` order; built once
    per run and shared between views (``cache``)."""
    graphs: dict[str, DataFrame] = {}
    for graph in view.context:
        with inputs.lock:
            if graph == "adjacency":
                if C.GEOMETRY not in regions.columns:
                    raise ConfigError(f"view {view.name}: 'adjacency' context needs region polygons")
                key = "adjacency"
                if key not in cache:
                    cache[key] = region_adjacency(regions).persist(StorageLevel.MEMORY_AND_DISK)
            else:
                flows_view = _flows_view_for(cfg, view)
                key = f"flows:{flows_view.name}"
                if key not in cache:
                    od, _ = od_edges(spark, cfg, inputs, regions, flows_view)
                    cache[key] = flow_edges(od).persist(StorageLevel.MEMORY_AND_DISK)
            graphs[graph] = cache[key]
    return graphs


def _flows_view_for(cfg: Config, view: ViewConfig) -> ViewConfig:
    """The flows view whose OD graph ``view``'s 'flows' context uses (validated when the config loads)."""
    every = [*cfg.views, *cfg.labels]
    flows = [v for v in every if v.kind == "flows"]
    name = view.context_flows_view or (flows[0].name if len(flows) == 1 else None)
    found = [v for v in flows if v.name == name]
    if not found:
        raise ConfigError(
            f"view {view.name}: 'flows' context needs context_flows_view naming one of {[v.name for v in flows]}"
        )
    return found[0]


#: View kinds that match their features to the regions' pieces (:func:`subdivided`): their builder and the
#: pieces' size
PIECE_VIEWS: dict[str, tuple[Callable[..., ViewResult], int]] = {
    "points": (poi_counts, POINT_PIECE_VERTICES),
    "lines": (road_lengths, SUBDIVIDE_VERTICES),
    "polygons": (polygon_cover, SUBDIVIDE_VERTICES),
}


def build_view(
    spark: SparkSession, cfg: Config, inputs: _Inputs, regions: DataFrame, view: ViewConfig, n_regions: int
) -> ViewResult:
    src = cfg.sources[view.source]
    bc = n_regions <= cfg.spark.broadcast_regions
    if view.kind in PIECE_VIEWS:
        build, vertices = PIECE_VIEWS[view.kind]
        items = inputs.features(view)  # read and checked before waiting for the pieces
        pieces = inputs.pieces(regions, vertices)
        return build(
            regions, items, view.categories, view.max_categories, view.other_category, broadcast=bc, pieces=pieces
        )
    if view.kind == "flows":
        edges, extra = od_edges(spark, cfg, inputs, regions, view)
        res = od_features(spark, regions, edges, view.flow_method, view.flow_dim, view.flow_values)
        res.stats.update(extra)
        return res
    if view.kind == "raster":
        if not isinstance(src, RasterSource):
            raise InputError(f"view {view.name}: raster views need a raster source")
        rasters = read_rasters(spark, inputs.path(view.source))
        bands = view.bands or list(range(1, raster_bands(rasters) + 1))
        return zonal_stats(regions, rasters, bands, view.statistics)
    if view.kind == "vectors":
        if isinstance(src, ArraySource):
            ids, arr = load_array(src, inputs.path(view.source))
            names = view.columns or (
                [view.name] if arr.shape[1] == 1 else [f"{view.name}_{i:03d}" for i in range(arr.shape[1])]
            )
            if len(names) != arr.shape[1]:
                raise InputError(f"view {view.name}: {len(names)} column names for {arr.shape[1]} array columns")
            table = array_frame(spark, ids, arr, names)
        elif isinstance(src, TableSource):
            table = read_table_source(spark, src, inputs.path(view.source))
            names = view.columns or [c for c in table.columns if c != C.REGION_ID]
        else:
            raise InputError(f"view {view.name}: vectors need an array or table source, not {src.kind}")
        return region_vectors(
            regions,
            table,
            names,
            view.transform,
            where=f"view {view.name} (source {view.source}: {inputs.used.get(view.source, '')})",
        )
    raise InputError(f"view {view.name}: unknown kind {view.kind}")


def _trip_edges(
    spark: SparkSession, cfg: Config, inputs: _Inputs, regions: DataFrame, view: ViewConfig, src: TripsSource
) -> tuple[DataFrame, dict[str, int]]:
    path = inputs.path(view.source)
    reader = spark.read.option("header", "true").option("inferSchema", "true")
    df = (
        reader.csv(spark_path(path))
        if (src.format or ("csv" if path.endswith(".csv") else "parquet")) == "csv"
        else spark.read.parquet(spark_path(path))
    )
    needed = [
        c
        for c in (
            src.origin_lon,
            src.origin_lat,
            src.destination_lon,
            src.destination_lat,
            src.origin_id,
            src.destination_id,
            src.count_column,
        )
        if c
    ]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise InputError(f"{path}: columns {missing} not found (view {view.name}); columns are {df.columns}")
    numeric = [c for c in (src.origin_lon, src.origin_lat, src.destination_lon, src.destination_lat) if c]
    check_numeric(df, numeric + ([src.count_column] if src.count_column else []), path)
    if src.count_column:
        _check_trip_counts(df, src.count_column, [c for c in needed if c != src.count_column], path)
    trips = F.col(src.count_column).cast("double") if src.count_column else F.lit(1.0)
    if src.origin_id and src.destination_id:
        edges = (
            df.select(
                F.col(src.origin_id).cast("string").alias(C.ORIGIN_REGION),
                F.col(src.destination_id).cast("string").alias(C.DESTINATION_REGION),
                trips.alias(C.TRIPS),
            )
            .groupBy(C.ORIGIN_REGION, C.DESTINATION_REGION)
            .agg(F.sum(C.TRIPS).alias(C.TRIPS))
        )
        return edges, {}
    if not all((src.origin_lon, src.origin_lat, src.destination_lon, src.destination_lat)):
        raise InputError(f"{path}: trips need origin/destination lon+lat columns or origin_id/destination_id")
    pts = df.select(
        F.expr(f"ST_Point(CAST(`{src.origin_lon}` AS DOUBLE), CAST(`{src.origin_lat}` AS DOUBLE))").alias(
            C.ORIGIN_GEOMETRY
        ),
        F.expr(f"ST_Point(CAST(`{src.destination_lon}` AS DOUBLE), CAST(`{src.destination_lat}` AS DOUBLE))").alias(
            C.DESTINATION_GEOMETRY
        ),
        trips.alias(C.TRIPS),
    )
    return trips_to_edges(regions, pts)


def _check_trip_counts(df: DataFrame, column: str, keys: list[str], path: str) -> None:
    """Every trip count is a finite number >= 0: a NaN would reach the flow features, an infinite one would
    become infinity, and a negative one would be dropped without a trace. Refused, naming the file, the column,
    how many rows and the first such row."""
    n = F.col(column).cast("double")
    bad = n.isNull() | F.isnan(n) | n.isin(float("inf"), float("-inf")) | (n < 0)
    n_bad = df.where(bad).count()
    if n_bad:
        first = df.where(bad).select(*keys, column).first()
        assert first is not None
        raise InputError(
            f"{path}: column {column!r}: {n_bad} row(s) whose trip count is not a finite number >= 0, "
            f"e.g. {first.asDict()}"
        )


def _check_finite(table: str, res: ViewResult, source: str) -> None:
    """Nothing non-finite reaches a Delta table: a NaN or infinity left in a feature column stops the job,
    naming the table, the columns and a region."""
    packed = res.pack()
    bad = F.coalesce(F.exists(F.col(FEATURES), not_finite), F.lit(False))
    first = packed.df.where(bad).select(C.REGION_ID).first()
    if first is None:
        return
    n_bad = packed.df.where(bad).count()
    at = (
        packed.df.where(bad)
        .select(F.posexplode(FEATURES).alias("_i", "_x"))
        .where(not_finite(F.col("_x")))
        .select("_i")
        .distinct()
        .collect()
    )
    cols = [res.feature_names[i] for i in sorted(int(r["_i"]) for r in at)]
    raise InputError(
        f"{table}: {n_bad} region(s) have a NaN or infinite value, e.g. region {first[0]!r}, in column(s) "
        f"{cols[:10]}{' ...' if len(cols) > 10 else ''} (source {source}); nothing was written"
    )


def _check_labels_are_not_views(planned: list[tuple[str, str, ViewResult, ViewConfig]]) -> None:
    """A label column equal to one of a view's own features in every region is refused before anything is
    written: the evaluation would score the embedding on a copy of its own input (leakage, not skill).

    Each table is read once into per-column fingerprints (:mod:`cookie.etl.copies`); only the pairs whose
    fingerprints agree are compared value by value. Constant label columns are not compared.
    """

    def own(res: ViewResult) -> dict[str, str]:
        values = res.value_sql()
        return {c: values[c] for c in res.feature_names if not c.startswith(tuple(C.CONTEXT_PREFIX.values()))}

    labels = [(label, r, own(r)) for _, kind, r, label in planned if kind == "label" and own(r)]
    views = [(v, r, own(r)) for _, kind, r, v in planned if kind == "view" and own(r)]
    if not labels or not views:
        return
    view_prints = [fingerprints(r.df, values) for _, r, values in views]
    for label, lres, lvalues in labels:
        lprints = fingerprints(lres.df, lvalues)
        for (view, vres, vvalues), vprints in zip(views, view_prints):
            same = copied_columns(lres.df, lvalues, vres.df, vvalues, lprints, vprints)
            if same:
                lc, vc = same[0]
                raise InputError(
                    f"label {label.name}: column {lc!r} equals view {view.name}'s feature {vc!r} in every "
                    f"region (source {label.source!r}): a view's own input cannot be its downstream label; "
                    "remove it from the views or from the labels"
                )


def _check_not_empty(name: str, res: ViewResult) -> None:
    if not res.feature_names:
        raise InputError(f"view {name}: no features (empty input?)")


def _kept(df: DataFrame) -> DataFrame:
    """``df`` computed once and kept (memory, then disk) for the rest of the run.

    Where the driver runs the tasks itself (``local[...]`` masters: laptops, CI, single-node clusters) the
    frame is also cut from its lineage (a local checkpoint): every later step over a view (context, checks,
    the write) would otherwise plan, print and ship the whole chain that built it and the regions under it, a
    few seconds per step for a wide view. On a cluster the rows are only cached, so a lost executor's share is
    recomputed rather than lost. Release with ``unpersist`` (a no-op for a checkpoint, whose blocks Spark
    drops once the frame is gone).
    """
    if (df.sparkSession.sparkContext.master or "").startswith("local"):
        return df.localCheckpoint(eager=True)
    kept = df.persist(StorageLevel.MEMORY_AND_DISK)
    kept.count()
    return kept


def in_parallel(
    fn: Callable[[_T], _R], items: Sequence[_T], workers: int, spark: SparkSession | None = None
) -> list[_R]:
    """``[fn(x) for x in items]`` with up to ``workers`` calls at once (threads; each submits its own Spark
    jobs). Results come back in the items' order; when calls fail, the error of the first failing item (in
    that order) is raised once every started call has ended, and calls not yet started are not made.

    With ``spark``, the threads inherit the calling thread's Spark local properties (job group, scheduler pool,
    job tags: what a scheduler or notebook uses to cancel the job's work), as PySpark asks of threads it runs.
    """
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    target = inheritable_thread_target(spark)(fn) if spark is not None else fn
    pool = ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="cookie-table")
    try:
        futures = [pool.submit(target, x) for x in items]
        return [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _build_table(
    spark: SparkSession,
    cfg: Config,
    inputs: _Inputs,
    regions: DataFrame,
    view: ViewConfig,
    n_regions: int,
    prefix: str,
    graph_cache: dict[str, DataFrame],
    release: list[DataFrame],
) -> ViewResult:
    """One view or label table, computed, kept and checked (nothing written yet)."""
    log.info("building %s%s", prefix, view.name)
    t_view = time.time()
    res = build_view(spark, cfg, inputs, regions, view, n_regions)
    _check_not_empty(view.name, res)
    res = res.pack()  # one array column until the write: see ViewResult
    res.df = _kept(res.df)
    for df in res.release:
        df.unpersist()
    res.release = []
    present = res.df.where(F.col("_present")).count()
    res.stats["regions_with_data"] = present
    if present == 0:
        seen = ", ".join(f"{k}={v}" for k, v in res.stats.items() if v and k != "regions_with_data")
        raise InputError(
            f"view {view.name}: empty: no region has any data (source {view.source}: "
            f"{inputs.used.get(view.source, view.source)}{'; ' + seen if seen else ''})"
        )
    if view.context:
        graphs = context_graphs(spark, cfg, inputs, regions, view, graph_cache)
        release.append(res.df)
        res = with_context(res, graphs)
        res.df = _kept(res.df)
        for graph, edges in graphs.items():
            res.stats[f"context_{graph}_edges"] = edges.count()
        res.extra = {**res.extra, "context": json.dumps(list(view.context))}
    _check_finite(prefix + view.name, res, f"{view.source}: {inputs.used.get(view.source, view.source)}")
    res.seconds = time.time() - t_view
    return res


def build_features(spark: SparkSession, cfg: Config, only: list[str] | None = None) -> RunReport:
    """Run the whole feature job for a config; returns what was written.

    ``only``: names of the views/labels to build (the regions table is always built); a name that is not a
    view or label of the config is a :class:`ConfigError` listing the valid names.
    """
    t0 = time.time()
    check_only(cfg, only)
    run_id = uuid.uuid4().hex[:12]
    todo = [
        (prefix, view)
        for group, prefix in (("views", C.VIEW_PREFIX), ("labels", C.LABEL_PREFIX))
        for view in getattr(cfg, group)
        if only is None or view.name in only
    ]
    if any(view.kind == "points" for _, view in todo):
        start_python_workers(spark)  # for the points view's join: while the regions are read, on a free core
    inputs = _Inputs(spark, cfg)
    regions_res = build_regions(spark, cfg, inputs)
    regions = _kept(regions_res.df)
    for df in regions_res.release:
        df.unpersist()
    if C.GEOMETRY in regions.columns:
        inputs.cut_regions(regions, {PIECE_VIEWS[view.kind][1] for _, view in todo if view.kind in PIECE_VIEWS})
    if isinstance(cfg.regions, FileRegions):
        check_extent(regions, cfg.resolve(cfg.regions.path))
    n_regions = regions.count()
    t_regions = time.time() - t0
    if n_regions == 0:
        raise InputError("no regions: the area or region file produced none")
    graph_cache: dict[str, DataFrame] = {}
    release: list[DataFrame] = []
    workers = cfg.spark.parallel_tables

    def build(item: tuple[str, ViewConfig]) -> tuple[str, str, ViewResult, ViewConfig]:
        prefix, view = item
        res = _build_table(spark, cfg, inputs, regions, view, n_regions, prefix, graph_cache, release)
        return prefix + view.name, "label" if prefix == C.LABEL_PREFIX else "view", res, view

    planned = in_parallel(build, todo, workers, spark)
    inputs.release()
    _check_labels_are_not_views(planned)

    def write_regions() -> TableReport:
        stored = tables.geometry_to_wkb(regions) if C.GEOMETRY in regions.columns else regions  # ids only
        version = tables.write_table(
            stored.orderBy(C.REGION_ID),
            tables.locate(cfg, C.REGIONS_TABLE),
            {C.TABLE_KIND_PROPERTY: "regions", "cookie.run_id": run_id},
            description=f"cookie run {run_id}",
        )
        return TableReport(C.REGIONS_TABLE, n_regions, 0, version, regions_res.stats, t_regions)

    def write_view(item: tuple[str, str, ViewResult, ViewConfig]) -> TableReport:
        table, kind, res, view = item
        props = tables.feature_properties(
            kind,
            res.feature_names,
            {
                "cookie.view_kind": view.kind,
                "cookie.source": view.source,
                "cookie.run_id": run_id,
                C.VIEW_CONFIG_PROPERTY: view.spec(),
            },
        )
        for k, v in res.extra.items():
            props[f"cookie.{k}"] = v
        t_write = time.time()
        version = tables.write_table(
            res.unpack().df.orderBy(C.REGION_ID), tables.locate(cfg, table), props, description=f"cookie run {run_id}"
        )
        res.df.unpersist()
        return TableReport(
            table, n_regions, len(res.feature_names), version, res.stats, res.seconds + time.time() - t_write
        )

    writes: list[Callable[[], TableReport]] = [write_regions, *(functools.partial(write_view, p) for p in planned)]
    reports = in_parallel(lambda write: write(), writes, workers, spark)
    for df in [*release, *graph_cache.values(), *(e for e, _ in inputs.od_edges.values())]:
        df.unpersist()
    regions.unpersist()
    seconds = time.time() - t0
    report = RunReport(
        run_id,
        cfg.name,
        cfg.warehouse_path() if not cfg.output.catalog else cfg.output.catalog,
        seconds,
        reports,
        dict(inputs.used),
    )
    _log_run(spark, cfg, report)
    return report


def check_only(cfg: Config, only: list[str] | None) -> None:
    """``--only`` names views or labels of the config (at least one); otherwise a ConfigError lists them."""
    if only is None:
        return
    valid = [v.name for v in cfg.views] + [v.name for v in cfg.labels]
    unknown = [n for n in only if n not in valid]
    if unknown or not only:
        what = f"unknown view/label name(s) {unknown}" if unknown else "no view/label named"
        raise ConfigError(f"--only: {what} (config {cfg.name}); valid names: {', '.join(valid)}")


def _log_run(spark: SparkSession, cfg: Config, report: RunReport) -> None:
    row = {
        "run_id": report.run_id,
        "config": report.config,
        "finished_at": datetime.now(UTC).isoformat(),
        "seconds": float(report.seconds),
        "inputs": json.dumps(report.inputs, sort_keys=True),
        "tables": json.dumps(
            {
                t.table: {
                    "rows": t.rows,
                    "features": t.features,
                    "version": t.version,
                    "seconds": round(t.seconds, 2),
                    "stats": t.stats,
                }
                for t in report.tables
            },
            sort_keys=True,
        ),
    }
    # the manifest: this run's tables over the previous complete run's; appended last, it commits the run
    versions = {**tables.snapshot(cfg, spark), **{t.table: t.version for t in report.tables}}
    row[C.RUN_SNAPSHOT_COLUMN] = json.dumps(versions, sort_keys=True)
    tables.append_rows(spark.createDataFrame([row]), tables.locate(cfg, C.RUNS_TABLE))
