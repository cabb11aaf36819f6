"""Local Paris traceroute: many destinations from this host, written as RIPE Atlas results.

:func:`tracer` probes every destination concurrently under one global packets-per-second
cap, with raw sockets, and returns one RIPE Atlas traceroute result per (destination,
flow); :func:`trace_campaign` stores them in a campaign through
:func:`probes.store.ingest_results`, exactly as ``pathexp ingest`` stores Atlas results.

The room:

- :mod:`probes.local.traceroute`: options, the local probe's identity, targets, the
  Atlas-format results and how they are marked as local.
- :mod:`probes.local.engine`: raw sockets, one event loop, many traces.
- :mod:`probes.local.packets`: probe crafting (scapy) and reply matching, Paris flows.
- :mod:`probes.local.pacing`: the token bucket behind the global pps cap.
"""

from __future__ import annotations

from probes.local.traceroute import (
    DEFAULT_LOCAL_PRB_ID,
    LocalProbe,
    Target,
    TraceOptions,
    TraceRun,
    load_local_probe,
    local_msm_id,
    resolve_targets,
    trace_campaign,
    tracer,
)

__all__ = [
    "TraceOptions",
    "LocalProbe",
    "Target",
    "TraceRun",
    "DEFAULT_LOCAL_PRB_ID",
    "resolve_targets",
    "load_local_probe",
    "tracer",
    "trace_campaign",
    "local_msm_id",
]
