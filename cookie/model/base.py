"""One interface for every region model: :class:`RegionModel` around a :class:`RegionModule`.

The split is what lets a distributed trainer drive training step by step:
- :class:`RegionModule` is the trainable ``nn.Module``. Its ``forward`` *is* the loss
  (``forward(views, masks, stage, generator) -> (total, parts)``), so wrapping it in
  ``DistributedDataParallel`` and calling the wrapper keeps gradient synchronisation correct.
- :class:`RegionModel` holds the config, validates and orders inputs, runs the single-process
  training loop (a thin loop over :meth:`RegionModel.stages` and :meth:`RegionModel.loss`),
  computes embeddings, and saves/loads one self-describing file.

DDP notes: build the wrapper with ``find_unused_parameters=True`` (stage ``intra`` leaves the
shared heads unused), or re-wrap per stage. Terms with fewer than two valid rows on a shard still
touch their parameters (with a zero), so masks never make ranks disagree on the parameters used.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from cookie.config.model import ModelConfig
from cookie.exceptions import ConfigError, InputError
from cookie.model.augment import Augmenter

FORMAT = "cookie.model"
FORMAT_VERSION = 1

Views = Mapping[str, Tensor]
Masks = Mapping[str, Tensor | None]


@dataclass(frozen=True)
class Stage:
    """A training stage: its name (passed to ``loss``) and how many epochs it runs."""

    name: str
    epochs: int


def check_view_name(name: str) -> None:
    """View names become block and column names; keep them simple and unambiguous."""
    if not name or not all(c.isalnum() or c == "_" for c in name) or "__" in name:
        raise ConfigError(
            f"view name {name!r} must be non-empty, alphanumeric or '_', without '__' "
            "(it is used in block names such as shared_<a>__<b>)"
        )


#: Sums a tensor over every shard of the rows (identity when one process holds them all).
Reduce = Callable[[Tensor], Tensor]


def nested(modules: nn.ModuleList, index: int) -> nn.ModuleList:
    """``modules[index]`` for a ModuleList of ModuleLists (indexing is typed as returning a plain Module)."""
    inner = modules[index]
    assert isinstance(inner, nn.ModuleList)
    return inner


class RegionModule(nn.Module):
    """Trainable part of a region model; subclasses define stages, the loss and the blocks.

    Inputs arrive already validated by :class:`RegionModel`: ``views`` maps every name of
    ``view_names`` to a float tensor (B, d_m) whose masked rows are zero, ``masks`` maps a view
    name to a bool tensor (B,) (True = present) or None (all present).
    """

    def __init__(self, view_dims: Mapping[str, int], config: ModelConfig) -> None:
        super().__init__()
        for name in view_dims:
            check_view_name(name)
        self.view_names: list[str] = list(view_dims)
        self.view_dims: dict[str, int] = {k: int(v) for k, v in view_dims.items()}
        self.config = config
        self.augment: Augmenter | None = None  # learned methods: the augmentations of their contrastive views

    # ---- training ---------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        """Training stages in order; empty for statistics-only baselines."""
        return []

    def forward(
        self, views: Views, masks: Masks, stage: str, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss of one step of ``stage`` and its detached parts (for logging)."""
        raise RuntimeError(f"{type(self).__name__} has no trainable objective")

    def set_count_space(self, space: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[str]]]) -> None:
        """Tell the 'thin' augmentation where each view's counts are: view name -> (z-score mean, std, space per
        feature, one of :data:`cookie.preprocessing.COUNT_SPACES`). Views not named are left as they are."""
        if self.augment is not None:
            self.augment.set_count_space(
                {self.view_names.index(k): v for k, v in space.items() if k in self.view_names}
            )

    def prefit(self, views: Views, masks: Masks, reduce: Reduce | None = None) -> None:
        """Fit statistics (baselines) before any stage runs; learned models do nothing.

        ``reduce`` sums a tensor over every process that holds a shard of the rows (an all-reduce in
        distributed training); ``None`` means these rows are all of them. Statistics built only from
        such sums are the same whether the rows sit in one process or many.
        """

    def postfit(self, views: Views, masks: Masks, reduce: Reduce | None = None) -> None:
        """Fit what depends on the trained weights (a seed ensemble's rotations) once every stage is done;
        ``reduce`` as in :meth:`prefit`. Most modules do nothing."""

    # ---- embedding --------------------------------------------------------------------
    def block_specs(self) -> list[tuple[str, int]]:
        """(block name, width) in embedding order."""
        raise NotImplementedError

    def embed_blocks(self, views: Views, masks: Masks) -> list[Tensor]:
        """One (B, width) tensor per block, in :meth:`block_specs` order; never NaN."""
        raise NotImplementedError

    @property
    def n_objectives(self) -> int:
        """Number of contrastive objectives (CLUB terms not counted)."""
        return 0


def _as_float_tensor(x: Any, name: str) -> Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
    if t.ndim != 2:
        raise InputError(f"view {name!r} must be 2-D (regions, features), got shape {tuple(t.shape)}")
    return t.float()


def subset_rows(views: Views, masks: Masks, idx: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor | None]]:
    """The rows ``idx`` of prepared views and masks."""
    return {k: x[idx] for k, x in views.items()}, {k: (None if x is None else x[idx]) for k, x in masks.items()}


def batch_indices(n: int, batch_size: int | None, generator: torch.Generator) -> list[Tensor | None]:
    """Row indices of the steps of one epoch: ``[None]`` (full batch) or a seeded shuffle."""
    if batch_size is None or batch_size >= n:
        return [None]
    perm = torch.randperm(n, generator=generator, device=generator.device)
    chunks = list(torch.split(perm, batch_size))
    if len(chunks) > 1 and chunks[-1].numel() < 2:  # a 1-row batch has no negatives
        chunks[-2] = torch.cat([chunks[-2], chunks[-1]])
        chunks.pop()
    steps: list[Tensor | None] = [*chunks]
    return steps


class RegionModel:
    """A region representation model of any method, behind one interface.

    >>> model = build_model(ModelConfig(), {"mobility": 360, "poi": 26, "landuse": 11})
    >>> history = model.fit(views)            # list of per-epoch loss dicts
    >>> emb = model.embed(views)              # (N, embedding_dim)
    >>> emb[:, model.block_slices["shared_mobility__poi"]]
    """

    def __init__(self, config: ModelConfig, module: RegionModule) -> None:
        self.config = config
        self.module = module
        self.fitted = False

    # ---- description ------------------------------------------------------------------
    @property
    def method(self) -> str:
        return self.config.method

    @property
    def view_names(self) -> list[str]:
        """Views the model reads, in the fixed order used everywhere (blocks, state dict)."""
        return list(self.module.view_names)

    @property
    def view_dims(self) -> dict[str, int]:
        return dict(self.module.view_dims)

    @property
    def block_names(self) -> list[str]:
        """Names of the embedding blocks in column order (e.g. unique_poi, shared_mobility__poi)."""
        return [name for name, _ in self.module.block_specs()]

    @property
    def block_slices(self) -> dict[str, slice]:
        """Column slice of every block, so users can take unique or shared parts alone."""
        out: dict[str, slice] = {}
        start = 0
        for name, width in self.module.block_specs():
            out[name] = slice(start, start + width)
            start += width
        return out

    @property
    def embedding_dim(self) -> int:
        return sum(width for _, width in self.module.block_specs())

    @property
    def column_names(self) -> list[str]:
        """One name per embedding column: ``<block>_<k>``."""
        return [f"{name}_{k}" for name, width in self.module.block_specs() for k in range(width)]

    @property
    def n_objectives(self) -> int:
        return self.module.n_objectives

    def num_parameters(self, trainable_only: bool = True) -> int:
        return sum(p.numel() for p in self.module.parameters() if p.requires_grad or not trainable_only)

    @property
    def device(self) -> torch.device:
        for t in list(self.module.parameters()) + list(self.module.buffers()):
            return t.device
        return torch.device("cpu")

    def to(self, device: str | torch.device) -> RegionModel:
        self.module.to(device)
        return self

    # ---- inputs -----------------------------------------------------------------------
    def prepare(
        self, views: Mapping[str, Any], masks: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, Tensor], dict[str, Tensor | None]]:
        """Validate, order and move inputs; zero masked rows.

        Extra views in the dict are ignored. Masked rows may hold anything (even NaN); unmasked
        NaN or inf raises, because it would silently poison every embedding of the batch.
        """
        device = self.device
        out_v: dict[str, Tensor] = {}
        out_m: dict[str, Tensor | None] = {}
        n_rows: int | None = None
        masks = masks or {}
        for name in self.view_names:
            if name not in views:
                raise KeyError(f"missing view {name!r}; expected {self.view_names}")
            x = _as_float_tensor(views[name], name).to(device)
            if x.shape[1] != self.module.view_dims[name]:
                raise InputError(
                    f"view {name!r} has {x.shape[1]} features, model expects {self.module.view_dims[name]}"
                )
            if n_rows is None:
                n_rows = x.shape[0]
            elif x.shape[0] != n_rows:
                raise InputError(f"view {name!r} has {x.shape[0]} rows, others have {n_rows}")
            m = masks.get(name)
            if m is not None:
                m = torch.as_tensor(np.asarray(m) if not isinstance(m, Tensor) else m).to(device).bool().reshape(-1)
                if m.shape[0] != x.shape[0]:
                    raise InputError(f"mask of {name!r} has {m.shape[0]} rows, view has {x.shape[0]}")
                x = torch.where(m[:, None], x, torch.zeros((), device=device))
                if bool(m.all()):
                    m = None
            if not bool(torch.isfinite(x).all()):
                raise InputError(f"view {name!r} has NaN or inf in unmasked rows; mask them or impute")
            out_v[name] = x
            out_m[name] = m
        return out_v, out_m

    # ---- step API (what a distributed trainer drives) ---------------------------------
    def stages(self) -> list[Stage]:
        """Training stages in order, e.g. ``[Stage('intra', 300), Stage('pair', 300)]``."""
        return self.module.stages()

    def loss(
        self,
        batch_views: Mapping[str, Any],
        batch_masks: Mapping[str, Any] | None,
        stage: str,
        generator: torch.Generator,
        module: nn.Module | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss of one step on a batch of rows: ``(total, parts)``; call ``total.backward()``.

        ``module`` lets a trainer pass its ``DistributedDataParallel(model.module)`` wrapper so
        the forward goes through DDP; by default ``self.module`` is called.
        """
        views, masks = self.prepare(batch_views, batch_masks)
        out: tuple[Tensor, dict[str, Tensor]] = (module if module is not None else self.module)(
            views, masks, stage, generator
        )
        return out

    def make_optimizer(self, params: Any = None) -> torch.optim.Optimizer:
        """Adam with the configured learning rate and weight decay (a fresh one per stage)."""
        params = list(self.module.parameters()) if params is None else params
        return torch.optim.Adam(params, lr=self.config.lr, weight_decay=self.config.weight_decay)

    def make_generator(self, device: str | torch.device | None = None, offset: int = 0) -> torch.Generator:
        """Generator for augmentations and batch order, seeded from ``config.seed + offset``.

        A distributed trainer should pass ``offset=rank`` so that ranks draw different noise.
        """
        device = torch.device(device) if device is not None else self.device
        return torch.Generator(device=device).manual_seed(self.config.seed + offset)

    # ---- training loop ----------------------------------------------------------------
    def fit(
        self,
        views: Mapping[str, Any],
        masks: Mapping[str, Any] | None = None,
        callback: Callable[[dict[str, Any]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Train every stage on all rows; returns one dict per epoch (stage, epoch, loss, parts).

        Deterministic for a given seed on CPU: dropout draws from a forked global RNG seeded
        with ``config.seed``; augmentations and batch order from :meth:`make_generator`.
        """
        from cookie.model.early_stopping import EarlyStopping, holdout_mask

        v, m = self.prepare(views, masks)
        device = self.device
        fork_devices = [device.index or 0] if device.type == "cuda" else []
        history: list[dict[str, Any]] = []
        n = next(iter(v.values())).shape[0]
        hold = holdout_mask(n, self.config) if self.stages() else np.zeros(n, dtype=bool)
        (tv, tm), (vv, vm) = (v, m), (v, m)
        if hold.any():
            tv, tm = subset_rows(v, m, torch.from_numpy(np.flatnonzero(~hold)).to(device))
            vv, vm = subset_rows(v, m, torch.from_numpy(np.flatnonzero(hold)).to(device))
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(self.config.seed)
            generator = self.make_generator(device)
            self.module.prefit(v, m)
            for stage in self.stages():
                optimizer = self.make_optimizer()
                stopper = EarlyStopping.from_config(self.config) if hold.any() else None
                for epoch in range(stage.epochs):
                    record: dict[str, Any] = {"stage": stage.name, "epoch": epoch}
                    record.update(self.run_epoch(tv, tm, stage.name, optimizer, generator))
                    if not math.isfinite(record["loss"]):
                        raise FloatingPointError(f"non-finite loss at {stage.name} epoch {epoch}: {record}")
                    stop = False
                    if stopper is not None and stopper.due(epoch, epoch == stage.epochs - 1):
                        record["val_loss"] = self.validation_loss(vv, vm, stage.name)
                        stop = stopper.update(epoch, record["val_loss"], self.module)
                    history.append(record)
                    if callback is not None:
                        callback(record)
                    if stop:
                        break
                if stopper is not None:
                    stopper.restore(self.module)
                    if history and stopper.best_epoch >= 0:
                        history[-1]["best_epoch"] = stopper.best_epoch
            self.module.postfit(tv, tm)
        self.module.eval()
        self.fitted = True
        return history

    @torch.no_grad()
    def validation_loss(self, views: Views, masks: Masks, stage: str) -> float:
        """Loss of ``stage`` on held-out rows: eval mode, augmentations from a fixed seed (comparable checks)."""
        from cookie.model.early_stopping import VAL_SEED_OFFSET

        was_training = self.module.training
        self.module.eval()
        total, _ = self.module(views, masks, stage, self.make_generator(offset=VAL_SEED_OFFSET))
        self.module.train(was_training)
        return float(total)

    def run_epoch(
        self,
        views: Mapping[str, Tensor],
        masks: Mapping[str, Tensor | None],
        stage: str,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
    ) -> dict[str, float]:
        """One epoch of ``stage`` over prepared inputs (see :meth:`prepare`); mean loss and parts."""
        n = next(iter(views.values())).shape[0]
        self.module.train()
        sums: dict[str, float] = {}
        steps = 0
        for idx in batch_indices(n, self.config.batch_size, generator):
            bv = views if idx is None else {k: x[idx] for k, x in views.items()}
            bm = masks if idx is None else {k: (None if x is None else x[idx]) for k, x in masks.items()}
            optimizer.zero_grad(set_to_none=True)
            total, parts = self.module(bv, bm, stage, generator)
            total.backward()
            optimizer.step()
            steps += 1
            sums["loss"] = sums.get("loss", 0.0) + float(total.detach())
            for key, val in parts.items():
                sums[key] = sums.get(key, 0.0) + float(val)
        return {k: s / steps for k, s in sums.items()}

    # ---- embedding --------------------------------------------------------------------
    @torch.no_grad()
    def embed(
        self, views: Mapping[str, Any], masks: Mapping[str, Any] | None = None, batch_size: int = 65536
    ) -> Tensor:
        """Embeddings (N, embedding_dim) in eval mode, float32 on the model's device.

        Every block is L2-normalised; a block of a view missing in a row is zeros, never NaN.
        """
        v, m = self.prepare(views, masks)
        n = next(iter(v.values())).shape[0]
        was_training = self.module.training
        self.module.eval()
        chunks = []
        for start in range(0, n, batch_size):
            sl = slice(start, start + batch_size)
            bv = {k: x[sl] for k, x in v.items()}
            bm = {k: (None if x is None else x[sl]) for k, x in m.items()}
            chunks.append(torch.cat(self.module.embed_blocks(bv, bm), dim=1))
        self.module.train(was_training)
        out = torch.cat(chunks, dim=0) if chunks else torch.zeros(0, self.embedding_dim, device=self.device)
        return torch.nan_to_num(out, nan=0.0)

    # ---- persistence ------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild the model: config, views, weights."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "config": self.config.model_dump(mode="json"),
            "view_names": self.view_names,
            "view_dims": [self.module.view_dims[k] for k in self.view_names],
            "block_names": self.block_names,
            "fitted": self.fitted,
            "state_dict": {k: t.detach().cpu() for k, t in self.module.state_dict().items()},
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a single file (torch.save of :meth:`state`); loadable with ``weights_only``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state(), path)
        return path

    def __repr__(self) -> str:
        return (
            f"RegionModel(method={self.method!r}, views={self.view_names}, blocks={len(self.block_names)}, "
            f"dim={self.embedding_dim}, params={self.num_parameters()})"
        )
