"""The ``train:`` section of a project config: how to run, track, checkpoint and register training.

Pure pydantic (no torch, no Spark): :mod:`cookie.config` embeds it as ``Config.train``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: How a view's features are preprocessed (see :mod:`cookie.preprocessing`).
#: ``auto`` picks from the view kind: flows (log1p'd or not by the ETL's ``flow_values``) and raster statistics
#: are z-scored; points, lines, polygons are counts/lengths/shares -> log1p -> z-score; vectors are
#: log1p'd when every value is non-negative and not already log1p'd by the ETL, else z-scored.
PreprocessKind = Literal["auto", "counts", "zscore", "shares", "embedding"]

DEFAULT_PIP_REQUIREMENTS: tuple[str, ...] = (
    "torch==2.13.0",
    "mlflow==3.17.2",
    "numpy",
    "pandas<3",
    "pydantic>=2.6,<3",
)


class TrainConfig(BaseModel):
    """How training runs; model hyper-parameters live in the ``model:`` section (ModelConfig)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # ---- TorchDistributor
    num_processes: int = Field(default=2, ge=1, description="ranks (processes in local mode, Spark tasks otherwise)")
    local_mode: bool = Field(default=True, description="TorchDistributor local_mode: torchrun on the driver")
    use_gpu: bool | None = Field(default=None, description="null: use CUDA when the driver sees a GPU")
    torch_threads: int = Field(default=1, ge=1, description="torch intra-op threads per rank")
    # ---- checkpoints
    checkpoint_dir: str = Field(
        default="checkpoints", description="folder (relative to the repo) of per-run checkpoints"
    )
    checkpoint_every: int = Field(
        default=50,
        ge=1,
        description="epochs between checkpoints (the last epoch and a stop point always); "
        "--resume continues from the newest one, bit-identically",
    )
    keep_checkpoints: int = Field(default=2, ge=1, description="checkpoint files kept per run")
    stop_after_epochs: int | None = Field(
        default=None, ge=1, description="stop (resumable) once this many epochs in total are done; for tests and drills"
    )
    # ---- data
    preprocess: dict[str, PreprocessKind] = Field(
        default_factory=dict, description="per-view preprocessing override; views not listed use 'auto'"
    )
    nan_policy: Literal["raise", "zero"] = Field(
        default="raise",
        description="a NaN/inf in a present row: fail (default), or treat it as the mean (0 after z-score)",
    )
    # ---- MLflow
    tracking_uri: str | None = Field(
        default=None, description="null: $MLFLOW_TRACKING_URI, else sqlite:///<repo>/mlflow.db"
    )
    registry_uri: str | None = Field(
        default=None,
        description="null: the tracking store; with output.catalog on a Databricks tracking store, databricks-uc",
    )
    experiment_name: str | None = Field(
        default=None, description="null: cookie_<config name> (training, evaluation and promotion runs)"
    )
    artifact_location: str | None = Field(
        default=None, description="new experiments only; null: <repo>/mlruns for local stores"
    )
    registered_model_name: str | None = Field(
        default=None, description="null: cookie_<config name> for CooKIE, cookie_<config name>_<method> otherwise"
    )
    alias: str = Field(default="challenger", description="alias set on the newly registered version")
    pip_requirements: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PIP_REQUIREMENTS),
        description="pip requirements logged with the registered pyfunc",
    )
    profile: bool = Field(
        default=True, description="log efficiency figures (FLOPs/step, peak memory) measured on rank 0"
    )
    log_every: int = Field(
        default=10,
        ge=1,
        description="epochs between flushes of the per-epoch metrics to MLflow (every epoch is logged, "
        "in batches; also flushed at each checkpoint and at the end)",
    )
    progress_every: int = Field(
        default=25,
        ge=1,
        description="epochs between progress lines on the console (logger cookie.train; the first "
        "and last epoch of every stage always)",
    )
    # ---- embeddings
    embed_batch_size: int = Field(default=8192, ge=1, description="rows per forward pass when embedding")

    @field_validator("alias")
    @classmethod
    def _alias(cls, v: str) -> str:
        if not v or not all(c.isalnum() or c in "_-" for c in v) or v[0].isdigit():
            raise ValueError(f"alias {v!r}: letters, digits, '_' or '-', not starting with a digit")
        return v
