"""Choosing a setting without test rows: the candidate is picked inside the *training* rows of every outer
split of a protocol (inner CV / an inner validation split), and the per-split choices (votes) and the nested
estimate are reported. When every split votes for the same candidate, fixing that candidate gives exactly
the nested estimate, so its published-protocol number involved no selection on test rows.

:class:`PartChoice` does the same for the embedding's parts (every block, the shared blocks, ...) inside the
protocols themselves, per outer split, when ``evaluation.choose_parts`` names candidates. ``select_ridge``
and ``select_rf`` are used by ``python -m cookie select`` (:mod:`cookie.evaluation.select`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import is_classifier
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import (
    GroupKFold,
    GroupShuffleSplit,
    KFold,
    ShuffleSplit,
    StratifiedKFold,
    StratifiedShuffleSplit,
    train_test_split,
)

__all__ = ["PartChoice", "Selection", "select_rf", "select_ridge"]


# --------------------------------------------------------------------------------------------------
# choosing the embedding's part inside the rows a model is fitted on
# --------------------------------------------------------------------------------------------------
class PartChoice:
    """A model that first picks, among candidate column sets of ``X`` (the embedding's parts), the one on
    which ``make()`` scores best in an inner split of the rows it is *fitted* on, then fits ``make()`` on
    that part alone. Inside a protocol's outer split it sees training rows only, so the choice never looks
    at test rows, and it is the same for every method (a method without a part simply has fewer candidates).

    The inner split: ``n_inner`` >= 2 folds (``KFold`` shuffled; ``StratifiedKFold`` for a classifier;
    ``GroupKFold`` when ``fit`` gets ``groups``), or ``n_inner=1`` for one ``val_size`` hold-out split of the
    same kinds -- cheaper for random forests and logistic regressions. The score is the model's own
    ``score`` (R2 for a regressor, accuracy for a classifier), averaged over the inner splits; ties go to
    the first candidate. ``chosen_`` and ``scores_`` say what was chosen and why.
    """

    def __init__(
        self,
        make: Callable[[], Any],
        parts: Mapping[str, np.ndarray],
        n_inner: int = 5,
        val_size: float = 0.2,
        random_state: int = 0,
    ) -> None:
        if not parts:
            raise ValueError("PartChoice needs at least one candidate part")
        self.make = make
        self.parts = {k: np.asarray(v, dtype=int) for k, v in parts.items()}
        self.n_inner = n_inner
        self.val_size = val_size
        self.random_state = random_state

    def _splits(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None, classify: bool) -> list[Any]:
        rs, k = self.random_state, self.n_inner
        splitter: Any
        if groups is not None:
            splitter = (
                GroupKFold(n_splits=k) if k > 1 else GroupShuffleSplit(1, test_size=self.val_size, random_state=rs)
            )
            return list(splitter.split(X, y, groups))
        if classify:
            splitter = (
                StratifiedKFold(n_splits=k, shuffle=True, random_state=rs)
                if k > 1
                else StratifiedShuffleSplit(1, test_size=self.val_size, random_state=rs)
            )
        else:
            splitter = (
                KFold(n_splits=k, shuffle=True, random_state=rs)
                if k > 1
                else ShuffleSplit(1, test_size=self.val_size, random_state=rs)
            )
        return list(splitter.split(X, y))

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> PartChoice:
        names = list(self.parts)
        self.scores_: dict[str, float] = {}
        if len(names) == 1:
            self.chosen_ = names[0]
        else:
            splits = self._splits(X, y, groups, is_classifier(self.make()))
            for c in names:
                Xc = X[:, self.parts[c]]
                self.scores_[c] = float(
                    np.mean([self.make().fit(Xc[tr], y[tr]).score(Xc[va], y[va]) for tr, va in splits])
                )
            self.chosen_ = max(names, key=lambda c: self.scores_[c])
        self.model_ = self.make().fit(X[:, self.parts[self.chosen_]], y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        pred: np.ndarray = self.model_.predict(X[:, self.parts[self.chosen_]])
        return pred


# --------------------------------------------------------------------------------------------------
# selection inside training rows
# --------------------------------------------------------------------------------------------------
@dataclass
class Selection:
    """Per outer split: the candidate chosen on the training rows, and the nested test estimate."""

    choices: list[str]
    inner_scores: list[dict[str, float]]
    nested: dict[str, float] = field(default_factory=dict)

    @property
    def votes(self) -> dict[str, int]:
        return dict(Counter(self.choices))

    @property
    def winner(self) -> str:
        """The candidate chosen most often (ties: the first in candidate order among the tied)."""
        counts = Counter(self.choices)
        best = max(counts.values())
        for c in self.inner_scores[0]:
            if counts.get(c, 0) == best:
                return c
        return self.choices[0]

    @property
    def unanimous(self) -> bool:
        return len(set(self.choices)) == 1


def _ridge_oof_r2(
    X: np.ndarray, ys: Sequence[np.ndarray], splits: list[tuple[np.ndarray, np.ndarray]], alpha: float
) -> float:
    scores = []
    for y in ys:
        pred = np.zeros(len(y))
        for tr, te in splits:
            pred[te] = Ridge(alpha=alpha).fit(X[tr], y[tr]).predict(X[te])
        scores.append(r2_score(y, np.maximum(pred, 0.0)))
    return float(np.mean(scores))


def select_ridge(
    candidates: Mapping[str, np.ndarray],
    targets: Sequence[np.ndarray],
    n_splits: int = 5,
    inner_splits: int = 5,
    inner_seeds: Sequence[int] = (0, 1, 2),
    alpha: float = 1.0,
) -> Selection:
    """Choose a candidate per outer fold of the published unshuffled ``KFold(n_splits)`` by inner shuffled
    K-fold on that fold's training rows only (mean R2 over ``targets`` and ``inner_seeds``); ``nested``
    holds the outer R2 per target (``"R2_<i>"``) of the per-fold choices with Ridge(alpha), clipped at 0."""
    names = list(candidates)
    n = len(targets[0])
    outer = list(KFold(n_splits=n_splits).split(np.arange(n)))
    choices, inner = [], []
    preds = [np.zeros(n) for _ in targets]
    for tr, te in outer:
        sc = {}
        for c in names:
            X = candidates[c][tr]
            vals = []
            for s in inner_seeds:
                splits = list(KFold(n_splits=inner_splits, shuffle=True, random_state=s).split(X))
                vals.append(_ridge_oof_r2(X, [y[tr] for y in targets], splits, alpha))
            sc[c] = float(np.mean(vals))
        best = max(names, key=lambda c: sc[c])
        choices.append(best)
        inner.append(sc)
        for p, y in zip(preds, targets):
            p[te] = np.maximum(Ridge(alpha=alpha).fit(candidates[best][tr], y[tr]).predict(candidates[best][te]), 0.0)
    nested = {f"R2_{i}": r2_score(y, p) for i, (y, p) in enumerate(zip(targets, preds))}
    return Selection(choices=choices, inner_scores=inner, nested=nested)


def select_rf(
    candidates: Mapping[str, np.ndarray],
    y: np.ndarray,
    seeds: Sequence[int] = (1, 2, 3),
    test_size: float = 0.2,
    val_size: float = 0.2,
    n_estimators: int = 100,
    n_jobs: int | None = 2,
) -> Selection:
    """RegionDCL's split per seed (``train_test_split(test_size, random_state=s)``); the candidate is chosen
    on a validation split of the training rows (``val_size``, same seed) with
    ``RandomForestRegressor(n_estimators, random_state=s)``; the test rows are never used for the choice.
    ``nested["R2"]`` is the mean test R2 of the chosen candidates (refitted on all training rows)."""
    names = list(candidates)
    idx = np.arange(len(y))
    choices, inner, tests = [], [], []
    for s in seeds:
        tr, te = train_test_split(idx, test_size=test_size, random_state=s)
        fit, val = train_test_split(tr, test_size=val_size, random_state=s)
        sc = {}
        for c in names:
            rf = RandomForestRegressor(n_estimators=n_estimators, random_state=s, n_jobs=n_jobs)
            rf.fit(candidates[c][fit], y[fit])
            sc[c] = r2_score(y[val], rf.predict(candidates[c][val]))
        best = max(names, key=lambda c: sc[c])
        choices.append(best)
        inner.append(sc)
        rf = RandomForestRegressor(n_estimators=n_estimators, random_state=s, n_jobs=n_jobs)
        rf.fit(candidates[best][tr], y[tr])
        tests.append(r2_score(y[te], rf.predict(candidates[best][te])))
    return Selection(choices=choices, inner_scores=inner, nested={"R2": float(np.mean(tests))})
