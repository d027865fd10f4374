"""PNG maps: written to tmp_path, checked to exist and to be non-trivial images."""

from __future__ import annotations

import numpy as np
import pytest

from cookie.evaluation import maps

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _squares(n_side: int = 6) -> list[dict]:
    """A grid of unit squares as GeoJSON polygons; one has a hole, one is a MultiPolygon."""
    geoms = []
    for i in range(n_side):
        for j in range(n_side):
            ring = [[i, j], [i + 1, j], [i + 1, j + 1], [i, j + 1], [i, j]]
            geoms.append({"type": "Polygon", "coordinates": [ring]})
    hole = [[0.3, 0.3], [0.7, 0.3], [0.7, 0.7], [0.3, 0.7], [0.3, 0.3]]
    geoms[0]["coordinates"].append(hole)
    geoms[-1] = {
        "type": "MultiPolygon",
        "coordinates": [[[[5, 5], [5.5, 5], [5.5, 5.5], [5, 5]]], [[[5.6, 5.6], [6, 5.6], [6, 6], [5.6, 5.6]]]],
    }
    return geoms


def _check_png(path, min_bytes=5000):
    assert path.exists()
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > min_bytes
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert np.unique(img.reshape(-1, img.shape[-1]), axis=0).shape[0] > 20  # many colours, not blank
    return img


def test_predicted_vs_actual(tmp_path):
    geoms = _squares()
    rng = np.random.default_rng(0)
    actual = rng.uniform(0, 100, len(geoms))
    pred = actual + rng.normal(scale=10, size=len(geoms))
    pred[3] = np.nan  # never tested
    out = maps.plot_predicted_vs_actual(
        geoms, actual, pred, tmp_path / "sub" / "pva.png", title="toy", show_residual=True
    )
    img = _check_png(out)
    assert img.shape[1] > img.shape[0] * 2  # three panels side by side
    with pytest.raises(ValueError):
        maps.plot_predicted_vs_actual(geoms, actual[:-1], pred, tmp_path / "bad.png")


def test_embedding_rgb(tmp_path):
    geoms = _squares()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(len(geoms), 16))
    X[5] = np.nan
    out = maps.plot_embedding_rgb(geoms, X, tmp_path / "rgb.png")
    _check_png(out)
    rgb = maps.pca_rgb(X)
    assert rgb.shape == (len(geoms), 3)
    assert np.all(np.isnan(rgb[5])) and np.nanmin(rgb) >= 0 and np.nanmax(rgb) <= 1


def test_shapely_wkb_and_feature_collection_inputs(tmp_path):
    shapely = pytest.importorskip("shapely")
    from shapely.geometry import shape

    geoms = [shape(g) for g in _squares()]
    assert len(maps.region_series(geoms)) == len(geoms)
    fc = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "geometry": g, "properties": {}} for g in _squares()],
    }
    assert len(maps.region_series(fc)) == len(geoms)
    wkb = [shapely.to_wkb(g) for g in geoms]
    wkb[2] = None  # a region without geometry: kept in place, not drawn
    gs = maps.region_series(wkb)
    assert len(gs) == len(geoms) and gs.isna().sum() == 1 and gs.crs == "EPSG:4326"
    vals = np.arange(len(geoms), dtype=float)
    _check_png(maps.plot_predicted_vs_actual(geoms, vals, vals[::-1], tmp_path / "s.png"))
    _check_png(maps.plot_predicted_vs_actual(wkb, vals, vals[::-1], tmp_path / "w.png"))


def test_lon_lat_regions_are_drawn_in_metres():
    """A cell 0.02 deg of longitude by 0.01 deg of latitude at 60 N is about 1.11 km square on the ground:
    drawn in degrees it would be twice as wide as tall; in the local projection it is square."""
    shapely = pytest.importorskip("shapely")

    cell = shapely.box(24.93, 60.16, 24.95, 60.17)
    gs = maps.local_projection(maps.region_series([cell]))
    xmin, ymin, xmax, ymax = gs.total_bounds
    assert (xmax - xmin) == pytest.approx(1110, rel=0.01) and (ymax - ymin) == pytest.approx(1113, rel=0.01)
    assert (xmax - xmin) / (ymax - ymin) == pytest.approx(1.0, abs=0.01)
    # projected input (no lon / lat range) is left as it is
    far = maps.region_series([shapely.box(300000, 6600000, 301000, 6601000)])
    assert far.crs is None and maps.local_projection(far).total_bounds.tolist() == [300000, 6600000, 301000, 6601000]


def test_manhattan_maps(tmp_path, manhattan180):
    from cookie.evaluation.protocols import ridge_kfold

    regions = manhattan180.regions()
    X = np.log1p(manhattan180.poi)
    res = ridge_kfold(X, manhattan180.check_in)
    out = maps.plot_predicted_vs_actual(
        regions, manhattan180.check_in, res.predictions, tmp_path / "chk.png", label="check-ins"
    )
    _check_png(out)
    _check_png(maps.plot_embedding_rgb(regions, X, tmp_path / "poi_rgb.png"))
