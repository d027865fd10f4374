"""Fixtures of the training tests: Manhattan-180 view tables (shared data) built once per session."""

from __future__ import annotations

import pytest

from cookie_test_tables import build_tables


@pytest.fixture(scope="session")
def manhattan_tables(spark, shared_data, tmp_path_factory):
    if not (shared_data / "nyc-manhattan-180").is_dir():
        pytest.skip("nyc-manhattan-180 not in the shared data")
    return build_tables(spark, tmp_path_factory, "manhattan180")
