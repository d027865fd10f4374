"""Line features (roads): geodesic length per class, clipped to each region."""

from __future__ import annotations

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cookie import constants as C
from cookie.etl.features.common import (
    ViewResult,
    complete,
    feature_columns,
    pivot_wide,
    region_join,
    resolve_categories,
    row_sum,
    subdivided,
)


def road_lengths(
    regions: DataFrame,
    lines: DataFrame,
    categories: list[str] | None = None,
    max_categories: int = 32,
    other: bool = True,
    broadcast: bool = True,
    pieces: DataFrame | None = None,
) -> ViewResult:
    """``lines``: category, geometry. Lengths in km (``ST_LengthSpheroid`` of the clipped part);
    ``broadcast``: see :func:`region_join`; ``pieces``: ``subdivided(regions)``, where the caller keeps them."""
    cats, ls, cat_stats = resolve_categories(lines, categories, max_categories, other)
    items = ls.select(F.monotonically_increasing_id().alias("_line"), C.CATEGORY, C.GEOMETRY)
    # clipped to the regions' pieces and measured once, kept: the table and the count of lines inside both read it
    hits = (
        region_join(subdivided(regions) if pieces is None else pieces, items, "ST_Intersects", broadcast)
        .select(
            "_line",
            C.REGION_ID,
            C.CATEGORY,
            F.expr(f"ST_LengthSpheroid(ST_Intersection(_region_geom, {C.GEOMETRY})) / 1000.0").alias("_km"),
        )
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    n_hit = hits.select("_line").distinct().count()
    names = feature_columns("km", cats)
    wide = pivot_wide(hits, "_km", cats, names)
    out = complete(regions, wide, names, carry=[C.AREA_KM2])
    total = row_sum(names)
    out = (
        out.withColumn("km_total", total)
        .withColumn("km_per_km2", F.col("km_total") / F.col(C.AREA_KM2))
        .drop(C.AREA_KM2)
    )
    names = names + ["km_total", "km_per_km2"]
    n_in = cat_stats.pop("input_rows") if "input_rows" in cat_stats else lines.count()
    stats = {"input_rows": n_in, "outside_regions": max(n_in - n_hit, 0)} | cat_stats
    return ViewResult(out.select(C.REGION_ID, *names, "_present"), names, stats, release=[hits])
