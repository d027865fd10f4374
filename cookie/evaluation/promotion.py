"""Champion / challenger promotion on the configured primary metric.

The rule (:func:`decide`): the challenger becomes champion when there is no champion, or when its score is
better than the champion's by more than ``min_improvement`` (strictly; ties keep the champion). A
challenger without a finite score is never promoted. :func:`promote` applies it to the registry and logs
the decision, both scores and both versions as an MLflow run (tag ``cookie.kind=promotion``) and as tags of
the challenger version (``promotion.decision``, ``promotion.reason``, ...). Progress and the decision go to
the ``cookie.evaluation.promotion`` logger.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeGuard

from cookie.storage.tracking import VersionRef, ensure_experiment, resolve_version, version_score

__all__ = ["Decision", "decide", "promote"]

log = logging.getLogger(__name__)


@dataclass
class Decision:
    """Outcome of one promotion check."""

    promoted: bool
    reason: str
    model_name: str
    metric: str
    direction: str
    challenger_version: int | None
    challenger_score: float | None
    champion_version: int | None
    champion_score: float | None
    min_improvement: float
    run_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finite(x: float | None) -> TypeGuard[float]:
    return x is not None and math.isfinite(x)


def decide(
    challenger: float | None,
    champion: float | None,
    direction: Literal["max", "min"],
    min_improvement: float = 0.0,
    has_champion: bool | None = None,
) -> tuple[bool, str]:
    """``(promote?, reason)`` for a challenger score against a champion score.

    ``has_champion`` defaults to ``champion is not None``; a champion whose score is unknown (never
    evaluated, or NaN) is replaced only by an explicit re-evaluation, not by default: the challenger is then
    not promoted.
    """
    if has_champion is None:
        has_champion = champion is not None
    if not _finite(challenger):
        return False, "challenger has no finite score (evaluate it first)"
    if not has_champion:
        return True, "no champion yet"
    if not _finite(champion):
        return False, "champion has no finite score; evaluate it (make evaluate ARGS='--alias champion')"
    gain = (challenger - champion) if direction == "max" else (champion - challenger)
    if gain > min_improvement:
        return True, f"challenger better by {gain:.6g} (> {min_improvement:g})"
    if gain > 0:
        return False, f"challenger better by only {gain:.6g} (<= min_improvement {min_improvement:g})"
    return False, f"challenger not better ({'worse' if gain < 0 else 'tie'}: {gain:.6g})"


def _try_resolve(mlflow_client: Any, name: str, alias: str) -> VersionRef | None:
    try:
        return resolve_version(mlflow_client, name, alias=alias)
    except LookupError:
        return None


def promote(
    mlflow_client: Any,
    model_name: str,
    metric: str,
    direction: Literal["max", "min"],
    experiment: str,
    min_improvement: float = 0.0,
    challenger_alias: str = "challenger",
    champion_alias: str = "champion",
    evaluate_missing: Callable[[VersionRef], float | None] | None = None,
    dry_run: bool = False,
    artifact_location: str | None = None,
) -> Decision:
    """Compare challenger and champion on ``metric`` and move the champion alias if the challenger wins.

    ``evaluate_missing(ref)``, if given, is called for a version that has no score yet and returns it (the
    evaluate job's code path); without it a missing score counts as none. ``dry_run`` decides and logs
    nothing. ``artifact_location`` is used if ``experiment`` has to be created.
    """
    challenger = resolve_version(mlflow_client, model_name, alias=challenger_alias)
    champion = _try_resolve(mlflow_client, model_name, champion_alias)
    log.info(
        "%s: challenger @%s = %s, champion @%s = %s",
        model_name,
        challenger_alias,
        challenger.label(),
        champion_alias,
        "none" if champion is None else champion.label(),
    )

    def score(ref: VersionRef) -> float | None:
        s = version_score(mlflow_client, ref, metric)
        if s is None and evaluate_missing is not None:
            log.info("%s has no %r yet: evaluating it", ref.label(), metric)
            s = evaluate_missing(ref)
        log.info("%s: %s = %s", ref.label(), metric, s)
        return s

    c_score = score(challenger)
    if champion is not None and champion.version == challenger.version:
        ok, why = False, f"challenger v{challenger.version} is already the champion"
        k_score = c_score
    else:
        k_score = score(champion) if champion is not None else None
        ok, why = decide(c_score, k_score, direction, min_improvement, has_champion=champion is not None)
    decision = Decision(
        promoted=ok,
        reason=why,
        model_name=model_name,
        metric=metric,
        direction=direction,
        challenger_version=challenger.version,
        challenger_score=c_score,
        champion_version=None if champion is None else champion.version,
        champion_score=k_score,
        min_improvement=min_improvement,
    )
    log.info("%s%s: %s", "PROMOTED" if ok else "KEPT champion", " (dry run: nothing changed)" if dry_run else "", why)
    if dry_run:
        return decision
    if ok:
        mlflow_client.set_registered_model_alias(model_name, champion_alias, str(challenger.version))
        log.info("%s @%s -> version %s", model_name, champion_alias, challenger.version)
    decision.run_id = _log(mlflow_client, experiment, decision, challenger_alias, champion_alias, artifact_location)
    log.info("logged promotion run %s in experiment %r", decision.run_id, experiment)
    return decision


def _log(
    mlflow_client: Any,
    experiment: str,
    d: Decision,
    challenger_alias: str,
    champion_alias: str,
    artifact_location: str | None = None,
) -> str:
    from mlflow.entities import Metric, Param

    exp_id = ensure_experiment(mlflow_client, experiment, artifact_location)
    tags = {
        "cookie.kind": "promotion",
        "cookie.model_name": d.model_name,
        "cookie.decision": "promoted" if d.promoted else "kept",
        "cookie.challenger_version": str(d.challenger_version),
        "cookie.champion_version": "" if d.champion_version is None else str(d.champion_version),
        "mlflow.note.content": d.reason,
    }
    run = mlflow_client.create_run(exp_id, run_name=f"promote {d.model_name} v{d.challenger_version}", tags=tags)
    rid: str = run.info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric("promoted", 1.0 if d.promoted else 0.0, now, 0)]
    if _finite(d.challenger_score):
        metrics.append(Metric("challenger_score", float(d.challenger_score), now, 0))
    if _finite(d.champion_score):
        metrics.append(Metric("champion_score", float(d.champion_score), now, 0))
    params = [
        Param("metric", d.metric),
        Param("direction", d.direction),
        Param("min_improvement", str(d.min_improvement)),
        Param("challenger_alias", challenger_alias),
        Param("champion_alias", champion_alias),
        Param("reason", d.reason[:500]),
    ]
    mlflow_client.log_batch(rid, metrics=metrics, params=params)
    mlflow_client.set_terminated(rid, "FINISHED")
    if d.challenger_version is not None:
        v = str(d.challenger_version)
        mlflow_client.set_model_version_tag(d.model_name, v, "promotion.decision", "promoted" if d.promoted else "kept")
        mlflow_client.set_model_version_tag(d.model_name, v, "promotion.reason", d.reason[:500])
        mlflow_client.set_model_version_tag(d.model_name, v, "promotion.run_id", rid)
        mlflow_client.set_model_version_tag(
            d.model_name, v, "promotion.compared_with", "" if d.champion_version is None else str(d.champion_version)
        )
    return rid
