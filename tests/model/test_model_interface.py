"""The one interface: fit/embed/save/load, seeding, masks, and the step API a trainer drives."""

from __future__ import annotations

import pytest
import torch

from cookie.model import ModelConfig, build_model, load_model

TINY = dict(embed_dim=8, hidden_dim=16, epochs_intra=4, epochs_pair=4)
METHODS = ["cookie", "gfactorcl", "intra_only", "pair_only", "raw", "raw_pca", "single_view"]


def _cfg(method: str = "cookie", **kw) -> ModelConfig:
    extra = {"single_view": "b"} if method == "single_view" else {}
    return ModelConfig(method=method, **{**TINY, **extra, **kw})


def _dims(views: dict[str, torch.Tensor]) -> dict[str, int]:
    return {k: v.shape[1] for k, v in views.items()}


@pytest.mark.parametrize("method", METHODS)
def test_fit_embed_save_load_roundtrip(method: str, small_views, tmp_path) -> None:
    views = small_views()
    model = build_model(_cfg(method, use_club=True), _dims(views))
    history = model.fit(views)
    assert all(isinstance(h["loss"], float) for h in history)
    assert len(history) == sum(s.epochs for s in model.stages())
    emb = model.embed(views)
    assert emb.shape == (64, model.embedding_dim) and emb.dtype == torch.float32
    assert torch.isfinite(emb).all()
    path = model.save(tmp_path / "m.pt")
    loaded = load_model(path)
    assert loaded.block_names == model.block_names and loaded.config == model.config
    assert torch.equal(loaded.embed(views), emb)


@pytest.mark.parametrize("method", ["cookie", "gfactorcl"])
def test_same_seed_same_embeddings(method: str, small_views) -> None:
    views = small_views()
    runs = []
    for _ in range(2):
        model = build_model(_cfg(method, batch_size=16), _dims(views))
        model.fit(views)
        runs.append(model.embed(views))
    assert torch.equal(runs[0], runs[1])
    other = build_model(_cfg(method, batch_size=16, seed=1), _dims(views))
    other.fit(views)
    assert not torch.allclose(other.embed(views), runs[0])


def test_fit_leaves_global_rng_alone(small_views) -> None:
    views = small_views()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model(_cfg(), _dims(views)).fit(views)
    assert torch.equal(torch.rand(3), expected)


def test_step_api_reproduces_fit(small_views) -> None:
    """fit() is a thin loop over stages() / loss(): driving it by hand gives the same weights."""
    views = small_views()
    reference = build_model(_cfg(), _dims(views))
    reference.fit(views)

    model = build_model(_cfg(), _dims(views))
    with torch.random.fork_rng():
        torch.manual_seed(model.config.seed)
        gen = model.make_generator()
        for stage in model.stages():
            opt = model.make_optimizer()
            for _ in range(stage.epochs):
                model.module.train()
                opt.zero_grad()
                total, parts = model.loss(views, None, stage.name, gen)
                assert set(parts) and all(p.ndim == 0 for p in parts.values())
                total.backward()
                opt.step()
    assert torch.equal(model.embed(views), reference.embed(views))


@pytest.mark.parametrize("method", ["cookie", "gfactorcl", "pair_only", "raw", "raw_pca"])
def test_masks_give_zero_blocks_never_nan(method: str, small_views) -> None:
    views = small_views()
    mask_b = torch.arange(64) % 3 != 0
    mask_c = torch.arange(64) % 5 != 0
    views["b"][~mask_b] = float("nan")  # whatever sits in masked rows is ignored
    masks = {"b": mask_b, "c": mask_c}
    model = build_model(_cfg(method, use_club=True), _dims(views))
    history = model.fit(views, masks)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    emb = model.embed(views, masks)
    assert torch.isfinite(emb).all()
    for name, sl in model.block_slices.items():
        if name in ("unique_b", "raw_b"):
            assert torch.all(emb[~mask_b, sl] == 0) and torch.all(emb[mask_b, sl].norm(dim=1) > 0)
        if name == "shared_b__c":
            both_missing = ~mask_b & ~mask_c
            assert both_missing.any() and torch.all(emb[both_missing, sl] == 0)
            assert torch.all(emb[mask_b | mask_c, sl].norm(dim=1) > 0.99)


def test_masked_rows_do_not_reach_the_loss(small_views) -> None:
    views = small_views()
    mask = torch.arange(64) >= 8
    model = build_model(_cfg(dropout=0.0, augmentations=["identity"]), _dims(views))
    gen = lambda: model.make_generator()  # noqa: E731
    base, _ = model.loss(views, {"a": mask}, "pair", gen())
    changed = {**views, "a": views["a"].clone()}
    changed["a"][~mask] = 1e6
    again, _ = model.loss(changed, {"a": mask}, "pair", gen())
    assert torch.allclose(base, again)


def test_unmasked_nan_rejected(small_views) -> None:
    views = small_views()
    views["a"][0, 0] = float("nan")
    model = build_model(_cfg(), _dims(views))
    with pytest.raises(ValueError, match="NaN"):
        model.fit(views)


def test_input_validation(small_views) -> None:
    views = small_views()
    model = build_model(_cfg(), _dims(views))
    with pytest.raises(KeyError):
        model.embed({"a": views["a"], "b": views["b"]})
    with pytest.raises(ValueError):
        model.embed({**views, "a": views["a"][:, :3]})
    # numpy input and extra views are accepted
    emb = model.embed({**{k: v.numpy() for k, v in views.items()}, "extra": views["a"]})
    assert emb.shape[0] == 64


def test_minibatch_training_runs_every_batch(small_views) -> None:
    views = small_views(n=65)
    model = build_model(_cfg(batch_size=32, epochs_intra=2, epochs_pair=1), _dims(views))
    calls = []
    original = model.module.forward
    model.module.forward = lambda *a, **k: (calls.append(a[0]["a"].shape[0]), original(*a, **k))[1]  # type: ignore[method-assign]
    model.fit(views)
    assert calls == [32, 33] * 3  # a 1-row tail (no negatives) joins the previous batch


def test_baselines(small_views) -> None:
    views = small_views()
    raw = build_model(_cfg("raw"), _dims(views))
    raw.fit(views)
    emb = raw.embed(views)
    assert raw.block_names == ["raw_a", "raw_b", "raw_c"] and emb.shape == (64, 24)
    assert torch.allclose(emb.mean(0), torch.zeros(24), atol=1e-5)
    pca = build_model(_cfg("raw_pca"), _dims(views))
    pca.fit(views)
    assert pca.embed(views).shape == (64, 24)  # min((3 + 3) * 8, 24 features)
    single = build_model(_cfg("single_view"), _dims(views))
    single.fit(views)
    assert single.view_names == ["b"] and single.embed(views).shape == (64, 7)
    assert raw.stages() == [] and raw.num_parameters() == 0


def test_ddp_wrapper_drives_the_model(small_views, tmp_path) -> None:
    """A one-process gloo DDP wrapper around .module trains through loss(..., module=ddp)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    views = small_views()
    model = build_model(_cfg(), _dims(views))
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = DDP(model.module, find_unused_parameters=True)
        gen = model.make_generator(offset=dist.get_rank())
        for stage in model.stages():
            opt = model.make_optimizer(ddp.parameters())
            for _ in range(2):
                opt.zero_grad()
                total, _ = model.loss(views, {"c": torch.arange(64) > 3}, stage.name, gen, module=ddp)
                total.backward()
                opt.step()
    finally:
        dist.destroy_process_group()
    assert torch.isfinite(model.embed(views)).all()


@pytest.mark.parametrize("lambda_intra", [0.0, 0.3])
def test_stage_two_trains_unique_heads_only_with_lambda_intra(lambda_intra: float, small_views) -> None:
    """Stage 'pair' optimises the pair terms plus lambda_intra x the intra terms: at 0 the unique heads keep
    their stage-1 weights (the encoders they read still learn), above 0 they train on."""
    views = small_views()
    model = build_model(_cfg(lambda_intra=lambda_intra), _dims(views))
    gen = model.make_generator()
    before = [p.detach().clone() for p in model.module.unique_heads.parameters()]
    enc_before = [p.detach().clone() for p in model.module.encoders.parameters()]
    opt = model.make_optimizer()
    model.module.train()
    opt.zero_grad()
    total, parts = model.loss(views, None, "pair", gen)
    total.backward()
    opt.step()
    intra_terms = {k for k in parts if k.startswith("intra/")}
    assert {k for k in parts if k.startswith("pair/")} == {"pair/a__b", "pair/a__c", "pair/b__c"}
    unique_moved = any(not torch.equal(a, b) for a, b in zip(before, model.module.unique_heads.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(enc_before, model.module.encoders.parameters()))
    if lambda_intra == 0:
        assert not intra_terms and not unique_moved
    else:
        assert intra_terms == {"intra/a", "intra/b", "intra/c"} and unique_moved
