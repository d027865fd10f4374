"""Pure-PyTorch region models: CooKIE, GFactorCL and baselines behind one interface.

No Spark and no MLflow here: the ETL feeds tensors in, the trainer and evaluation take
embeddings out.

    from cookie.model import ModelConfig, build_model
    model = build_model(ModelConfig(method="cookie"), {"mobility": 360, "poi": 26, "landuse": 11})
    history = model.fit(views, masks)     # views: {name: (N, d_m) float tensor}
    emb = model.embed(views, masks)       # (N, (M + M(M-1)/2) * d), blocks in model.block_slices
"""

from cookie.model.base import RegionModel, RegionModule, Stage
from cookie.model.config import ModelConfig
from cookie.model.factory import build_model, build_module
from cookie.model.losses import info_nce
from cookie.model.preprocess import Standardizer, log1p_zscore, prepare_view, zscore

__all__ = [
    "ModelConfig",
    "RegionModel",
    "RegionModule",
    "Stage",
    "Standardizer",
    "build_model",
    "build_module",
    "info_nce",
    "log1p_zscore",
    "prepare_view",
    "zscore",
]
