"""Secrets never reach MLflow or logs: credentials in URIs and secret-looking keys are redacted."""

from __future__ import annotations

from pathlib import Path

from cookie.config import load_config
from cookie.storage.tracking import redact, redact_uri

REPO = Path(__file__).resolve().parents[2]


def test_uri_credentials_are_removed() -> None:
    assert redact_uri("https://bob:hunter2@mlflow.example.org/api") == "https://bob:***@mlflow.example.org/api"
    assert redact_uri("https://tok123@host/x") == "https://***@host/x"
    assert redact_uri("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
    assert redact_uri("databricks") == "databricks"


def test_config_dump_is_redacted() -> None:
    cfg = load_config(
        REPO / "conf" / "helsinki.yaml",
        base_dir=str(REPO),
        overrides=[
            "spark.conf={spark.hadoop.fs.s3a.secret.key: abc, spark.hadoop.fs.s3a.access.key: AKIA, spark.app.x: ok}",
            "train.tracking_uri=https://alice:pw@mlflow.example.org",
        ],
    )
    out = redact(cfg.model_dump(mode="json"))
    text = repr(out)
    assert "abc" not in text and "AKIA" not in text and ":pw@" not in text
    assert out["spark"]["conf"]["spark.app.x"] == "ok"
    assert out["train"]["tracking_uri"] == "https://alice:***@mlflow.example.org"
    assert out["name"] == "helsinki" and out["model"]["method"] == "cookie"
