"""Shared pieces of the view transforms: category lists, column naming, completing rows."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from cookie import constants as C

log = logging.getLogger(__name__)

PRESENT = "_present"  # True where the region had any data for the view (the model's mask)
OTHER = "other"


@dataclass
class ViewResult:
    df: DataFrame  # region_id, <features...>, _present
    feature_names: list[str]
    stats: dict[str, int] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)  # written as cookie.<key> table properties
    seconds: float = 0.0  # time spent building the view


def slug(text: str) -> str:
    s = re.sub(r"[^0-9a-zA-Z]+", "_", str(text)).strip("_").lower()
    return s or "blank"


def feature_columns(prefix: str, categories: list[str]) -> list[str]:
    """Stable, unique, SQL-safe column names for categories."""
    names, seen = [], set()
    for cat in categories:
        base = f"{prefix}_{slug(cat)}"
        name, i = base, 2
        while name in seen:
            name, i = f"{base}_{i}", i + 1
        seen.add(name)
        names.append(name)
    return names


def case_merges(counts: DataFrame) -> tuple[Column, dict[str, int]]:
    """From a (category, count) table: an expression that respells categories differing only in case
    (``Café`` / ``café``) as their most frequent variant (ties: the first in sort order), and the number of
    rows it respells (``category_case_merged``). Only the clashing variants reach the driver."""
    clashes = (
        counts.withColumn("_k", F.lower(F.col(C.CATEGORY)))
        .withColumn("_n", F.count("*").over(Window.partitionBy("_k")))
        .where(F.col("_k").isNotNull() & (F.col("_n") > 1))
        .collect()
    )
    groups: dict[str, list[tuple[int, str]]] = {}
    for r in clashes:
        groups.setdefault(r["_k"], []).append((-int(r["count"]), r[C.CATEGORY]))
    respell = F.col(C.CATEGORY)
    merged = 0
    for variants in groups.values():
        variants.sort()
        keep, others = variants[0][1], [v for _, v in variants[1:]]
        merged -= sum(n for n, _ in variants[1:])
        respell = F.when(F.col(C.CATEGORY).isin(others), F.lit(keep)).otherwise(respell)
        log.warning("categories that differ only in case merged into %r: %s", keep, others)
    return respell, ({"category_case_merged": merged} if merged else {})


def resolve_categories(
    df: DataFrame, fixed: list[str] | None, max_categories: int, other: bool
) -> tuple[list[str], DataFrame, dict[str, int]]:
    """Fix the category list (given, or the most frequent ones) and fold the rest into 'other'.

    Categories taken from the data are first merged when they differ only in case (:func:`case_merges`; its
    count is returned), so ``Café`` and ``café`` never make two columns that Spark finds ambiguous. Only the
    small per-category count table reaches the driver, never the rows themselves.
    """
    stats: dict[str, int] = {}
    if fixed is not None:
        cats = list(fixed)
    else:
        counts = df.groupBy(C.CATEGORY).count().persist()
        respell, stats = case_merges(counts)
        df = df.withColumn(C.CATEGORY, respell)
        top = (
            counts.withColumn(C.CATEGORY, respell)
            .groupBy(C.CATEGORY)
            .agg(F.sum("count").alias("count"))
            .orderBy(F.desc("count"), F.asc(C.CATEGORY))
            .limit(max_categories)
        ).collect()
        counts.unpersist()
        cats = sorted(r[C.CATEGORY] for r in top if r[C.CATEGORY] is not None)
    known = F.col(C.CATEGORY).isin(cats)
    if other:
        df = df.withColumn(C.CATEGORY, F.when(known, F.col(C.CATEGORY)).otherwise(F.lit(OTHER)))
        if OTHER not in cats:
            cats = cats + [OTHER]
    else:
        df = df.where(known)
    return cats, df, stats


def pivot_wide(long: DataFrame, value: str, categories: list[str], names: list[str]) -> DataFrame:
    """(region_id, category, value) -> one column per category, in the given order.

    The pivot runs over the categories' positions, not their text, so any category value works: a backtick,
    a dot, or two spellings that Spark's case-insensitive column names would find ambiguous.
    """
    position = F.array_position(F.array(*[F.lit(c) for c in categories]), F.col(C.CATEGORY)).cast("int")
    values: list[bool | float | int | str] = list(range(1, len(categories) + 1))
    wide = long.withColumn("_pos", position).groupBy(C.REGION_ID).pivot("_pos", values).agg(F.sum(value))
    return wide.select(C.REGION_ID, *[F.col(f"`{i}`").alias(n) for i, n in enumerate(names, start=1)])


def keep_geometry_types(df: DataFrame, allowed: tuple[str, ...]) -> tuple[DataFrame, dict[str, int]]:
    """Rows whose geometry is one of ``allowed`` (Sedona's names, e.g. ``ST_Polygon``); the others are dropped
    and counted per type (``dropped_point``, ``dropped_linestring``, ``dropped_null_geometry``), so the run
    summary names them. ``input_rows`` counts every row."""
    gtype = F.expr(f"ST_GeometryType({C.GEOMETRY})")
    counts = df.groupBy(gtype.alias("_t")).count().collect()
    stats = {"input_rows": sum(int(r["count"]) for r in counts)}
    for r in sorted(counts, key=lambda r: str(r["_t"])):
        if r["_t"] not in allowed:
            name = "null_geometry" if r["_t"] is None else str(r["_t"]).removeprefix("ST_").lower()
            stats[f"dropped_{name}"] = int(r["count"])
    dropped = {k: v for k, v in stats.items() if k.startswith("dropped_")}
    if dropped:
        log.warning("geometries that are not %s dropped: %s", "/".join(allowed), dropped)
    return df.where(gtype.isin(list(allowed))), stats


def complete(regions: DataFrame, features: DataFrame, names: list[str]) -> DataFrame:
    """Every region gets a row; missing values become 0 and ``_present`` says who had data."""
    joined = regions.select(C.REGION_ID).join(features.withColumn(PRESENT, F.lit(True)), on=C.REGION_ID, how="left")
    return joined.select(
        C.REGION_ID,
        *[F.coalesce(F.col(n).cast("double"), F.lit(0.0)).alias(n) for n in names],
        F.coalesce(F.col(PRESENT), F.lit(False)).alias(PRESENT),
    )


def row_sum(names: list[str]) -> Column:
    """The sum of some double columns as one expression (a fold over an array, not a chain of additions,
    so hundreds of columns do not nest hundreds of expressions deep)."""
    if not names:
        return F.lit(0.0)
    return F.aggregate(F.array(*[F.col(n).cast("double") for n in names]), F.lit(0.0), lambda acc, x: acc + x)


def not_finite(x: Column) -> Column:
    """True where a double value is null, NaN or infinite."""
    return x.isNull() | F.isnan(x) | is_infinite(x)


def is_infinite(x: Column) -> Column:
    """True where a double value is +inf or -inf; false (never null) for null."""
    return F.coalesce(x.isin(float("inf"), float("-inf")), F.lit(False))


def any_of(values: list[Column], test: Callable[[Column], Column]) -> Column:
    """True where ``test`` holds for any of the values (as doubles), never null: one ``exists`` over an array, not
    a deep OR chain, so hundreds of columns do not nest hundreds of expressions deep."""
    if not values:
        return F.lit(False)
    return F.coalesce(F.exists(F.array(*[v.cast("double") for v in values]), test), F.lit(False))


def nan_to_zero(df: DataFrame, names: list[str]) -> DataFrame:
    return df.select(
        *[c for c in df.columns if c not in names],
        *[F.when(F.isnan(F.col(n)) | F.col(n).isNull(), 0.0).otherwise(F.col(n)).alias(n) for n in names],
    )


def region_join(regions: DataFrame, items: DataFrame, predicate: str = "ST_Intersects") -> DataFrame:
    """Spatial join (Sedona plans it as a range join); regions' geometry comes back as ``_region_geom``."""
    r = regions.select(F.col(C.REGION_ID), F.col(C.GEOMETRY).alias("_region_geom"), F.col(C.AREA_KM2))
    return r.join(items, F.expr(f"{predicate}(_region_geom, {C.GEOMETRY})"))
