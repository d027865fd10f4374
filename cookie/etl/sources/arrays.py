"""Per-region arrays (.npy/.npz/.json) and tables (CSV/Parquet) as Spark DataFrames keyed by region id.

Benchmark sets ship their views and labels as arrays indexed by region; this turns them into the
same keyed tables the spatial views produce. Arrays are small by nature (one row per region); large
per-region vectors should come as Parquet tables, which are read distributed.
"""

from __future__ import annotations

import json
import os

import numpy as np
from pyspark.sql import DataFrame, SparkSession

from cookie import constants as C
from cookie.config import ArraySource, TableSource
from cookie.etl.features.common import project, sql_name
from cookie.etl.sources.vector import check_numeric, require_file, spark_path
from cookie.exceptions import InputError


def load_array(src: ArraySource, path: str) -> tuple[list[str], np.ndarray]:
    """Return (region ids, 2-D float array); rows masked out by ``mask_key`` become NaN."""
    require_file(path)
    if path.endswith(".json"):
        with open(path) as f:
            mapping = json.load(f)
        ids = sorted(mapping, key=lambda k: (len(k), k))
        arr = np.asarray([mapping[k] for k in ids], dtype=float)
    else:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            if not src.key:
                raise InputError(f"{path}: an .npz needs 'key'; arrays are {sorted(loaded.files)}")
            if src.key not in loaded.files:
                raise InputError(f"{path}: key {src.key!r} not found; arrays are {sorted(loaded.files)}")
            arr = np.asarray(loaded[src.key], dtype=float)
            if src.row_ids != "index":
                if src.row_ids not in loaded.files:
                    raise InputError(f"{path}: row_ids key {src.row_ids!r} not found")
                ids = [str(x) for x in loaded[src.row_ids]]
            if src.mask_key:
                mask = np.asarray(loaded[src.mask_key], dtype=bool)
                arr = arr.copy()
                arr[~mask] = np.nan
        else:
            arr = np.asarray(loaded, dtype=float)
        if src.slice is not None:
            arr = arr[src.slice]
        if src.row_ids == "index":
            ids = [str(i) for i in range(arr.shape[0])]
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise InputError(f"{path}: expected a 1-D or 2-D array per region, got shape {arr.shape}")
    if len(ids) != arr.shape[0]:
        raise InputError(f"{path}: {len(ids)} region ids for {arr.shape[0]} rows")
    return ids, arr


def array_frame(spark: SparkSession, ids: list[str], arr: np.ndarray, names: list[str]) -> DataFrame:
    """``region_id`` + one double column per array column (NaN kept), built in one projection from an
    array column, so a 1,000-column array makes a flat plan."""
    from pyspark.sql import types as T

    if len(names) != arr.shape[1]:
        raise InputError(f"{len(names)} column names for {arr.shape[1]} array columns")
    schema = T.StructType(
        [
            T.StructField(C.REGION_ID, T.StringType(), False),
            T.StructField("_v", T.ArrayType(T.DoubleType(), True), False),
        ]
    )
    rows = [(str(i), [float(x) for x in row]) for i, row in zip(ids, np.asarray(arr, dtype=float))]
    df = spark.createDataFrame(rows, schema)
    return project(df, [(sql_name(C.REGION_ID), C.REGION_ID), *[(f"_v[{j}]", n) for j, n in enumerate(names)]])


def matrix_edges(
    spark: SparkSession, ids: list[str], arr: np.ndarray, where: str = "OD matrix"
) -> tuple[DataFrame, dict[str, int]]:
    """An N x N OD matrix (rows = origins) as an edge list of its non-zero cells, and counts of what was left out.

    NaN cells (rows masked out by ``mask_key``, or no data) are no flow and are counted (``nan_cells``); an
    infinite or negative trip count is refused, naming ``where`` and the cell, since it would otherwise be
    dropped (negative) or written as infinity.
    """
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise InputError(f"{where}: OD matrix must be square, got {arr.shape}")
    bad = np.isinf(arr) | (arr < 0)
    if bad.any():
        i, j = (int(x[0]) for x in np.nonzero(bad))
        raise InputError(
            f"{where}: {int(bad.sum())} OD cell(s) are infinite or negative, e.g. row {ids[i]!r} column "
            f"{ids[j]!r} = {arr[i, j]}; trip counts must be finite and >= 0"
        )
    o, d = np.nonzero(np.nan_to_num(arr))
    import pandas as pd

    pdf = pd.DataFrame(
        {
            C.ORIGIN_REGION: [ids[i] for i in o],
            C.DESTINATION_REGION: [ids[j] for j in d],
            C.TRIPS: arr[o, d].astype(float),
        }
    )
    return spark.createDataFrame(pdf), {"nan_cells": int(np.isnan(arr).sum())}


def read_table_source(spark: SparkSession, src: TableSource, path: str) -> DataFrame:
    require_file(path)
    if path.endswith(".csv"):
        df = spark.read.option("header", "true").option("inferSchema", "true").csv(spark_path(path))
    else:
        df = spark.read.parquet(spark_path(path))
    if src.id_column not in df.columns:
        raise InputError(f"{path}: id column {src.id_column!r} not found; columns are {df.columns}")
    cols = src.columns or [c for c in df.columns if c != src.id_column]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(f"{path}: columns {missing} not found; columns are {df.columns}")
    check_numeric(df, cols, path)  # 'n/a' in a numeric column names the file and column, not CAST_INVALID_INPUT
    return project(
        df,
        [
            (f"CAST({sql_name(src.id_column)} AS STRING)", C.REGION_ID),
            *[(f"CAST({sql_name(c)} AS DOUBLE)", c) for c in cols],
        ],
    )


def exists(path: str) -> bool:
    return os.path.exists(path)
