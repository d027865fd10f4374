"""Which label columns equal a view's column in every region (a label copied from a view's input).

Comparing every (label column, view column) pair over a join costs one aggregate per pair: 363 view columns
against a handful of labels already made a minute of planning. Instead each table is read once, in one
vector aggregate, into per-column fingerprints (sums of |x|, x^2, and both weighted by a hash of the region
id, plus min and max); pairs whose fingerprints differ cannot be equal and are dropped on the driver, and only
the few candidates left are compared value by value.

The fingerprints are sums of non-negative terms, so their rounding error is at most about n * 2^-53 of the
sum itself; the tolerances below allow ``TOLERANCE`` per value plus a relative 1e-9 of the sums, so a pair
that is equal within ``TOLERANCE`` in every region is never dropped (up to millions of regions).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cookie import constants as C

TOLERANCE = 1e-9  # two values closer than this are the same value
_RELATIVE = 1e-9  # allowance for rounding in the sums, relative to the sums


@dataclass(frozen=True)
class Fingerprint:
    rows: int
    l1: float  # sum |x|
    l2: float  # sum x^2
    hl1: float  # sum h |x|, h in [1, 2) a hash of the region id
    hl2: float  # sum h x^2
    min: float
    max: float

    @property
    def constant(self) -> bool:
        return self.min == self.max


def _region_weight() -> Column:
    """A number in [1, 2) drawn from the region id: the same region gets the same weight in every table."""
    return F.lit(1.0) + F.pmod(F.xxhash64(F.col(C.REGION_ID)), F.lit(1 << 20)).cast("double") / float(1 << 20)


def fingerprints(df: DataFrame, values: dict[str, str]) -> dict[str, Fingerprint]:
    """Per-column fingerprints of ``df`` (with ``region_id``) for the named values (SQL expressions over ``df``
    giving finite, non-null numbers: a column, or an element of a packed array), in one pass."""
    from pyspark.ml.functions import array_to_vector
    from pyspark.ml.stat import Summarizer

    if not values:
        return {}
    x = df.select(
        array_to_vector(F.expr("array(" + ", ".join(f"CAST({v} AS DOUBLE)" for v in values.values()) + ")")).alias(
            "_x"
        ),
        _region_weight().alias("_h"),
    )
    row = x.agg(
        F.count("*").alias("n"),
        Summarizer.metrics("normL1", "normL2", "min", "max").summary(F.col("_x")).alias("s"),
        Summarizer.metrics("normL1", "normL2").summary(F.col("_x"), F.col("_h")).alias("w"),
    ).first()
    assert row is not None  # an aggregate has one row
    n = int(row["n"])
    if n == 0:
        return {c: Fingerprint(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0) for c in values}
    s, w = row["s"], row["w"]
    return {
        c: Fingerprint(
            n,
            float(s["normL1"][i]),
            float(s["normL2"][i]) ** 2,
            float(w["normL1"][i]),
            float(w["normL2"][i]) ** 2,
            float(s["min"][i]),
            float(s["max"][i]),
        )
        for i, c in enumerate(values)
    }


def may_be_equal(a: Fingerprint, b: Fingerprint) -> bool:
    """False only when the columns cannot be equal within ``TOLERANCE`` in every region."""
    if a.rows != b.rows:
        return True  # different region sets: only the value-by-value check can tell
    n, t = a.rows, TOLERANCE
    spread = t * (a.l1 + b.l1 + n * t)  # |sum x^2 - sum y^2| <= sum |x - y| |x + y|

    def close(u: float, v: float, allowed: float) -> bool:
        return abs(u - v) <= allowed + _RELATIVE * (abs(u) + abs(v))

    return (
        close(a.min, b.min, t)
        and close(a.max, b.max, t)
        and close(a.l1, b.l1, n * t)
        and close(a.hl1, b.hl1, 2 * n * t)
        and close(a.l2, b.l2, spread)
        and close(a.hl2, b.hl2, 2 * spread)
    )


def equal_pairs(
    left: DataFrame,
    left_values: dict[str, str],
    right: DataFrame,
    right_values: dict[str, str],
    pairs: list[tuple[str, str]],
) -> list[tuple[str, str]]:
    """The (left name, right name) pairs equal within ``TOLERANCE`` in every region both tables have: one
    aggregate over their join on ``region_id``, counting differing regions per pair."""
    if not pairs:
        return []
    lnames = sorted({p[0] for p in pairs})
    rnames = sorted({p[1] for p in pairs})
    a = left.select(
        C.REGION_ID, *[F.expr(f"CAST({left_values[c]} AS DOUBLE)").alias(f"l{i}") for i, c in enumerate(lnames)]
    )
    b = right.select(
        C.REGION_ID, *[F.expr(f"CAST({right_values[c]} AS DOUBLE)").alias(f"r{j}") for j, c in enumerate(rnames)]
    )
    exprs = [
        F.sum(
            F.when(F.abs(F.col(f"l{lnames.index(lc)}") - F.col(f"r{rnames.index(rc)}")) > TOLERANCE, 1).otherwise(0)
        ).alias(f"d{k}")
        for k, (lc, rc) in enumerate(pairs)
    ]
    row = a.join(b, C.REGION_ID).agg(*exprs).first()
    if row is None:
        return []
    return [p for k, p in enumerate(pairs) if row[f"d{k}"] == 0]


def copied_columns(
    label: DataFrame,
    label_values: dict[str, str],
    view: DataFrame,
    view_values: dict[str, str],
    label_prints: dict[str, Fingerprint] | None = None,
    view_prints: dict[str, Fingerprint] | None = None,
) -> list[tuple[str, str]]:
    """(label name, view name) pairs equal in every region, constant label values left out, in label then view
    order. ``*_values``: name -> SQL expression over the table (see :func:`fingerprints`). Fingerprints can be
    passed in when a table is compared more than once."""
    lp = label_prints if label_prints is not None else fingerprints(label, label_values)
    vp = view_prints if view_prints is not None else fingerprints(view, view_values)
    candidates = [
        (lc, vc) for lc in label_values if not lp[lc].constant for vc in view_values if may_be_equal(lp[lc], vp[vc])
    ]
    return equal_pairs(label, label_values, view, view_values, candidates)
