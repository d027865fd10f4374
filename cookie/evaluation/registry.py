"""MLflow side of evaluation: find a model version, log an evaluation, read its scores back.

Where the scores live (so that ``jobs/promote.py`` can compare versions):

* an **evaluation run** in the experiment ``cookie_<config>_evaluation`` (configurable), tagged
  ``cookie.model_name``, ``cookie.model_version``, ``cookie.source_run_id``, ``cookie.alias``, with every
  metric ``<task>.<protocol>.<metric>`` and the report (markdown, JSON, PNG maps) as artefacts;
* the **model version's tags** ``eval.<task>.<protocol>.<metric>`` (plus ``eval.run_id`` and
  ``eval.primary_metric``) -- the place promotion reads first;
* the version's **training run** gets the same metrics as ``eval.<task>.<protocol>.<metric>`` (when it
  still exists), so the MLflow UI shows them beside the training losses.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "EVAL_TAG_PREFIX",
    "VersionRef",
    "client",
    "ensure_experiment",
    "log_evaluation",
    "resolve_version",
    "tracking_uri",
    "version_score",
]

EVAL_TAG_PREFIX = "eval."


def tracking_uri(cfg: Any = None, explicit: str | None = None) -> str:
    """``explicit``, else the config's ``train.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else
    ``sqlite:///<repo>/mlflow.db`` -- the trainer's order, so both sides use one store. A relative sqlite
    path is made absolute against the config's ``base_dir``."""
    base = Path(getattr(cfg, "base_dir", ".") or ".").resolve()
    uri = explicit or getattr(getattr(cfg, "train", None), "tracking_uri", None) or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{base / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{(base / uri[len('sqlite:///'):]).resolve()}"
    return uri


def client(tracking_uri: str | None = None) -> Any:
    """An ``MlflowClient`` on ``tracking_uri`` (default: ``$MLFLOW_TRACKING_URI``); registry on the same store."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _artifact_location(mlflow_client: Any, name: str) -> str | None:
    """``<folder of the sqlite db>/mlruns/<experiment>`` for a local sqlite store (as the trainer does), else
    ``None`` (the server's default)."""
    uri = str(getattr(mlflow_client, "tracking_uri", "") or "")
    if not uri.startswith("sqlite:///"):
        return None
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "default"
    return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlruns" / safe).as_uri()


@dataclass(frozen=True)
class VersionRef:
    """A registered model version (or a bare training run when no version matches)."""

    name: str
    version: int | None
    run_id: str | None
    aliases: tuple[str, ...] = ()

    def label(self) -> str:
        return f"{self.name} v{self.version}" if self.version is not None else f"{self.name} run {self.run_id}"


def _is_missing(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "") or ""
    return "RESOURCE_DOES_NOT_EXIST" in code or "not found" in str(exc).lower() or "does not exist" in str(exc).lower()


def resolve_version(
    mlflow_client: Any,
    name: str,
    alias: str | None = None,
    version: int | None = None,
    run_id: str | None = None,
) -> VersionRef:
    """The model version named by exactly one of ``alias``, ``version``, ``run_id``.

    A ``run_id`` without a registered version of ``name`` gives ``VersionRef(version=None)``: the run's
    embeddings can still be evaluated, only no version tags are written. An alias that is not set raises
    ``LookupError``.
    """
    from mlflow.exceptions import MlflowException

    if sum(x is not None for x in (alias, version, run_id)) != 1:
        raise ValueError("give exactly one of alias, version, run_id")
    try:
        if alias is not None:
            mv = mlflow_client.get_model_version_by_alias(name, alias)
        elif version is not None:
            mv = mlflow_client.get_model_version(name, str(int(version)))
        else:
            found = [m for m in mlflow_client.search_model_versions(f"run_id='{run_id}'") if m.name == name]
            if not found:
                return VersionRef(name, None, run_id)
            mv = max(found, key=lambda m: int(m.version))
    except MlflowException as exc:
        if _is_missing(exc):
            what = f"alias {alias!r}" if alias is not None else f"version {version}"
            raise LookupError(f"registered model {name!r} has no {what}") from exc
        raise
    return VersionRef(name, int(mv.version), mv.run_id, tuple(getattr(mv, "aliases", []) or []))


def ensure_experiment(mlflow_client: Any, name: str) -> str:
    """Id of experiment ``name``, created if needed."""
    exp = mlflow_client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            mlflow_client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return mlflow_client.create_experiment(name, artifact_location=_artifact_location(mlflow_client, name))
    except Exception:  # created meanwhile by another process
        exp = mlflow_client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}


def log_evaluation(
    mlflow_client: Any,
    experiment: str,
    ref: VersionRef,
    metrics: Mapping[str, float],
    params: Mapping[str, Any] | None = None,
    artifacts_dir: str | Path | None = None,
    tags: Mapping[str, str] | None = None,
    primary_metric: str | None = None,
    log_to_training_run: bool = True,
    run_name: str | None = None,
) -> str:
    """Log one evaluation (see the module docstring); returns the evaluation run id."""
    from mlflow.entities import Metric, Param

    exp_id = ensure_experiment(mlflow_client, experiment)
    all_tags = {
        "cookie.kind": "evaluation",
        "cookie.model_name": ref.name,
        "cookie.model_version": "" if ref.version is None else str(ref.version),
        "cookie.source_run_id": ref.run_id or "",
        **({"cookie.primary_metric": primary_metric} if primary_metric else {}),
        **dict(tags or {}),
    }
    run = mlflow_client.create_run(exp_id, run_name=run_name or f"eval {ref.label()}", tags=all_tags)
    rid = run.info.run_id
    now = int(time.time() * 1000)
    fm = _finite(metrics)
    try:
        batch = [Metric(k, v, now, 0) for k, v in fm.items()]
        for i in range(0, len(batch), 900):
            mlflow_client.log_batch(rid, metrics=batch[i : i + 900])
        plist = [Param(k, str(v)[:6000]) for k, v in (params or {}).items()]
        for i in range(0, len(plist), 90):
            mlflow_client.log_batch(rid, params=plist[i : i + 90])
        if artifacts_dir is not None:
            mlflow_client.log_artifacts(rid, str(artifacts_dir), artifact_path="report")
        mlflow_client.set_terminated(rid, "FINISHED")
    except Exception:
        mlflow_client.set_terminated(rid, "FAILED")
        raise

    if ref.version is not None:
        for k, v in fm.items():
            mlflow_client.set_model_version_tag(ref.name, str(ref.version), f"{EVAL_TAG_PREFIX}{k}", repr(v))
        mlflow_client.set_model_version_tag(ref.name, str(ref.version), f"{EVAL_TAG_PREFIX}run_id", rid)
        if primary_metric:
            mlflow_client.set_model_version_tag(ref.name, str(ref.version), f"{EVAL_TAG_PREFIX}primary_metric", primary_metric)
    if log_to_training_run and ref.run_id:
        try:
            batch = [Metric(f"{EVAL_TAG_PREFIX}{k}", v, now, 0) for k, v in fm.items()]
            for i in range(0, len(batch), 900):
                mlflow_client.log_batch(ref.run_id, metrics=batch[i : i + 900])
            mlflow_client.set_tag(ref.run_id, f"{EVAL_TAG_PREFIX}run_id", rid)
        except Exception as exc:  # noqa: BLE001 - the training run may be gone; the version tags suffice
            mlflow_client.set_tag(rid, "cookie.training_run_log_error", str(exc)[:500])
    return rid


def version_score(mlflow_client: Any, ref: VersionRef, metric: str) -> float | None:
    """The evaluated value of ``metric`` for a version: its ``eval.<metric>`` tag, else the training run's
    ``eval.<metric>`` metric; ``None`` if it was never evaluated."""
    key = f"{EVAL_TAG_PREFIX}{metric}"
    if ref.version is not None:
        mv = mlflow_client.get_model_version(ref.name, str(ref.version))
        tags = dict(mv.tags or {})
        if key in tags:
            try:
                return float(tags[key])
            except ValueError:
                return None
    if ref.run_id:
        try:
            run = mlflow_client.get_run(ref.run_id)
        except Exception:  # noqa: BLE001 - a deleted run means no score
            return None
        if key in run.data.metrics:
            return float(run.data.metrics[key])
    return None
