"""Augmentations of view vectors for the intra-view (unique) objectives.

FactorCL's static-feature case: Gaussian noise, random feature masking, mixup with a shuffled
batch, identity; and, for count data, Poisson thinning in the counts' own space. All randomness
comes from a ``torch.Generator`` passed in, so that training is reproducible and a distributed
trainer can give every rank its own stream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from cookie.preprocessing import COUNT_SPACES


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


def poisson_thin(
    x: Tensor, mean: Tensor, std: Tensor, space: Tensor, keep: float, generator: torch.Generator
) -> Tensor:
    """Resample the count features of a z-scored view as counts: back to the count c (``space`` 1: the feature is
    log1p(c), z-scored; 2: c itself, z-scored; 0: not a count, left as it is), draw c' ~ Poisson(keep * c) / keep,
    and return it through the same transform. The noise follows the counts (a region with 2 POIs of a kind may
    lose both, one with 200 keeps about 200), where Gaussian noise on z-scores treats every value alike;
    ``keep = 1`` is plain Poisson resampling, smaller values thin harder. Same expectation as c."""
    is_log, is_count = space == 1, space > 0
    value = x.to(torch.float64) * std + mean
    counts = torch.where(is_log, torch.expm1(value.clamp(min=0.0)), value.clamp(min=0.0))
    rates = torch.where(is_count, keep * counts, torch.zeros_like(counts)).to(generator.device)
    drawn = torch.poisson(rates, generator=generator).to(x.device, torch.float64) / keep
    back = torch.where(is_log, torch.log1p(drawn), drawn)
    return torch.where(is_count, (back - mean) / std, x.to(torch.float64)).to(x.dtype)


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
        thin_keep: float = 0.5,
    ) -> None:
        unknown = set(names) - {"noise", "mask", "mixup", "identity", "thin"}
        if unknown:
            raise ValueError(f"unknown augmentations: {sorted(unknown)}")
        if mode not in ("compose", "choose"):
            raise ValueError(f"unknown augment mode {mode!r}")
        self.names = list(names)
        self.noise_sigma = noise_sigma
        self.mask_prob = mask_prob
        self.mode = mode
        self.thin_keep = thin_keep
        # view index -> (mean, std, space) per feature, for 'thin'; views without one hold no counts and stay as they are
        self.count_space: dict[int, tuple[Tensor, Tensor, Tensor]] = {}

    def set_count_space(self, space: Mapping[int, tuple[Sequence[float], Sequence[float], Sequence[str]]]) -> None:
        """Where each view's counts are (:data:`cookie.preprocessing.COUNT_SPACES` per feature, with the z-score's
        mean and std): what 'thin' needs to go back to counts."""
        codes = {c: i for i, c in enumerate(COUNT_SPACES)}  # none 0, log 1, linear 2: poisson_thin's codes
        self.count_space = {
            k: (
                torch.tensor(m, dtype=torch.float64),
                torch.tensor(s, dtype=torch.float64),
                torch.tensor([codes[c] for c in sp], dtype=torch.int8),
            )
            for k, (m, s, sp) in space.items()
            if any(c != "none" for c in sp)
        }

    def _one(self, name: str, x: Tensor, generator: torch.Generator, view: int | None) -> Tensor:
        if name == "thin":
            if view not in self.count_space:
                return x
            mean, std, space = (t.to(x.device) for t in self.count_space[view])
            return poisson_thin(x, mean, std, space, self.thin_keep, generator)
        if name == "noise":
            return gaussian_noise(x, self.noise_sigma, generator)
        if name == "mask":
            return feature_mask(x, self.mask_prob, generator)
        if name == "mixup":
            return mixup(x, generator)
        return identity(x)

    def __call__(self, x: Tensor, generator: torch.Generator, view: int | None = None) -> Tensor:
        """Return an augmented copy of ``x`` (rows = regions) of view number ``view`` (for 'thin')."""
        if self.mode == "compose" or len(self.names) == 1:
            out = x
            for name in self.names:
                out = self._one(name, out, generator, view)
            return out
        candidates = torch.stack([self._one(name, x, generator, view) for name in self.names])  # (K, N, D)
        choice = torch.randint(len(self.names), (x.shape[0],), generator=generator, device=generator.device)
        choice = choice.to(x.device)
        return candidates[choice, torch.arange(x.shape[0], device=x.device)]
