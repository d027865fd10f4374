"""Rasters (GeoTIFF): zonal statistics per region and band with Sedona's RS_ZonalStats.

A region that overlaps no raster, or only no-data cells, gets zeros and ``_present = false``.
When several tiles cover a region the tile statistics are combined: sums and counts add, min/max
take the extreme, and the mean is the count-weighted mean; stddev and median are taken from the
tile holding most of the region's cells.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cookie import constants as C
from cookie.etl.features.common import ViewResult, complete
from cookie.etl.sources.vector import require_file, spark_path


def read_rasters(spark: SparkSession, path: str) -> DataFrame:
    """One row per GeoTIFF file: ``raster`` (Sedona raster) and its path."""
    require_file(path)
    files = spark.read.format("binaryFile").load(spark_path(path))
    return files.select(F.col("path").alias("_file"), F.expr("RS_FromGeoTiff(content)").alias("raster"))


def raster_bands(rasters: DataFrame) -> int:
    row = rasters.select(F.expr("RS_NumBands(raster)").alias("b")).agg(F.max("b")).first()
    assert row is not None  # an aggregate has one row
    return int(row[0])


def zonal_stats(
    regions: DataFrame, rasters: DataFrame, bands: list[int], statistics: list[str], prefix: str = "band"
) -> ViewResult:
    zones = regions.select(C.REGION_ID, F.expr(f"ST_SetSRID({C.GEOMETRY}, 4326)").alias("_zone"))
    hits = zones.join(rasters, F.expr("RS_Intersects(raster, _zone)"))
    wanted = set(statistics) | {"count", "sum"}
    cols = []
    for b in bands:
        for s in sorted(wanted):
            cols.append(F.expr(f"RS_ZonalStats(raster, _zone, {b}, '{s}', false, true, true)").alias(f"_{s}_{b}"))
    per_tile = hits.select(C.REGION_ID, "_file", *cols)
    aggs, names = [], []
    for b in bands:
        for s in statistics:
            name = f"{prefix}{b}_{s}"
            names.append(name)
            if s == "sum" or s == "count":
                aggs.append(F.sum(f"_{s}_{b}").alias(name))
            elif s == "min":
                aggs.append(F.min(f"_min_{b}").alias(name))
            elif s == "max":
                aggs.append(F.max(f"_max_{b}").alias(name))
            elif s == "mean":
                aggs.append((F.sum(f"_sum_{b}") / F.sum(f"_count_{b}")).alias(name))
            else:  # stddev, median: from the tile with the most cells
                aggs.append(F.max_by(f"_{s}_{b}", f"_count_{b}").alias(name))
    per_region = per_tile.groupBy(C.REGION_ID).agg(*aggs, F.sum(f"_count_{bands[0]}").alias("_cells"))
    per_region = per_region.where(F.col("_cells") > 0).drop("_cells")
    per_region = per_region.select(
        C.REGION_ID, *[F.when(F.isnan(F.col(n)), None).otherwise(F.col(n)).alias(n) for n in names]
    )
    out = complete(regions, per_region, names)
    stats = {"rasters": rasters.count(), "regions_covered": per_region.count()}
    return ViewResult(out, names, stats)
