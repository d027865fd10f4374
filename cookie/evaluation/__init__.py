"""Downstream evaluation of frozen region embeddings, with the published protocols.

Modules:

* :mod:`~cookie.evaluation.metrics` -- MAE / RMSE / R2, L1 / KL / cosine for distributions,
  accuracy / macro-F1, NMI / ARI;
* :mod:`~cookie.evaluation.protocols` -- Ridge K-fold (MVURE / MGFN / HREP / HAFusion), KMeans clustering,
  RegionDCL's random-forest split and land-use MLP, dominant-class classification, repeated shuffled and
  spatial-block variants;
* :mod:`~cookie.evaluation.published` -- the published reference numbers as records;
* :mod:`~cookie.evaluation.report` -- markdown tables from records;
* :mod:`~cookie.evaluation.maps` -- PNG maps (predicted vs actual, embedding PCA as RGB);
* :mod:`~cookie.evaluation.datasets` -- loaders for the two NYC benchmarks in ``shared/data``;
* :mod:`~cookie.evaluation.config` -- the ``evaluation:`` config section (:class:`EvaluationConfig`);
* :mod:`~cookie.evaluation.tables` -- regions / labels / embeddings from the Delta warehouse, aligned by id;
* :mod:`~cookie.evaluation.runner` -- configured tasks on one embedding, the report (markdown + maps);
* :mod:`~cookie.evaluation.registry` -- MLflow: resolve a model version, log an evaluation, read scores;
* :mod:`~cookie.evaluation.pipeline` -- the evaluate job (version -> metrics, report, MLflow);
* :mod:`~cookie.evaluation.promotion` -- champion / challenger decision and alias move;
* :mod:`~cookie.evaluation.quality` -- the quality benchmark's preprocessing (spatial context) and
  validation-split selection.

The protocol modules are pure numpy / scikit-learn / torch (torch only for the land-use MLP); MLflow and
deltalake are imported only by the registry / tables modules. Names below are imported lazily, so that
``cookie.config`` can import :mod:`cookie.evaluation.config` without loading scikit-learn.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ProtocolResult": "protocols",
    "dominant_class": "protocols",
    "grid_blocks": "protocols",
    "kmeans_clustering": "protocols",
    "kmeans_clustering_repeated": "protocols",
    "landuse_mlp": "protocols",
    "rf_split": "protocols",
    "ridge_kfold": "protocols",
    "ridge_kfold_repeated": "protocols",
    "spatial_block_cv": "protocols",
    "PUBLISHED": "published",
    "published_records": "published",
    "ResultRecord": "report",
    "markdown_table": "report",
    "EvaluationConfig": "config",
    "TaskConfig": "config",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'cookie.evaluation' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"cookie.evaluation.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
