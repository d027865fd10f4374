"""The MLflow pyfunc registered for every trained model: raw view features -> region embedding.

Input: a pandas DataFrame with one ``double`` column per feature, ``<view>__<feature>``, optional
``boolean`` mask columns ``<view>___present`` (absent = the region has the view) and an optional
``region_id`` (named in error messages). Output: a float32 matrix (rows, embedding_dim), columns
in the order of the model's blocks (``unique_<view>``, ``shared_<a>__<b>``), as in the
``embeddings`` table. The preprocessing statistics travel inside the model (artifact
``preprocessing``), so callers pass the ETL's raw features.

This module imports no Spark: the logged model needs only torch, numpy, pandas, pydantic, mlflow
and the ``cookie`` package shipped with it through ``code_paths``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
import numpy as np
from mlflow.pyfunc.model import PythonModel, PythonModelContext

if TYPE_CHECKING:
    from mlflow.models import ModelSignature

    from cookie.serving.embedder import Embedder

MODEL_ARTIFACT = "region_model"
STATS_ARTIFACT = "preprocessing"


# mlflow inspects predict() when the class is created and suggests type hints; the explicit
# signature logged with the model does the validation instead.
warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method", category=UserWarning)


class RegionEmbeddingModel(PythonModel):
    """pyfunc wrapper of :class:`cookie.serving.embedder.Embedder`."""

    def __init__(self, batch_size: int = 8192) -> None:
        self.batch_size = batch_size
        self._embedder: Embedder | None = None

    def load_context(self, context: PythonModelContext) -> None:
        from cookie.serving.embedder import Embedder

        self._embedder = Embedder.from_files(
            context.artifacts[MODEL_ARTIFACT], context.artifacts[STATS_ARTIFACT], self.batch_size
        )

    # A type comment, not annotations: mlflow reads predict()'s annotations to infer the signature and to
    # validate inputs, which the explicit signature logged with the model does instead.
    def predict(self, context, model_input, params=None):
        # type: (PythonModelContext, Any, dict[str, Any] | None) -> Any
        import pandas as pd

        if self._embedder is None:
            self.load_context(context)
        embedder = self._embedder
        assert embedder is not None  # set by load_context
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return embedder.embed(frame)


def signature(stats: Any, embedding_dim: int) -> ModelSignature:
    """Input: one double column per feature, optional boolean masks and region_id; output (-1, D) float32."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    from cookie import constants as C
    from cookie.preprocessing import present_column

    cols: list[ColSpec | TensorSpec] = [ColSpec("double", c) for c in stats.input_columns()]
    cols += [ColSpec("boolean", present_column(v.name), required=False) for v in stats.views]
    cols.append(ColSpec("string", C.REGION_ID, required=False))
    return ModelSignature(inputs=Schema(cols), outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, embedding_dim))]))


def cookie_code_path() -> str:
    """The ``cookie`` package folder, shipped with the model so it imports wherever it is loaded."""
    import cookie

    return str(Path(cookie.__file__).resolve().parent)


def log_pyfunc(
    model: Any, stats: Any, workdir: str | os.PathLike[str], pip_requirements: list[str], batch_size: int = 8192
) -> Any:
    """Log the pyfunc (model file + preprocessing statistics + cookie code) into the active run."""
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    model_path = model.save(wd / "region_model.pt")
    stats_path = wd / "preprocessing.json"
    stats_path.write_text(stats.to_json())
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=RegionEmbeddingModel(batch_size=batch_size),
        artifacts={MODEL_ARTIFACT: str(model_path), STATS_ARTIFACT: str(stats_path)},
        code_paths=[cookie_code_path()],
        pip_requirements=list(pip_requirements),
        signature=signature(stats, model.embedding_dim),
    )
