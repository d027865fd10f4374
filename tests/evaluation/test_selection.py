"""Choosing inside training rows only."""

from __future__ import annotations

import numpy as np
import pytest

from cookie.evaluation.selection import select_ridge


def test_select_ridge_never_uses_test_rows():
    """The choice of a fold depends only on its training rows: changing the test-fold targets leaves
    every choice unchanged."""
    rng = np.random.default_rng(0)
    n = 100
    good = rng.normal(size=(n, 3))
    bad = rng.normal(size=(n, 3))
    y = 50 + 10 * good[:, 0] + rng.normal(size=n)
    sel = select_ridge({"bad": bad, "good": good}, [y])
    assert sel.choices == ["good"] * 5 and sel.unanimous and sel.winner == "good" and sel.nested["R2_0"] > 0.9
    y2 = y.copy()
    y2[:20] = rng.normal(size=20) * 1000 + 500  # scramble fold 0's test targets
    sel2 = select_ridge({"bad": bad, "good": good}, [y2])
    assert sel2.choices[0] == sel.choices[0]
    assert sel2.inner_scores[0] == pytest.approx(sel.inner_scores[0])


def _two_parts(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Columns 0-1 carry the target, columns 2-21 are noise: ``good`` beats ``embedding`` (all columns)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 22))
    y = 50 + 10 * X[:, 0] - 5 * X[:, 1] + rng.normal(size=n)
    return X, y, {"embedding": np.arange(22), "good": np.array([0, 1])}


def test_part_choice_chooses_on_the_rows_it_is_fitted_on():
    from sklearn.linear_model import Ridge

    from cookie.evaluation.selection import PartChoice

    X, y, parts = _two_parts(60)
    m = PartChoice(lambda: Ridge(alpha=1.0), parts).fit(X, y)
    assert m.chosen_ == "good" and m.scores_["good"] > m.scores_["embedding"]
    assert m.predict(X).shape == (60,)
    # one candidate: no inner split, that candidate
    one = PartChoice(lambda: Ridge(alpha=1.0), {"embedding": np.arange(22)}).fit(X, y)
    assert one.chosen_ == "embedding" and one.scores_ == {}
    # groups: the inner folds keep a group whole (the choice still finds the informative columns)
    grouped = PartChoice(lambda: Ridge(alpha=1.0), parts).fit(X, y, groups=np.arange(60) // 6)
    assert grouped.chosen_ == "good"
    # ties go to the first candidate
    same = PartChoice(lambda: Ridge(alpha=1.0), {"a": np.array([0, 1]), "b": np.array([0, 1])}).fit(X, y)
    assert same.chosen_ == "a"
    with pytest.raises(ValueError, match="at least one candidate"):
        PartChoice(lambda: Ridge(), {})


@pytest.mark.parametrize("protocol", ["ridge_kfold", "ridge_kfold_repeated", "rf_split", "spatial_block"])
def test_supervised_protocols_choose_parts_inside_training_rows(protocol):
    """With candidate parts every outer split votes, the votes are reported, and the result is the one that
    fixing the voted part gives (here every split finds the informative part)."""
    from cookie.evaluation.runner import run_protocol

    X, y, parts = _two_parts()
    opts: dict = {"seeds": 2} if protocol in ("ridge_kfold_repeated", "rf_split", "spatial_block") else {}
    if protocol == "spatial_block":
        opts["n_bins"] = 4
    if protocol == "rf_split":
        opts["n_estimators"] = 20
    cents = np.random.default_rng(1).uniform(size=(len(y), 2))
    chosen = run_protocol(protocol, X, y, opts, cents, parts)
    n_votes = sum(chosen.params["part_votes"].values())
    assert chosen.params["parts"] == ["embedding", "good"] and chosen.params["part_votes"]["good"] == n_votes > 0
    fixed = run_protocol(protocol, X[:, :2], y, opts, cents)
    whole = run_protocol(protocol, X, y, opts, cents)
    assert chosen.mean["R2"] == pytest.approx(fixed.mean["R2"]) and chosen.mean["R2"] > whole.mean["R2"]
    assert "parts" not in whole.params


def test_classification_and_land_use_choose_parts_too():
    from cookie.evaluation import protocols as P

    rng = np.random.default_rng(0)
    n = 150
    X = rng.normal(size=(n, 12))
    logits = np.stack([2 * X[:, 0], 2 * X[:, 1], np.zeros(n)], axis=1)
    shares = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    parts = {"embedding": np.arange(12), "good": np.array([0, 1])}
    dom = P.dominant_class(X, shares, seeds=[1], parts=parts)
    assert sum(dom.params["part_votes"].values()) == 5
    lu = P.landuse_mlp(X, shares, seeds=[1, 2], epochs=[5], parts=parts)
    assert sum(lu.params["part_votes"].values()) == 2 and {r["part"] for r in lu.runs} <= set(parts)
    # each run is the candidate's own run with the lower validation KL
    for name in parts:
        alone = P.landuse_mlp(X[:, parts[name]], shares, seeds=[1, 2], epochs=[5])
        for run, own in zip(lu.runs, alone.runs):
            if run["part"] == name:
                assert run["L1"] == pytest.approx(own["L1"])
    # clustering has no training rows: every column, no votes
    from cookie.evaluation.runner import run_protocol

    km = run_protocol("kmeans", X, np.argmax(shares, axis=1), {"n_clusters": 3}, None, parts)
    assert "parts" not in km.params
