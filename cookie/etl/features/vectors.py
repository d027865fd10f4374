"""Precomputed per-region vectors (image or text embeddings, benchmark matrices), aligned to regions."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cookie import constants as C
from cookie.etl.features.common import ViewResult, complete


def region_vectors(regions: DataFrame, table: DataFrame, columns: list[str], transform: str = "none") -> ViewResult:
    """``table``: region_id + numeric columns. Rows with a NaN/null or an unknown region are counted."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise KeyError(f"columns {missing} not found; available: {table.columns}")
    bad = F.lit(False)
    for c in columns:
        bad = bad | F.col(c).isNull() | F.isnan(F.col(c).cast("double"))
    ids = regions.select(C.REGION_ID).withColumn("_known", F.lit(True))
    flagged = table.withColumn("_bad", bad).join(ids, C.REGION_ID, "left")
    counts = flagged.agg(
        F.count("*").alias("rows"),
        F.sum(F.col("_bad").cast("int")).alias("bad"),
        F.sum((~F.col("_bad") & F.col("_known").isNull()).cast("int")).alias("unknown"),
        (F.count("*") - F.countDistinct(C.REGION_ID)).alias("dups"),
    ).first()
    if counts["dups"]:
        dup = table.groupBy(C.REGION_ID).count().where("count > 1").limit(5).collect()
        raise ValueError(f"duplicate region ids in vector table: {[r[0] for r in dup]}")
    known = flagged.where(~F.col("_bad") & F.col("_known").isNotNull())
    if transform == "log1p":
        known = known.select(C.REGION_ID, *[F.log1p(F.col(c).cast("double")).alias(c) for c in columns])
    out = complete(regions, known.select(C.REGION_ID, *columns), columns)
    stats = {"input_rows": int(counts["rows"]), "missing_values_rows": int(counts["bad"] or 0),
             "unknown_region_rows": int(counts["unknown"] or 0)}
    return ViewResult(out, list(columns), stats)
