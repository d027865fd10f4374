"""Label-free early stopping: the held-out split, the patience rule and the restored weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cookie.model import ModelConfig, build_model
from cookie.model.early_stopping import MIN_VAL_ROWS, EarlyStopping, holdout_mask


def test_holdout_is_seeded_and_sized_and_off_for_small_shards():
    cfg = ModelConfig(val_fraction=0.1, seed=3)
    a, b = holdout_mask(200, cfg), holdout_mask(200, cfg)
    assert a.sum() == 20 and np.array_equal(a, b)
    assert not np.array_equal(a, holdout_mask(200, cfg, offset=1))  # each rank its own rows
    assert not holdout_mask(10 * MIN_VAL_ROWS - 1, cfg).any()  # under 8 held-out rows: off
    assert not holdout_mask(200, ModelConfig(val_fraction=0.0)).any()


def test_patience_stops_and_restores_the_best_weights():
    layer = nn.Linear(2, 1)
    stopper = EarlyStopping(patience=10, min_delta=0.01, every=5)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    assert not stopper.update(4, 1.0, layer)  # first check is the best so far
    with torch.no_grad():
        layer.weight.fill_(2.0)
    assert not stopper.update(9, 0.995, layer)  # under 1% better: not an improvement, 5 epochs waited
    assert stopper.update(14, 0.999, layer)  # 10 epochs without one: stop
    stopper.restore(layer)
    assert stopper.best_epoch == 4 and float(layer.weight.detach()[0, 0]) == 1.0
    assert stopper.due(4, last=False) and not stopper.due(5, last=False) and stopper.due(5, last=True)


def test_fit_stops_each_stage_on_the_held_out_loss(small_views):
    views = small_views(n=200)
    cfg = ModelConfig(method="cookie", embed_dim=8, hidden_dim=32, epochs_intra=400, epochs_pair=400, patience=10)
    model = build_model(cfg, {k: v.shape[1] for k, v in views.items()})
    history = model.fit(views)
    ends = [r for r in history if "best_epoch" in r]
    assert [r["stage"] for r in ends] == ["intra", "pair"]
    assert all(r["epoch"] < 399 and r["epoch"] - r["best_epoch"] >= 10 for r in ends)  # stopped before the cap
    checks = [r for r in history if "val_loss" in r]
    assert checks and all(np.isfinite(r["val_loss"]) for r in checks)
    again = build_model(cfg, {k: v.shape[1] for k, v in views.items()})
    again.fit(views)
    assert torch.equal(model.embed(views), again.embed(views))  # same config, same split, same weights


@pytest.mark.parametrize("fraction", [0.0, 0.1])
def test_statistics_only_methods_ignore_early_stopping(small_views, fraction):
    views = small_views(n=200)
    model = build_model(ModelConfig(method="raw", val_fraction=fraction), {k: v.shape[1] for k, v in views.items()})
    assert model.fit(views) == []
