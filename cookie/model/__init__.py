"""Pure-PyTorch region models: CooKIE, GFactorCL and baselines behind one interface.

No Spark and no MLflow here: the ETL feeds tensors in, the trainer and evaluation take
embeddings out.

    from cookie.model import ModelConfig, build_model
    model = build_model(ModelConfig(method="cookie"), {"mobility": 360, "poi": 26, "landuse": 11})
    history = model.fit(views, masks)     # views: {name: (N, d_m) float tensor}
    emb = model.embed(views, masks)       # (N, (M + M(M-1)/2) * d), blocks in model.block_slices
"""

from cookie.config.model import ModelConfig
from cookie.model.base import RegionModel, RegionModule, Stage
from cookie.model.factory import build_model, build_module, load_model, model_from_state
from cookie.model.losses import info_nce

__all__ = [
    "ModelConfig",
    "RegionModel",
    "RegionModule",
    "Stage",
    "build_model",
    "build_module",
    "info_nce",
    "load_model",
    "model_from_state",
]
