"""Objective, head and block counts of CooKIE and GFactorCL (the method specification section 3)."""

from __future__ import annotations

from itertools import combinations

import pytest
import torch

from cookie.model import ModelConfig, build_model, model_from_state
from cookie.model.efficiency import expected_objectives
from cookie.model.heads import ProjectionHead


def _dims(m: int) -> dict[str, int]:
    return {f"v{k}": 8 + k for k in range(m)}


def _heads(model) -> int:
    return sum(isinstance(mod, ProjectionHead) for mod in model.module.modules())


@pytest.mark.parametrize("m", [2, 3, 4, 5, 6])
def test_objective_and_head_counts(m: int) -> None:
    cookie = build_model(ModelConfig(method="cookie", embed_dim=8, hidden_dim=16), _dims(m))
    gfcl = build_model(ModelConfig(method="gfactorcl", embed_dim=8, hidden_dim=16), _dims(m))
    assert cookie.n_objectives == m + m * (m - 1) // 2 == expected_objectives("cookie", m)
    assert gfcl.n_objectives == 2**m - 1 == expected_objectives("gfactorcl", m)
    assert _heads(cookie) == m + m * (m - 1)
    assert _heads(gfcl) == m * 2 ** (m - 1)
    assert cookie.embedding_dim == (m + m * (m - 1) // 2) * 8
    assert gfcl.embedding_dim == m * 2 ** (m - 1) * 8
    if m >= 3:
        assert cookie.num_parameters() < gfcl.num_parameters()


@pytest.mark.parametrize("m", [2, 4])
def test_ablation_counts(m: int) -> None:
    intra = build_model(ModelConfig(method="intra_only", embed_dim=8, hidden_dim=16), _dims(m))
    pair = build_model(ModelConfig(method="pair_only", embed_dim=8, hidden_dim=16), _dims(m))
    assert intra.n_objectives == m and [s.name for s in intra.stages()] == ["intra"]
    assert pair.n_objectives == m * (m - 1) // 2 and [s.name for s in pair.stages()] == ["pair"]
    assert all(b.startswith("unique_") for b in intra.block_names)
    assert all(b.startswith("shared_") for b in pair.block_names)


def test_block_names_and_slices() -> None:
    model = build_model(ModelConfig(embed_dim=4, hidden_dim=8), {"mobility": 10, "poi": 6, "landuse": 3})
    names = ["unique_mobility", "unique_poi", "unique_landuse"]
    names += [f"shared_{a}__{b}" for a, b in combinations(["mobility", "poi", "landuse"], 2)]
    assert model.block_names == names
    assert [s.name for s in model.stages()] == ["intra", "pair"]
    slices = model.block_slices
    assert slices["unique_mobility"] == slice(0, 4) and slices["shared_poi__landuse"] == slice(20, 24)
    assert len(model.column_names) == model.embedding_dim == 24


def test_shared_blocks_each_keeps_each_heads_estimate() -> None:
    dims = {"mobility": 10, "poi": 6, "landuse": 3}
    mean = build_model(ModelConfig(embed_dim=4, hidden_dim=8), dims)
    both = build_model(ModelConfig(embed_dim=4, hidden_dim=8, shared_blocks="each"), dims)
    pairs = list(combinations(["mobility", "poi", "landuse"], 2))
    assert both.block_names == mean.block_names[:3] + [f"shared_{a}__{b}_from_{v}" for a, b in pairs for v in (a, b)]
    assert both.embedding_dim == (3 + 2 * 3) * 4
    assert both.n_objectives == mean.n_objectives and both.num_parameters() == mean.num_parameters()
    both.module.load_state_dict(mean.module.state_dict())  # same weights: z_ij is the mean of the two blocks
    views = {k: torch.randn(16, d, generator=torch.Generator().manual_seed(d)) for k, d in dims.items()}
    e_mean, e_both = mean.embed(views), both.embed(views)
    for a, b in pairs:
        s_a = e_both[:, both.block_slices[f"shared_{a}__{b}_from_{a}"]]
        s_b = e_both[:, both.block_slices[f"shared_{a}__{b}_from_{b}"]]
        assert torch.allclose(s_a.norm(dim=1), torch.ones(16))
        z = torch.nn.functional.normalize(s_a + s_b, dim=1)
        assert torch.allclose(z, e_mean[:, mean.block_slices[f"shared_{a}__{b}"]], atol=1e-6)


def test_gfactorcl_blocks() -> None:
    model = build_model(ModelConfig(method="gfactorcl", embed_dim=4, hidden_dim=8), {"a": 3, "b": 3, "c": 3})
    assert [s.name for s in model.stages()] == ["joint"]
    assert model.stages()[0].epochs == 600
    assert "shared_a__b__c_from_b" in model.block_names
    assert len(model.block_names) == 3 * 4


def test_gfactorcl_shared_blocks_mean_is_one_block_per_subset() -> None:
    dims = {"a": 3, "b": 4, "c": 5}
    each = build_model(ModelConfig(method="gfactorcl", embed_dim=4, hidden_dim=8), dims)
    mean = build_model(ModelConfig(method="gfactorcl", embed_dim=4, hidden_dim=8, shared_blocks="mean"), dims)
    subsets = ["a__b", "a__c", "b__c", "a__b__c"]
    assert mean.block_names == ["unique_a", "unique_b", "unique_c"] + [f"shared_{s}" for s in subsets]
    assert mean.n_objectives == each.n_objectives and mean.num_parameters() == each.num_parameters()
    mean.module.load_state_dict(each.module.state_dict())  # same weights: each subset's block is its heads' mean
    views = {k: torch.randn(16, d, generator=torch.Generator().manual_seed(d)) for k, d in dims.items()}
    masks = {"c": torch.arange(16) % 4 != 0}  # view c missing in every fourth row
    e_each, e_mean = each.embed(views, masks), mean.embed(views, masks)
    for s in subsets:
        heads = [e_each[:, each.block_slices[n]] for n in each.block_names if n.startswith(f"shared_{s}_from_")]
        expected = torch.nn.functional.normalize(torch.stack(heads).sum(dim=0), dim=1)
        assert torch.allclose(e_mean[:, mean.block_slices[f"shared_{s}"]], expected, atol=1e-6)
    # rows without c: the a__c block is a's estimate alone, still unit length
    assert torch.allclose(e_mean[~masks["c"], mean.block_slices["shared_a__c"]].norm(dim=1), torch.ones(4))


def test_shared_blocks_auto_is_each_methods_own_readout() -> None:
    assert ModelConfig().shared_readout() == "mean"
    assert ModelConfig(method="pair_only").shared_readout() == "mean"
    assert ModelConfig(method="gfactorcl").shared_readout() == "each"
    assert ModelConfig(method="gfactorcl", shared_blocks="mean").shared_readout() == "mean"
    assert ModelConfig(shared_blocks="each").shared_readout() == "each"


def test_pair_blocks_is_read_as_shared_blocks() -> None:
    """Configs and saved models from before shared_blocks keep their embedding."""
    assert ModelConfig.model_validate({"pair_blocks": "both"}).shared_blocks == "each"
    legacy_gf = ModelConfig.model_validate({"method": "gfactorcl", "pair_blocks": "mean"})
    assert legacy_gf.shared_readout() == "each"  # pair_blocks never applied to GFactorCL
    with pytest.raises(ValueError, match="former name"):
        ModelConfig.model_validate({"pair_blocks": "both", "shared_blocks": "each"})
    with pytest.raises(ValueError, match="pair_blocks"):
        ModelConfig.model_validate({"pair_blocks": "all"})
    model = build_model(ModelConfig(embed_dim=4, hidden_dim=8, shared_blocks="each"), {"a": 3, "b": 2})
    state = model.state()
    config = {k: v for k, v in state["config"].items() if k != "shared_blocks"}
    saved = model_from_state({**state, "config": {**config, "pair_blocks": "both"}})  # a file saved before the rename
    assert saved.block_names == model.block_names


def test_config_rejects_unknown_fields_and_bad_values() -> None:
    with pytest.raises(ValueError):
        ModelConfig(embed_dims=3)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        ModelConfig(method="single_view")
    with pytest.raises(ValueError):
        ModelConfig(augmentations=["blur"])  # type: ignore[list-item]
    cfg = ModelConfig.model_validate({"method": "gfactorcl", "batch_size": 128, "use_club": True})
    assert cfg.batch_size == 128 and cfg.embed_dim == 64


def test_bad_view_names_rejected() -> None:
    with pytest.raises(ValueError):
        build_model(ModelConfig(), {"a__b": 3, "c": 2})
    with pytest.raises(ValueError):
        build_model(ModelConfig(), {"a.b": 3, "c": 2})
