"""Precomputed per-region vectors (image or text embeddings, benchmark matrices), aligned to regions.

Wide tables (hundreds or thousands of columns) are built in single projections: the missing-value check
is one ``exists`` over an array of the row's values, never a chain of ORs or ``withColumn`` calls, whose
nesting depth grows with the number of columns until the JVM's stack overflows, and no Filter sits under
the wide projection (see :func:`region_vectors`).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cookie import constants as C
from cookie.etl.features.common import PRESENT, ViewResult, any_column, is_infinite, not_finite, project, sql_name
from cookie.exceptions import InputError


def region_vectors(
    regions: DataFrame, table: DataFrame, columns: list[str], transform: str = "none", where: str = "vector table"
) -> ViewResult:
    """``table``: region_id + numeric columns. Rows with a null or NaN (``missing_values_rows``; under ``log1p``
    also a value <= -1), an infinity (``infinite_values_rows``) or an unknown region are counted; a row with a
    missing or infinite value is written as zeros with ``_present`` false, so nothing non-finite reaches a table.

    ``where`` names the input in error messages (missing columns, duplicate region ids).
    """
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(f"{where}: columns {missing} not found; available: {table.columns}")

    def value(c: str) -> str:
        x = f"CAST({sql_name(c)} AS DOUBLE)"
        return f"log1p({x})" if transform == "log1p" else x

    values = project(table, [(sql_name(C.REGION_ID), C.REGION_ID), *[(value(c), c) for c in columns]])
    flagged = values.select(
        "*", any_column(columns, not_finite).alias("_bad"), any_column(columns, is_infinite).alias("_inf")
    )
    ids = regions.select(C.REGION_ID).withColumn("_known", F.lit(True))
    counts = (
        flagged.select(C.REGION_ID, "_bad", "_inf")
        .join(ids, C.REGION_ID, "left")
        .agg(
            F.count("*").alias("rows"),
            F.sum((F.col("_bad") & ~F.col("_inf")).cast("int")).alias("bad"),
            F.sum(F.col("_inf").cast("int")).alias("inf"),
            F.sum((~F.col("_bad") & F.col("_known").isNull()).cast("int")).alias("unknown"),
            (F.count("*") - F.countDistinct(C.REGION_ID)).alias("dups"),
        )
        .first()
    )
    assert counts is not None  # an aggregate has one row
    if counts["dups"]:
        dup = table.groupBy(C.REGION_ID).count().where("count > 1").limit(5).collect()
        raise InputError(f"{where}: duplicate region ids: {[r[0] for r in dup]}")
    # No Filter over the row check: Spark's constraint propagation would copy a 1,000-column predicate once
    # per column alias of the projection above it (and run out of memory). Rows with a missing value keep
    # their place and are zeroed here instead; regions without a row get zeros from the left join.
    ok = "_bad = false"  # null where the region has no row
    out = project(
        regions.select(C.REGION_ID).join(flagged, C.REGION_ID, "left"),
        [
            (sql_name(C.REGION_ID), C.REGION_ID),
            *[(f"CASE WHEN {ok} THEN {sql_name(c)} ELSE 0D END", c) for c in columns],
            (f"coalesce({ok}, false)", PRESENT),
        ],
    )
    stats = {
        "input_rows": int(counts["rows"]),
        "missing_values_rows": int(counts["bad"] or 0),
        "infinite_values_rows": int(counts["inf"] or 0),
        "unknown_region_rows": int(counts["unknown"] or 0),
    }
    return ViewResult(out, list(columns), stats)
