"""Extract and load at the edges: where tables live and how they are written atomically.

Each write is one Delta commit that replaces the whole table (``mode=overwrite`` with
``overwriteSchema``): readers see either the old or the new version, never a half-written table,
and a rerun of the same job gives the same contents as a new version, without duplicates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cookie import columns as C
from cookie.config import Config


@dataclass(frozen=True)
class TableLocation:
    """A table is a path under the warehouse or a Unity Catalog name."""

    name: str
    path: str | None = None
    full_name: str | None = None

    def __str__(self) -> str:
        return self.full_name or self.path or self.name


def locate(cfg: Config, table: str) -> TableLocation:
    if cfg.output.catalog:
        return TableLocation(table, full_name=f"{cfg.output.catalog}.{cfg.name}_{table}")
    return TableLocation(table, path=f"{cfg.warehouse_path()}/{table}")


def write_table(
    df: DataFrame,
    loc: TableLocation,
    properties: dict[str, str] | None = None,
    description: str | None = None,
) -> int:
    """Replace the table's contents in one Delta commit; return the new Delta version."""
    writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
    if description:
        writer = writer.option("userMetadata", description)
    if loc.full_name:
        writer.saveAsTable(loc.full_name)
    else:
        writer.save(loc.path)
    spark = df.sparkSession
    ident = _ident(loc)
    if properties:
        props = ", ".join(f"'{k}' = '{_sql_str(v)}'" for k, v in properties.items())
        spark.sql(f"ALTER TABLE {ident} SET TBLPROPERTIES ({props})")
    return table_version(spark, loc)


def append_rows(df: DataFrame, loc: TableLocation) -> None:
    """Append (used for the run log, where history is the point)."""
    writer = df.write.format("delta").mode("append").option("mergeSchema", "true")
    if loc.full_name:
        writer.saveAsTable(loc.full_name)
    else:
        writer.save(loc.path)


def read_table(spark: SparkSession, loc: TableLocation, version: int | None = None) -> DataFrame:
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.table(loc.full_name) if loc.full_name else reader.load(loc.path)


def table_version(spark: SparkSession, loc: TableLocation) -> int:
    if loc.path and "://" not in loc.path:  # local path: the newest commit file names the version
        from pathlib import Path

        commits = [int(p.stem) for p in (Path(loc.path) / "_delta_log").glob("*.json") if p.stem.isdigit()]
        if commits:
            return max(commits)
    row = spark.sql(f"DESCRIBE HISTORY {_ident(loc)} LIMIT 1").select("version").first()
    return int(row["version"])


def table_properties(spark: SparkSession, loc: TableLocation) -> dict[str, str]:
    rows = spark.sql(f"SHOW TBLPROPERTIES {_ident(loc)}").collect()
    return {r["key"]: r["value"] for r in rows}


def feature_names(spark: SparkSession, loc: TableLocation) -> list[str]:
    props = table_properties(spark, loc)
    if C.FEATURE_NAMES_PROPERTY not in props:
        raise KeyError(f"table {loc} has no {C.FEATURE_NAMES_PROPERTY} property: not a feature table")
    return json.loads(props[C.FEATURE_NAMES_PROPERTY])


def feature_properties(kind: str, names: Iterable[str], extra: dict[str, str] | None = None) -> dict[str, str]:
    props = {C.TABLE_KIND_PROPERTY: kind, C.FEATURE_NAMES_PROPERTY: json.dumps(list(names))}
    props.update(extra or {})
    return props


def geometry_to_wkb(df: DataFrame, col: str = C.GEOMETRY) -> DataFrame:
    """Delta has no geometry type: store ISO WKB, rebuild with ST_GeomFromWKB on read."""
    return df.withColumn(C.GEOMETRY_WKB, F.expr(f"ST_AsBinary({col})")).drop(col)


def geometry_from_wkb(df: DataFrame) -> DataFrame:
    return df.withColumn(C.GEOMETRY, F.expr(f"ST_GeomFromWKB({C.GEOMETRY_WKB})")).drop(C.GEOMETRY_WKB)


def _ident(loc: TableLocation) -> str:
    return loc.full_name if loc.full_name else f"delta.`{loc.path}`"


def _sql_str(v: str) -> str:
    return v.replace("\\", "\\\\").replace("'", "\\'")
