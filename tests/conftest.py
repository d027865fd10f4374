"""Shared fixtures: one local Spark session with Sedona and Delta for the whole test run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    env = os.environ.get("COOKIE_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir()
    if not d.is_dir():
        pytest.skip(f"benchmark data not found at {d} (set COOKIE_SHARED_DATA)")
    return d


@pytest.fixture(scope="session")
def spark():
    if "JAVA_HOME" not in os.environ:
        for cand in ("/usr/lib/jvm/java-17-openjdk-amd64", "/usr/lib/jvm/java-21-openjdk-amd64"):
            if os.path.isdir(cand):
                os.environ["JAVA_HOME"] = cand
                break
    from cookie.spark import SparkSettings, build_session

    session = build_session(SparkSettings(app_name="cookie-tests", master="local[2]", shuffle_partitions=2,
                                          driver_memory="3g"))
    yield session
    session.stop()
