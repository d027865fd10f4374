"""MLflow at the edges: tracking URIs, experiments, run parameters, the registered pyfunc and aliases.

Defaults: a local SQLite store ``sqlite:///<repo>/mlflow.db`` (absolute, so every working
directory and every torchrun child sees the same store) with artefacts under ``<repo>/mlruns``;
``train.tracking_uri`` or ``$MLFLOW_TRACKING_URI`` override it. Registered model name
``train.registered_model_name`` or ``cookie_<config name>``.

Registration is all-or-nothing: :func:`register` returns a version that the caller must either
keep (after writing the embeddings and setting the alias) or roll back with :func:`rollback`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger(__name__)

DEFAULT_ALIAS = "champion"


# --------------------------------------------------------------------------- where things live


def tracking_uri(cfg) -> str:
    """``train.tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<repo>/mlflow.db``."""
    uri = cfg.train.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{Path(cfg.base_dir).resolve() / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        # sqlite:///relative.db: make it absolute, or each working directory gets its own store
        return f"sqlite:///{(Path(cfg.base_dir) / uri[len('sqlite:///'):]).resolve()}"
    return uri


def registry_uri(cfg) -> str:
    """``train.registry_uri`` (e.g. ``databricks-uc``), else the tracking store.

    ``$MLFLOW_REGISTRY_URI`` is deliberately not read: ``mlflow.set_registry_uri`` writes it, so
    in a process that handled another config it would name that config's registry.
    """
    return cfg.train.registry_uri or tracking_uri(cfg)


def configure(cfg) -> tuple[str, str]:
    """Point the mlflow module at this config's tracking and registry stores; returns both URIs."""
    import mlflow

    t, r = tracking_uri(cfg), registry_uri(cfg)
    mlflow.set_tracking_uri(t)
    mlflow.set_registry_uri(r)
    return t, r


def experiment_name(cfg) -> str:
    return cfg.train.experiment_name or f"cookie-{cfg.name}"


def registered_model_name(cfg) -> str:
    return cfg.train.registered_model_name or f"cookie_{cfg.name}"


def _local_store_dir(uri: str) -> Path | None:
    """Folder of a local sqlite database or file store, where artefacts go by default."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).parent
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path).parent
    return None


def artifact_location(cfg) -> str | None:
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


def ensure_experiment(cfg) -> str:
    """Id of the config's experiment, created (with its artefact location) if needed."""
    import mlflow

    name = experiment_name(cfg)
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return mlflow.create_experiment(name, artifact_location=artifact_location(cfg))
    except Exception:  # created meanwhile by another process
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


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


def run_params(cfg, model_config: Any, stats: Any, num_processes: int) -> dict[str, str]:
    """What a run trains: config name, model and train sections, views and their preprocessing."""
    params = {"config": cfg.name, "views": json.dumps([v.name for v in stats.views]),
              "n_regions": str(stats.n_regions), "num_processes": str(num_processes)}
    flatten("model", model_config.model_dump(mode="json"), params)
    train = cfg.train.model_dump(mode="json")
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


def cookie_code_path() -> str:
    """The ``cookie`` package folder, shipped with the model so it imports wherever it is loaded."""
    import cookie

    return str(Path(cookie.__file__).resolve().parent)


def log_pyfunc(model: Any, stats: Any, workdir: str | os.PathLike[str], pip_requirements: list[str],
               batch_size: int = 8192):
    """Log the pyfunc (model file + preprocessing statistics + cookie code) into the active run."""
    import mlflow

    from cookie.training.pyfunc import MODEL_ARTIFACT, STATS_ARTIFACT, RegionEmbeddingModel, signature

    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    model_path = model.save(wd / "region_model.pt")
    stats_path = wd / "preprocessing.json"
    stats_path.write_text(stats.to_json())
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=RegionEmbeddingModel(batch_size=batch_size),
        artifacts={MODEL_ARTIFACT: str(model_path), STATS_ARTIFACT: str(stats_path)},
        code_paths=[cookie_code_path()],
        pip_requirements=list(pip_requirements),
        signature=signature(stats, model.embedding_dim),
    )


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


def set_alias(name: str, alias: str, version: int) -> None:
    from mlflow.tracking import MlflowClient

    MlflowClient().set_registered_model_alias(name, alias, str(version))


def resolve_version(name: str, alias: str | None = None, version: int | None = None) -> int:
    """A registered version number from an explicit version or an alias (default ``champion``)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    if version is not None:
        client.get_model_version(name, str(version))  # raises if it does not exist
        return int(version)
    alias = alias or DEFAULT_ALIAS
    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except Exception as exc:
        raise LookupError(f"registered model {name!r} has no alias {alias!r}") from exc


def model_uri(name: str, alias: str | None = None, version: int | None = None) -> str:
    if version is not None:
        return f"models:/{name}/{version}"
    return f"models:/{name}@{alias or DEFAULT_ALIAS}"


def load_pyfunc(name: str, alias: str | None = None, version: int | None = None):
    """The registered pyfunc (raw flat features -> embedding matrix)."""
    import mlflow

    return mlflow.pyfunc.load_model(model_uri(name, alias, version))
