"""The two benchmark configs load ../shared/data into regions, views and labels (skipped without it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cookie import constants as C
from cookie.config import load_config
from cookie.etl.job import build_features
from cookie.storage import delta as tables

REPO = Path(__file__).resolve().parents[2]


def table(spark, cfg, name):
    return tables.read_table(spark, tables.locate(cfg, name)).toPandas().set_index(C.REGION_ID)


@pytest.mark.slow
def test_manhattan180(spark, shared_data, manhattan_tables, monkeypatch):
    """The session's one run of conf/manhattan180.yaml (shared with the training tests), read back."""
    import json

    monkeypatch.setenv("COOKIE_SHARED_DATA", str(shared_data))
    cfg = load_config(REPO / "conf" / "manhattan180.yaml", base_dir=str(REPO))
    cfg = cfg.model_copy(update={"output": cfg.output.model_copy(update={"warehouse": str(manhattan_tables)})})
    (run,) = tables.read_frame(cfg, C.RUNS_TABLE).to_dict("records")
    rows = {t: (v["rows"], v["features"]) for t, v in json.loads(run["tables"]).items()}
    # own features, then their means over adjacent regions (ctx_adj__*) and over OD partners (ctx_flows__*)
    assert rows["view_mobility"] == (180, 3 * 363) and rows["view_poi"] == (180, 3 * 26)
    assert rows["view_landuse"] == (180, 3 * 11)
    assert {"label_crime", "label_checkin", "label_service_calls", "label_district"} <= set(rows)
    assert "view_checkin_similarity" not in rows
    regions = table(spark, cfg, "regions")
    assert abs(regions[C.AREA_KM2].sum() - 51.3) < 0.5  # PROVENANCE: total ~51.3 km2
    poi = table(spark, cfg, "view_poi")
    raw = np.load(shared_data / "nyc-manhattan-180" / "hafusion" / "poi_dist.npy")
    np.testing.assert_array_equal(
        poi.loc[[str(i) for i in range(180)], [f"poi_{j:03d}" for j in range(26)]].to_numpy(), raw
    )
    assert {"ctx_adj__poi_000", "ctx_flows__poi_000"} <= set(poi.columns)
    mob = table(spark, cfg, "view_mobility")
    od = np.load(shared_data / "nyc-manhattan-180" / "hrep" / "mobility_adj.npy")[0]
    order = [str(i) for i in range(180)]
    assert np.allclose(mob.loc[order, "outflow"].to_numpy(), od.sum(1))
    assert np.allclose(mob.loc[order, "inflow"].to_numpy(), od.sum(0))
    crime = table(spark, cfg, "label_crime")
    assert (
        crime.loc[order, "crime_count"].to_numpy().tolist()
        == np.load(shared_data / "nyc-manhattan-180" / "hrep" / "crime_counts.npy")[:, 0].tolist()
    )


@pytest.mark.slow
@pytest.mark.heavy
def test_nyc_tracts(spark, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("COOKIE_SHARED_DATA", str(shared_data))
    cfg = load_config(REPO / "conf" / "nyc_tracts.yaml", base_dir=str(REPO))
    cfg = cfg.model_copy(update={"output": cfg.output.model_copy(update={"warehouse": str(tmp_path)})})
    report = build_features(spark, cfg, only=["regiondcl", "population"])
    rows = {t.table: (t.rows, t.features, t.stats) for t in report.tables}
    assert rows["regions"][0] == 2325
    # 64 released dimensions and their mean over the touching tracts (context: [adjacency])
    assert rows["view_regiondcl"][:2] == (2325, 128) and rows["view_regiondcl"][2]["regions_with_data"] == 2315
    regions = table(spark, cfg, "regions")
    assert abs(regions[C.AREA_KM2].sum() - 782.5) < 2  # PROVENANCE: 782.5 km2 of land
    pop = table(spark, cfg, "label_population")
    assert int(pop["in_regiondcl_eval_subset"].sum()) == 2033
    emb = table(spark, cfg, "view_regiondcl")
    assert not emb.isna().any().any() and (~emb["_present"]).sum() == 10
    own = [c for c in emb.columns if c.startswith("regiondcl_")]
    assert len(own) == 64 and [c for c in emb.columns if c.startswith("ctx_adj__")] == [f"ctx_adj__{c}" for c in own]


@pytest.mark.slow
@pytest.mark.heavy
def test_projected_tracts_with_crs_match_wgs84(spark, shared_data):
    """The EPSG:32118 copy of the tracts, read with crs set, gives the same geodesic areas."""
    from cookie.config import FileRegions
    from cookie.etl.regions import regions_from_file

    d = shared_data / "nyc-census-tracts-2325"
    a = (
        regions_from_file(
            spark, FileRegions(kind="file", path="x", id_column="BoroCT2020"), str(d / "tracts_wgs84.geojson")
        )
        .df.select(C.REGION_ID, C.AREA_KM2)
        .toPandas()
    )
    b = (
        regions_from_file(
            spark,
            FileRegions(kind="file", path="x", id_column="BoroCT2020", crs="EPSG:32118"),
            str(d / "tracts_epsg32118.geojson"),
        )
        .df.select(C.REGION_ID, C.AREA_KM2)
        .toPandas()
    )
    m = a.merge(b, on=C.REGION_ID)
    assert len(m) == 2325
    np.testing.assert_allclose(m[f"{C.AREA_KM2}_x"], m[f"{C.AREA_KM2}_y"], rtol=1e-3)
