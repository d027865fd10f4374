"""Regions known by id only (``regions: {kind: ids}``): null geometry and centroids in the regions table.

Maps and spatial-block tasks are skipped with the logged reason "unavailable: regions have no geometry";
every other task runs. pandas / deltalake only (no Spark, no MLflow).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cookie.config.evaluation import TaskConfig
from cookie.evaluation.runner import NO_GEOMETRY, centroids_of, has_geometry, run_tasks, write_report
from cookie.storage.delta import LabelRows

N = 40
IDS = [str(i) for i in range(N)]


def _id_regions() -> pd.DataFrame:
    """The regions table of an ids-only config, as deltalake reads it back: null doubles and binaries."""
    return pd.DataFrame(
        {
            "region_id": IDS,
            "area_km2": np.nan,
            "centroid_lon": np.nan,
            "centroid_lat": np.nan,
            "geometry_wkb": [None] * N,
        }
    )


def _tasks() -> list[TaskConfig]:
    return [
        TaskConfig(name="y", label="y", columns=["y"], protocol="ridge_kfold", options={"n_splits": 4}),
        TaskConfig(name="y", label="y", columns=["y"], protocol="spatial_block", options={"n_splits": 3, "n_bins": 3}),
    ]


def _data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, 4))
    y = np.maximum(X @ np.array([3.0, -2.0, 1.0, 0.0]) + 10 + rng.normal(scale=0.5, size=N), 0)
    return X, LabelRows(ids=IDS, values=y, columns=["y"])


def test_geometry_helpers():
    regions = _id_regions()
    assert not has_geometry(regions) and centroids_of(regions) is None
    assert not has_geometry(None) and centroids_of(None) is None
    # object columns of None (as a pandas round trip may give) behave the same
    obj = regions.astype({"centroid_lon": object, "centroid_lat": object})
    obj[["centroid_lon", "centroid_lat"]] = None
    assert centroids_of(obj) is None
    # one region with a geometry is enough for maps; centroids only for the regions that have them
    import shapely

    part = regions.copy()
    part.loc[3, ["centroid_lon", "centroid_lat"]] = [24.9, 60.2]
    part["geometry_wkb"] = [shapely.to_wkb(shapely.box(0, 0, 1, 1)) if i == 3 else None for i in range(N)]
    assert has_geometry(part) and centroids_of(part) == {"3": (24.9, 60.2)}


def test_spatial_block_skipped_other_tasks_run(caplog):
    X, lab = _data()
    with caplog.at_level(logging.INFO, logger="cookie.evaluation"):
        res = run_tasks(_tasks(), IDS, X, lambda t: lab, centroids=centroids_of(_id_regions()))
    assert res.skipped == {"y.spatial_block": NO_GEOMETRY}
    assert [o.key for o in res.outcomes] == ["y.ridge_kfold"] and res["y.ridge_kfold.R2"] > 0.9
    assert any(NO_GEOMETRY in r.getMessage() and r.name.startswith("cookie.evaluation") for r in caplog.records)


def test_spatial_block_with_some_regions_lacking_geometry_fails_clearly():
    from cookie.evaluation.runner import run_task

    X, lab = _data()
    cents = {r: (float(i % 5), float(i // 5)) for i, r in enumerate(IDS) if i != 7}
    with pytest.raises(ValueError, match="1 of the task's 40 regions have no geometry"):
        run_task(_tasks()[1], IDS, X, lab, centroids=cents)


def test_report_without_maps(tmp_path, caplog):
    X, lab = _data()
    res = run_tasks(_tasks()[:1], IDS, X, lambda t: lab)
    with caplog.at_level(logging.INFO, logger="cookie.evaluation"):
        files = write_report(res, tmp_path / "rep", regions=_id_regions(), embedding=(IDS, X), title="ids only")
    assert sorted(files) == ["metrics.json", "report.md"]
    assert not list((tmp_path / "rep").glob("*.png"))
    assert f"Maps {NO_GEOMETRY}." in (tmp_path / "rep" / "report.md").read_text()
    assert any(r.getMessage() == f"maps: {NO_GEOMETRY}" for r in caplog.records)


def test_evaluate_ids_only_warehouse(tmp_path, caplog):
    """The whole evaluate path (Delta tables read with deltalake) on a warehouse whose regions have no geometry."""
    from deltalake import write_deltalake

    from cookie.config import load_config
    from cookie.evaluation.pipeline import evaluate_ref
    from cookie.storage.tracking import VersionRef

    X, lab = _data()
    wh = tmp_path / "wh" / "ids"
    schema = pa.schema(
        [
            ("region_id", pa.string()),
            ("area_km2", pa.float64()),
            ("centroid_lon", pa.float64()),
            ("centroid_lat", pa.float64()),
            ("geometry_wkb", pa.binary()),
        ]
    )
    write_deltalake(str(wh / "regions"), pa.Table.from_pandas(_id_regions(), schema=schema, preserve_index=False))
    write_deltalake(str(wh / "label_y"), pd.DataFrame({"region_id": IDS, "y": lab.values, "_present": True}))
    write_deltalake(
        str(wh / "embeddings"),
        pd.DataFrame(
            {
                "region_id": IDS,
                "model_name": "cookie_ids",
                "model_version": np.int32(1),
                "run_id": "r1",
                "created_at": pd.Timestamp("2026-01-01", tz="UTC"),
                "embedding": list(X.astype(np.float32)),
            }
        ),
    )
    cfg_path = tmp_path / "ids.yaml"
    cfg_path.write_text(f"""
name: ids
sources: {{s: {{kind: array, path: unused.npy}}}}
regions: {{kind: ids, count: {N}}}
views: [{{name: a, kind: vectors, source: s}}]
output: {{warehouse: {tmp_path / "wh"}}}
evaluation:
  primary_metric: y.ridge_kfold.R2
  tasks:
    - {{name: y, label: y, columns: [y], protocol: ridge_kfold, options: {{n_splits: 4}}}}
    - {{name: y, label: y, columns: [y], protocol: spatial_block, options: {{n_splits: 3, n_bins: 3}}}}
""")
    cfg = load_config(cfg_path)
    with caplog.at_level(logging.INFO, logger="cookie.evaluation"):
        out = evaluate_ref(cfg, VersionRef("cookie_ids", 1, "r1"), log=False, report_dir=tmp_path / "rep")
    assert out.result.skipped == {"y.spatial_block": NO_GEOMETRY}
    assert out.metrics["y.ridge_kfold.R2"] > 0.9 and not any(k.startswith("y.spatial_block") for k in out.metrics)
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == ["metrics.json", "report.md"]
    msgs = [r.getMessage() for r in caplog.records]
    assert any(NO_GEOMETRY in m for m in msgs) and any(m.startswith("report: ") for m in msgs)
