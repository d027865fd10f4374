"""OD flows (mobility): inflow, outflow, self-flow and a flow vector of fixed length.

The flow vector is a truncated SVD of the OD matrix (``svd``): each region gets its
origin-side row of U*S and destination-side row of V*S, ``flow_dim`` numbers each, however many
regions there are. For small region sets the rows themselves can be used (``rows``: the region's
outgoing and incoming trips to every region), which is what the Manhattan benchmark's published
methods feed their models. The OD cells are log1p(trips) or the trip counts (``values``).
"""

from __future__ import annotations

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cookie import constants as C
from cookie.etl.features.common import FEATURES, PRESENT, ViewResult, complete
from cookie.etl.features.points import FEATURE_ID, assign_points

ROWS_LIMIT = 2048  # 'auto' uses rows up to this many regions, SVD above
BASE_NAMES = ("outflow", "inflow", "self_flow")


def trips_to_edges(regions: DataFrame, trips: DataFrame) -> tuple[DataFrame, dict[str, int]]:
    """Trips with origin/destination points -> (origin_region_id, destination_region_id, trips)."""
    t = trips.withColumn(FEATURE_ID, F.monotonically_increasing_id())
    o = assign_points(regions, t.select(FEATURE_ID, F.col(C.ORIGIN_GEOMETRY).alias(C.GEOMETRY)))
    d = assign_points(regions, t.select(FEATURE_ID, F.col(C.DESTINATION_GEOMETRY).alias(C.GEOMETRY)))
    joined = (
        t.select(FEATURE_ID, C.TRIPS)
        .join(o.withColumnRenamed(C.REGION_ID, C.ORIGIN_REGION), FEATURE_ID)
        .join(d.withColumnRenamed(C.REGION_ID, C.DESTINATION_REGION), FEATURE_ID)
    )
    edges = joined.groupBy(C.ORIGIN_REGION, C.DESTINATION_REGION).agg(F.sum(C.TRIPS).alias(C.TRIPS))
    n_in, n_kept = t.count(), joined.count()
    return edges, {"input_rows": n_in, "outside_regions": n_in - n_kept}


def filter_edges(regions: DataFrame, edges: DataFrame) -> tuple[DataFrame, int, int]:
    """Drop edges whose ends are not known regions: the kept edges, how many were dropped and how many kept
    (counted in one pass)."""
    ids = regions.select(C.REGION_ID)
    flagged = edges.join(
        ids.select(F.col(C.REGION_ID).alias(C.ORIGIN_REGION), F.lit(True).alias("_known_o")), C.ORIGIN_REGION, "left"
    ).join(
        ids.select(F.col(C.REGION_ID).alias(C.DESTINATION_REGION), F.lit(True).alias("_known_d")),
        C.DESTINATION_REGION,
        "left",
    )
    known = F.col("_known_o").isNotNull() & F.col("_known_d").isNotNull()
    counts = flagged.agg(F.count("*").alias("n"), F.sum(known.cast("int")).alias("kept")).first()
    assert counts is not None  # an aggregate has one row
    kept = int(counts["kept"] or 0)
    return (
        edges.join(ids.withColumnRenamed(C.REGION_ID, C.ORIGIN_REGION), C.ORIGIN_REGION, "left_semi").join(
            ids.withColumnRenamed(C.REGION_ID, C.DESTINATION_REGION), C.DESTINATION_REGION, "left_semi"
        ),
        int(counts["n"]) - kept,
        kept,
    )


def _index(regions: DataFrame) -> DataFrame:
    """A dense 0..N-1 index in region-id order (stable across runs)."""
    from pyspark.sql.window import Window

    return regions.select(C.REGION_ID).withColumn("_idx", F.row_number().over(Window.orderBy(C.REGION_ID)) - 1)


def od_features(
    spark: SparkSession,
    regions: DataFrame,
    edges: DataFrame,
    method: str = "auto",
    dim: int = 32,
    values: str = "log1p",
) -> ViewResult:
    """Per-region flow features from (origin_region_id, destination_region_id, trips) edges."""
    if values not in ("log1p", "counts"):
        raise ValueError(f"flow values must be 'log1p' or 'counts', got {values!r}")
    # Spark orders NaN above every number, so 'trips > 0' alone would keep NaN (the readers refuse it anyway)
    edges, unknown, n_edges = filter_edges(regions, edges.where((F.col(C.TRIPS) > 0) & ~F.isnan(C.TRIPS)))
    n = regions.count()
    if method == "auto":
        method = "rows" if n <= ROWS_LIMIT else "svd"
    stats = {"edges": n_edges, "unknown_region_edges": unknown, "method_rows": int(method == "rows")}
    idx = _index(regions)
    trips = F.col(C.TRIPS).cast("double")
    e = (
        edges.join(idx.withColumnRenamed(C.REGION_ID, C.ORIGIN_REGION).withColumnRenamed("_idx", "_o"), C.ORIGIN_REGION)
        .join(
            idx.withColumnRenamed(C.REGION_ID, C.DESTINATION_REGION).withColumnRenamed("_idx", "_d"),
            C.DESTINATION_REGION,
        )
        .select(
            "_o",
            "_d",
            trips.alias("_t"),
            (F.log1p(trips) if values == "log1p" else trips).alias("_v"),
        )
    )
    if method == "rows":
        return _rows_features(spark, idx, e, n, stats)
    out_flow = edges.groupBy(F.col(C.ORIGIN_REGION).alias(C.REGION_ID)).agg(F.sum(C.TRIPS).alias("outflow"))
    in_flow = edges.groupBy(F.col(C.DESTINATION_REGION).alias(C.REGION_ID)).agg(F.sum(C.TRIPS).alias("inflow"))
    self_flow = edges.where(F.col(C.ORIGIN_REGION) == F.col(C.DESTINATION_REGION)).select(
        F.col(C.ORIGIN_REGION).alias(C.REGION_ID), F.col(C.TRIPS).alias("self_flow")
    )
    base = out_flow.join(in_flow, C.REGION_ID, "outer").join(self_flow, C.REGION_ID, "left")
    vec, vec_names = _svd_vectors(spark, idx, e, n, dim)
    names = [*BASE_NAMES, *vec_names]
    out = complete(regions, base.join(vec, C.REGION_ID, "outer"), names)
    return ViewResult(out, names, stats)


def _rows_features(spark: SparkSession, idx: DataFrame, e: DataFrame, n: int, stats: dict[str, int]) -> ViewResult:
    """The 'rows' flow features, packed (see ViewResult): outflow, inflow, self-flow, then the region's OD row
    (trips to region 0..N-1, ``out_<j>``) and OD column (from region 0..N-1, ``in_<j>``), 0 where none, as
    log1p or counts (the cells' ``_v``).

    One aggregation over the N x 2N cells (the region index crossed with the positions, left-joined to the
    non-zero cells), each region's cells collected in position order: no pivot, no column per position, and
    the totals come from the same cells.
    """
    order = [r[C.REGION_ID] for r in idx.orderBy("_idx").collect()]  # N ids, N small by construction
    cells = (
        e.select(F.col("_o").cast("long").alias("_r"), F.col("_d").cast("long").alias("_c"), "_v", "_t")
        .unionByName(
            e.select(F.col("_d").cast("long").alias("_r"), (F.col("_o") + n).cast("long").alias("_c"), "_v", "_t")
        )
        .groupBy("_r", "_c")
        .agg(F.sum("_v").alias("_v"), F.sum("_t").alias("_t"))
    )
    grid = idx.select(C.REGION_ID, F.col("_idx").cast("long").alias("_r")).crossJoin(
        spark.range(2 * n).select(F.col("id").alias("_c"))
    )
    per_region = (
        grid.join(cells, ["_r", "_c"], "left")
        .groupBy(C.REGION_ID)
        .agg(
            F.sum(F.when(F.col("_c") < n, F.col("_t"))).alias("outflow"),
            F.sum(F.when(F.col("_c") >= n, F.col("_t"))).alias("inflow"),
            F.sum(F.when(F.col("_c") == F.col("_r"), F.col("_t"))).alias("self_flow"),
            F.sort_array(F.collect_list(F.struct("_c", F.coalesce("_v", F.lit(0.0)).alias("_v")))).alias("_cells"),
        )
    )
    totals = F.array(*[F.coalesce(F.col(c).cast("double"), F.lit(0.0)) for c in BASE_NAMES])
    packed = per_region.select(
        C.REGION_ID,
        F.concat(totals, F.transform("_cells", lambda x: x["_v"])).alias(FEATURES),
        F.lit(True).alias(PRESENT),  # every region has its row and column, zeros or not
    )
    names = [*BASE_NAMES, *[f"out_{i:05d}" for i in range(n)], *[f"in_{i:05d}" for i in range(n)]]
    extra = {"flow_columns_region_order": ",".join(order)}
    return ViewResult(packed, names, stats, extra, packed=True, nullable={c: False for c in names})


def _svd_vectors(spark: SparkSession, idx: DataFrame, e: DataFrame, n: int, dim: int) -> tuple[DataFrame, list[str]]:
    """Distributed truncated SVD (Spark MLlib RowMatrix); signs fixed so reruns agree."""
    from pyspark.mllib.linalg import Vectors
    from pyspark.mllib.linalg.distributed import IndexedRow, IndexedRowMatrix

    k = min(dim, max(n - 1, 1))
    rows = (
        e.rdd.map(lambda r: (r["_o"], (r["_d"], r["_v"])))
        .groupByKey()
        # pyspark annotates IndexedRow with the pyspark.ml VectorLike; it takes the mllib vectors used here
        .map(lambda kv: IndexedRow(kv[0], Vectors.sparse(n, sorted(kv[1]))))  # type: ignore[arg-type]
    )
    mat = IndexedRowMatrix(rows, numRows=n, numCols=n)
    svd = mat.computeSVD(k, computeU=True)
    s = np.asarray(svd.s.toArray())
    v = np.asarray(svd.V.toArray())  # n x k, local: the number of regions times k
    signs = np.sign(v[np.abs(v).argmax(axis=0), np.arange(v.shape[1])])
    signs[signs == 0] = 1.0
    v_s = v * signs * s
    u = svd.U
    assert u is not None  # computeU=True
    u_rows = u.rows.map(lambda r: (int(r.index), [float(x) for x in (np.asarray(r.vector.toArray()) * signs * s)]))
    out_names = [f"out_svd_{i:02d}" for i in range(dim)]
    in_names = [f"in_svd_{i:02d}" for i in range(dim)]
    pad = dim - len(s)
    schema_u = T.StructType(
        [T.StructField("_idx", T.LongType())] + [T.StructField(c, T.DoubleType()) for c in out_names]
    )
    u_df = spark.createDataFrame(u_rows.map(lambda t: [t[0]] + t[1] + [0.0] * pad), schema_u)
    schema_v = T.StructType(
        [T.StructField("_idx", T.LongType())] + [T.StructField(c, T.DoubleType()) for c in in_names]
    )
    v_df = spark.createDataFrame([[i] + [float(x) for x in v_s[i]] + [0.0] * pad for i in range(n)], schema_v)
    vec = idx.join(u_df, "_idx", "left").join(v_df, "_idx", "left").drop("_idx")
    return vec, out_names + in_names
