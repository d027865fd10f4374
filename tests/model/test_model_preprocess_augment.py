"""Preprocessing (docs/method.md section 1) and seeded augmentations."""

from __future__ import annotations

import numpy as np
import torch

from cookie.model.augment import Augmenter, feature_mask, gaussian_noise, mixup
from cookie.model.preprocess import (
    Standardizer,
    log1p_zscore,
    od_row_col_features,
    od_svd_features,
    prepare_view,
    zscore,
)


def test_zscore_guards_zero_variance_nan_and_masks() -> None:
    x = np.array([[1.0, 5.0, 0.0], [3.0, 5.0, np.nan], [5.0, 5.0, 2.0], [100.0, 7.0, 9.0]])
    mask = np.array([True, True, True, False])
    z = zscore(x, mask)
    assert torch.isfinite(z).all()
    assert torch.all(z[:, 1][:3] == 0)  # constant column on present rows -> 0, not NaN
    assert torch.all(z[3] == 0)  # masked row -> zeros
    assert z[1, 2] == 0  # NaN cell -> the mean
    assert torch.allclose(z[:3, 0], torch.tensor([-1.2247449, 0.0, 1.2247449]), atol=1e-5)
    st = Standardizer.fit(x, mask)
    assert torch.allclose(st.transform(x, mask), z)


def test_log1p_zscore_counts() -> None:
    counts = np.array([[0, 10], [9, 10], [99, 10], [-3, 10]])
    z = log1p_zscore(counts)
    assert torch.isfinite(z).all() and torch.all(z[:, 1] == 0)
    assert z[0, 0] == z[3, 0]  # negative counts clip to 0
    assert abs(float(z[:, 0].mean())) < 1e-6
    assert torch.allclose(prepare_view(counts, "counts"), z)
    shares = prepare_view(np.array([[0.2, np.nan], [1.3, -0.1]]), "shares")
    assert torch.equal(shares, torch.tensor([[0.2, 0.0], [1.0, 0.0]]))


def test_od_features() -> None:
    od = np.arange(16, dtype=float).reshape(4, 4)
    f = od_row_col_features(od)
    assert f.shape == (4, 8)
    assert torch.equal(f[1, :4], torch.tensor(od[1], dtype=torch.float32))
    assert torch.equal(f[1, 4:], torch.tensor(od[:, 1], dtype=torch.float32))
    assert torch.allclose(od_row_col_features(od, normalise=True)[:, :4].sum(1), torch.ones(4))
    s = od_svd_features(od, k=6)
    assert s.shape == (4, 12) and torch.isfinite(s).all()


def test_augmentations_are_seeded_and_do_what_they_say() -> None:
    x = torch.randn(200, 30)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    aug = Augmenter(["noise", "mask"], 0.1, 0.2)
    assert torch.equal(aug(x, g1), aug(x, g2))
    noisy = gaussian_noise(x, 0.1, torch.Generator().manual_seed(0))
    assert 0.08 < float((noisy - x).std()) < 0.12
    masked = feature_mask(x, 0.2, torch.Generator().manual_seed(0))
    assert 0.15 < float((masked == 0).float().mean()) < 0.25
    mixed = mixup(x, torch.Generator().manual_seed(0))
    assert mixed.shape == x.shape and not torch.equal(mixed, x)
    assert float(mixed.abs().max()) <= float(x.abs().max()) + 1e-5  # convex combinations
    chooser = Augmenter(["identity", "mask"], mode="choose")
    out = chooser(x, torch.Generator().manual_seed(0))
    same_rows = (out == x).all(1).float().mean()
    assert 0.3 < float(same_rows) < 0.7  # about half the rows kept the identity
