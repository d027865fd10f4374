"""Point features with a category (POIs): counts per category, total, density per km2."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

from cookie import constants as C
from cookie.etl.features.common import (
    POINT_PIECE_VERTICES,
    ViewResult,
    complete,
    feature_columns,
    fold_categories,
    pivot_wide,
    rank_categories,
    region_join,
    resolve_categories,
    row_sum,
    sql_name,
    subdivided,
)

if TYPE_CHECKING:
    import pyarrow as pa

FEATURE_ID = "feature_id"


def assign_points(regions: DataFrame, points: DataFrame, broadcast: bool = True) -> DataFrame:
    """Each point to exactly one region: the smallest id among those it touches (boundary points). Columns
    other than the point's id and geometry (its category) travel through the join, so nothing joins back
    to the points afterwards."""
    carried = [c for c in points.columns if c not in (FEATURE_ID, C.GEOMETRY)]
    hits = region_join(regions, points, "ST_Intersects", broadcast)
    return hits.groupBy(FEATURE_ID).agg(F.min(C.REGION_ID).alias(C.REGION_ID), *[F.min(c).alias(c) for c in carried])


def _first_hits(hits: pa.Table) -> pa.Table:
    """(region_id, category, n) of whole points' hits: each point once, in its smallest region."""
    first = hits.group_by(FEATURE_ID, use_threads=False).aggregate([(C.REGION_ID, "min"), (C.CATEGORY, "min")])
    keys = [f"{C.REGION_ID}_min", f"{C.CATEGORY}_min"]  # pyarrow names the results <column>_min
    counts = first.group_by(keys, use_threads=False).aggregate([(FEATURE_ID, "count")])
    return counts.rename_columns([C.REGION_ID, C.CATEGORY, "n"])


def _run_counts(hits: pa.Table, ids: np.ndarray) -> pa.Table:
    """:func:`_first_hits` for rows whose ids come in runs (a point's hits side by side): points with one hit,
    nearly all of them, are counted without grouping them by id."""
    import pyarrow as pa

    shared = np.zeros(len(ids), dtype=bool)
    same = ids[1:] == ids[:-1]
    shared[1:] |= same
    shared[:-1] |= same
    single = hits.filter(pa.array(~shared))
    counts = single.group_by([C.REGION_ID, C.CATEGORY], use_threads=False).aggregate([(FEATURE_ID, "count")])
    parts = [counts.rename_columns([C.REGION_ID, C.CATEGORY, "n"])]
    if shared.any():
        parts.append(_first_hits(hits.filter(pa.array(shared))))
    return pa.concat_tables(parts, promote_options="permissive")


def _count_partition(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """One task's join hits (feature_id, region_id, category) -> (region_id, category, n): each point counted
    once, in its smallest region.

    Runs in the Python workers (``mapInArrow``) on one whole partition. The broadcast join emits a point's hits
    side by side, in the order of the points' ids, which rise within a partition; so each batch is counted as
    it arrives, while the join goes on, holding back only its last point, whose hits may go on in the next
    batch. Should the ids ever come out of order, the partition is counted from all its hits at once instead."""
    import pyarrow as pa

    received: list[pa.RecordBatch] = []
    counts: list[pa.Table] = []
    held: pa.Table | None = None
    last = None
    in_order = True
    for batch in batches:
        received.append(batch)
        if not in_order or batch.num_rows == 0:
            continue
        table = pa.Table.from_batches([batch])
        if held is not None:
            table = pa.concat_tables([held, table])
        ids = table.column(FEATURE_ID).to_numpy()
        if (last is not None and ids[0] < last) or bool((ids[1:] < ids[:-1]).any()):
            in_order = False
            continue
        last = ids[-1]
        cut = int(np.searchsorted(ids, ids[-1]))  # the last point's first hit
        held = table.slice(cut)
        if cut:
            counts.append(_run_counts(table.slice(0, cut), ids[:cut]))
    if not received:
        return
    if not in_order:
        table = pa.Table.from_batches(received)
        if table.num_rows:
            yield from _first_hits(table).to_batches()
        return
    if held is not None and held.num_rows:
        counts.append(_first_hits(held))
    if counts:
        total = (
            pa.concat_tables(counts, promote_options="permissive")
            .group_by([C.REGION_ID, C.CATEGORY], use_threads=False)
            .aggregate([("n", "sum")])
        )
        yield from total.rename_columns([C.REGION_ID, C.CATEGORY, "n"]).to_batches()


#: From this many input points on, a broadcast join's boundary points are settled per task (Arrow, Python
#: workers); below it the shuffle by point id is cheaper than starting the Python workers (3-5 s).
PER_TASK_MIN_POINTS = 2_000_000


def count_points(
    regions: DataFrame,
    points: DataFrame,
    broadcast: bool = True,
    per_task: bool = True,
    pieces: DataFrame | None = None,
) -> DataFrame:
    """(region_id, category, n): points per region and category, each point counted once, in the smallest region
    it touches (a point on a shared edge touches two). A region and category may have several rows (one per
    task, with ``per_task``): their sum is the count, as the pivot and the category ranking take it.

    With the regions broadcast, every point's hits come out of the join in the point's own task, so with
    ``per_task`` each task resolves its boundary points itself (:func:`_count_partition`) and only its small
    count table goes on, instead of a shuffle of every point by its id. Without broadcast, a range join can send
    one point to several partitions, and :func:`assign_points` groups by point id; so does ``per_task=False``.
    ``pieces``: ``subdivided(regions, POINT_PIECE_VERTICES)``, where the caller has them already.
    """
    regions = subdivided(regions, POINT_PIECE_VERTICES) if pieces is None else pieces
    if not (broadcast and per_task):
        assigned = assign_points(regions, points, broadcast=broadcast)
        return assigned.groupBy(C.REGION_ID, C.CATEGORY).agg(F.count("*").alias("n"))
    hits = region_join(regions, points, "ST_Intersects", broadcast=True).select(FEATURE_ID, C.REGION_ID, C.CATEGORY)
    schema = StructType(
        [
            StructField(C.REGION_ID, hits.schema[C.REGION_ID].dataType),
            StructField(C.CATEGORY, StringType()),
            StructField("n", LongType()),
        ]
    )
    return hits.mapInArrow(_count_partition, schema)


def poi_counts(
    regions: DataFrame,
    points: DataFrame,
    categories: list[str] | None = None,
    max_categories: int = 64,
    other: bool = True,
    broadcast: bool = True,
    pieces: DataFrame | None = None,
) -> ViewResult:
    """``points``: feature_id, category, geometry. Points outside every region are counted, not kept.

    The points are scanned once, by the spatial join, which carries each point's own category. Categories
    taken from the data are then ranked among the points inside the regions, from the small per-region counts
    (:func:`rank_categories`): a country-wide POI file gets the columns of the categories its regions hold,
    and no separate pass over the points ranks them. ``broadcast``: see :func:`region_join`; ``pieces``: the
    regions cut as :func:`count_points` cuts them, where the caller keeps them (cut here otherwise).
    """
    n_in = points.count()  # Parquet: from the files' footers
    per_task = n_in >= PER_TASK_MIN_POINTS
    pts = points.select(FEATURE_ID, C.CATEGORY, C.GEOMETRY)
    cat_stats: dict[str, int] = {}
    raw: DataFrame | None = None
    inside: int | None = None
    if categories is not None:
        cats, pts, _ = resolve_categories(pts, categories, max_categories, other)
        long = count_points(regions, pts, broadcast, per_task, pieces)
    else:
        raw = count_points(regions, pts, broadcast, per_task, pieces).persist(StorageLevel.MEMORY_AND_DISK)
        per_category = raw.groupBy(C.CATEGORY).agg(F.sum("n").alias("count"))
        cats, respell, cat_stats = rank_categories(per_category, max_categories)
        inside = cat_stats.pop("input_rows", None)  # the points inside regions: ``assigned`` below
        # categories folded into 'other' come out as several rows of one region and column: the pivot sums them
        cats, long = fold_categories(raw.withColumn(C.CATEGORY, respell), cats, other)
    names = feature_columns("count", cats)
    wide = pivot_wide(long, "n", cats, names)
    release = [raw] if raw is not None else []  # ``df`` reads it: released once the job has kept ``df``
    if inside is not None and other:
        n_assigned = inside  # every point inside a region is in a column ('other' included)
    else:
        wide = wide.persist(StorageLevel.MEMORY_AND_DISK)
        release.append(wide)
        sums = wide.agg(*[F.sum(F.col(sql_name(n))) for n in names]).first()
        n_assigned = int(sum(v or 0 for v in sums)) if sums is not None else 0
    out = complete(regions, wide, names, carry=[C.AREA_KM2])
    total = row_sum(names)
    out = (
        out.withColumn("count_total", total)
        .withColumn("density_per_km2", F.col("count_total") / F.col(C.AREA_KM2))
        .drop(C.AREA_KM2)
    )
    names = names + ["count_total", "density_per_km2"]
    stats = {"input_rows": n_in, "assigned": n_assigned, "outside_regions": n_in - n_assigned} | cat_stats
    return ViewResult(out.select(C.REGION_ID, *names, "_present"), names, stats, release=release)
