"""Where the layers meet: train a model, then register it, write its embeddings and set its alias.

Training (:mod:`cookie.training`) knows nothing of serving, and storage knows nothing of models; this
module composes them for the ``train`` verb of :mod:`cookie.cli`. Milestones are logged (logger
``cookie.train``, like the training job's).
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import SparkSession

from cookie.config import Config
from cookie.serving import embeddings as E
from cookie.serving.pyfunc import log_pyfunc
from cookie.storage import tracking as registry
from cookie.training.job import TrainResult, train

log = logging.getLogger("cookie.train")


@dataclass
class Published:
    """A registered version with its embeddings and alias."""

    model_name: str
    model_version: int
    embeddings_table: str
    embeddings_table_version: int
    timing: dict[str, float] = field(default_factory=dict)


def publish(spark: SparkSession, cfg: Config, model: Any, stats: Any, run_id: str) -> Published:
    """Log the pyfunc into the active run, register it, write its embeddings, set the alias.

    All or nothing: if the table write or the alias fails, the version's rows and the version
    itself are removed (and the registered model, if this call created it) before re-raising.
    """
    tc = cfg.train
    name = registry.registered_model_name(cfg)
    timing: dict[str, float] = {}
    remove_leftovers(spark, cfg, name, run_id)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cookie-model-") as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(type hints|input example|input_example).*")
        info = log_pyfunc(model, stats, tmp, tc.pip_requirements, tc.embed_batch_size)
    reg = registry.register(
        info.model_uri,
        name,
        tags={"run_id": run_id, "config": cfg.name, "method": cfg.model.method, **registry.registering_tags()},
    )
    timing["register_s"] = time.perf_counter() - t
    log.info("model registered: %s version %d (%.1f s)", name, reg.version, timing["register_s"])
    try:
        t = time.perf_counter()
        emb_version = E.write_embeddings(spark, cfg, model, stats, name, reg.version, run_id)
        timing["embeddings_s"] = time.perf_counter() - t
        log.info(
            "embeddings written: %s, Delta version %d (%.1f s)", E.location(cfg), emb_version, timing["embeddings_s"]
        )
        registry.set_alias(name, tc.alias, reg.version)
        log.info("alias %s -> %s version %d", tc.alias, name, reg.version)
        registry.mark_ready(name, reg.version)
    except BaseException:
        try:
            E.delete_embeddings(spark, cfg, name, reg.version)
        except Exception:  # pragma: no cover - best effort, the original error matters
            log.exception("could not delete the embeddings of %s v%s", name, reg.version)
        registry.rollback(reg)
        raise
    return Published(name, reg.version, str(E.location(cfg)), emb_version, timing)


def remove_leftovers(spark: SparkSession, cfg: Config, name: str, run_id: str) -> None:
    """Remove what interrupted registrations left: versions without an alias and their embeddings rows.

    A run registers exactly one version. One that already exists for ``run_id`` was left by a job killed
    between registering and setting the alias (the in-process rollback cannot run after ``kill -9``), so a
    resumed run deletes it and its rows (Delta delete: idempotent) and registers afresh. A plain rerun (a new
    run) removes the versions other runs abandoned the same way (:func:`cookie.storage.tracking.abandoned_versions`:
    their job is gone) and marks those runs KILLED; an unfinished version whose job may still be running is
    left alone, with a warning.
    """
    abandoned, notes = registry.abandoned_versions(name, run_id)
    for note in notes:
        log.warning(note)
    for gone in abandoned:
        log.warning(
            "%s version %d was left half-registered by an interrupted job of run %s (%s): removing it and its "
            "embeddings rows",
            name,
            gone.version,
            gone.run_id,
            gone.why,
        )
        E.delete_embeddings(spark, cfg, name, gone.version)
        registry.delete_version(name, gone.version)
        if gone.run_id != run_id:
            registry.end_run(gone.run_id)


def train_and_publish(spark: SparkSession, cfg: Config, **kwargs: Any) -> TrainResult:
    """:func:`cookie.training.job.train`, then :func:`publish` inside the same MLflow run."""
    return train(spark, cfg, publish=publish, **kwargs)
