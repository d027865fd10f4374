"""Seed ensembles (``model.ensemble``): independent members, Procrustes-aligned and averaged blocks."""

from __future__ import annotations

import pytest
import torch

from cookie.model import ModelConfig, build_model, load_model
from cookie.model.ensemble import EnsembleModule, member_seed, procrustes

TINY = dict(embed_dim=8, hidden_dim=16, epochs_intra=6, epochs_pair=6, val_fraction=0.0)


def _dims(views: dict[str, torch.Tensor]) -> dict[str, int]:
    return {k: v.shape[1] for k, v in views.items()}


def test_procrustes_recovers_a_rotation() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 6, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    r = procrustes(a.T @ (a @ q))
    assert torch.allclose(r, q, atol=1e-10)


def test_procrustes_breaks_ties_of_a_rank_deficient_block_the_same_way_every_time() -> None:
    """A block of rank < d (dead ReLU units) leaves the rotation free on the null directions: the pick is the
    optimal rotation nearest the identity, whatever rounding the sums carry (one process or a sum of ranks)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(50, 6, generator=g, dtype=torch.float64) @ torch.diag(
        torch.tensor([1.0, 1, 1, 1, 0, 0], dtype=torch.float64)
    )
    b = torch.randn(50, 6, generator=g, dtype=torch.float64)
    cross = a.T @ b
    r = procrustes(cross)
    assert torch.allclose(r.T @ r, torch.eye(6, dtype=torch.float64), atol=1e-10)
    assert torch.isclose(torch.trace(r.T @ cross), torch.linalg.svdvals(cross).sum())  # still a minimiser
    shards = a[:23].T @ b[:23] + a[23:].T @ b[23:]
    noisy = cross + 1e-12 * torch.randn(6, 6, generator=g, dtype=torch.float64)
    for other in (shards, noisy):
        assert torch.allclose(procrustes(other), r, atol=1e-8)
    assert torch.equal(procrustes(torch.zeros(3, 3, dtype=torch.float64)), torch.eye(3, dtype=torch.float64))
    half = torch.diag(torch.tensor([2.0, 1.0, 0.0, 0.0], dtype=torch.float64))
    assert torch.allclose(procrustes(half), torch.eye(4, dtype=torch.float64))


def test_member_seeds_differ_within_and_across_ensembles() -> None:
    seeds = {member_seed(s, k) for s in range(5) for k in range(5)}
    assert len(seeds) == 25
    assert member_seed(3, 0) == 3


@pytest.mark.parametrize("method", ["cookie", "gfactorcl"])
def test_ensemble_embeds_like_one_model_and_round_trips(method: str, small_views, tmp_path) -> None:
    views = small_views()
    single = build_model(ModelConfig(method=method, **TINY), _dims(views))
    model = build_model(ModelConfig(method=method, ensemble=3, **TINY), _dims(views))
    assert isinstance(model.module, EnsembleModule)
    assert model.block_names == single.block_names and model.embedding_dim == single.embedding_dim
    assert model.n_objectives == 3 * single.n_objectives
    # member 0 is the plain model of the seed; the others start elsewhere
    first = dict(model.module.member(0).named_parameters())
    for name, p in single.module.named_parameters():
        assert torch.equal(first[name], p)
    other = dict(model.module.member(1).named_parameters())
    assert not torch.equal(other["encoders.0.0.weight"], first["encoders.0.0.weight"])
    model.fit(views)
    for b in range(len(model.block_names)):
        rot = model.module.rotation(b)
        eye = torch.eye(rot.shape[-1]).expand_as(rot)
        assert torch.allclose(rot @ rot.transpose(1, 2), eye, atol=1e-5)  # orthogonal
        assert not torch.allclose(rot, eye, atol=1e-3)  # fitted, not left at identity
    emb = model.embed(views)
    assert emb.shape == (64, single.embedding_dim) and torch.isfinite(emb).all()
    for name, sl in model.block_slices.items():
        assert torch.allclose(emb[:, sl].norm(dim=1), torch.ones(64), atol=1e-5), name
    loaded = load_model(model.save(tmp_path / "m.pt"))
    assert torch.equal(loaded.embed(views), emb)


def test_rotations_align_members_that_differ_by_a_rotation(small_views) -> None:
    """Members equal up to an orthogonal map of a head's output: aligned, they average to one member's blocks."""
    views = small_views()
    model = build_model(ModelConfig(ensemble=2, **TINY), _dims(views))
    module = model.module
    assert isinstance(module, EnsembleModule)
    module.member(1).load_state_dict(module.member(0).state_dict())
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():  # rotate member 1's unique head of view a: its block becomes block @ q
        last = module.member(1).unique_heads[0][-1]
        last.weight.copy_(q.T @ last.weight)
        last.bias.copy_(last.bias @ q)
    v, m = model.prepare(views)
    module.postfit(v, m)
    one = build_model(ModelConfig(**TINY), _dims(views))
    one.module.load_state_dict(module.member(0).state_dict())
    assert torch.allclose(model.embed(views), one.embed(views), atol=1e-5)


def test_ensemble_masks_stay_zero(small_views) -> None:
    views = small_views()
    mask = torch.ones(64, dtype=torch.bool)
    mask[:5] = False
    model = build_model(ModelConfig(ensemble=2, **TINY), _dims(views))
    model.fit(views, {"a": mask})
    emb = model.embed(views, {"a": mask})
    assert torch.equal(emb[:5, model.block_slices["unique_a"]], torch.zeros(5, 8))


def test_baselines_ignore_the_ensemble(small_views) -> None:
    views = small_views()
    model = build_model(ModelConfig(method="raw", ensemble=3), _dims(views))
    assert not isinstance(model.module, EnsembleModule)
    model.fit(views)
    plain = build_model(ModelConfig(method="raw"), _dims(views))
    plain.fit(views)
    assert torch.equal(model.embed(views), plain.embed(views))
