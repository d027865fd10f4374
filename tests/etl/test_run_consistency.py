"""A feature run is all or nothing across tables: data and feature names share a commit, the ``etl_runs``
manifest is written last, and readers see the newest complete run even after a ``kill -9`` between commits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cookie import constants as C
from cookie.config import load_config
from cookie.etl.job import build_features
from cookie.storage import delta as tables
from cookie.training.data import view_tables

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.spark


def write_pois(d: Path, n_extra: int) -> None:
    lon = [10.002, 10.004, 10.012] + [10.05] * n_extra
    lat = [50.002, 50.003, 50.004] + [50.05] * n_extra
    kind = ["a", "b", "a"] + ["c"] * n_extra
    pd.DataFrame({"lon": lon, "lat": lat, "kind": kind}).to_csv(d / "pois.csv", index=False)


def config_file(d: Path) -> Path:
    raw = {
        "name": "atomic",
        "output": {"warehouse": str(d / "warehouse")},
        "sources": {"pois": {"kind": "vector", "path": str(d / "pois.csv"), "lon_column": "lon", "lat_column": "lat"}},
        "regions": {"kind": "h3", "resolution": 7, "bbox": [9.9, 49.9, 10.1, 50.1]},
        "views": [
            {"name": "poi", "kind": "points", "source": "pois", "category_column": "kind"},
            {"name": "poi_total", "kind": "points", "source": "pois"},
        ],
    }
    p = d / "atomic.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def commit_actions(table_path: str, version: int) -> list[dict]:
    return [json.loads(line) for line in (Path(table_path) / "_delta_log" / f"{version:020d}.json").open()]


@pytest.mark.slow
def test_kill_between_table_commits_leaves_the_previous_run(spark, tmp_path):
    write_pois(tmp_path, 0)
    cfg_path = config_file(tmp_path)
    cfg = load_config(cfg_path)
    first = build_features(spark, cfg)
    before = tables.read_frame(cfg, "view_poi").set_index(C.REGION_ID)
    snap_before = tables.snapshot(cfg)
    assert snap_before == {t.table: t.version for t in first.tables}
    for t in first.tables[1:]:  # each view's data and feature names are one commit
        actions = commit_actions(str(tables.locate(cfg, t.table).path), t.version)
        meta = next(a["metaData"] for a in actions if "metaData" in a)
        assert any("add" in a for a in actions), t.table
        names = json.loads(meta["configuration"][C.FEATURE_NAMES_PROPERTY])
        assert names == [c for c in tables.read_frame(cfg, t.table).columns if c not in (C.REGION_ID, C.PRESENT)]

    # a second run over changed input, killed with SIGKILL right after its first view table commits
    write_pois(tmp_path, 7)
    poi_log = Path(str(tables.locate(cfg, "view_poi").path)) / "_delta_log"
    target = poi_log / f"{snap_before['view_poi'] + 1:020d}.json"
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cookie", "features", "--config", str(cfg_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert target.exists(), "the second run never committed view_poi"

    # the killed run's table version exists, but nothing reads it: the manifest still names the first run
    assert tables.table_version(spark, tables.locate(cfg, "view_poi")) == snap_before["view_poi"] + 1
    assert tables.snapshot(cfg) == snap_before
    assert len(tables.read_frame(cfg, C.RUNS_TABLE)) == 1
    pd.testing.assert_frame_equal(tables.read_frame(cfg, "view_poi").set_index(C.REGION_ID), before)
    assert "count_c" not in tables.read_frame(cfg, "view_poi").columns
    vt = {v.name: v for v in view_tables(spark, cfg)}
    assert vt["poi"].version == snap_before["view_poi"] and "count_c" not in vt["poi"].features
    assert tables.read_feature_table(spark, cfg, "view_poi").count() == first.tables[0].rows  # every region, old run

    # a rerun finishes the job: every reader moves to the new run together
    second = build_features(spark, cfg)
    after = tables.read_frame(cfg, "view_poi").set_index(C.REGION_ID)
    assert after["count_c"].sum() == 7
    assert tables.snapshot(cfg) == {t.table: t.version for t in second.tables}
    assert {v.name: v.version for v in view_tables(spark, cfg)}["poi"] == tables.snapshot(cfg)["view_poi"]


def test_a_concurrent_commit_is_a_conflict_naming_the_table(spark, tmp_path):
    """Two writers of one table: the one that commits second gets ConcurrentRun (exit 5), not a Delta trace."""
    import threading

    from pyspark.sql import functions as F

    from cookie.exceptions import ConcurrentRun

    loc = tables.TableLocation("view_poi", path=str(tmp_path / "view_poi"))
    tables.write_table(spark.range(3).select(F.col("id").cast("string").alias(C.REGION_ID)), loc)

    @F.udf("double")
    def slow(x):
        time.sleep(0.5)
        return float(x)

    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:  # both read version 0, then spend a second computing rows: whoever commits second conflicts
            tables.write_table(spark.range(n).repartition(2).select(slow("id").alias("v")), loc)
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in (4, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 1 and isinstance(errors[0], ConcurrentRun), errors
    msg = str(errors[0])
    assert "view_poi" in msg and "another run" in msg and errors[0].exit_code == C.EXIT_CONFLICT
    assert tables.read_table(spark, loc).count() in (4, 6)  # the committed write is whole
    assert tables.table_version(spark, loc) == 1  # and the only commit after the first
