"""Fixtures for the local-traceroute tests: the network-namespace lab (root only)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.probes.lab import Lab, build_lab, destroy, lab_skip_reason


@pytest.fixture(scope="session")
def netns_lab() -> Iterator[Lab]:
    """The traceroute lab of :mod:`tests.probes.lab`, built once per session.

    Skips with the reason when not root or ``ip`` is missing. Namespaces are named
    ``pxl<pid>-<role>`` and deleted by that prefix in the finalizer, even on failure.
    """
    reason = lab_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    prefix = f"pxl{os.getpid()}-"
    try:
        lab = build_lab(prefix, n_dst=64)
    except BaseException:
        destroy(prefix)
        raise
    try:
        yield lab
    finally:
        destroy(prefix)
