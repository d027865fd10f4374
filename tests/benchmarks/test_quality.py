"""Preprocessing, spatial context and selection-inside-training-rows used by the quality benchmark,
and the ``evaluation:`` config section."""

from __future__ import annotations

import json

import numpy as np
import pytest

import quality as Q


def test_adjacency_from_polygons_matches_hrep_neighbours(shared_data):
    """Polygons that intersect = HREP's neighbor.npy (as PROVENANCE.md says), from the regions' WKB."""
    import shapely

    from datasets import load_manhattan180

    d = load_manhattan180(shared_data / "nyc-manhattan-180")
    wkb = [shapely.to_wkb(shapely.geometry.shape(g)) for g in d.regions()]
    A = Q.adjacency_from_wkb(wkb)
    nb = json.loads((d.root / "converted" / "neighbors.json").read_text())
    ref = np.zeros_like(A)
    for i, js in nb.items():
        ref[int(i), js] = True
    assert A.sum() == 1016 and np.array_equal(A, ref) and np.array_equal(A, A.T)


def test_neighbour_mean_respects_masks():
    A = np.array([[0, 1, 1, 0], [1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=bool)
    X = np.array([[1.0], [3.0], [5.0], [7.0]])
    mask = np.array([True, True, False, True])
    out = Q.neighbour_mean(X, A, mask)
    # row 0: only neighbour 1 has the view; row 2: neighbour 0; row 3: no neighbour -> itself
    assert out[:, 0].tolist() == [3.0, 1.0, 1.0, 7.0]
    ctx = Q.with_context({"v": X}, {"v": mask}, [A])
    assert ctx["v"].shape == (4, 2)


def test_preprocess_views_linear_undoes_etl_log():
    counts = np.array([[0.0, 10.0, 100.0], [5.0, 0.0, 1.0], [2.0, 3.0, 4.0]])
    cols = ["outflow", "out_00000", "in_00000"]
    stored = counts.copy()
    stored[:, 1:] = np.log1p(counts[:, 1:])  # as the ETL stores OD rows / columns
    m = np.ones(3, bool)
    lin = Q.preprocess_views({"mob": stored}, {"mob": m}, {"mob": cols}, {"mob": "linear"})["mob"]
    log = Q.preprocess_views({"mob": stored}, {"mob": m}, {"mob": cols}, {"mob": "log1p"})["mob"]
    z = lambda a: (a - a.mean(0)) / a.std(0)  # noqa: E731
    assert np.allclose(lin, z(counts)) and np.allclose(log, z(np.log1p(counts)))


def test_select_ridge_never_uses_test_rows():
    """The choice of a fold depends only on its training rows: changing the test-fold targets leaves
    every choice unchanged."""
    rng = np.random.default_rng(0)
    n = 100
    good = rng.normal(size=(n, 3))
    bad = rng.normal(size=(n, 3))
    y = 50 + 10 * good[:, 0] + rng.normal(size=n)
    sel = Q.select_ridge({"bad": bad, "good": good}, [y])
    assert sel.choices == ["good"] * 5 and sel.unanimous and sel.winner == "good" and sel.nested["R2_0"] > 0.9
    y2 = y.copy()
    y2[:20] = rng.normal(size=20) * 1000 + 500  # scramble fold 0's test targets
    sel2 = Q.select_ridge({"bad": bad, "good": good}, [y2])
    assert sel2.choices[0] == sel.choices[0]
    assert sel2.inner_scores[0] == pytest.approx(sel.inner_scores[0])


def test_evaluation_config_validation():
    from cookie.config.evaluation import EvaluationConfig

    ok = EvaluationConfig.model_validate({
        "primary_metric": "crime.ridge_kfold.R2",
        "tasks": [{"name": "crime", "label": "crime", "columns": ["crime_count"], "protocol": "ridge_kfold",
                   "options": {"n_splits": 5}}],
    })
    assert ok.direction() == "max" and ok.tasks[0].table == "label_crime"
    bad = [
        {"primary_metric": "crime.R2"},  # not task.protocol.metric
        {"primary_metric": "x.ridge_kfold.R2",
         "tasks": [{"name": "crime", "label": "crime", "columns": ["c"], "protocol": "ridge_kfold"}]},
        {"tasks": [{"name": "c", "label": "c", "columns": ["c"], "protocol": "ridge_kfold", "options": {"seeds": 3}}]},
        {"tasks": [{"name": "c", "label": "c", "columns": ["a", "b"], "protocol": "rf_split"}]},
        {"tasks": [{"name": "c", "label": "c", "columns": ["c"], "protocol": "spatial_block"}]},  # needs blocks
        {"tasks": [{"name": "c", "label": "c", "columns": ["c"], "protocol": "ridge_kfold"}] * 2},  # duplicate
        {"primary_metric": "c.ridge_kfold.weird"},
    ]
    for raw in bad:
        with pytest.raises(ValueError):
            EvaluationConfig.model_validate(raw)
    assert EvaluationConfig.model_validate({"primary_metric": "c.ridge_kfold.RMSE"}).direction() == "min"


def test_project_configs_have_valid_evaluation_sections():
    from pathlib import Path

    from cookie.config import load_config

    repo = Path(__file__).resolve().parents[2]
    for name in ("helsinki", "manhattan180", "nyc_tracts"):
        cfg = load_config(repo / "conf" / f"{name}.yaml", base_dir=str(repo))
        ev = cfg.evaluation
        assert ev.tasks and ev.primary_metric and ev.direction() == "max"
        labels = {v.name for v in cfg.labels}
        assert {t.label for t in ev.tasks} <= labels
