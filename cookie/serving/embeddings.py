"""The ``embeddings`` Delta table: one row per region and registered model version.

Contract (read by the evaluation code; keep it exactly):

=================  ==============  =================================================================
column             type            meaning
=================  ==============  =================================================================
region_id          string          the region (as in ``regions``); a string even when the source ids are
                                   integers, so sort by ``region_order``, not by ``region_id``
region_order       int             the region's position (0-based) in the natural order of the ``regions``
                                   table's ids: numerically when every id is an integer (``'2'`` before
                                   ``'10'``), else as strings (:func:`cookie.storage.delta.order_ids`)
model_name         string          registered model name
model_version      int             registered model version
run_id             string          MLflow run that trained it
created_at         timestamp       when the rows were written (UTC)
embedding          array<float>    the full concatenated vector
<block>            array<float>    one column per named block, e.g. ``unique_poi``,
                                   ``shared_mobility__poi`` (``RegionModel.block_names``)
=================  ==============  =================================================================

A version is written in one Delta commit that replaces exactly its own rows (``replaceWhere`` on
model name and version): a rerun of the same version is idempotent and other versions are kept.
Models with other blocks add their columns (schema merge); other models' rows hold null there.

Embeddings are computed by Spark tasks (``mapInPandas`` with the model broadcast), so no feature
row is collected to the driver.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from cookie import constants as C
from cookie.storage import delta as tables

if TYPE_CHECKING:
    from cookie.config import Config

MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
RUN_ID = "run_id"
CREATED_AT = "created_at"
EMBEDDING = "embedding"
REGION_ORDER = C.REGION_ORDER
KEY_COLUMNS = (C.REGION_ID, REGION_ORDER, MODEL_NAME, MODEL_VERSION, RUN_ID, CREATED_AT, EMBEDDING)


def location(cfg: Config) -> tables.TableLocation:
    return tables.locate(cfg, C.EMBEDDINGS_TABLE)


def _model_bytes(model: Any) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(model.state(), buf)
    return buf.getvalue()


def region_order(ids: DataFrame) -> DataFrame:
    """``region_id, region_order`` of the distinct ids of ``ids``: 0-based positions in the natural order of
    :func:`cookie.storage.delta.order_ids` (numerically when every id is an integer, else as strings).

    Computed in Spark on the id column alone (one small sort), so no id list is collected to the driver.
    """
    from pyspark.sql import Window

    rid = F.col(C.REGION_ID)
    ids = ids.select(rid.cast("string").alias(C.REGION_ID)).distinct()
    integer = F.coalesce(rid.rlike(r"^\s*[+-]?[0-9]{1,38}\s*$"), F.lit(False))
    flag = ids.agg(F.min(integer.cast("int")).alias("_all_int"))  # one row, joined lazily (no driver action)
    # the key of order_ids: (int(id), id) when every id is an integer, else id
    number = F.when(F.col("_all_int") == 1, F.trim(rid).cast("decimal(38,0)"))
    window = Window.orderBy(number.asc_nulls_first(), rid)  # one partition, of ids only
    return ids.crossJoin(flag).select(C.REGION_ID, (F.row_number().over(window) - 1).cast("int").alias(REGION_ORDER))


def compute_embeddings(spark: SparkSession, cfg: Config, model: Any, stats: Any, batch_size: int = 8192) -> DataFrame:
    """region_id, region_order, embedding and block columns of every region, computed in Spark tasks."""
    from cookie.serving.embedder import map_embeddings
    from cookie.training.data import flat_features

    frame = flat_features(spark, cfg, stats)
    bc = spark.sparkContext.broadcast(_model_bytes(model))
    schema = ", ".join(
        [f"{C.REGION_ID} string", f"{EMBEDDING} array<float>"] + [f"`{b}` array<float>" for b in model.block_names]
    )
    fn = map_embeddings(bc, stats.to_dict(), batch_size, threads=cfg.train.torch_threads)
    order = region_order(tables.read_feature_table(spark, cfg, C.REGIONS_TABLE).select(C.REGION_ID))
    return frame.mapInPandas(fn, schema).join(order, on=C.REGION_ID, how="left")


def _predicate(model_name: str, model_version: int) -> str:
    safe = model_name.replace("'", "''")
    return f"{MODEL_NAME} = '{safe}' AND {MODEL_VERSION} = {int(model_version)}"


def write_embeddings(
    spark: SparkSession,
    cfg: Config,
    model: Any,
    stats: Any,
    model_name: str,
    model_version: int,
    run_id: str,
    created_at: datetime | None = None,
) -> int:
    """Compute and write one model version's embeddings; returns the new Delta table version."""
    created = created_at or datetime.now(UTC)
    emb = compute_embeddings(spark, cfg, model, stats, cfg.train.embed_batch_size)
    df = emb.select(
        F.col(C.REGION_ID),
        F.col(REGION_ORDER),
        F.lit(model_name).alias(MODEL_NAME),
        F.lit(int(model_version)).cast("int").alias(MODEL_VERSION),
        F.lit(run_id).alias(RUN_ID),
        F.lit(created).cast("timestamp").alias(CREATED_AT),
        F.col(EMBEDDING),
        *[F.col(f"`{b}`") for b in model.block_names],
    )
    loc = location(cfg)
    writer = (
        df.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", _predicate(model_name, model_version))
        .option("mergeSchema", "true")
        .option("userMetadata", f"embeddings {model_name} v{model_version} run {run_id}")
    )
    if loc.full_name:
        writer.saveAsTable(loc.sql)
    else:
        writer.save(loc.path)
    return tables.table_version(spark, loc)


def table_exists(spark: SparkSession, cfg: Config) -> bool:
    loc = location(cfg)
    if loc.full_name:
        return spark.catalog.tableExists(loc.sql)
    assert loc.path is not None  # a location without a catalog name has a path
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, loc.path)


def delete_embeddings(spark: SparkSession, cfg: Config, model_name: str, model_version: int) -> None:
    """Remove one version's rows (rollback of a failed registration)."""
    if not table_exists(spark, cfg):
        return
    loc = location(cfg)
    spark.sql(f"DELETE FROM {loc.sql} WHERE {_predicate(model_name, model_version)}")


def read_embeddings(
    spark: SparkSession, cfg: Config, model_name: str | None = None, model_version: int | None = None
) -> DataFrame:
    """The table, optionally restricted to a model and version."""
    df = tables.read_table(spark, location(cfg))
    if model_name is not None:
        df = df.where(F.col(MODEL_NAME) == model_name)
    if model_version is not None:
        df = df.where(F.col(MODEL_VERSION) == int(model_version))
    return df
