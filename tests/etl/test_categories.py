"""The category list of a points/lines/polygons view: the driver-side ranking (up to ``LOCAL_CATEGORIES``
distinct values) gives what the Spark-side ranking gives: case merges, ties, null categories, 'other'."""

from __future__ import annotations

import pytest

from cookie import constants as C
from cookie.etl.features import common

pytestmark = pytest.mark.spark

ROWS = (
    [("Café",)] * 5
    + [("café",)] * 3
    + [("CAFÉ",)] * 5  # ties with "Café": the first in sort order is kept
    + [("bar",)] * 4
    + [("pub",)] * 4  # ties with "bar" for the last slot: "bar" wins (ascending)
    + [("shop",)] * 6
    + [(None,)] * 7  # null takes a slot of the ranking, as in Spark's ordering, and is never a column
    + [("rare",)] * 1
)


@pytest.mark.parametrize("max_categories", [1, 4])
@pytest.mark.parametrize("other", [True, False])
def test_local_ranking_equals_spark_ranking(spark, monkeypatch, max_categories, other):
    df = spark.createDataFrame(ROWS, f"{C.CATEGORY} string")
    local = common.resolve_categories(df, None, max_categories, other)
    monkeypatch.setattr(common, "LOCAL_CATEGORIES", 0)  # every table is "too many": the Spark path
    remote = common.resolve_categories(df, None, max_categories, other)
    assert local[0] == remote[0]
    assert local[2] == remote[2]
    assert local[2]["input_rows"] == len(ROWS) and local[2]["category_case_merged"] == 8

    def rows(frame):
        return sorted(frame.groupBy(C.CATEGORY).count().collect(), key=lambda r: (r[0] is not None, r[0] or ""))

    assert rows(local[1]) == rows(remote[1])


def test_ranking_content(spark):
    df = spark.createDataFrame(ROWS, f"{C.CATEGORY} string")
    cats, out, stats = common.resolve_categories(df, None, 4, True)
    # counts after merging: CAFÉ 13, null 7, shop 6, bar 4, pub 4, rare 1 -> the top 4 hold null, so 3 columns
    assert cats == ["CAFÉ", "bar", "shop", common.OTHER]
    got = {r[0]: r[1] for r in out.groupBy(C.CATEGORY).count().collect()}
    assert got == {"CAFÉ": 13, "shop": 6, "bar": 4, common.OTHER: 12}


@pytest.mark.parametrize("per_task", [True, False])
def test_points_view_ranks_the_categories_inside_its_regions(spark, monkeypatch, per_task):
    """A category frequent only outside the regions gets no column: the ranking reads the per-region counts of the
    one spatial join (case merges and 'other' as for any ranking), so a country-wide file ranks a city's POIs."""
    from pyspark.sql import functions as F

    from cookie.etl.features import points as P

    monkeypatch.setattr(P, "PER_TASK_MIN_POINTS", 0 if per_task else 10**9)
    regions = spark.createDataFrame(
        [("a", "POLYGON ((0 0, 1 0, 1 1, 0 1, 0 0))", 2.0), ("b", "POLYGON ((1 0, 2 0, 2 1, 1 1, 1 0))", 1.0)],
        [C.REGION_ID, "_wkt", C.AREA_KM2],
    ).select(C.REGION_ID, F.expr("ST_GeomFromWKT(_wkt)").alias(C.GEOMETRY), C.AREA_KM2)
    inside = [("Cafe", 0.5, 0.5)] * 3 + [("cafe", 1.5, 0.5)] * 2 + [("shop", 1.5, 0.2)] * 2 + [("pub", 0.2, 0.2)]
    outside = [("farm", 5.0, 5.0)] * 20
    points = spark.createDataFrame(
        [(i, c, x, y) for i, (c, x, y) in enumerate(inside + outside)], ["feature_id", C.CATEGORY, "x", "y"]
    ).select("feature_id", C.CATEGORY, F.expr("ST_Point(x, y)").alias(C.GEOMETRY))

    res = P.poi_counts(regions, points, max_categories=2)
    assert res.feature_names == ["count_cafe", "count_shop", "count_other", "count_total", "density_per_km2"]
    got = {r[C.REGION_ID]: r.asDict() for r in res.df.collect()}
    assert [got["a"][n] for n in res.feature_names] == [3.0, 0.0, 1.0, 4.0, 2.0]
    assert [got["b"][n] for n in res.feature_names] == [2.0, 2.0, 0.0, 4.0, 4.0]
    assert res.stats == {"input_rows": 28, "assigned": 8, "outside_regions": 20, "category_case_merged": 2}


@pytest.mark.parametrize("categories", [None, ["Cafe", "shop"]])
def test_points_view_without_other_counts_only_the_kept_categories_as_assigned(spark, categories):
    """Without 'other', a point inside a region whose category has no column is not counted as assigned, whether
    the categories come from the data (the ranking's counts cannot say so: the columns are summed) or the config."""
    from pyspark.sql import functions as F

    from cookie.etl.features import points as P

    regions = spark.createDataFrame(
        [("a", "POLYGON ((0 0, 1 0, 1 1, 0 1, 0 0))", 2.0), ("b", "POLYGON ((1 0, 2 0, 2 1, 1 1, 1 0))", 1.0)],
        [C.REGION_ID, "_wkt", C.AREA_KM2],
    ).select(C.REGION_ID, F.expr("ST_GeomFromWKT(_wkt)").alias(C.GEOMETRY), C.AREA_KM2)
    inside = [("Cafe", 0.5, 0.5)] * 3 + [("shop", 1.5, 0.2)] * 2 + [("pub", 0.2, 0.2)]
    points = spark.createDataFrame(
        [(i, c, x, y) for i, (c, x, y) in enumerate(inside + [("farm", 5.0, 5.0)])],
        ["feature_id", C.CATEGORY, "x", "y"],
    ).select("feature_id", C.CATEGORY, F.expr("ST_Point(x, y)").alias(C.GEOMETRY))

    res = P.poi_counts(regions, points, categories=categories, max_categories=2, other=False)
    assert res.feature_names == ["count_cafe", "count_shop", "count_total", "density_per_km2"]
    assert res.stats["input_rows"] == 7 and res.stats["assigned"] == 5
