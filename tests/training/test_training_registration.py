"""Registration is all or nothing, even after ``kill -9``: a resumed run removes the version an interrupted
registration left behind (no alias, no embeddings rows) and registers afresh."""

from __future__ import annotations

import logging
import tempfile

import pytest
from mlflow.tracking import MlflowClient

from cookie.pipeline import train_and_publish
from cookie.serving import embeddings as E
from cookie.serving.pyfunc import log_pyfunc
from cookie.storage import tracking as registry
from cookie.training.job import train

from cookie_test_tables import make_config

pytestmark = [pytest.mark.spark, pytest.mark.shared_data, pytest.mark.slow]


def _killed_after_register(spark, cfg, model, stats, run_id):
    """What a job killed right after ``register`` leaves: a READY version tagged with its run, nothing else."""
    with tempfile.TemporaryDirectory() as tmp:
        info = log_pyfunc(model, stats, tmp, cfg.train.pip_requirements, cfg.train.embed_batch_size)
    registry.register(info.model_uri, registry.registered_model_name(cfg), tags={"run_id": run_id})
    raise SystemExit(137)  # no rollback runs, as under kill -9


def test_resume_removes_a_half_registered_version_and_finishes(spark, manhattan_tables, tmp_path, caplog):
    cfg = make_config(tmp_path, "manhattan180", manhattan_tables)
    client = MlflowClient(tracking_uri=registry.tracking_uri(cfg), registry_uri=registry.registry_uri(cfg))
    with pytest.raises(SystemExit):
        train(spark, cfg, publish=_killed_after_register)
    name = registry.registered_model_name(cfg)
    (orphan,) = client.search_model_versions(f"name = '{name}'")
    assert str(orphan.version) == "1" and not client.get_registered_model(name).aliases

    caplog.set_level(logging.WARNING, logger="cookie.train")
    resumed = train_and_publish(spark, cfg, resume=True)
    assert "version 1 was left half-registered" in caplog.text
    assert [str(v.version) for v in client.search_model_versions(f"name = '{name}'")] == ["2"]
    assert resumed.model_version == 2
    assert str(client.get_model_version_by_alias(name, cfg.train.alias).version) == "2"
    versions = {r["model_version"] for r in E.read_embeddings(spark, cfg, name, 2).select("model_version").collect()}
    assert versions == {2}
    rows = spark.read.format("delta").load(E.location(cfg).path)
    assert rows.count() == 180 and {r[0] for r in rows.select("model_version").distinct().collect()} == {2}
