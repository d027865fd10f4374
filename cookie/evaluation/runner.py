"""Run the configured tasks on one embedding matrix and write the report (no MLflow here).

    from cookie.evaluation.runner import run_tasks, write_report
    result = run_tasks(cfg.evaluation.tasks, ids, X, labels=lambda task: load_label(...), centroids=...)
    result.metrics()   # {"crime.ridge_kfold.R2": 0.71, "crime.ridge_kfold_repeated.R2_std": 0.02, ...}
    write_report(result, "reports/x", regions=regions_df, embedding=(ids, X), title="cookie_manhattan180 v3")

Rows are matched by region id: a task evaluates the regions that have both an embedding and a usable label
row, in the order of :func:`cookie.storage.delta.order_ids` (numeric ids in numeric order, so
Manhattan-180's unshuffled folds are the published ones).

Regions known by id only (``regions: {kind: ids}``) have null geometry and centroids in the regions table:
spatial-block tasks and maps are then skipped with the logged reason :data:`NO_GEOMETRY`; every other task
runs. Progress goes to the ``cookie.evaluation.runner`` logger.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cookie.config.evaluation import CLUSTERING_PROTOCOLS, REGRESSION_PROTOCOLS, TaskConfig
from cookie.evaluation import protocols as P
from cookie.evaluation.protocols import ProtocolResult
from cookie.evaluation.report import markdown_table
from cookie.storage.delta import LabelRows, order_ids

__all__ = [
    "HTML_MAP",
    "NO_GEOMETRY",
    "EvaluationResult",
    "TaskOutcome",
    "centroids_of",
    "has_geometry",
    "run_protocol",
    "run_task",
    "run_tasks",
    "write_report",
]

log = logging.getLogger(__name__)

#: file name of the interactive map in a report folder (:mod:`cookie.evaluation.html_map`)
HTML_MAP = "map.html"

#: why maps and spatial-block tasks are skipped for regions known by id only
NO_GEOMETRY = "unavailable: regions have no geometry"


def has_geometry(regions: Any | None) -> bool:
    """Whether a regions table (pandas) has at least one region with a geometry (``geometry_wkb``)."""
    if regions is None or len(regions) == 0 or "geometry_wkb" not in regions.columns:
        return False
    return bool(regions["geometry_wkb"].notna().any())


def centroids_of(regions: Any | None) -> dict[str, tuple[float, float]] | None:
    """``{region_id: (lon, lat)}`` of the regions with a finite centroid; ``None`` when none has one."""
    if regions is None or len(regions) == 0 or not {"centroid_lon", "centroid_lat"} <= set(regions.columns):
        return None
    lon = regions["centroid_lon"].to_numpy(dtype=float, na_value=np.nan)
    lat = regions["centroid_lat"].to_numpy(dtype=float, na_value=np.nan)
    ok = np.isfinite(lon) & np.isfinite(lat)
    if not ok.any():
        return None
    ids = regions["region_id"].astype(str).to_numpy()
    return {r: (float(a), float(b)) for r, a, b, k in zip(ids, lon, lat, ok) if k}


@dataclass
class TaskOutcome:
    """One task's protocol result and the rows (region ids, targets) it was computed on."""

    task: TaskConfig
    result: ProtocolResult
    ids: list[str]
    y: np.ndarray

    @property
    def key(self) -> str:
        return self.task.key

    def metrics(self) -> dict[str, float]:
        """``{"<task>.<protocol>.<metric>": mean, "<...>_std": std}`` (std only for multi-run protocols)."""
        out: dict[str, float] = {}
        for m, v in self.result.mean.items():
            out[f"{self.key}.{m}"] = float(v)
            s = self.result.std.get(m)
            if s is not None:
                out[f"{self.key}.{m}_std"] = float(s)
        return out


@dataclass
class EvaluationResult:
    """All tasks of one evaluation."""

    outcomes: list[TaskOutcome] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # task key -> why

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for o in self.outcomes:
            out.update(o.metrics())
        return out

    def part_votes(self) -> dict[str, dict[str, int]]:
        """``{task key: {part: outer splits that chose it}}`` of the tasks that chose a part
        (``evaluation.choose_parts``)."""
        return {o.key: dict(v) for o in self.outcomes if (v := o.result.params.get("part_votes"))}

    def records(self, dataset: str, method: str) -> list[dict[str, Any]]:
        """Report records (dataset, method, task, protocol, metric, mean, std), protocol as in the config."""
        recs = []
        for o in self.outcomes:
            for r in o.result.to_records(dataset, method, o.task.name):
                r["protocol"] = f"{o.task.protocol} ({o.result.protocol})"
                recs.append(r)
        return recs

    def __getitem__(self, key: str) -> float:
        return self.metrics()[key]


def _seeds(v: Any) -> Any:
    """``seeds: 3`` means seeds 1..3 (the published protocols count from 1); a list is used as is."""
    if isinstance(v, int):
        return list(range(1, v + 1))
    return v


def run_protocol(
    protocol: str,
    X: np.ndarray,
    y: np.ndarray,
    options: Mapping[str, Any] | None = None,
    centroids: np.ndarray | None = None,
    parts: Mapping[str, np.ndarray] | None = None,
) -> ProtocolResult:
    """One protocol of :mod:`cookie.evaluation.protocols` by its config name.

    ``parts`` (candidate column sets of ``X``) go to the supervised protocols, which choose among them inside
    their training rows; clustering has no training rows and uses every column of ``X``.
    """
    opts = dict(options or {})
    if parts and protocol not in CLUSTERING_PROTOCOLS:
        opts["parts"] = parts
    if "seeds" in opts:
        opts["seeds"] = _seeds(opts["seeds"])
    if protocol == "ridge_kfold":
        return P.ridge_kfold(X, y, **opts)
    if protocol == "ridge_kfold_repeated":
        return P.ridge_kfold_repeated(X, y, **opts)
    if protocol == "rf_split":
        opts.setdefault("n_jobs", 2)
        return P.rf_split(X, y, **opts)
    if protocol == "landuse_mlp":
        opts.setdefault("n_jobs", 2)
        return P.landuse_mlp(X, y, **opts)
    if protocol == "dominant_class":
        opts.setdefault("n_jobs", 2)
        return P.dominant_class(X, y, **opts)
    if protocol == "kmeans":
        return P.kmeans_clustering(X, np.asarray(y).astype(int), **opts)
    if protocol == "kmeans_repeated":
        return P.kmeans_clustering_repeated(X, np.asarray(y).astype(int), **opts)
    if protocol == "spatial_block":
        if centroids is None:
            raise ValueError("spatial_block needs the regions' centroids")
        n_bins, cell = opts.pop("n_bins", None), opts.pop("cell_size", None)
        blocks = P.grid_blocks(centroids, cell_size=cell, n_bins=n_bins)
        if opts.get("model") == "rf":
            opts.setdefault("n_jobs", 2)
        return P.spatial_block_cv(X, y, blocks, **opts)
    raise ValueError(f"unknown protocol {protocol!r}")


def run_task(
    task: TaskConfig,
    ids: Sequence[str],
    X: np.ndarray,
    label: LabelRows,
    centroids: Mapping[str, tuple[float, float]] | None = None,
    order: Literal["natural", "lexicographic"] = "natural",
    valid: np.ndarray | None = None,
    parts: Mapping[str, np.ndarray] | None = None,
) -> TaskOutcome:
    """Evaluate ``X`` (rows = ``ids``) on one task; rows are the ids with an embedding and a label.

    ``valid`` (bool per row of ``X``) drops embedding rows that must not count (e.g. all-zero rows of a
    region the model never saw). ``parts``: see :func:`run_protocol`.
    """
    pos = {str(r): i for i, r in enumerate(ids) if valid is None or valid[i]}
    lab = {r: i for i, r in enumerate(label.ids)}
    common = order_ids([r for r in lab if r in pos], order)
    if len(common) < 2:
        raise ValueError(f"task {task.key}: only {len(common)} regions have both an embedding and the label")
    Xa = np.asarray(X, dtype=float)[[pos[r] for r in common]]
    ya = np.asarray(label.values)[[lab[r] for r in common]]
    cents = None
    if task.protocol == "spatial_block":
        if not centroids:
            raise ValueError(f"spatial_block: {NO_GEOMETRY}")
        lacking = [r for r in common if r not in centroids]
        if lacking:
            raise ValueError(
                f"spatial_block: {len(lacking)} of the task's {len(common)} regions have no geometry "
                f"(first: {lacking[:5]})"
            )
        cents = np.array([centroids[r] for r in common], dtype=float)
    res = run_protocol(task.protocol, Xa, ya, task.options, cents, parts)
    return TaskOutcome(task=task, result=res, ids=common, y=ya)


def run_tasks(
    tasks: Iterable[TaskConfig],
    ids: Sequence[str],
    X: np.ndarray,
    labels: Callable[[TaskConfig], LabelRows],
    centroids: Mapping[str, tuple[float, float]] | None = None,
    order: Literal["natural", "lexicographic"] = "natural",
    valid: np.ndarray | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    parts: Mapping[str, np.ndarray] | None = None,
) -> EvaluationResult:
    """Every task in turn; ``labels(task)`` gives its label rows (cached per table and columns by the caller).

    A spatial-block task without ``centroids`` (regions known by id only) is skipped with the reason
    :data:`NO_GEOMETRY`; other failures raise (``on_error="raise"``) or are recorded in ``skipped``.
    """
    out = EvaluationResult()
    for task in tasks:
        if task.protocol == "spatial_block" and not centroids:
            out.skipped[task.key] = NO_GEOMETRY
            log.info("%s: skipped (%s)", task.key, NO_GEOMETRY)
            continue
        try:
            o = run_task(task, ids, X, labels(task), centroids, order, valid, parts)
        except Exception as exc:
            if on_error == "raise":
                raise
            out.skipped[task.key] = f"{type(exc).__name__}: {exc}"
            log.warning("%s: skipped (%s)", task.key, out.skipped[task.key])
            continue
        out.outcomes.append(o)
        shown = ", ".join(f"{k.rsplit('.', 1)[-1]} {v:.4g}" for k, v in o.metrics().items())
        votes = o.result.params.get("part_votes")
        log.info("%s on %d regions: %s%s", task.key, len(o.ids), shown, f"; parts chosen {votes}" if votes else "")
    return out


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------
def _geometries(regions: Any) -> tuple[list[str], Any]:
    """Region ids and their geometries (a WGS84 GeoSeries; ``None`` where a region has none)."""
    from cookie.evaluation.maps import WGS84, region_series

    ids = [str(r) for r in regions["region_id"]]
    return ids, region_series(list(regions["geometry_wkb"]), crs=WGS84)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_report(
    result: EvaluationResult,
    out_dir: str | Path,
    regions: Any | None = None,
    embedding: tuple[Sequence[str], np.ndarray] | None = None,
    title: str = "evaluation",
    info: Mapping[str, Any] | None = None,
    dataset: str = "",
    method: str = "",
    maps: bool = True,
    published: Sequence[Mapping[str, Any]] = (),
    credit: str = "",
) -> dict[str, Path]:
    """Write ``report.md``, ``metrics.json`` and (``maps``) PNG maps and one interactive ``map.html`` into
    ``out_dir``.

    Maps need ``regions`` (a DataFrame with ``region_id`` and ``geometry_wkb``): one predicted-vs-actual
    map per regression task with maps on (out-of-fold / mean test predictions; regions not evaluated are
    grey), and, with ``embedding=(ids, X)``, the first three principal components as RGB. ``map.html``
    (:mod:`cookie.evaluation.html_map`; self-contained, opens offline) holds the same layers, switchable,
    with a tooltip per region. Without any
    geometry (regions known by id only) the maps are skipped and the report says :data:`NO_GEOMETRY`.
    ``published`` records are added to the table for comparison. ``credit`` (the data's attribution,
    :meth:`cookie.config.Config.data_credit`) is printed on every map.

    Returns ``{name: path}`` of every file written.
    """
    from cookie.evaluation import maps as MP

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    images: list[tuple[str, str]] = []
    maps_note = None
    if maps and not has_geometry(regions):
        maps_note = NO_GEOMETRY
        log.info("maps: %s", NO_GEOMETRY)
    elif maps:
        from cookie.evaluation.html_map import TaskLayer, write_html_map

        rid, geoms = _geometries(regions)
        index = {r: i for i, r in enumerate(rid)}
        layers: list[TaskLayer] = []
        for o in result.outcomes:
            if not o.task.maps or o.task.protocol not in REGRESSION_PROTOCOLS or o.result.predictions is None:
                continue
            actual = np.full(len(rid), np.nan)
            pred = np.full(len(rid), np.nan)
            rows = [index.get(r) for r in o.ids]
            for pos, i in enumerate(rows):
                if i is not None:
                    actual[i] = o.y[pos]
                    pred[i] = o.result.predictions[pos]
            name = f"map_{_safe(o.key)}.png"
            MP.plot_predicted_vs_actual(
                geoms,
                actual,
                pred,
                out / name,
                title=f"{title}: {o.task.name}, {o.result.protocol}",
                label=", ".join(o.task.columns),
                show_residual=True,
                credit=credit,
            )
            files[name] = out / name
            images.append((f"{o.task.name} ({o.result.protocol}): actual, predicted, residual", name))
            layers.append(TaskLayer(o.key, actual, pred, unit=", ".join(o.task.columns)))
        full = None
        if embedding is not None:
            eids, X = embedding
            epos = {str(r): i for i, r in enumerate(eids)}
            Xa = np.asarray(X, dtype=float)
            full = np.full((len(rid), Xa.shape[1]), np.nan)
            for r, i in index.items():
                j = epos.get(r)
                if j is not None:
                    full[i] = Xa[j]
            name = "map_embedding_pca_rgb.png"
            MP.plot_embedding_rgb(geoms, full, out / name, title=f"{title}: embedding PC1-3 as RGB", credit=credit)
            files[name] = out / name
            images.append(("embedding, first three principal components as R, G, B", name))
        if full is not None or layers:
            files[HTML_MAP] = write_html_map(
                out / HTML_MAP,
                geoms,
                rid,
                embedding=full,
                tasks=layers,
                title=title,
                info=dict(info or {}),
                credit=credit,
            )
            log.info("interactive map: %s", files[HTML_MAP])

    metrics = result.metrics()
    (out / "metrics.json").write_text(
        json.dumps(
            {
                "info": dict(info or {}),
                "metrics": metrics,
                "part_votes": result.part_votes(),
                "skipped": result.skipped,
            },
            indent=1,
            default=str,
        )
    )
    files["metrics.json"] = out / "metrics.json"

    lines = [f"# {title}", ""]
    for k, v in (info or {}).items():
        lines.append(f"- **{k}**: {v}")
    if info:
        lines.append("")
    recs = result.records(dataset or "-", method or "this model") + [dict(r) for r in published]
    lines += ["## Metrics", "", markdown_table(recs, include_source=bool(published)) if recs else "(no task ran)", ""]
    lines += ["Metric names for MLflow / promotion: `<task>.<protocol>.<metric>`; `_std` is the std over runs.", ""]
    lines += ["| metric | value |", "|---|---|"]
    lines += [f"| `{k}` | {v:.6g} |" for k, v in metrics.items() if not (isinstance(v, float) and math.isnan(v))]
    lines.append("")
    if votes := result.part_votes():
        lines += [
            "## Parts chosen inside training rows",
            "",
            "| task | " + " | ".join(next(iter(votes.values()))) + " |",
        ]
        lines += ["|---|" + "---|" * len(next(iter(votes.values())))]
        lines += [f"| `{k}` | " + " | ".join(str(n) for n in v.values()) + " |" for k, v in votes.items()]
        lines.append("")
    if result.skipped:
        lines += ["## Skipped tasks", ""] + [f"- `{k}`: {why}" for k, why in result.skipped.items()] + [""]
    if images:
        lines += ["## Maps", ""]
        if HTML_MAP in files:
            lines += [f"Interactive map (one self-contained file, opens offline): [{HTML_MAP}]({HTML_MAP})", ""]
        lines += [f"### {cap}\n\n![{cap}]({name})\n" for cap, name in images]
    elif maps_note:
        lines += ["## Maps", "", f"Maps {maps_note}.", ""]
    (out / "report.md").write_text("\n".join(lines))
    files["report.md"] = out / "report.md"
    return files
