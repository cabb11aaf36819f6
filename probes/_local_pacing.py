"""Temporary shim: moved to :mod:`probes.local.pacing`."""

from __future__ import annotations

from probes.local.pacing import *  # noqa: F403
from probes.local.pacing import (  # noqa: F401
    TokenBucket,
)
