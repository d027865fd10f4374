"""Bad input data ends in one clear error (a CookieError subclass whose message names the file, column, key or
region; never a raw Spark/Java traceback) and writes nothing, or is read correctly with what was dropped counted
in the run summary.

Each case writes a tiny input set in code and runs the feature job the way users do, through
:func:`cookie.cli.main` (the code of ``python -m cookie features``), or through :func:`build_features` where the
run summary is what the test checks.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from deltalake import DeltaTable

from cookie import constants as C
from cookie.config import load_config
from cookie.etl.job import RunReport, build_features
from cookie.exceptions import ConfigError, CookieError, InputError

X0, Y0, D = 10.0, 50.0, 0.01  # four 0.01-degree squares: a b / c d
CELLS = {"a": (X0, Y0 + D), "b": (X0 + D, Y0 + D), "c": (X0, Y0), "d": (X0 + D, Y0)}
RAW_ERRORS = ("Traceback", "py4j", "org.apache", "AnalysisException", "SQLSTATE", "CAST_INVALID_INPUT")


def square(x: float, y: float, d: float = D) -> list:
    return [[[x, y], [x + d, y], [x + d, y + d], [x, y + d], [x, y]]]


def polygon(rid: str, coords: list) -> dict:
    return {"type": "Feature", "properties": {"rid": rid}, "geometry": {"type": "Polygon", "coordinates": coords}}


def write_geojson(path: Path, features: list[dict]) -> str:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path.name


def inside(rid: str, fx: float = 0.5, fy: float = 0.5) -> tuple[float, float]:
    x, y = CELLS[rid]
    return x + fx * D, y + fy * D


def base(d: Path, views: list[dict] | None = None, sources: dict | None = None, regions: str | None = None) -> dict:
    """A working config over the four squares with a POI view, changed by each case."""
    if regions is None:
        regions = write_geojson(d / "regions.geojson", [polygon(k, square(*xy)) for k, xy in CELLS.items()])
    pois = [(*inside("a"), "food"), (*inside("a", 0.2), "shop"), (*inside("d"), "food")]
    pd.DataFrame(pois, columns=["lon", "lat", "kind"]).to_csv(d / "pois.csv", index=False)
    return {
        "name": "bad",
        "spark": {"shuffle_partitions": 2},
        "output": {"warehouse": str(d / "warehouse")},
        "sources": {
            "pois": {"kind": "vector", "path": "pois.csv", "lon_column": "lon", "lat_column": "lat"},
            **(sources or {}),
        },
        "regions": {"kind": "file", "path": regions, "id_column": "rid"},
        "views": views or [{"name": "poi", "kind": "points", "source": "pois", "category_column": "kind"}],
    }


def write_config(d: Path, raw: dict) -> Path:
    p = d / "bad.yaml"
    p.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return p


def run_cli(d: Path, raw: dict, *extra: str) -> tuple[int, CookieError | None]:
    """``python -m cookie features --config <yaml>`` in this process: the exit code and the error it caught."""
    from cookie.cli import main

    caught: list[CookieError] = []

    def keep(exc: CookieError) -> int:
        caught.append(exc)
        return exc.exit_code

    cfg = write_config(d, raw)
    code = main(["features", "--config", str(cfg), "--set", f"base_dir={d}", *extra], handler=keep)
    return code, (caught[0] if caught else None)


def build(spark, d: Path, raw: dict) -> RunReport:
    return build_features(spark, load_config(write_config(d, raw), base_dir=str(d)))


def table(d: Path, name: str) -> pd.DataFrame:
    return DeltaTable(str(d / "warehouse" / "bad" / name)).to_pandas().set_index(C.REGION_ID).sort_index()


def stats(report: RunReport, name: str) -> dict[str, int]:
    return next(t.stats for t in report.tables if t.table == name)


def assert_all_finite(d: Path, name: str) -> pd.DataFrame:
    df = table(d, name)
    values = df.drop(columns=[C.PRESENT]).to_numpy(dtype=float)
    assert np.isfinite(values).all(), name
    return df


# ------------------------------------------------------------------ the catalogue of refused inputs


def zero_area_region(d: Path) -> dict:
    feats = [polygon(k, square(*xy)) for k, xy in CELLS.items()]
    x, y = X0 + 3 * D, Y0
    feats.append(polygon("flat", [[[x, y], [x + D, y], [x + 2 * D, y], [x, y]]]))  # a ring on one line
    return base(d, regions=write_geojson(d / "flat.geojson", feats))


def empty_regions(d: Path) -> dict:
    return base(d, regions=write_geojson(d / "none.geojson", []))


def truncated_regions(d: Path) -> dict:
    text = json.dumps({"type": "FeatureCollection", "features": [polygon("a", square(*CELLS["a"]))]})
    (d / "cut.geojson").write_text(text[: len(text) // 2])
    return base(d, regions="cut.geojson")


def truncated_points(d: Path) -> dict:
    text = json.dumps(
        {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"kind": "food"}, "geometry": {}}]}
    )
    (d / "cutpois.geojson").write_text(text[:40])
    return base(d, sources={"pois": {"kind": "vector", "path": "cutpois.geojson"}})


def text_in_numeric_table(d: Path) -> dict:
    pd.DataFrame({"rid": list("abcd"), "pop": ["1.5", "n/a", "3", "4"]}).to_csv(d / "labels.csv", index=False)
    views = [{"name": "pop", "kind": "vectors", "source": "tab"}]
    return base(d, views, {"tab": {"kind": "table", "path": "labels.csv", "id_column": "rid"}})


def text_in_point_latitude(d: Path) -> dict:
    raw = base(d)
    pd.DataFrame({"lon": [inside("a")[0]] * 2, "lat": [str(inside("a")[1]), "n/a"], "kind": ["x", "y"]}).to_csv(
        d / "pois.csv", index=False
    )
    return raw


def glob_characters_in_geojson_name(d: Path) -> dict:
    return base(d, regions=write_geojson(d / "regions[1].geojson", [polygon("a", square(*CELLS["a"]))]))


def antimeridian_region(d: Path) -> dict:
    feats = [polygon(k, square(*xy)) for k, xy in CELLS.items()]
    feats.append(polygon("fiji", [[[179.0, -17.0], [-179.0, -17.0], [-179.0, -16.0], [179.0, -16.0], [179.0, -17.0]]]))
    return base(d, regions=write_geojson(d / "world.geojson", feats))


def only_points_in_polygon_layer(d: Path) -> dict:
    feats = [
        {"type": "Feature", "properties": {"b": "house"}, "geometry": {"type": "Point", "coordinates": inside(k)}}
        for k in ("a", "b")
    ]
    write_geojson(d / "buildings.geojson", feats)
    views = [{"name": "buildings", "kind": "polygons", "source": "blds", "category_column": "b"}]
    return base(d, views, {"blds": {"kind": "vector", "path": "buildings.geojson"}})


def empty_points_file(d: Path) -> dict:
    """A GeoParquet file with no rows: the view is empty, and the CRS check must not read Sedona's envelope of
    nothing (-999999999 degrees) as projected coordinates."""
    import geopandas as gpd

    gpd.GeoDataFrame({"kind": pd.Series([], dtype=str)}, geometry=[], crs="EPSG:4326").to_parquet(d / "none.parquet")
    views = [{"name": "poi", "kind": "points", "source": "nopois", "category_column": "kind"}]
    return base(d, views, {"nopois": {"kind": "vector", "path": "none.parquet"}})


def trips(d: Path, counts: list) -> dict:
    pd.DataFrame({"o": ["a", "b", "c"], "d": ["b", "a", "d"], "n": counts}).to_csv(d / "trips.csv", index=False)
    src = {"kind": "trips", "path": "trips.csv", "origin_id": "o", "destination_id": "d", "count_column": "n"}
    return base(d, [{"name": "mobility", "kind": "flows", "source": "trips", "flow_method": "rows"}], {"trips": src})


def od_matrix(d: Path, value: float) -> dict:
    arr = np.array([[0, 5, 1, 0], [2, 0, 0, 0], [0, 0, 0, 3], [1, 0, 0, 0]], dtype=float)
    arr[1, 2] = value
    np.savez(d / "od.npz", od=arr, ids=np.array(list("abcd")))
    src = {"kind": "array", "path": "od.npz", "key": "od", "row_ids": "ids"}
    return base(d, [{"name": "mobility", "kind": "flows", "source": "od", "flow_method": "rows"}], {"od": src})


def label_copy_of_view(d: Path) -> dict:
    pd.DataFrame({"rid": list("abcd"), "pop": [1.5, 2.0, 3.0, 4.0]}).to_csv(d / "table.csv", index=False)
    raw = base(d, sources={"tab": {"kind": "table", "path": "table.csv", "id_column": "rid"}})
    raw["views"].append({"name": "pop", "kind": "vectors", "source": "tab"})
    raw["labels"] = [{"name": "density", "kind": "vectors", "source": "tab", "columns": ["pop"]}]
    return raw


REFUSED: list[tuple[str, Callable[[Path], dict], type[CookieError], str]] = [
    ("zero-area region", zero_area_region, InputError, r"flat\.geojson: .*zero area.*\['flat'\]"),
    ("empty FeatureCollection", empty_regions, InputError, r"none\.geojson: the FeatureCollection has no features"),
    ("truncated regions GeoJSON", truncated_regions, InputError, r"cut\.geojson: not valid GeoJSON"),
    ("truncated points GeoJSON", truncated_points, InputError, r"cutpois\.geojson: not valid GeoJSON"),
    ("n/a in a table column", text_in_numeric_table, InputError, r"labels\.csv: column 'pop' .*1 value.*'n/a'"),
    ("n/a in a latitude column", text_in_point_latitude, InputError, r"pois\.csv: column 'lat' .*'n/a'"),
    (
        "glob characters in a GeoJSON name",
        glob_characters_in_geojson_name,
        InputError,
        r"regions\[1\]\.geojson: .*rename",
    ),
    ("region across the antimeridian", antimeridian_region, InputError, r"world\.geojson: .*180 degrees.*\['fiji'\]"),
    ("points in a polygons layer", only_points_in_polygon_layer, InputError, r"view buildings: empty.*dropped_point=2"),
    ("points file with no rows", empty_points_file, InputError, r"view poi: empty: no region has any data"),
    ("NaN trip count", lambda d: trips(d, [5, "NaN", 1]), InputError, r"trips\.csv: column 'n': 1 row.*'o': 'b'"),
    ("negative trip count", lambda d: trips(d, [5, -2, 1]), InputError, r"trips\.csv: column 'n': 1 row.*-2"),
    ("infinite trip count", lambda d: trips(d, [5, 1, "Infinity"]), InputError, r"trips\.csv: column 'n': .*inf"),
    ("text trip count", lambda d: trips(d, [5, 1, "n/a"]), InputError, r"trips\.csv: column 'n' must be numeric"),
    ("infinite OD cell", lambda d: od_matrix(d, np.inf), InputError, r"od\.npz .*row 'b' column 'c' = inf"),
    ("negative OD cell", lambda d: od_matrix(d, -1.0), InputError, r"od\.npz .*infinite or negative"),
    ("label that copies a view", label_copy_of_view, InputError, r"label density: column 'pop' equals view pop's"),
]


@pytest.mark.parametrize(("case", "make", "error", "match"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_with_a_clear_error(spark, tmp_path, case, make, error, match):
    code, exc = run_cli(tmp_path, make(tmp_path))
    assert exc is not None, f"{case}: the job succeeded"
    assert type(exc) is error and code == error.exit_code, (case, type(exc), exc)
    assert re.search(match, str(exc)), str(exc)
    assert not any(s in str(exc) for s in RAW_ERRORS), str(exc)
    assert not (tmp_path / "warehouse").exists()  # nothing was written


def test_unknown_only_name_lists_the_valid_tables(tmp_path, capsys):
    """``--only view_pio`` (a table name with a typo, not a view name) stops before Spark starts."""
    from cookie.cli import main

    code = main(["features", "--config", str(write_config(tmp_path, base(tmp_path))), "--only", "view_pio"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == ConfigError.exit_code == 2
    assert len(err) == 1 and err[0].startswith("error: --only: unknown view/label name(s) ['view_pio']"), err
    assert "valid names: poi" in err[0]
    assert not (tmp_path / "warehouse").exists()


def test_error_is_one_line_on_stderr(spark, tmp_path, capsys):
    from cookie.cli import main

    raw = text_in_numeric_table(tmp_path)
    code = main(["features", "--config", str(write_config(tmp_path, raw)), "--set", f"base_dir={tmp_path}"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 1 and len(err) == 1 and "labels.csv: column 'pop'" in err[0], err


# ------------------------------------------------------------------ inputs that are read, with drops counted


def test_categories_differing_in_case_or_with_odd_characters(spark, tmp_path):
    """``Café``/``café`` become one category (the more frequent spelling; the respelled rows counted); a
    backtick, a dot or a space in a category is only a column name to sanitise."""
    raw = base(tmp_path)
    rows = [("a", "Café"), ("a", "Café"), ("b", "café"), ("b", "a`b"), ("c", "x.y"), ("d", "with space")]
    pd.DataFrame([(*inside(r), k) for r, k in rows], columns=["lon", "lat", "kind"]).to_csv(
        tmp_path / "pois.csv", index=False
    )
    report = build(spark, tmp_path, raw)
    df = assert_all_finite(tmp_path, "view_poi")
    assert df["count_caf"].tolist() == [2, 1, 0, 0]
    assert df["count_a_b"].tolist() == [0, 1, 0, 0] and df["count_x_y"].tolist() == [0, 0, 1, 0]
    assert df["count_with_space"].tolist() == [0, 0, 0, 1]
    assert df["count_total"].tolist() == [2, 2, 1, 1]
    assert stats(report, "view_poi")["category_case_merged"] == 1


def test_glob_characters_in_a_csv_name_are_read(spark, tmp_path):
    raw = base(tmp_path)
    (tmp_path / "pois.csv").rename(tmp_path / "pois[2024].csv")
    raw["sources"]["pois"]["path"] = "pois[2024].csv"
    report = build(spark, tmp_path, raw)
    assert table(tmp_path, "view_poi")["count_total"].tolist() == [2, 0, 0, 1]
    assert report.inputs["pois"].endswith("pois[2024].csv")


def test_points_and_lines_in_a_polygon_layer_are_dropped_and_counted(spark, tmp_path):
    feats = [
        {
            "type": "Feature",
            "properties": {"b": "house"},
            "geometry": {"type": "Polygon", "coordinates": square(*inside("a", 0.1, 0.1), 0.5 * D)},
        },
        {"type": "Feature", "properties": {"b": "house"}, "geometry": {"type": "Point", "coordinates": inside("b")}},
        {
            "type": "Feature",
            "properties": {"b": "wall"},
            "geometry": {"type": "LineString", "coordinates": [inside("c", 0.1), inside("c", 0.9)]},
        },
    ]
    write_geojson(tmp_path / "buildings.geojson", feats)
    views = [{"name": "buildings", "kind": "polygons", "source": "blds", "category_column": "b"}]
    report = build(spark, tmp_path, base(tmp_path, views, {"blds": {"kind": "vector", "path": "buildings.geojson"}}))
    df = assert_all_finite(tmp_path, "view_buildings")
    assert df["count"].tolist() == [1, 0, 0, 0]
    assert df["_present"].tolist() == [True, False, False, False]
    s = stats(report, "view_buildings")
    assert (s["input_rows"], s["dropped_point"], s["dropped_linestring"]) == (3, 1, 1)
    assert "dropped_point=1" in report.as_text()


def test_nan_and_infinity_in_a_label_table_are_masked_and_counted(spark, tmp_path):
    (tmp_path / "labels.csv").write_text("rid,pop,jobs\na,1.5,2\nb,Infinity,3\nc,NaN,\nd,-Infinity,5\n")
    views = [{"name": "poi", "kind": "points", "source": "pois", "category_column": "kind"}]
    raw = base(tmp_path, views, {"tab": {"kind": "table", "path": "labels.csv", "id_column": "rid"}})
    raw["labels"] = [{"name": "pop", "kind": "vectors", "source": "tab"}]
    report = build(spark, tmp_path, raw)
    df = assert_all_finite(tmp_path, "label_pop")
    assert df["pop"].tolist() == [1.5, 0, 0, 0] and df["jobs"].tolist() == [2, 0, 0, 0]
    assert df["_present"].tolist() == [True, False, False, False]
    s = stats(report, "label_pop")
    assert (s["infinite_values_rows"], s["missing_values_rows"]) == (2, 1)
    assert "infinite_values_rows=2" in report.as_text()


def test_nan_cells_of_an_od_matrix_are_no_flow_and_counted(spark, tmp_path):
    report = build(spark, tmp_path, od_matrix(tmp_path, math.nan))
    df = assert_all_finite(tmp_path, "view_mobility")
    assert df["outflow"].tolist() == [6, 2, 3, 1]
    assert stats(report, "view_mobility")["nan_cells"] == 1


def test_nothing_non_finite_reaches_a_table(spark):
    """The last check before any write: a NaN or infinity left in a feature column stops the job, naming the
    table, the column and a region."""
    from cookie.etl.features.common import ViewResult
    from cookie.etl.job import _check_finite

    df = spark.createDataFrame(
        [("a", 1.0, 2.0, True), ("b", float("nan"), 1.0, True), ("c", 0.0, float("inf"), False)],
        f"{C.REGION_ID} string, x double, y double, {C.PRESENT} boolean",
    )
    with pytest.raises(InputError, match=r"view_v: 2 region\(s\) .*region '[bc]'.*\['x', 'y'\] \(source s: f\.csv\)"):
        _check_finite("view_v", ViewResult(df, ["x", "y"]), "s: f.csv")
    _check_finite("view_v", ViewResult(df.where("region_id = 'a'"), ["x", "y"]), "s: f.csv")
