"""Regions: polygons from a file, an H3 grid over an area, or ids only; validated and measured.

Stored in WGS84; areas are geodesic (``ST_AreaSpheroid``, square metres on the WGS84 ellipsoid), so no
projection has to be chosen per city (see cookie.etl.geodesy).

Regions known by id only (``regions.kind: ids``, :func:`regions_from_ids`) have no polygon: the regions
table then holds ``region_id`` (string) and null ``area_km2``, ``centroid_lon``, ``centroid_lat`` and
``geometry_wkb`` columns, and only views that need no geometry (precomputed vectors, flows between ids)
can be built over them (the config refuses the others when it loads).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cookie import constants as C
from cookie.config import FileRegions, H3Regions
from cookie.etl.geodesy import area_m2
from cookie.etl.sources.vector import read_vector
from cookie.exceptions import InputError

log = logging.getLogger(__name__)


@dataclass
class RegionsResult:
    # region_id, geometry, area_km2, centroid_lon, centroid_lat (+ h3_cell for H3);
    # ids only: region_id, area_km2, centroid_lon, centroid_lat, geometry_wkb, all but the id null
    df: DataFrame
    stats: dict[str, int] = field(default_factory=dict)
    # frames kept in memory while the regions were checked (the file, read once): the caller unpersists them
    # once it has persisted and materialised df
    release: list[DataFrame] = field(default_factory=list)


def measure(df: DataFrame) -> DataFrame:
    """Add geodesic area and centroid columns."""
    return (
        df.withColumn(C.AREA_KM2, F.expr(f"{area_m2(C.GEOMETRY)} / 1e6"))
        .withColumn("_c", F.expr(f"ST_Centroid({C.GEOMETRY})"))
        .withColumn(C.CENTROID_LON, F.expr("ST_X(_c)"))
        .withColumn(C.CENTROID_LAT, F.expr("ST_Y(_c)"))
        .drop("_c")
    )


POLYGONAL = ("ST_Polygon", "ST_MultiPolygon")


def repaired_polygons(df: DataFrame, invalid: str = "repair") -> DataFrame:
    """``df`` with flags ``_empty`` (null or empty geometry) and ``_valid`` (``ST_IsValid``; true when empty), and
    with each invalid geometry repaired (``invalid: repair``: ST_MakeValid, its polygonal parts kept) or left as
    it is (``reject``: the caller drops it). Every row is kept, so one pass can count what the checks find."""
    flagged = df.withColumn("_empty", F.expr(f"{C.GEOMETRY} IS NULL OR ST_IsEmpty({C.GEOMETRY})")).withColumn(
        "_valid", F.expr(f"CASE WHEN _empty THEN true ELSE ST_IsValid({C.GEOMETRY}) END")
    )
    if invalid == "reject":
        return flagged
    return flagged.withColumn(
        C.GEOMETRY,
        F.expr(f"CASE WHEN _valid THEN {C.GEOMETRY} ELSE ST_CollectionExtract(ST_MakeValid({C.GEOMETRY}), 3) END"),
    )


def regions_from_file(spark: SparkSession, cfg: FileRegions, path: str) -> RegionsResult:
    """Regions from a polygon file, checked and measured. The file is read and reprojected once: the checks
    below (ids, validity, types) and the caller's table all read the kept copy (``release``). The caller checks
    the measured regions' extent (:func:`check_extent`) once it has kept them: it reads every region's area."""
    raw = read_vector(spark, path, cfg.format, cfg.crs, persist=True)
    try:
        measured, stats = _checked_regions(raw, cfg, path)
    except BaseException:
        raw.unpersist()
        raise
    return RegionsResult(measured, stats, [raw])


def _checked_regions(df: DataFrame, cfg: FileRegions, path: str) -> tuple[DataFrame, dict[str, int]]:
    """The regions, repaired or with the invalid ones left out, and measured; refused when an id is missing or
    repeated, or a geometry is not a polygon. Ids, validity and types are counted in one pass over the file."""
    if cfg.id_column not in df.columns:
        raise InputError(
            f"{path}: id column {cfg.id_column!r} not found; columns are {[c for c in df.columns if c != C.GEOMETRY]}"
        )
    df = df.select(F.col(cfg.id_column).cast("string").alias(C.REGION_ID), C.GEOMETRY)
    flagged = repaired_polygons(df, cfg.invalid)
    keep = ~F.col("_empty") & F.col("_valid") if cfg.invalid == "reject" else ~F.col("_empty")
    kept = flagged.where(keep)
    not_polygonal = ~F.expr(f"ST_GeometryType({C.GEOMETRY})").isin(*POLYGONAL)
    counts = flagged.agg(
        F.count("*").alias("rows"),
        F.count_if(F.col(C.REGION_ID).isNull()).alias("nulls"),
        F.count_if(F.col("_empty")).alias("empty"),
        F.count_if(~F.col("_valid")).alias("invalid"),
        F.count_if(keep & not_polygonal).alias("not_polygonal"),
    ).first()
    assert counts is not None  # an aggregate has one row
    if counts["nulls"]:
        raise InputError(f"{path}: {counts['nulls']} features have no {cfg.id_column!r}")
    dups = df.groupBy(C.REGION_ID).count().where("count > 1").orderBy(C.REGION_ID).limit(10).collect()
    if dups:
        raise InputError(f"{path}: duplicate region ids in column {cfg.id_column!r}: {[r[C.REGION_ID] for r in dups]}")
    stats = {
        "input_rows": int(counts["rows"]),
        "empty_rejected": int(counts["empty"]),
        "invalid": int(counts["invalid"]),
    }
    stats["invalid_rejected" if cfg.invalid == "reject" else "invalid_repaired"] = stats["invalid"]
    if stats["empty_rejected"] or stats["invalid"]:
        log.warning("%s: %s", path, stats)
    if stats["input_rows"] == 0:
        raise InputError(f"{path}: no regions: the file has no features")
    if counts["not_polygonal"]:
        bad_type = kept.where(not_polygonal).select(C.REGION_ID).orderBy(C.REGION_ID).limit(5).collect()
        raise InputError(f"{path}: regions must be polygons; not polygonal: {[r[0] for r in bad_type]}")
    return measure(kept.drop("_empty", "_valid")), stats


def check_extent(regions: DataFrame, source: str) -> None:
    """Refuse regions that cannot be measured: zero area (a polygon that collapsed to nothing, e.g. repaired
    from a degenerate ring; its densities and shares would divide by zero) or wider than 180 degrees of
    longitude (a polygon across the antimeridian written naively spans the whole map). Names up to 10 ids."""
    zero = F.col(C.AREA_KM2).isNull() | F.isnan(C.AREA_KM2) | (F.col(C.AREA_KM2) <= 0)
    wide = F.expr(f"ST_XMax({C.GEOMETRY}) - ST_XMin({C.GEOMETRY}) > 180")
    bad = regions.where(zero | wide).select(C.REGION_ID, zero.alias("_zero")).orderBy(C.REGION_ID).limit(20).collect()
    zero_ids = [r[C.REGION_ID] for r in bad if r["_zero"]][:10]
    wide_ids = [r[C.REGION_ID] for r in bad if not r["_zero"]][:10]
    if zero_ids:
        raise InputError(
            f"{source}: regions with zero area (degenerate polygons, nothing left after repair): {zero_ids}; "
            "fix them, or set regions.invalid: reject to leave invalid ones out"
        )
    if wide_ids:
        raise InputError(
            f"{source}: regions spanning more than 180 degrees of longitude (crossing the antimeridian?): "
            f"{wide_ids}; split them at +-180 degrees (e.g. into a MultiPolygon)"
        )


def h3_cells_over(area: DataFrame, resolution: int, clip: bool) -> DataFrame:
    """H3 cells whose centre lies in the area (one row per cell), as polygons."""
    cells = area.select(F.explode(F.expr(f"ST_H3CellIDs({C.GEOMETRY}, {resolution}, false)")).alias(C.H3_CELL))
    cells = cells.distinct().withColumn(C.GEOMETRY, F.expr(f"ST_H3ToGeom(array({C.H3_CELL}))[0]"))
    if clip:
        area_geom = area.select(F.expr(f"ST_Union_Aggr({C.GEOMETRY})").alias("_a"))
        cells = (
            cells.crossJoin(area_geom).withColumn(C.GEOMETRY, F.expr(f"ST_Intersection({C.GEOMETRY}, _a)")).drop("_a")
        )
    # lower-case hex, as H3 spells a cell; translate, as lower() would load ICU's case tables (0.6 s a JVM)
    region_id = F.translate(F.hex(F.col(C.H3_CELL)), "ABCDEF", "abcdef")
    return cells.withColumn(C.REGION_ID, region_id).select(C.REGION_ID, C.H3_CELL, C.GEOMETRY)


def bbox_area(spark: SparkSession, bbox: tuple[float, float, float, float]) -> DataFrame:
    w, s, e, n = bbox
    return spark.sql(f"SELECT ST_PolygonFromEnvelope({w}, {s}, {e}, {n}) AS {C.GEOMETRY}")


def extent_area(frames: list[DataFrame]) -> DataFrame:
    """The bounding box of some layers: the area an extract covers."""
    union = frames[0].select(C.GEOMETRY)
    for f in frames[1:]:
        union = union.unionByName(f.select(C.GEOMETRY))
    return union.agg(F.expr(f"ST_Envelope_Aggr({C.GEOMETRY})").alias(C.GEOMETRY))


def regions_h3(area: DataFrame, cfg: H3Regions) -> RegionsResult:
    cells = h3_cells_over(area, cfg.resolution, cfg.clip)
    return RegionsResult(measure(cells), {})


def regions_from_ids(ids: DataFrame, source: str) -> RegionsResult:
    """Regions known by id only: ``ids`` has one column ``region_id`` (cast to string here).

    The result has ``region_id`` and null ``area_km2``, ``centroid_lon``, ``centroid_lat`` (double) and
    ``geometry_wkb`` (binary) columns, the layout of a stored regions table, and no ``geometry`` column.
    Null or duplicate ids stop the job with a message naming ``source``.
    """
    df = ids.select(F.col(C.REGION_ID).cast("string").alias(C.REGION_ID))
    nulls = df.where(F.col(C.REGION_ID).isNull()).count()
    if nulls:
        raise InputError(f"{source}: {nulls} rows have no region id")
    dups = df.groupBy(C.REGION_ID).count().where("count > 1").orderBy(C.REGION_ID).limit(10).collect()
    if dups:
        raise InputError(f"{source}: duplicate region ids: {[r[C.REGION_ID] for r in dups]}")
    out = df.select(
        C.REGION_ID,
        F.lit(None).cast("double").alias(C.AREA_KM2),
        F.lit(None).cast("double").alias(C.CENTROID_LON),
        F.lit(None).cast("double").alias(C.CENTROID_LAT),
        F.lit(None).cast("binary").alias(C.GEOMETRY_WKB),
    )
    return RegionsResult(out, {"input_rows": df.count()})
