"""OD flows (mobility): inflow, outflow, self-flow and a flow vector of fixed length.

The flow vector is a truncated SVD of the log1p OD matrix (``svd``): each region gets its
origin-side row of U*S and destination-side row of V*S, ``flow_dim`` numbers each, however many
regions there are. For small region sets the rows themselves can be used (``rows``: the region's
outgoing and incoming trip counts to every region, log1p), which is what the Manhattan benchmark's
published methods feed their models.
"""

from __future__ import annotations

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from cookie import constants as C
from cookie.etl.features.common import ViewResult, complete
from cookie.etl.features.points import FEATURE_ID, assign_points

ROWS_LIMIT = 2048  # 'auto' uses rows up to this many regions, SVD above


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


def filter_edges(regions: DataFrame, edges: DataFrame) -> tuple[DataFrame, int]:
    """Drop edges whose ends are not known regions (counted)."""
    ids = regions.select(C.REGION_ID)
    kept = edges.join(ids.withColumnRenamed(C.REGION_ID, C.ORIGIN_REGION), C.ORIGIN_REGION, "left_semi").join(
        ids.withColumnRenamed(C.REGION_ID, C.DESTINATION_REGION), C.DESTINATION_REGION, "left_semi"
    )
    return kept, edges.count() - kept.count()


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
) -> ViewResult:
    # Spark orders NaN above every number, so 'trips > 0' alone would keep NaN (the readers refuse it anyway)
    edges, unknown = filter_edges(regions, edges.where((F.col(C.TRIPS) > 0) & ~F.isnan(C.TRIPS)))
    n = regions.count()
    if method == "auto":
        method = "rows" if n <= ROWS_LIMIT else "svd"
    out_flow = edges.groupBy(F.col(C.ORIGIN_REGION).alias(C.REGION_ID)).agg(F.sum(C.TRIPS).alias("outflow"))
    in_flow = edges.groupBy(F.col(C.DESTINATION_REGION).alias(C.REGION_ID)).agg(F.sum(C.TRIPS).alias("inflow"))
    self_flow = edges.where(F.col(C.ORIGIN_REGION) == F.col(C.DESTINATION_REGION)).select(
        F.col(C.ORIGIN_REGION).alias(C.REGION_ID), F.col(C.TRIPS).alias("self_flow")
    )
    base = out_flow.join(in_flow, C.REGION_ID, "outer").join(self_flow, C.REGION_ID, "left")
    names = ["outflow", "inflow", "self_flow"]
    idx = _index(regions)
    e = (
        edges.join(idx.withColumnRenamed(C.REGION_ID, C.ORIGIN_REGION).withColumnRenamed("_idx", "_o"), C.ORIGIN_REGION)
        .join(
            idx.withColumnRenamed(C.REGION_ID, C.DESTINATION_REGION).withColumnRenamed("_idx", "_d"),
            C.DESTINATION_REGION,
        )
        .select("_o", "_d", F.log1p(F.col(C.TRIPS).cast("double")).alias("_v"))
    )
    if method == "rows":
        order = [r[C.REGION_ID] for r in idx.orderBy("_idx").collect()]  # N ids, N small by construction
        out_names = [f"out_{i:05d}" for i in range(n)]
        in_names = [f"in_{i:05d}" for i in range(n)]
        out_w = e.groupBy("_o").pivot("_d", list(range(n))).agg(F.sum("_v"))
        out_w = out_w.select(F.col("_o").alias("_idx"), *[F.col(f"`{i}`").alias(out_names[i]) for i in range(n)])
        in_w = e.groupBy("_d").pivot("_o", list(range(n))).agg(F.sum("_v"))
        in_w = in_w.select(F.col("_d").alias("_idx"), *[F.col(f"`{i}`").alias(in_names[i]) for i in range(n)])
        vec = idx.join(out_w, "_idx", "left").join(in_w, "_idx", "left").drop("_idx")
        vec_names = out_names + in_names
        extra = {"flow_columns_region_order": ",".join(order)}
    else:
        vec, vec_names = _svd_vectors(spark, idx, e, n, dim)
        extra = {}
    feats = base.join(vec, C.REGION_ID, "outer")
    names = names + vec_names
    out = complete(regions, feats, names)
    stats = {"edges": edges.count(), "unknown_region_edges": unknown, "method_rows": int(method == "rows")}
    res = ViewResult(out.select(C.REGION_ID, *names, "_present"), names, stats)
    res.extra = extra
    return res


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
