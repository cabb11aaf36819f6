"""Shared fixtures: the one path to the real public data (``PATHEXP_TEST_DATA``); hypothesis profiles."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run (derandomize) and keep no example
# database: the suite's verdict never depends on chance or on an earlier run. Set
# HYPOTHESIS_PROFILE=explore to search with fresh random examples while developing.
settings.register_profile("pathexp", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "pathexp"))

_DEFAULT = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def _data_root() -> Path:
    return Path(os.environ.get("PATHEXP_TEST_DATA", str(_DEFAULT))).resolve()


@pytest.fixture(scope="session")
def test_data() -> Path:
    """Root of the real data set (../shared/data unless PATHEXP_TEST_DATA says otherwise).

    Fails (not skips) when it is missing: CI must never pass by skipping real-data tests.
    """
    root = _data_root()
    if not (root / "ripe-atlas").is_dir():
        pytest.fail(f"real test data not found at {root}; set PATHEXP_TEST_DATA")
    return root
