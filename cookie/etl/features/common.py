"""Shared pieces of the view transforms: category lists, column naming, completing rows."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from pyspark.sql import Column, DataFrame, Row
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from cookie import constants as C

log = logging.getLogger(__name__)

PRESENT = "_present"  # True where the region had any data for the view (the model's mask)
OTHER = "other"


FEATURES = "_features"  # a packed view's features, one array<double> in feature_names order


@dataclass
class ViewResult:
    """A view's table. ``df`` is ``region_id``, one column per feature, ``_present`` as the view transforms make
    it; the feature job packs it (:meth:`pack`) into ``region_id``, ``_features`` (one ``array<double>``),
    ``_present``, works on that narrow frame (context, checks) and expands it into columns once, to write
    (:meth:`unpack`): a plan with a thousand columns costs seconds per step to analyse, compile and run, one
    array column does not."""

    df: DataFrame  # region_id, <features...>, _present; packed: region_id, _features, _present
    feature_names: list[str]
    stats: dict[str, int] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)  # written as cookie.<key> table properties
    seconds: float = 0.0  # time spent building the view
    packed: bool = False
    nullable: dict[str, bool] = field(default_factory=dict)  # packed: each feature column's nullability
    #: frames the transform cached on the way, which ``df`` still reads from: unpersisted once ``df`` is kept
    release: list[DataFrame] = field(default_factory=list)

    def pack(self) -> ViewResult:
        """The same view with its features in one array column (lazy: one projection)."""
        if self.packed:
            return self
        schema = {f.name: f.nullable for f in self.df.schema.fields}
        df = self.df.select(C.REGION_ID, double_array(self.feature_names).alias(FEATURES), PRESENT)
        nullable = {n: schema[n] for n in self.feature_names}
        return replace(self, df=df, feature_names=list(self.feature_names), packed=True, nullable=nullable)

    def unpack(self) -> ViewResult:
        """The same view with one column per feature, expanded in one projection; each column keeps the
        nullability it had before packing."""
        if not self.packed:
            return self
        cols = [(sql_name(C.REGION_ID), C.REGION_ID)]
        for i, n in enumerate(self.feature_names):
            value = f"{FEATURES}[{i}]"
            cols.append((value if self.nullable.get(n, True) else f"coalesce({value}, 0D)", n))
        cols.append((sql_name(PRESENT), PRESENT))
        df = project(self.df, cols)
        return replace(self, df=df, feature_names=list(self.feature_names), packed=False, nullable={})

    def value_sql(self) -> dict[str, str]:
        """Each feature as a SQL expression over ``df``: its column, or its element of the packed array."""
        if self.packed:
            return {n: f"{FEATURES}[{i}]" for i, n in enumerate(self.feature_names)}
        return {n: sql_name(n) for n in self.feature_names}


def sql_name(name: str) -> str:
    """A column name quoted for a SQL expression (any characters, backticks doubled)."""
    return "`" + name.replace("`", "``") + "`"


def sql_string(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def project(df: DataFrame, columns: Sequence[tuple[str, str]]) -> DataFrame:
    """``df`` projected to the given ``(SQL expression, name)`` columns, in order, in one projection.

    Wide tables are built this way: the columns travel to the JVM as one expression (a struct, expanded by
    ``.*``; the optimizer removes the struct), so the cost does not grow with a round trip into the JVM per
    column and expression node, which made a 1,000-column projection take seconds to tens of seconds.
    """
    struct = "named_struct(" + ", ".join(f"{sql_string(name)}, {expr}" for expr, name in columns) + ")"
    return df.select(F.expr(struct).alias("_row")).select("_row.*")


def double_array(names: Sequence[str]) -> Column:
    """The named columns as one ``array<double>`` column (one expression)."""
    return F.expr("array(" + ", ".join(f"CAST({sql_name(n)} AS DOUBLE)" for n in names) + ")")


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


#: Up to this many distinct categories, their counts reach the driver in one action and the case merges and the
#: ranking are done there; above it (a column of near-unique values, by mistake) both stay in Spark.
LOCAL_CATEGORIES = 100_000


def _respelling(clashes: Iterable[tuple[str, str, int]]) -> tuple[Column, dict[str, int], dict[str, str]]:
    """From the (category, lower-case key, count) rows of the categories that clash in lower case: the expression
    that respells each as its most frequent variant (ties: the first in sort order), the stats
    (``category_case_merged``: rows respelled) and the map variant -> kept spelling."""
    groups: dict[str, list[tuple[int, str]]] = {}
    for cat, key, n in clashes:
        groups.setdefault(key, []).append((-int(n), cat))
    respell = F.col(C.CATEGORY)
    merged = 0
    mapping: dict[str, str] = {}
    for variants in groups.values():
        variants.sort()
        keep, others = variants[0][1], [v for _, v in variants[1:]]
        merged -= sum(n for n, _ in variants[1:])
        mapping.update(dict.fromkeys(others, keep))
        respell = F.when(F.col(C.CATEGORY).isin(others), F.lit(keep)).otherwise(respell)
        log.warning("categories that differ only in case merged into %r: %s", keep, others)
    return respell, ({"category_case_merged": merged} if merged else {}), mapping


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
    respell, stats, _ = _respelling((r[C.CATEGORY], r["_k"], r["count"]) for r in clashes)
    return respell, stats


def _rank_local(rows: Sequence[Row], max_categories: int) -> tuple[list[str], Column, dict[str, int]]:
    """:func:`resolve_categories`' merges and ranking on the driver, from every (category, count) row: the same
    result as the Spark path (order by count desc, then category asc with null first).

    The lower-case keys are Python's ``str.lower`` here, Spark's ``lower`` there: the same for every category
    but a few context-dependent letters (a word-final capital sigma). Lowering on the driver spares the feature
    job the first ``lower`` of its JVM, which loads ICU's case tables: 0.6 s."""
    keys = [None if r[C.CATEGORY] is None else str(r[C.CATEGORY]).lower() for r in rows]
    per_key: dict[str, int] = {}
    for k in keys:
        if k is not None:
            per_key[k] = per_key.get(k, 0) + 1
    respell, stats, mapping = _respelling(
        (r[C.CATEGORY], k, r["count"]) for r, k in zip(rows, keys) if k is not None and per_key[k] > 1
    )
    totals: dict[str | None, int] = {}
    for r in rows:
        cat = mapping.get(r[C.CATEGORY], r[C.CATEGORY])
        totals[cat] = totals.get(cat, 0) + int(r["count"])
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0] is not None, kv[0] or ""))[:max_categories]
    stats["input_rows"] = sum(totals.values())
    return sorted(c for c, _ in ranked if c is not None), respell, stats


def rank_categories(counts: DataFrame, max_categories: int) -> tuple[list[str], Column, dict[str, int]]:
    """The most frequent ``max_categories`` categories of a (category, count) table, after merging the ones that
    differ only in case (:func:`case_merges`): the sorted list, the respelling expression and the stats
    (``input_rows``: the counts' sum; ``category_case_merged``). Ties go to the first in sort order, and a null
    category takes a slot of the ranking but is never in the list.

    Only the small count table reaches the driver: in one action when it has at most :data:`LOCAL_CATEGORIES`
    rows, else only its clashing variants and its top rows.
    """
    counts = counts.select(C.CATEGORY, "count").persist()
    try:
        rows = counts.limit(LOCAL_CATEGORIES + 1).collect()
        if len(rows) <= LOCAL_CATEGORIES:
            return _rank_local(rows, max_categories)
        respell, stats = case_merges(counts)
        total = counts.agg(F.sum("count")).first()
        stats["input_rows"] = int(total[0] or 0) if total is not None else 0
        top = (
            counts.withColumn(C.CATEGORY, respell)
            .groupBy(C.CATEGORY)
            .agg(F.sum("count").alias("count"))
            .orderBy(F.desc("count"), F.asc(C.CATEGORY))
            .limit(max_categories)
        ).collect()
        return sorted(r[C.CATEGORY] for r in top if r[C.CATEGORY] is not None), respell, stats
    finally:
        counts.unpersist()


def fold_categories(df: DataFrame, cats: list[str], other: bool) -> tuple[list[str], DataFrame]:
    """Keep the listed categories; fold the rest (null included) into 'other', or drop them without ``other``."""
    known = F.col(C.CATEGORY).isin(cats)
    if not other:
        return cats, df.where(known)
    folded = df.withColumn(C.CATEGORY, F.when(known, F.col(C.CATEGORY)).otherwise(F.lit(OTHER)))
    return (cats if OTHER in cats else cats + [OTHER]), folded


def resolve_categories(
    df: DataFrame, fixed: list[str] | None, max_categories: int, other: bool
) -> tuple[list[str], DataFrame, dict[str, int]]:
    """Fix the category list of a table of features (given, or the most frequent ones, :func:`rank_categories`)
    and fold the rest into 'other' (:func:`fold_categories`).

    When the categories come from the data, the stats also hold ``input_rows`` (the rows counted on the
    way), so a caller need not scan the input again to count it. Categories taken from the data are merged
    when they differ only in case, so ``Café`` and ``café`` never make two columns that Spark finds ambiguous.
    """
    stats: dict[str, int] = {}
    if fixed is not None:
        cats = list(fixed)
    else:
        cats, respell, stats = rank_categories(df.groupBy(C.CATEGORY).count(), max_categories)
        df = df.withColumn(C.CATEGORY, respell)
    cats, df = fold_categories(df, cats, other)
    return cats, df, stats


def pivot_wide(long: DataFrame, value: str, categories: list[str], names: list[str]) -> DataFrame:
    """(region_id, category, value) -> one column per category, in the given order; the values of the rows of one
    region and category (a category folded into another, or one row per piece) are summed.

    The pivot runs over the categories' positions, not their text, so any category value works: a backtick,
    a dot, or two spellings that Spark's case-insensitive column names would find ambiguous.
    """
    position = F.array_position(F.array(*[F.lit(c) for c in categories]), F.col(C.CATEGORY)).cast("int")
    values: list[bool | float | int | str] = list(range(1, len(categories) + 1))
    wide = long.withColumn("_pos", position).groupBy(C.REGION_ID).pivot("_pos", values).agg(F.sum(value))
    return project(wide, [(sql_name(C.REGION_ID), C.REGION_ID), *[(f"`{i}`", n) for i, n in enumerate(names, start=1)]])


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


def complete(regions: DataFrame, features: DataFrame, names: list[str], carry: Sequence[str] = ()) -> DataFrame:
    """Every region gets a row; missing values become 0 and ``_present`` says who had data. ``carry``: columns of
    ``regions`` kept beside the features (a region's area for its densities), from the same join."""
    joined = regions.select(C.REGION_ID, *carry).join(
        features.withColumn(PRESENT, F.lit(True)), on=C.REGION_ID, how="left"
    )
    return project(
        joined,
        [
            (sql_name(C.REGION_ID), C.REGION_ID),
            *[(f"coalesce(CAST({sql_name(n)} AS DOUBLE), 0D)", n) for n in names],
            (f"coalesce({PRESENT}, false)", PRESENT),
            *[(sql_name(c), c) for c in carry],
        ],
    )


def row_sum(names: list[str]) -> Column:
    """The sum of some double columns as one expression (a fold over an array, not a chain of additions,
    so hundreds of columns do not nest hundreds of expressions deep)."""
    if not names:
        return F.lit(0.0)
    return F.aggregate(double_array(names), F.lit(0.0), lambda acc, x: acc + x)


def not_finite(x: Column) -> Column:
    """True where a double value is null, NaN or infinite."""
    return x.isNull() | F.isnan(x) | is_infinite(x)


def is_infinite(x: Column) -> Column:
    """True where a double value is +inf or -inf; false (never null) for null."""
    return F.coalesce(x.isin(float("inf"), float("-inf")), F.lit(False))


def any_column(names: Sequence[str], test: Callable[[Column], Column]) -> Column:
    """True where ``test`` holds for any of the named columns (as doubles), never null: one ``exists`` over one
    array expression, not a deep OR chain, so hundreds of columns neither nest hundreds of expressions deep nor
    cost a call into the JVM each."""
    if not names:
        return F.lit(False)
    return F.coalesce(F.exists(double_array(names), test), F.lit(False))


def nan_to_zero(df: DataFrame, names: list[str]) -> DataFrame:
    return df.select(
        *[c for c in df.columns if c not in names],
        *[F.when(F.isnan(F.col(n)) | F.col(n).isNull(), 0.0).otherwise(F.col(n)).alias(n) for n in names],
    )


def region_join(
    regions: DataFrame, items: DataFrame, predicate: str = "ST_Intersects", broadcast: bool = True
) -> DataFrame:
    """Spatial join; regions' geometry comes back as ``_region_geom``.

    ``broadcast``: ship the regions to every task and probe an index of them with the items where they lie
    (Sedona's broadcast index join), so the items are neither shuffled nor spatially partitioned. Asked for
    explicitly, because Spark's automatic choice hangs on a size estimate (10 MB) that a larger region set
    crosses silently. ``False`` lets Sedona partition both sides (a range join), for region sets too big to
    hold in every executor.
    """
    r = regions.select(F.col(C.REGION_ID), F.col(C.GEOMETRY).alias("_region_geom"), F.col(C.AREA_KM2))
    return (F.broadcast(r) if broadcast else r).join(items, F.expr(f"{predicate}(_region_geom, {C.GEOMETRY})"))


#: Regions are cut into pieces of at most this many vertices before lines and polygons are clipped to them: an NYC
#: census tract has up to 10,969 vertices, and clipping costs in the vertices of the polygon clipped to. A line's
#: pieces add up to its length in the region (one lying exactly along a cut would count twice, as one along two
#: regions' shared edge does).
SUBDIVIDE_VERTICES = 64

#: Points are matched to coarser pieces: a point's test walks the rings of the pieces whose envelopes hold it,
#: and more, smaller pieces make a deeper index that more envelopes overlap. At 10 M points into the NYC tracts
#: the view took 11.7-12.1 s with pieces of 512 vertices, 12.2-12.8 s with 64 (4 alternated runs each); the cut
#: still bounds the test on a coastline of 100,000 vertices. A point on a cut line hits two pieces of one region
#: and is counted once, like any boundary point. The cuts add vertices computed in floating point, so a point
#: within about 1e-15 degrees of a ring may change sides.
POINT_PIECE_VERTICES = 512


def subdivided(regions: DataFrame, max_vertices: int = SUBDIVIDE_VERTICES) -> DataFrame:
    """The regions as pieces of at most ``max_vertices`` vertices (``ST_SubDivideExplode``), one row per piece with
    its region's id and area: the same points and lines hit them as hit the whole polygons, with cheaper tests
    (:data:`SUBDIVIDE_VERTICES`, :data:`POINT_PIECE_VERTICES`)."""
    other = [c for c in regions.columns if c != C.GEOMETRY]
    return regions.select(*other, F.expr(f"ST_SubDivideExplode({C.GEOMETRY}, {int(max_vertices)})").alias(C.GEOMETRY))
