"""Fixtures for the evaluation tests: the shared NYC benchmarks, skipped cleanly when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _shared_data() -> Path | None:
    env = os.environ.get("COOKIE_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2].parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def manhattan180():
    from datasets import MANHATTAN_DIRNAME, load_manhattan180

    root = _shared_data()
    if root is None or not (root / MANHATTAN_DIRNAME).is_dir():
        pytest.skip("shared data nyc-manhattan-180 not found (set COOKIE_SHARED_DATA)")
    return load_manhattan180(root / MANHATTAN_DIRNAME)


@pytest.fixture(scope="session")
def nyc_tracts():
    from datasets import TRACTS_DIRNAME, load_nyc_tracts

    root = _shared_data()
    if root is None or not (root / TRACTS_DIRNAME).is_dir():
        pytest.skip("shared data nyc-census-tracts-2325 not found (set COOKIE_SHARED_DATA)")
    return load_nyc_tracts(root / TRACTS_DIRNAME)
