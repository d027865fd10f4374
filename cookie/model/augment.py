"""Augmentations of view vectors for the intra-view (unique) objectives.

FactorCL's static-feature case: Gaussian noise, random feature masking, mixup with a shuffled
batch, identity. All randomness comes from a ``torch.Generator`` passed in, so that training is
reproducible and a distributed trainer can give every rank its own stream.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _rand(shape: Sequence[int], generator: torch.Generator, like: Tensor) -> Tensor:
    """Uniform [0, 1) numbers drawn on the generator's device, then moved next to ``like``."""
    return torch.rand(tuple(shape), generator=generator, device=generator.device).to(like.device, like.dtype)


def _randn(shape: Sequence[int], generator: torch.Generator, like: Tensor) -> Tensor:
    return torch.randn(tuple(shape), generator=generator, device=generator.device).to(like.device, like.dtype)


def gaussian_noise(x: Tensor, sigma: float, generator: torch.Generator) -> Tensor:
    """x + N(0, sigma^2): features are z-scored, so sigma is in standard deviations."""
    return x + sigma * _randn(x.shape, generator, x)


def feature_mask(x: Tensor, prob: float, generator: torch.Generator) -> Tensor:
    """Zero each feature with probability ``prob`` (zero is the z-scored mean)."""
    keep = _rand(x.shape, generator, x) >= prob
    return x * keep


def mixup(x: Tensor, generator: torch.Generator) -> Tensor:
    """Mix every row with a row of a shuffled batch, lambda ~ Beta(1, 1) = U(0, 1) per row."""
    n = x.shape[0]
    perm = torch.randperm(n, generator=generator, device=generator.device).to(x.device)
    lam = _rand((n, 1), generator, x)
    return lam * x + (1.0 - lam) * x[perm]


def identity(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """No change (keeps the 'choose' mode honest: some rows stay clean)."""
    return x


class Augmenter:
    """Applies the configured augmentations, either composed in order or one chosen per row."""

    def __init__(
        self,
        names: Sequence[str] = ("noise", "mask"),
        noise_sigma: float = 0.1,
        mask_prob: float = 0.7,
        mode: str = "compose",
    ) -> None:
        unknown = set(names) - {"noise", "mask", "mixup", "identity"}
        if unknown:
            raise ValueError(f"unknown augmentations: {sorted(unknown)}")
        if mode not in ("compose", "choose"):
            raise ValueError(f"unknown augment mode {mode!r}")
        self.names = list(names)
        self.noise_sigma = noise_sigma
        self.mask_prob = mask_prob
        self.mode = mode

    def _one(self, name: str, x: Tensor, generator: torch.Generator) -> Tensor:
        if name == "noise":
            return gaussian_noise(x, self.noise_sigma, generator)
        if name == "mask":
            return feature_mask(x, self.mask_prob, generator)
        if name == "mixup":
            return mixup(x, generator)
        return identity(x)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Return an augmented copy of ``x`` (rows = regions)."""
        if self.mode == "compose" or len(self.names) == 1:
            out = x
            for name in self.names:
                out = self._one(name, out, generator)
            return out
        candidates = torch.stack([self._one(name, x, generator) for name in self.names])  # (K, N, D)
        choice = torch.randint(len(self.names), (x.shape[0],), generator=generator, device=generator.device)
        choice = choice.to(x.device)
        return candidates[choice, torch.arange(x.shape[0], device=x.device)]
