"""``bench_quality.py --resume``: the rows of a stopped run are read back from its quality.jsonl, so the run goes
on where it stopped and the final table covers every row."""

from __future__ import annotations

import json
from pathlib import Path

import bench_quality as bq
import pytest


def _lines(
    config: str, method: str, seed: int | None, run_id: str, values: dict[str, float], sets: list[str]
) -> list[str]:
    out = []
    for key, value in values.items():
        task, protocol, metric = key.split(".")
        out.append(
            json.dumps(
                {
                    "dataset": Path(config).stem,
                    "config": config,
                    "method": method,
                    "seed": seed,
                    "task": task,
                    "protocol": protocol,
                    "metric": metric,
                    "value": value,
                    "model_name": f"cookie_{Path(config).stem}_{method}",
                    "model_version": 1,
                    "training_run_id": run_id,
                    "eval_run_id": "e" + run_id,
                    "commands": ["python -m cookie train ..."],
                    "sets": sets,
                    "seconds": {"train": 3.0, "evaluate": 1.0, "seconds_per_epoch": 0.1},
                }
            )
        )
    return out


def test_finished_rows_groups_lines_by_method_and_seed_and_keeps_the_last_run(tmp_path: Path) -> None:
    jsonl = tmp_path / "quality.jsonl"
    c = "conf/m.yaml"
    lines = [
        *_lines(c, "raw", None, "r0", {"crime.ridge_kfold.R2": 0.5}, []),
        *_lines(c, "cookie", 0, "old", {"crime.ridge_kfold.R2": 0.1, "crime.ridge_kfold.MAE": 9.0}, []),
        *_lines(c, "cookie", 0, "new", {"crime.ridge_kfold.R2": 0.7, "crime.ridge_kfold.MAE": 5.0}, []),
        *_lines(c, "cookie", 1, "s1", {"crime.ridge_kfold.R2": 0.6}, []),
        *_lines(c, "cookie", 2, "other-sets", {"crime.ridge_kfold.R2": 0.9}, ["model.tau=0.2"]),
        *_lines("conf/other.yaml", "cookie", 3, "other-config", {"crime.ridge_kfold.R2": 0.9}, []),
    ]
    jsonl.write_text("\n".join(lines) + "\n\n")
    rows = bq.finished_rows(jsonl, c, [])
    assert set(rows) == {("raw", None), ("cookie", 0), ("cookie", 1)}
    assert rows[("cookie", 0)].training_run_id == "new"
    assert rows[("cookie", 0)].metrics == {"crime.ridge_kfold.R2": 0.7, "crime.ridge_kfold.MAE": 5.0}
    assert rows[("raw", None)].seconds["train"] == 3.0
    # a table can be built from read-back rows alone
    text = bq.table(list(rows.values()))
    assert "| cookie | 0.650 +- 0.071 |" in text
    assert set(bq.finished_rows(jsonl, c, ["model.tau=0.2"])) == {("cookie", 2)}
    assert bq.finished_rows(tmp_path / "missing.jsonl", c, []) == {}


def test_a_broken_line_names_the_file_and_line(tmp_path: Path) -> None:
    jsonl = tmp_path / "quality.jsonl"
    jsonl.write_text(_lines("conf/m.yaml", "raw", None, "r0", {"crime.ridge_kfold.R2": 0.5}, [])[0] + "\n{not json\n")
    with pytest.raises(SystemExit, match=r"quality\.jsonl:2: not a JSON line"):
        bq.finished_rows(jsonl, "conf/m.yaml", [])


def test_the_table_scores_cookie_against_the_absolute_targets_for_the_config_and_its_tuned_copy(
    tmp_path: Path,
) -> None:
    jsonl = tmp_path / "quality.jsonl"
    lines = []
    for config in ("conf/manhattan180.yaml", "conf/manhattan180.selected.yaml"):
        for seed, (crime, checkin) in enumerate([(0.70, 0.87), (0.72, 0.85)]):
            values = {"crime.ridge_kfold.R2": crime, "checkin.ridge_kfold.R2": checkin}
            lines += _lines(config, "cookie", seed, f"{config}{seed}", values, [])
    jsonl.write_text("\n".join(lines) + "\n")
    rows = [
        *bq.finished_rows(jsonl, "conf/manhattan180.yaml", []).values(),
        *bq.finished_rows(jsonl, "conf/manhattan180.selected.yaml", []).values(),
    ]
    text = bq.table(rows)
    assert text.count("- crime.ridge_kfold.R2: 0.710 against >= 0.740 (-0.030) not met") == 2
    assert text.count("- checkin.ridge_kfold.R2: 0.860 against >= 0.850 (+0.010) met") == 2
    # the tuned copy is matched with its config's published numbers too
    assert text.count("HAFusion 0.734") == 2
    assert bq.config_stem("conf/nyc_tracts.yaml") == "nyc_tracts"


def test_sets_are_checked_against_each_benchmarked_method_before_any_run() -> None:
    """``--set model.epochs_intra=0`` fits GFactorCL and pair_only but not CooKIE, the file's own method: it is
    accepted for the first two, and refused for CooKIE with the method named, before anything trains."""
    cfgs = bq.method_configs("conf/helsinki.yaml", ["gfactorcl", "pair_only"], ["model.epochs_intra=0"])
    assert {m: (c.model.method, c.model.epochs_intra) for m, c in cfgs.items()} == {
        "gfactorcl": ("gfactorcl", 0),
        "pair_only": ("pair_only", 0),
    }
    with pytest.raises(SystemExit, match=r"--methods cookie: .*helsinki.yaml: invalid config"):
        bq.method_configs("conf/helsinki.yaml", ["pair_only", "cookie"], ["model.epochs_intra=0"])
