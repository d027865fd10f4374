"""The typed config: sections validated when the file loads, overrides, duplicate keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from cookie.config import load_config
from cookie.exceptions import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_evaluation_config_validation():
    from cookie.config.evaluation import EvaluationConfig

    ok = EvaluationConfig.model_validate(
        {
            "primary_metric": "crime.ridge_kfold.R2",
            "tasks": [
                {
                    "name": "crime",
                    "label": "crime",
                    "columns": ["crime_count"],
                    "protocol": "ridge_kfold",
                    "options": {"n_splits": 5},
                }
            ],
        }
    )
    assert ok.direction() == "max" and ok.tasks[0].table == "label_crime"
    bad = [
        {"primary_metric": "crime.R2"},  # not task.protocol.metric
        {
            "primary_metric": "x.ridge_kfold.R2",
            "tasks": [{"name": "crime", "label": "crime", "columns": ["c"], "protocol": "ridge_kfold"}],
        },
        {"tasks": [{"name": "c", "label": "c", "columns": ["c"], "protocol": "ridge_kfold", "options": {"seeds": 3}}]},
        {"tasks": [{"name": "c", "label": "c", "columns": ["a", "b"], "protocol": "rf_split"}]},
        {"tasks": [{"name": "c", "label": "c", "columns": ["c"], "protocol": "spatial_block"}]},  # needs blocks
        {"tasks": [{"name": "c", "label": "c", "columns": ["c"], "protocol": "ridge_kfold"}] * 2},  # duplicate
        {"primary_metric": "c.ridge_kfold.weird"},
        {"choose_parts": ["embedding", "shared"], "embedding_column": "shared"},  # parts of the whole only
        {"choose_parts": ["shared", "shared"]},
    ]
    for raw in bad:
        with pytest.raises(ValueError):
            EvaluationConfig.model_validate(raw)
    assert EvaluationConfig.model_validate({"primary_metric": "c.ridge_kfold.RMSE"}).direction() == "min"
    assert EvaluationConfig.model_validate({"choose_parts": ["embedding", "shared"]}).choose_parts[1] == "shared"


def test_project_configs_have_valid_evaluation_sections():
    from pathlib import Path

    from cookie.config import load_config

    repo = Path(__file__).resolve().parents[2]
    for name in ("helsinki", "manhattan180", "nyc_tracts"):
        cfg = load_config(repo / "conf" / f"{name}.yaml", base_dir=str(repo))
        ev = cfg.evaluation
        assert ev.tasks and ev.primary_metric and ev.direction() == "max"
        labels = {v.name for v in cfg.labels}
        assert {t.label for t in ev.tasks} <= labels


def test_set_overrides_and_model_section_validated_at_load(tmp_path):
    cfg = load_config(
        REPO / "conf" / "manhattan180.yaml",
        base_dir=str(REPO),
        overrides=["model.method=gfactorcl", "model.tau=0.2", "views.0.transform=log1p"],
    )
    assert cfg.model.method == "gfactorcl" and cfg.model.tau == 0.2 and cfg.views[0].transform == "log1p"
    assert cfg.dataset == "manhattan180"  # one feature set serves every model
    with pytest.raises(ConfigError, match="model.methd"):
        load_config(REPO / "conf" / "manhattan180.yaml", base_dir=str(REPO), overrides=["model.methd=cookie"])
    with pytest.raises(ConfigError, match="views.9"):
        load_config(REPO / "conf" / "manhattan180.yaml", base_dir=str(REPO), overrides=["views.9.kind=points"])
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(REPO / "conf" / "manhattan180.yaml", base_dir=str(REPO), overrides=["model.method"])
    lists = load_config(
        REPO / "conf" / "manhattan180.yaml",
        base_dir=str(REPO),
        overrides=["evaluation.choose_parts=[embedding,shared]"],
    )
    assert lists.evaluation.choose_parts == ["embedding", "shared"]


def test_typo_in_model_section_fails_every_verb_at_load(tmp_path):
    text = (REPO / "conf" / "helsinki.yaml").read_text().replace("method: cookie", "method: cookie\n  epochz: 3")
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match="model.epochz"):
        load_config(p, base_dir=str(REPO))


def test_duplicate_yaml_key_is_refused(tmp_path):
    p = tmp_path / "dup.yaml"
    p.write_text((REPO / "conf" / "helsinki.yaml").read_text() + "\nseed: 3\nseed: 4\n")
    with pytest.raises(ConfigError, match="appears twice"):
        load_config(p, base_dir=str(REPO))


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("output.warehouse=/tmp/ware`house", "output.warehouse"),
        ("output.warehouse=/tmp/tables[2024]", "output.warehouse"),
        ("output.catalog=main.geo`x", "output.catalog"),
        ("output.catalog=main", "output.catalog"),
    ],
)
def test_unquotable_table_locations_are_refused_at_load(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(REPO / "conf" / "helsinki.yaml", base_dir=str(REPO), overrides=[override])


def _config(regions: dict, views: list[dict], labels: list[dict] | None = None):
    from cookie.config import Config

    sources = {s: {"kind": "array", "path": f"{s}.npy"} for s in ("a", "b", "od", "lab")}
    return Config.model_validate(
        {"name": "c", "sources": sources, "regions": regions, "views": views, "labels": labels or []}
    )


def test_views_without_context_get_every_graph_the_config_has():
    """Spatial context is part of the default recipe: a view that leaves it out gets adjacency (polygons) and
    the OD graph of the config's one flows view; [] keeps it off; labels and ids-only regions get none."""
    grid = {"kind": "h3", "resolution": 8, "bbox": [24.9, 60.1, 25.0, 60.2]}
    od = {"name": "mobility", "kind": "flows", "source": "od"}
    label = {"name": "lab", "kind": "vectors", "source": "lab"}
    cfg = _config(grid, [od, {"name": "a", "kind": "vectors", "source": "a"}], [label])
    assert [v.context for v in cfg.views] == [["adjacency", "flows"]] * 2 and cfg.labels[0].context == []
    cfg = _config(
        grid,
        [
            {"name": "a", "kind": "vectors", "source": "a"},
            {"name": "b", "kind": "vectors", "source": "b", "context": []},
        ],
    )
    assert [v.context for v in cfg.views] == [["adjacency"], []]
    ids = _config({"kind": "ids", "count": 3}, [{"name": "a", "kind": "vectors", "source": "a"}])
    assert ids.views[0].context == []


def test_helsinki_res11_is_the_default_config_on_a_finer_grid() -> None:
    # conf/helsinki_res11.yaml scores the same recipe on 7x the cells: an edit of one Helsinki config that the
    # other does not get would make the two benchmark rows differ by more than the grid.
    coarse = load_config(REPO / "conf" / "helsinki.yaml", base_dir=str(REPO)).model_dump()
    fine = load_config(REPO / "conf" / "helsinki_res11.yaml", base_dir=str(REPO)).model_dump()
    assert (coarse["regions"]["resolution"], fine["regions"]["resolution"]) == (10, 11)
    for cfg in (coarse, fine):
        del cfg["name"], cfg["description"], cfg["regions"]["resolution"]
    assert fine == coarse
