""":mod:`cookie.storage.tracking`: the naming rules, the store URIs, versions, evaluations and scores on a real
sqlite MLflow store (no Spark)."""

from __future__ import annotations

import math

import pytest

from cookie.config import load_config
from cookie.storage import tracking as T


def _config(tmp_path, extra: str = ""):
    p = tmp_path / "tiny.yaml"
    p.write_text(f"""
name: tiny
sources: {{s: {{kind: array, path: unused.npy}}}}
regions: {{kind: ids, count: 3}}
views: [{{name: a, kind: vectors, source: s}}]
{extra}
""")
    return load_config(p, base_dir=str(tmp_path))


def test_naming_rules(tmp_path):
    cfg = _config(tmp_path)
    assert T.experiment_name(cfg) == "cookie_tiny"  # training, evaluation and promotion runs alike
    assert T.registered_model_name(cfg) == "cookie_tiny"
    g = cfg.model_copy(update={"model": cfg.model.model_copy(update={"method": "gfactorcl"})})
    assert T.registered_model_name(g) == "cookie_tiny_gfactorcl"
    named = _config(tmp_path, "train: {experiment_name: exp, registered_model_name: reg}")
    assert T.experiment_name(named) == "exp" and T.registered_model_name(named) == "reg"
    uc = _config(tmp_path, "output: {catalog: main.geo}")
    assert T.registered_model_name(uc) == "main.geo.cookie_tiny"


def test_model_names_built_and_parsed_for_both_registries(tmp_path, monkeypatch):
    """Workspace / SQLite registry: ``cookie_<config>``; with ``output.catalog`` (what the Unity Catalog registry
    needs): ``<catalog>.<schema>.cookie_<config>`` in lower case, in either registry, read back part by part."""
    from cookie.exceptions import ConfigError

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    plain = _config(tmp_path)
    assert T.registered_model_name(plain) == "cookie_tiny"
    assert T.parse_model_name("cookie_tiny", T.registry_uri(plain)) == T.ModelName("cookie_tiny")

    for registry in ("", "train: {registry_uri: databricks-uc}", "train: {registry_uri: 'databricks-uc://prof'}"):
        cfg = _config(tmp_path, "output: {catalog: Main.Geo}\n" + registry)
        name = T.registered_model_name(cfg)
        assert name == "main.geo.cookie_tiny"
        parsed = T.parse_model_name(name, T.registry_uri(cfg))
        assert (parsed.catalog, parsed.schema, parsed.model, str(parsed)) == ("main", "geo", "cookie_tiny", name)
        assert parsed.three_level and T.is_unity_catalog(T.registry_uri(cfg)) == bool(registry)
    named = _config(tmp_path, "output: {catalog: main.geo}\ntrain: {registered_model_name: prod.ml.Regions}")
    assert T.registered_model_name(named) == "prod.ml.regions"  # a three-level name is kept (lower case)

    # the Unity Catalog registry needs three levels: say how to get them
    uc_bare = _config(tmp_path, "train: {registry_uri: databricks-uc}")
    with pytest.raises(ConfigError, match="set output.catalog"):
        T.registered_model_name(uc_bare)
    for bad in ("geo.cookie_tiny", "a.b.c.d", "main.geo.cookie-tiny", "", "main..m"):
        with pytest.raises(ConfigError, match="<catalog>.<schema>.<model>"):
            T.parse_model_name(bad)
    assert T.parse_model_name("cookie_my-cfg") == T.ModelName("cookie_my-cfg")  # a workspace registry name
    # on Databricks (tracking store "databricks") a catalog means the Unity Catalog registry
    assert T.registry_uri(_config(tmp_path, "output: {catalog: main.geo}"), "databricks") == "databricks-uc"
    assert T.registry_uri(_config(tmp_path), "databricks") == "databricks"
    assert not T.is_unity_catalog("databricks") and not T.is_unity_catalog(None)


def test_catalog_names_checked_before_any_work(tmp_path):
    """A dataset that is no plain identifier cannot name catalog tables; a bad --model-name stops the verb
    before Spark or MLflow start (exit code of a config error)."""
    from cookie.cli import check_tracking
    from cookie.exceptions import ConfigError

    with pytest.raises(ConfigError, match="output.dataset"):
        _config(tmp_path, "output: {catalog: main.geo, dataset: tiny-2}")
    assert _config(tmp_path, "output: {dataset: tiny-2}").dataset == "tiny-2"  # fine without a catalog
    uc = _config(tmp_path, "output: {catalog: main.geo}\ntrain: {registry_uri: databricks-uc}")
    check_tracking(uc)  # databricks-uc is not probed; the config's name is three-level
    with pytest.raises(ConfigError, match="names models <catalog>.<schema>.<model>"):
        check_tracking(uc, model_name="cookie_tiny")
    with pytest.raises(ConfigError) as err:
        check_tracking(_config(tmp_path, "train: {registry_uri: databricks-uc}"))
    assert err.value.exit_code == ConfigError.exit_code


def test_store_uris(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = _config(tmp_path)
    assert T.tracking_uri(cfg) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert T.tracking_uri(cfg, "sqlite:///rel.db") == f"sqlite:///{tmp_path.resolve() / 'rel.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://server:5000")
    assert T.tracking_uri(cfg) == "http://server:5000" == T.registry_uri(cfg)
    assert T.registry_uri(cfg, "http://other") == "http://other"
    uc = _config(tmp_path, "train: {registry_uri: databricks-uc}")
    assert T.registry_uri(uc, "http://other") == "databricks-uc"
    c = T.client_for(uc, "http://other")
    assert c._tracking_client.tracking_uri == "http://other" and c._registry_uri == "databricks-uc"
    assert T.artifact_location(cfg) is None  # a server decides
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert T.artifact_location(cfg) == (tmp_path.resolve() / "mlruns" / "cookie_tiny").as_uri()


def test_no_dead_helpers():
    for gone in ("model_uri", "load_pyfunc"):
        assert not hasattr(T, gone)


@pytest.fixture()
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mc = T.client(uri)
    exp = T.ensure_experiment(mc, "cookie_tiny", (tmp_path / "mlruns").as_uri())
    run = mc.create_run(exp)
    mc.create_registered_model("cookie_tiny")
    mv = mc.create_model_version("cookie_tiny", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    mc.set_registered_model_alias("cookie_tiny", "challenger", mv.version)
    return mc, run.info.run_id, tmp_path


def test_three_level_names_in_the_sqlite_registry(store):
    """The local registry takes the Unity Catalog form of the name: register, alias and resolve by it."""
    mc, rid, tmp_path = store
    name = T.registered_model_name(_config(tmp_path, "output: {catalog: spark_catalog.geo}"))
    mc.create_registered_model(name)
    mv = mc.create_model_version(name, f"runs:/{rid}/model", run_id=rid)
    mc.set_registered_model_alias(name, "challenger", mv.version)
    ref = T.resolve_version(mc, name, alias="challenger")
    assert (ref.name, ref.version, ref.run_id) == ("spark_catalog.geo.cookie_tiny", 1, rid)
    assert T.parse_model_name(ref.name).model == "cookie_tiny"


def test_resolve_version(store):
    from cookie.exceptions import MissingModel

    mc, rid, _ = store
    ref = T.resolve_version(mc, "cookie_tiny", alias="challenger")
    assert (ref.version, ref.run_id, ref.aliases) == (1, rid, ("challenger",)) and ref.label() == "cookie_tiny v1"
    assert T.resolve_version(mc, "cookie_tiny", run_id=rid).version == 1
    assert T.resolve_version(mc, "cookie_tiny", run_id="no-such-run").version is None
    with pytest.raises(MissingModel, match="has no alias 'champion'"):
        T.resolve_version(mc, "cookie_tiny", alias="champion")
    with pytest.raises(MissingModel, match="has no version 9"):
        T.resolve_version(mc, "cookie_tiny", version=9)
    with pytest.raises(MissingModel):
        T.resolve_version(mc, "nobody", alias="challenger")
    with pytest.raises(ValueError):
        T.resolve_version(mc, "cookie_tiny", alias="challenger", version=1)


def test_log_evaluation_and_version_score(store):
    mc, rid, tmp = store
    ref = T.resolve_version(mc, "cookie_tiny", version=1)
    assert T.version_score(mc, ref, "crime.ridge_kfold.R2") is None
    (tmp / "rep").mkdir()
    (tmp / "rep" / "report.md").write_text("# r")
    eid = T.log_evaluation(
        mc,
        "cookie_tiny",
        None,
        ref,
        {"crime.ridge_kfold.R2": 0.7, "x.y.MAE": math.nan},
        params={"p": 1},
        artifacts_dir=tmp / "rep",
        primary_metric="crime.ridge_kfold.R2",
    )
    run = mc.get_run(eid)
    assert run.data.tags["cookie.kind"] == "evaluation" and run.data.metrics == {"crime.ridge_kfold.R2": 0.7}
    assert run.info.experiment_id == mc.get_experiment_by_name("cookie_tiny").experiment_id
    assert [a.path for a in mc.list_artifacts(eid, "report")] == ["report/report.md"]
    assert T.version_score(mc, ref, "crime.ridge_kfold.R2") == 0.7
    assert mc.get_run(rid).data.metrics["eval.crime.ridge_kfold.R2"] == 0.7
    tags = mc.get_model_version("cookie_tiny", "1").tags
    assert tags["eval.run_id"] == eid and tags["eval.primary_metric"] == "crime.ridge_kfold.R2"


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture()
def active_store(store):
    """``store`` as the process's MLflow store, the way training sets it (``mlflow.set_tracking_uri``): the
    registry helpers use the default client, which a URI set by an earlier test would otherwise win over."""
    import mlflow

    mc, rid, tmp = store
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield store
    mlflow.set_tracking_uri(before[0])
    mlflow.set_registry_uri(before[1])


def test_abandoned_versions_are_those_whose_job_is_gone(active_store):
    """What a plain rerun removes: unfinished versions (no alias, still ``registering``) whose job is gone; an
    unfinished version of a live job, of another host, a finished one and an aliased one stay."""
    import os
    import socket

    mc, _, tmp = active_store
    exp = T.ensure_experiment(mc, "cookie_tiny", None)
    here, dead = socket.gethostname(), str(_dead_pid())

    def version(tags: dict[str, str], status: str = "RUNNING") -> str:
        run = mc.create_run(exp)
        if status != "RUNNING":
            mc.set_terminated(run.info.run_id, status)
        mv = mc.create_model_version(
            "cookie_tiny",
            f"runs:/{run.info.run_id}/model",
            run_id=run.info.run_id,
            tags={"run_id": run.info.run_id, **tags},
        )
        return mv.version

    reg = {T.STATE_TAG: T.REGISTERING}
    killed = version({**reg, T.HOST_TAG: here, T.PID_TAG: dead})
    failed = version({**reg, T.HOST_TAG: "elsewhere", T.PID_TAG: "1"}, status="FAILED")
    live = version({**reg, T.HOST_TAG: here, T.PID_TAG: str(os.getpid())})
    remote = version({**reg, T.HOST_TAG: "elsewhere", T.PID_TAG: dead})
    ready = version({T.STATE_TAG: T.READY, T.HOST_TAG: here, T.PID_TAG: dead})
    aliased = version({**reg, T.HOST_TAG: here, T.PID_TAG: dead})
    mc.set_registered_model_alias("cookie_tiny", "champion", aliased)

    gone, notes = T.abandoned_versions("cookie_tiny", run_id="a-new-run")
    assert [g.version for g in gone] == [int(killed), int(failed)]
    assert "is gone" in gone[0].why and "FAILED" in gone[1].why
    assert len(notes) == 2 and f"version {live} " in notes[0] and f"version {remote} " in notes[1]
    assert int(ready) not in [g.version for g in gone]
    # a resumed run removes its own earlier version whatever its tags (a run registers exactly one version)
    owner = mc.get_model_version("cookie_tiny", ready).tags["run_id"]
    mine, _ = T.abandoned_versions("cookie_tiny", run_id=owner)
    assert [(g.version, g.why) for g in mine if g.run_id == owner] == [(int(ready), f"run {owner} is being resumed")]
    tags = T.registering_tags()
    assert tags[T.STATE_TAG] == T.REGISTERING and tags[T.PID_TAG] == str(os.getpid())


def test_no_abandoned_versions_of_a_model_not_registered_yet(active_store):
    assert T.abandoned_versions("cookie_not_yet", run_id="r") == ([], [])
