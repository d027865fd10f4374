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
* :mod:`~cookie.evaluation.datasets` -- loaders for the two NYC benchmarks in ``shared/data``.

Pure numpy / scikit-learn / torch (torch only for the land-use MLP, imported lazily); no Spark, no MLflow.
"""

from cookie.evaluation.protocols import (
    ProtocolResult,
    dominant_class,
    grid_blocks,
    kmeans_clustering,
    kmeans_clustering_repeated,
    landuse_mlp,
    rf_split,
    ridge_kfold,
    ridge_kfold_repeated,
    spatial_block_cv,
)
from cookie.evaluation.published import PUBLISHED, published_records
from cookie.evaluation.report import ResultRecord, markdown_table

__all__ = [
    "PUBLISHED",
    "ProtocolResult",
    "ResultRecord",
    "dominant_class",
    "grid_blocks",
    "kmeans_clustering",
    "kmeans_clustering_repeated",
    "landuse_mlp",
    "markdown_table",
    "published_records",
    "rf_split",
    "ridge_kfold",
    "ridge_kfold_repeated",
    "spatial_block_cv",
]
