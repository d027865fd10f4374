"""Markdown tables from result records.

A record is a mapping (or an object with attributes) with the keys ``dataset, method, task, protocol,
metric, mean, std``; ``std`` may be ``None`` (single-run protocol or a published number without one), and
``source`` is optional. :meth:`cookie.evaluation.protocols.ProtocolResult.to_records` and
:data:`published.PUBLISHED` produce such records.

Two layouts:

* ``"wide"`` (default): one row per (dataset, task, protocol, method), one column per metric, cells
  ``mean ± std``;
* ``"long"``: one row per record.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ResultRecord", "format_value", "markdown_table", "normalise_records"]

_KEYS = ("dataset", "method", "task", "protocol", "metric", "mean", "std")


@dataclass(frozen=True)
class ResultRecord:
    """One metric of one method on one task under one protocol."""

    dataset: str
    method: str
    task: str
    protocol: str
    metric: str
    mean: float
    std: float | None = None
    source: str | None = None


def _get(rec: Any, key: str, default: Any = None) -> Any:
    if isinstance(rec, Mapping):
        return rec.get(key, default)
    return getattr(rec, key, default)


def normalise_records(records: Iterable[Any]) -> list[ResultRecord]:
    """Turn mappings or objects with the record keys into :class:`ResultRecord` (missing keys raise)."""
    out = []
    for rec in records:
        missing = [k for k in _KEYS[:-1] if _get(rec, k) is None]
        if missing:
            raise ValueError(f"record {rec!r} lacks {missing}")
        std = _get(rec, "std")
        out.append(
            ResultRecord(
                dataset=str(_get(rec, "dataset")),
                method=str(_get(rec, "method")),
                task=str(_get(rec, "task")),
                protocol=str(_get(rec, "protocol")),
                metric=str(_get(rec, "metric")),
                mean=float(_get(rec, "mean")),
                std=None if std is None or (isinstance(std, float) and math.isnan(std)) else float(std),
                source=_get(rec, "source"),
            )
        )
    return out


def format_value(mean: float, std: float | None = None, digits: int = 3) -> str:
    """``"0.591 ± 0.025"``; values of 100 or more get ``max(digits - 2, 0)`` decimals (e.g. ``"4989.0 ± 158.0"``)."""

    def fmt(v: float) -> str:
        if math.isnan(v):
            return "nan"
        d = max(digits - 2, 0) if abs(v) >= 100 else digits
        return f"{v:.{d}f}"

    return fmt(mean) if std is None else f"{fmt(mean)} ± {fmt(std)}"


def _esc(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def markdown_table(
    records: Iterable[Any],
    layout: str = "wide",
    digits: int = 3,
    metrics: Sequence[str] | None = None,
    include_source: bool = False,
) -> str:
    """Render records as a GitHub-flavoured markdown table.

    Args:
        records: records as described in the module docstring.
        layout: ``"wide"`` (metrics as columns) or ``"long"`` (one row per record).
        digits: decimals (see :func:`format_value`).
        metrics: metric columns to show, in this order (wide layout; default: order of first appearance).
        include_source: add a ``source`` column (the sources of a row's records, de-duplicated).

    Rows keep the order in which their first record appears. An empty input gives an empty string.
    """
    recs = normalise_records(records)
    if not recs:
        return ""
    if layout == "long":
        head = ["dataset", "method", "task", "protocol", "metric", "value"] + (["source"] if include_source else [])
        rows = []
        for r in recs:
            row = [r.dataset, r.method, r.task, r.protocol, r.metric, format_value(r.mean, r.std, digits)]
            if include_source:
                row.append(r.source or "")
            rows.append(row)
        return _render(head, rows)
    if layout != "wide":
        raise ValueError(f"unknown layout {layout!r}")

    metric_cols: list[str] = list(metrics) if metrics is not None else []
    if metrics is None:
        for r in recs:
            if r.metric not in metric_cols:
                metric_cols.append(r.metric)
    groups: dict[tuple[str, str, str, str], dict[str, ResultRecord]] = {}
    sources: dict[tuple[str, str, str, str], list[str]] = {}
    for r in recs:
        key = (r.dataset, r.task, r.protocol, r.method)
        cell = groups.setdefault(key, {})
        if r.metric in cell:
            raise ValueError(f"duplicate record for {key} / {r.metric}")
        cell[r.metric] = r
        if r.source and r.source not in sources.setdefault(key, []):
            sources[key].append(r.source)
    head = ["dataset", "task", "protocol", "method", *metric_cols] + (["source"] if include_source else [])
    rows = []
    for key, cell in groups.items():
        row = list(key)
        for m in metric_cols:
            row.append(format_value(cell[m].mean, cell[m].std, digits) if m in cell else "")
        if include_source:
            row.append("; ".join(sources.get(key, [])))
        rows.append(row)
    return _render(head, rows)


def _render(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_esc(h) for h in head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
