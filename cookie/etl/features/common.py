"""Shared pieces of the view transforms: category lists, column naming, completing rows."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from cookie import constants as C

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


def resolve_categories(
    df: DataFrame, fixed: list[str] | None, max_categories: int, other: bool
) -> tuple[list[str], DataFrame]:
    """Fix the category list (given, or the most frequent ones) and fold the rest into 'other'.

    Only the small per-category count table reaches the driver, never the rows themselves.
    """
    if fixed is not None:
        cats = list(fixed)
    else:
        top = (
            df.groupBy(C.CATEGORY).count().orderBy(F.desc("count"), F.asc(C.CATEGORY)).limit(max_categories)
        ).collect()
        cats = sorted(r[C.CATEGORY] for r in top if r[C.CATEGORY] is not None)
    known = F.col(C.CATEGORY).isin(cats)
    if other:
        df = df.withColumn(C.CATEGORY, F.when(known, F.col(C.CATEGORY)).otherwise(F.lit(OTHER)))
        if OTHER not in cats:
            cats = cats + [OTHER]
    else:
        df = df.where(known)
    return cats, df


def pivot_wide(long: DataFrame, value: str, categories: list[str], names: list[str]) -> DataFrame:
    """(region_id, category, value) -> one column per category, in the given order."""
    values: list[bool | float | int | str] = list(categories)
    wide = long.groupBy(C.REGION_ID).pivot(C.CATEGORY, values).agg(F.sum(value))
    return wide.select(C.REGION_ID, *[F.col(f"`{c}`").alias(n) for c, n in zip(categories, names)])


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


def any_missing(names: list[str]) -> Column:
    """True where any of the columns is null or NaN (one ``exists`` over an array, not a deep OR chain)."""
    if not names:
        return F.lit(False)
    return F.exists(F.array(*[F.col(n).cast("double") for n in names]), lambda x: x.isNull() | F.isnan(x))


def nan_to_zero(df: DataFrame, names: list[str]) -> DataFrame:
    return df.select(
        *[c for c in df.columns if c not in names],
        *[F.when(F.isnan(F.col(n)) | F.col(n).isNull(), 0.0).otherwise(F.col(n)).alias(n) for n in names],
    )


def region_join(regions: DataFrame, items: DataFrame, predicate: str = "ST_Intersects") -> DataFrame:
    """Spatial join (Sedona plans it as a range join); regions' geometry comes back as ``_region_geom``."""
    r = regions.select(F.col(C.REGION_ID), F.col(C.GEOMETRY).alias("_region_geom"), F.col(C.AREA_KM2))
    return r.join(items, F.expr(f"{predicate}(_region_geom, {C.GEOMETRY})"))
