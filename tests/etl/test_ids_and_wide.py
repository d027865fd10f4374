"""Regions known by id only (no polygons), wide precomputed views (1,024 columns) and --only checks,
through the feature job, with configs built in code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from deltalake import DeltaTable

from cookie import constants as C
from cookie.config import Config, load_config
from cookie.etl.job import build_features, check_only
from cookie.exceptions import ConfigError
from cookie.storage import delta as tables


def ids_config(d: Path, regions: dict, views: list[dict], sources: dict) -> dict:
    return {
        "name": "ids",
        "output": {"warehouse": str(d / "warehouse")},
        "sources": sources,
        "regions": regions,
        "views": views,
        "base_dir": str(d),
    }


def read(cfg, table):
    return DeltaTable(tables.locate(cfg, table).path).to_pandas().set_index(C.REGION_ID).sort_index()


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    d = tmp_path_factory.mktemp("ids")
    a = np.arange(15, dtype=float).reshape(5, 3)
    b = np.arange(10, dtype=float).reshape(5, 2) / 10
    b[3] = np.nan  # region 3 has no b
    np.save(d / "a.npy", a)
    np.save(d / "b.npy", b)
    return d, a, b


def test_regions_by_id_only(spark, arrays):
    d, a, b = arrays
    raw = ids_config(
        d,
        {"kind": "ids", "source": "a"},
        [{"name": "va", "kind": "vectors", "source": "a"}, {"name": "vb", "kind": "vectors", "source": "b"}],
        {"a": {"kind": "array", "path": "a.npy"}, "b": {"kind": "array", "path": "b.npy"}},
    )
    cfg = Config.model_validate(raw)
    report = build_features(spark, cfg)
    assert {t.table: t.rows for t in report.tables} == {"regions": 5, "view_va": 5, "view_vb": 5}
    regions = read(cfg, "regions")
    assert list(regions.index) == ["0", "1", "2", "3", "4"]
    assert list(regions.columns) == [C.AREA_KM2, C.CENTROID_LON, C.CENTROID_LAT, C.GEOMETRY_WKB]
    assert regions.isna().all().all()  # no geometry, centroid or area: ids only
    va, vb = read(cfg, "view_va"), read(cfg, "view_vb")
    np.testing.assert_array_equal(va[["va_000", "va_001", "va_002"]].to_numpy(), a)
    assert vb["_present"].tolist() == [True, True, True, False, True]
    assert vb.loc["3", ["vb_000", "vb_001"]].tolist() == [0.0, 0.0] and not vb.isna().any().any()
    # the same regions from a count
    raw["regions"] = {"kind": "ids", "count": 5}
    raw["name"] = "ids_count"
    cfg2 = Config.model_validate(raw)
    build_features(spark, cfg2, only=["va"])
    assert list(read(cfg2, "regions").index) == ["0", "1", "2", "3", "4"]


@pytest.mark.parametrize(
    "view, match",
    [
        (
            {"name": "shops", "kind": "points", "source": "pts"},
            r"views\[1\] \(shops\): a points view needs region polygons",
        ),
        (
            {"name": "vb", "kind": "vectors", "source": "b", "context": ["adjacency"]},
            r"views\[1\] \(vb\)\.context: 'adjacency' needs region polygons",
        ),
    ],
)
def test_ids_only_refuses_polygon_views_at_load(arrays, view, match):
    d, _, _ = arrays
    raw = ids_config(
        d,
        {"kind": "ids", "count": 5},
        [{"name": "va", "kind": "vectors", "source": "a"}, view],
        {
            "a": {"kind": "array", "path": "a.npy"},
            "b": {"kind": "array", "path": "b.npy"},
            "pts": {"kind": "vector", "path": "p.csv", "lon_column": "x", "lat_column": "y"},
        },
    )
    p = d / "bad.yaml"
    p.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=match):
        load_config(p)


def test_context_flows_view_is_validated(arrays):
    d, _, _ = arrays
    sources = {"a": {"kind": "array", "path": "a.npy"}, "od": {"kind": "array", "path": "od.npy"}}
    base = [{"name": "va", "kind": "vectors", "source": "a", "context": ["flows"]}]
    for views, match in (
        (base, r"views\[0\] \(va\)\.context: 'flows' needs the OD graph of a flows view: the config has none"),
        (
            [{**base[0], "context_flows_view": "vb"}, {"name": "vb", "kind": "vectors", "source": "a"}],
            r"context_flows_view: 'vb' is not a flows view",
        ),
        (
            base + [{"name": "m1", "kind": "flows", "source": "od"}, {"name": "m2", "kind": "flows", "source": "od"}],
            r"set context_flows_view to one of \['m1', 'm2'\]",
        ),
    ):
        p = d / "ctx.yaml"
        p.write_text(yaml.safe_dump(ids_config(d, {"kind": "ids", "count": 5}, views, sources)))
        with pytest.raises(ConfigError, match=match):
            load_config(p)


def test_flows_context_over_ids_only_regions(spark, arrays):
    d, a, _ = arrays
    od = np.zeros((5, 5))
    od[0, 1], od[1, 2], od[2, 2], od[4, 0] = 3, 1, 7, 2
    np.save(d / "od.npy", od)
    raw = ids_config(
        d,
        {"kind": "ids", "source": "a"},
        [
            {"name": "va", "kind": "vectors", "source": "a", "context": ["flows"]},
            {"name": "mob", "kind": "flows", "source": "od", "flow_method": "rows"},
        ],
        {"a": {"kind": "array", "path": "a.npy"}, "od": {"kind": "array", "path": "od.npy"}},
    )
    raw["name"] = "ids_flows"
    cfg = Config.model_validate(raw)
    build_features(spark, cfg)
    va = read(cfg, "view_va")
    W = od + od.T
    np.fill_diagonal(W, 0)
    deg = W.sum(1, keepdims=True)
    expected = np.where(deg > 0, W @ a / np.where(deg > 0, deg, 1), a)  # region 3 has no trips: itself
    np.testing.assert_allclose(va[[f"ctx_flows__va_{j:03d}" for j in range(3)]].to_numpy(), expected)


def test_wide_vectors_view(spark, tmp_path):
    """1,024 columns over 300 regions with one missing value: one flat projection, no StackOverflowError."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 1024))
    X[7, 1000] = np.nan  # one bad row: counted, zeros, not present
    np.save(tmp_path / "wide.npy", X)
    raw = ids_config(
        tmp_path,
        {"kind": "ids", "count": 300},
        [{"name": "wide", "kind": "vectors", "source": "w"}],
        {"w": {"kind": "array", "path": "wide.npy"}},
    )
    raw["name"] = "wide"
    cfg = Config.model_validate(raw)
    report = build_features(spark, cfg)
    t = next(t for t in report.tables if t.table == "view_wide")
    assert (t.rows, t.features) == (300, 1024) and t.stats["missing_values_rows"] == 1
    df = read(cfg, "view_wide")
    names = [f"wide_{i:03d}" for i in range(1024)]
    assert list(df.columns) == names + ["_present"]
    assert tables.feature_names(spark, tables.locate(cfg, "view_wide")) == names
    order = [str(i) for i in range(300)]
    got = df.loc[order, names].to_numpy()
    ok = np.ones(300, dtype=bool)
    ok[7] = False
    np.testing.assert_array_equal(got[ok], X[ok])
    assert (got[7] == 0).all() and df.loc[order, "_present"].tolist() == ok.tolist()


def test_only_names_must_be_views_or_labels():
    cfg = load_config(Path(__file__).resolve().parents[2] / "conf" / "manhattan180.yaml")
    check_only(cfg, None)
    check_only(cfg, ["poi", "crime"])
    with pytest.raises(
        ConfigError,
        match=r"--only: unknown view/label name\(s\) \['pio'\].*valid names: mobility, poi, "
        r"landuse, crime",
    ):
        build_features(None, cfg, only=["pio"])  # type: ignore[arg-type]  # refused before Spark is touched
    with pytest.raises(ConfigError, match="valid names"):
        check_only(cfg, [])
