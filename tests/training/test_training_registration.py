"""Registration is all or nothing, even after ``kill -9``: a real training job is killed right after it registers
its version; the resumed run removes the version it left behind (no alias, no embeddings rows) and registers
afresh. A plain rerun removes the versions other, dead jobs left the same way."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from pyspark.sql import functions as F

from cookie.pipeline import remove_leftovers, train_and_publish
from cookie.serving import embeddings as E
from cookie.storage import tracking as registry

from cookie_test_tables import REPO, make_config

pytestmark = [pytest.mark.spark, pytest.mark.shared_data, pytest.mark.slow]


def _kill_when_registered(cfg_path: Path, db: Path) -> None:
    """Run ``python -m cookie train`` and SIGKILL its whole process group as soon as the registry holds a
    version: between registration and the embeddings write / alias, where no rollback can run."""
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    log = cfg_path.parent / "killed-train.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cookie", "train", "--config", str(cfg_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        start_new_session=True,
    )
    deadline = time.time() + 600
    seen = False
    while proc.poll() is None and time.time() < deadline and not seen:
        time.sleep(0.02)
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1) as con:
                seen = con.execute("SELECT count(*) FROM model_versions").fetchone()[0] > 0
        except sqlite3.Error:
            continue  # the store is being created or written
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert seen, "the training job ended before registering a version:\n" + log.read_text()[-3000:]


def test_resume_removes_a_half_registered_version_and_finishes(spark, manhattan_tables, tmp_path, caplog):
    cfg = make_config(tmp_path, "manhattan180", manhattan_tables)
    client = MlflowClient(tracking_uri=registry.tracking_uri(cfg), registry_uri=registry.registry_uri(cfg))
    _kill_when_registered(tmp_path / "manhattan180.yaml", tmp_path / "mlflow.db")
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
    assert client.get_model_version(name, "2").tags[registry.STATE_TAG] == registry.READY

    # A plain rerun (a new run) removes what another job abandoned: a version still "registering", registered
    # by a process that no longer exists, with its embeddings rows; the finished version 2 stays.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    other = client.create_run(client.get_run(resumed.run_id).info.experiment_id).info.run_id
    v2 = client.get_model_version(name, "2")
    tags = {**registry.registering_tags(), registry.PID_TAG: str(dead.pid), "run_id": other}
    v3 = client.create_model_version(name, v2.source, run_id=other, tags=tags).version
    assert str(v3) == "3"
    rows.where("model_version = 2").withColumn("model_version", F.lit(3)).write.format("delta").mode("append").save(
        E.location(cfg).path
    )
    remove_leftovers(spark, cfg, name, run_id="a-new-run")
    assert [str(v.version) for v in client.search_model_versions(f"name = '{name}'")] == ["2"]
    after = spark.read.format("delta").load(E.location(cfg).path)
    assert after.count() == 180 and {r[0] for r in after.select("model_version").distinct().collect()} == {2}
    assert client.get_run(other).info.status == "KILLED"
