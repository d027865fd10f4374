"""Give the champion alias to the challenger only if it beats the champion on the primary metric.

    python jobs/promote.py --config conf/manhattan180.yaml
    make promote CONFIG=conf/manhattan180.yaml ARGS="--dry-run"

The primary metric is the config's ``evaluation.primary_metric`` (e.g. ``crime.ridge_kfold.R2``), read
from the versions' ``eval.*`` tags written by ``jobs/evaluate.py``. A version that was never evaluated is
evaluated first (``--no-evaluate`` to refuse instead). Promotion happens when there is no champion, or
when the challenger is better by more than ``evaluation.min_improvement`` (strictly). The decision, both
scores and both versions are logged as an MLflow run (tag ``cookie.kind=promotion``) and as tags of the
challenger version.

Exit codes: 0 decided (promoted or kept; see the JSON printed), 2 bad config, 3 no challenger.
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
    p.add_argument("--config", required=True)
    p.add_argument("--model-name", help="registered model (default: evaluation.model_name or cookie_<config name>)")
    p.add_argument("--metric", help="override evaluation.primary_metric")
    p.add_argument("--min-improvement", type=float, help="override evaluation.min_improvement")
    p.add_argument("--challenger-alias", help="default: evaluation.alias ('challenger')")
    p.add_argument("--champion-alias", help="default: evaluation.champion_alias ('champion')")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    p.add_argument("--no-evaluate", action="store_true", help="do not evaluate versions that have no score")
    p.add_argument("--dry-run", action="store_true", help="decide and print; change and log nothing")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from cookie.config import ConfigError, load_config
    from cookie.evaluation.config import metric_direction
    from cookie.evaluation.pipeline import evaluate_ref, evaluation_config, registered_model_name
    from cookie.evaluation.promotion import promote
    from cookie.evaluation.registry import client, tracking_uri

    try:
        cfg = load_config(args.config, base_dir=str(REPO))
        ev = evaluation_config(cfg)
        metric = args.metric or ev.primary_metric
        if not metric:
            raise ValueError("no primary metric: set evaluation.primary_metric or pass --metric")
        direction = ev.direction() if not args.metric else (
            ev.primary_direction if ev.primary_direction != "auto" else metric_direction(metric))
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    mc = client(tracking_uri(cfg, args.tracking_uri))
    name = args.model_name or registered_model_name(cfg)

    def evaluate_missing(ref):  # noqa: ANN001, ANN202
        print(f"{ref.label()} has no {metric!r} yet: evaluating it")
        out = evaluate_ref(cfg, ref, mlflow_client=mc, log=not args.dry_run)
        return out.metrics.get(metric)

    try:
        d = promote(
            mc, name, metric, direction, ev.experiment_name(cfg.name),
            min_improvement=ev.min_improvement if args.min_improvement is None else args.min_improvement,
            challenger_alias=args.challenger_alias or ev.alias,
            champion_alias=args.champion_alias or ev.champion_alias,
            evaluate_missing=None if args.no_evaluate else evaluate_missing,
            dry_run=args.dry_run,
        )
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(d.as_dict(), indent=1))
    print(("PROMOTED" if d.promoted else "KEPT champion") + f": {d.reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
