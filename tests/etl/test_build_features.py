"""The feature job end to end on tiny synthetic inputs written in code: every view kind, idempotent
reruns, Delta read-back with Spark and with the deltalake package, and every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from deltalake import DeltaTable

from cookie import constants as C
from cookie.config import ConfigError, load_config
from cookie.etl.job import build_features
from cookie.etl.sources.vector import InputError
from cookie.storage import delta as tables

X0, Y0, D = 10.0, 50.0, 0.01  # four 0.01-degree squares: a b / c d


def square(x, y, d=D):
    return [[[x, y], [x + d, y], [x + d, y + d], [x, y + d], [x, y]]]


def feature_collection(features):
    return {"type": "FeatureCollection", "features": features}


def write_json(path: Path, obj) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def region_features():
    cells = {"a": (X0, Y0 + D), "b": (X0 + D, Y0 + D), "c": (X0, Y0), "d": (X0 + D, Y0)}
    return [
        {
            "type": "Feature",
            "properties": {"rid": k, "name": k.upper()},
            "geometry": {"type": "Polygon", "coordinates": square(*xy)},
        }
        for k, xy in cells.items()
    ]


def write_raster(spark, path: Path) -> None:
    """A 4x4 one-band GeoTIFF over the four regions (0.005 degree cells), value = column index."""
    values = ",".join(str(float(c)) for r in range(4) for c in range(4))
    row = spark.sql(
        f"SELECT RS_AsGeoTiff(RS_AddBandFromArray(RS_SetSRID(RS_MakeEmptyRaster(1, 4, 4, {X0}, {Y0 + 2 * D}, 0.005), 4326), "
        f"array({values}), 1)) AS tif"
    ).first()
    path.write_bytes(bytes(row["tif"]))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, spark):
    d = tmp_path_factory.mktemp("inputs")
    write_json(d / "regions.geojson", feature_collection(region_features()))
    # POIs: a: 3 food + 1 shop, b: 1 shop, c: none, d: 2 food; 2 points outside every region
    pois = [
        (0.2, 1.2, "food"),
        (0.3, 1.3, "food"),
        (0.4, 1.4, "food"),
        (0.5, 1.5, "shop"),
        (1.5, 1.5, "shop"),
        (1.2, 0.2, "food"),
        (1.3, 0.3, "food"),
        (5, 5, "food"),
        (-3, 0, "shop"),
    ]
    pd.DataFrame(
        {
            "lon": [X0 + x * D for x, _, _ in pois],
            "lat": [Y0 + y * D for _, y, _ in pois],
            "kind": [k for _, _, k in pois],
        }
    ).to_csv(d / "pois.csv", index=False)
    roads = [
        {
            "type": "Feature",
            "properties": {"cls": "primary"},
            "geometry": {"type": "LineString", "coordinates": [[X0 - D / 2, Y0 + D / 2], [X0 + 2.5 * D, Y0 + D / 2]]},
        },
        {
            "type": "Feature",
            "properties": {"cls": "footway"},
            "geometry": {"type": "LineString", "coordinates": [[X0 + D / 2, Y0 + 0.1 * D], [X0 + D / 2, Y0 + 1.9 * D]]},
        },
    ]
    write_json(d / "roads.geojson", feature_collection(roads))
    blds = [
        {
            "type": "Feature",
            "properties": {"b": "house"},
            "geometry": {"type": "Polygon", "coordinates": square(X0 + 0.1 * D, Y0 + 1.1 * D, 0.5 * D)},
        },
        {
            "type": "Feature",
            "properties": {"b": "office"},
            "geometry": {"type": "Polygon", "coordinates": square(X0 + 0.8 * D, Y0 + 0.2 * D, 0.4 * D)},
        },
    ]
    write_json(d / "buildings.geojson", feature_collection(blds))
    # parks: two in b, one in d; a label source apart from every view
    parks = [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": square(x, y, 0.2 * D)}}
        for x, y in [(X0 + 1.1 * D, Y0 + 1.1 * D), (X0 + 1.5 * D, Y0 + 1.5 * D), (X0 + 1.4 * D, Y0 + 0.4 * D)]
    ]
    write_json(d / "parks.geojson", feature_collection(parks))
    pd.DataFrame(
        {
            "olon": [X0 + 0.5 * D, X0 + 1.5 * D, X0 + 0.5 * D],
            "olat": [Y0 + 1.5 * D] * 3,
            "dlon": [X0 + 1.5 * D, X0 + 0.5 * D, X0 + 0.5 * D],
            "dlat": [Y0 + 0.5 * D, Y0 + 1.5 * D, Y0 + 0.5 * D],
            "n": [10, 4, 1],
        }
    ).to_csv(d / "trips.csv", index=False)
    emb = np.arange(12, dtype=float).reshape(4, 3)
    emb[2] = np.nan
    np.save(d / "emb.npy", emb)
    write_raster(spark, d / "elev.tif")
    return d


def base_config(d: Path) -> dict:
    return {
        "name": "tiny",
        "output": {"warehouse": str(d / "warehouse")},
        "sources": {
            "pois": {"kind": "vector", "path": "pois.csv", "lon_column": "lon", "lat_column": "lat"},
            "roads": {"kind": "vector", "path": "roads.geojson"},
            "buildings": {"kind": "vector", "path": "buildings.geojson"},
            "trips": {
                "kind": "trips",
                "path": "trips.csv",
                "origin_lon": "olon",
                "origin_lat": "olat",
                "destination_lon": "dlon",
                "destination_lat": "dlat",
                "count_column": "n",
            },
            "emb": {"kind": "array", "path": "emb.npy"},
            "elev": {"kind": "raster", "path": "elev.tif"},
        },
        "regions": {"kind": "file", "path": "regions.geojson", "id_column": "rid"},
        "views": [
            {"name": "poi", "kind": "points", "source": "pois", "category_column": "kind"},
            {"name": "roads", "kind": "lines", "source": "roads", "category_column": "cls"},
            {"name": "buildings", "kind": "polygons", "source": "buildings", "category_column": "b"},
            {"name": "mobility", "kind": "flows", "source": "trips", "flow_method": "svd", "flow_dim": 2},
            {"name": "elevation", "kind": "raster", "source": "elev", "statistics": ["mean", "min", "max", "count"]},
        ],
        "labels": [],
    }


def write_config(d: Path, cfg: dict, name: str = "tiny.yaml") -> Path:
    p = d / name
    p.write_text(yaml.safe_dump(cfg))
    return p


def frame(spark, cfg, table):
    return tables.read_table(spark, tables.locate(cfg, table)).toPandas().set_index(C.REGION_ID).sort_index()


@pytest.fixture(scope="module")
def built(spark, inputs):
    raw = base_config(inputs)
    raw["sources"]["emb_by_id"] = {"kind": "array", "path": "emb.npy"}
    cfg = load_config(write_config(inputs, raw), base_dir=str(inputs))
    # vectors keyed 0..3 do not match region ids a..d: use a table source instead
    pd.DataFrame({"rid": list("abcd"), "e0": [0.0, 3, np.nan, 9], "e1": [1.0, 4, np.nan, 10]}).to_csv(
        inputs / "emb.csv", index=False
    )
    raw["sources"]["emb_tab"] = {"kind": "table", "path": "emb.csv", "id_column": "rid"}
    raw["views"].append({"name": "image", "kind": "vectors", "source": "emb_tab"})
    raw["views"][0]["context"] = ["adjacency", "flows"]  # poi: neighbours' POIs over touching squares and trips
    raw["sources"]["parks"] = {"kind": "vector", "path": "parks.geojson"}
    raw["labels"].append({"name": "green", "kind": "polygons", "source": "parks"})
    cfg = load_config(write_config(inputs, raw), base_dir=str(inputs))
    report = build_features(spark, cfg)
    return cfg, report


def test_every_region_has_a_row_in_every_table(spark, built):
    cfg, report = built
    names = {t.table for t in report.tables}
    assert names == {
        "regions",
        "view_poi",
        "view_roads",
        "view_buildings",
        "view_mobility",
        "view_elevation",
        "view_image",
        "label_green",
    }
    for t in names - {"regions"}:
        df = frame(spark, cfg, t)
        assert list(df.index) == ["a", "b", "c", "d"], t
        assert not df.isna().any().any(), t
        assert tables.feature_names(spark, tables.locate(cfg, t)) == [c for c in df.columns if c != "_present"]


def test_points(spark, built):
    cfg, report = built
    df = frame(spark, cfg, "view_poi")
    assert df["count_food"].tolist() == [3, 0, 0, 2]
    assert df["count_shop"].tolist() == [1, 1, 0, 0]
    assert df["count_total"].tolist() == [4, 1, 0, 2]
    assert df["_present"].tolist() == [True, True, False, True]
    regions = frame(spark, cfg, "regions")
    np.testing.assert_allclose(df["density_per_km2"], df["count_total"] / regions[C.AREA_KM2])
    stats = next(t.stats for t in report.tables if t.table == "view_poi")
    assert stats["outside_regions"] == 2


def test_lines_clipped_lengths(spark, built):
    cfg, _ = built
    df = frame(spark, cfg, "view_roads")
    from pyproj import Geod

    g = Geod(ellps="WGS84")
    one_cell = g.line_length([X0, X0 + D], [Y0 + D / 2] * 2) / 1000
    np.testing.assert_allclose(df["km_primary"].tolist(), [0, 0, one_cell, one_cell], rtol=1e-9, atol=1e-12)
    foot_c = g.line_length([X0 + D / 2] * 2, [Y0 + 0.1 * D, Y0 + D]) / 1000
    foot_a = g.line_length([X0 + D / 2] * 2, [Y0 + D, Y0 + 1.9 * D]) / 1000
    np.testing.assert_allclose(df["km_footway"].tolist(), [foot_a, 0, foot_c, 0], rtol=1e-6)


def test_polygons_shares_and_counts(spark, built):
    cfg, _ = built
    df = frame(spark, cfg, "view_buildings")
    # the office straddles c/d; its point-on-surface lies on the shared edge: counted once, in the smaller id
    assert df["count"].tolist() == [1, 0, 1, 0]
    assert 0.24 < df.loc["a", "share_house"] < 0.26  # 0.5 x 0.5 of the cell
    # office: 0.4 x 0.4 square from x=0.8 to 1.2: half in c, half in d
    np.testing.assert_allclose(df.loc["c", "share_office"], df.loc["d", "share_office"], rtol=1e-3)
    assert 0.07 < df.loc["c", "share_office"] < 0.09


def test_flows(spark, built):
    cfg, _ = built
    df = frame(spark, cfg, "view_mobility")
    assert df["outflow"].tolist() == [11, 4, 0, 0]
    assert df["inflow"].tolist() == [4, 0, 1, 10]
    assert df["self_flow"].tolist() == [0, 0, 0, 0]  # a->c is not a self-loop
    assert [c for c in df.columns if c.startswith(("out_svd", "in_svd"))] == [
        "out_svd_00",
        "out_svd_01",
        "in_svd_00",
        "in_svd_01",
    ]


def test_raster_zonal_stats(spark, built):
    cfg, _ = built
    df = frame(spark, cfg, "view_elevation")
    # columns 0-1 over a/c (values 0,1), columns 2-3 over b/d (values 2,3)
    np.testing.assert_allclose(df["band1_mean"].tolist(), [0.5, 2.5, 0.5, 2.5])
    assert df["band1_min"].tolist() == [0, 2, 0, 2] and df["band1_max"].tolist() == [1, 3, 1, 3]
    assert df["band1_count"].tolist() == [4, 4, 4, 4]


def test_vectors_missing_rows_are_zero_and_masked(spark, built):
    cfg, report = built
    df = frame(spark, cfg, "view_image")
    assert df["e0"].tolist() == [0, 3, 0, 9] and df["_present"].tolist() == [True, True, False, True]
    assert next(t.stats for t in report.tables if t.table == "view_image")["missing_values_rows"] == 1


def test_context_columns_are_neighbour_means(spark, built):
    """poi has context [adjacency, flows]: its own features, then their mean over touching regions (all four
    squares touch), then over the trip graph (a->d 10, b->a 4, a->c 1, plus reverse), present neighbours only."""
    cfg, report = built
    df = frame(spark, cfg, "view_poi")
    own = ["count_food", "count_shop", "count_other", "count_total", "density_per_km2"]
    own = [c for c in own if c in df.columns]
    names = tables.feature_names(spark, tables.locate(cfg, "view_poi"))
    assert names == own + [f"ctx_adj__{c}" for c in own] + [f"ctx_flows__{c}" for c in own]
    X = df[own].to_numpy()
    present = df["_present"].to_numpy()
    adj = 1.0 - np.eye(4)
    od = np.zeros((4, 4))
    od[0, 3], od[1, 0], od[0, 2] = 10, 4, 1
    for W, prefix in ((adj, "ctx_adj__"), (od + od.T, "ctx_flows__")):
        W = W * present[None, :]
        deg = W.sum(1, keepdims=True)
        expected = np.where(deg > 0, W @ X / np.where(deg > 0, deg, 1), X)
        np.testing.assert_allclose(df[[prefix + c for c in own]].to_numpy(), expected, rtol=1e-12)
    # c has no trips to a present region other than a: its flow context is a's features
    np.testing.assert_allclose(df.loc["c", [f"ctx_flows__{c}" for c in own]].to_numpy(float), X[0])
    poi = next(t for t in report.tables if t.table == "view_poi")
    assert poi.features == 3 * len(own) and poi.stats["context_adjacency_edges"] == 12
    assert poi.stats["context_flows_edges"] == 6
    runs = tables.read_table(spark, tables.locate(cfg, C.RUNS_TABLE)).toPandas().set_index("run_id")
    assert json.loads(runs.loc[report.run_id, "tables"])["view_poi"]["features"] == 3 * len(own)


def test_rerun_is_idempotent_and_logged(spark, built):
    """The rerun builds one table at a time (``built`` built them concurrently): the same contents."""
    cfg, report = built
    assert cfg.spark.parallel_tables > 1
    before = {t.table: frame(spark, cfg, t.table) for t in report.tables if t.table != "regions"}
    one_by_one = cfg.model_copy(update={"spark": cfg.spark.model_copy(update={"parallel_tables": 1})})
    again = build_features(spark, one_by_one)
    assert [t.table for t in again.tables] == [t.table for t in report.tables]
    for t in again.tables:
        if t.table == "regions":
            continue
        pd.testing.assert_frame_equal(frame(spark, cfg, t.table), before[t.table])
        assert t.version > next(x.version for x in report.tables if x.table == t.table)
    runs = tables.read_table(spark, tables.locate(cfg, C.RUNS_TABLE)).toPandas()
    assert {report.run_id, again.run_id} <= set(runs["run_id"])
    assert json.loads(runs.set_index("run_id").loc[again.run_id, "tables"])["view_poi"]["rows"] == 4


def test_tables_read_back_with_deltalake(spark, built):
    cfg, _ = built
    path = tables.locate(cfg, "view_poi").path
    dt = DeltaTable(path)
    via_rs = dt.to_pandas().set_index(C.REGION_ID).sort_index()
    pd.testing.assert_frame_equal(via_rs, frame(spark, cfg, "view_poi"), check_dtype=False)
    regions = DeltaTable(tables.locate(cfg, "regions").path).to_pandas()
    import shapely

    geoms = shapely.from_wkb(regions[C.GEOMETRY_WKB].map(bytes))
    assert all(g.geom_type == "Polygon" for g in geoms)


# ------------------------------------------------------------------ bad input


def _version(spark, cfg, table="view_poi"):
    return tables.table_version(spark, tables.locate(cfg, table))


def _expect_error(spark, inputs, built, mutate, match, error=InputError):
    cfg0, _ = built
    before = _version(spark, cfg0)
    raw = base_config(inputs)
    mutate(raw, inputs)
    cfg = load_config(write_config(inputs, raw, "bad.yaml"), base_dir=str(inputs))
    with pytest.raises(error, match=match):
        build_features(spark, cfg)
    assert _version(spark, cfg0) == before  # nothing was written


def test_missing_file(spark, inputs, built):
    def m(raw, d):
        raw["sources"]["pois"]["path"] = "nowhere.csv"

    _expect_error(spark, inputs, built, m, r"nowhere\.csv")


def test_misnamed_column(spark, inputs, built):
    def m(raw, d):
        raw["views"][0]["category_column"] = "kindd"

    _expect_error(spark, inputs, built, m, r"category column 'kindd' not found")


def test_missing_lon_column(spark, inputs, built):
    def m(raw, d):
        raw["sources"]["pois"]["lon_column"] = "x"

    _expect_error(spark, inputs, built, m, r"pois\.csv: column 'x' not found")


def test_duplicate_region_ids(spark, inputs, built):
    def m(raw, d):
        feats = region_features()
        feats[1]["properties"]["rid"] = "a"
        write_json(d / "dup.geojson", feature_collection(feats))
        raw["regions"]["path"] = "dup.geojson"

    _expect_error(spark, inputs, built, m, r"duplicate region ids in column 'rid': \['a'\]")


def test_missing_id_column(spark, inputs, built):
    def m(raw, d):
        raw["regions"]["id_column"] = "region"

    _expect_error(spark, inputs, built, m, r"regions\.geojson: id column 'region' not found")


def test_unknown_crs(spark, inputs, built):
    def m(raw, d):
        raw["regions"]["crs"] = "EPSG:999999"

    _expect_error(spark, inputs, built, m, r"unknown CRS 'EPSG:999999'")


def test_projected_coordinates_without_crs(spark, inputs, built):
    def m(raw, d):
        feats = region_features()
        for f in feats:
            f["geometry"]["coordinates"] = [[[x * 1e5, y * 1e5] for x, y in f["geometry"]["coordinates"][0]]]
        write_json(d / "proj.geojson", feature_collection(feats))
        raw["regions"]["path"] = "proj.geojson"

    _expect_error(spark, inputs, built, m, r"proj\.geojson: .*not lon/lat.*set 'crs'")


def test_empty_view(spark, inputs, built):
    def m(raw, d):
        pd.DataFrame({"lon": [0.0], "lat": [0.0], "kind": ["food"]}).to_csv(d / "far.csv", index=False)
        raw["sources"]["pois"]["path"] = "far.csv"

    _expect_error(spark, inputs, built, m, r"view poi: empty")


def test_invalid_and_empty_geometries_are_repaired_or_rejected_and_counted(spark, inputs):
    import geopandas as gpd
    import shapely

    from cookie.config import FileRegions
    from cookie.etl.regions import regions_from_file

    feats = region_features()
    geoms = [shapely.geometry.shape(f["geometry"]) for f in feats]
    ids = [f["properties"]["rid"] for f in feats]
    bowtie = shapely.Polygon([(X0 + 3 * D, Y0), (X0 + 4 * D, Y0 + D), (X0 + 4 * D, Y0), (X0 + 3 * D, Y0 + D)])
    assert not bowtie.is_valid
    gdf = gpd.GeoDataFrame({"rid": ids + ["bow", "void"]}, geometry=geoms + [bowtie, shapely.Polygon()], crs=4326)
    gdf.to_parquet(inputs / "messy.parquet")
    rep = regions_from_file(spark, FileRegions(kind="file", path="x", id_column="rid"), str(inputs / "messy.parquet"))
    assert rep.stats == {"input_rows": 6, "empty_rejected": 1, "invalid": 1, "invalid_repaired": 1}
    got = rep.df.toPandas().set_index(C.REGION_ID)
    assert sorted(got.index) == ["a", "b", "bow", "c", "d"]
    assert got.loc["bow", C.AREA_KM2] > 0
    rej = regions_from_file(
        spark, FileRegions(kind="file", path="x", id_column="rid", invalid="reject"), str(inputs / "messy.parquet")
    )
    assert rej.stats["invalid_rejected"] == 1 and rej.df.count() == 4


def test_unreadable_geojson_names_the_file(spark, inputs):
    from cookie.config import FileRegions
    from cookie.etl.regions import regions_from_file

    feats = region_features()
    feats.append({"type": "Feature", "properties": {"rid": "void"}, "geometry": None})
    write_json(inputs / "nullgeom.geojson", feature_collection(feats))
    with pytest.raises(InputError, match=r"nullgeom\.geojson: could not be read"):
        regions_from_file(spark, FileRegions(kind="file", path="x", id_column="rid"), str(inputs / "nullgeom.geojson"))


def test_invalid_config_names_the_key(inputs):
    raw = base_config(inputs)
    raw["views"][0]["kindd"] = "x"
    with pytest.raises(ConfigError, match=r"views\.0\.kindd"):
        load_config(write_config(inputs, raw, "badkey.yaml"))
    raw = base_config(inputs)
    raw["views"][0]["source"] = "nope"
    with pytest.raises(ConfigError, match=r"views\[0\] \(poi\)\.source: unknown source 'nope'"):
        load_config(write_config(inputs, raw, "badsrc.yaml"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(inputs / "missing.yaml")
