"""``python -m cookie select`` on a small synthetic Delta warehouse (written with deltalake; no Spark).

The target is built so that one candidate is clearly better per view:

* ``poi``: heavy-tailed counts, and the target is linear in ``log1p(count)`` -> ``counts`` (log1p z-score)
  beats ``zscore``; its ``ctx_adj__*`` columns are noise -> no context;
* ``mob``: the target follows the neighbourhood mean ``ctx_adj__m0`` -> context ``[adjacency]`` beats none and
  ``[flows]`` (its ``ctx_flows__*`` columns are noise).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import yaml

N = 160


@pytest.fixture()
def warehouse(tmp_path):
    from deltalake import write_deltalake

    rng = np.random.default_rng(3)
    ids = [str(i) for i in range(N)]
    wh = tmp_path / "wh" / "syn"
    poi = np.round(np.exp(rng.normal(1.5, 1.5, size=(N, 4)))).astype(float)  # heavy-tailed counts
    m = rng.normal(size=(N, 3))
    adj_m = rng.normal(size=(N, 3))  # the "neighbourhood mean" of mob
    y = 50 + 12 * np.log1p(poi[:, 0]) + 10 * adj_m[:, 0] + rng.normal(scale=1.0, size=N)
    present = np.ones(N, dtype=bool)
    present[[4, 99]] = False
    poi_t = pd.DataFrame(
        {
            "region_id": ids,
            **{f"p{j}": poi[:, j] for j in range(4)},
            **{f"ctx_adj__p{j}": rng.gamma(1.0, 5.0, size=N) for j in range(4)},
            "_present": present,
        }
    )
    poi_t.loc[~present, [c for c in poi_t.columns if c.startswith(("p", "ctx"))]] = 0.0
    write_deltalake(str(wh / "view_poi"), poi_t)
    write_deltalake(
        str(wh / "view_mob"),
        pd.DataFrame(
            {
                "region_id": ids,
                **{f"m{j}": m[:, j] for j in range(3)},
                **{f"ctx_adj__m{j}": adj_m[:, j] for j in range(3)},
                **{f"ctx_flows__m{j}": rng.normal(size=N) for j in range(3)},
                "_present": True,
            }
        ),
    )
    write_deltalake(
        str(wh / "view_od"),
        pd.DataFrame({"region_id": ids, "out_0": rng.normal(size=N), "in_0": rng.normal(size=N), "_present": True}),
    )
    lab = np.ones(N, dtype=bool)
    lab[7] = False
    write_deltalake(str(wh / "label_crime"), pd.DataFrame({"region_id": ids, "crime_count": y, "_present": lab}))
    cfg = tmp_path / "conf" / "syn.yaml"
    cfg.parent.mkdir()
    cfg.write_text(f"""# a synthetic config
name: syn
description: keep me
sources:
  s: {{kind: array, path: unused.npy}}
regions: {{kind: file, path: unused.geojson, id_column: region_id}}
views:
  - {{name: poi, kind: vectors, source: s, context: [adjacency]}}
  - {{name: mob, kind: vectors, source: s, context: [adjacency, flows]}}
  - {{name: od, kind: flows, source: s}}
output: {{warehouse: {tmp_path / "wh"}}}
model: {{embed_dim: 16}}
train: {{preprocess: {{poi: zscore}}}}
evaluation:
  primary_metric: crime.ridge_kfold.R2
  tasks:
    - {{name: crime, label: crime, columns: [crime_count], protocol: ridge_kfold, options: {{n_splits: 5}}}}
    - {{name: crime, label: crime, columns: [crime_count], protocol: rf_split, options: {{seeds: 2, n_estimators: 15}}}}
""")
    return cfg


def test_select_ridge_picks_the_clearly_better_settings(warehouse, caplog):
    from cookie.config import load_config
    from cookie.evaluation.select import select_settings

    cfg = load_config(warehouse)
    with caplog.at_level(logging.INFO, logger="cookie.evaluation"):
        report = select_settings(cfg, warehouse)
    out = warehouse.with_suffix(".selected.yaml")
    assert out.name == "syn.selected.yaml" and out.is_file()

    text = out.read_text()
    assert text.startswith("# Written by `python -m cookie select --config")
    assert "votes" in text.split("\nname:")[0] and "train.preprocess.poi: counts" in text
    raw = yaml.safe_load(text)
    assert raw["train"]["preprocess"]["poi"] == "counts"
    assert raw["views"][0]["context"] == [] and raw["views"][1]["context"] == ["adjacency"]
    # the rest of the original is kept; a name of its own; tables differ from the chosen context: no dataset
    assert raw["description"] == "keep me" and raw["model"] == {"embed_dim": 16}
    assert raw["evaluation"]["primary_metric"] == "crime.ridge_kfold.R2" and len(raw["evaluation"]["tasks"]) == 2
    assert raw["name"] == "syn_selected" and "dataset" not in raw["output"]
    sel = load_config(out)
    assert sel.train.preprocess["poi"] == "counts" and sel.views[1].context == ["adjacency"]

    # the report: candidates, inner scores, votes, the winner, the nested estimate
    assert "view poi: configured zscore/adjacency" in report
    poi_block = report.split("view poi")[1].split("view mob")[0]
    assert {"zscore/adjacency", "zscore/none", "counts/adjacency", "counts/none"} <= set(poi_block.split())
    assert "counts/flows" not in poi_block and "not compared: context [flows]" in poi_block  # no ctx_flows columns
    assert "inner R2" in poi_block and "votes" in poi_block and "nested R2" in poi_block
    assert "winner counts/none (counts/none " in poi_block
    mob_block = report.split("view mob")[1].split("view od")[0]
    assert "configured zscore/adjacency+flows (auto = zscore)" in mob_block
    assert len([w for w in mob_block.split() if w.count("/") == 1 and w[0] in "cz"]) >= 8  # 2 kinds x 4 contexts
    assert "winner zscore/adjacency (" in mob_block
    assert any("wrote" in r.getMessage() for r in caplog.records if r.name == "cookie.evaluation.select")


def test_select_nested_estimate_beats_the_configured_setting(warehouse):
    """The nested estimate of the chosen poi setting is far above the configured one's inner score."""
    from cookie.config import load_config
    from cookie.evaluation.select import select_settings

    report = select_settings(load_config(warehouse), warehouse, out=warehouse.parent / "x.yaml")
    poi_block = report.split("view poi")[1].split("view mob")[0]
    rows = {
        line.split()[0]: float(line.split()[1])
        for line in poi_block.splitlines()
        if line.strip() and line.strip().split()[0].count("/") == 1 and len(line.split()) >= 3
    }
    assert rows["counts/none"] > rows["zscore/adjacency"] + 0.05
    nested = float(poi_block.split("nested R2")[1].split()[0])
    assert nested > rows["zscore/adjacency"]


def test_select_rf_and_cli(warehouse, capsys):
    """``python -m cookie select`` with --set (kept in the copy): rf_split primary metric, tables already match."""
    from cookie.cli import main

    out = warehouse.parent / "rf.yaml"
    code = main(
        [
            "select",
            "--config",
            str(warehouse),
            "--out",
            str(out),
            "--set",
            "evaluation.primary_metric=crime.rf_split.R2",
            "--set",
            "views.0.context=[]",
            "--set",
            "views.1.context=[adjacency]",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "RandomForestRegressor(15)" in printed and "seeds [1, 2]" in printed
    raw = yaml.safe_load(out.read_text())
    assert raw["evaluation"]["primary_metric"] == "crime.rf_split.R2"
    assert raw["train"]["preprocess"]["poi"] in ("counts", "zscore")  # RF is invariant to monotone transforms
    assert raw["views"][1]["context"] == ["adjacency"]


def test_select_refuses_unsupported_primary_metric(warehouse):
    from cookie.cli import main

    assert main(["select", "--config", str(warehouse), "--set", "evaluation.primary_metric=null"]) == 2
