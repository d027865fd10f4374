"""Efficiency measurements run and rank CooKIE below GFactorCL (the method specification section 4)."""

from __future__ import annotations

import torch

from cookie.model import ModelConfig, build_model
from cookie.model.efficiency import peak_memory_mb, profile_model, step_flops


def test_profile_cookie_vs_gfactorcl(small_views) -> None:
    views = small_views(n=128, dims=(10, 9, 8, 7))
    dims = {k: v.shape[1] for k, v in views.items()}
    reports = {}
    for method in ("cookie", "gfactorcl"):
        model = build_model(ModelConfig(method=method, embed_dim=16, hidden_dim=32), dims)
        before = model.embed(views)
        reports[method] = profile_model(model, views, epochs=1)
        assert torch.equal(model.embed(views), before)  # profiling works on a copy
    c, g = reports["cookie"], reports["gfactorcl"]
    assert c.n_objectives == 10 and g.n_objectives == 15
    assert c.params < g.params and c.flops_per_step < g.flops_per_step
    assert set(c.stages) == {"intra", "pair"} and c.main_stage == "pair"
    for r in (c, g):
        assert r.flops_per_step > 0 and r.seconds_per_epoch > 0 and r.peak_memory_mb > 0
        assert r.total_train_flops > r.flops_per_step
        assert set(r.as_dict()) >= {"method", "n_views", "params", "flops_per_step", "peak_memory_mb"}


def test_step_flops_grow_with_batch(small_views) -> None:
    dims = {"a": 12, "b": 7, "c": 5}
    model = build_model(ModelConfig(embed_dim=8, hidden_dim=16), dims)
    small = step_flops(model, *model.prepare(small_views(n=32)), "pair")
    large = step_flops(model, *model.prepare(small_views(n=64)), "pair")
    assert large > 2 * small * 0.9


def test_peak_memory_sees_a_big_allocation() -> None:
    def alloc() -> None:
        x = torch.ones(1000, 1000)  # 4 MB
        (x * 2).sum()

    assert 3.9 < peak_memory_mb(alloc) < 20
