"""``build_model``: the one place that maps ``ModelConfig.method`` to a module."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cookie.config.model import LEARNED_METHODS, ModelConfig
from cookie.exceptions import ConfigError, InputError
from cookie.model.base import FORMAT, FORMAT_VERSION, RegionModel, RegionModule
from cookie.model.baselines import RawModule, RawPCAModule, SingleViewModule
from cookie.model.cookie import CooKIEModule
from cookie.model.ensemble import EnsembleModule
from cookie.model.gfactorcl import GFactorCLModule


def build_module(config: ModelConfig, view_dims: Mapping[str, int]) -> RegionModule:
    """The trainable module of ``config.method`` for views ``view_dims`` (in the given order); a seed ensemble of
    them with ``config.ensemble`` > 1 (learned methods)."""
    method = config.method
    if config.ensemble > 1 and method in LEARNED_METHODS:
        return EnsembleModule(view_dims, config, lambda member: build_module(member, view_dims))
    if method in ("cookie", "intra_only", "pair_only"):
        return CooKIEModule(view_dims, config, variant=method)
    if method == "gfactorcl":
        return GFactorCLModule(view_dims, config)
    if method == "raw":
        return RawModule(view_dims, config)
    if method == "raw_pca":
        return RawPCAModule(view_dims, config)
    if method == "single_view":
        name = config.single_view
        if name is None or name not in view_dims:
            raise ConfigError(f"model.single_view: {name!r} is not one of the views {list(view_dims)}")
        return SingleViewModule({name: view_dims[name]}, config)
    raise ValueError(f"unknown method {method!r}")


def build_model(config: ModelConfig, view_dims: Mapping[str, int]) -> RegionModel:
    """A fresh :class:`RegionModel`; weights are initialised from ``config.seed`` (global RNG untouched).

    ``view_dims`` maps view name -> number of features; its order is the model's view order.
    """
    if not view_dims:
        raise ConfigError("no views")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        module = build_module(config, {k: int(v) for k, v in view_dims.items()})
    module.eval()
    return RegionModel(config, module)


def model_from_state(state: Mapping[str, Any], map_location: str | torch.device = "cpu") -> RegionModel:
    """Rebuild a model from :meth:`RegionModel.state` (a saved file's contents)."""
    if state.get("format") != FORMAT:
        raise InputError("not a cookie model file")
    if int(state.get("version", 0)) > FORMAT_VERSION:
        raise InputError(f"model file version {state['version']} is newer than this code ({FORMAT_VERSION})")
    config = ModelConfig.model_validate(state["config"])
    view_dims = dict(zip(state["view_names"], state["view_dims"], strict=True))
    model = build_model(config, view_dims)
    model.module.load_state_dict(state["state_dict"])
    model.fitted = bool(state.get("fitted", True))
    model.module.eval()
    return model.to(map_location)


def load_model(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> RegionModel:
    """Rebuild a model saved with :meth:`RegionModel.save`."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    return model_from_state(state, map_location)
