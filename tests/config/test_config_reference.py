"""docs/config.md is generated from the typed config: it must equal what the generator writes now, and every key
has a description (the reference is all a user reads about a key)."""

from __future__ import annotations

from pathlib import Path

from cookie.config import Config
from cookie.config.reference import DEFAULT_PATH, main, render, undocumented

REPO = Path(__file__).resolve().parents[2]


def test_committed_reference_is_current():
    assert DEFAULT_PATH == REPO / "docs" / "config.md"
    assert DEFAULT_PATH.read_text() == render(), "docs/config.md is out of date: run make docs and commit it"


def test_every_key_has_a_description():
    assert undocumented() == [], "give these config keys Field(description=...), then run make docs"


def test_every_key_of_the_config_is_in_the_reference():
    text = render()
    for name in Config.model_fields:
        assert f"| `{name}` |" in text
    for key in ("regions.resolution", "sources.<name>.path", "views.<i>.context", "model.method", "train.alias"):
        assert f"| `{key}` |" in text
    assert "| `evaluation.tasks.<i>.protocol` |" in text and "| `spark.conf` |" in text


def test_check_mode_reports_a_stale_file(tmp_path, capsys):
    stale = tmp_path / "config.md"
    stale.write_text(render().replace("| `model.method` |", "| `model.methods` |"))
    assert main(["--check", str(stale)]) == 1
    assert "run make docs" in capsys.readouterr().err
    assert main([str(stale)]) == 0 and main(["--check", str(stale)]) == 0
