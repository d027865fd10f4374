"""Cheap baselines that keep everyone honest (the method specification section 3, "Other baselines").

- ``raw``: every view z-scored and concatenated (one block per view);
- ``raw_pca``: the same, projected by PCA to CooKIE's embedding width (M + M(M-1)/2) * d;
- ``single_view``: one view z-scored alone.
They have no trainable weights and no stages: :meth:`prefit` fits their statistics from sums over the
rows (so that ranks holding shards fit the same statistics as one process holding every row), stored
as buffers so that save/load works like for the learned models. (The ablations ``intra_only`` and
``pair_only`` are CooKIE with a stage switched off, in :mod:`cookie.model.cookie`.)
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from cookie.config.model import ModelConfig
from cookie.model.base import Masks, Reduce, RegionModule, Views


class ViewStandardizer(nn.Module):
    """Column mean/std of one view over its present rows, as buffers; zero variance -> std 1."""

    mean: Tensor  # buffers (registered in __init__)
    std: Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, x: Tensor, mask: Tensor | None, reduce: Reduce | None = None) -> None:
        rows = (x if mask is None else x[mask]).double()
        red = reduce or (lambda t: t)
        n = red(torch.tensor([float(rows.shape[0])], dtype=torch.float64, device=x.device))[0]
        if float(n) == 0:
            return
        mean = red(rows.sum(0)) / n
        var = (red((rows * rows).sum(0)) / n - mean * mean).clamp(min=0.0)
        std = var.sqrt()
        self.mean.copy_(mean.float())
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)).float())

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        z = (x - self.mean) / self.std
        if mask is not None:
            z = torch.where(mask[:, None], z, torch.zeros((), dtype=z.dtype, device=z.device))
        return z


class RawModule(RegionModule):
    """Z-scored views concatenated: blocks ``raw_<view>``."""

    def __init__(self, view_dims: Mapping[str, int], config: ModelConfig) -> None:
        super().__init__(view_dims, config)
        self.standardizers = nn.ModuleList(ViewStandardizer(view_dims[v]) for v in self.view_names)

    def prefit(self, views: Views, masks: Masks, reduce: Reduce | None = None) -> None:
        for st, v in zip(self.standardizers, self.view_names):
            assert isinstance(st, ViewStandardizer)
            st.fit(views[v], masks.get(v), reduce)

    def block_specs(self) -> list[tuple[str, int]]:
        return [(f"raw_{v}", self.view_dims[v]) for v in self.view_names]

    def standardized(self, views: Views, masks: Masks) -> list[Tensor]:
        return [st(views[v], masks.get(v)) for st, v in zip(self.standardizers, self.view_names)]

    def embed_blocks(self, views: Views, masks: Masks) -> list[Tensor]:
        return self.standardized(views, masks)


class RawPCAModule(RawModule):
    """Z-scored concatenation projected by PCA to CooKIE's embedding width (block ``pca``).

    Width k = min((M + M(M-1)/2) * d, total features); with fewer regions than k the trailing
    components are zeros, so the width never depends on N.
    """

    pca_mean: Tensor  # buffers (registered in __init__)
    components: Tensor

    def __init__(self, view_dims: Mapping[str, int], config: ModelConfig) -> None:
        super().__init__(view_dims, config)
        m = len(self.view_names)
        total = sum(view_dims.values())
        self.width = min((m + m * (m - 1) // 2) * config.embed_dim, total)
        self.register_buffer("pca_mean", torch.zeros(total))
        self.register_buffer("components", torch.zeros(self.width, total))

    def prefit(self, views: Views, masks: Masks, reduce: Reduce | None = None) -> None:
        super().prefit(views, masks, reduce)
        red = reduce or (lambda t: t)
        z = torch.cat(self.standardized(views, masks), dim=1).double()
        n = red(torch.tensor([float(z.shape[0])], dtype=torch.float64, device=z.device))[0]
        mean = red(z.sum(0)) / n
        cov = red(z.T @ z) / n - torch.outer(mean, mean)
        evals, evecs = torch.linalg.eigh(cov)  # ascending
        order = torch.argsort(evals, descending=True)
        rank = int((evals > 1e-10 * max(float(evals.max()), 1e-30)).sum())
        vh = evecs[:, order].T[: min(rank, int(n))]
        # deterministic signs: the largest-magnitude loading of every component is positive
        sign = torch.sign(vh[torch.arange(vh.shape[0]), vh.abs().argmax(1)])
        sign[sign == 0] = 1
        vh = vh * sign[:, None]
        k = min(self.width, vh.shape[0])
        self.pca_mean.copy_(mean.float())
        self.components.zero_()
        self.components[:k].copy_(vh[:k].float())

    def block_specs(self) -> list[tuple[str, int]]:
        return [("pca", self.width)]

    def embed_blocks(self, views: Views, masks: Masks) -> list[Tensor]:
        z = torch.cat(self.standardized(views, masks), dim=1)
        return [(z - self.pca_mean) @ self.components.T]


class SingleViewModule(RawModule):
    """One view z-scored (``config.single_view``); built with only that view's dimension."""
