"""The command line: ``python -m cookie <verb> --config conf/<name>.yaml [--set key=value ...]``.

Verbs, in the order data flows: ``features`` (ETL to Delta), ``train`` (TorchDistributor, MLflow run,
registered version, embeddings table), ``evaluate`` (downstream tasks on a version's frozen embeddings),
``promote`` (champion alias), ``lookup`` (embeddings of regions or points), ``select`` (choose settings
inside training rows and write the chosen config). ``jobs/*.py`` are the same verbs as spark-submit entry
points.

Every verb takes ``--set key.path=value`` (YAML values) to override the config without copying it, e.g.
``--set model.method=gfactorcl --set model.seed=3``; one feature set serves every such model.

Errors a user can fix (:class:`cookie.exceptions.CookieError`) end in one line on stderr and the exit code of
:data:`cookie.constants.EXIT_CODES`; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from cookie.constants import EXIT_BAD_CONFIG, EXIT_BAD_INPUT, EXIT_CODES, EXIT_MISSING, EXIT_OK
from cookie.exceptions import ConfigError, CookieError, MissingModel

log = logging.getLogger("cookie")

VERBS = ("features", "train", "evaluate", "promote", "lookup", "select")


def fail(exc: BaseException | str, code: int) -> NoReturn:
    print(f"error: {exc}", file=sys.stderr)
    raise SystemExit(code)


def _setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("py4j", "urllib3", "alembic", "mlflow.store", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def load(args: argparse.Namespace) -> Any:
    """The validated config with ``--set`` overrides (every section, ``model:`` included)."""
    from cookie.config import load_config

    return load_config(args.config, overrides=args.set)


def check_tracking(cfg: Any, explicit: str | None = None, model_name: str | None = None) -> None:
    """The registered model's name fits the registry (``--model-name`` if given, else the config's; a
    :class:`ConfigError` otherwise) and the tracking server answers (a few seconds at most), before any Spark or
    training work starts."""
    from cookie.storage.tracking import check_store, parse_model_name, registered_model_name, registry_uri, tracking_uri

    registry = registry_uri(cfg, explicit)
    if model_name:
        parse_model_name(model_name, registry)
    else:
        registered_model_name(cfg)
    for uri in dict.fromkeys((tracking_uri(cfg, explicit), registry)):
        check_store(uri)


def session(cfg: Any, app: str, master: str | None = None) -> Any:
    """A Spark session with Sedona and Delta loaded (:class:`StackNotLoaded` names a missing jar)."""
    from cookie.spark import build_session, settings_for

    return build_session(settings_for(cfg, app, master))


# --------------------------------------------------------------------------- verbs


def _write_result(path: str | None, payload: dict[str, Any]) -> None:
    """``--result FILE``: what the verb did as JSON, for scripts (the quality benchmark reads it)."""
    if path:
        from pathlib import Path

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=1, default=str))


def cmd_features(args: argparse.Namespace) -> int:
    from cookie.etl.job import build_features, check_only

    cfg = load(args)
    check_only(cfg, args.only)  # a typo fails before the JVM starts
    spark = session(cfg, "features", args.master)
    report = build_features(spark, cfg, args.only)
    print(report.as_text())
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    from cookie.pipeline import train_and_publish

    cfg = load(args)
    check_tracking(cfg)
    spark = session(cfg, "train", args.master)
    result = train_and_publish(
        spark, cfg, resume=args.resume, num_processes=args.num_processes, stop_after_epochs=args.stop_after_epochs
    )
    print(result.summary())
    _write_result(
        args.result,
        {
            "status": result.status,
            "run_id": result.run_id,
            "model_name": result.model_name,
            "model_version": result.model_version,
            "alias": result.alias,
            "global_epoch": result.global_epoch,
            "embeddings_table": result.embeddings_table,
            "embeddings_table_version": result.embeddings_table_version,
            "efficiency": result.efficiency,
            "timing": result.timing,
        },
    )
    if result.status == "STOPPED":
        print(f"stopped after epoch {result.global_epoch}; continue with --resume")
    return EXIT_OK


def _evaluation_tasks(cfg: Any, names: Sequence[str] | None) -> Any:
    if not names:
        return None
    tasks = [t for t in cfg.evaluation.tasks if t.name in names or t.key in names]
    if not tasks:
        raise ConfigError(f"no task matches {list(names)}; tasks: {[t.key for t in cfg.evaluation.tasks]}")
    return tasks


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from cookie.evaluation.pipeline import evaluate_version
    from cookie.evaluation.runner import HTML_MAP
    from cookie.storage.tracking import client_for

    torch.set_num_threads(args.threads)
    cfg = load(args)
    check_tracking(cfg, args.tracking_uri, args.model_name)
    tasks = _evaluation_tasks(cfg, args.tasks)
    out = evaluate_version(
        cfg,
        model_name=args.model_name,
        alias=args.alias,
        version=args.version,
        run_id=args.run_id,
        mlflow_client=client_for(cfg, args.tracking_uri),
        report_dir=args.report_dir,
        log=not args.no_log,
        maps=False if args.no_maps else None,
        tasks=tasks,
    )
    summary = {
        "model": out.ref.name,
        "version": out.ref.version,
        "training_run_id": out.ref.run_id,
        "eval_run_id": out.eval_run_id,
        "report": str(out.report_dir / "report.md"),
        "map": str(out.files[HTML_MAP]) if HTML_MAP in out.files else None,
        "metrics": out.metrics,
    }
    print(json.dumps(summary, indent=1))
    _write_result(args.result, summary)
    return EXIT_OK


def cmd_promote(args: argparse.Namespace) -> int:
    import torch

    from cookie.config.evaluation import metric_direction
    from cookie.evaluation.pipeline import evaluate_ref
    from cookie.evaluation.promotion import promote
    from cookie.storage.tracking import artifact_location, client_for, experiment_name, registered_model_name

    torch.set_num_threads(1)
    cfg = load(args)
    check_tracking(cfg, args.tracking_uri, args.model_name)
    ev = cfg.evaluation
    metric = args.metric or ev.primary_metric
    if not metric:
        raise ConfigError("no primary metric: set evaluation.primary_metric or pass --metric")
    try:
        direction = (
            ev.direction()
            if not args.metric
            else (ev.primary_direction if ev.primary_direction != "auto" else metric_direction(metric))
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    mc = client_for(cfg, args.tracking_uri)
    name = args.model_name or registered_model_name(cfg)

    def evaluate_missing(ref: Any) -> float | None:
        out = evaluate_ref(cfg, ref, mlflow_client=mc, log=not args.dry_run)
        return out.metrics.get(metric)

    try:
        d = promote(
            mc,
            name,
            metric,
            direction,
            experiment_name(cfg),
            min_improvement=ev.min_improvement if args.min_improvement is None else args.min_improvement,
            challenger_alias=args.challenger_alias or ev.alias,
            champion_alias=args.champion_alias or ev.champion_alias,
            evaluate_missing=None if args.no_evaluate else evaluate_missing,
            dry_run=args.dry_run,
            artifact_location=artifact_location(cfg),
        )
    except LookupError as exc:
        raise MissingModel(str(exc)) from exc
    print(json.dumps(d.as_dict(), indent=1))
    return EXIT_OK


def cmd_lookup(args: argparse.Namespace) -> int:
    from cookie.serving.lookup import format_vector, lookup_points, lookup_regions

    if len(args.lat) != len(args.lon):
        raise ConfigError("give as many --lat as --lon")
    if not args.region and not args.lat:
        raise ConfigError("give --region and/or --lat/--lon")
    cfg = load(args)
    check_tracking(cfg, model_name=args.model_name)
    spark = session(cfg, "lookup", args.master)
    missing = 0
    if args.region:
        for _, r in lookup_regions(spark, cfg, args.region, args.model_name, args.alias, args.version).iterrows():
            missing += r["embedding"] is None
            print(
                f"region {r['region_id']}  {r['model_name']} v{r['model_version']}  "
                f"{format_vector(r['embedding'], args.full)}"
            )
    if args.lat:
        pts = list(zip(args.lat, args.lon))
        for _, r in lookup_points(spark, cfg, pts, args.model_name, args.alias, args.version).iterrows():
            missing += r["embedding"] is None
            region = r["region_id"] if r["region_id"] is not None else "(outside every region)"
            print(
                f"point ({r['lat']}, {r['lon']}) -> region {region}  {r['model_name']} v{r['model_version']}  "
                f"{format_vector(r['embedding'], args.full)}"
            )
    return EXIT_BAD_INPUT if missing else EXIT_OK


def cmd_select(args: argparse.Namespace) -> int:
    from cookie.evaluation.select import select_settings

    cfg = load(args)
    report = select_settings(cfg, args.config, out=args.out, overrides=args.set)
    print(report)
    return EXIT_OK


# --------------------------------------------------------------------------- parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML config (conf/<name>.yaml)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config setting, e.g. model.method=gfactorcl (repeatable)",
    )


def _version_args(p: argparse.ArgumentParser, default_alias: str) -> None:
    p.add_argument("--model-name", help="registered model (default: the naming rule of cookie.storage.tracking)")
    sel = p.add_mutually_exclusive_group()
    sel.add_argument("--alias", help=f"model alias (default: {default_alias})")
    sel.add_argument("--version", type=int, help="registered version number")
    return None


def build_parser() -> argparse.ArgumentParser:
    codes = "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog="python -m cookie",
        description="CooKIE region embeddings on Spark, Sedona, Delta, PyTorch and MLflow.",
        epilog=f"exit codes: {codes}",
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="{" + ",".join(VERBS) + "}")

    p = sub.add_parser("features", help="raw geodata -> regions and view/label Delta tables")
    _common(p)
    p.add_argument("--only", nargs="*", help="build only these views/labels (regions are always built)")
    p.add_argument("--master", help="Spark master (default: spark-submit's, else local[*])")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("train", help="train, register (alias train.alias) and write the embeddings table")
    _common(p)
    p.add_argument("--resume", action="store_true", help="continue the newest stopped run of this model")
    p.add_argument("--num-processes", type=int, help="ranks (default: train.num_processes)")
    p.add_argument("--stop-after-epochs", type=int, help="stop (resumably) after this many epochs in total")
    p.add_argument("--master", help="Spark master (default: spark-submit's, else local[*])")
    p.add_argument("--result", help="also write what the job did (run, model version, timings) to this JSON file")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="downstream tasks on a registered version's frozen embeddings")
    _common(p)
    p.add_argument("--model-name", help="registered model (default: the naming rule of cookie.storage.tracking)")
    sel = p.add_mutually_exclusive_group()
    sel.add_argument("--alias", help="model alias (default: evaluation.alias, 'challenger')")
    sel.add_argument("--version", type=int, help="registered version number")
    sel.add_argument("--run-id", help="training run id (its rows of the embeddings table)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: train.tracking_uri / $MLFLOW_TRACKING_URI)")
    p.add_argument("--report-dir", help="write the report here instead of reports/<config>/...")
    p.add_argument("--tasks", nargs="*", help="only these tasks ('<name>' or '<name>.<protocol>')")
    p.add_argument("--no-maps", action="store_true", help="skip the maps")
    p.add_argument("--no-log", action="store_true", help="do not log to MLflow (report only)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (land-use MLP)")
    p.add_argument("--result", help="also write the metrics and the evaluated version to this JSON file")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("promote", help="move @champion to the challenger if it is better on the primary metric")
    _common(p)
    p.add_argument("--model-name", help="registered model (default: the naming rule of cookie.storage.tracking)")
    p.add_argument("--metric", help="override evaluation.primary_metric")
    p.add_argument("--min-improvement", type=float, help="override evaluation.min_improvement")
    p.add_argument("--challenger-alias", help="default: evaluation.alias ('challenger')")
    p.add_argument("--champion-alias", help="default: evaluation.champion_alias ('champion')")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: train.tracking_uri / $MLFLOW_TRACKING_URI)")
    p.add_argument("--no-evaluate", action="store_true", help="do not evaluate versions that have no score")
    p.add_argument("--dry-run", action="store_true", help="decide and print; change and log nothing")
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("lookup", help="embeddings of regions (by id) or of lat/lon points")
    _common(p)
    _version_args(p, "champion")
    p.add_argument("--region", action="append", default=[], help="region id (repeatable)")
    p.add_argument("--lat", type=float, action="append", default=[], help="latitude (repeatable, with --lon)")
    p.add_argument("--lon", type=float, action="append", default=[], help="longitude (repeatable, with --lat)")
    p.add_argument("--full", action="store_true", help="print whole vectors, not the first numbers")
    p.add_argument("--master", help="Spark master (default: local[*])")
    p.set_defaults(func=cmd_lookup)

    p = sub.add_parser(
        "select",
        help="choose view preprocessing and spatial context inside training rows only; write the chosen config",
    )
    _common(p)
    p.add_argument("--out", help="where to write the chosen config (default: <config>.selected.yaml)")
    p.set_defaults(func=cmd_select)
    return parser


def main(
    argv: Sequence[str] | None = None,
    handler: Callable[[CookieError], int] | None = None,
    log_level: int = logging.INFO,
) -> int:
    """Run one verb; a :class:`CookieError` becomes one line on stderr and its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(log_level)
    try:
        return int(args.func(args))
    except CookieError as exc:
        if handler is not None:
            return handler(exc)
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def run_verb(verb: str, argv: Sequence[str] | None = None) -> int:
    """Entry point of ``jobs/<verb>.py``: the same verb with the script's arguments."""
    args = list(sys.argv[1:] if argv is None else argv)
    return main([verb, *args])


__all__ = ["EXIT_BAD_CONFIG", "EXIT_MISSING", "VERBS", "build_parser", "main", "run_verb"]
