"""The pandas side of :mod:`cookie.storage.delta` (deltalake, no Spark): tables, labels, embeddings, row order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cookie.exceptions import ConfigError, MissingTable
from cookie.storage import delta as D


class _Cfg:
    """The parts of a Config the readers use."""

    def __init__(self, wh, name="t", catalog=None):
        self.name = name
        self.dataset = name
        self._wh = wh
        self.output = type("O", (), {"catalog": catalog})()

    def warehouse_path(self):
        return str(self._wh / self.name)


@pytest.fixture()
def cfg(tmp_path):
    from deltalake import write_deltalake

    wh = tmp_path / "wh" / "t"
    ids = [str(i) for i in (10, 2, 1, 33)]
    write_deltalake(
        str(wh / "label_lu"),
        pd.DataFrame(
            {
                "region_id": ids,
                "share_a": [0.2, 0.0, 0.5, np.nan],
                "share_b": [0.2, 0.0, 0.5, 0.1],
                "share_total": [0.4, 0.0, 1.0, 0.1],
                "_present": [True, True, True, True],
            }
        ),
    )
    write_deltalake(str(wh / "label_sub"), pd.DataFrame({"region_id": ids, "keep": [1, 1, 0, 1]}))
    rows = []
    for version, stamp, scale in ((1, "2026-01-01", 1.0), (2, "2026-01-01", 2.0), (2, "2026-02-01", 3.0)):
        for r in ids:
            rows.append(
                {
                    "region_id": r,
                    "model_name": "m",
                    "model_version": np.int32(version),
                    "run_id": f"r{version}",
                    "created_at": pd.Timestamp(stamp, tz="UTC"),
                    "embedding": np.array([scale * int(r), scale * int(r), -scale]),  # the blocks side by side
                    "unique_a": np.full(2, scale * int(r)),
                    "shared_a__b": np.full(1, -scale),
                }
            )
    write_deltalake(str(wh / "embeddings"), pd.DataFrame(rows))
    return _Cfg(tmp_path / "wh")


def test_locate_paths_and_catalog_names(tmp_path):
    assert D.locate(_Cfg(tmp_path / "wh"), "regions").path == str(tmp_path / "wh" / "t" / "regions")
    loc = D.locate(_Cfg(tmp_path / "wh", catalog="main.geo"), "regions")
    assert loc.path is None and loc.full_name == "main.geo.t_regions" and str(loc) == "main.geo.t_regions"


def test_missing_table_names_the_job_that_builds_it(cfg):
    with pytest.raises(MissingTable, match="make features CONFIG=conf/t.yaml"):
        D.read_frame(cfg, "view_poi")
    assert MissingTable.exit_code == 4


def test_order_ids():
    assert D.order_ids(["10", "2", "1"]) == ["1", "2", "10"]
    assert D.order_ids(["10", "2", "1"], "lexicographic") == ["1", "10", "2"]
    assert D.order_ids(["b", "a", "10"]) == ["10", "a", "b"]


def test_expand_columns():
    cols = ["region_id", "share_a", "share_b", "share_total", "_present"]
    assert D.expand_columns(cols, ["share_*"], ["share_total"]) == ["share_a", "share_b"]
    assert D.expand_columns(cols, ["x", "share_a"]) == ["x", "share_a"]  # a missing plain name is kept


def test_load_label(cfg):
    lab = D.load_label(cfg, "label_lu", ["share_*"], exclude_columns=["share_total"])
    assert lab.columns == ["share_a", "share_b"] and lab.ids == ["10", "2", "1"]  # the NaN row is dropped
    norm = D.load_label(cfg, "label_lu", ["share_*"], exclude_columns=["share_total"], normalise_rows=True)
    assert norm.ids == ["10", "1"] and np.allclose(norm.values, 0.5)  # rows summing to 0 dropped
    sub = D.load_label(cfg, "label_lu", ["share_total"], subset_column="keep", subset_table="label_sub")
    assert sub.ids == ["10", "2", "33"] and sub.values.ndim == 1
    with pytest.raises(ConfigError, match="no column"):
        D.load_label(cfg, "label_lu", ["nope"])
    with pytest.raises(ConfigError, match="no subset column"):
        D.load_label(cfg, "label_lu", ["share_total"], subset_column="nope")


def test_load_embeddings(cfg):
    e1 = D.load_embeddings(cfg, "m", model_version=1)
    assert e1.model_version == 1 and e1.run_id == "r1" and sorted(e1.ids) == ["1", "10", "2", "33"]
    assert e1.X.shape == (4, 3) and e1.column("unique_a").shape == (4, 2)
    e2 = D.load_embeddings(cfg, "m", model_version=2)  # written twice: the latest rows
    assert np.allclose(e2.X[:, 0], [3.0 * int(r) for r in e2.ids])
    assert D.load_embeddings(cfg, "m", run_id="r1").model_version == 1
    with pytest.raises(ConfigError, match="embedding_column"):
        e1.column("shared_x")
    # the parts: every unique_* / shared_* block side by side
    assert np.array_equal(e1.column("unique"), e1.column("unique_a"))
    assert e1.column("shared").shape == (4, 1) and np.all(e1.column("shared") < 0)
    no_shared = D.EmbeddingRows(
        ["1"], np.ones((1, 2)), {"unique_a": np.ones((1, 1)), "unique_b": np.zeros((1, 1))}, "m", 1, None
    )
    assert no_shared.column("unique").tolist() == [[1.0, 0.0]]
    with pytest.raises(ConfigError, match=r"no column 'shared'; have 'embedding', the parts \['unique'\]"):
        no_shared.column("shared")
    # the parts as columns of X (the blocks side by side): what evaluation.choose_parts chooses among
    assert e1.columns_of("embedding").tolist() == [0, 1, 2]
    assert np.array_equal(e1.X[:, e1.columns_of("unique")], e1.column("unique"))
    assert np.array_equal(e1.X[:, e1.columns_of("shared")], e1.column("shared"))
    assert np.array_equal(e1.X[:, e1.columns_of("unique_a")], e1.column("unique_a"))
    assert no_shared.columns_of("shared") is None and no_shared.columns_of("nope") is None
    with pytest.raises(ConfigError, match="not its blocks"):
        no_shared.columns_of("unique")  # its X is not its blocks side by side
    with pytest.raises(MissingTable, match="no rows for model 'm' version 5; train and register"):
        D.load_embeddings(cfg, "m", model_version=5)
    with pytest.raises(ValueError):
        D.load_embeddings(cfg, "m")


def test_load_embeddings_ignores_other_models_blocks(tmp_path):
    """One table holds every model; a block column of another model is null on this model's rows."""
    from deltalake import write_deltalake

    wh = tmp_path / "wh" / "t"
    base = {"model_version": np.int32(1), "run_id": "r", "created_at": pd.Timestamp("2026-01-01", tz="UTC")}
    rows = [
        {
            **base,
            "region_id": str(i),
            "model_name": "a",
            "embedding": np.ones(2),
            "unique_x": np.ones(2),
            "raw_x": None,
            "region_order": np.int32(i),
        }
        for i in range(3)
    ]
    rows += [
        {
            **base,
            "region_id": str(i),
            "model_name": "b",
            "embedding": np.ones(2),
            "unique_x": None,
            "raw_x": np.ones(2),
            "region_order": np.int32(i),
        }
        for i in range(3)
    ]
    write_deltalake(str(wh / "embeddings"), pd.DataFrame(rows))
    b = D.load_embeddings(_Cfg(tmp_path / "wh"), "b", model_version=1)
    assert sorted(b.blocks) == ["raw_x"] and b.X.shape == (3, 2)
