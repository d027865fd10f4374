"""Spatial context (cookie.etl.context): graphs and the one-hop neighbour mean as DataFrame transforms,
checked against a numpy neighbour mean on a 3x3 grid, and Manhattan-180's polygon adjacency against
HREP's neighbor.npy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cookie import constants as C
from cookie.etl.context import (
    DST,
    SRC,
    WEIGHT,
    adjacency_edges,
    context_column,
    flow_edges,
    neighbour_mean,
    with_context,
)
from cookie.etl.features.common import PRESENT, ViewResult

N = 3  # 3x3 unit squares, region "r<row><col>", row-major
IDS = [f"r{i}{j}" for i in range(N) for j in range(N)]


def grid_regions(spark):
    rows = [
        (f"r{i}{j}", f"POLYGON(({j} {i}, {j + 1} {i}, {j + 1} {i + 1}, {j} {i + 1}, {j} {i}))")
        for i in range(N)
        for j in range(N)
    ]
    return spark.createDataFrame(rows, f"{C.REGION_ID} string, wkt string").selectExpr(
        C.REGION_ID, f"ST_GeomFromWKT(wkt) AS {C.GEOMETRY}"
    )


def queen_adjacency() -> np.ndarray:
    """By hand: squares that share an edge or a corner."""
    A = np.zeros((N * N, N * N), dtype=bool)
    for a in range(N * N):
        for b in range(N * N):
            (ia, ja), (ib, jb) = divmod(a, N), divmod(b, N)
            A[a, b] = a != b and abs(ia - ib) <= 1 and abs(ja - jb) <= 1
    return A


def numpy_neighbour_mean(X, W, present):
    W = np.asarray(W, dtype=float) * present[None, :]
    deg = W.sum(1, keepdims=True)
    Xm = np.where(present[:, None], X, 0.0)
    return np.where(deg > 0, (W @ Xm) / np.where(deg > 0, deg, 1.0), Xm)


def view_frame(spark, X, present):
    pdf = pd.DataFrame(X, columns=["f0", "f1"])
    pdf.insert(0, C.REGION_ID, IDS)
    pdf[PRESENT] = present
    return spark.createDataFrame(pdf)


def as_matrix(edges: pd.DataFrame) -> np.ndarray:
    pos = {r: k for k, r in enumerate(IDS)}
    W = np.zeros((N * N, N * N))
    for s, d, w in edges[[SRC, DST, WEIGHT]].itertuples(index=False):
        W[pos[s], pos[d]] += w
    return W


@pytest.fixture(scope="module")
def grid(spark):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N * N, 2)).round(3)
    present = np.ones(N * N, dtype=bool)
    present[[0, 4, 8]] = False  # corners and centre have no data
    X[~present] = 0.0  # as the ETL stores them
    return X, present


def test_adjacency_of_a_3x3_grid(spark):
    edges = adjacency_edges(grid_regions(spark)).toPandas()
    assert (edges[SRC] != edges[DST]).all() and (edges[WEIGHT] == 1.0).all()
    np.testing.assert_array_equal(as_matrix(edges) > 0, queen_adjacency())
    assert len(edges) == queen_adjacency().sum() == 40


def test_neighbour_mean_matches_numpy_on_a_grid(spark, grid):
    X, present = grid
    view = view_frame(spark, X, present)
    edges = adjacency_edges(grid_regions(spark))
    out = neighbour_mean(view, ["f0", "f1"], edges, "adjacency").toPandas().set_index(C.REGION_ID).loc[IDS]
    assert list(out.columns) == ["f0", "f1", "ctx_adj__f0", "ctx_adj__f1", PRESENT]
    expected = numpy_neighbour_mean(X, queen_adjacency(), present)
    np.testing.assert_allclose(out[["ctx_adj__f0", "ctx_adj__f1"]].to_numpy(), expected, rtol=1e-12)
    np.testing.assert_array_equal(out[["f0", "f1"]].to_numpy(), X)
    assert not out.isna().any().any()


def test_region_without_present_neighbours_keeps_its_own_values(spark, grid):
    X, _ = grid
    present = np.zeros(N * N, dtype=bool)
    present[[0, 8]] = True  # r00 and r22: not neighbours of each other
    Xp = np.where(present[:, None], X + 1.0, 0.0)
    edges = adjacency_edges(grid_regions(spark))
    out = neighbour_mean(view_frame(spark, Xp, present), ["f0", "f1"], edges, "adjacency").toPandas()
    out = out.set_index(C.REGION_ID).loc[IDS]
    ctx = out[["ctx_adj__f0", "ctx_adj__f1"]].to_numpy()
    np.testing.assert_allclose(ctx[0], Xp[0])  # only absent neighbours: itself
    np.testing.assert_allclose(ctx[8], Xp[8])
    np.testing.assert_allclose(ctx[4], (Xp[0] + Xp[8]) / 2)  # the centre sees both corners
    np.testing.assert_allclose(ctx[2], 0.0)  # r02 touches neither corner and has no data itself
    np.testing.assert_allclose(ctx, numpy_neighbour_mean(Xp, queen_adjacency(), present))


def test_flow_graph_is_symmetric_row_normalised_without_self_loops(spark, grid):
    X, present = grid
    rng = np.random.default_rng(1)
    od = rng.integers(0, 4, size=(N * N, N * N)).astype(float)
    o, d = np.nonzero(od)
    od_df = spark.createDataFrame(
        pd.DataFrame(
            {C.ORIGIN_REGION: [IDS[i] for i in o], C.DESTINATION_REGION: [IDS[j] for j in d], C.TRIPS: od[o, d]}
        )
    )
    edges = flow_edges(od_df)
    W = od + od.T
    np.fill_diagonal(W, 0.0)
    np.testing.assert_allclose(as_matrix(edges.toPandas()), W)
    res = with_context(
        ViewResult(view_frame(spark, X, present), ["f0", "f1"]),
        {"adjacency": adjacency_edges(grid_regions(spark)), "flows": edges},
    )
    assert res.feature_names == ["f0", "f1", "ctx_adj__f0", "ctx_adj__f1", "ctx_flows__f0", "ctx_flows__f1"]
    out = res.df.toPandas().set_index(C.REGION_ID).loc[IDS]
    assert list(out.columns) == res.feature_names + [PRESENT]
    np.testing.assert_allclose(
        out[["ctx_flows__f0", "ctx_flows__f1"]].to_numpy(), numpy_neighbour_mean(X, W, present), rtol=1e-12
    )
    np.testing.assert_allclose(
        out[["ctx_adj__f0", "ctx_adj__f1"]].to_numpy(), numpy_neighbour_mean(X, queen_adjacency(), present), rtol=1e-12
    )
    assert context_column("flows", "f0") == "ctx_flows__f0"


@pytest.mark.slow
def test_manhattan180_adjacency_equals_hrep_neighbours(spark, shared_data):
    """The Sedona self-join over the regions read from the shapefile gives HREP's neighbor.npy exactly."""
    from cookie.config import FileRegions
    from cookie.etl.regions import regions_from_file

    root = shared_data / "nyc-manhattan-180"
    regions = regions_from_file(
        spark,
        FileRegions(kind="file", path="x", format="shapefile", id_column="region_id"),
        str(root / "mgfn" / "mh-180"),
    ).df
    edges = adjacency_edges(regions).toPandas()
    A = np.zeros((180, 180), dtype=bool)
    A[edges[SRC].astype(int), edges[DST].astype(int)] = True
    nb = np.load(root / "hrep" / "neighbor.npy", allow_pickle=True)
    ref = np.zeros_like(A)
    for i, js in enumerate(nb):
        ref[i, list(js)] = True
    assert len(edges) == A.sum() == 1016
    np.testing.assert_array_equal(A, ref)


def test_h3_adjacency_is_ring_one(spark):
    """H3 grids: neighbours are the ring-1 cells that are regions too (checked with the h3 package)."""
    h3 = pytest.importorskip("h3")
    from cookie.config import H3Regions
    from cookie.etl.context import region_adjacency
    from cookie.etl.regions import bbox_area, regions_h3

    bbox = (24.93, 60.16, 24.96, 60.175)
    regions = regions_h3(bbox_area(spark, bbox), H3Regions(kind="h3", resolution=9, bbox=bbox)).df
    cells = {r[C.REGION_ID] for r in regions.select(C.REGION_ID).collect()}
    edges = region_adjacency(regions).toPandas()
    got = set(zip(edges[SRC], edges[DST]))
    expected = {(c, n) for c in cells for n in h3.grid_ring(c, 1) if n in cells}
    assert got == expected and len(got) > len(cells)
