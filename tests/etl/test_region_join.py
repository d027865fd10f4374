"""The spatial join of the points, lines and polygons views: broadcast when asked, partitioned otherwise, the
same rows either way (Spark's own size-based choice switched off, so the plan shows what was asked for)."""

from __future__ import annotations

from contextlib import contextmanager

import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from cookie import constants as C
from cookie.etl.features.common import region_join
from cookie.etl.features.points import FEATURE_ID, _count_partition, count_points, poi_counts

AUTO = ("spark.sql.autoBroadcastJoinThreshold", "sedona.join.autoBroadcastJoinThreshold")


@contextmanager
def no_auto_broadcast(spark):
    old = {k: spark.conf.get(k, None) for k in AUTO}
    for k in AUTO:
        spark.conf.set(k, "-1")
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                spark.conf.unset(k)
            else:
                spark.conf.set(k, v)


@pytest.fixture
def frames(spark):
    regions = spark.createDataFrame(
        [("a", "POLYGON ((0 0, 1 0, 1 1, 0 1, 0 0))", 1.0), ("b", "POLYGON ((1 0, 2 0, 2 1, 1 1, 1 0))", 1.0)],
        [C.REGION_ID, "_wkt", C.AREA_KM2],
    ).select(C.REGION_ID, F.expr("ST_GeomFromWKT(_wkt)").alias(C.GEOMETRY), C.AREA_KM2)
    # one point inside a, two inside b, one on their shared edge (goes to the smaller id, a), one outside both
    points = spark.createDataFrame(
        [
            (1, "cafe", 0.5, 0.5),
            (2, "cafe", 1.5, 0.5),
            (3, "shop", 1.5, 0.2),
            (4, "shop", 1.0, 0.5),
            (5, "cafe", 5.0, 5.0),
        ],
        ["feature_id", C.CATEGORY, "x", "y"],
    ).select("feature_id", C.CATEGORY, F.expr("ST_Point(x, y)").alias(C.GEOMETRY))
    return regions, points


@pytest.mark.parametrize(("broadcast", "node"), [(True, "BroadcastIndexJoin"), (False, "RangeJoin")])
def test_region_join_plans_what_was_asked(spark, frames, broadcast, node) -> None:
    regions, points = frames
    with no_auto_broadcast(spark):
        hits = region_join(regions, points, "ST_Intersects", broadcast=broadcast)
        plan = hits._jdf.queryExecution().executedPlan().toString()
        assert node in plan, plan
        assert sorted((r[C.REGION_ID], r["feature_id"]) for r in hits.collect()) == [
            ("a", 1),
            ("a", 4),
            ("b", 2),
            ("b", 3),
            ("b", 4),
        ]


def test_points_view_is_the_same_broadcast_or_not(spark, frames) -> None:
    regions, points = frames
    with no_auto_broadcast(spark):
        got = {}
        for broadcast in (True, False):
            res = poi_counts(regions, points, broadcast=broadcast)
            rows = {r[C.REGION_ID]: r.asDict() for r in res.df.collect()}
            got[broadcast] = (rows, res.stats)
    assert got[True] == got[False]
    rows, stats = got[True]
    assert stats["assigned"] == 4 and stats["outside_regions"] == 1
    assert (rows["a"]["count_cafe"], rows["a"]["count_shop"], rows["a"]["count_total"]) == (1, 1, 2)
    assert (rows["b"]["count_cafe"], rows["b"]["count_shop"], rows["b"]["count_total"]) == (1, 1, 2)


def counted(counts) -> list[tuple[str, str, int]]:
    """count_points' rows summed per region and category (the per-task path gives a row per task)."""
    rows = counts.groupBy(C.REGION_ID, C.CATEGORY).agg(F.sum("n").alias("n")).collect()
    return sorted((r[C.REGION_ID], r[C.CATEGORY], r["n"]) for r in rows)


def test_a_task_counts_each_point_once_even_across_arrow_batches() -> None:
    """The broadcast path resolves boundary points inside each task: point 7 touches regions b and a, and its two
    hits arrive in two Arrow batches; it is counted once, in a (the smaller id)."""

    def batch(rows):
        ids, regions, cats = zip(*rows)
        return pa.RecordBatch.from_arrays(
            [pa.array(ids, pa.int64()), pa.array(regions), pa.array(cats)], [FEATURE_ID, C.REGION_ID, C.CATEGORY]
        )

    def counted(batches):
        out = pa.Table.from_batches(list(_count_partition(iter(batches))))
        return sorted(zip(out[C.REGION_ID].to_pylist(), out[C.CATEGORY].to_pylist(), out["n"].to_pylist()))

    batches = [batch([(1, "a", "cafe"), (7, "b", "shop")]), batch([(7, "a", "shop"), (8, "b", "cafe")])]
    assert counted(batches) == [("a", "cafe", 1), ("a", "shop", 1), ("b", "cafe", 1)]
    # a point's hits in one batch, and a run of points with two hits each
    two = [batch([(1, "b", "cafe"), (1, "a", "cafe"), (2, "c", "shop"), (2, "b", "shop"), (3, "c", "cafe")])]
    assert counted(two) == [("a", "cafe", 1), ("b", "shop", 1), ("c", "cafe", 1)]
    # ids out of order (not what the join emits): counted from all the hits at once, still each point once
    shuffled = [batch([(7, "b", "shop"), (1, "a", "cafe")]), batch([(8, "b", "cafe"), (7, "a", "shop")])]
    assert counted(shuffled) == [("a", "cafe", 1), ("a", "shop", 1), ("b", "cafe", 1)]
    assert list(_count_partition(iter([]))) == []
    assert list(_count_partition(iter([batch([(1, "a", "x")]).slice(0, 0)]))) == []


def test_boundary_points_settled_per_task_or_by_a_shuffle_give_the_same_counts(spark, frames) -> None:
    """Big inputs settle boundary points inside each task (Arrow, Python workers), small ones by grouping the
    matches by point id: the same counts either way, the shared-edge point once, in a."""
    regions, points = frames
    got = {}
    for per_task in (True, False):
        got[per_task] = counted(count_points(regions, points, broadcast=True, per_task=per_task))
    assert got[True] == got[False] == [("a", "cafe", 1), ("a", "shop", 1), ("b", "cafe", 1), ("b", "shop", 1)]


def test_regions_cut_into_pieces_count_each_point_once(spark) -> None:
    """Regions matched as pieces (here of at most SUBDIVIDE_VERTICES vertices, so that the disc is cut): a
    400-vertex disc and the square around it, with a grid of points that puts many exactly on the cut lines
    (x = 0, y = 0) and on the disc's ring; each point counted once, in the smallest id it touches, as shapely
    counts on the whole polygons."""
    import numpy as np
    import shapely

    from cookie.etl.features.common import SUBDIVIDE_VERTICES, subdivided

    t = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    disc = shapely.Polygon(np.c_[np.cos(t), np.sin(t)])
    square = shapely.Polygon([(-2, -2), (2, -2), (2, 2), (-2, 2)], holes=[disc.exterior.coords])
    regions = spark.createDataFrame(  # WKB: the vertices exactly (WKT text rounds them)
        [("a", disc.wkb, 1.0), ("b", square.wkb, 1.0)], [C.REGION_ID, "_wkb", C.AREA_KM2]
    ).select(C.REGION_ID, F.expr("ST_GeomFromWKB(_wkb)").alias(C.GEOMETRY), C.AREA_KM2)
    assert regions.count() < subdivided(regions).count()
    assert subdivided(regions).agg(F.max(F.expr(f"ST_NPoints({C.GEOMETRY})"))).first()[0] <= SUBDIVIDE_VERTICES
    g = np.linspace(-2.5, 2.5, 51)
    # grid points a rounding error away from the ring are left out: a cut adds vertices computed in floating point
    grid = [(float(x), float(y)) for x in g for y in g if abs(np.hypot(x, y) - 1) > 1e-9]
    xy = grid + [(float(x), float(y)) for x, y in disc.exterior.coords[:-1]]
    points = spark.createDataFrame(
        [(i, "p", x, y) for i, (x, y) in enumerate(xy)], ["feature_id", C.CATEGORY, "x", "y"]
    ).select("feature_id", C.CATEGORY, F.expr("ST_Point(x, y)").alias(C.GEOMETRY))
    pts = shapely.points(np.array(xy))
    in_a = shapely.intersects(disc, pts)
    in_b = shapely.intersects(square, pts) & ~in_a
    expected = [("a", "p", int(in_a.sum())), ("b", "p", int(in_b.sum()))]
    pieces = subdivided(regions)
    for per_task in (True, False):
        assert counted(count_points(regions, points, broadcast=True, per_task=per_task, pieces=pieces)) == expected
