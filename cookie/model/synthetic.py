"""Synthetic views with planted latent factors, for tests and benchmarks.

Every view is a random linear map of [factor shared by all views, one factor per pair of views
containing it, one factor unique to the view] plus Gaussian noise. A model that factorises
well puts each pair's factor in that pair's shared block and each unique factor in its own
view's unique block, which a linear probe can check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import torch
from torch import Tensor

from cookie.preprocessing import zscore


@dataclass
class PlantedViews:
    """Views (z-scored) and the factors they were generated from."""

    views: dict[str, Tensor]
    common: Tensor
    pair: dict[tuple[str, str], Tensor] = field(default_factory=dict)
    unique: dict[str, Tensor] = field(default_factory=dict)

    @property
    def view_dims(self) -> dict[str, int]:
        return {k: v.shape[1] for k, v in self.views.items()}


def planted_views(
    n: int = 1500,
    n_views: int = 3,
    dim: int | list[int] = 32,
    k_common: int = 2,
    k_pair: int = 2,
    k_unique: int = 2,
    noise: float = 0.1,
    seed: int = 0,
    common_scale: float = 1.0,
    pair_scale: float = 1.0,
    unique_scale: float = 1.0,
) -> PlantedViews:
    """Views ``v0..v{M-1}`` of ``n`` rows from standard-normal planted factors.

    Each factor block is mapped by its own random Gaussian matrix (scaled by 1/sqrt(k)), so
    every factor carries about the same variance in every view that contains it, times
    ``<kind>_scale`` squared; ``noise`` is the standard deviation of the per-feature noise.
    """
    g = torch.Generator().manual_seed(seed)
    names = [f"v{k}" for k in range(n_views)]
    dims = [dim] * n_views if isinstance(dim, int) else list(dim)
    common = torch.randn(n, k_common, generator=g)
    pair = {(names[i], names[j]): torch.randn(n, k_pair, generator=g) for i, j in combinations(range(n_views), 2)}
    unique = {v: torch.randn(n, k_unique, generator=g) for v in names}
    views: dict[str, Tensor] = {}
    for m, v in enumerate(names):
        blocks = [(common, common_scale)]
        blocks += [(f, pair_scale) for key, f in pair.items() if v in key]
        blocks += [(unique[v], unique_scale)]
        x = torch.zeros(n, dims[m])
        for f, scale in blocks:
            w = scale * torch.randn(f.shape[1], dims[m], generator=g) / f.shape[1] ** 0.5
            x = x + f @ w
        x = x + noise * torch.randn(n, dims[m], generator=g)
        views[v] = torch.from_numpy(zscore(x.numpy() if isinstance(x, Tensor) else x))
    return PlantedViews(views=views, common=common, pair=pair, unique=unique)
