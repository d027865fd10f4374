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
from cookie.etl.features.common import PRESENT, ViewResult

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


def neighbour_mean(view: DataFrame, names: list[str], edges: DataFrame, graph: str) -> DataFrame:
    """Append ``ctx_<graph>__<name>`` for each feature: the weighted mean of the feature over the region's
    neighbours in ``edges`` that have the view (``_present``), weights row-normalised over those
    neighbours; a region without one keeps its own value.

    ``view``: ``region_id``, features, ``_present`` (any other columns are kept, ``_present`` stays last).
    One join of the edges with the present regions, one ``groupBy(src)``, one left join back.
    """
    ctx = [context_column(graph, n) for n in names]
    have = view.where(F.col(PRESENT)).select(
        F.col(C.REGION_ID).alias(DST), *[F.col(n).alias(f"_x{i}") for i, n in enumerate(names)]
    )
    e = edges.where((F.col(SRC) != F.col(DST)) & (F.col(WEIGHT) > 0)).select(SRC, DST, WEIGHT)
    sums = (
        e.join(have, DST)
        .groupBy(SRC)
        .agg(
            F.sum(WEIGHT).alias("_deg"),
            *[F.sum(F.col(WEIGHT) * F.col(f"_x{i}")).alias(f"_s{i}") for i in range(len(names))],
        )
    )
    means = sums.select(
        F.col(SRC).alias(C.REGION_ID), *[(F.col(f"_s{i}") / F.col("_deg")).alias(f"_m{i}") for i in range(len(names))]
    )
    joined = view.join(means, C.REGION_ID, "left")
    keep = [c for c in view.columns if c != PRESENT]
    return joined.select(
        *keep,
        *[F.coalesce(F.col(f"_m{i}"), F.col(n).cast("double")).alias(c) for i, (n, c) in enumerate(zip(names, ctx))],
        PRESENT,
    )


def with_context(res: ViewResult, graphs: Mapping[str, DataFrame]) -> ViewResult:
    """The view's features followed by their neighbour mean over each graph (in the given order)."""
    df, names = res.df, list(res.feature_names)
    for graph, edges in graphs.items():
        df = neighbour_mean(df, res.feature_names, edges, graph)
        names += [context_column(graph, n) for n in res.feature_names]
    return ViewResult(df.select(C.REGION_ID, *names, PRESENT), names, dict(res.stats), res.extra, res.seconds)
