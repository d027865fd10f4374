"""A real Spark standalone cluster on this machine: a master and a worker, each its own JVM on 127.0.0.1, started
from the pyspark install. The feature job runs through ``spark-submit --master spark://...`` (the jars reach
the executors through ``--packages``) and training through TorchDistributor with ``local_mode: false`` (barrier
tasks on the executor, each rank reading its shard there); both give what the local run gives."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from deltalake import DeltaTable

from cookie.spark import packages_argument

from cookie_test_tables import make_config

# In `make test` (CI): a cluster start, spark-submit with --packages and two trainings take about 2 minutes.
pytestmark = [pytest.mark.spark, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SPARK_CLASS = Path(__import__("pyspark").__file__).parent / "bin" / "spark-class"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("JAVA_HOME", "/usr/lib/jvm/java-17-openjdk-amd64")
    env.update(
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        SPARK_LOCAL_IP="127.0.0.1",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    return env


def _workers_alive(ui: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=2) as r:
            state = json.load(r)
    except OSError:
        return 0
    return sum(w.get("state") == "ALIVE" for w in state.get("workers", []))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[str]:
    """``spark://127.0.0.1:<port>`` of a running master with one 2-core worker; both stopped afterwards."""
    d = tmp_path_factory.mktemp("standalone")
    port, ui = _free_port(), _free_port()
    env = _env()
    logs = []
    procs = []
    for name, args in (
        (
            "master",
            [
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--webui-port",
                str(ui),
            ],
        ),
        (
            "worker",
            [
                "org.apache.spark.deploy.worker.Worker",
                f"spark://127.0.0.1:{port}",
                "--host",
                "127.0.0.1",
                "--cores",
                "2",
                "--memory",
                "6g",
                "--webui-port",
                str(_free_port()),
                "--work-dir",
                str(d / "work"),
            ],
        ),
    ):
        log = (d / f"{name}.log").open("w")
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [str(SPARK_CLASS), *args], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
        if name == "master":
            deadline = time.time() + 120
            while time.time() < deadline and _workers_alive(ui) == 0:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=2)
                    break
                except OSError:
                    time.sleep(0.5)
    deadline = time.time() + 120
    while time.time() < deadline and _workers_alive(ui) < 1:
        time.sleep(0.5)
    try:
        assert _workers_alive(ui) == 1, (d / "worker.log").read_text()[-3000:]
        yield f"spark://127.0.0.1:{port}"
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()


def _run(cmd: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)


def _points_config(d: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 2_000
    import pandas as pd

    pd.DataFrame(
        {
            "lon": rng.uniform(9.95, 10.05, n),
            "lat": rng.uniform(49.95, 50.05, n),
            "kind": rng.choice(["food", "shop", "school", "park"], n),
        }
    ).to_csv(d / "pois.csv", index=False)
    cfg = {
        "name": "cluster",
        "output": {"warehouse": str(d / "warehouse")},
        "sources": {"pois": {"kind": "vector", "path": str(d / "pois.csv"), "lon_column": "lon", "lat_column": "lat"}},
        "regions": {"kind": "h3", "resolution": 8, "bbox": [9.95, 49.95, 10.05, 50.05]},
        "views": [{"name": "poi", "kind": "points", "source": "pois", "category_column": "kind"}],
    }
    p = d / "cluster.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def _table(cfg_path: Path, table: str):
    raw = yaml.safe_load(cfg_path.read_text())
    df = DeltaTable(str(Path(raw["output"]["warehouse"]) / raw["name"] / table)).to_pandas()
    return df.sort_values("region_id").reset_index(drop=True)


def test_feature_job_through_spark_submit_on_the_cluster(cluster, spark, tmp_path):
    from cookie.config import load_config
    from cookie.etl.job import build_features

    on_cluster = _points_config(tmp_path)
    ivy = os.environ.get("COOKIE_IVY_DIR", str(REPO / ".ivy2"))
    res = _run(
        [
            str(BIN / "spark-submit"),
            "--master",
            cluster,
            "--packages",
            packages_argument(),
            "--conf",
            f"spark.jars.ivy={ivy}",
            "--conf",
            "spark.executor.memory=2g",
            "jobs/build_features.py",
            "--config",
            str(on_cluster),
        ]
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "view_poi" in res.stdout

    local_dir = tmp_path / "local"
    local_dir.mkdir()
    local = _points_config(local_dir)
    build_features(spark, load_config(local, base_dir=str(REPO)))
    for table in ("regions", "view_poi"):
        a, b = _table(on_cluster, table), _table(local, table)
        assert len(a) == len(b) > 100
        a, b = a.drop(columns=["geometry_wkb"], errors="ignore"), b.drop(columns=["geometry_wkb"], errors="ignore")
        own = [c for c in a.columns if not c.startswith("ctx_")]
        assert a[own].equals(b[own])
        # neighbour means (the default spatial context) sum in the partitions' order, which the cluster changes
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12, atol=0)
    assert 1_800 < _table(on_cluster, "view_poi")["count_total"].sum() <= 2_000  # H3 cells do not tile the box


def test_training_as_barrier_tasks_on_the_cluster(cluster, spark, helsinki_tables, tmp_path):
    """TorchDistributor ``local_mode: false``: two barrier tasks on the worker train, the driver registers; the
    embeddings equal those of the same config trained with ``local_mode: true``."""
    from cookie.pipeline import train_and_publish
    from cookie.serving import embeddings as E

    local = make_config(tmp_path / "local", "helsinki", helsinki_tables)
    on_cluster = make_config(tmp_path / "cluster", "helsinki", helsinki_tables, train={"local_mode": False})
    path = tmp_path / "cluster" / "helsinki.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["spark"] = {"master": cluster, "conf": {"spark.executor.memory": "3g"}}
    path.write_text(yaml.safe_dump(raw))

    res = _run([sys.executable, "-m", "cookie", "train", "--config", str(path)])
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    out = res.stdout + res.stderr
    assert "barrier tasks" in out
    # every rank ends cleanly: a rank that aborts at exit after training (as when DDP freed the process group at
    # interpreter exit) fails its torchrun agent, and the job still succeeds, 300 s late (the exit barrier)
    assert "ChildFailedError" not in out and "Error waiting on exit barrier" not in out, out[-4000:]

    train_and_publish(spark, local)
    a = E.read_embeddings(spark, on_cluster).toPandas().sort_values("region_id")
    b = E.read_embeddings(spark, local).toPandas().sort_values("region_id")
    assert len(a) == len(b) == 144
    np.testing.assert_array_equal(np.stack(a["embedding"]), np.stack(b["embedding"]))
