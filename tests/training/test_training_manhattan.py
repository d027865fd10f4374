"""Training end to end on the Manhattan-180 tables (real ETL, TorchDistributor with 2 local
processes, MLflow SQLite store in tmp): logging, checkpoints, the embeddings table contract,
registration, statistics and shards, stop-and-resume equality, and the statistics-only baselines
trained through the same job with 1 and 2 processes."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from deltalake import DeltaTable
from mlflow.tracking import MlflowClient

from cookie.config import load_config
from cookie.exceptions import ConfigError
from cookie.pipeline import train_and_publish
from cookie.preprocessing import transform_view
from cookie.serving import embeddings as E
from cookie.storage import tracking as registry
from cookie.storage.delta import order_ids
from cookie.training import checkpoint as ckpt
from cookie.training.data import compute_stats, read_shard

from cookie_test_tables import REPO, make_config

pytestmark = [pytest.mark.spark, pytest.mark.shared_data, pytest.mark.slow]
VIEWS = ["mobility", "poi", "landuse"]
BLOCKS = [
    "unique_mobility",
    "unique_poi",
    "unique_landuse",
    "shared_mobility__poi",
    "shared_mobility__landuse",
    "shared_poi__landuse",
]


@pytest.fixture(scope="module")
def full_run(spark, manhattan_tables, tmp_path_factory):
    cfg = make_config(tmp_path_factory.mktemp("manhattan-full"), "manhattan180", manhattan_tables)
    return cfg, train_and_publish(spark, cfg)


def _table(spark, cfg):
    return spark.read.format("delta").load(E.location(cfg).path)


def _vectors(spark, cfg) -> tuple[list[str], np.ndarray]:
    pdf = _table(spark, cfg).select("region_id", "embedding").toPandas().sort_values("region_id")
    return pdf["region_id"].tolist(), np.stack(pdf["embedding"].to_numpy()).astype(np.float32)


def test_statistics_come_from_one_spark_aggregate_and_match_numpy(spark, full_run):
    cfg, _ = full_run
    stats = compute_stats(spark, cfg)
    assert stats.view_names == VIEWS and stats.n_regions == 180
    assert {v.name: v.kind for v in stats.views} == {"mobility": "zscore", "poi": "counts", "landuse": "counts"}
    # where the counts are, for the 'thin' augmentation: the OD cells (and their context means) are log1p trips,
    # outflow / inflow / self-flow trips themselves; POI and land-use counts are log1p'd by the preprocessing
    mobility = dict(zip(stats.view("mobility").features, stats.view("mobility").count_spaces()))
    assert mobility["outflow"] == "linear" and mobility["out_00000"] == "log" and mobility["ctx_adj__in_00179"] == "log"
    assert set(stats.view("poi").count_spaces()) == {"log"}
    for vs in stats.views:
        df = DeltaTable(vs.table).to_pandas()
        x = df[vs.features].to_numpy(float)[df["_present"].to_numpy()]
        x = np.log1p(np.clip(x, 0, None)) if vs.kind == "counts" else x
        std = x.std(0)
        np.testing.assert_allclose(vs.mean, x.mean(0), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(vs.std, np.where(std > 1e-8, std, 1.0), rtol=1e-9, atol=1e-9)


def test_ranks_read_disjoint_shards_of_every_region(spark, full_run):
    cfg, _ = full_run
    stats = compute_stats(spark, cfg)
    shards = [read_shard(stats, r, 2) for r in range(2)]
    ids = [set(s.region_ids) for s in shards]
    assert not ids[0] & ids[1] and len(ids[0] | ids[1]) == 180
    assert all(s.region_ids == sorted(s.region_ids) for s in shards)
    poi = stats.view("poi")
    df = DeltaTable(poi.table).to_pandas().set_index("region_id").loc[shards[1].region_ids]
    expected = transform_view(df[poi.features].to_numpy(float), df["_present"].to_numpy(), poi)
    np.testing.assert_array_equal(shards[1].views["poi"], expected)


def test_trains_logs_checkpoints_registers_and_writes_the_table(spark, full_run):
    cfg, r = full_run
    assert (r.status, r.global_epoch, r.total_epochs, r.model_version, r.alias) == ("FINISHED", 6, 6, 1, "challenger")
    client = MlflowClient(tracking_uri=registry.tracking_uri(cfg), registry_uri=registry.registry_uri(cfg))
    run = client.get_run(r.run_id)
    assert run.info.status == "FINISHED"
    p = run.data.params
    assert p["model.embed_dim"] == "16" and p["num_processes"] == "2" and p["view.poi.preprocess"] == "counts"
    assert [m.step for m in client.get_metric_history(r.run_id, "loss")] == [1, 2, 3, 4, 5, 6]
    m = run.data.metrics
    assert m["efficiency/objectives"] == 6 and m["efficiency/params"] > 0 and m["efficiency/flops_per_step"] > 0
    for key in (
        "efficiency/seconds_per_epoch",
        "efficiency/peak_memory_mb",
        "timing/distributor_overhead_s",
        "timing/job_s",
        "efficiency/peak_rss_mb_rank1",
    ):
        assert m[key] > 0, key
    artifacts = {a.path for a in client.list_artifacts(r.run_id)}
    assert {"preprocessing.json", "history.json", "efficiency.json", "config.json"} <= artifacts
    mv = client.get_model_version_by_alias("cookie_manhattan180", "challenger")
    assert int(mv.version) == 1 and mv.tags["run_id"] == r.run_id
    last = ckpt.load_checkpoint(ckpt.latest_checkpoint(r.checkpoint_dir))
    assert last["global_epoch"] == 6 and len(last["rng"]) == 2

    df = _table(spark, cfg)
    assert df.columns == list(E.KEY_COLUMNS) + BLOCKS
    types = dict(df.dtypes)
    assert [types[c] for c in E.KEY_COLUMNS] == [
        "string",
        "int",
        "string",
        "int",
        "string",
        "timestamp",
        "array<float>",
    ]
    assert all(types[b] == "array<float>" for b in BLOCKS)
    pdf = df.toPandas()
    assert len(pdf) == 180 and pdf["region_id"].is_unique
    # ids "0".."179": region_order is the numeric order, not the string order ('0', '1', '10', ...)
    assert (
        pdf.sort_values("region_order")["region_id"].tolist()
        == order_ids(pdf["region_id"])
        == [str(i) for i in range(180)]
    )
    assert sorted(pdf["region_order"]) == list(range(180))
    assert set(pdf["model_name"]) == {"cookie_manhattan180"} and set(pdf["model_version"]) == {1}
    assert set(pdf["run_id"]) == {r.run_id}
    emb = np.stack(pdf["embedding"].to_numpy())
    blocks = np.concatenate([np.stack(pdf[b].to_numpy()) for b in BLOCKS], axis=1)
    assert emb.shape == (180, 96) and np.isfinite(emb).all()
    np.testing.assert_array_equal(emb, blocks)
    np.testing.assert_allclose(np.linalg.norm(np.stack(pdf["unique_poi"].to_numpy()), axis=1), 1.0, atol=1e-5)


@pytest.mark.heavy
def test_rewriting_a_version_is_idempotent_and_keeps_other_versions(spark, full_run):
    from cookie.model import build_model
    from cookie.preprocessing import FeatureStats

    cfg, r = full_run
    stats = FeatureStats.from_dict(ckpt.read_json(r.checkpoint_dir, "stats.json"))
    model = build_model(cfg.model_settings(), stats.view_dims)
    before = _vectors(spark, cfg)[1]
    for _ in range(2):
        E.write_embeddings(spark, cfg, model, stats, "cookie_manhattan180", 99, "another-run")
    counts = {
        row["model_version"]: row["count"] for row in _table(spark, cfg).groupBy("model_version").count().collect()
    }
    assert counts == {1: 180, 99: 180}
    v1 = E.read_embeddings(spark, cfg, "cookie_manhattan180", 1).select("region_id", "embedding").toPandas()
    np.testing.assert_array_equal(np.stack(v1.sort_values("region_id")["embedding"].to_numpy()), before)
    E.delete_embeddings(spark, cfg, "cookie_manhattan180", 99)
    assert _table(spark, cfg).count() == 180


@pytest.mark.heavy
def test_stop_and_resume_gives_the_same_embeddings(spark, full_run, manhattan_tables, tmp_path, capsys, caplog):
    ref_cfg, ref = full_run
    # default checkpoint_every (50): only stage ends (where early stopping restores the best weights), the stop
    # point and the last epoch are checkpointed
    cfg = make_config(tmp_path, "manhattan180", manhattan_tables, train={"progress_every": 2})
    assert cfg.train.checkpoint_every == 50 and cfg.train.log_every == 10
    client = MlflowClient(tracking_uri=registry.tracking_uri(cfg), registry_uri=registry.registry_uri(cfg))

    caplog.set_level(logging.INFO, logger="cookie.train")
    stopped = train_and_publish(spark, cfg, stop_after_epochs=4)  # in the middle of stage 'pair'
    assert (stopped.status, stopped.global_epoch) == ("STOPPED", 4)
    assert client.get_run(stopped.run_id).info.status == "KILLED"
    assert client.search_registered_models() == []
    assert not (tmp_path / "warehouse" / "manhattan180" / "embeddings").exists()
    assert [p.name for p in ckpt.list_checkpoints(stopped.checkpoint_dir)] == ["epoch_000003.pt", "epoch_000004.pt"]
    # rank 0's progress reaches the driver's console through TorchDistributor's output
    out = capsys.readouterr().out
    assert "cookie.train [rank 0]" in out and "[rank 1]" not in out
    for line in (
        "stage intra (1/2)",
        "intra epoch 1/3 (global 1/6)",
        "intra epoch 2/3",
        "intra epoch 3/3",
        "stage intra done",
        "pair epoch 1/3 (global 4/6)",
        "stopped after global epoch 4/6",
    ):
        assert line in out, line
    assert "s/epoch, ETA" in out
    driver = caplog.text
    assert "statistics computed" in driver and "TorchDistributor started: 2 process(es)" in driver
    with pytest.raises(ConfigError, match="same number"):
        train_and_publish(spark, cfg, resume=True, num_processes=1)

    resumed = train_and_publish(spark, cfg, resume=True)
    assert "resumed from epoch_000004.pt" in capsys.readouterr().out
    assert "model registered: cookie_manhattan180 version 1" in caplog.text
    assert "embeddings written" in caplog.text
    assert (resumed.run_id, resumed.status, resumed.global_epoch) == (stopped.run_id, "FINISHED", 6)
    assert client.get_run(resumed.run_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(resumed.run_id, "loss")] == [1, 2, 3, 4, 5, 6]
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in ref.history]
    ids_ref, vec_ref = _vectors(spark, ref_cfg)
    ids, vec = _vectors(spark, cfg)
    assert ids == ids_ref
    np.testing.assert_array_equal(vec, vec_ref)
    with pytest.raises(ConfigError, match="already finished"):
        train_and_publish(spark, cfg, resume=True)


def _method_config(cfg, method: str, *more: str):
    """The same config file with ``--set model.method=...`` (as on the command line)."""
    return load_config(_config_path(cfg), base_dir=str(REPO), overrides=[f"model.method={method}", *more])


def _config_path(cfg):
    """make_config writes <tmp>/<name>.yaml beside <tmp>/warehouse/<name>."""
    return Path(cfg.warehouse_path()).parents[1] / f"{cfg.name}.yaml"


def _rows(spark, cfg, name: str, version: int):
    pdf = E.read_embeddings(spark, cfg, name, version).toPandas().sort_values("region_order")
    return pdf["region_id"].tolist(), np.stack(pdf["embedding"].to_numpy()).astype(np.float64)


@pytest.mark.heavy
def test_a_second_method_on_the_same_config_is_a_model_of_its_own(spark, full_run):
    """``--set model.method=raw`` on the trained config: its own checkpoints and registered model
    (cookie_<name>_raw), trained with 2 processes; the CooKIE model is untouched."""
    cfg, ref = full_run
    raw_cfg = _method_config(cfg, "raw")
    with pytest.raises(ConfigError, match="nothing to resume"):
        train_and_publish(spark, raw_cfg, resume=True)
    r = train_and_publish(spark, raw_cfg)
    assert (r.status, r.global_epoch, r.total_epochs, r.model_name, r.model_version) == (
        "FINISHED",
        0,
        0,
        "cookie_manhattan180_raw",
        1,
    )
    assert r.timing["worker_total_s"] > 0 and r.history == []
    client = MlflowClient(tracking_uri=registry.tracking_uri(cfg), registry_uri=registry.registry_uri(cfg))
    assert sorted(m.name for m in client.search_registered_models()) == [
        "cookie_manhattan180",
        "cookie_manhattan180_raw",
    ]
    base = cfg.resolve(cfg.train.checkpoint_dir)
    assert ckpt.latest_run_id(base, "cookie_manhattan180") == ref.run_id
    assert ckpt.latest_run_id(base, "cookie_manhattan180_raw") == r.run_id != ref.run_id
    assert client.get_run(r.run_id).data.params["num_processes"] == "2"

    counts = {row["model_name"]: row["count"] for row in _table(spark, cfg).groupBy("model_name").count().collect()}
    assert counts == {"cookie_manhattan180": 180, "cookie_manhattan180_raw": 180}
    # raw = every view z-scored over all regions (fitted from sums over the two ranks' shards)
    ids, emb = _rows(spark, cfg, "cookie_manhattan180_raw", 1)
    stats = r.stats
    frame = np.concatenate([transform_view(*_raw_view(vs, ids), vs) for vs in stats.views], axis=1).astype(np.float64)
    present = np.concatenate([np.repeat(_raw_view(vs, ids)[1][:, None], len(vs.features), 1) for vs in stats.views], 1)
    mean = np.array([frame[present[:, j], j].mean() for j in range(frame.shape[1])])
    std = np.array([frame[present[:, j], j].std() for j in range(frame.shape[1])])
    expected = np.where(present, (frame - mean) / np.where(std > 1e-6, std, 1.0), 0.0)
    np.testing.assert_allclose(emb, expected, atol=1e-4)


def _raw_view(vs, ids):
    df = DeltaTable(vs.table).to_pandas().set_index("region_id").loc[ids]
    return df[vs.features].to_numpy(float), df["_present"].to_numpy()


@pytest.mark.heavy
def test_raw_pca_gives_the_same_embeddings_with_one_and_two_processes(spark, full_run):
    cfg, _ = full_run
    pca_cfg = _method_config(cfg, "raw_pca")
    one = train_and_publish(spark, pca_cfg, num_processes=1)
    two = train_and_publish(spark, pca_cfg, num_processes=2)
    assert (one.model_name, one.model_version, two.model_version) == ("cookie_manhattan180_raw_pca", 1, 2)
    ids1, e1 = _rows(spark, cfg, one.model_name, 1)
    ids2, e2 = _rows(spark, cfg, one.model_name, 2)
    assert ids1 == ids2 and e1.shape == (180, 96)
    assert np.abs(e1).max() > 1.0  # a real projection, not zeros
    np.testing.assert_allclose(e2, e1, atol=1e-4, rtol=1e-4)


def test_single_view_trains_with_two_processes_on_its_view_only(spark, full_run):
    cfg, _ = full_run
    sv_cfg = _method_config(cfg, "single_view", "model.single_view=poi")
    r = train_and_publish(spark, sv_cfg)
    assert (r.model_name, r.model_version) == ("cookie_manhattan180_single_view", 1)
    assert r.stats.view_names == ["poi"] and r.model.block_names == ["raw_poi"]
    ids, emb = _rows(spark, cfg, r.model_name, 1)
    assert len(ids) == 180 and emb.shape[1] == len(r.stats.view("poi").features)
    with pytest.raises(ConfigError, match="model.single_view: 'nope' is not one of the views"):
        train_and_publish(spark, _method_config(cfg, "single_view", "model.single_view=nope"))


def test_a_seed_ensemble_trains_on_two_ranks_and_serves_its_aligned_average(spark, manhattan_tables, tmp_path):
    """``model.ensemble: 2`` through the job: both members train under DDP, the rotations are fitted from sums over
    the two ranks, and the embeddings table (written through the registered model) is the model's aligned average."""
    from cookie.model.ensemble import EnsembleModule

    cfg = make_config(tmp_path, "manhattan180", manhattan_tables, model={"ensemble": 2})
    r = train_and_publish(spark, cfg)
    assert (r.status, r.model_name, r.model_version) == ("FINISHED", "cookie_manhattan180", 1)
    module = r.model.module
    assert isinstance(module, EnsembleModule) and len(module.members) == 2
    assert r.model.block_names == BLOCKS and r.efficiency["objectives"] == 12
    for b in range(len(BLOCKS)):
        rot = module.rotation(b)
        eye = torch.eye(16).expand_as(rot)
        assert torch.allclose(rot @ rot.transpose(1, 2), eye, atol=1e-4) and not torch.allclose(rot, eye, atol=1e-3)
    ids, emb = _vectors(spark, cfg)
    views, masks = {}, {}
    for vs in r.stats.views:
        x, present = _raw_view(vs, ids)
        views[vs.name], masks[vs.name] = transform_view(x, present, vs), present
    np.testing.assert_allclose(emb, r.model.embed(views, masks).numpy(), atol=1e-5)
    members = [module.member(k) for k in range(2)]
    v, m = r.model.prepare(views, masks)
    first = torch.cat(members[0].embed_blocks(v, m), dim=1).detach().numpy()
    assert not np.allclose(emb, first, atol=1e-2)  # the average, not member 0
