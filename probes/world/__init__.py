"""A deterministic synthetic Internet with ground truth, written in the real formats.

The world has a few hundred ASes with Gao-Rexford relationships (a tier-1 clique,
regional transits, access networks on six continents, US hosting/content networks as
destinations, and the flagged China Telecom / Unicom / Mobile families with their real
ASNs holding PoPs at US IXPs and private interconnects), synthetic US and foreign IXPs
with peering LANs, RIPE Atlas probes worldwide, valley-free routing, hop-level paths with
RTTs that never beat the speed of light in fibre, and two scenarios: the baseline, and a
diversion (a more-specific route leak by AS4134) during a known window.

:func:`generate_world` writes Atlas results and metadata (API v2 shapes), reference data
(CAIDA pfx2as, PeeringDB API JSON, CAIDA IXP jsonl, CAIDA as2org and as-rel, APNIC
delegated-extended) and the ground truth (Parquet and JSON). The same seed gives
byte-identical files. :class:`World` rebuilds the world from its seed and produces
Atlas-format traceroutes on demand (used by the stand-in Atlas API server).
:func:`read_truth` opens the ground truth of a written world.

The room, from constant data to files:

- :mod:`probes.world.data`: cities, IXP cities, the flagged carriers (constant tables).
- :mod:`probes.world.topology`: ASes, relationships, PoPs, IXPs, addresses, probes.
- :mod:`probes.world.routing`: valley-free routes and the route leak.
- :mod:`probes.world.artefacts`: :class:`Artefacts`, the measurement artefacts' rates.
- :mod:`probes.world.trace`: an AS path turned into a hop-level traceroute and its truth.
- :mod:`probes.world.writers`: the real file formats, and the truth layout and schemas.
- :mod:`probes.world.generate`: :class:`World` and :func:`generate_world`.
- :mod:`probes.world.truth`: :class:`Truth`, the reader of ``truth/``.
"""

from __future__ import annotations

from probes.world.artefacts import Artefacts
from probes.world.generate import WORLD_START, ScheduledTrace, World, WorldManifest, generate_world
from probes.world.topology import SIZES
from probes.world.truth import Truth, read_truth
from probes.world.writers import (
    TRUTH_FLAGGED_SCHEMA,
    TRUTH_HOP_SCHEMA,
    TRUTH_IXP_SCHEMA,
    TRUTH_TRACE_SCHEMA,
)

__all__ = [
    "Artefacts",
    "World",
    "WorldManifest",
    "ScheduledTrace",
    "generate_world",
    "Truth",
    "read_truth",
    "SIZES",
    "WORLD_START",
    "TRUTH_TRACE_SCHEMA",
    "TRUTH_HOP_SCHEMA",
    "TRUTH_IXP_SCHEMA",
    "TRUTH_FLAGGED_SCHEMA",
]
