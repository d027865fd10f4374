"""Configuration of the region models (the ``model:`` section of the project's YAML config).

Self-contained on purpose: the project config embeds :class:`ModelConfig` as it is, and a saved
model file stores ``ModelConfig.model_dump()`` so that it can be rebuilt without the rest of the
project configuration.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Method = Literal["cookie", "gfactorcl", "intra_only", "pair_only", "raw", "raw_pca", "single_view"]
Augmentation = Literal["noise", "mask", "mixup", "identity", "thin"]

#: Methods that learn weights with contrastive objectives (the others only fit statistics).
LEARNED_METHODS: frozenset[str] = frozenset({"cookie", "gfactorcl", "intra_only", "pair_only"})


def _default_augmentations() -> list[Augmentation]:
    return ["noise", "mask"]


class ModelConfig(BaseModel):
    """Hyper-parameters of one region model; defaults follow the method specification sections 2-3."""

    model_config = ConfigDict(extra="forbid")

    method: Method = Field(
        default="cookie",
        description="cookie, gfactorcl, the ablations intra_only and pair_only, or the baselines raw (z-scored views side by side), raw_pca (PCA to CooKIE's width) and single_view",
    )
    embed_dim: int = Field(default=64, ge=1, description="d, width of every encoder output and head block")
    hidden_dim: int = Field(default=256, ge=1, description="hidden width of the per-view MLP encoders")
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0, description="dropout in the encoders")
    tau: float = Field(default=0.1, gt=0.0, description="InfoNCE temperature")
    lambda_intra: float = Field(
        default=0.0,
        ge=0.0,
        description="weight of the intra-view terms kept in stage 2 (the specification's default is 1). Ours: 0, so "
        "stage 2 trains the pairwise terms only, from the pretrained encoders, and the unique heads keep their "
        "stage-1 weights (Adam's steps do not shrink with the weight: any value above 0 retrains them)",
    )
    use_club: bool = Field(default=False, description="add the CLUB-style removal terms (and their critics)")
    beta_club: float = Field(default=0.1, ge=0.0, description="weight of the CLUB removal terms")
    augmentations: list[Augmentation] = Field(
        default_factory=_default_augmentations,
        description="augmentations of the contrastive views, of noise, mask, mixup, identity, thin (Poisson "
        "thinning of the count features: points, lines and polygons views, a flows view's OD cells and trip totals, "
        "vectors preprocessed as counts or log1p'd by the ETL; features that are no counts pass unchanged)",
    )
    augment_mode: Literal["compose", "choose"] = Field(
        default="compose",
        description="(ours) 'compose' applies every listed augmentation in order; 'choose' picks one of them per row",
    )
    pair_augment: bool = Field(
        default=True,
        description="(ours) feed the pairwise objectives the augmented views x' of the intra terms; "
        "False is the literal NCE(s_ij^i(f_i(x_i)), s_ij^j(f_j(x_j))) on clean views, which memorises "
        "small data sets (Manhattan-180: pair_only R2 0.54/0.59 clean vs 0.65/0.73 augmented)",
    )
    shared_blocks: Literal["auto", "mean", "each"] = Field(
        default="auto",
        description="(ours) how the heads of one shared objective become blocks of the embedding: 'mean' gives one "
        "block per objective, the mean of its heads' L2-normalised estimates (the specification's z_ij = "
        "(s_ij^i + s_ij^j) / 2 for CooKIE's pairs; shared_<a>__<b>[__<c>..]); 'each' keeps every head's estimate as "
        "its own block (shared_<subset>_from_<view>, as the specification has GFactorCL do); 'auto' is the "
        "specification's readout of each method: 'mean' for CooKIE and pair_only, 'each' for GFactorCL. Training is "
        "the same; set one value for every method to compare them at the same readout. (Was pair_blocks: "
        "mean / both, which is still read)",
    )
    noise_sigma: float = Field(default=0.1, ge=0.0, description="std of the Gaussian noise augmentation")
    mask_prob: float = Field(
        default=0.7,
        ge=0.0,
        lt=1.0,
        description="share of features zeroed by the mask augmentation (ours: 0.7, where FactorCL uses 0.2; "
        "every learned method gets the same augmentations)",
    )
    thin_keep: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="(ours) 'thin' draws Poisson(thin_keep * count) / thin_keep: 1 is Poisson resampling, lower thins harder",
    )
    epochs_intra: int = Field(default=300, ge=0, description="stage-1 epochs (GFactorCL: joint epochs = intra + pair)")
    epochs_pair: int = Field(default=300, ge=0, description="stage-2 epochs")
    lr: float = Field(default=1e-3, gt=0.0, description="Adam learning rate")
    weight_decay: float = Field(default=0.0, ge=0.0, description="Adam weight decay")
    batch_size: int | None = Field(default=None, ge=2, description="rows per step; null: full batch")
    val_fraction: float = Field(
        default=0.1,
        ge=0.0,
        lt=0.5,
        description="(ours) share of regions held out of training; each stage stops on their contrastive loss "
        "(label-free early stopping; the epochs are then upper bounds). 0 trains every epoch on all regions; "
        "fewer than 8 held-out regions per process also turns it off",
    )
    patience: int = Field(default=20, ge=1, description="epochs without a held-out improvement before a stage stops")
    min_delta: float = Field(default=0.01, ge=0.0, description="relative held-out loss decrease that counts as one")
    val_every: int = Field(default=5, ge=1, description="epochs between held-out loss checks")
    seed: int = Field(default=0, description="seeds the weights, augmentations, batch order and held-out regions")
    ensemble: int = Field(
        default=1,
        ge=1,
        description="(ours) members of a seed ensemble trained side by side (learned methods; the baselines ignore "
        "it): member k starts from its own weights, dropout and augmentations; after training each block of every "
        "member is rotated onto the members' mean by orthogonal Procrustes on the training regions (no labels) and "
        "the embedding block is their average, L2-normalised. Costs k times the training and embedding compute",
    )
    single_view: str | None = Field(default=None, description="the view kept by method='single_view'")

    @model_validator(mode="before")
    @classmethod
    def _legacy_pair_blocks(cls, data: Any) -> Any:
        """``pair_blocks: mean | both`` (configs and saved models before ``shared_blocks``) read as
        ``shared_blocks: auto | each``: the same embedding for the methods it applied to (CooKIE's)."""
        if isinstance(data, dict) and "pair_blocks" in data:
            data = dict(data)
            old = data.pop("pair_blocks")
            if "shared_blocks" in data:
                raise ValueError("give shared_blocks only: pair_blocks is its former name")
            legacy = {"mean": "auto", "both": "each"}
            if old not in legacy:
                raise ValueError(f"pair_blocks (now shared_blocks) must be 'mean' or 'both', got {old!r}")
            data["shared_blocks"] = legacy[old]
        return data

    def shared_readout(self) -> Literal["mean", "each"]:
        """The readout ``shared_blocks`` gives this method ('auto' resolved)."""
        if self.shared_blocks != "auto":
            return self.shared_blocks
        return "each" if self.method == "gfactorcl" else "mean"

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.method == "single_view" and not self.single_view:
            raise ValueError("method='single_view' needs single_view=<view name>")
        if not self.augmentations:
            raise ValueError("augmentations must not be empty (use ['identity'] for none)")
        problem = untrained_blocks(self)
        if problem:
            raise ValueError(problem)
        return self


def untrained_blocks(config: ModelConfig) -> str | None:
    """Why a learned method would register (partly) untrained weights with these epochs, or None.

    Every stage of a method with 0 epochs would register a random model; within CooKIE, 0 pairwise
    epochs leave the shared heads random, and 0 intra-view epochs with ``lambda_intra: 0`` the unique
    heads. (The statistics-only methods ignore the epochs.)
    """
    m, intra, pair = config.method, config.epochs_intra, config.epochs_pair
    if m == "gfactorcl" and intra + pair == 0:
        return "method 'gfactorcl' trains epochs_intra + epochs_pair joint epochs: both are 0, so nothing would train"
    if m == "intra_only" and intra == 0:
        return "method 'intra_only' trains only stage 'intra': epochs_intra must be at least 1"
    if m == "pair_only" and pair == 0:
        return "method 'pair_only' trains only stage 'pair': epochs_pair must be at least 1"
    if m == "cookie":
        if intra == 0 and pair == 0:
            return "method 'cookie' with epochs_intra: 0 and epochs_pair: 0 would register an untrained model"
        if pair == 0:
            return (
                "method 'cookie' with epochs_pair: 0 leaves the shared heads untrained; "
                "set epochs_pair >= 1, or use method 'intra_only'"
            )
        if intra == 0 and config.lambda_intra == 0:
            return (
                "method 'cookie' with epochs_intra: 0 and lambda_intra: 0 leaves the unique heads untrained; "
                "set epochs_intra >= 1 or lambda_intra > 0, or use method 'pair_only'"
            )
    return None
