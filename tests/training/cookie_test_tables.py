"""Feature tables for the training and registry tests, built once per test session.

The tables of a project config are built with the real ETL (``cookie.etl.job.build_features``) under the
session's base temp folder, once per session (``tests/conftest.py`` fixtures, a marker file); the feature
job's own test of the config reads the same run. Each test then trains on its own copy (:func:`make_config`), so the embeddings
tables, MLflow stores and checkpoints of different tests never meet.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SMALL_MODEL = {"embed_dim": 16, "hidden_dim": 64, "epochs_intra": 3, "epochs_pair": 3}


def build_tables(spark, tmp_path_factory, name: str, labels: bool = False) -> Path:
    """Warehouse root holding the regions and view tables of ``conf/<name>.yaml`` (and its labels with
    ``labels=True``), with the run's ``etl_runs`` row."""
    from cookie.config import load_config
    from cookie.etl.job import build_features

    base = Path(tmp_path_factory.getbasetemp()) / "cookie-tables"
    wh = base / "warehouse"
    marker = base / f"{name}.built"
    if marker.is_file():
        return wh
    raw = yaml.safe_load((REPO / "conf" / f"{name}.yaml").read_text())
    raw["output"] = {"warehouse": str(wh)}
    base.mkdir(parents=True, exist_ok=True)
    path = base / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path, base_dir=str(REPO))
    build_features(spark, cfg, only=None if labels else [v.name for v in cfg.views])
    marker.write_text("ok\n")
    return wh


def make_config(
    tmp: Path,
    name: str,
    tables_root: Path,
    model: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    copy: bool = True,
):
    """A config of ``conf/<name>.yaml`` whose warehouse, MLflow store and checkpoints live in ``tmp``."""
    from cookie.config import load_config

    tmp.mkdir(parents=True, exist_ok=True)
    wh = tmp / "warehouse"
    if copy and not (wh / name).exists():
        src = tables_root / name
        (wh / name).mkdir(parents=True)
        for table in src.iterdir():
            if table.name == "regions" or table.name.startswith("view_"):
                shutil.copytree(table, wh / name / table.name)
    raw = yaml.safe_load((REPO / "conf" / f"{name}.yaml").read_text())
    raw["output"] = {"warehouse": str(wh)}
    raw["model"] = {**SMALL_MODEL, **(model or {})}
    raw["train"] = {
        "tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}",
        "checkpoint_dir": str(tmp / "checkpoints"),
        "num_processes": 2,
        "profile": True,
        **(train or {}),
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path, base_dir=str(REPO))


def raw_view_frame(cfg, stats) -> Any:
    """Every region's raw features as the pyfunc's flat frame, read with the deltalake package."""
    from deltalake import DeltaTable

    from cookie.preprocessing import feature_column, present_column

    regions = DeltaTable(str(Path(cfg.warehouse_path()) / "regions")).to_pandas(columns=["region_id"])
    frame = regions.sort_values("region_id").reset_index(drop=True)
    for vs in stats.views:
        df = DeltaTable(vs.table).to_pandas(columns=["region_id", *vs.features, "_present"])
        df = df.rename(
            columns={f: feature_column(vs.name, f) for f in vs.features} | {"_present": present_column(vs.name)}
        )
        frame = frame.merge(df, on="region_id", how="left")
    return frame
