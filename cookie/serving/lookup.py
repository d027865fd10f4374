"""Embeddings of given regions or points, for a registered model version chosen by alias or number.

The version comes from the MLflow registry (alias ``champion`` by default); the vectors come from
the ``embeddings`` table (no model is loaded). Points are matched to regions with Sedona
(``ST_Intersects`` of the point with the region polygon, rebuilt from the regions table's WKB;
a point on a shared edge takes the smallest region id). Only the requested rows reach the driver.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from cookie import constants as C
from cookie.config import Config
from cookie.exceptions import ConfigError
from cookie.serving import embeddings as E
from cookie.storage import delta as tables
from cookie.storage import tracking as registry

POINT_INDEX = "point_index"
LAT = "lat"
LON = "lon"


def resolve(
    cfg: Config, model_name: str | None = None, alias: str | None = None, version: int | None = None
) -> tuple[str, int]:
    """(registered model name, version) from an explicit version or an alias (default champion)."""
    registry.configure(cfg)
    name = model_name or registry.registered_model_name(cfg)
    ref = registry.resolve_version(
        registry.client_for(cfg),
        name,
        alias=None if version is not None else (alias or registry.DEFAULT_ALIAS),
        version=version,
    )
    assert ref.version is not None  # resolve_version returns a registered version here
    return name, int(ref.version)


def lookup_regions(
    spark: SparkSession,
    cfg: Config,
    region_ids: Sequence[str],
    model_name: str | None = None,
    alias: str | None = None,
    version: int | None = None,
) -> pd.DataFrame:
    """One row per requested region id (in the given order): region_id, model_name, model_version,
    run_id, embedding (float32 array, None when the table has no row for that region)."""
    name, v = resolve(cfg, model_name, alias, version)
    ids = [str(r) for r in region_ids]
    rows: pd.DataFrame = (
        E.read_embeddings(spark, cfg, name, v)
        .where(F.col(C.REGION_ID).isin(ids))
        .select(C.REGION_ID, E.RUN_ID, E.EMBEDDING)
        .toPandas()
    )
    found = {r[C.REGION_ID]: r for _, r in rows.iterrows()}
    out = []
    for rid in ids:
        r = found.get(rid)
        out.append(
            {
                C.REGION_ID: rid,
                E.MODEL_NAME: name,
                E.MODEL_VERSION: v,
                E.RUN_ID: None if r is None else r[E.RUN_ID],
                E.EMBEDDING: None if r is None else np.asarray(r[E.EMBEDDING], dtype=np.float32),
            }
        )
    return pd.DataFrame(out, columns=[C.REGION_ID, E.MODEL_NAME, E.MODEL_VERSION, E.RUN_ID, E.EMBEDDING])


def regions_of_points(spark: SparkSession, cfg: Config, points: Sequence[tuple[float, float]]) -> DataFrame:
    """DataFrame point_index, lat, lon, region_id (null outside every region)."""
    pts = spark.createDataFrame(
        [(i, float(lat), float(lon)) for i, (lat, lon) in enumerate(points)],
        f"{POINT_INDEX} int, {LAT} double, {LON} double",
    ).withColumn("_pt", F.expr(f"ST_Point({LON}, {LAT})"))
    regions = tables.read_feature_table(spark, cfg, C.REGIONS_TABLE).select(
        C.REGION_ID, F.expr(f"ST_GeomFromWKB({C.GEOMETRY_WKB})").alias("_geom")
    )
    hits = (
        pts.alias("p")
        .join(regions.alias("r"), F.expr("ST_Intersects(r._geom, p._pt)"), "inner")
        .select(POINT_INDEX, C.REGION_ID)
    )
    first = (
        hits.withColumn("_k", F.row_number().over(Window.partitionBy(POINT_INDEX).orderBy(C.REGION_ID)))
        .where("_k = 1")
        .drop("_k")
    )
    return pts.drop("_pt").join(first, POINT_INDEX, "left")


def lookup_points(
    spark: SparkSession,
    cfg: Config,
    points: Sequence[tuple[float, float]],
    model_name: str | None = None,
    alias: str | None = None,
    version: int | None = None,
) -> pd.DataFrame:
    """One row per (lat, lon) point, in order: lat, lon, region_id, model_name, model_version,
    run_id, embedding (None outside every region)."""
    if cfg.regions.kind == "ids":
        raise ConfigError(
            f"config {cfg.name}: regions are known by id only (regions.kind: ids), so points cannot "
            "be located; look regions up with --region <id>"
        )
    name, v = resolve(cfg, model_name, alias, version)
    located = regions_of_points(spark, cfg, points)
    emb = E.read_embeddings(spark, cfg, name, v).select(C.REGION_ID, E.RUN_ID, E.EMBEDDING)
    rows: pd.DataFrame = located.join(emb, C.REGION_ID, "left").orderBy(POINT_INDEX).toPandas()
    rows[E.MODEL_NAME] = name
    rows[E.MODEL_VERSION] = v
    rows[E.EMBEDDING] = [None if e is None else np.asarray(e, dtype=np.float32) for e in rows[E.EMBEDDING]]
    return rows[[LAT, LON, C.REGION_ID, E.MODEL_NAME, E.MODEL_VERSION, E.RUN_ID, E.EMBEDDING]]


def format_vector(vec: np.ndarray | None, full: bool = False, head: int = 8) -> str:
    """``[0.1234, ...] (dim 384, norm 4.8990)`` or the whole vector."""
    if vec is None:
        return "no embedding"
    v = np.asarray(vec, dtype=np.float32)
    shown = v if full else v[:head]
    body = ", ".join(f"{x:.4f}" for x in shown)
    more = "" if full or len(v) <= head else ", ..."
    return f"[{body}{more}] (dim {len(v)}, norm {float(np.linalg.norm(v)):.4f})"
