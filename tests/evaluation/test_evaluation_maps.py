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


def test_shapely_and_feature_collection_inputs(tmp_path):
    shapely = pytest.importorskip("shapely.geometry")
    geoms = [shapely.shape(g) for g in _squares()]
    assert len(maps.region_paths(geoms)) == len(geoms)
    fc = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "geometry": g, "properties": {}} for g in _squares()],
    }
    assert len(maps.region_paths(fc)) == len(geoms)
    vals = np.arange(len(geoms), dtype=float)
    _check_png(maps.plot_predicted_vs_actual(geoms, vals, vals[::-1], tmp_path / "s.png"))


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
