"""Per-view encoders: one MLP per view maps its d_m features to the shared width d."""

from __future__ import annotations

from torch import nn


class ViewEncoder(nn.Sequential):
    """Linear(d_m, hidden) - LayerNorm - GELU - Dropout - Linear(hidden, d).

    A plain MLP keeps training data-parallel over regions: spatial context, if any, is averaged
    into the features once by the ETL (the method specification section 1).
    """

    def __init__(self, in_dim: int, hidden_dim: int = 256, out_dim: int = 64, dropout: float = 0.1) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden_dim),
            nn.LayerNorm(hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, out_dim),
        )
        self.in_dim = in_dim
        self.out_dim = out_dim
