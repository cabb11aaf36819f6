"""Temporary shim: moved to :mod:`probes.local.engine`."""

from __future__ import annotations

from probes.local.engine import *  # noqa: F403
from probes.local.engine import (  # noqa: F401
    HopProbe,
    RawSockets,
    TraceJob,
    permission_message,
    run_jobs,
)
