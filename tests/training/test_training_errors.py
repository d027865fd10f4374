"""Errors a user can fix, raised before any training starts, and the ``region_order`` column: local
Spark, no shared data, no TorchDistributor."""

from __future__ import annotations

import pytest

from cookie.exceptions import ConfigError, MissingTable
from cookie.pipeline import train_and_publish
from cookie.serving.embeddings import region_order
from cookie.storage import tracking as registry
from cookie.storage.delta import order_ids

from cookie_test_tables import make_config

pytestmark = [pytest.mark.spark]


def test_train_before_features_names_the_table_and_the_verb(spark, tmp_path):
    cfg = make_config(tmp_path, "helsinki", tmp_path / "no-tables", copy=False)
    with pytest.raises(
        MissingTable,
        match=r"table view_poi does not exist at .*view_poi; build them first: "
        r"python -m cookie features --config conf/helsinki.yaml",
    ):
        train_and_publish(spark, cfg)
    client = registry.client_for(cfg)
    assert client.get_experiment_by_name(registry.experiment_name(cfg)) is None  # no run was started


def test_resume_before_features_is_a_missing_table(spark, tmp_path):
    cfg = make_config(tmp_path, "helsinki", tmp_path / "no-tables", copy=False)
    with pytest.raises(MissingTable):  # the tables are checked first
        train_and_publish(spark, cfg, resume=True)


def test_model_that_does_not_fit_the_views_is_a_config_error(spark, tmp_path):
    cfg = make_config(
        tmp_path,
        "helsinki",
        tmp_path / "no-tables",
        copy=False,
        model={"method": "single_view", "single_view": "mobility"},
    )
    with pytest.raises(ConfigError, match="model.single_view: 'mobility' is not one of the views"):
        train_and_publish(spark, cfg)


@pytest.mark.parametrize(
    "ids",
    [
        ["10", "2", "0", "1", "179", "33"],
        ["8a1", "10", "2", "b", "0"],
        ["-3", "7", "007", "12"],
    ],
)
def test_region_order_is_the_natural_order(spark, ids):
    df = spark.createDataFrame([(i,) for i in ids], "region_id string")
    got = {r["region_id"]: r["region_order"] for r in region_order(df).collect()}
    assert [i for i, _ in sorted(got.items(), key=lambda kv: kv[1])] == order_ids(ids)
    assert sorted(got.values()) == list(range(len(ids)))
