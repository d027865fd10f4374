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
