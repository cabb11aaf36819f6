"""Temporary shim: moved to :mod:`probes.engine`."""

from __future__ import annotations

from probes.engine import *  # noqa: F403
from probes.engine import (  # noqa: F401
    ENGINES,
    Runner,
    open_runner,
)
