"""Projection heads: the unique head u_m and the shared heads s_ij^i sit on top of an encoder."""

from __future__ import annotations

from torch import nn


class ProjectionHead(nn.Sequential):
    """Linear(d, d) - ReLU - Linear(d, d), as in FactorCL's MLP heads.

    Each head is a separate factor of the representation, so the same encoder output can feed a
    unique block and several shared blocks that are trained by different objectives.
    """

    def __init__(self, dim: int = 64) -> None:
        super().__init__(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.dim = dim
