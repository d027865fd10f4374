"""Label-free model selection: stop a training stage on the contrastive loss of held-out regions.

A new city has no labels to choose the number of epochs with, and a fixed epoch count over- or
under-trains depending on the data set's size. Each stage therefore keeps a small random share of the
regions out of training (``val_fraction``), measures the stage's own loss on them every ``val_every``
epochs (eval mode, augmentations drawn from a fixed seed so that the figures are comparable), and stops
when that loss has not improved by a relative ``min_delta`` for ``patience`` epochs; the weights of the
best check are restored. ``epochs_intra`` / ``epochs_pair`` are then upper bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from cookie.config.model import ModelConfig

#: Fewer held-out regions than this (per process) make the held-out loss too noisy to stop on.
MIN_VAL_ROWS = 8
#: Offset of the generator that draws the held-out augmentations (fixed for a run: comparable checks).
VAL_SEED_OFFSET = 7919


def holdout_mask(n: int, config: ModelConfig, offset: int = 0) -> np.ndarray:
    """Boolean (n,) mask of the held-out rows of a shard, or all-False when early stopping is off.

    Drawn from ``config.seed + offset`` (pass the rank), so a config gives the same split every run.
    """
    k = int(math.floor(n * config.val_fraction))
    out = np.zeros(n, dtype=bool)
    if config.val_fraction <= 0 or k < MIN_VAL_ROWS or n - k < 2:
        return out
    rng = np.random.default_rng(config.seed + VAL_SEED_OFFSET + offset)
    out[rng.choice(n, size=k, replace=False)] = True
    return out


@dataclass
class EarlyStopping:
    """Patience on a held-out loss, for one stage; keeps (a CPU copy of) the best weights."""

    patience: int
    min_delta: float
    every: int
    best: float = math.inf
    best_epoch: int = -1
    best_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, config: ModelConfig) -> EarlyStopping:
        return cls(patience=config.patience, min_delta=config.min_delta, every=config.val_every)

    def due(self, epoch: int, last: bool) -> bool:
        """Whether the held-out loss is measured after 0-based ``epoch`` (every ``every``, and the last)."""
        return last or (epoch + 1) % self.every == 0

    def update(self, epoch: int, loss: float, module: nn.Module) -> bool:
        """Record the held-out ``loss`` after ``epoch``; True when the stage should stop now."""
        if not math.isfinite(self.best) or loss < self.best - self.min_delta * abs(self.best):
            self.best, self.best_epoch = loss, epoch
            self.best_state = {k: t.detach().cpu().clone() for k, t in module.state_dict().items()}
        return epoch - self.best_epoch >= self.patience

    def restore(self, module: nn.Module) -> None:
        """Load the best weights back (no-op when nothing was measured)."""
        if self.best_state is not None:
            module.load_state_dict(self.best_state)  # copies into the module's tensors, on their device

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.best_state = state["best_state"]
