"""Fixtures shared by the analysis tests."""

from __future__ import annotations

import pytest

from analysis.datasets import Snapshot
from tests.analysis._snap import shared_snapshot


@pytest.fixture(scope="session")
def real_snapshot(test_data, tmp_path_factory) -> Snapshot:
    """Every real reference-file kind in ../shared/data (no as2org there), imported once."""
    return shared_snapshot(test_data, tmp_path_factory)
