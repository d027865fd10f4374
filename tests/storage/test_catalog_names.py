"""Unity Catalog names without a workspace: with ``output.catalog: spark_catalog.<schema>`` the whole chain runs on
three-part names in the local Spark catalog (Delta's ``spark_catalog``) and a SQLite registry.

features -> tables ``spark_catalog.<schema>.<dataset>_<table>``; train -> the model
``spark_catalog.<schema>.cookie_<config>`` and its rows in ``spark_catalog.<schema>.<dataset>_embeddings``;
evaluate and lookup read them back by those names. On Databricks the same code runs with ``<catalog>.<schema>``
and the ``databricks-uc`` registry (the registry side of the naming is in ``test_storage_tracking.py``).
"""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from cookie import constants as C
from cookie.config import Config
from cookie.storage import delta as tables
from cookie.storage import tracking as T

pytestmark = [pytest.mark.spark, pytest.mark.slow]

N = 40
SCHEMA = "cookie_uc_test"


@pytest.fixture(scope="module")
def catalog_cfg(spark, tmp_path_factory):
    """An ids-only config writing to ``spark_catalog.cookie_uc_test`` (a schema whose files live in tmp)."""
    d = tmp_path_factory.mktemp("uc")
    rng = np.random.default_rng(0)
    z = rng.normal(size=(N, 2))
    np.save(d / "a.npy", np.hstack([z, rng.normal(size=(N, 2))]))
    np.save(d / "b.npy", np.hstack([z @ rng.normal(size=(2, 3)), rng.normal(size=(N, 1))]))
    np.save(d / "y.npy", (z[:, :1] + 0.1 * rng.normal(size=(N, 1))))
    spark.sql(f"DROP SCHEMA IF EXISTS spark_catalog.{SCHEMA} CASCADE")
    spark.sql(f"CREATE SCHEMA spark_catalog.{SCHEMA} LOCATION '{d / 'schema'}'")
    raw = {
        "name": "uc_ids",
        "output": {"warehouse": str(d / "unused-warehouse"), "catalog": f"spark_catalog.{SCHEMA}"},
        "sources": {k: {"kind": "array", "path": f"{k}.npy"} for k in ("a", "b", "y")},
        "regions": {"kind": "ids", "count": N},
        "views": [{"name": "va", "kind": "vectors", "source": "a"}, {"name": "vb", "kind": "vectors", "source": "b"}],
        "labels": [{"name": "y", "kind": "vectors", "source": "y"}],
        "model": {"embed_dim": 8, "hidden_dim": 16, "epochs_intra": 2, "epochs_pair": 2},
        "train": {
            "tracking_uri": f"sqlite:///{d / 'mlflow.db'}",
            "checkpoint_dir": str(d / "checkpoints"),
            "num_processes": 1,
            "profile": False,
        },
        "evaluation": {
            "primary_metric": "y.ridge_kfold.R2",
            "tasks": [{"name": "y", "label": "y", "columns": ["y"], "protocol": "ridge_kfold"}],
        },
        "base_dir": str(d),
    }
    yield Config.model_validate(raw), d
    spark.sql(f"DROP SCHEMA IF EXISTS spark_catalog.{SCHEMA} CASCADE")


def test_features_write_and_read_three_part_names(spark, catalog_cfg):
    from cookie.etl.job import build_features

    cfg, d = catalog_cfg
    loc = tables.locate(cfg, "view_va")
    assert loc.full_name == f"spark_catalog.{SCHEMA}.uc_ids_view_va" and loc.path is None
    assert loc.sql == f"`spark_catalog`.`{SCHEMA}`.`uc_ids_view_va`"

    build_features(spark, cfg)
    names = {t.name for t in spark.catalog.listTables(f"spark_catalog.{SCHEMA}")}
    assert {"uc_ids_regions", "uc_ids_view_va", "uc_ids_view_vb", "uc_ids_label_y", "uc_ids_etl_runs"} <= names
    assert not (d / "unused-warehouse").exists()  # nothing went to the path warehouse

    # read by name: Spark, the run manifest, and the pandas readers (which go through Spark for catalog tables)
    snap = tables.snapshot(cfg, spark)
    assert snap == tables.snapshot(cfg) and snap["view_va"] == tables.table_version(spark, loc) == 0
    assert tables.table_properties(spark, loc)[C.TABLE_KIND_PROPERTY] == "view"
    assert tables.feature_names(spark, loc) == ["va_000", "va_001", "va_002", "va_003"]
    va = tables.read_frame(cfg, "view_va").set_index(C.REGION_ID).sort_index(key=lambda s: s.astype(int))
    np.testing.assert_allclose(va[["va_000", "va_001", "va_002", "va_003"]].to_numpy(), np.load(d / "a.npy"))
    assert (
        tables.read_table(spark, loc, version=0).count()
        == N
        == tables.read_feature_table(spark, cfg, "view_va").count()
    )
    assert spark.table(f"spark_catalog.{SCHEMA}.uc_ids_regions").count() == N
    assert tables.load_task_label(cfg, cfg.evaluation.tasks[0]).values.shape == (N,)


def test_model_and_embeddings_by_catalog_names(spark, catalog_cfg):
    """Train, evaluate and look up: the model is registered as spark_catalog.<schema>.cookie_uc_ids (the UC form)
    in the SQLite registry, its rows go to spark_catalog.<schema>.uc_ids_embeddings and are read back by name."""
    from cookie.evaluation.pipeline import evaluate_version
    from cookie.pipeline import train_and_publish
    from cookie.serving.lookup import lookup_regions

    cfg, d = catalog_cfg
    if not spark.catalog.tableExists(tables.locate(cfg, "view_va").sql):
        test_features_write_and_read_three_part_names(spark, catalog_cfg)
    name = T.registered_model_name(cfg)
    assert name == f"spark_catalog.{SCHEMA}.cookie_uc_ids"
    parsed = T.parse_model_name(name, T.UC_REGISTRY)
    assert (parsed.catalog, parsed.schema, parsed.model) == ("spark_catalog", SCHEMA, "cookie_uc_ids")

    result = train_and_publish(spark, cfg)
    assert result.status == "FINISHED" and result.model_name == name and result.model_version == 1
    client = MlflowClient(tracking_uri=T.tracking_uri(cfg), registry_uri=T.registry_uri(cfg))
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "1"
    emb = spark.table(f"spark_catalog.{SCHEMA}.uc_ids_embeddings")
    assert emb.count() == N and {r[0] for r in emb.select("model_name").distinct().collect()} == {name}

    out = evaluate_version(cfg, report_dir=d / "report", maps=False)
    assert out.ref.name == name and out.ref.version == 1 and np.isfinite(out.metrics["y.ridge_kfold.R2"])
    assert client.get_model_version(name, "1").tags["eval.run_id"] == out.eval_run_id

    rows = lookup_regions(spark, cfg, ["3", "7"], alias="challenger")
    assert list(rows["region_id"]) == ["3", "7"] and set(rows["model_name"]) == {name}
    by_id = {r["region_id"]: list(r["embedding"]) for r in emb.where("region_id in ('3', '7')").collect()}
    for rid, vec in zip(rows["region_id"], rows["embedding"], strict=True):
        np.testing.assert_allclose(vec, by_id[rid], rtol=1e-6)
