"""The ``evaluation:`` section of a project config: which label tables, which protocols, which metric decides.

A task reads one label table (``label_<label>`` under the config's warehouse), takes one or more of its
columns, and runs one protocol of :mod:`cookie.evaluation.protocols` on the frozen embeddings of the
regions that have both an embedding and the label. Its metrics are named
``<task name>.<protocol>.<metric>`` (e.g. ``crime.ridge_kfold.R2``, ``crime.ridge_kfold_repeated.R2`` and
``crime.ridge_kfold_repeated.R2_std``); :attr:`EvaluationConfig.primary_metric` is one such name and decides
promotion (``jobs/promote.py``).

Example (conf/manhattan180.yaml)::

    evaluation:
      primary_metric: crime.ridge_kfold.R2
      tasks:
        - {name: crime, label: crime, columns: [crime_count], protocol: ridge_kfold, options: {n_splits: 5}}
        - {name: crime, label: crime, columns: [crime_count], protocol: ridge_kfold_repeated}
        - {name: district, label: district, columns: [community_district], protocol: kmeans,
           options: {n_clusters: 12, random_state: 3}}

Every protocol's fixed hyper-parameters come from the published code (see the protocol functions); no
protocol chooses an epoch, model or hyper-parameter on test rows.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "HIGHER_IS_BETTER",
    "LOWER_IS_BETTER",
    "PROTOCOLS",
    "EvaluationConfig",
    "TaskConfig",
    "metric_direction",
]

Protocol = Literal[
    "ridge_kfold",
    "ridge_kfold_repeated",
    "rf_split",
    "landuse_mlp",
    "dominant_class",
    "kmeans",
    "kmeans_repeated",
    "spatial_block",
]
PROTOCOLS: tuple[str, ...] = Protocol.__args__  # type: ignore[attr-defined]

#: protocols whose target is one numeric column (regression)
REGRESSION_PROTOCOLS = frozenset({"ridge_kfold", "ridge_kfold_repeated", "rf_split", "spatial_block"})
#: protocols whose target is a class-share distribution (several columns)
DISTRIBUTION_PROTOCOLS = frozenset({"landuse_mlp", "dominant_class"})
#: protocols whose target is a class label
CLUSTERING_PROTOCOLS = frozenset({"kmeans", "kmeans_repeated"})

HIGHER_IS_BETTER = frozenset({"R2", "NMI", "ARI", "accuracy", "macro_F1", "cosine"})
LOWER_IS_BETTER = frozenset({"MAE", "RMSE", "L1", "KL"})

# options each protocol accepts (passed as keyword arguments to the protocol function)
_OPTIONS: dict[str, set[str]] = {
    "ridge_kfold": {"n_splits", "alpha", "clip_min"},
    "ridge_kfold_repeated": {"n_splits", "alpha", "seeds", "clip_min"},
    "rf_split": {"seeds", "test_size", "n_estimators", "n_jobs"},
    "landuse_mlp": {
        "seeds",
        "epochs",
        "test_size",
        "val_size",
        "hidden",
        "lr",
        "step_size",
        "gamma",
        "batch_size",
        "continue_training",
        "num_threads",
    },
    "dominant_class": {"n_splits", "seeds", "C", "max_iter", "standardize", "drop_empty"},
    "kmeans": {"n_clusters", "random_state", "n_init"},
    "kmeans_repeated": {"n_clusters", "seeds", "n_init"},
    # blocks: grid of the region centroids, n_bins (int or [nx, ny]) or cell_size (degrees)
    "spatial_block": {
        "n_splits",
        "model",
        "alpha",
        "seeds",
        "n_estimators",
        "n_jobs",
        "clip_min",
        "n_bins",
        "cell_size",
    },
}

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_\-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskConfig(_Strict):
    """One downstream task: a label, the columns to predict, a protocol and its options."""

    name: str = Field(pattern=_NAME, description="task name used in metric names, e.g. 'crime'")
    label: str = Field(description="label table: 'crime' reads 'label_crime' (a full 'label_*' name also works)")
    columns: list[str] = Field(
        min_length=1, description="target column(s) of the label table; shell patterns allowed, e.g. 'share_*'"
    )
    exclude_columns: list[str] = Field(default_factory=list, description="columns (or patterns) dropped from columns")
    protocol: Protocol = Field(description="evaluation protocol (cookie.evaluation.protocols)")
    options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the protocol")
    subset_column: str | None = Field(
        default=None,
        description="label column that must be true / 1 for a region to be evaluated (e.g. in_regiondcl_eval_subset)",
    )
    subset_label: str | None = Field(
        default=None, description="label table holding subset_column (default: the task's own)"
    )
    require_present: bool = Field(
        default=True,
        description="evaluate only regions whose label row has _present = true (False: absent rows count as 0)",
    )
    normalise_rows: bool = Field(
        default=False, description="distribution tasks: divide each row by its sum (rows summing to 0 are dropped)"
    )
    maps: bool = Field(default=True, description="draw a predicted-vs-actual map (regression tasks)")

    @property
    def table(self) -> str:
        return self.label if self.label.startswith("label_") else f"label_{self.label}"

    @property
    def subset_table(self) -> str | None:
        if self.subset_column is None:
            return None
        lab = self.subset_label or self.label
        return lab if lab.startswith("label_") else f"label_{lab}"

    @property
    def has_patterns(self) -> bool:
        return any(any(c in col for c in "*?[") for col in self.columns)

    @property
    def key(self) -> str:
        """``<name>.<protocol>``: the prefix of this task's metric names."""
        return f"{self.name}.{self.protocol}"

    @model_validator(mode="after")
    def _check(self) -> TaskConfig:
        bad = sorted(set(self.options) - _OPTIONS[self.protocol])
        if bad:
            raise ValueError(
                f"protocol {self.protocol} does not take options {bad}; allowed: {sorted(_OPTIONS[self.protocol])}"
            )
        if self.protocol in REGRESSION_PROTOCOLS | CLUSTERING_PROTOCOLS and (
            len(self.columns) != 1 or self.has_patterns
        ):
            raise ValueError(f"protocol {self.protocol} predicts one column, got {self.columns}")
        if self.protocol in DISTRIBUTION_PROTOCOLS and len(self.columns) < 2 and not self.has_patterns:
            raise ValueError(f"protocol {self.protocol} needs the class-share columns (2 or more), got {self.columns}")
        if self.protocol == "spatial_block" and ("n_bins" in self.options) == ("cell_size" in self.options):
            raise ValueError("spatial_block needs exactly one of options.n_bins and options.cell_size")
        return self


def metric_direction(metric: str) -> Literal["max", "min"]:
    """``"max"`` if a larger value of ``metric`` (a bare name or a ``task.protocol.metric`` key) is better."""
    base = metric.rsplit(".", 1)[-1]
    if base in HIGHER_IS_BETTER:
        return "max"
    if base in LOWER_IS_BETTER:
        return "min"
    raise ValueError(f"cannot tell whether {metric!r} is better high or low; set evaluation.primary_direction")


class EvaluationConfig(_Strict):
    """How a registered model version's embeddings are evaluated and compared."""

    tasks: list[TaskConfig] = Field(default_factory=list, description="the downstream tasks")
    primary_metric: str | None = Field(
        default=None, description="'<task>.<protocol>.<metric>' that decides promotion, e.g. 'crime.ridge_kfold.R2'"
    )
    primary_direction: Literal["auto", "max", "min"] = Field(
        default="auto",
        description="whether larger is better; auto: from the metric name (R2, NMI, ... larger; MAE, ... smaller)",
    )
    min_improvement: float = Field(
        default=0.0, ge=0.0, description="the challenger must beat the champion by more than this (strictly)"
    )
    alias: str = Field(default="challenger", description="alias evaluated by default (and promoted by promote)")
    champion_alias: str = Field(default="champion", description="alias that promote moves to the better version")
    embeddings_table: str = Field(default="embeddings", description="Delta table written by the trainer")
    embedding_column: str = Field(
        default="embedding",
        description="column evaluated: 'embedding' (every block), a part ('unique' or 'shared': every block of "
        "that kind side by side) or one block column, e.g. unique_poi",
    )
    choose_parts: list[str] = Field(
        default_factory=list,
        description="candidate parts of the embedding ('embedding', 'shared', 'unique' or block names); with two "
        "or more, every supervised task chooses one per outer split inside its training rows (inner split of "
        "those rows), the same for every method; parts a table lacks are left out. Clustering uses the whole "
        "embedding. Needs embedding_column 'embedding'",
    )
    report_dir: str = Field(
        default="reports", description="local folder for reports: <report_dir>/<config>/<model>/v<version>"
    )
    region_order: Literal["natural", "lexicographic"] = Field(
        default="natural",
        description="row order of the unshuffled protocols: 'natural' sorts ids numerically when all are integers "
        "(Manhattan 0..179 as published), else as strings",
    )
    maps: bool = Field(
        default=True,
        description="write PNG maps (regression predicted vs actual; embedding PCA as RGB) and the interactive map.html",
    )
    log_to_training_run: bool = Field(
        default=True, description="also log eval metrics onto the model version's training run"
    )

    @field_validator("primary_metric")
    @classmethod
    def _metric_form(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^[^.]+\.[^.]+\.[^.]+$", v):
            raise ValueError(f"primary_metric {v!r} must be '<task>.<protocol>.<metric>'")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> EvaluationConfig:
        keys = [t.key for t in self.tasks]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"two tasks share name and protocol {dup}; give them different names")
        if self.primary_metric is not None and self.tasks:
            prefix = self.primary_metric.rsplit(".", 1)[0]
            if prefix not in keys:
                raise ValueError(f"primary_metric {self.primary_metric!r} names no task; tasks: {keys}")
        if self.primary_metric is not None and self.primary_direction == "auto":
            metric_direction(self.primary_metric)  # raises when unknown
        if self.choose_parts and self.embedding_column != "embedding":
            raise ValueError(
                f"choose_parts {self.choose_parts} chooses among the columns of the whole embedding; "
                f"embedding_column must be 'embedding', not {self.embedding_column!r}"
            )
        if len(set(self.choose_parts)) != len(self.choose_parts):
            raise ValueError(f"choose_parts {self.choose_parts} names a part twice")
        return self

    def direction(self) -> Literal["max", "min"]:
        """Direction of :attr:`primary_metric`."""
        if self.primary_metric is None:
            raise ValueError("evaluation.primary_metric is not set")
        return metric_direction(self.primary_metric) if self.primary_direction == "auto" else self.primary_direction
