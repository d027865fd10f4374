"""Raw view features (flat columns) -> region embeddings, with the training preprocessing.

One class used by the Spark tasks that fill the ``embeddings`` table and by the registered MLflow
model, so both give the same vectors. Input: a pandas DataFrame with one column per feature,
``<view>__<feature>``, and optional mask columns ``<view>___present`` (missing = present).
No Spark and no MLflow here.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cookie import constants as C
from cookie.exceptions import InputError
from cookie.preprocessing import FeatureStats, present_column, transform_view

if TYPE_CHECKING:
    from cookie.model import RegionModel


class Embedder:
    """A trained :class:`~cookie.model.RegionModel` plus its preprocessing statistics."""

    def __init__(self, model: RegionModel, stats: FeatureStats, batch_size: int = 8192) -> None:
        if list(model.view_names) != stats.view_names:
            raise ValueError(f"model views {model.view_names} differ from the statistics' {stats.view_names}")
        self.model = model
        self.stats = stats
        self.batch_size = batch_size
        self.model.module.eval()

    @classmethod
    def from_state(
        cls, state: dict[str, Any], stats: dict[str, Any] | FeatureStats, batch_size: int = 8192
    ) -> Embedder:
        from cookie.model import model_from_state

        st = stats if isinstance(stats, FeatureStats) else FeatureStats.from_dict(stats)
        return cls(model_from_state(state), st, batch_size)

    @classmethod
    def from_bytes(cls, model_bytes: bytes, stats: dict[str, Any], batch_size: int = 8192) -> Embedder:
        import torch

        state = torch.load(io.BytesIO(model_bytes), map_location="cpu", weights_only=True)
        return cls.from_state(state, stats, batch_size)

    @classmethod
    def from_files(cls, model_path: str, stats_path: str, batch_size: int = 8192) -> Embedder:
        from pathlib import Path

        from cookie.model import load_model

        stats = FeatureStats.from_json(Path(stats_path).read_text())
        return cls(load_model(model_path), stats, batch_size)

    # ---- description
    @property
    def block_names(self) -> list[str]:
        return self.model.block_names

    @property
    def embedding_dim(self) -> int:
        return int(self.model.embedding_dim)

    # ---- inputs
    def inputs(self, frame: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Preprocessed views (float32) and masks from a flat frame."""
        missing = [c for c in self.stats.input_columns() if c not in frame.columns]
        if missing:
            raise KeyError(
                f"{len(missing)} feature column(s) missing, e.g. {missing[:5]}; columns are named <view>__<feature>"
            )
        ids = frame[C.REGION_ID].to_numpy() if C.REGION_ID in frame.columns else None
        views, masks = {}, {}
        for vs in self.stats.views:
            x = frame[vs.columns].to_numpy(dtype=np.float64, na_value=np.nan)
            pc = present_column(vs.name)
            if pc in frame.columns:
                present = frame[pc].eq(True).to_numpy()
            else:
                present = np.ones(len(frame), dtype=bool)
            try:
                views[vs.name] = transform_view(x, present, vs, self.stats.nan_policy, region_ids=ids)
            except ValueError as exc:  # a NaN in a present row under nan_policy 'raise', a shape
                raise InputError(str(exc)) from exc
            masks[vs.name] = present
        return views, masks

    def embed(self, frame: pd.DataFrame) -> np.ndarray:
        """(N, embedding_dim) float32 embeddings of the rows of ``frame``."""
        import torch

        views, masks = self.inputs(frame)
        with torch.no_grad():
            out = self.model.embed(
                {k: torch.from_numpy(v) for k, v in views.items()},
                {k: torch.from_numpy(m) for k, m in masks.items()},
                batch_size=self.batch_size,
            )
        return out.cpu().numpy().astype(np.float32, copy=False)

    def embedding_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """region_id, embedding and one column per block (lists of float32), as the table stores them."""
        emb = self.embed(frame)
        out = pd.DataFrame({C.REGION_ID: frame[C.REGION_ID].astype(str).to_numpy()})
        out["embedding"] = list(emb)
        for name, sl in self.model.block_slices.items():
            out[name] = list(np.ascontiguousarray(emb[:, sl]))
        return out


def map_embeddings(
    model_bytes: Any, stats: dict[str, Any], batch_size: int, threads: int = 1
) -> Callable[[Iterable[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """A ``mapInPandas`` function: flat feature frames in, :meth:`Embedder.embedding_frame` out.

    ``model_bytes``: the saved model (``torch.save`` of ``RegionModel.state()``), or a Spark
    broadcast of it (so each executor fetches it once).
    """

    def fn(frames: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import torch

        torch.set_num_threads(threads)
        raw = model_bytes.value if hasattr(model_bytes, "value") else model_bytes
        embedder = Embedder.from_bytes(raw, stats, batch_size)
        for frame in frames:
            if len(frame):
                yield embedder.embedding_frame(frame)

    return fn
