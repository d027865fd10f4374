"""The training job: statistics on the driver, DDP training through TorchDistributor, the MLflow run.
``python -m cookie train`` calls it through :func:`cookie.pipeline.train_and_publish`, which passes the
``publish`` step (registration, embeddings table, alias); training itself knows nothing of serving.

Order of the side effects, and what a failure leaves behind:

0. Checks that need no run: the model section fits the views (:class:`ConfigError`), the view tables
   exist (:class:`MissingTable`: run the ``features`` verb first), a resumed run is resumable
   (:class:`ConfigError`).
1. The MLflow run starts (a new one, or the stopped run again with ``resume``).
2. Spark computes the preprocessing statistics (one aggregate per view); they are saved with the
   run's checkpoints, logged, and shipped to the ranks.
3. TorchDistributor runs :func:`cookie.training.distributed.train_worker` on every rank; rank 0
   logs per-epoch metrics into the run (flushed every ``train.log_every`` epochs) and writes a
   checkpoint every ``train.checkpoint_every`` epochs, at the last one and where the run stops.
4. ``publish`` (if given) registers the model inside the run; it cleans up after itself on failure.
5. The run ends FINISHED; on any exception FAILED (KILLED for Ctrl-C or ``stop_after_epochs``).

Checkpoints live under ``<checkpoint_dir>/<registered model name>/``: two methods trained on one config
(``--set model.method=raw``) never resume each other's runs.

Milestones are logged (logger ``cookie.train``); the ranks' progress lines come through
TorchDistributor's output.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pyspark.sql import SparkSession

from cookie.exceptions import ConfigError
from cookie.storage import tracking as registry
from cookie.training import checkpoint as ckpt

if TYPE_CHECKING:
    from cookie.config import Config

log = logging.getLogger("cookie.train")


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
        lines = [
            f"run {self.run_id}: {self.status} after {self.global_epoch}/{self.total_epochs} epochs",
            f"  tracking   {self.tracking_uri}",
            f"  checkpoint {self.checkpoint_dir}",
        ]
        if self.model_version is not None:
            lines.append(f"  model      {self.model_name} version {self.model_version} (alias {self.alias})")
            lines.append(f"  embeddings {self.embeddings_table} (Delta version {self.embeddings_table_version})")
        if e.get("params"):
            lines.append(
                f"  efficiency params {e.get('params', 0):,}, FLOPs/step {e.get('flops_per_step', 0):,}, "
                f"objectives {e.get('objectives', 0)}, {e.get('seconds_per_epoch', 0.0) * 1000:.1f} ms/epoch, "
                f"peak step memory {e.get('peak_memory_mb', 0.0):.1f} MB"
            )
        if t:
            lines.append(
                f"  timing     distributor {t.get('distributor_s', 0):.1f} s (fixed overhead "
                f"{t.get('distributor_overhead_s', 0):.1f} s, rank setup {t.get('setup_s', 0):.1f} s, "
                f"training {t.get('train_s', 0):.1f} s, checkpoints {t.get('checkpoint_s', 0):.1f} s), "
                f"job {t.get('job_s', 0):.1f} s"
            )
        return "\n".join(lines)


class Published(Protocol):
    """What a publish step reports back (see :func:`cookie.pipeline.publish`)."""

    model_name: str
    model_version: int
    embeddings_table: str
    embeddings_table_version: int
    timing: dict[str, float]


#: Registers a trained model inside its still-open MLflow run: ``(spark, cfg, model, stats, run_id)``.
Publish = Callable[[SparkSession, Any, Any, Any, str], Published]


@dataclass
class _Run:
    """The MLflow run being trained and where its checkpoints go."""

    run_id: str
    dir: Path
    stats: Any = None  # FeatureStats: saved ones when resuming, else computed after the run starts
    resumed: bool = False
    metrics_logged_through: int = 0


def _use_gpu(cfg: Config, spark: SparkSession) -> bool:
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
        log.warning(
            "CUDA is available but Spark has no driver GPU resources "
            "(spark.driver.resource.gpu.amount / discoveryScript): training on the CPU"
        )
        return False
    return True


def _timing_metrics(timing: dict[str, float]) -> dict[str, float]:
    return {f"timing/{k}": float(v) for k, v in timing.items()}


def check_model_fits_views(cfg: Config) -> None:
    """The ``model:`` section against the config's views, before anything runs (a tiny model is built):
    ``single_view`` names a view, CooKIE/GFactorCL have two views, view names are usable."""
    from cookie.model import build_model

    mc = cfg.model_settings()
    names = [v.name for v in cfg.views]
    if mc.method == "single_view" and mc.single_view not in names:
        raise ConfigError(f"model.single_view: {mc.single_view!r} is not one of the views {names}")
    try:
        build_model(mc.model_copy(update={"embed_dim": 1, "hidden_dim": 1}), {n: 1 for n in names})
    except ConfigError as exc:
        raise ConfigError(f"model ({mc.method}) with views {names}: {exc}") from exc


def model_view_tables(spark: SparkSession, cfg: Config) -> list[Any]:
    """The view tables the model reads (:func:`cookie.training.data.view_tables`; ``single_view``: its one
    view). Raises :class:`cookie.exceptions.MissingTable` when the feature job has not built them."""
    from cookie.training.data import view_tables

    mc = cfg.model_settings()
    names: list[str] | None = None
    if mc.method == "single_view":
        assert mc.single_view is not None  # ModelConfig requires it for this method
        names = [mc.single_view]
    return view_tables(spark, cfg, names)


def _start_new_run(cfg: Config, base: str, model_key: str, t_uri: str) -> _Run:
    import mlflow

    experiment_id = registry.ensure_experiment(
        registry.client(t_uri), registry.experiment_name(cfg), registry.artifact_location(cfg)
    )
    run = mlflow.start_run(experiment_id=experiment_id, run_name=f"{cfg.name}-{cfg.model_settings().method}")
    run_id = run.info.run_id
    log.info("MLflow run %s started (experiment %s)", run_id, registry.experiment_name(cfg))
    return _Run(run_id, ckpt.run_dir(base, model_key, run_id))


def _reopen_run(base: str, model_key: str, model_json: dict[str, Any], n: int, t_uri: str) -> _Run:
    """The newest run of this registered model, checked resumable, started again."""
    import mlflow

    from cookie.preprocessing import FeatureStats

    run_id = ckpt.latest_run_id(base, model_key)
    if run_id is None:
        raise ConfigError(
            f"nothing to resume: no run of {model_key} under {ckpt.config_dir(base, model_key)}; train without --resume"
        )
    rdir = ckpt.run_dir(base, model_key, run_id)
    info = ckpt.read_json(rdir, "run.json")
    if info["model"] != model_json:
        raise ConfigError(f"run {run_id} trained another model section; start a new run instead of --resume")
    if int(info["num_processes"]) != n:
        raise ConfigError(
            f"run {run_id} ran with {info['num_processes']} processes; resume with the same number "
            "(every rank's random state is in the checkpoint)"
        )
    if mlflow.get_run(run_id).info.status == "FINISHED":
        raise ConfigError(f"run {run_id} already finished (and registered its model); nothing to resume")
    stats = FeatureStats.from_dict(ckpt.read_json(rdir, "stats.json"))
    history = registry.client(t_uri).get_metric_history(run_id, "loss")
    logged = max((m.step for m in history), default=0)
    mlflow.start_run(run_id=run_id)
    log.info("resuming run %s from %s", run_id, rdir)
    return _Run(run_id, rdir, stats, resumed=True, metrics_logged_through=logged)


def _record_new_run(
    spark: SparkSession,
    cfg: Config,
    run: _Run,
    tables_: list[Any],
    base: str,
    model_key: str,
    n: int,
    t_uri: str,
    phase: dict[str, float],
) -> None:
    """Statistics (one Spark aggregate per view), saved beside the checkpoints and logged into the run."""
    import mlflow

    from cookie.training.data import compute_stats

    t = time.perf_counter()
    model_config = cfg.model_settings()
    model_json = model_config.model_dump(mode="json")
    run.stats = stats = compute_stats(spark, cfg, tables_)
    phase["stats_s"] = time.perf_counter() - t
    log.info(
        "statistics computed: %d regions, views %s (%.1f s)",
        stats.n_regions,
        {v.name: f"{len(v.features)} features, {v.kind}" for v in stats.views},
        phase["stats_s"],
    )
    ckpt.write_json(run.dir, "stats.json", stats.to_dict())
    ckpt.write_json(
        run.dir,
        "run.json",
        {
            "run_id": run.run_id,
            "config": cfg.name,
            "model": model_json,
            "num_processes": n,
            "tracking_uri": registry.redact_uri(t_uri),
        },
    )
    ckpt.mark_latest(base, model_key, run.run_id)
    mlflow.log_params(registry.run_params(cfg, model_config, stats, n))
    mlflow.set_tags(
        {"cookie.config": cfg.name, "cookie.method": model_config.method, "cookie.checkpoint_dir": str(run.dir)}
    )
    mlflow.log_dict(stats.to_dict(), "preprocessing.json")
    mlflow.log_dict(registry.redact(json.loads(cfg.model_dump_json())), "config.json")  # no secrets in artifacts


def _worker_spec(
    cfg: Config,
    run: _Run,
    n: int,
    t_uri: str,
    resume: bool,
    stop: int | None,
    use_gpu: bool,
    callback: Callable[[dict[str, Any]], None] | None,
) -> Any:
    from cookie.training.distributed import WorkerSpec

    tc = cfg.train
    model_json = cfg.model_settings().model_dump(mode="json")
    stats = run.stats.to_dict()
    return WorkerSpec(
        model_config=model_json,
        stats=stats,
        fingerprint=ckpt.fingerprint(model_json, stats, n),
        checkpoint_dir=str(run.dir),
        run_id=run.run_id,
        tracking_uri=t_uri,
        resume=resume,
        stop_after_epochs=stop,
        checkpoint_every=tc.checkpoint_every,
        keep_checkpoints=tc.keep_checkpoints,
        log_every=tc.log_every,
        progress_every=tc.progress_every,
        metrics_logged_through=run.metrics_logged_through,
        torch_threads=tc.torch_threads,
        use_gpu=use_gpu,
        profile=tc.profile,
        callback=callback,
    )


def _distribute(
    spec: Any, n: int, local_mode: bool, use_gpu: bool, phase: dict[str, float]
) -> tuple[dict[str, Any], dict[str, float]]:
    """TorchDistributor over ``train_worker``; rank 0's payload and the timings."""
    from pyspark.ml.torch.distributor import TorchDistributor

    from cookie.training.distributed import decode_payload, train_worker

    distributor = TorchDistributor(num_processes=n, local_mode=local_mode, use_gpu=use_gpu)
    log.info(
        "TorchDistributor started: %d process(es), %s, %s",
        n,
        "local mode" if local_mode else "barrier tasks",
        "GPU" if use_gpu else "CPU",
    )
    t = time.perf_counter()
    blob = distributor.run(train_worker, spec)
    assert blob is not None  # train_worker returns rank 0's encoded payload
    out = decode_payload(blob)
    dist_s = time.perf_counter() - t
    timing = {**phase, **out["timing"], "distributor_s": dist_s}
    timing["distributor_overhead_s"] = dist_s - timing["worker_total_s"]
    log.info(
        "TorchDistributor finished in %.1f s: %s after %d/%d epochs",
        dist_s,
        "stopped" if out["stopped"] else "trained",
        out["global_epoch"],
        out["total_epochs"],
    )
    return out, timing


def _finish_stopped(result: TrainResult, t_job: float) -> TrainResult:
    import mlflow

    result.status = "STOPPED"
    result.timing["job_s"] = time.perf_counter() - t_job
    mlflow.log_metrics(_timing_metrics(result.timing), step=result.global_epoch)
    mlflow.set_tag("cookie.stopped_after_epoch", str(result.global_epoch))
    mlflow.end_run("KILLED")
    return result


def _finish_trained(
    spark: SparkSession,
    cfg: Config,
    result: TrainResult,
    out: dict[str, Any],
    run: _Run,
    publish: Publish | None,
    t_job: float,
) -> TrainResult:
    """Artefacts of the finished run, then ``publish`` inside it; the run ends FINISHED."""
    import mlflow

    from cookie.model import model_from_state

    timing = result.timing
    result.model = model_from_state(out["state"])
    result.stats = run.stats
    mlflow.log_dict({"history": out["history"]}, "history.json")
    mlflow.log_dict(
        {"efficiency": out["efficiency"], "timing": timing, "shard_sizes": out["shard_sizes"], "device": out["device"]},
        "efficiency.json",
    )
    if publish is not None:
        t = time.perf_counter()
        pub = publish(spark, cfg, result.model, run.stats, run.run_id)
        timing["publish_s"] = time.perf_counter() - t
        timing.update(pub.timing)
        result.model_name, result.model_version, result.alias = pub.model_name, pub.model_version, cfg.train.alias
        result.embeddings_table, result.embeddings_table_version = pub.embeddings_table, pub.embeddings_table_version
        mlflow.set_tags(
            {
                "cookie.model_name": pub.model_name,
                "cookie.model_version": str(pub.model_version),
                "cookie.embeddings_table": pub.embeddings_table,
            }
        )
    timing["job_s"] = time.perf_counter() - t_job
    mlflow.log_metrics(_timing_metrics(timing))
    mlflow.end_run("FINISHED")
    log.info("run %s finished in %.1f s", run.run_id, timing["job_s"])
    return result


def train(
    spark: SparkSession,
    cfg: Config,
    *,
    resume: bool = False,
    num_processes: int | None = None,
    stop_after_epochs: int | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    publish: Publish | None = None,
) -> TrainResult:
    """Train the config's model on its view tables inside an MLflow run; ``publish`` registers it.

    ``resume`` continues the newest run of this registered model from its last checkpoint (same number
    of processes). ``stop_after_epochs`` (default ``train.stop_after_epochs``) stops, resumably, once
    that many epochs are done in total. ``callback`` runs on rank 0 after every epoch with the
    epoch's record; it must be picklable (an exception in it fails the job).
    """
    import mlflow

    t_job = time.perf_counter()
    tc = cfg.train
    n = int(num_processes or tc.num_processes)
    stop = stop_after_epochs if stop_after_epochs is not None else tc.stop_after_epochs
    model_json = cfg.model_settings().model_dump(mode="json")
    base = cfg.resolve(tc.checkpoint_dir)
    model_key = registry.registered_model_name(cfg)  # checkpoints per model: one feature set, several models
    check_model_fits_views(cfg)
    tables_ = model_view_tables(spark, cfg)  # MissingTable before any run starts
    t_uri, _ = registry.configure(cfg)
    use_gpu = _use_gpu(cfg, spark)

    run = _reopen_run(base, model_key, model_json, n, t_uri) if resume else _start_new_run(cfg, base, model_key, t_uri)
    try:
        phase: dict[str, float] = {"start_s": time.perf_counter() - t_job}
        t = time.perf_counter()
        if not run.resumed:
            _record_new_run(spark, cfg, run, tables_, base, model_key, n, t_uri, phase)
        spec = _worker_spec(cfg, run, n, t_uri, resume, stop, use_gpu, callback)
        phase["prepare_s"] = time.perf_counter() - t
        out, timing = _distribute(spec, n, tc.local_mode, use_gpu, phase)
        result = TrainResult(
            run_id=run.run_id,
            status="FINISHED",
            global_epoch=out["global_epoch"],
            total_epochs=out["total_epochs"],
            checkpoint_dir=str(run.dir),
            tracking_uri=t_uri,
            history=out["history"],
            efficiency=out["efficiency"],
            timing=timing,
        )
        if out.get("best_epochs"):
            mlflow.log_metrics({f"early_stopping/best_epoch_{k}": float(v + 1) for k, v in out["best_epochs"].items()})
        if out["stopped"]:
            return _finish_stopped(result, t_job)
        return _finish_trained(spark, cfg, result, out, run, publish, t_job)
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
