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
