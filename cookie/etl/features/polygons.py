"""Polygon features (buildings, land use, green areas): count, covered share per class, mean footprint.

Shares use the union of the clipped polygons per class, so overlapping polygons are not counted
twice and a share never exceeds 1. A polygon is counted (and its footprint averaged) in the region
that holds its point-on-surface, so each polygon is counted once.
"""

from __future__ import annotations

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from cookie import constants as C
from cookie.etl.features.common import (
    ViewResult,
    complete,
    feature_columns,
    keep_geometry_types,
    pivot_wide,
    region_join,
    resolve_categories,
    subdivided,
)
from cookie.etl.geodesy import area_m2

FEATURE_ID = "feature_id"
POLYGONAL = ("ST_Polygon", "ST_MultiPolygon", "ST_GeometryCollection")


def polygon_cover(
    regions: DataFrame,
    polygons: DataFrame,
    categories: list[str] | None = None,
    max_categories: int = 32,
    other: bool = True,
    with_counts: bool = True,
    broadcast: bool = True,
    pieces: DataFrame | None = None,
) -> ViewResult:
    """``polygons``: feature_id, category, geometry (valid or repairable polygons).

    Points and lines in the layer are not polygons: they are dropped and counted per type (``dropped_point``,
    ...), never counted as buildings; the polygons of a geometry collection are kept. ``broadcast``: see
    :func:`cookie.etl.features.common.region_join`; ``pieces``: ``subdivided(regions)``, where the caller keeps them.
    """
    typed, type_stats = keep_geometry_types(polygons, POLYGONAL)
    polys = (
        typed.withColumn(
            C.GEOMETRY,
            F.expr(
                f"CASE WHEN ST_GeometryType({C.GEOMETRY}) = 'ST_GeometryCollection' "
                f"THEN ST_CollectionExtract({C.GEOMETRY}, 3) ELSE {C.GEOMETRY} END"
            ),
        )
        .withColumn(
            C.GEOMETRY,
            F.expr(
                f"CASE WHEN ST_IsValid({C.GEOMETRY}) THEN {C.GEOMETRY} "
                f"ELSE ST_CollectionExtract(ST_MakeValid({C.GEOMETRY}), 3) END"
            ),
        )
        .where(F.expr(f"NOT ST_IsEmpty({C.GEOMETRY})"))
        # checked and repaired once, kept: the ranking, the join, the anchors and the count all read it
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    cats, ps, cat_stats = resolve_categories(polys, categories, max_categories, other)
    # clipped to the regions' pieces (their unions per region are what clipping to the region gives, at a fraction
    # of the cost: common.SUBDIVIDE_VERTICES) once, and kept: the shares per class and the total share read it
    pieces = subdivided(regions) if pieces is None else pieces
    hits = (
        region_join(pieces, ps.select(C.CATEGORY, C.GEOMETRY), "ST_Intersects", broadcast)
        .select(
            C.REGION_ID,
            C.CATEGORY,
            C.AREA_KM2,
            F.expr(f"ST_CollectionExtract(ST_Intersection(_region_geom, {C.GEOMETRY}), 3)").alias("_part"),
        )
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    area_by_class = (
        hits.groupBy(C.REGION_ID, C.CATEGORY, C.AREA_KM2)
        .agg(F.expr("ST_Union_Aggr(_part)").alias("_u"))
        .withColumn("_m2", F.expr(area_m2("_u")))
        .withColumn("_share", F.least(F.col("_m2") / (F.col(C.AREA_KM2) * 1e6), F.lit(1.0)))
    )
    share_names = feature_columns("share", cats)
    wide = pivot_wide(area_by_class, "_share", cats, share_names)
    total = (
        hits.groupBy(C.REGION_ID, C.AREA_KM2)
        .agg(F.expr("ST_Union_Aggr(_part)").alias("_u"))
        .withColumn("_m2", F.expr(area_m2("_u")))
        .select(C.REGION_ID, F.least(F.col("_m2") / (F.col(C.AREA_KM2) * 1e6), F.lit(1.0)).alias("share_total"))
    )
    wide = wide.join(total, C.REGION_ID, "outer")
    names = share_names + ["share_total"]
    if with_counts:
        anchors = ps.select(
            FEATURE_ID,
            F.expr(f"ST_PointOnSurface({C.GEOMETRY})").alias(C.GEOMETRY),
            F.expr(area_m2(C.GEOMETRY)).alias("_footprint"),
        )
        # the pieces broadcast, asked for as in the clipping join (not left to Spark's size estimate)
        owned = region_join(pieces, anchors, "ST_Intersects", broadcast)
        owned = owned.groupBy(FEATURE_ID).agg(
            F.min(C.REGION_ID).alias(C.REGION_ID), F.first("_footprint").alias("_footprint")
        )
        counts = owned.groupBy(C.REGION_ID).agg(
            F.count("*").cast("double").alias("count"), F.avg("_footprint").alias("mean_footprint_m2")
        )
        wide = wide.join(counts, C.REGION_ID, "outer")
        names = ["count", "mean_footprint_m2"] + names
    out = complete(regions, wide, names)
    n_polygonal = type_stats["input_rows"] - sum(v for k, v in type_stats.items() if k.startswith("dropped_"))
    n_kept = cat_stats.pop("input_rows", None)  # the polygons kept; input_rows counts every row read (type_stats)
    n_kept = polys.count() if n_kept is None else n_kept
    stats = type_stats | {"dropped_empty": n_polygonal - n_kept} | cat_stats
    return ViewResult(out.select(C.REGION_ID, *names, "_present"), names, stats, release=[polys, hits])
