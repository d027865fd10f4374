"""The evaluate and promote jobs end to end on a tiny warehouse and a real MLflow store in tmp_path.

No mocks: the label, regions and embeddings tables are real Delta tables (written with ``deltalake``),
the registry is a real sqlite MLflow store with registered pyfunc models, and the verbs run through the
command line: in-process through :func:`cookie.cli.main` (the code of ``python -m cookie``), and as
``python jobs/<verb>.py`` / ``python -m cookie <verb>`` subprocesses for the exit codes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
N = 60  # regions "0".."59" on a 6 x 10 grid of unit squares


def _cli(verb: str, *args: str) -> int:
    """``python -m cookie <verb> <args>`` in this process; returns the exit code."""
    from cookie.cli import main

    return main([verb, *map(str, args)])


def _square_wkb(i: int) -> bytes:
    import shapely

    x, y = i % 6, i // 6
    return shapely.to_wkb(shapely.box(x * 0.01, y * 0.01, (x + 1) * 0.01, (y + 1) * 0.01))


def _latent() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(size=(N, 3))


def _embedding(quality: float, seed: int) -> np.ndarray:
    """8-d embedding: the latent with noise of scale ``quality`` (small = good), plus noise columns."""
    rng = np.random.default_rng(seed)
    z = _latent()
    return np.hstack([z + quality * rng.normal(size=z.shape), rng.normal(size=(N, 5))]).astype(np.float32)


@pytest.fixture()
def world(tmp_path, monkeypatch):
    """Config + warehouse + MLflow store; returns a dict with paths and a helper to register versions."""
    from deltalake import write_deltalake

    wh = tmp_path / "wh" / "tiny"
    z = _latent()
    ids = [str(i) for i in range(N)]
    rng = np.random.default_rng(1)
    order = rng.permutation(N)  # tables are written in a scrambled row order on purpose

    regions = pd.DataFrame(
        {
            "region_id": ids,
            "area_km2": 1.0,
            "centroid_lon": [(i % 6 + 0.5) * 0.01 for i in range(N)],
            "centroid_lat": [(i // 6 + 0.5) * 0.01 for i in range(N)],
            "geometry_wkb": [_square_wkb(i) for i in range(N)],
        }
    ).iloc[order]
    write_deltalake(str(wh / "regions"), regions)
    crime = np.maximum(0, 100 + 30 * z[:, 0] - 20 * z[:, 1] + 5 * rng.normal(size=N))
    present = np.ones(N, dtype=bool)
    present[[7, 33]] = False  # two regions without the label
    write_deltalake(
        str(wh / "label_crime"), pd.DataFrame({"region_id": ids, "crime_count": crime, "_present": present}).iloc[order]
    )
    district = (z[:, 2] > 0).astype(int) + 2 * (z[:, 0] > 0).astype(int)
    write_deltalake(
        str(wh / "label_district"),
        pd.DataFrame({"region_id": ids, "community_district": district.astype(float), "_present": True}),
    )
    logits = np.stack([z[:, 0], z[:, 1], -z[:, 0] - z[:, 1]], axis=1)
    shares = np.exp(logits) / np.exp(logits).sum(1, keepdims=True) * 0.8  # rows sum to 0.8: normalised by the task
    shares[5] = 0.0  # a region without land use: dropped by normalise_rows
    write_deltalake(
        str(wh / "label_landuse"),
        pd.DataFrame(
            {
                "region_id": ids,
                "share_a": shares[:, 0],
                "share_b": shares[:, 1],
                "share_c": shares[:, 2],
                "share_total": shares.sum(1),
                "_present": shares.sum(1) > 0,
            }
        ),
    )
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(f"""
name: tiny
sources:
  s: {{kind: array, path: unused.npy}}
regions: {{kind: file, path: unused.geojson, id_column: region_id}}
views:
  - {{name: a, kind: vectors, source: s}}
output: {{warehouse: {tmp_path / "wh"}}}
evaluation:
  primary_metric: crime.ridge_kfold.R2
  report_dir: {tmp_path / "reports"}
  tasks:
    - {{name: crime, label: crime, columns: [crime_count], protocol: ridge_kfold, options: {{n_splits: 5}}}}
    - {{name: crime, label: crime, columns: [crime_count], protocol: ridge_kfold_repeated, options: {{n_splits: 5, seeds: 3}}}}
    - {{name: crime, label: crime, columns: [crime_count], protocol: spatial_block, options: {{n_splits: 3, n_bins: [3, 3], seeds: 2}}}}
    - {{name: district, label: district, columns: [community_district], protocol: kmeans, options: {{n_clusters: 4, random_state: 3}}}}
    - {{name: landuse, label: landuse, columns: ["share_*"], exclude_columns: [share_total], normalise_rows: true,
       protocol: landuse_mlp, options: {{seeds: 1, epochs: [5]}}}}
    - {{name: landuse, label: landuse, columns: ["share_*"], exclude_columns: [share_total], protocol: dominant_class,
       options: {{n_splits: 3, seeds: 1}}}}
""")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # default artefact root ./mlruns lands in tmp_path

    def register(quality: float, seed: int, alias: str | None = "challenger") -> int:
        """Log + register a pyfunc version, write its embeddings rows, optionally move ``alias`` to it."""
        import mlflow
        from mlflow.tracking import MlflowClient

        class Identity(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input, params=None):
                return model_input

        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        mlflow.set_experiment("cookie-tiny")
        with mlflow.start_run() as run:
            mlflow.log_param("quality", quality)
            info = mlflow.pyfunc.log_model(
                name="model", python_model=Identity(), pip_requirements=[], registered_model_name="cookie_tiny"
            )
        version = int(info.registered_model_version)
        emb = _embedding(quality, seed)
        rows = pd.DataFrame(
            {
                "region_id": ids,
                "model_name": "cookie_tiny",
                "model_version": np.int32(version),
                "run_id": run.info.run_id,
                "created_at": pd.Timestamp.now(tz="UTC"),
                "embedding": list(emb),
                "unique_a": list(emb[:, :4]),
                "shared_a__b": list(emb[:, 4:]),
            }
        ).iloc[order]
        write_deltalake(str(wh / "embeddings"), rows, mode="append")
        if alias:
            MlflowClient(uri, uri).set_registered_model_alias("cookie_tiny", alias, str(version))
        return version

    return {"cfg": cfg_path, "uri": uri, "tmp": tmp_path, "register": register, "crime": crime, "present": present}


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_evaluate_job_end_to_end(world, capsys):
    from cookie.evaluation import protocols as P

    v = world["register"](quality=0.3, seed=10)
    assert _cli("evaluate", "--config", world["cfg"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.index("{\n") :])
    assert summary["version"] == v and summary["report"].endswith("report.md")
    assert summary["map"] == str(Path(summary["report"]).parent / "map.html") and Path(summary["map"]).is_file()
    client = _client(world["uri"])

    # metrics match the protocol run directly on arrays in numeric id order, without the absent labels
    keep = world["present"]
    X = _embedding(0.3, 10)[keep]
    direct = P.ridge_kfold(X, world["crime"][keep], n_splits=5)
    mv = client.get_model_version("cookie_tiny", str(v))
    assert float(mv.tags["eval.crime.ridge_kfold.R2"]) == pytest.approx(direct["R2"], abs=1e-9)
    assert float(mv.tags["eval.crime.ridge_kfold.MAE"]) == pytest.approx(direct["MAE"], abs=1e-9)
    assert direct["R2"] > 0.5
    assert "eval.crime.ridge_kfold_repeated.R2_std" in mv.tags
    assert "eval.district.kmeans.NMI" in mv.tags and "eval.crime.spatial_block.R2" in mv.tags
    assert {
        "eval.landuse.landuse_mlp.KL",
        "eval.landuse.landuse_mlp.cosine",
        "eval.landuse.dominant_class.accuracy",
    } <= set(mv.tags)
    assert float(mv.tags["eval.landuse.landuse_mlp.cosine"]) > 0.5

    # the evaluation run: tagged with the model, carries every metric and the report artefacts
    eval_run = client.get_run(mv.tags["eval.run_id"])
    assert eval_run.data.tags["cookie.model_name"] == "cookie_tiny"
    assert eval_run.data.tags["cookie.model_version"] == str(v)
    assert eval_run.data.metrics["crime.ridge_kfold.R2"] == pytest.approx(direct["R2"], abs=1e-9)
    arts = {a.path for a in client.list_artifacts(eval_run.info.run_id, "report")}
    assert {
        "report/report.md",
        "report/metrics.json",
        "report/map_crime.ridge_kfold.png",
        "report/map_embedding_pca_rgb.png",
        "report/map.html",
    } <= arts
    # ... and the training run got them too
    train_run = client.get_run(mv.run_id)
    assert train_run.data.metrics["eval.crime.ridge_kfold.R2"] == pytest.approx(direct["R2"], abs=1e-9)


def test_report_and_maps_written(world):
    from cookie.config import load_config
    from cookie.evaluation.pipeline import evaluate_version

    world["register"](quality=0.3, seed=10)
    cfg = load_config(world["cfg"])
    out = evaluate_version(
        cfg, version=1, mlflow_client=_client(world["uri"]), log=False, report_dir=world["tmp"] / "rep"
    )
    files = sorted(p.name for p in (world["tmp"] / "rep").iterdir())
    assert files == [
        "map.html",
        "map_crime.ridge_kfold.png",
        "map_crime.ridge_kfold_repeated.png",
        "map_crime.spatial_block.png",
        "map_embedding_pca_rgb.png",
        "metrics.json",
        "report.md",
    ]
    for f in files:
        if f.endswith(".png"):
            data = (world["tmp"] / "rep" / f).read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    md = (world["tmp"] / "rep" / "report.md").read_text()
    assert "| crime |" in md and "ridge_kfold (ridge-kfold5)" in md and "![" in md
    assert "`crime.ridge_kfold.R2`" in md and "[map.html](map.html)" in md
    assert out.files["map.html"] == world["tmp"] / "rep" / "map.html"
    page = (world["tmp"] / "rep" / "map.html").read_text()
    assert page.count("<path data-i=") == N  # every region has a geometry
    for layer in ("embedding PC1-3 (RGB)", "crime.ridge_kfold: prediction", "crime.spatial_block: error"):
        assert json.dumps(layer)[1:-1] in page
    assert json.loads((world["tmp"] / "rep" / "metrics.json").read_text())["metrics"] == pytest.approx(out.metrics)
    # one block of the embedding can be evaluated alone
    cfg2 = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"embedding_column": "unique_a"})})
    out2 = evaluate_version(
        cfg2, version=1, mlflow_client=_client(world["uri"]), log=False, maps=False, report_dir=world["tmp"] / "rep2"
    )
    assert out2.metrics["crime.ridge_kfold.R2"] != pytest.approx(out.metrics["crime.ridge_kfold.R2"])
    # or a part: every unique_* block side by side (here the one unique block)
    cfg3 = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"embedding_column": "unique"})})
    out3 = evaluate_version(
        cfg3, version=1, mlflow_client=_client(world["uri"]), log=False, maps=False, report_dir=world["tmp"] / "rep3"
    )
    assert out3.metrics == pytest.approx(out2.metrics)
    # or, per outer split inside its training rows, whichever part scores best there
    ev4 = cfg.evaluation.model_copy(update={"choose_parts": ["embedding", "unique", "shared", "unique_a"]})
    out4 = evaluate_version(
        cfg.model_copy(update={"evaluation": ev4}),
        version=1,
        mlflow_client=_client(world["uri"]),
        log=False,
        maps=False,
        report_dir=world["tmp"] / "rep4",
    )
    params = out4.result.outcomes[0].result.params
    assert params["parts"] == ["embedding", "unique", "shared"]  # unique_a repeats unique: left out
    assert sum(params["part_votes"].values()) == 5  # one choice per fold of ridge_kfold(5)
    votes = json.loads((world["tmp"] / "rep4" / "metrics.json").read_text())["part_votes"]
    assert votes["crime.ridge_kfold"] == params["part_votes"] and "district.kmeans" not in votes  # no training rows
    assert "| `crime.ridge_kfold` |" in (world["tmp"] / "rep4" / "report.md").read_text()
    assert json.loads((world["tmp"] / "rep3" / "metrics.json").read_text())["part_votes"] == {}  # no choice made


def _promote(world, *extra: str) -> dict:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert _cli("promote", "--config", world["cfg"], *extra) == 0
    text = buf.getvalue()
    return json.loads(text[text.index("{") : text.rindex("}") + 1])


def test_promote_only_on_real_improvement(world):
    client = _client(world["uri"])

    # 1. no champion: the first evaluated challenger is promoted
    v1 = world["register"](quality=0.5, seed=11)
    assert _cli("evaluate", "--config", world["cfg"], "--no-maps") == 0
    d = _promote(world)
    assert d["promoted"] and d["champion_version"] is None and d["reason"] == "no champion yet"
    assert int(client.get_model_version_by_alias("cookie_tiny", "champion").version) == v1
    s1 = d["challenger_score"]

    # 2. a worse challenger (random embedding): the champion stays
    v2 = world["register"](quality=50.0, seed=12)
    assert _cli("evaluate", "--config", world["cfg"], "--no-maps") == 0
    d = _promote(world)
    assert not d["promoted"] and d["challenger_version"] == v2 and d["champion_version"] == v1
    assert d["challenger_score"] < d["champion_score"] == pytest.approx(s1)
    assert int(client.get_model_version_by_alias("cookie_tiny", "champion").version) == v1
    assert client.get_model_version("cookie_tiny", str(v2)).tags["promotion.decision"] == "kept"

    # 3. the same embedding again (a tie) is no real improvement either
    v3 = world["register"](quality=0.5, seed=11)
    d = _promote(world)  # not evaluated yet: promote evaluates it first
    assert d["challenger_version"] == v3 and d["challenger_score"] == pytest.approx(s1, abs=1e-9)
    assert not d["promoted"]
    assert int(client.get_model_version_by_alias("cookie_tiny", "champion").version) == v1

    # 4. a better challenger moves the champion alias; the decision and both scores are logged
    v4 = world["register"](quality=0.05, seed=13)
    assert _cli("evaluate", "--config", world["cfg"], "--no-maps") == 0
    d = _promote(world)
    assert d["promoted"] and d["challenger_score"] > d["champion_score"]
    assert int(client.get_model_version_by_alias("cookie_tiny", "champion").version) == v4
    run = client.get_run(d["run_id"])
    assert run.data.tags["cookie.decision"] == "promoted"
    assert run.data.metrics["challenger_score"] == pytest.approx(d["challenger_score"])
    assert run.data.metrics["champion_score"] == pytest.approx(s1)

    # 5. promoting again is a no-op: the challenger already is the champion
    d = _promote(world)
    assert not d["promoted"] and "already the champion" in d["reason"]


def test_promote_respects_min_improvement(world):
    client = _client(world["uri"])
    world["register"](quality=0.5, seed=11)
    _promote(world)  # first: promoted (evaluated on the fly)
    v2 = world["register"](quality=0.3, seed=11)  # a little better
    d = _promote(world, "--min-improvement", "0.5", "--dry-run")
    assert not d["promoted"] and "only" in d["reason"] and d["challenger_version"] == v2
    assert int(client.get_model_version_by_alias("cookie_tiny", "champion").version) == 1
    d = _promote(world)
    assert d["promoted"] and int(client.get_model_version_by_alias("cookie_tiny", "champion").version) == v2


def test_decide_rule():
    from cookie.evaluation.promotion import decide

    assert decide(0.7, None, "max") == (True, "no champion yet")
    assert decide(0.7, 0.6, "max")[0] and not decide(0.6, 0.7, "max")[0] and not decide(0.7, 0.7, "max")[0]
    assert decide(50.0, 60.0, "min")[0] and not decide(60.0, 50.0, "min")[0]
    assert not decide(0.705, 0.7, "max", min_improvement=0.01)[0]
    assert not decide(float("nan"), None, "max")[0] and not decide(None, 0.5, "max")[0]
    assert not decide(0.9, float("nan"), "max")[0]  # an unscored champion is not silently replaced


def test_errors_name_the_missing_piece(world, capsys):
    # nothing registered yet: a missing model is exit 4 (EXIT_MISSING) for every verb, with one line
    from cookie.constants import EXIT_MISSING

    assert EXIT_MISSING == 4
    assert _cli("evaluate", "--config", world["cfg"]) == EXIT_MISSING
    err = capsys.readouterr().err
    assert "error: registered model 'cookie_tiny' has no alias 'challenger'" in err
    assert _cli("promote", "--config", world["cfg"]) == EXIT_MISSING
    assert "no alias 'challenger'" in capsys.readouterr().err

    world["register"](quality=0.3, seed=10, alias=None)
    assert _cli("evaluate", "--config", world["cfg"], "--alias", "champion") == EXIT_MISSING
    assert "no alias 'champion'" in capsys.readouterr().err
    assert _cli("evaluate", "--config", world["cfg"], "--version", "7") == EXIT_MISSING
    assert "has no version 7" in capsys.readouterr().err

    # a version whose embeddings were never written: the table has no rows for it
    client = _client(world["uri"])
    run = client.create_run(client.get_experiment_by_name("cookie-tiny").experiment_id)
    v2 = client.create_model_version("cookie_tiny", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    assert int(v2.version) == 2  # registered, but no embeddings rows were written for it
    assert _cli("evaluate", "--config", world["cfg"], "--version", "2") == EXIT_MISSING
    assert "embeddings has no rows for model 'cookie_tiny' version 2" in capsys.readouterr().err

    # a missing label table
    (world["tmp"] / "wh" / "tiny" / "label_district").rename(world["tmp"] / "gone")
    assert _cli("evaluate", "--config", world["cfg"], "--version", "1", "--no-log") == EXIT_MISSING
    assert "no Delta table at" in capsys.readouterr().err


def test_job_scripts_exit_codes(world):
    """The spark-submit entry points and ``python -m cookie`` are the same verbs with the same exit codes."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for argv in ([sys.executable, str(REPO / "jobs" / "evaluate.py")], [sys.executable, "-m", "cookie", "promote"]):
        p = subprocess.run(
            [*argv, "--config", str(world["cfg"])],
            capture_output=True,
            text=True,
            env=env,
            cwd=world["tmp"],
            timeout=300,
        )
        assert p.returncode == 4, p.stderr[-2000:]
        assert p.stderr.strip().splitlines()[-1] == "error: registered model 'cookie_tiny' has no alias 'challenger'"
    p = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "evaluate.py"), "--config", str(world["tmp"] / "nope.yaml")],
        capture_output=True,
        text=True,
        env=env,
        cwd=world["tmp"],
        timeout=300,
    )
    assert p.returncode == 2 and "config file not found" in p.stderr
