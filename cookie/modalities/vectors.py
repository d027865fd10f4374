"""Precomputed per-region vectors (image or text embeddings, benchmark matrices), aligned to regions."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cookie import columns as C
from cookie.modalities.common import ViewResult, complete


def region_vectors(regions: DataFrame, table: DataFrame, columns: list[str], transform: str = "none") -> ViewResult:
    """``table``: region_id + numeric columns. Rows with a NaN/null or an unknown region are counted."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise KeyError(f"columns {missing} not found; available: {table.columns}")
    bad = F.lit(False)
    for c in columns:
        bad = bad | F.col(c).isNull() | F.isnan(F.col(c).cast("double"))
    flagged = table.withColumn("_bad", bad)
    ok = flagged.where(~F.col("_bad")).drop("_bad")
    if transform == "log1p":
        ok = ok.select(C.REGION_ID, *[F.log1p(F.col(c).cast("double")).alias(c) for c in columns])
    known = ok.join(regions.select(C.REGION_ID), C.REGION_ID, "left_semi")
    dup = known.groupBy(C.REGION_ID).count().where("count > 1").limit(5).collect()
    if dup:
        raise ValueError(f"duplicate region ids in vector table: {[r[0] for r in dup]}")
    out = complete(regions, known.select(C.REGION_ID, *columns), columns)
    n_in, n_ok, n_known = table.count(), ok.count(), known.count()
    stats = {"input_rows": n_in, "missing_values_rows": n_in - n_ok, "unknown_region_rows": n_ok - n_known}
    return ViewResult(out, list(columns), stats)
