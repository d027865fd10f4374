"""The one MLflow module: tracking URIs, the naming rules, experiments, run parameters, registered
versions and aliases, evaluation runs and the scores promotion reads back.

It knows nothing of models: the pyfunc is logged by :mod:`cookie.serving.pyfunc`.

Defaults: a local SQLite store ``sqlite:///<repo>/mlflow.db`` (absolute, so every working
directory and every torchrun child sees the same store) with artefacts under ``<repo>/mlruns``;
``train.tracking_uri`` or ``$MLFLOW_TRACKING_URI`` override it, ``train.registry_uri`` the registry.

Naming rules (one each): experiment :func:`experiment_name` (``cookie_<config name>``) holds the training,
evaluation and promotion runs of a config, told apart by the tag ``cookie.kind``; registered model
:func:`registered_model_name` (``cookie_<config name>``, ``_<method>`` for methods other than CooKIE;
``<catalog>.<schema>.cookie_<config name>`` with ``output.catalog``, as the Unity Catalog registry needs, read
back by :func:`parse_model_name`).

An evaluation (:func:`log_evaluation`) is a run of its own (``cookie.kind=evaluation``, every metric, the
report as artefacts), ``eval.<metric>`` tags on the model version (what promotion reads back with
:func:`version_score`) and, optionally, ``eval.<metric>`` metrics on the version's training run.

Registration is all-or-nothing: :func:`register` returns a version that the caller must either
keep (after writing the embeddings and setting the alias) or roll back with :func:`rollback`. A version is
registered with the tag ``cookie.state=registering`` and the host and process of the job, and tagged
``cookie.state=ready`` once its alias is set; what ``kill -9`` leaves in between is found by
:func:`abandoned_versions` and removed by the next job of the same model.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from cookie.exceptions import ConfigError, MissingModel

if TYPE_CHECKING:
    from cookie.config import Config

log = logging.getLogger(__name__)

DEFAULT_ALIAS = "champion"  # the alias lookups read when none is given


# --------------------------------------------------------------------------- where things live


def tracking_uri(cfg: Any = None, explicit: str | None = None) -> str:
    """``explicit``, else ``train.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else
    ``sqlite:///<repo>/mlflow.db``; a relative sqlite path is made absolute against the config's ``base_dir``
    (else every working directory, and every torchrun child, gets a store of its own)."""
    base = Path(getattr(cfg, "base_dir", ".") or ".").resolve()
    uri = (
        explicit or getattr(getattr(cfg, "train", None), "tracking_uri", None) or os.environ.get("MLFLOW_TRACKING_URI")
    )
    if not uri:
        return f"sqlite:///{base / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{(base / uri[len('sqlite:///') :]).resolve()}"
    return uri


#: Seconds a job waits for an HTTP tracking server before it gives up (MLflow itself retries for minutes).
STORE_TIMEOUT_S = 5.0


def check_store(uri: str, timeout: float = STORE_TIMEOUT_S) -> None:
    """Fail fast, before Spark or TorchDistributor start, when an HTTP tracking server does not answer.

    Any HTTP answer (even an error status) counts as reachable; a refused connection, an unknown host or
    no answer within ``timeout`` seconds raise :class:`StackNotLoaded` naming the (redacted) URI. Other
    stores (``sqlite:``, ``file:``, ``databricks``) are not probed.
    """
    import urllib.error
    import urllib.request

    from cookie.exceptions import StackNotLoaded

    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    netloc = parsed.netloc.rsplit("@", 1)[-1]  # credentials stay out of the probe's URL and of the message
    probe = parsed._replace(netloc=netloc, path=parsed.path.rstrip("/") + "/health", query="").geturl()
    try:
        urllib.request.urlopen(probe, timeout=timeout).close()  # http(s) only, checked above
    except urllib.error.HTTPError:
        return
    except OSError as exc:  # URLError, refused connections and timeouts alike
        reason = getattr(exc, "reason", exc)
        raise StackNotLoaded(
            f"MLflow tracking server {redact_uri(uri)} does not answer ({reason}; waited at most {timeout:.0f} s): "
            "start it, or point train.tracking_uri / MLFLOW_TRACKING_URI / --tracking-uri at a running one"
        ) from None


def experiment_name(cfg: Config) -> str:
    """The one experiment of a config: training, evaluation and promotion runs (tag ``cookie.kind``)."""
    return cfg.train.experiment_name or f"cookie_{cfg.name}"


#: The Unity Catalog model registry (``databricks-uc``, or ``databricks-uc://<profile>``).
UC_REGISTRY = "databricks-uc"
_IDENTIFIER = re.compile(r"[A-Za-z0-9_]+")


def is_unity_catalog(uri: str | None) -> bool:
    """Whether a registry URI is the Unity Catalog registry, whose model names are ``<catalog>.<schema>.<model>``."""
    return bool(uri) and (uri == UC_REGISTRY or str(uri).startswith(UC_REGISTRY + "://"))


@dataclass(frozen=True)
class ModelName:
    """A registered model's name: ``<model>`` in a workspace (or SQLite) registry, ``<catalog>.<schema>.<model>``
    in Unity Catalog (and locally with ``output.catalog`` set, so that the same names run everywhere)."""

    model: str
    catalog: str | None = None
    schema: str | None = None

    def __str__(self) -> str:
        return f"{self.catalog}.{self.schema}.{self.model}" if self.catalog else self.model

    @property
    def three_level(self) -> bool:
        return self.catalog is not None


def parse_model_name(name: str, registry: str | None = None) -> ModelName:
    """Read a registered model name: ``<model>`` (no dot), or ``<catalog>.<schema>.<model>`` whose parts are
    letters, digits and underscores (Unity Catalog identifiers). The Unity Catalog registry (``registry``, see
    :func:`is_unity_catalog`) takes only the three-level form. Anything else is a :class:`ConfigError` that says
    how to name the model."""
    parts = name.split(".")
    how = (
        "set output.catalog: <catalog>.<schema> (the model is then <catalog>.<schema>.cookie_<config>) or "
        "train.registered_model_name: <catalog>.<schema>.<model>"
    )
    if len(parts) == 1 and name.strip():
        if is_unity_catalog(registry):
            raise ConfigError(
                f"the Unity Catalog registry ({registry}) names models <catalog>.<schema>.<model>, got {name!r}; {how}"
            )
        return ModelName(name)
    if len(parts) != 3 or not all(_IDENTIFIER.fullmatch(p) for p in parts):
        raise ConfigError(
            f"registered model name {name!r}: expected <model> (no dot) or <catalog>.<schema>.<model> (each part "
            f"letters, digits and underscores); {how}"
        )
    return ModelName(parts[2], catalog=parts[0], schema=parts[1])


def registered_model_name(cfg: Config) -> str:
    """The one naming rule: ``train.registered_model_name``, else ``cookie_<config name>`` for CooKIE and
    ``cookie_<config name>_<method>`` for any other method, so that one feature set serves several models.

    With ``output.catalog: <catalog>.<schema>`` a one-part name becomes ``<catalog>.<schema>.<name>``, in lower
    case (Unity Catalog stores names in lower case; the local registry gets the same name). The name is checked
    against the config's registry (:func:`parse_model_name`): the Unity Catalog registry needs three levels.
    """
    name = cfg.train.registered_model_name
    if not name:
        method = cfg.model.method
        name = f"cookie_{cfg.name}" if method == "cookie" else f"cookie_{cfg.name}_{method}"
    if cfg.output.catalog and name.count(".") == 0:
        name = f"{cfg.output.catalog}.{name}"
    parsed = parse_model_name(name, registry_uri(cfg))
    return str(parsed).lower() if parsed.three_level else str(parsed)


def registry_uri(cfg: Config, explicit_tracking_uri: str | None = None) -> str:
    """``train.registry_uri`` (e.g. ``databricks-uc``), else the Unity Catalog registry for a Databricks tracking
    store with ``output.catalog`` set, else the tracking store (:func:`tracking_uri`).

    ``$MLFLOW_REGISTRY_URI`` is deliberately not read: ``mlflow.set_registry_uri`` writes it, so
    in a process that handled another config it would name that config's registry.
    """
    if cfg.train.registry_uri:
        return cfg.train.registry_uri
    uri = tracking_uri(cfg, explicit_tracking_uri)
    if cfg.output.catalog and (uri == "databricks" or uri.startswith("databricks://")):
        return UC_REGISTRY
    return uri


def configure(cfg: Config) -> tuple[str, str]:
    """Point the mlflow module at this config's tracking and registry stores; returns both URIs."""
    import mlflow

    t, r = tracking_uri(cfg), registry_uri(cfg)
    mlflow.set_tracking_uri(t)
    mlflow.set_registry_uri(r)
    return t, r


def _local_store_dir(uri: str) -> Path | None:
    """Folder of a local sqlite database or file store, where artefacts go by default."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :]).parent
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path).parent
    return None


def artifact_location(cfg: Config) -> str | None:
    """Artefact root of a new experiment: ``train.artifact_location``, else ``mlruns/`` next to a
    local store (``<repo>/mlruns`` by default), else the server's default."""
    if cfg.train.artifact_location:
        loc = cfg.train.artifact_location
        return loc if "://" in loc else Path(cfg.resolve(loc)).as_uri()
    base = _local_store_dir(tracking_uri(cfg))
    if base is None:
        return None
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", experiment_name(cfg)).strip("_") or "default"
    return (base / "mlruns" / safe).resolve().as_uri()


# --------------------------------------------------------------------------- run parameters


def flatten(prefix: str, obj: Any, out: dict[str, str] | None = None) -> dict[str, str]:
    """Nested dicts -> ``{'a.b': 'value'}``; lists as JSON."""
    out = {} if out is None else out
    if isinstance(obj, dict):
        for k, v in obj.items():
            flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        text = json.dumps(obj) if isinstance(obj, (list, tuple)) else str(obj)
        out[prefix] = text[:6000]
    return out


#: Keys whose values are never logged or saved: anything that looks like a credential.
SECRET_KEY = re.compile(
    r"(secret|password|passwd|token|credential|api[_.-]?key|access[_.-]?key|private[_.-]?key|sas|"
    r"auth)",
    re.IGNORECASE,
)
REDACTED = "***"


def redact_uri(uri: str) -> str:
    """``scheme://user:password@host/...`` -> ``scheme://user:***@host/...`` (also a token as the user part)."""
    parsed = urlparse(uri)
    if not parsed.netloc or "@" not in parsed.netloc:
        return uri
    creds, host = parsed.netloc.rsplit("@", 1)
    user = creds.split(":", 1)[0] if ":" in creds else REDACTED
    return parsed._replace(netloc=f"{user}:{REDACTED}@{host}" if ":" in creds else f"{REDACTED}@{host}").geturl()


def redact(obj: Any, key: str = "") -> Any:
    """A copy of a config mapping (``cfg.model_dump(mode="json")``) safe to log: values of secret-looking keys
    replaced by ``***``, credentials in URIs removed. Used wherever a config is logged or saved."""
    if isinstance(obj, dict):
        return {
            k: (REDACTED if SECRET_KEY.search(str(k)) and v not in (None, "") else redact(v, str(k)))
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [redact(v, key) for v in obj]
    if isinstance(obj, str) and "://" in obj:
        return redact_uri(obj)
    return obj


def run_params(cfg: Config, model_config: Any, stats: Any, num_processes: int) -> dict[str, str]:
    """What a run trains: config name, model and train sections, views and their preprocessing (redacted)."""
    params = {
        "config": cfg.name,
        "views": json.dumps([v.name for v in stats.views]),
        "n_regions": str(stats.n_regions),
        "num_processes": str(num_processes),
    }
    flatten("model", model_config.model_dump(mode="json"), params)
    train = redact(cfg.train.model_dump(mode="json"))
    train.pop("pip_requirements", None)
    flatten("train", train, params)
    for v in stats.views:
        params[f"view.{v.name}.features"] = str(len(v.features))
        params[f"view.{v.name}.preprocess"] = v.kind
        params[f"view.{v.name}.table_version"] = str(v.table_version)
    return params


# --------------------------------------------------------------------------- the registered model


@dataclass(frozen=True)
class Registered:
    name: str
    version: int
    model_uri: str  # the logged model (models:/m-...)
    created_model: bool  # this call created the registered model itself


def register(model_uri: str, name: str, tags: dict[str, str] | None = None) -> Registered:
    """Register a logged model as a new version of ``name`` (created if needed)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        client.get_registered_model(name)
        created = False
    except Exception:
        created = True
    mv = mlflow.register_model(model_uri, name, tags=tags or {})
    return Registered(name=name, version=int(mv.version), model_uri=model_uri, created_model=created)


def rollback(reg: Registered) -> None:
    """Delete a version registered by a job that then failed (and the model, if it created it)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        client.delete_model_version(reg.name, str(reg.version))
        if reg.created_model and not client.search_model_versions(f"name = '{reg.name}'"):
            client.delete_registered_model(reg.name)
    except Exception:  # pragma: no cover - best effort while another error propagates
        log.exception("could not roll back %s version %s", reg.name, reg.version)


STATE_TAG = "cookie.state"  # on a model version: "registering" until its alias is set, then "ready"
REGISTERING, READY = "registering", "ready"
HOST_TAG, PID_TAG = "cookie.host", "cookie.pid"  # the job that registered the version


def registering_tags() -> dict[str, str]:
    """The tags a version is registered with: unfinished, and which process on which host registers it."""
    return {STATE_TAG: REGISTERING, HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def mark_ready(name: str, version: int) -> None:
    from mlflow.tracking import MlflowClient

    MlflowClient().set_model_version_tag(name, str(version), STATE_TAG, READY)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True


@dataclass(frozen=True)
class Abandoned:
    version: int
    run_id: str
    why: str


def abandoned_versions(name: str, run_id: str) -> tuple[list[Abandoned], list[str]]:
    """Versions of ``name`` left half-registered by jobs that will never finish them, and notes on the
    unfinished versions that may still be in progress (kept).

    A run registers exactly one version, so one already tagged with ``run_id`` was left by this run's killed
    job (``run_id`` is being resumed). Another run's version is abandoned when it is still tagged
    ``registering``, holds no alias (the embeddings are written before the alias, so a version with an alias
    is whole), and its job is gone: the training run ended (FAILED, KILLED, FINISHED), or the run is still
    marked RUNNING (``kill -9`` leaves it so) but the process that registered it on this host no longer
    exists. An unfinished version registered on another host with a running run may belong to a live job: it
    is kept, with a note. Other runs' versions registered before these tags existed are never touched.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        found = client.search_model_versions(f"name = '{name}'")
        if not found:
            return [], []
        aliased = {str(v) for v in (getattr(client.get_registered_model(name), "aliases", None) or {}).values()}
    except Exception:  # no such registered model yet
        return [], []
    here = socket.gethostname()
    gone: list[Abandoned] = []
    notes: list[str] = []
    for mv in sorted(found, key=lambda m: int(m.version)):
        tags = dict(mv.tags or {})
        owner = tags.get("run_id", "")
        if owner == run_id:
            gone.append(Abandoned(int(mv.version), owner, f"run {run_id} is being resumed"))
            continue
        if tags.get(STATE_TAG) != REGISTERING or str(mv.version) in aliased:
            continue
        try:
            status = client.get_run(owner).info.status if owner else "DELETED"
        except Exception:
            status = "DELETED"
        if status != "RUNNING":
            gone.append(Abandoned(int(mv.version), owner, f"its run {owner} is {status}"))
            continue
        host, pid = tags.get(HOST_TAG), tags.get(PID_TAG, "")
        if host == here and pid.isdigit() and not _alive(int(pid)):
            gone.append(Abandoned(int(mv.version), owner, f"the job that registered it (pid {pid}) is gone"))
        else:
            notes.append(
                f"{name} version {mv.version} is still being registered by run {owner} on {host or '?'} "
                f"(pid {pid or '?'}); left as it is"
            )
    return gone, notes


def end_run(run_id: str, status: str = "KILLED") -> None:
    """Mark a run that a killed job left RUNNING as ended."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, status)
    except Exception:  # pragma: no cover - the run may be gone; nothing to end
        log.debug("could not end run %s", run_id, exc_info=True)


def delete_version(name: str, version: int) -> None:
    from mlflow.tracking import MlflowClient

    MlflowClient().delete_model_version(name, str(version))


def set_alias(name: str, alias: str, version: int) -> None:
    from mlflow.tracking import MlflowClient

    MlflowClient().set_registered_model_alias(name, alias, str(version))


# --------------------------------------------------------------------------- versions, evaluations, scores

EVAL_TAG_PREFIX = "eval."


def client(tracking_uri: str | None = None, registry_uri: str | None = None) -> Any:
    """An ``MlflowClient`` on ``tracking_uri`` (default: ``$MLFLOW_TRACKING_URI``) and ``registry_uri``
    (default: the same store)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)


def client_for(cfg: Any, explicit_tracking_uri: str | None = None) -> Any:
    """The client of a config: :func:`tracking_uri` (``explicit_tracking_uri``, e.g. ``--tracking-uri``, wins)
    and ``train.registry_uri`` (e.g. ``databricks-uc``), else the same store."""
    return client(tracking_uri(cfg, explicit_tracking_uri), registry_uri(cfg, explicit_tracking_uri))


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
            raise MissingModel(f"registered model {name!r} has no {what}") from exc
        raise
    return VersionRef(name, int(mv.version), mv.run_id, tuple(getattr(mv, "aliases", []) or []))


def ensure_experiment(mlflow_client: Any, name: str, artifact_location: str | None = None) -> str:
    """Id of experiment ``name``, created (with ``artifact_location``, see :func:`artifact_location`) if needed."""
    exp = mlflow_client.get_experiment_by_name(name)
    exp_id: str
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            mlflow_client.restore_experiment(exp.experiment_id)
        exp_id = exp.experiment_id
        return exp_id
    try:
        exp_id = mlflow_client.create_experiment(name, artifact_location=artifact_location)
        return exp_id
    except Exception:  # created meanwhile by another process
        exp = mlflow_client.get_experiment_by_name(name)
        if exp is None:
            raise
        exp_id = exp.experiment_id
        return exp_id


def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}


def log_evaluation(
    mlflow_client: Any,
    experiment: str,
    artifact_location: str | None,
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

    exp_id = ensure_experiment(mlflow_client, experiment, artifact_location)
    all_tags = {
        "cookie.kind": "evaluation",
        "cookie.model_name": ref.name,
        "cookie.model_version": "" if ref.version is None else str(ref.version),
        "cookie.source_run_id": ref.run_id or "",
        **({"cookie.primary_metric": primary_metric} if primary_metric else {}),
        **dict(tags or {}),
    }
    run = mlflow_client.create_run(exp_id, run_name=run_name or f"eval {ref.label()}", tags=all_tags)
    rid: str = run.info.run_id
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
            mlflow_client.set_model_version_tag(
                ref.name, str(ref.version), f"{EVAL_TAG_PREFIX}primary_metric", primary_metric
            )
    if log_to_training_run and ref.run_id:
        try:
            batch = [Metric(f"{EVAL_TAG_PREFIX}{k}", v, now, 0) for k, v in fm.items()]
            for i in range(0, len(batch), 900):
                mlflow_client.log_batch(ref.run_id, metrics=batch[i : i + 900])
            mlflow_client.set_tag(ref.run_id, f"{EVAL_TAG_PREFIX}run_id", rid)
        except Exception as exc:
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
        except Exception:
            return None
        if key in run.data.metrics:
            return float(run.data.metrics[key])
    return None
