"""The training job: statistics on the driver, DDP training through TorchDistributor, then MLflow
logging, registration and the ``embeddings`` table. ``jobs/train.py`` only calls :func:`train`.

Order of the side effects, and what a failure leaves behind:

1. The MLflow run starts (a new one, or the stopped run again with ``resume``).
2. Spark computes the preprocessing statistics (one aggregate per view); they are saved with the
   run's checkpoints, logged, and shipped to the ranks.
3. TorchDistributor runs :func:`cookie.training.distributed.train_worker` on every rank; rank 0
   logs per-epoch metrics into the run and writes a checkpoint every epoch.
4. The driver logs the pyfunc, registers it (a new version), writes that version's embeddings
   and sets the alias (``challenger``). If any of these fails, the rows and the version are
   removed again, so no half-registered version remains.
5. The run ends FINISHED; on any exception FAILED (KILLED for Ctrl-C or ``stop_after_epochs``).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pyspark.sql import SparkSession

from cookie.storage import tracking as registry
from cookie.training import checkpoint as ckpt

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training job did (rank 0's figures, identical on every rank)."""

    run_id: str
    status: str  # FINISHED, or STOPPED (resumable) after stop_after_epochs
    global_epoch: int
    total_epochs: int
    checkpoint_dir: str
    tracking_uri: str
    model_name: str | None = None
    model_version: int | None = None
    alias: str | None = None
    embeddings_table: str | None = None
    embeddings_table_version: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    efficiency: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    model: Any = None  # the trained RegionModel (None when stopped)
    stats: Any = None  # its FeatureStats

    def summary(self) -> str:
        t, e = self.timing, self.efficiency
        lines = [f"run {self.run_id}: {self.status} after {self.global_epoch}/{self.total_epochs} epochs",
                 f"  tracking   {self.tracking_uri}",
                 f"  checkpoint {self.checkpoint_dir}"]
        if self.model_version is not None:
            lines.append(f"  model      {self.model_name} version {self.model_version} (alias {self.alias})")
            lines.append(f"  embeddings {self.embeddings_table} (Delta version {self.embeddings_table_version})")
        if e.get("params"):
            lines.append(
                f"  efficiency params {e.get('params', 0):,}, FLOPs/step {e.get('flops_per_step', 0):,}, "
                f"objectives {e.get('objectives', 0)}, {e.get('seconds_per_epoch', 0.0) * 1000:.1f} ms/epoch, "
                f"peak step memory {e.get('peak_memory_mb', 0.0):.1f} MB")
        if t:
            lines.append(
                f"  timing     distributor {t.get('distributor_s', 0):.1f} s (fixed overhead "
                f"{t.get('distributor_overhead_s', 0):.1f} s, rank setup {t.get('setup_s', 0):.1f} s, "
                f"training {t.get('train_s', 0):.1f} s, checkpoints {t.get('checkpoint_s', 0):.1f} s), "
                f"job {t.get('job_s', 0):.1f} s")
        return "\n".join(lines)


def _use_gpu(cfg, spark: SparkSession) -> bool:
    """``train.use_gpu``, else: CUDA is visible *and* Spark knows the driver's GPUs.

    TorchDistributor picks the GPUs of local-mode ranks from the driver's Spark resources
    (``spark.driver.resource.gpu.amount`` and ``...gpu.discoveryScript`` in ``spark.conf``); without
    them it fails, so a GPU box without that configuration trains on the CPU (with a warning).
    """
    if cfg.train.use_gpu is not None:
        return bool(cfg.train.use_gpu)
    import torch

    if not torch.cuda.is_available():
        return False
    if "gpu" not in spark.sparkContext.resources:
        log.warning("CUDA is available but Spark has no driver GPU resources "
                    "(spark.driver.resource.gpu.amount / discoveryScript): training on the CPU")
        return False
    return True


class Published(Protocol):
    """What a publish step reports back (see :func:`cookie.pipeline.publish`)."""

    model_name: str
    model_version: int
    embeddings_table: str
    embeddings_table_version: int
    timing: dict[str, float]


#: Registers a trained model inside its still-open MLflow run: ``(spark, cfg, model, stats, run_id)``.
Publish = Callable[[SparkSession, Any, Any, Any, str], Published]


def _timing_metrics(timing: dict[str, float]) -> dict[str, float]:
    return {f"timing/{k}": float(v) for k, v in timing.items()}


def train(
    spark: SparkSession,
    cfg,
    *,
    resume: bool = False,
    num_processes: int | None = None,
    stop_after_epochs: int | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    publish: Publish | None = None,
) -> TrainResult:
    """Train the config's model on its view tables, log, register and write the embeddings.

    ``resume`` continues the newest run of this config from its last checkpoint (same number of
    processes). ``stop_after_epochs`` (default ``train.stop_after_epochs``) stops, resumably, once
    that many epochs are done in total. ``callback`` runs on rank 0 after every epoch with the
    epoch's record; it must be picklable (an exception in it fails the job).
    """
    import mlflow
    from pyspark.ml.torch.distributor import TorchDistributor

    from cookie.model import RegionModel
    from cookie.training.data import compute_stats
    from cookie.training.distributed import WorkerSpec, decode_payload, train_worker
    from cookie.preprocessing import FeatureStats

    t_job = time.perf_counter()
    tc = cfg.train
    n = int(num_processes or tc.num_processes)
    stop = stop_after_epochs if stop_after_epochs is not None else tc.stop_after_epochs
    model_config = cfg.model_settings()
    t_uri, _ = registry.configure(cfg)
    base = cfg.resolve(tc.checkpoint_dir)
    model_key = registry.registered_model_name(cfg)  # checkpoints per model: one feature set, several models
    use_gpu = _use_gpu(cfg, spark)
    model_json = model_config.model_dump(mode="json")

    stats: FeatureStats | None = None
    if resume:
        run_id = ckpt.latest_run_id(base, model_key)
        if run_id is None:
            raise FileNotFoundError(f"nothing to resume: no run under {ckpt.config_dir(base, model_key)}")
        rdir = ckpt.run_dir(base, model_key, run_id)
        info = ckpt.read_json(rdir, "run.json")
        if info["model"] != model_json:
            raise ValueError(f"run {run_id} trained another model section; start a new run instead of --resume")
        if int(info["num_processes"]) != n:
            raise ValueError(f"run {run_id} ran with {info['num_processes']} processes; resume with the same number "
                             "(every rank's random state is in the checkpoint)")
        stats = FeatureStats.from_dict(ckpt.read_json(rdir, "stats.json"))
        status = mlflow.get_run(run_id).info.status
        if status == "FINISHED":
            raise ValueError(f"run {run_id} already finished (and registered its model); nothing to resume")
        mlflow.start_run(run_id=run_id)
        log.info("resuming run %s from %s", run_id, rdir)
    else:
        experiment_id = registry.ensure_experiment(registry.client(t_uri), registry.experiment_name(cfg),
                                                  registry.artifact_location(cfg))
        run = mlflow.start_run(experiment_id=experiment_id, run_name=f"{cfg.name}-{model_config.method}")
        run_id = run.info.run_id
        rdir = ckpt.run_dir(base, model_key, run_id)
    try:
        phase: dict[str, float] = {"start_s": time.perf_counter() - t_job}
        t_phase = time.perf_counter()
        if stats is None:
            stats = compute_stats(spark, cfg)
            phase["stats_s"] = time.perf_counter() - t_phase
            ckpt.write_json(rdir, "stats.json", stats.to_dict())
            ckpt.write_json(rdir, "run.json", {"run_id": run_id, "config": cfg.name, "model": model_json,
                                               "num_processes": n, "tracking_uri": t_uri})
            ckpt.mark_latest(base, model_key, run_id)
            mlflow.log_params(registry.run_params(cfg, model_config, stats, n))
            mlflow.set_tags({"cookie.config": cfg.name, "cookie.method": model_config.method,
                             "cookie.checkpoint_dir": str(rdir)})
            mlflow.log_dict(stats.to_dict(), "preprocessing.json")
            mlflow.log_dict(json.loads(cfg.model_dump_json()), "config.json")

        spec = WorkerSpec(
            model_config=model_json, stats=stats.to_dict(),
            fingerprint=ckpt.fingerprint(model_json, stats.to_dict(), n),
            checkpoint_dir=str(rdir), run_id=run_id, tracking_uri=t_uri, resume=resume,
            stop_after_epochs=stop, checkpoint_every=tc.checkpoint_every, keep_checkpoints=tc.keep_checkpoints,
            log_every=tc.log_every, torch_threads=tc.torch_threads, use_gpu=use_gpu, profile=tc.profile,
            callback=callback,
        )
        distributor = TorchDistributor(num_processes=n, local_mode=tc.local_mode, use_gpu=use_gpu)
        phase["prepare_s"] = time.perf_counter() - t_phase
        t_dist = time.perf_counter()
        out = decode_payload(distributor.run(train_worker, spec))
        dist_s = time.perf_counter() - t_dist
        timing = {**phase, **out["timing"]}
        timing["distributor_s"] = dist_s
        timing["distributor_overhead_s"] = dist_s - timing["worker_total_s"]
        result = TrainResult(run_id=run_id, status="FINISHED", global_epoch=out["global_epoch"],
                             total_epochs=out["total_epochs"], checkpoint_dir=str(rdir), tracking_uri=t_uri,
                             history=out["history"], efficiency=out["efficiency"], timing=timing)

        if out["stopped"]:
            result.status = "STOPPED"
            timing["job_s"] = time.perf_counter() - t_job
            mlflow.log_metrics(_timing_metrics(timing), step=out["global_epoch"])
            mlflow.set_tag("cookie.stopped_after_epoch", str(out["global_epoch"]))
            mlflow.end_run("KILLED")
            return result

        model = model_from_state(out["state"])
        mlflow.log_dict({"history": out["history"]}, "history.json")
        mlflow.log_dict({"efficiency": out["efficiency"], "timing": timing, "shard_sizes": out["shard_sizes"],
                         "device": out["device"]}, "efficiency.json")
        t_phase = time.perf_counter()
        result.model = model
        result.stats = stats
        if publish is not None:
            pub = publish(spark, cfg, model, stats, run_id)
            timing["publish_s"] = time.perf_counter() - t_phase
            timing.update(pub.timing)
            result.model_name, result.model_version, result.alias = pub.model_name, pub.model_version, tc.alias
            result.embeddings_table, result.embeddings_table_version = pub.embeddings_table, pub.embeddings_table_version
            mlflow.set_tags({"cookie.model_name": pub.model_name, "cookie.model_version": str(pub.model_version),
                             "cookie.embeddings_table": pub.embeddings_table})
        timing["job_s"] = time.perf_counter() - t_job
        mlflow.log_metrics(_timing_metrics(timing))
        mlflow.end_run("FINISHED")
        return result
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
