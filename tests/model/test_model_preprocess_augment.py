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
