"""Evaluate a registered model version's embeddings on the config's downstream tasks.

    python jobs/evaluate.py --config conf/manhattan180.yaml                 # alias 'challenger'
    python jobs/evaluate.py --config conf/manhattan180.yaml --alias champion
    python jobs/evaluate.py --config conf/manhattan180.yaml --version 3
    python jobs/evaluate.py --config conf/manhattan180.yaml --run-id <training run id>
    make evaluate CONFIG=conf/manhattan180.yaml ARGS="--version 3"

Reads the version's rows of the ``embeddings`` Delta table and the ``label_*`` / ``regions`` tables of the
config's warehouse; runs every task of the config's ``evaluation:`` section; writes a report (markdown,
metrics.json, PNG maps) under ``reports/<config>/<model>/v<version>/<time>/``; logs an evaluation run to
MLflow ($MLFLOW_TRACKING_URI) and the metrics as ``eval.<task>.<protocol>.<metric>`` tags of the version
(and metrics of its training run) for ``jobs/promote.py``.

Exit codes: 0 ok, 2 bad config or arguments, 3 missing table / model version.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="YAML config in conf/")
    p.add_argument("--model-name", help="registered model (default: evaluation.model_name, train.registered_model_name "
                   "or cookie_<config name>)")
    sel = p.add_mutually_exclusive_group()
    sel.add_argument("--alias", help="model alias (default: evaluation.alias, 'challenger')")
    sel.add_argument("--version", type=int, help="model version number")
    sel.add_argument("--run-id", help="training run id (its rows of the embeddings table)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    p.add_argument("--report-dir", help="write the report here instead of reports/<config>/...")
    p.add_argument("--tasks", nargs="*", help="only these tasks ('<name>' or '<name>.<protocol>')")
    p.add_argument("--no-maps", action="store_true", help="skip the PNG maps")
    p.add_argument("--no-log", action="store_true", help="do not log to MLflow (report only)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (land-use MLP)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from cookie.config import ConfigError, load_config
    from cookie.evaluation.pipeline import evaluate_version, evaluation_config
    from cookie.evaluation.registry import client, tracking_uri
    from cookie.evaluation.tables import MissingTable

    try:
        cfg = load_config(args.config, base_dir=str(REPO))
        ev = evaluation_config(cfg)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tasks = None
    if args.tasks:
        tasks = [t for t in ev.tasks if t.name in args.tasks or t.key in args.tasks]
        if not tasks:
            print(f"error: no task matches {args.tasks}; tasks: {[t.key for t in ev.tasks]}", file=sys.stderr)
            return 2
    uri = tracking_uri(cfg, args.tracking_uri)
    try:
        out = evaluate_version(
            cfg, model_name=args.model_name, alias=args.alias, version=args.version, run_id=args.run_id,
            mlflow_client=client(uri), report_dir=args.report_dir, log=not args.no_log,
            maps=False if args.no_maps else None, tasks=tasks,
        )
    except (MissingTable, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    print(json.dumps({"model": out.ref.name, "version": out.ref.version, "eval_run_id": out.eval_run_id,
                      "report": str(out.report_dir / "report.md"), "metrics": out.metrics}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
