"""Seeded augmentations (the method specification section 2)."""

from __future__ import annotations

import torch

from cookie.model.augment import Augmenter, feature_mask, gaussian_noise, mixup


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


def test_poisson_thin_resamples_counts_in_their_own_space() -> None:
    """'thin' goes back to counts (log1p or linear), draws Poisson(keep * c) / keep and returns through the same
    z-score: the results are counts again, their mean is the count's, and features that are no counts stay."""
    from cookie.model.augment import poisson_thin

    counts = torch.tensor([[0.0, 3.0, 200.0, 7.0, 0.3]]).repeat(4000, 1).double()
    space = torch.tensor([1, 1, 1, 2, 0], dtype=torch.int8)
    mean = torch.tensor([0.5, 1.0, 2.0, 4.0, 0.0], dtype=torch.float64)
    std = torch.tensor([1.5, 0.5, 2.0, 3.0, 1.0], dtype=torch.float64)
    value = torch.where(space == 1, torch.log1p(counts), counts)
    x = ((value - mean) / std).float()
    gen = torch.Generator().manual_seed(0)
    out = poisson_thin(x, mean, std, space, 0.5, gen).double()
    back = out * std + mean
    drawn = torch.where(space == 1, torch.expm1(back), back)
    assert torch.allclose(drawn[:, :4] * 0.5, (drawn[:, :4] * 0.5).round(), atol=1e-3)  # keep * c' is a count
    assert drawn[:, 0].abs().max() < 1e-6  # no count, nothing drawn
    assert torch.allclose(drawn[:, 1:4].mean(0), counts[0, 1:4], rtol=0.05)  # same expectation
    assert drawn[:, 2].std() / 200 < 0.15 < drawn[:, 1].std() / 3  # relative noise shrinks with the count
    assert torch.equal(out[:, 4], x[:, 4])  # not a count: unchanged
    again = poisson_thin(x, mean, std, space, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_thin_touches_only_views_with_counts() -> None:
    x = torch.randn(16, 3)
    aug = Augmenter(["thin"], thin_keep=0.5)
    assert torch.equal(aug(x, torch.Generator().manual_seed(0), 0), x)  # no count space known: unchanged
    aug.set_count_space({0: ([0.0] * 3, [1.0] * 3, ["log", "none", "linear"]), 1: ([0.0] * 3, [1.0] * 3, ["none"] * 3)})
    assert 1 not in aug.count_space
    out = aug(x, torch.Generator().manual_seed(0), 0)
    assert torch.equal(out[:, 1], x[:, 1]) and not torch.equal(out, x)
    assert torch.equal(aug(x, torch.Generator().manual_seed(0), 1), x)
