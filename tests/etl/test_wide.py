"""Wide views and many regions through the feature job: a 1,024-column view with OD-flow context next to an
OD 'rows' view (803 columns) and labels, a label that copies one of the 1,024 columns, and 100,000 regions
keyed by id from a Parquet table. Values are checked against numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable

from cookie import constants as C
from cookie.config import Config
from cookie.etl.job import build_features
from cookie.exceptions import InputError
from cookie.storage import delta as tables

N_WIDE = 300  # regions of the wide test
WIDTH = 1024


def config(d: Path, name: str, regions: dict, views: list[dict], labels: list[dict], sources: dict) -> Config:
    return Config.model_validate(
        {
            "name": name,
            "output": {"warehouse": str(d / "warehouse")},
            "sources": sources,
            "regions": regions,
            "views": views,
            "labels": labels,
            "base_dir": str(d),
        }
    )


def read(cfg: Config, table: str) -> pd.DataFrame:
    return DeltaTable(tables.locate(cfg, table).path).to_pandas().set_index(C.REGION_ID)


def neighbour_mean(X: np.ndarray, W: np.ndarray) -> np.ndarray:
    deg = W.sum(1, keepdims=True)
    return np.where(deg > 0, (W @ X) / np.where(deg > 0, deg, 1.0), X)


@pytest.fixture(scope="module")
def wide_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("wide")
    rng = np.random.default_rng(7)
    X = rng.normal(size=(N_WIDE, WIDTH))
    od = rng.poisson(0.05, size=(N_WIDE, N_WIDE)).astype(float) * rng.integers(1, 50, size=(N_WIDE, N_WIDE))
    od[5] = 0.0  # region 5 sends no trips ...
    od[:, 5] = 0.0  # ... and receives none: its context is its own row
    y = rng.normal(size=(N_WIDE, 2))
    np.save(d / "wide.npy", X)
    np.save(d / "od.npy", od)
    np.save(d / "y.npy", y)
    copy = y.copy()
    copy[:, 1] = X[:, 777]  # a label column that is the wide view's 778th feature
    np.save(d / "copy.npy", copy)
    sources = {k: {"kind": "array", "path": f"{k}.npy"} for k in ("wide", "od", "y", "copy")}
    return d, X, od, y, sources


def test_wide_view_with_flow_context_and_rows_view(spark, wide_inputs):
    d, X, od, y, sources = wide_inputs
    cfg = config(
        d,
        "wide_ctx",
        {"kind": "ids", "count": N_WIDE},
        [
            {"name": "wide", "kind": "vectors", "source": "wide", "context": ["flows"], "context_flows_view": "mob"},
            {"name": "mob", "kind": "flows", "source": "od", "flow_method": "rows"},
            {"name": "mobc", "kind": "flows", "source": "od", "flow_method": "rows", "flow_values": "counts"},
        ],
        [{"name": "y", "kind": "vectors", "source": "y"}],
        sources,
    )
    report = build_features(spark, cfg)
    got = {t.table: (t.rows, t.features) for t in report.tables}
    assert got["view_wide"] == (N_WIDE, 2 * WIDTH) and got["view_mob"] == (N_WIDE, 3 + 2 * N_WIDE)

    ids = [str(i) for i in range(N_WIDE)]
    own = [f"wide_{j:03d}" for j in range(WIDTH)]
    wide = read(cfg, "view_wide").loc[ids]
    ctx = [f"ctx_flows__{c}" for c in own]
    assert list(wide.columns) == own + ctx + ["_present"]
    assert tables.feature_names(spark, tables.locate(cfg, "view_wide")) == own + ctx
    np.testing.assert_array_equal(wide[own].to_numpy(), X)
    W = od + od.T
    np.fill_diagonal(W, 0.0)
    np.testing.assert_allclose(wide[ctx].to_numpy(), neighbour_mean(X, W), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(wide.loc["5", ctx].to_numpy(), X[5])

    # the OD rows view: totals, then the row and the column of log1p trips, regions in id (text) order
    mob = read(cfg, "view_mob").loc[ids]
    order = [int(i) for i in sorted(ids)]
    names = ["outflow", "inflow", "self_flow"]
    names += [f"out_{k:05d}" for k in range(N_WIDE)] + [f"in_{k:05d}" for k in range(N_WIDE)]
    assert list(mob.columns) == names + ["_present"] and mob["_present"].all()
    np.testing.assert_allclose(
        mob[["outflow", "inflow", "self_flow"]].to_numpy(), np.c_[od.sum(1), od.sum(0), np.diag(od)]
    )
    expected = np.log1p(np.c_[od[:, order], od.T[:, order]])
    np.testing.assert_allclose(mob[names[3:]].to_numpy(), expected, rtol=1e-15, atol=0)
    # flow_values: counts keeps the trips themselves
    mobc = read(cfg, "view_mobc").loc[ids]
    assert list(mobc.columns) == names + ["_present"]
    np.testing.assert_array_equal(mobc[names[3:]].to_numpy(), np.c_[od[:, order], od.T[:, order]])
    np.testing.assert_array_equal(mobc[names[:3]].to_numpy(), mob[names[:3]].to_numpy())
    assert DeltaTable(tables.locate(cfg, "view_mob").path).metadata().configuration[
        "cookie.flow_columns_region_order"
    ] == ",".join(sorted(ids))
    np.testing.assert_array_equal(read(cfg, "label_y").loc[ids, ["y_000", "y_001"]].to_numpy(), y)


def test_label_copying_one_of_1024_columns_is_refused(spark, wide_inputs):
    d, _, _, _, sources = wide_inputs
    cfg = config(
        d,
        "wide_copy",
        {"kind": "ids", "count": N_WIDE},
        [{"name": "wide", "kind": "vectors", "source": "wide"}],
        [{"name": "copy", "kind": "vectors", "source": "copy"}],
        sources,
    )
    with pytest.raises(InputError, match=r"label copy: column 'copy_001' equals view wide's feature 'wide_777'"):
        build_features(spark, cfg)
    assert not Path(tables.locate(cfg, "view_wide").path or "").exists()  # refused before any write


def test_100k_regions_from_a_table(spark, tmp_path):
    """100,000 regions keyed by id (a Parquet table), a view and a label from it, through the feature job."""
    n = 100_000
    rng = np.random.default_rng(3)
    ids = [f"r{i:06d}" for i in range(n)]
    X = rng.normal(size=(n, 8))
    X[17, 3] = np.nan  # one row with a missing value: zeros, not present
    pdf = pd.DataFrame(X, columns=[f"e{j}" for j in range(8)])
    pdf.insert(0, "rid", ids)
    pdf["density"] = rng.gamma(2.0, size=n)
    pdf.sample(frac=1.0, random_state=0).to_parquet(tmp_path / "regions.parquet", index=False)
    table = {"kind": "table", "path": "regions.parquet", "id_column": "rid"}
    cfg = config(
        tmp_path,
        "many",
        {"kind": "ids", "source": "t"},
        [{"name": "emb", "kind": "vectors", "source": "t", "columns": [f"e{j}" for j in range(8)]}],
        [{"name": "dens", "kind": "vectors", "source": "t", "columns": ["density"]}],
        {"t": table},
    )
    report = build_features(spark, cfg)
    got = {t.table: (t.rows, t.features) for t in report.tables}
    assert got == {"regions": (n, 0), "view_emb": (n, 8), "label_dens": (n, 1)}
    emb = next(t for t in report.tables if t.table == "view_emb")
    assert emb.stats["missing_values_rows"] == 1 and emb.stats["regions_with_data"] == n - 1
    view = read(cfg, "view_emb").loc[ids]
    ok = np.ones(n, dtype=bool)
    ok[17] = False
    np.testing.assert_array_equal(view[[f"e{j}" for j in range(8)]].to_numpy()[ok], X[ok])
    assert (view.iloc[17, :8] == 0).all() and view["_present"].to_numpy().tolist() == ok.tolist()
    np.testing.assert_array_equal(read(cfg, "label_dens").loc[ids, "density"].to_numpy(), pdf["density"].to_numpy())
    assert len(read(cfg, "regions")) == n
