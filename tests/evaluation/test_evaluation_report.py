"""Markdown tables and the published reference records."""

from __future__ import annotations

import numpy as np
import pytest

from cookie.evaluation.protocols import ridge_kfold
from cookie.evaluation.report import ResultRecord, format_value, markdown_table

import published


def test_format_value():
    assert format_value(0.5907, 0.0246) == "0.591 ± 0.025"
    assert format_value(4989.16, 158.18) == "4989.2 ± 158.2"
    assert format_value(0.64) == "0.640"
    assert format_value(float("nan")) == "nan"


def test_wide_table():
    recs = [
        {
            "dataset": "d",
            "method": "A",
            "task": "crime",
            "protocol": "ridge-kfold5",
            "metric": "MAE",
            "mean": 60.0,
            "std": None,
        },
        {
            "dataset": "d",
            "method": "A",
            "task": "crime",
            "protocol": "ridge-kfold5",
            "metric": "R2",
            "mean": 0.7,
            "std": None,
        },
        ResultRecord("d", "B", "crime", "ridge-kfold5-shuffled-x10", "R2", 0.61234, 0.0123),
    ]
    table = markdown_table(recs)
    lines = table.strip().splitlines()
    assert lines[0] == "| dataset | task | protocol | method | MAE | R2 |"
    assert lines[1] == "|---|---|---|---|---|---|"
    assert lines[2] == "| d | crime | ridge-kfold5 | A | 60.000 | 0.700 |"
    assert lines[3] == "| d | crime | ridge-kfold5-shuffled-x10 | B |  | 0.612 ± 0.012 |"
    assert markdown_table([]) == ""
    with pytest.raises(ValueError):
        markdown_table([*recs, recs[0]])  # duplicate cell


def test_long_table_and_sources():
    recs = published.published_records(dataset=published.TRACTS, method="RegionDCL")
    table = markdown_table(recs, layout="long", include_source=True)
    assert "| nyc-census-tracts-2325 | RegionDCL | population-density | rf-split-x10 | R2 | 0.591 ± 0.025 |" in table
    assert table.count("\n") == len(recs) + 2


def test_result_records_render():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 3)), rng.uniform(size=50)
    recs = ridge_kfold(X, y).to_records("toy", "raw", "y") + published.published_records(task="crime", method="MGFN")
    table = markdown_table(recs, metrics=["MAE", "RMSE", "R2"])
    assert "| toy | y | ridge-kfold5 | raw |" in table
    assert "| nyc-manhattan-180 | crime | ridge-kfold5 | MGFN | 59.450 | 77.600 | 0.720 |" in table


def test_published_numbers():
    get = published.published_records

    def one(**kw):
        (rec,) = get(**kw)
        return rec["mean"], rec["std"]

    m = published.MANHATTAN
    assert one(dataset=m, method="MVURE", task="crime", metric="R2") == (0.64, None)
    assert one(dataset=m, method="MGFN", task="check-in", metric="RMSE") == (436.58, None)
    assert one(dataset=m, method="HREP", task="check-in", metric="MAE") == (270.28, None)
    assert one(dataset=m, method="HAFusion", task="crime", metric="R2") == (0.734, None)
    assert one(dataset=m, method="HAFusion", task="service-calls", metric="R2") == (0.493, None)
    assert one(dataset=m, method="HREP", task="service-calls", metric="R2") == (0.398, None)
    assert one(method="MVURE", metric="NMI") == (0.78, None)
    assert one(method="MVURE", metric="ARI") == (0.62, None)
    t = published.TRACTS
    assert one(dataset=t, method="RegionDCL", metric="R2") == (0.591, 0.025)
    assert one(dataset=t, method="RegionDCL", metric="MAE") == (4989.0, 158.0)
    for name, r2 in [("DGI", 0.536), ("Urban2Vec", 0.531), ("MGFN", 0.376), ("Doc2Vec", 0.181), ("Place2Vec", 0.108)]:
        assert one(dataset=t, method=name, metric="R2")[0] == r2
    assert one(dataset=t, method="concat RegionDCL+Urban2Vec+MGFN", metric="R2")[0] == 0.668
    # every Manhattan method has MAE / RMSE / R2 for crime and check-in
    for meth in ("MVURE", "MGFN", "HREP", "HAFusion"):
        for task in ("crime", "check-in"):
            assert {r["metric"] for r in get(dataset=m, method=meth, task=task)} == {"MAE", "RMSE", "R2"}
    assert all(r["source"] for r in published.PUBLISHED)
    # the records are copies
    get()[0]["mean"] = -1
    assert published.PUBLISHED[0]["mean"] != -1
