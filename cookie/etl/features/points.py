"""Point features with a category (POIs): counts per category, total, density per km2."""

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
    sql_name,
)

FEATURE_ID = "feature_id"


def assign_points(regions: DataFrame, points: DataFrame, broadcast: bool = True) -> DataFrame:
    """Each point to exactly one region: the smallest id among those it touches (boundary points). Columns
    other than the point's id and geometry (its category) travel through the join, so nothing joins back
    to the points afterwards."""
    carried = [c for c in points.columns if c not in (FEATURE_ID, C.GEOMETRY)]
    hits = region_join(regions, points, "ST_Intersects", broadcast)
    return hits.groupBy(FEATURE_ID).agg(F.min(C.REGION_ID).alias(C.REGION_ID), *[F.min(c).alias(c) for c in carried])


def poi_counts(
    regions: DataFrame,
    points: DataFrame,
    categories: list[str] | None = None,
    max_categories: int = 64,
    other: bool = True,
    broadcast: bool = True,
) -> ViewResult:
    """``points``: feature_id, category, geometry. Points outside every region are counted, not kept.

    The points are scanned once for their categories (unless given) and once by the spatial join; the
    per-region counts (small: regions x categories) are kept, and the statistics come from them, so the
    join does not run a second time when the view is written. ``broadcast``: see :func:`region_join`.
    """
    cats, pts, cat_stats = resolve_categories(points, categories, max_categories, other)
    assigned = assign_points(regions, pts.select(FEATURE_ID, C.CATEGORY, C.GEOMETRY), broadcast)
    names = feature_columns("count", cats)
    long = assigned.withColumn("_one", F.lit(1.0))
    wide = pivot_wide(long, "_one", cats, names).persist(StorageLevel.MEMORY_AND_DISK)
    out = complete(regions, wide, names)
    area = regions.select(C.REGION_ID, C.AREA_KM2)
    total = row_sum(names)
    out = (
        out.join(area, C.REGION_ID)
        .withColumn("count_total", total)
        .withColumn("density_per_km2", F.col("count_total") / F.col(C.AREA_KM2))
        .drop(C.AREA_KM2)
    )
    names = names + ["count_total", "density_per_km2"]
    n_in = cat_stats.pop("input_rows") if "input_rows" in cat_stats else points.count()
    sums = wide.agg(*[F.sum(F.col(sql_name(n))) for n in names[:-2]]).first()
    n_assigned = int(sum(v or 0 for v in sums)) if sums is not None else 0
    stats = {"input_rows": n_in, "assigned": n_assigned, "outside_regions": n_in - n_assigned} | cat_stats
    return ViewResult(out.select(C.REGION_ID, *names, "_present"), names, stats)
