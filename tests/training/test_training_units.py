"""Pieces of the trainer that need neither Spark nor torchrun: config, preprocessing, sharding,
checkpoints and the rank payload encoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from pydantic import ValidationError

from cookie.config import ConfigError, load_config
from cookie.config.train import TrainConfig
from cookie.preprocessing import (
    FeatureStats,
    ViewStats,
    feature_column,
    log1p_zscore,
    present_column,
    transform_view,
    zscore,
)
from cookie.training import checkpoint as ckpt
from cookie.training.data import shard_of
from cookie.training.distributed import decode_payload, encode_payload

from cookie_test_tables import REPO


def test_train_config_defaults_and_validation():
    tc = TrainConfig()
    assert tc.num_processes == 2 and tc.local_mode and tc.use_gpu is None and tc.alias == "challenger"
    assert (tc.checkpoint_every, tc.log_every, tc.progress_every) == (50, 10, 25)
    assert "torch==2.13.0" in tc.pip_requirements and "mlflow==3.17.2" in tc.pip_requirements
    with pytest.raises(ValidationError):
        TrainConfig(num_processes=0)
    with pytest.raises(ValidationError):
        TrainConfig(nmu_processes=2)  # typo: extra keys are refused
    with pytest.raises(ValidationError):
        TrainConfig(preprocess={"poi": "log"})


def test_config_train_and_model_sections_are_typed(tmp_path):
    raw = yaml.safe_load((REPO / "conf" / "helsinki.yaml").read_text())
    raw["train"] = {"num_processes": 1, "stop_after_epochs": 4}
    raw["model"] = {"epochs_intra": 5}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path, base_dir=str(REPO))
    assert isinstance(cfg.train, TrainConfig) and cfg.train.stop_after_epochs == 4
    assert cfg.model_settings().epochs_intra == 5
    raw["train"] = {"num_processes": "many"}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="train.num_processes"):
        load_config(path, base_dir=str(REPO))
    raw["train"], raw["model"] = {}, {"epochs_intra": -1}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="model.epochs_intra"):
        load_config(path, base_dir=str(REPO)).model_settings()


def _stats(x: np.ndarray, present: np.ndarray, kind: str) -> ViewStats:
    v = np.log1p(np.clip(x, 0, None)) if kind == "counts" else x
    rows = v[present]
    std = rows.std(0)
    return ViewStats(
        "a", kind, [f"f{i}" for i in range(x.shape[1])], rows.mean(0).tolist(), np.where(std > 1e-8, std, 1.0).tolist()
    )


@pytest.mark.parametrize("kind", ["counts", "zscore"])
def test_transform_matches_the_model_preprocessing(kind):
    rng = np.random.default_rng(0)
    x = rng.poisson(3.0, size=(50, 4)).astype(float)
    x[:, 2] = 0.0  # constant column -> zeros, never NaN
    present = rng.random(50) > 0.2
    out = transform_view(x, present, _stats(x, present, kind))
    ref = (log1p_zscore if kind == "counts" else zscore)(x, present)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_allclose(out, ref, atol=1e-5)
    assert (out[~present] == 0).all() and (out[:, 2] == 0).all()


def test_transform_nan_policy():
    x = np.array([[1.0, 2.0], [np.nan, 1.0], [3.0, 4.0]])
    st = ViewStats("a", "counts", ["p", "q"], [0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="region 'r1'.*feature 'p'"):
        transform_view(x, None, st, "raise", region_ids=["r0", "r1", "r2"])
    # a NaN in a masked row is fine under either policy; 'zero' maps present NaN to the mean
    assert transform_view(x, np.array([True, False, True]), st, "raise")[1].tolist() == [0.0, 0.0]
    assert transform_view(x, None, st, "zero")[1, 0] == 0.0


def test_stats_round_trip_and_flat_names():
    st = FeatureStats([ViewStats("poi", "counts", ["a", "b"], [1.0, 2.0], [1.0, 0.5], n_present=3)], n_regions=4)
    assert FeatureStats.from_json(st.to_json()) == st
    assert st.input_columns() == ["poi__a", "poi__b"]
    assert feature_column("poi", "a") == "poi__a" and present_column("poi") == "poi___present"


def test_shards_are_deterministic_and_cover_every_region():
    ids = [f"r{i}" for i in range(500)]
    for world in (1, 2, 3):
        owners = [shard_of(i, world) for i in ids]
        assert owners == [shard_of(i, world) for i in ids]
        assert set(owners) == set(range(world))
    counts = np.bincount([shard_of(i, 2) for i in ids])
    assert abs(counts[0] - counts[1]) < 60  # roughly balanced


def test_checkpoint_files_latest_and_pruning(tmp_path):
    d = tmp_path / "cfg" / "run1"
    for e in range(1, 5):
        ckpt.save_checkpoint(d, {"global_epoch": e, "module": {"w": torch.full((2,), float(e))}}, keep=2)
    files = ckpt.list_checkpoints(d)
    assert [p.name for p in files] == ["epoch_000003.pt", "epoch_000004.pt"]
    state = ckpt.load_checkpoint(ckpt.latest_checkpoint(d))
    assert state["global_epoch"] == 4 and state["module"]["w"].tolist() == [4.0, 4.0]
    assert not list(d.glob("*.tmp"))
    ckpt.mark_latest(tmp_path, "cfg", "run1")
    assert ckpt.latest_run_id(tmp_path, "cfg") == "run1" and ckpt.latest_run_id(tmp_path, "other") is None
    assert ckpt.fingerprint({"a": 1}, 2) == ckpt.fingerprint({"a": 1}, 2) != ckpt.fingerprint({"a": 2}, 2)


def test_payload_bytes_are_identical_for_equal_payloads():
    """Ranks return the encoded payload: equal bytes, so concurrent writes of it cannot corrupt it."""
    payload = {"state": {"w": torch.arange(4.0)}, "history": [{"loss": 1.5, "stage": "intra"}]}
    a = encode_payload(payload)
    assert a == encode_payload({"state": {"w": torch.arange(4.0)}, "history": [{"loss": 1.5, "stage": "intra"}]})
    out = decode_payload(a)
    assert out["history"] == payload["history"] and torch.equal(out["state"]["w"], payload["state"]["w"])


@pytest.mark.parametrize(
    "method, model, match",
    [
        ("cookie", {"epochs_intra": 0, "epochs_pair": 0}, "untrained model"),
        ("cookie", {"epochs_intra": 5, "epochs_pair": 0}, "shared heads untrained"),
        ("cookie", {"epochs_intra": 0, "epochs_pair": 5, "lambda_intra": 0.0}, "unique heads untrained"),
        ("gfactorcl", {"epochs_intra": 0, "epochs_pair": 0}, "nothing would train"),
        ("intra_only", {"epochs_intra": 0, "epochs_pair": 5}, "epochs_intra must be at least 1"),
        ("pair_only", {"epochs_intra": 5, "epochs_pair": 0}, "epochs_pair must be at least 1"),
    ],
)
def test_config_refuses_learned_methods_that_would_not_train(tmp_path, method, model, match):
    raw = yaml.safe_load((REPO / "conf" / "helsinki.yaml").read_text())
    raw["model"] = {"method": method, **model}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=f"model.*{match}"):
        load_config(path, base_dir=str(REPO))
    raw["model"] = {}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=match):  # the same through --set on a good file
        load_config(
            path,
            base_dir=str(REPO),
            overrides=[f"model.method={method}"] + [f"model.{k}={v}" for k, v in model.items()],
        )


@pytest.mark.parametrize(
    "method, model",
    [
        ("cookie", {"epochs_intra": 0, "epochs_pair": 5, "lambda_intra": 0.3}),  # intra terms trained in stage 'pair'
        ("gfactorcl", {"epochs_intra": 0, "epochs_pair": 5}),
        ("intra_only", {"epochs_intra": 5, "epochs_pair": 0}),
        ("pair_only", {"epochs_intra": 0, "epochs_pair": 5}),
        ("raw", {"epochs_intra": 0, "epochs_pair": 0}),  # statistics only: epochs do not matter
        ("raw_pca", {"epochs_intra": 0, "epochs_pair": 0}),
    ],
)
def test_config_accepts_settings_that_train(tmp_path, method, model):
    from cookie.model import build_model

    raw = yaml.safe_load((REPO / "conf" / "helsinki.yaml").read_text())
    raw["model"] = {"method": method, **model}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path, base_dir=str(REPO))
    stages = build_model(cfg.model.model_copy(update={"embed_dim": 2, "hidden_dim": 2}), {"a": 2, "b": 2}).stages()
    assert all(s.epochs >= 0 for s in stages) and (sum(s.epochs for s in stages) > 0) == (
        method not in ("raw", "raw_pca")
    )


def test_prefit_from_sums_matches_one_process():
    """The baselines' statistics from per-shard sums (what the ranks all-reduce) equal one process's."""
    from cookie.config.model import ModelConfig
    from cookie.model import build_model

    g = torch.Generator().manual_seed(0)
    views = {"a": torch.randn(40, 5, generator=g) * 3 + 1, "b": torch.randn(40, 4, generator=g)}
    masks = {"a": torch.rand(40, generator=g) > 0.2, "b": None}
    for method in ("raw", "raw_pca"):
        cfg = ModelConfig(method=method, embed_dim=2)
        one = build_model(cfg, {"a": 5, "b": 4})
        v, m = one.prepare(views, masks)
        one.module.prefit(v, m)
        halves = [slice(0, 17), slice(17, 40)]
        shards = [build_model(cfg, {"a": 5, "b": 4}) for _ in halves]
        parts = [
            s.prepare({k: x[h] for k, x in views.items()}, {k: (None if x is None else x[h]) for k, x in masks.items()})
            for s, h in zip(shards, halves)
        ]

        run_as_ranks([(s.module.prefit, pv, pm) for s, (pv, pm) in zip(shards, parts)])
        for s in shards:
            np.testing.assert_allclose(s.embed(views, masks).numpy(), one.embed(views, masks).numpy(), atol=1e-4)


def run_as_ranks(calls):
    """Run ``fn(views, masks, reduce=...)`` for each shard in its own thread, in lock-step like ranks: every
    reduced tensor is the sum of what each shard passes."""
    import threading

    n = len(calls)
    barrier, box, lock = threading.Barrier(n), {}, threading.Lock()

    def reduce_for(i):
        def reduce(t):
            with lock:
                box[i] = t.clone()
            barrier.wait()
            total = sum(box[j] for j in range(n))
            barrier.wait()
            return total

        return reduce

    threads = [
        threading.Thread(target=fn, args=(v, m), kwargs={"reduce": reduce_for(i)}) for i, (fn, v, m) in enumerate(calls)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_ensemble_rotations_from_sums_match_one_process():
    """A seed ensemble's rotations fitted from per-shard sums (what the ranks all-reduce) equal one process's."""
    from cookie.config.model import ModelConfig
    from cookie.model import build_model

    g = torch.Generator().manual_seed(0)
    views = {"a": torch.randn(60, 5, generator=g), "b": torch.randn(60, 4, generator=g)}
    masks = {"a": torch.rand(60, generator=g) > 0.2, "b": None}
    cfg = ModelConfig(ensemble=3, embed_dim=4, hidden_dim=8)
    one = build_model(cfg, {"a": 5, "b": 4})
    v, m = one.prepare(views, masks)
    one.module.postfit(v, m)
    halves = [slice(0, 23), slice(23, 60)]
    shards = [build_model(cfg, {"a": 5, "b": 4}) for _ in halves]
    calls = []
    for s, h in zip(shards, halves):
        sv, sm = s.prepare(
            {k: x[h] for k, x in views.items()}, {k: (None if x is None else x[h]) for k, x in masks.items()}
        )
        calls.append((s.module.postfit, sv, sm))
    run_as_ranks(calls)
    for s in shards:
        for name, buf in one.module.named_buffers():
            assert not torch.allclose(buf, torch.eye(buf.shape[-1]).expand_as(buf), atol=1e-3), name
            torch.testing.assert_close(dict(s.module.named_buffers())[name], buf, atol=1e-4, rtol=1e-4)


def test_worker_logging_goes_to_stderr_once(capsys):
    import logging

    from cookie.training.distributed import LOGGER, configure_worker_logging, format_seconds

    logger = logging.getLogger(LOGGER)
    before = (list(logger.handlers), logger.level, logger.propagate)
    try:
        configure_worker_logging(0)
        configure_worker_logging(0)
        logger.info("hello")
        err = capsys.readouterr().err
        assert err.count("hello") == 1 and "cookie.train [rank 0]" in err
    finally:
        logger.handlers[:], logger.level, logger.propagate = before[0], before[1], before[2]
    assert [format_seconds(s) for s in (4.2, 42, 185, 7620)] == ["4.2 s", "42 s", "3 min 05 s", "2 h 07 min"]


def test_process_group_frees_ddp_before_destroying_the_group(monkeypatch):
    """A DDP wrapper in a reference cycle is collected before the group is destroyed: left to interpreter exit,
    its Gloo threads abort the rank (SIGABRT) and the other ranks' torchrun agents wait 300 s at exit."""
    import gc
    import socket
    import weakref

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from cookie.training.distributed import process_group

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(key, value)
    alive_at_destroy = []
    destroy = dist.destroy_process_group

    def spy(*args, **kwargs):
        alive_at_destroy.append(ref() is not None)
        return destroy(*args, **kwargs)

    monkeypatch.setattr(dist, "destroy_process_group", spy)
    gc.disable()  # only the context manager may collect the cycle
    try:
        with process_group("gloo"):
            holder: dict = {}
            holder["self"] = holder
            holder["ddp"] = DistributedDataParallel(torch.nn.Linear(4, 2))
            holder["ddp"](torch.randn(3, 4)).sum().backward()
            ref = weakref.ref(holder["ddp"])
            del holder
            assert ref() is not None  # still alive here: only a collection frees it
    finally:
        gc.enable()
    assert alive_at_destroy == [False]
    assert not dist.is_initialized()
