"""The protocols on small synthetic data: each against a hand-written copy of the published procedure,
plus the properties that matter (fold order, clipping, blocks kept whole, no selection on test rows,
determinism)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import KFold, train_test_split

from cookie.evaluation import protocols as P


@pytest.fixture(scope="module")
def reg_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6))
    y = np.maximum(X @ rng.normal(size=6) * 10 + 20 + rng.normal(scale=5, size=120), 0)
    return X, y


def _mgfn_reference(X, y, n_splits):
    """MGFN tasks.py, written out: KFold without shuffle, Ridge(1), concatenate, clip at 0."""
    preds, truths = [], []
    for tr, te in KFold(n_splits=n_splits).split(X):
        preds.append(Ridge(alpha=1).fit(X[tr], y[tr]).predict(X[te]))
        truths.append(y[te])
    p, t = np.concatenate(preds), np.concatenate(truths)
    p[p < 0] = 0
    return mean_absolute_error(t, p), np.sqrt(mean_squared_error(t, p)), r2_score(t, p), p


@pytest.mark.parametrize("n_splits", [5, 10])
def test_ridge_kfold_equals_published_procedure(reg_data, n_splits):
    X, y = reg_data
    res = P.ridge_kfold(X, y, n_splits=n_splits)
    mae, rmse, r2, p = _mgfn_reference(X, y, n_splits)
    assert res.mean == pytest.approx({"MAE": mae, "RMSE": rmse, "R2": r2}, rel=1e-12)
    assert res.std == {"MAE": None, "RMSE": None, "R2": None}
    np.testing.assert_allclose(res.predictions, p)  # unshuffled folds: concatenation is row order
    assert res.protocol == f"ridge-kfold{n_splits}"


def test_ridge_kfold_folds_are_contiguous_and_predictions_clipped(reg_data):
    X, y = reg_data
    res = P.ridge_kfold(X, y - 25.0, clip_min=0.0)  # shifted target: some raw predictions are negative
    assert np.all(np.diff(res.extra["fold"]) >= 0)
    assert np.bincount(res.extra["fold"]).tolist() == [24] * 5
    assert res.predictions.min() == 0.0
    raw = P.ridge_kfold(X, y - 25.0, clip_min=None)
    assert raw.predictions.min() < 0.0


def test_ridge_kfold_accepts_column_label_and_rejects_nan(reg_data):
    X, y = reg_data
    assert P.ridge_kfold(X, y[:, None])["R2"] == pytest.approx(P.ridge_kfold(X, y)["R2"])
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError):
        P.ridge_kfold(Xn, y)


def test_ridge_kfold_repeated(reg_data):
    X, y = reg_data
    res = P.ridge_kfold_repeated(X, y, seeds=range(1, 11))
    assert res.n_runs == 10
    r2s = [r["R2"] for r in res.runs]
    assert res["R2"] == pytest.approx(np.mean(r2s))
    assert res.std["R2"] == pytest.approx(np.std(r2s))
    assert res.std["R2"] > 0
    # seed 3 equals a hand-written shuffled KFold
    p = np.empty_like(y)
    for tr, te in KFold(5, shuffle=True, random_state=3).split(X):
        p[te] = Ridge(alpha=1).fit(X[tr], y[tr]).predict(X[te])
    assert res.runs[2]["R2"] == pytest.approx(r2_score(y, np.maximum(p, 0)))
    assert res.extra["predictions_per_seed"].shape == (10, len(y))


def test_grid_blocks_hand_case():
    coords = [[0.0, 0.0], [0.5, 0.5], [1.5, 0.2], [0.2, 1.7]]
    # cells (0,0), (0,0), (1,0), (0,1) -> sorted unique (0,0)=0, (0,1)=1, (1,0)=2
    assert P.grid_blocks(coords, cell_size=1.0).tolist() == [0, 0, 2, 1]
    # 2 bins per axis over [0, 1.5] x [0, 1.7]
    assert P.grid_blocks(coords, n_bins=2).tolist() == [0, 0, 2, 1]
    with pytest.raises(ValueError):
        P.grid_blocks(coords)


@pytest.mark.parametrize("seeds", [None, range(1, 4)])
def test_spatial_block_cv_keeps_blocks_whole(reg_data, seeds):
    X, y = reg_data
    rng = np.random.default_rng(1)
    coords = rng.uniform(0, 10, size=(len(y), 2))
    blocks = P.grid_blocks(coords, cell_size=2.5)  # 16 blocks
    res = P.spatial_block_cv(X, y, blocks, n_splits=5, seeds=seeds)
    for fold in res.extra["fold_per_seed"]:
        for b in np.unique(blocks):
            assert len(np.unique(fold[blocks == b])) == 1
        assert sorted(np.unique(fold)) == [0, 1, 2, 3, 4]
    assert res.n_runs == (1 if seeds is None else 3)
    assert np.isfinite(res["R2"])
    rf = P.spatial_block_cv(X, y, blocks, n_splits=4, model="rf", n_estimators=10, seeds=[1])
    assert rf.protocol == "rf-spatial-block4-x1"
    with pytest.raises(ValueError):
        P.spatial_block_cv(X, y, np.zeros(len(y)), n_splits=5)


def test_kmeans_clustering_recovers_blobs():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 30)
    centres = np.array([[0, 0], [20, 0], [0, 20]], dtype=float)
    X = centres[labels] + rng.normal(size=(90, 2))
    res = P.kmeans_clustering(X, labels, n_clusters=3)
    assert res.mean == pytest.approx({"NMI": 1.0, "ARI": 1.0})
    assert res.params["random_state"] == 3 and res.params["n_init"] == 10
    rep = P.kmeans_clustering_repeated(X, labels, n_clusters=3, seeds=range(3))
    assert rep.n_runs == 3 and rep["NMI"] == pytest.approx(1.0)


def test_rf_split_equals_regiondcl_procedure(reg_data):
    X, y = reg_data
    res = P.rf_split(X, y, seeds=[1, 2, 3], n_estimators=20, n_jobs=2)
    # seed 2 written out as in RegionDCL's evaluator
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=2)
    p = RandomForestRegressor(n_estimators=20, random_state=2).fit(Xtr, ytr).predict(Xte)
    assert res.runs[1]["R2"] == pytest.approx(r2_score(yte, p))
    assert res.runs[1]["MAE"] == pytest.approx(mean_absolute_error(yte, p))
    assert res.extra["test_mask"].sum(axis=1).tolist() == [24, 24, 24]
    assert res["R2"] == pytest.approx(np.mean([r["R2"] for r in res.runs]))
    assert res.std["R2"] == pytest.approx(np.std([r["R2"] for r in res.runs]))
    assert res.predictions.shape == (len(y),)


@pytest.fixture(scope="module")
def share_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8)).astype(np.float32)
    logits = X @ rng.normal(size=(8, 4))
    Y = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return X, Y


LU_KW = {"seeds": [1, 2], "epochs": (4, 6), "hidden": 32}


def test_landuse_mlp_is_deterministic_and_learns(share_data):
    torch = pytest.importorskip("torch")
    X, Y = share_data
    state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    a = P.landuse_mlp(X, Y, **LU_KW)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    assert torch.get_num_threads() == threads  # thread setting restored
    b = P.landuse_mlp(X, Y, **LU_KW)
    assert a.mean == b.mean and [r["best_epoch"] for r in a.runs] == [r["best_epoch"] for r in b.runs]
    assert a.n_runs == 4 and [(r["seed"], r["epochs"]) for r in a.runs] == [(1, 4), (1, 6), (2, 4), (2, 6)]
    assert set(a.mean) == {"L1", "KL", "cosine"} and a.std["KL"] is not None
    # better than predicting the uniform distribution
    from cookie.evaluation.metrics import kl_divergence

    uniform = kl_divergence(Y, np.full_like(Y, 0.25))
    assert a["KL"] < uniform
    # RegionDCL's split: 20 % test, then 20 % of the rest for validation -> 60 test rows of 300
    tested = ~np.isnan(a.extra["predictions_per_run"][:, :, 0])
    assert tested.sum(axis=1).tolist() == [60, 60, 60, 60]


def test_landuse_mlp_seeds_in_worker_processes_give_the_same_figures(share_data):
    """n_jobs only changes speed: every run, its chosen epoch and every test prediction are the same to the bit."""
    pytest.importorskip("torch")
    X, Y = share_data
    parts = {"first": np.arange(4), "all": np.arange(8)}
    kw = {**LU_KW, "seeds": [1, 2, 3]}
    for extra in ({}, {"parts": parts}):
        one = P.landuse_mlp(X, Y, **kw, **extra)
        two = P.landuse_mlp(X, Y, **kw, **extra, n_jobs=2)
        assert two.runs == one.runs and two.mean == one.mean and two.params == one.params
        np.testing.assert_array_equal(two.extra["predictions_per_run"], one.extra["predictions_per_run"])
        np.testing.assert_array_equal(two.predictions, one.predictions)


def test_landuse_mlp_never_selects_on_test(share_data):
    pytest.importorskip("torch")
    X, Y = share_data
    base = P.landuse_mlp(X, Y, **LU_KW)
    # scramble the labels of every row that is a test row for the seed: training and epoch choice must not move
    for i, s in enumerate(LU_KW["seeds"]):
        _, te = train_test_split(np.arange(len(Y)), test_size=0.2, random_state=s)
        Y2s = Y.copy()
        Y2s[te] = Y[te][:, ::-1]
        r = P.landuse_mlp(X, Y2s, seeds=[s], epochs=LU_KW["epochs"], hidden=LU_KW["hidden"])
        for r_new, r_old in zip(r.runs, base.runs[2 * i : 2 * i + 2], strict=True):
            assert r_new["best_epoch"] == r_old["best_epoch"]
            assert r_new["val_KL"] == pytest.approx(r_old["val_KL"], abs=0)


def test_landuse_mlp_fresh_models(share_data):
    pytest.importorskip("torch")
    X, Y = share_data
    cont = P.landuse_mlp(X, Y, seeds=[1], epochs=(3, 3), hidden=32)
    fresh = P.landuse_mlp(X, Y, seeds=[1], epochs=(3, 3), hidden=32, continue_training=False)
    assert cont.runs[0]["KL"] == fresh.runs[0]["KL"]
    assert fresh.runs[1]["KL"] == fresh.runs[0]["KL"]  # same seed, same budget, fresh model
    assert cont.runs[1]["KL"] != cont.runs[0]["KL"]  # second budget continues training


def test_dominant_class_seeds_in_worker_processes_give_the_same_figures(share_data):
    X, Y = share_data
    parts = {"first": np.arange(4), "all": np.arange(8)}
    for extra in ({}, {"parts": parts}):
        one = P.dominant_class(X, Y, seeds=[1, 2, 3], **extra)
        two = P.dominant_class(X, Y, seeds=[1, 2, 3], **extra, n_jobs=2)
        assert two.runs == one.runs and two.mean == one.mean and two.params == one.params
        np.testing.assert_array_equal(two.extra["predictions_per_seed"], one.extra["predictions_per_seed"])
    assert sum(one.params["part_votes"].values()) == 15  # 3 seeds x 5 folds, gathered from the workers


def test_dominant_class(share_data):
    X, Y = share_data
    Y = Y.copy()
    Y[:3] = 0.0  # regions without land use
    res = P.dominant_class(X, Y, n_splits=5, seeds=[1, 2, 3])
    assert res.n_runs == 3
    assert res["accuracy"] > 0.7 and 0 < res["macro_F1"] <= 1
    assert res.predictions[:3].tolist() == [-1, -1, -1]
    assert res.extra["y"][:3].tolist() == [-1, -1, -1]
    # stratified: every class of the kept rows appears in the predictions of each seed
    assert res.params["n_classes"] == len(np.unique(np.argmax(Y[3:], axis=1)))
    with pytest.raises(ValueError):
        Yr = np.zeros((20, 2))
        Yr[:, 0] = 1
        Yr[:2] = [0, 1]  # a class with 2 rows cannot make 5 stratified folds
        P.dominant_class(np.random.default_rng(0).normal(size=(20, 3)), Yr)


def test_to_records(reg_data):
    X, y = reg_data
    recs = P.ridge_kfold(X, y).to_records("toy", "raw", "y")
    assert [r["metric"] for r in recs] == ["MAE", "RMSE", "R2"]
    assert all(r["std"] is None and r["protocol"] == "ridge-kfold5" for r in recs)
    d = P.rf_split(X, y, seeds=[1, 2], n_estimators=5).as_dict()
    assert d["n_runs"] == 2 and "R2_std" in d
