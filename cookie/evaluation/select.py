"""``python -m cookie select``: choose each view's preprocessing and spatial context inside training rows only,
and write the chosen config.

    report = select_settings(load_config("conf/manhattan180.yaml"), "conf/manhattan180.yaml")
    # writes conf/manhattan180.selected.yaml; returns a text report

What is chosen, per view of the config:

* preprocessing (``train.preprocess.<view>``): ``counts`` (log1p, then z-score) or ``zscore`` (plus the
  configured kind, when it is another one);
* spatial context (``views[i].context``): none, ``[adjacency]``, and ``[flows]`` when the config has a flows
  view (plus the configured context). Context columns are computed once by the feature job
  (``ctx_adj__<feature>``, ``ctx_flows__<feature>``), so the candidates are the columns a view table holds:
  "no context" drops them; a graph whose columns the table lacks is not a candidate (build the features with
  ``context: [adjacency, flows]`` to compare them).

How: the input is the concatenation of every view's raw features (the view tables, read with
:func:`cookie.storage.delta.read_frame`), each view preprocessed with :mod:`cookie.preprocessing`
(:func:`~cookie.preprocessing.fit_view` on all regions, as training does, then
:func:`~cookie.preprocessing.transform_view`). The target is the task of ``evaluation.primary_metric``. Views
are visited in config order (greedy): for one view, every candidate setting (at most
:data:`MAX_CANDIDATES`; beyond that preprocessing and context are chosen one after the other) is scored with
the other views at their current choice, by

* :func:`cookie.evaluation.selection.select_ridge` for the Ridge protocols (``ridge_kfold``,
  ``ridge_kfold_repeated``): each outer fold of the published unshuffled K-fold chooses by inner shuffled
  K-fold on its own training rows;
* :func:`cookie.evaluation.selection.select_rf` for ``rf_split``: each seed's split chooses on a validation
  part of its training rows (the first three seeds of the task).

The value written is the majority vote over the outer splits (ties keep the configured value); the nested
estimate (outer test R2 of each split's own choice) is reported beside it. Test rows of an outer split never
take part in its choice. Each step's nested estimate holds the earlier views at their majority choices.

The written config is a copy of the original (comments are not kept) with the chosen values, a header
comment saying how each was chosen, ``name: <name>_selected`` (a registered model, experiment and reports of
its own) and, when the existing feature tables already hold exactly the chosen context columns,
``output.dataset`` pointing at them (no rebuild needed).
"""

from __future__ import annotations

import itertools
import logging
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cookie import constants as C
from cookie.config.evaluation import TaskConfig
from cookie.constants import CONTEXT_PREFIX
from cookie.evaluation.selection import Selection, select_rf, select_ridge
from cookie.exceptions import ConfigError
from cookie.preprocessing import ViewStats, auto_kind, fit_view, transform_view
from cookie.storage.delta import load_task_label, order_ids, read_frame

__all__ = ["MAX_CANDIDATES", "Setting", "select_settings"]

log = logging.getLogger(__name__)

#: at most this many candidates are compared in one step
MAX_CANDIDATES = 8
RIDGE = ("ridge_kfold", "ridge_kfold_repeated")
RF = ("rf_split",)
KINDS = ("counts", "zscore")
RF_SEEDS = 3


@dataclass(frozen=True)
class Setting:
    """One view's preprocessing kind and context graphs."""

    kind: str
    context: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.kind}/{'+'.join(self.context) or 'none'}"


@dataclass
class _View:
    """A view table aligned with the selection rows: base features, context blocks, mask."""

    name: str
    base: list[str]
    ctx: dict[str, list[str]]  # graph -> its columns, in the table's order
    frame: Any  # the whole table (pandas), every region: preprocessing statistics use all of them
    rows: np.ndarray  # position in ``frame`` of each selection row (-1: not in the table)
    table_context: tuple[str, ...]  # graphs whose columns the table holds
    configured: Setting
    auto_kind: str | None = None

    def columns(self, s: Setting) -> list[str]:
        return self.base + [c for g in s.context for c in self.ctx[g]]

    def block(self, s: Setting, nan_policy: str) -> np.ndarray:
        cols = self.columns(s)
        X = self.frame[cols].to_numpy(dtype=float)
        present = self.frame[C.PRESENT].fillna(False).to_numpy(dtype=bool) if C.PRESENT in self.frame else None
        stats: ViewStats = fit_view(self.name, X, present, kind=s.kind, features=cols)
        ids = self.frame[C.REGION_ID].to_numpy()
        Z = transform_view(X, present, stats, nan_policy=nan_policy, region_ids=ids)
        out = np.zeros((len(self.rows), Z.shape[1]), dtype=np.float64)
        ok = self.rows >= 0
        out[ok] = Z[self.rows[ok]]
        return out


@dataclass
class _Step:
    view: str
    what: str  # "preprocessing and context", "preprocessing", "context"
    candidates: list[Setting]
    selection: Selection
    winner: Setting
    nested: float
    unavailable: list[str] = field(default_factory=list)

    def mean_inner(self) -> dict[str, float]:
        return {c.label: float(np.mean([s[c.label] for s in self.selection.inner_scores])) for c in self.candidates}


def _primary_task(cfg: Any) -> tuple[TaskConfig, str]:
    ev = cfg.evaluation
    if not ev.primary_metric:
        raise ConfigError("select needs evaluation.primary_metric (its task is the target of the selection)")
    key = ev.primary_metric.rsplit(".", 1)[0]
    task = next((t for t in ev.tasks if t.key == key), None)
    if task is None:
        raise ConfigError(f"evaluation.primary_metric {ev.primary_metric!r} names no task")
    if task.protocol not in RIDGE + RF:
        raise ConfigError(
            f"select works for primary metrics of the protocols {list(RIDGE + RF)}; "
            f"{ev.primary_metric!r} is a {task.protocol} task"
        )
    return task, ev.primary_metric


def _seeds(v: Any, default: Sequence[int]) -> list[int]:
    if v is None:
        return list(default)
    return list(range(1, int(v) + 1)) if isinstance(v, int) else [int(s) for s in v]


def _auto_kind(view: Any, frame: Any, cols: list[str]) -> str:
    """What ``train.preprocess: auto`` gives this view (the training job's rule)."""
    present = frame[C.PRESENT].fillna(False).to_numpy(dtype=bool) if C.PRESENT in frame else slice(None)
    vals = frame[cols].to_numpy(dtype=float)[present]
    vals = vals[np.isfinite(vals)]
    return auto_kind(view.kind, view.transform, float(vals.min()) if vals.size else None)


def _load_view(cfg: Any, view: Any, ids: list[str], has_flows_view: bool) -> _View:
    df = read_frame(cfg, f"{C.VIEW_PREFIX}{view.name}")
    df[C.REGION_ID] = df[C.REGION_ID].astype(str)
    feats = [c for c in df.columns if c not in (C.REGION_ID, C.PRESENT)]
    ctx = {g: [c for c in feats if c.startswith(p + C.FEATURE_SEP)] for g, p in CONTEXT_PREFIX.items()}
    ctx = {g: cs for g, cs in ctx.items() if cs}
    base = [c for c in feats if not any(c in cs for cs in ctx.values())]
    pos = {r: i for i, r in enumerate(df[C.REGION_ID])}
    rows = np.array([pos.get(r, -1) for r in ids], dtype=int)
    table_context = tuple(g for g in CONTEXT_PREFIX if g in ctx)
    configured_ctx = tuple(view.context)
    missing = [g for g in configured_ctx if g not in ctx]
    if missing:
        log.warning(
            "view %s: the config asks for context %s but view_%s has no %s columns (build the features "
            "again); compared without them",
            view.name,
            missing,
            view.name,
            [CONTEXT_PREFIX[g] + C.FEATURE_SEP + "*" for g in missing],
        )
        configured_ctx = tuple(g for g in configured_ctx if g in ctx)
    kind = cfg.train.preprocess.get(view.name, "auto")
    auto = None
    if kind == "auto":
        auto = _auto_kind(view, df, base + [c for g in configured_ctx for c in ctx[g]])
        kind = auto
    v = _View(view.name, base, ctx, df, rows, table_context, Setting(kind, configured_ctx), auto)
    if "flows" in ctx and not has_flows_view:
        log.info("view %s: ctx_flows columns but no flows view in the config: not a candidate", view.name)
    return v


def _candidates(v: _View, has_flows_view: bool) -> tuple[list[str], list[tuple[str, ...]], list[str]]:
    kinds = list(dict.fromkeys([v.configured.kind, *KINDS]))
    contexts: list[tuple[str, ...]] = [v.configured.context, ()]
    unavailable = []
    for g in ("adjacency", "flows"):
        if g == "flows" and not has_flows_view:
            continue
        if g in v.ctx:
            contexts.append((g,))
        else:
            unavailable.append(f"context [{g}]: view_{v.name} has no {CONTEXT_PREFIX[g]}{C.FEATURE_SEP}* columns")
    return kinds, list(dict.fromkeys(contexts)), unavailable


def select_settings(
    cfg: Any,
    config_path: str | Path,
    out: str | Path | None = None,
    overrides: Sequence[str] | None = None,
) -> str:
    """Choose preprocessing and context per view inside training rows (see the module docstring), write the
    chosen config to ``out`` (default ``<config>.selected.yaml`` next to ``config_path``; ``overrides`` are the
    ``--set`` values ``cfg`` was loaded with, applied to the copy too) and return a text report."""
    from cookie.config.project import apply_overrides, load_config

    config_path = Path(config_path)
    out_path = Path(out) if out else config_path.with_suffix(".selected.yaml")
    task, metric = _primary_task(cfg)
    opts = dict(task.options)

    lab = load_task_label(cfg, task)
    y_all = np.asarray(lab.values, dtype=float)
    if y_all.ndim != 1:
        raise ConfigError(f"task {task.key}: select needs one target column, got {lab.columns}")
    has_flows_view = any(v.kind == "flows" for v in cfg.views)
    first = read_frame(cfg, f"{C.VIEW_PREFIX}{cfg.views[0].name}", columns=[C.REGION_ID])
    in_views = set(first[C.REGION_ID].astype(str))
    ids = order_ids([r for r in lab.ids if r in in_views], cfg.evaluation.region_order)
    where = {r: i for i, r in enumerate(lab.ids)}
    y = y_all[[where[r] for r in ids]]
    log.info("select on %s: task %s, %d regions with the label", metric, task.key, len(ids))

    views = {v.name: _load_view(cfg, v, ids, has_flows_view) for v in cfg.views}
    current = {name: v.configured for name, v in views.items()}
    blocks: dict[tuple[str, Setting], np.ndarray] = {}

    def block(name: str, s: Setting) -> np.ndarray:
        if (name, s) not in blocks:
            blocks[(name, s)] = views[name].block(s, cfg.train.nan_policy)
        return blocks[(name, s)]

    def matrix(choice: Mapping[str, Setting]) -> np.ndarray:
        return np.hstack([block(n, choice[n]) for n in views])

    if task.protocol in RIDGE:
        n_splits, alpha = int(opts.get("n_splits", 5)), float(opts.get("alpha", 1.0))
        how = (
            f"each of the {n_splits} outer folds of the published unshuffled {n_splits}-fold split chose on its "
            f"own training rows by inner shuffled 5-fold CV (seeds 0, 1, 2), Ridge(alpha={alpha:g}), R2"
        )

        def run(cands: Mapping[str, np.ndarray]) -> tuple[Selection, float]:
            sel = select_ridge(cands, [y], n_splits=n_splits, alpha=alpha)
            return sel, float(sel.nested["R2_0"])
    else:
        seeds = _seeds(opts.get("seeds"), range(1, 11))[:RF_SEEDS]
        n_est, n_jobs = int(opts.get("n_estimators", 100)), opts.get("n_jobs", 2)
        test_size = float(opts.get("test_size", 0.2))
        how = (
            f"each of the splits of seeds {seeds} (test {test_size:g}) chose on a 20 % validation part of its "
            f"training rows, RandomForestRegressor({n_est}), R2"
        )

        def run(cands: Mapping[str, np.ndarray]) -> tuple[Selection, float]:
            sel = select_rf(cands, y, seeds=seeds, test_size=test_size, n_estimators=n_est, n_jobs=n_jobs)
            return sel, float(sel.nested["R2"])

    steps: list[_Step] = []

    def step(name: str, what: str, settings: list[Setting], unavailable: list[str]) -> None:
        settings = list(dict.fromkeys(settings))
        if len(settings) < 2:
            log.info("view %s: one candidate (%s), nothing to choose", name, settings[0].label)
            return
        cands = {s.label: matrix({**current, name: s}) for s in settings}
        log.info("view %s: %s, %d candidates %s", name, what, len(settings), list(cands))
        sel, nested = run(cands)
        winner = next(s for s in settings if s.label == sel.winner)
        current[name] = winner
        steps.append(_Step(name, what, settings, sel, winner, nested, unavailable))
        log.info("view %s: %s (votes %s); nested R2 %.4f", name, winner.label, sel.votes, nested)

    for name, v in views.items():
        kinds, contexts, unavailable = _candidates(v, has_flows_view)
        if len(kinds) * len(contexts) <= MAX_CANDIDATES:
            step(
                name,
                "preprocessing and context",
                [Setting(k, c) for k, c in itertools.product(kinds, contexts)],
                unavailable,
            )
        else:
            step(name, "preprocessing", [Setting(k, current[name].context) for k in kinds], [])
            step(name, "context", [Setting(current[name].kind, c) for c in contexts], unavailable)

    header, new_name, dataset_note = _write(
        cfg, config_path, out_path, overrides, views, current, steps, metric, task, how, len(ids), apply_overrides
    )
    load_config(out_path, base_dir=cfg.base_dir)  # the written config is valid
    log.info("wrote %s", out_path)
    return _report(config_path, out_path, metric, task, how, len(ids), views, steps, current, new_name, dataset_note)


def _votes(step: _Step) -> str:
    n = len(step.selection.choices)
    return ", ".join(f"{k} {v}/{n}" for k, v in sorted(step.selection.votes.items(), key=lambda kv: -kv[1]))


def _write(
    cfg: Any,
    config_path: Path,
    out_path: Path,
    overrides: Sequence[str] | None,
    views: Mapping[str, _View],
    chosen: Mapping[str, Setting],
    steps: list[_Step],
    metric: str,
    task: TaskConfig,
    how: str,
    n: int,
    apply_overrides: Any,
) -> tuple[list[str], str, str]:
    raw = yaml.safe_load(config_path.read_text())
    raw = apply_overrides(raw, list(overrides or []))
    train = raw.get("train") or {}
    raw["train"] = train
    pre = train.get("preprocess") or {}
    train["preprocess"] = pre
    by_view: dict[str, list[_Step]] = {s.view: [] for s in steps}
    for s in steps:
        by_view[s.view].append(s)
    lines = []
    for i, v in enumerate(raw["views"]):
        name = v["name"]
        ch = chosen[name]
        pre[name] = ch.kind
        v["context"] = list(ch.context)
        why = (
            "; ".join(f"{s.what}: votes {_votes(s)}, nested R2 {s.nested:.3f}" for s in by_view.get(name, []))
            or "one candidate: kept"
        )
        lines.append(f"#   train.preprocess.{name}: {ch.kind}; views[{i}].context: {list(ch.context)}  ({why})")
    new_name = f"{cfg.name}_selected"
    raw["name"] = new_name
    same_columns = all(set(chosen[n].context) == set(v.table_context) for n, v in views.items())
    output = raw.get("output") or {}
    raw["output"] = output
    if same_columns:
        output["dataset"] = cfg.dataset
        dataset_note = (
            f"output.dataset: {cfg.dataset} (the existing feature tables hold exactly the chosen "
            "context columns: no rebuild needed)"
        )
    else:
        if output.get("dataset"):
            output["dataset"] = f"{cfg.dataset}_selected"
        dataset_note = (
            f"feature tables of their own ({output.get('dataset') or new_name}): the chosen context "
            f"differs from the built tables; build them with python -m cookie features --config {out_path}"
        )
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%MZ")
    sets = "".join(f" --set {s}" for s in overrides or [])
    header = [
        f"# Written by `python -m cookie select --config {config_path}{sets}` ({stamp}): the original's settings",
        "# (its comments are not copied) with each view's preprocessing and spatial context chosen inside training",
        f"# rows only, on the primary metric {metric} (task {task.key}, {n} regions, raw view features",
        "# preprocessed as in training):",
        *textwrap.wrap(how + ".", width=108, initial_indent="#   ", subsequent_indent="#   "),
        "# The value written is the majority vote over the outer splits (ties keep the configured value); the",
        "# nested R2 is the outer test score of each split's own choice. Views were chosen in config order.",
        *lines,
        f"#   name: {new_name} (a registered model, experiment and reports of its own)",
        f"#   {dataset_note}",
    ]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(raw, sort_keys=False, default_flow_style=False, allow_unicode=True, width=110)
    out_path.write_text("\n".join(header) + "\n" + body)
    return header, new_name, dataset_note


def _report(
    config_path: Path,
    out_path: Path,
    metric: str,
    task: TaskConfig,
    how: str,
    n: int,
    views: Mapping[str, _View],
    steps: list[_Step],
    chosen: Mapping[str, Setting],
    new_name: str,
    dataset_note: str,
) -> str:
    lines = [
        f"select: {config_path} -> {out_path}",
        f"target: {metric} (task {task.key}, label {task.table} {task.columns}, {n} regions)",
        f"protocol: {how}",
        "candidates are <preprocessing>/<context>; inner R2 is the mean over the outer splits",
        "",
    ]
    for name, v in views.items():
        conf = v.configured
        auto = f" (auto = {v.auto_kind})" if v.auto_kind else ""
        lines.append(
            f"view {name}: configured {conf.label}{auto}; table context columns: {list(v.table_context) or 'none'}"
        )
        for s in [s for s in steps if s.view == name]:
            inner = s.mean_inner()
            votes = s.selection.votes
            lines.append(f"  {s.what}:")
            lines.append(f"    {'candidate':<28} {'inner R2':>9} {'votes':>6}")
            for c in s.candidates:
                mark = "  <- chosen" if c == s.winner else ""
                lines.append(f"    {c.label:<28} {inner[c.label]:>9.4f} {votes.get(c.label, 0):>6}{mark}")
            lines.append(
                f"    winner {s.winner.label} ({_votes(s)}{', unanimous' if s.selection.unanimous else ''}); "
                f"nested R2 {s.nested:.4f}"
            )
            for u in s.unavailable:
                lines.append(f"    not compared: {u}")
        if not any(s.view == name for s in steps):
            lines.append("  one candidate: kept")
        lines.append("")
    lines.append("chosen: " + "; ".join(f"{n}: {s.label}" for n, s in chosen.items()))
    lines.append(f"written: {out_path} (name {new_name}; {dataset_note})")
    return "\n".join(lines)
