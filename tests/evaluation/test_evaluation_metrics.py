"""Every metric against a case computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cookie.evaluation import metrics as M

# y = [1, 2, 3, 4], p = [2, 2, 2, 6]: p - y = [1, 0, -1, 2]
Y = [1.0, 2.0, 3.0, 4.0]
P = [2.0, 2.0, 2.0, 6.0]


def test_mae():
    assert M.mae(Y, P) == pytest.approx((1 + 0 + 1 + 2) / 4)  # 1.0


def test_rmse():
    assert M.rmse(Y, P) == pytest.approx(math.sqrt((1 + 0 + 1 + 4) / 4))  # sqrt(1.5)


def test_r2():
    # SS_res = 6, SS_tot = 2.25 + 0.25 + 0.25 + 2.25 = 5  ->  1 - 6/5
    assert M.r2(Y, P) == pytest.approx(-0.2)
    assert M.r2(Y, Y) == 1.0
    assert M.r2(Y, [2.5] * 4) == pytest.approx(0.0)


def test_regression_accepts_column_vectors_and_checks_shapes():
    assert M.regression_metrics(np.array(Y)[:, None], P) == pytest.approx(
        {"MAE": 1.0, "RMSE": math.sqrt(1.5), "R2": -0.2}
    )
    with pytest.raises(ValueError):
        M.mae([1, 2], [1, 2, 3])


# distributions: t = [[.5, .5, 0], [1, 0, 0]], p = [[.25, .75, 0], [.5, .25, .25]]
T = [[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]
Q = [[0.25, 0.75, 0.0], [0.5, 0.25, 0.25]]


def test_l1_distance():
    # row 1: .25 + .25 + 0 = .5; row 2: .5 + .25 + .25 = 1  -> mean .75
    assert M.l1_distance(T, Q) == pytest.approx(0.75)


def test_kl_divergence():
    # row 1: .5 ln(.5/.25) + .5 ln(.5/.75) = .5 ln(4/3); row 2: 1 ln(1/.5) = ln 2; 0 ln 0 = 0
    expected = (0.5 * math.log(4 / 3) + math.log(2)) / 2  # 0.418494
    assert M.kl_divergence(T, Q) == pytest.approx(expected)
    assert M.kl_divergence(T, T) == pytest.approx(0.0)
    # a zero prediction where the target is positive is infinite unless eps is given
    assert math.isinf(M.kl_divergence([[1.0, 0.0]], [[0.0, 1.0]]))
    assert M.kl_divergence([[1.0, 0.0]], [[0.0, 1.0]], eps=1e-12) == pytest.approx(-math.log(1e-12))


def test_kl_matches_torch_batchmean():
    torch = pytest.importorskip("torch")
    # strictly positive predictions (a softmax output): torch gives NaN for 0 * (log 0 - log 0)
    q_pos = [[0.2, 0.7, 0.1], [0.5, 0.25, 0.25]]
    ref = torch.nn.functional.kl_div(torch.tensor(q_pos).log(), torch.tensor(T), reduction="batchmean").item()
    assert M.kl_divergence(T, q_pos) == pytest.approx(ref, rel=1e-6)


def test_cosine_similarity():
    # row 1: .5 / (sqrt(.5) sqrt(.625)) = 2/sqrt(5); row 2: .5 / (1 * sqrt(.375)) = sqrt(2/3)
    expected = (2 / math.sqrt(5) + math.sqrt(2 / 3)) / 2  # 0.855462
    assert M.cosine_similarity(T, Q) == pytest.approx(expected)
    # a zero row (region without land use) scores 0, as torch.cosine_similarity does
    assert M.cosine_similarity([[0.0, 0.0]], [[0.5, 0.5]]) == 0.0


def test_distribution_metrics_keys():
    assert set(M.distribution_metrics(T, Q)) == {"L1", "KL", "cosine"}


# classification: y = [0, 0, 1, 1, 2, 2], p = [0, 1, 1, 1, 2, 0]
YC = [0, 0, 1, 1, 2, 2]
PC = [0, 1, 1, 1, 2, 0]


def test_accuracy():
    assert M.accuracy(YC, PC) == pytest.approx(4 / 6)


def test_macro_f1():
    # class 0: tp 1, fp 1, fn 1 -> 2/4; class 1: tp 2, fp 1, fn 0 -> 4/5; class 2: tp 1, fp 0, fn 1 -> 2/3
    assert M.macro_f1(YC, PC) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # an extra label absent from both counts 0
    assert M.macro_f1(YC, PC, labels=[0, 1, 2, 3]) == pytest.approx((0.5 + 0.8 + 2 / 3) / 4)


def test_macro_f1_matches_sklearn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    assert M.macro_f1(y, p) == pytest.approx(f1_score(y, p, average="macro"))


def test_nmi():
    # true [0,0,1,1], pred [0,0,0,1]: H(true) = ln 2, H(pred) = -(.75 ln .75 + .25 ln .25)
    # MI = .5 ln(4/3) + .25 ln(2/3) + .25 ln 2; NMI = MI / ((H(true) + H(pred)) / 2)
    h_t = math.log(2)
    h_p = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    mi = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    assert M.nmi([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx(mi / ((h_t + h_p) / 2))  # 0.343716
    assert M.nmi([0, 0, 1, 1], [5, 5, 3, 3]) == pytest.approx(1.0)


def test_ari():
    # true [0,0,0,1,1,1], pred [0,0,1,1,1,1]: cells 2,1,3 -> index C(2,2)+C(3,2) = 4
    # rows 3+3 -> 6, cols C(2,2)+C(4,2) = 7, pairs 15: expected 6*7/15 = 2.8, max (6+7)/2 = 6.5
    assert M.ari([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]) == pytest.approx((4 - 2.8) / (6.5 - 2.8))  # 0.324324
    # true [0,0,1,1], pred [0,0,0,1]: index 1 = expected 2*3/6 -> 0
    assert M.ari([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx(0.0)
    assert M.ari([0, 0, 1, 1], [1, 1, 0, 0]) == pytest.approx(1.0)
