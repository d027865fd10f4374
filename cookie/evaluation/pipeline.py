"""The evaluate job's work, callable from code: a registered model version -> metrics, report, MLflow.

    from cookie.config import load_config
    from cookie.evaluation.pipeline import evaluate_version
    out = evaluate_version(load_config("conf/manhattan180.yaml"), alias="challenger")
    out.metrics["crime.ridge_kfold.R2"], out.report_dir, out.eval_run_id

Reads the embeddings of the version from the ``embeddings`` Delta table (trainer's contract), the label
tables named by the config's ``evaluation.tasks`` and the ``regions`` table (centroids for spatial blocks,
WKB geometry for the maps; regions known by id only have neither, and those parts are skipped), runs the
tasks (:mod:`cookie.evaluation.runner`), writes the report and logs everything to MLflow
(:mod:`cookie.storage.tracking`). Progress goes to the ``cookie.evaluation.pipeline`` logger.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from cookie.config.evaluation import EvaluationConfig, TaskConfig
from cookie.evaluation.runner import NO_GEOMETRY, EvaluationResult, centroids_of, run_tasks, write_report
from cookie.exceptions import ConfigError, MissingTable
from cookie.storage.delta import EmbeddingRows, LabelRows, load_embeddings, load_regions, load_task_label
from cookie.storage.tracking import (
    VersionRef,
    artifact_location,
    client_for,
    experiment_name,
    log_evaluation,
    registered_model_name,
    resolve_version,
)

__all__ = ["EvaluationOutput", "candidate_parts", "evaluate_ref", "evaluate_version", "evaluation_config"]

logger = logging.getLogger(__name__)


def evaluation_config(cfg: Any) -> EvaluationConfig:
    """The config's ``evaluation`` section as :class:`EvaluationConfig` (a plain dict is validated)."""
    ev = getattr(cfg, "evaluation", None)
    if isinstance(ev, EvaluationConfig):
        return ev
    return EvaluationConfig.model_validate(ev or {})


def candidate_parts(emb: EmbeddingRows, names: list[str]) -> dict[str, np.ndarray] | None:
    """``{part: column indices}`` of the ``evaluation.choose_parts`` that the table has, in the configured
    order, a part with the same columns as an earlier one left out; ``None`` (no choice) when fewer than two
    remain -- a raw baseline has only ``embedding``, and pair_only's ``shared`` is its ``embedding``."""
    found: dict[str, np.ndarray] = {}
    for n in names:
        cols = emb.columns_of(n)
        if cols is not None and not any(np.array_equal(cols, c) for c in found.values()):
            found[n] = cols
    left_out = [n for n in names if n not in found]
    if left_out:
        logger.info(
            "choose_parts: %s has no %s (or it repeats another part); choosing among %s",
            emb.model_name,
            left_out,
            list(found),
        )
    return found if len(found) >= 2 else None


@dataclass
class EvaluationOutput:
    ref: VersionRef
    result: EvaluationResult
    metrics: dict[str, float]
    report_dir: Path
    files: dict[str, Path]
    eval_run_id: str | None


def evaluate_ref(
    cfg: Any,
    ref: VersionRef,
    mlflow_client: Any | None = None,
    report_dir: str | Path | None = None,
    log: bool = True,
    maps: bool | None = None,
    tasks: list[TaskConfig] | None = None,
    alias: str | None = None,
) -> EvaluationOutput:
    """Evaluate the embeddings of ``ref`` (see the module docstring)."""
    ev = evaluation_config(cfg)
    tasks = list(ev.tasks if tasks is None else tasks)
    if not tasks:
        raise ConfigError(f"config {cfg.name!r} has no evaluation.tasks")
    emb = load_embeddings(
        cfg,
        ref.name,
        model_version=ref.version,
        run_id=ref.run_id if ref.version is None else None,
        table=ev.embeddings_table,
    )
    X = emb.column(ev.embedding_column)
    parts = candidate_parts(emb, ev.choose_parts)
    valid = np.any(X != 0, axis=1) & np.all(np.isfinite(X), axis=1)
    logger.info(
        "%s: %d regions x %d dims (%s); %d all-zero / non-finite rows left out",
        ref.label(),
        X.shape[0],
        X.shape[1],
        ev.embedding_column,
        int((~valid).sum()),
    )

    try:
        regions = load_regions(cfg)
    except MissingTable:
        logger.warning("no regions table: maps and spatial blocks are skipped")
        regions = None
    centroids = centroids_of(regions)
    if regions is not None and centroids is None:
        logger.info("spatial blocks and maps: %s", NO_GEOMETRY)

    cache: dict[tuple[Any, ...], LabelRows] = {}

    def labels(task: TaskConfig) -> LabelRows:
        key = (
            task.table,
            tuple(task.columns),
            tuple(task.exclude_columns),
            task.subset_table,
            task.subset_column,
            task.require_present,
            task.normalise_rows,
        )
        if key not in cache:
            cache[key] = load_task_label(cfg, task)
        return cache[key]

    result = run_tasks(tasks, emb.ids, X, labels, centroids=centroids, order=ev.region_order, valid=valid, parts=parts)
    metrics = result.metrics()

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    if report_dir is None:
        base = Path(cfg.resolve(ev.report_dir)) / cfg.name / ref.name
        report_dir = base / (f"v{ref.version}" if ref.version is not None else f"run-{ref.run_id}") / stamp
    info = {
        "config": cfg.name,
        "model": ref.name,
        "version": ref.version,
        "alias": alias or ", ".join(ref.aliases) or "-",
        "training run": ref.run_id,
        "embedding column": ev.embedding_column,
        "parts chosen among": ", ".join(parts) if parts else "-",
        "regions with an embedding": len(emb.ids),
        "primary metric": ev.primary_metric,
        "evaluated at (UTC)": stamp,
    }
    files = write_report(
        result,
        report_dir,
        regions=regions,
        embedding=(emb.ids, X),
        title=ref.label(),
        info=info,
        dataset=cfg.name,
        method=ref.name,
        maps=ev.maps if maps is None else maps,
        credit=cfg.data_credit(),
    )
    logger.info("report: %s", Path(report_dir) / "report.md")

    run_id = None
    if log:
        mc = mlflow_client or client_for(cfg)
        params: dict[str, Any] = {f"task.{t.key}": t.model_dump_json(exclude={"name", "protocol"}) for t in tasks}
        params.update(
            {
                "embedding_column": ev.embedding_column,
                "choose_parts": ",".join(parts or []),
                "region_order": ev.region_order,
                "embeddings_table": ev.embeddings_table,
                "n_regions": len(emb.ids),
            }
        )
        run_id = log_evaluation(
            mc,
            experiment_name(cfg),
            artifact_location(cfg),
            ref,
            metrics,
            params=params,
            artifacts_dir=report_dir,
            tags={"cookie.config": cfg.name, "cookie.alias": alias or ""},
            primary_metric=ev.primary_metric,
            log_to_training_run=ev.log_to_training_run,
        )
        logger.info("logged evaluation run %s in experiment %r", run_id, experiment_name(cfg))
    return EvaluationOutput(
        ref=ref, result=result, metrics=metrics, report_dir=Path(report_dir), files=files, eval_run_id=run_id
    )


def evaluate_version(
    cfg: Any,
    model_name: str | None = None,
    alias: str | None = None,
    version: int | None = None,
    run_id: str | None = None,
    mlflow_client: Any | None = None,
    **kwargs: Any,
) -> EvaluationOutput:
    """Resolve the version (default: the config's alias, ``challenger``) and :func:`evaluate_ref` it."""
    ev = evaluation_config(cfg)
    name = model_name or registered_model_name(cfg)
    if alias is None and version is None and run_id is None:
        alias = ev.alias
    mc = mlflow_client or client_for(cfg)
    ref = resolve_version(mc, name, alias=alias, version=version, run_id=run_id)
    return evaluate_ref(cfg, ref, mlflow_client=mc, alias=alias, **kwargs)
