"""Errors a user can fix, raised before any training starts, and the ``region_order`` column: local
Spark, no shared data, no TorchDistributor."""

from __future__ import annotations

import pytest

from cookie.exceptions import ConfigError, InputError, MissingTable
from cookie.pipeline import train_and_publish
from cookie.serving.embeddings import region_order
from cookie.storage import tracking as registry
from cookie.storage.delta import order_ids

from cookie_test_tables import REPO, make_config

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


def test_tables_built_from_other_view_settings_are_refused(spark, helsinki_tables, tmp_path):
    """An edit of a view after the feature job (here: its spatial context dropped) names the view, the change
    and the verb, instead of training on the old columns; nothing is started."""
    from cookie.config import load_config

    built = make_config(tmp_path, "helsinki", helsinki_tables)
    path = tmp_path / "helsinki.yaml"
    assert built.views[0].context == ["adjacency"]
    edited = load_config(path, base_dir=str(REPO), overrides=["views.0.context=[]"])
    with pytest.raises(
        InputError,
        match=r"view poi: table view_poi was built from other settings than the config's "
        r"\(context: \['adjacency'\] -> \[\]\); rebuild them first: python -m cookie features --config conf/helsinki.yaml",
    ):
        train_and_publish(spark, edited)
    client = registry.client_for(edited)
    assert client.get_experiment_by_name(registry.experiment_name(edited)) is None


def test_tables_from_before_the_stored_settings_are_checked_on_their_context(spark, helsinki_tables, tmp_path):
    """A table written before the feature job stored its view settings is taken as it is, unless its context
    columns differ from the config's (spatial context went on by default for views that leave it out)."""
    from cookie.config import load_config
    from cookie.training.data import view_tables

    cfg = make_config(tmp_path, "helsinki", helsinki_tables)
    for v in cfg.views:
        spark.sql(
            f"ALTER TABLE delta.`{cfg.warehouse_path()}/view_{v.name}` UNSET TBLPROPERTIES ('cookie.view_config')"
        )
    assert [t.name for t in view_tables(spark, cfg)] == ["poi", "roads", "buildings"]
    edited = load_config(tmp_path / "helsinki.yaml", base_dir=str(REPO), overrides=["views.1.context=[]"])
    with pytest.raises(
        InputError,
        match=r"view roads: table view_roads was built from other settings than the config's \(context columns "
        r"of \['adjacency'\] in the table, the config asks for \[\]\); rebuild them first",
    ):
        view_tables(spark, edited)


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
