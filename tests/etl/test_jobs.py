"""The feature job as users run it: spark-submit as the README writes it, and its failure modes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from deltalake import DeltaTable

from cookie.spark import packages_argument

REPO = Path(__file__).resolve().parents[2]
SPARK_SUBMIT = Path(sys.executable).parent / "spark-submit"


def tiny_config(d: Path) -> Path:
    pd.DataFrame({"lon": [10.002, 10.004, 10.012], "lat": [50.002, 50.003, 50.004], "kind": ["a", "b", "a"]}).to_csv(
        d / "pois.csv", index=False
    )
    cfg = {
        "name": "submit",
        "output": {"warehouse": str(d / "warehouse")},
        "sources": {"pois": {"kind": "vector", "path": str(d / "pois.csv"), "lon_column": "lon", "lat_column": "lat"}},
        "regions": {"kind": "h3", "resolution": 7, "bbox": [9.9, 49.9, 10.1, 50.1]},
        "views": [{"name": "poi", "kind": "points", "source": "pois", "category_column": "kind"}],
    }
    p = d / "submit.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def run(cmd, **kw):
    env = dict(os.environ)
    env.setdefault("JAVA_HOME", "/usr/lib/jvm/java-17-openjdk-amd64")
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYSPARK_DRIVER_PYTHON"] = sys.executable
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, **kw)


@pytest.mark.slow
@pytest.mark.heavy
def test_spark_submit_as_documented(tmp_path):
    cfg = tiny_config(tmp_path)
    ivy = os.environ.get("COOKIE_IVY_DIR", str(REPO / ".ivy2"))
    res = run(
        [
            str(SPARK_SUBMIT),
            "--master",
            "local[2]",
            "--packages",
            packages_argument(),
            "--conf",
            f"spark.jars.ivy={ivy}",
            "jobs/build_features.py",
            "--config",
            str(cfg),
        ]
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "view_poi" in res.stdout
    df = DeltaTable(str(tmp_path / "warehouse" / "submit" / "view_poi")).to_pandas()
    assert df["count_total"].sum() == 3


@pytest.mark.slow
def test_spark_submit_without_jars_names_the_missing_jar(tmp_path):
    cfg = tiny_config(tmp_path)
    res = run([str(SPARK_SUBMIT), "--master", "local[1]", "jobs/build_features.py", "--config", str(cfg)])
    assert res.returncode == 3, res.stderr[-2000:]
    # spark-submit's PythonRunner merges the script's stderr into stdout
    message = [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("error:")]
    assert message and "sedona-spark-shaded-4.0_2.13" in message[0] and "--packages" in message[0], res.stderr[-2000:]
    assert not (tmp_path / "warehouse").exists()


def test_bad_config_exits_with_the_key(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\nregions: {kind: h3, resolution: 99, bbox: [0, 0, 1, 1]}\nviews: []\n")
    res = run([sys.executable, "jobs/build_features.py", "--config", str(p)])
    assert res.returncode == 2
    assert "regions.h3.resolution" in res.stderr
