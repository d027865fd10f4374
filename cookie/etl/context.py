"""Spatial context (method.md section 1, "ours, optional per view"), computed once in the ETL.

A view with ``context: [adjacency, flows]`` gets, after its own features, the same features averaged over
each region's neighbours in each region graph (one hop, row-normalised weights, as in simplified graph
convolution): columns ``ctx_adj__<feature>`` and ``ctx_flows__<feature>``. Only neighbours whose
``_present`` is true count; a region without such a neighbour keeps its own values (zeros when it has no
data itself), so nothing is ever NaN.

Graphs are edge lists ``(src, dst, weight)``, one row per directed edge, no self-loops:

* :func:`adjacency_edges`: polygons that intersect or touch (a Sedona ``ST_Intersects`` self-join of the
  regions), weight 1; :func:`h3_adjacency_edges`: H3 ring-1 neighbours for H3 grids.
* :func:`flow_edges`: the OD graph of a flows view (trips origin -> destination plus the reverse),
  weight = trips both ways; self-flows are not neighbours.

Everything here is a ``DataFrame -> DataFrame`` transform (joins and one ``groupBy``): nothing is
collected to the driver, so it scales with the number of edges.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cookie import constants as C
from cookie.etl.features.common import FEATURES, PRESENT, ViewResult, double_array, project, sql_name

SRC = "src"
DST = "dst"
WEIGHT = C.WEIGHT
GRAPH_PREFIX = C.CONTEXT_PREFIX


def context_column(graph: str, feature: str) -> str:
    """``ctx_adj__<feature>`` / ``ctx_flows__<feature>``."""
    return f"{GRAPH_PREFIX[graph]}{C.FEATURE_SEP}{feature}"


def adjacency_edges(regions: DataFrame) -> DataFrame:
    """Regions (``region_id``, ``geometry``) whose polygons intersect or touch, both directions, weight 1.

    A Sedona spatial self-join (planned as a range join), self-pairs removed.
    """
    a = regions.select(F.col(C.REGION_ID).alias(SRC), F.col(C.GEOMETRY).alias("_ga"))
    b = regions.select(F.col(C.REGION_ID).alias(DST), F.col(C.GEOMETRY).alias("_gb"))
    pairs = a.join(b, F.expr("ST_Intersects(_ga, _gb)"))
    return pairs.where(F.col(SRC) != F.col(DST)).select(SRC, DST, F.lit(1.0).alias(WEIGHT))


def h3_adjacency_edges(regions: DataFrame) -> DataFrame:
    """H3 cells (``region_id``, ``h3_cell``) that are ring-1 neighbours (``ST_H3KRing``), both directions."""
    ring = regions.select(
        F.col(C.REGION_ID).alias(SRC), F.explode(F.expr(f"ST_H3KRing({C.H3_CELL}, 1, true)")).alias("_nb")
    )
    cells = regions.select(F.col(C.REGION_ID).alias(DST), F.col(C.H3_CELL).alias("_nb"))
    return ring.join(cells, "_nb").where(F.col(SRC) != F.col(DST)).select(SRC, DST, F.lit(1.0).alias(WEIGHT))


def region_adjacency(regions: DataFrame) -> DataFrame:
    """The adjacency graph of a regions frame: H3 neighbours for H3 grids, the polygon self-join otherwise."""
    if C.H3_CELL in regions.columns:
        return h3_adjacency_edges(regions)
    return adjacency_edges(regions)


def flow_edges(od: DataFrame) -> DataFrame:
    """OD edges (``origin_region_id``, ``destination_region_id``, ``trips``) -> an undirected weighted graph:
    weight(a, b) = trips a->b + trips b->a, both directions listed; self-flows and non-positive counts dropped."""
    e = od.where((F.col(C.TRIPS) > 0) & (F.col(C.ORIGIN_REGION) != F.col(C.DESTINATION_REGION)))
    fwd = e.select(
        F.col(C.ORIGIN_REGION).alias(SRC),
        F.col(C.DESTINATION_REGION).alias(DST),
        F.col(C.TRIPS).cast("double").alias(WEIGHT),
    )
    rev = e.select(
        F.col(C.DESTINATION_REGION).alias(SRC),
        F.col(C.ORIGIN_REGION).alias(DST),
        F.col(C.TRIPS).cast("double").alias(WEIGHT),
    )
    return fwd.unionByName(rev).groupBy(SRC, DST).agg(F.sum(WEIGHT).alias(WEIGHT))


def _packed(view: DataFrame, names: list[str]) -> DataFrame:
    """``region_id``, the features as one ``array<double>`` column ``_features`` (one projection), ``_present``."""
    return view.select(C.REGION_ID, double_array(names).alias(FEATURES), PRESENT)


def _neighbour_means(packed: DataFrame, edges: DataFrame, out: str) -> DataFrame:
    """``region_id``, ``out``: the weighted mean of the ``_features`` arrays of the region's neighbours that have the
    view, for regions with at least one such neighbour.

    The features travel as one vector per row and are averaged by one vector aggregate (Spark ML's
    ``Summarizer`` weighted mean, sum(w * x) / sum(w) per element), so the plan is as narrow for 1,000 features as
    for one; a ``sum`` per column would make one aggregate expression per feature.
    """
    from pyspark.ml.functions import array_to_vector, vector_to_array
    from pyspark.ml.stat import Summarizer

    have = packed.where(F.col(PRESENT)).select(
        F.col(C.REGION_ID).alias(DST), array_to_vector(F.col(FEATURES)).alias("_x")
    )
    e = edges.where((F.col(SRC) != F.col(DST)) & (F.col(WEIGHT) > 0)).select(SRC, DST, F.col(WEIGHT).cast("double"))
    means = e.join(have, DST).groupBy(SRC).agg(Summarizer.mean(F.col("_x"), F.col(WEIGHT)).alias("_m"))
    return means.select(F.col(SRC).alias(C.REGION_ID), vector_to_array(F.col("_m")).alias(out))


def _append_means(view: DataFrame, names: list[str], graphs: Mapping[str, DataFrame]) -> tuple[DataFrame, list[str]]:
    """``view``'s columns (``_present`` moved last) followed by ``ctx_<graph>__<name>`` for every graph and name,
    expanded from the mean arrays in one final projection."""
    packed = _packed(view, names)
    joined = view
    for k, edges in enumerate(graphs.values()):
        joined = joined.join(_neighbour_means(packed, edges, f"__ctx_mean{k}"), C.REGION_ID, "left")
    keep = [c for c in view.columns if c != PRESENT]
    ctx = [context_column(graph, n) for graph in graphs for n in names]
    means = [
        f"coalesce(__ctx_mean{k}[{i}], CAST({sql_name(n)} AS DOUBLE))"
        for k in range(len(graphs))
        for i, n in enumerate(names)
    ]
    cols = [(sql_name(c), c) for c in keep] + list(zip(means, ctx)) + [(sql_name(PRESENT), PRESENT)]
    return project(joined, cols), ctx


def neighbour_mean(view: DataFrame, names: list[str], edges: DataFrame, graph: str) -> DataFrame:
    """Append ``ctx_<graph>__<name>`` for each feature: the weighted mean of the feature over the region's
    neighbours in ``edges`` that have the view (``_present``), weights row-normalised over those
    neighbours; a region without one keeps its own value.

    ``view``: ``region_id``, features, ``_present`` (any other columns are kept, ``_present`` stays last).
    One join of the edges with the present regions, one vector ``groupBy(src)``, one left join back.
    """
    return _append_means(view, names, {graph: edges})[0]


def with_context(res: ViewResult, graphs: Mapping[str, DataFrame]) -> ViewResult:
    """The view's features followed by their neighbour mean over each graph (in the given order).

    Works on the packed view (:meth:`ViewResult.pack`): the means are one array per graph and region, appended
    to the features array by one ``concat``; a region without a present neighbour keeps its own array. A packed
    view gives a packed result, a view with one column per feature gives one again (expanded once).
    """
    packed = res.pack()
    joined = packed.df
    for k, edges in enumerate(graphs.values()):
        joined = joined.join(_neighbour_means(packed.df, edges, f"__ctx_mean{k}"), C.REGION_ID, "left")
    features = F.concat(
        F.col(FEATURES), *[F.coalesce(F.col(f"__ctx_mean{k}"), F.col(FEATURES)) for k in range(len(graphs))]
    )
    ctx = [context_column(graph, n) for graph in graphs for n in res.feature_names]
    names = [*res.feature_names, *ctx]
    nullable = {**packed.nullable, **{c: packed.nullable[n] for c, n in zip(ctx, res.feature_names * len(graphs))}}
    out = ViewResult(
        joined.select(C.REGION_ID, features.alias(FEATURES), PRESENT),
        names,
        dict(res.stats),
        res.extra,
        res.seconds,
        packed=True,
        nullable=nullable,
    )
    return out if res.packed else out.unpack()
