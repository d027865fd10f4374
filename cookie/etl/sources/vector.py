"""Vector files (GeoJSON, GeoParquet, Shapefile, CSV points) to DataFrames in WGS84."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StringType, StructType

from cookie import constants as C
from cookie.exceptions import InputError

WGS84 = "EPSG:4326"


def infer_format(path: str) -> str:
    p = path.lower().rstrip("/")
    if p.endswith((".geojson", ".json")):
        return "geojson"
    if (
        p.endswith((".parquet", ".geoparquet"))
        or os.path.isdir(path)
        and any(f.endswith(".parquet") for f in os.listdir(path))
    ):
        return "geoparquet"
    if p.endswith(".shp") or os.path.isdir(path) and any(f.endswith(".shp") for f in os.listdir(path)):
        return "shapefile"
    if p.endswith(".csv"):
        return "csv"
    raise InputError(f"{path}: cannot tell the format from the name; set 'format' in the config")


def require_file(path: str) -> None:
    if not os.path.exists(path):
        raise InputError(f"input not found: {path}")


GLOB_CHARACTERS = "[]{}*?\\"


def spark_path(path: str) -> str:
    """``path`` as Spark's file readers must be given it: Hadoop expands glob patterns in every path, so a file
    named ``pois[2024].csv`` would match nothing (PATH_NOT_FOUND); its glob characters are escaped. Inputs are
    always one file or folder (:func:`require_file`), never a pattern."""
    return re.sub(r"([\[\]{}*?\\])", r"\\\1", path)


def check_numeric(df: DataFrame, columns: list[str], path: str) -> None:
    """Refuse text that is not a number in columns used as numbers (a CSV cell such as ``n/a`` makes the whole
    column text), naming the file, the column, how many values and an example; empty CSV cells are nulls, not errors.

    Only text columns are scanned, in one aggregate; numeric columns cost nothing.
    """
    text = [c for c in columns if isinstance(df.schema[c].dataType, StringType)]
    if not text:
        return

    def bad(c: str) -> Column:
        col = df[c]
        return col.isNotNull() & col.try_cast("double").isNull()

    row = df.agg(*[F.sum(bad(c).cast("int")).alias(f"_{i}") for i, c in enumerate(text)]).first()
    assert row is not None  # an aggregate has one row
    for i, c in enumerate(text):
        if row[f"_{i}"]:
            example = df.where(bad(c)).select(c).first()
            assert example is not None
            raise InputError(
                f"{path}: column {c!r} must be numeric but has {row[f'_{i}']} value(s) that are not numbers, "
                f"e.g. {example[0]!r}; leave missing values empty"
            )


def normalise_crs(crs: str | None, path: str) -> str | None:
    """Validate a CRS string with pyproj and return it as 'EPSG:n' (or WKT) for ST_Transform."""
    if crs is None:
        return None
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        parsed = CRS.from_user_input(crs)
    except CRSError as exc:
        raise InputError(f"{path}: unknown CRS {crs!r} ({exc})") from exc
    epsg = parsed.to_epsg()
    return f"EPSG:{epsg}" if epsg else parsed.to_wkt()


def _prj_crs(path: str) -> str | None:
    base = Path(path)
    prj = base.with_suffix(".prj") if base.suffix else None
    if base.is_dir():
        found = sorted(base.glob("*.prj"))
        prj = found[0] if found else None
    if prj and prj.is_file():
        return prj.read_text()
    return None


def read_vector(
    spark: SparkSession,
    path: str,
    fmt: str | None = None,
    crs: str | None = None,
    lon_column: str | None = None,
    lat_column: str | None = None,
    persist: bool = False,
) -> DataFrame:
    """Read features with their attributes as top-level columns and ``geometry`` in WGS84 lon/lat.

    ``persist``: keep the features (reprojected) in memory and on disk after the first action, so a caller that
    checks them several times reads and reprojects the file once; it unpersists the frame when done.
    """
    require_file(path)
    fmt = fmt or infer_format(path)
    if fmt == "geojson":
        raw = _read_geojson(spark, path)
        if "features" in raw.columns:  # a FeatureCollection is one row holding every feature
            raw = raw.select(F.explode("features").alias("f")).select("f.*")
        if "properties" in raw.columns:
            props_type = raw.schema["properties"].dataType
            assert isinstance(props_type, StructType)  # GeoJSON properties are a struct
            props = props_type.fieldNames()
            df = raw.select(F.col("geometry"), *[F.col(f"properties.`{p}`").alias(p) for p in props])
        else:
            df = raw.select("geometry")
    elif fmt == "geoparquet":
        df = spark.read.format("geoparquet").load(spark_path(path))
    elif fmt == "shapefile":
        df = spark.read.format("shapefile").load(spark_path(path))
        crs = crs or _prj_crs(path)
    elif fmt == "csv":
        if not (lon_column and lat_column):
            raise InputError(f"{path}: CSV points need lon_column and lat_column in the config")
        raw = spark.read.option("header", "true").option("inferSchema", "true").csv(spark_path(path))
        for col in (lon_column, lat_column):
            if col not in raw.columns:
                raise InputError(f"{path}: column {col!r} not found; columns are {raw.columns}")
        check_numeric(raw, [lon_column, lat_column], path)
        df = raw.withColumn(
            C.GEOMETRY, F.expr(f"ST_Point(CAST(`{lon_column}` AS DOUBLE), CAST(`{lat_column}` AS DOUBLE))")
        )
    else:
        raise InputError(f"{path}: unsupported format {fmt!r}")
    if C.GEOMETRY not in df.columns:
        raise InputError(f"{path}: no geometry column found; columns are {df.columns}")
    crs = normalise_crs(crs, path)
    if not persist:
        return to_wgs84(df, crs, path)
    if crs and crs != WGS84:  # reprojected lazily: keep the reprojected geometries
        return to_wgs84(df, crs, path).persist(StorageLevel.MEMORY_AND_DISK)
    kept = df.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        return to_wgs84(kept, crs, path)  # its lon/lat check reads the kept rows
    except BaseException:
        kept.unpersist()
        raise


def _read_geojson(spark: SparkSession, path: str) -> DataFrame:
    """A GeoJSON file as Sedona reads it (one row per FeatureCollection), refusing what is not GeoJSON data."""
    if any(ch in GLOB_CHARACTERS for ch in path):
        # Spark's multi-line JSON schema inference hands the listed paths to Hadoop, which globs them again,
        # so no escaping helps: the file would match nothing.
        raise InputError(
            f"{path}: Spark cannot read a GeoJSON file whose name contains any of {' '.join(GLOB_CHARACTERS)}; "
            "rename the file"
        )
    raw = spark.read.format("geojson").option("multiLine", "true").load(spark_path(path))
    if "_corrupt_record" in raw.columns:
        raise InputError(f"{path}: not valid GeoJSON (malformed or truncated JSON)")
    if "features" in raw.columns:
        ftype = raw.schema["features"].dataType
        if not (isinstance(ftype, ArrayType) and isinstance(ftype.elementType, StructType)):
            raise InputError(f"{path}: the FeatureCollection has no features")
    return raw


#: Rows whose coordinates prove they are lon/lat: a file in a projected CRS shows it in every row, so the first
#: rows suffice, and the check does not cost a pass over millions of points.
CRS_CHECK_ROWS = 10_000


def to_wgs84(df: DataFrame, crs: str | None, path: str) -> DataFrame:
    """Reproject to WGS84 lon/lat, refusing coordinates that cannot be lon/lat when no CRS is given.

    Without a CRS, the bounds of the first :data:`CRS_CHECK_ROWS` geometries are checked, not of every row: a wrong
    CRS shows in any row, and a pass over every row cost 8.6 s at 10 M points, a quarter of the spatial join. The
    rows' bounds are collected (Spark reads only as many partitions as it needs for them) and reduced here.
    """
    if crs and crs != WGS84:
        return df.withColumn(C.GEOMETRY, F.expr(f"ST_Transform({C.GEOMETRY}, '{crs}', '{WGS84}')"))
    g = C.GEOMETRY
    sample = (
        df.where(F.expr(f"{g} IS NOT NULL AND NOT ST_IsEmpty({g})"))
        .select(*[F.expr(f"{f}({g})").alias(f) for f in ("ST_XMin", "ST_YMin", "ST_XMax", "ST_YMax")])
        .limit(CRS_CHECK_ROWS)
    )
    try:  # the first action over the file: turn reader failures into an error that names it
        rows = sample.collect()
    except Exception as exc:  # py4j/Spark wrap the reader's own exception
        first = str(exc).strip().splitlines()[0][:300]
        raise InputError(f"{path}: could not be read as vector data: {first}") from exc
    if rows:  # none: no geometry to check (an empty view is refused where it is built)
        minx, miny = min(r[0] for r in rows), min(r[1] for r in rows)
        maxx, maxy = max(r[2] for r in rows), max(r[3] for r in rows)
        if minx < -180.0001 or maxx > 180.0001 or miny < -90.0001 or maxy > 90.0001:
            raise InputError(
                f"{path}: coordinates span x {minx:.1f}..{maxx:.1f}, y {miny:.1f}..{maxy:.1f}, which is "
                "not lon/lat; the file's CRS is not WGS84: set 'crs' in the config (e.g. EPSG:32118)"
            )
    return df
