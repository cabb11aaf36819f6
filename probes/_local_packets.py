"""Temporary shim: moved to :mod:`probes.local.packets`."""

from __future__ import annotations

from probes.local.packets import *  # noqa: F403
from probes.local.packets import (  # noqa: F401
    ProbeBuilder,
    ProbeSpec,
    Reply,
    build_probe,
    inet_checksum,
    load_scapy,
    parse_reply,
    parse_reply6,
    probe_key,
    udp_compensation,
)
