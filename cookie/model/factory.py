"""``build_model``: the one place that maps ``ModelConfig.method`` to a module."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from cookie.model.base import RegionModel, RegionModule
from cookie.model.baselines import RawModule, RawPCAModule, SingleViewModule
from cookie.model.config import ModelConfig
from cookie.model.cookie import CooKIEModule
from cookie.model.gfactorcl import GFactorCLModule


def build_module(config: ModelConfig, view_dims: Mapping[str, int]) -> RegionModule:
    """The trainable module of ``config.method`` for views ``view_dims`` (in the given order)."""
    method = config.method
    if method in ("cookie", "intra_only", "pair_only"):
        return CooKIEModule(view_dims, config, variant=method)
    if method == "gfactorcl":
        return GFactorCLModule(view_dims, config)
    if method == "raw":
        return RawModule(view_dims, config)
    if method == "raw_pca":
        return RawPCAModule(view_dims, config)
    if method == "single_view":
        if config.single_view not in view_dims:
            raise KeyError(f"single_view {config.single_view!r} is not one of {list(view_dims)}")
        return SingleViewModule({config.single_view: view_dims[config.single_view]}, config)
    raise ValueError(f"unknown method {method!r}")


def build_model(config: ModelConfig, view_dims: Mapping[str, int]) -> RegionModel:
    """A fresh :class:`RegionModel`; weights are initialised from ``config.seed`` (global RNG untouched).

    ``view_dims`` maps view name -> number of features; its order is the model's view order.
    """
    if not view_dims:
        raise ValueError("no views")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        module = build_module(config, {k: int(v) for k, v in view_dims.items()})
    module.eval()
    return RegionModel(config, module)
