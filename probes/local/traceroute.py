"""Local Paris traceroute: many destinations from this host, written as RIPE Atlas results.

:func:`tracer` probes every destination concurrently under one global packets-per-second
cap, with raw sockets (scapy crafts the probes; see :mod:`probes.local.packets` for how
the flow identifier is held constant and how replies are matched), and returns one RIPE
Atlas traceroute result per (destination, flow). :func:`trace_campaign` stores them in a
campaign through :func:`probes.store.ingest_results`, exactly as ``pathexp ingest`` stores
Atlas results.

How local results are marked
----------------------------
- ``msm_id``: :data:`probes.schema.LOCAL_MSM_ID_MIN` + a stable hash of (destination,
  name, protocol, mode, flow), below 2**32: like an Atlas measurement, repeating a run keeps
  the id and changes the timestamp. (Two different flows may share an id, rarely; their
  results stay distinct unless they also share the probe and the second.)
- ``prb_id``: the local probe id from the configuration (:class:`LocalProbe`, default
  :data:`DEFAULT_LOCAL_PRB_ID`); its location goes to the campaign's probe metadata.
- ``"origin": "local"``, ``"pathexp_local": true``, and a ``"pathexp"`` object with the
  mode, flow fields, options and stop reason. ``paris_id`` is the flow number (1..N) in
  Paris mode and 0 in classic mode.

Example (needs raw sockets, so not run as a doctest)::

    run = tracer(["example.net"], options=TraceOptions(protocol="udp", pps=50))
    run.results[0]["result"][0]["result"][0]["from"]
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from probes.errors import ConfigError, TargetRefused
from probes.local.engine import RawSockets, TraceJob, run_jobs
from probes.local.packets import load_scapy
from probes.workspace import Campaign

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

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

#: Probe id written when the configuration names none (far above Atlas probe ids).
DEFAULT_LOCAL_PRB_ID = 2_000_000_000

_PROTOCOLS = ("icmp", "udp", "tcp")
_ERR_CODES = {0: "N", 1: "H", 2: "P", 3: "p", 13: "A"}
_TCP_FLAGS = ((0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"), (0x10, "A"), (0x20, "U"))


@dataclass(frozen=True)
class TraceOptions:
    """How to trace. Defaults follow RIPE Atlas (3 attempts) and scamper (gap limit 5).

    Parameters
    ----------
    protocol
        ``"icmp"``, ``"udp"`` or ``"tcp"`` (TCP SYN).
    paris
        True (default): one constant flow per trace. False: classic, the flow varies per
        probe (UDP destination port, TCP source port, ICMP checksum).
    first_hop, max_hops
        First and last TTL probed.
    attempts
        Probes per hop (each recorded, as Atlas does).
    timeout
        Seconds to wait for each probe's reply.
    pps
        Global cap on probes per second over all destinations.
    concurrency
        Traces in flight at once.
    stop_after_silent
        Stop a trace after this many consecutive hops without any reply (0: never).
    allow_private
        Allow private, reserved, documentation and multicast destinations.
    flow_diversity
        Paris flows per destination (paris_id 1..N, one result each).
    port
        Destination port for UDP (default 33435) and TCP (default 80).
    payload_len
        Probe payload bytes for UDP and ICMP (at least 2: Paris compensation bytes).
    sport
        Source port (UDP/TCP) or ICMP identifier of flow 1; flow k uses ``sport + k - 1``.
        Default: derived from ``flow_salt``.
    flow_salt
        Offsets source ports / ICMP ids so concurrent runs do not share flows; default
        derived from the process id.
    ipv6
        Resolve host names to IPv6 addresses (address literals keep their family).
    """

    protocol: str = "icmp"
    paris: bool = True
    first_hop: int = 1
    max_hops: int = 32
    attempts: int = 3
    timeout: float = 1.0
    pps: float = 100.0
    concurrency: int = 64
    stop_after_silent: int = 5
    allow_private: bool = False
    flow_diversity: int = 1
    port: int | None = None
    payload_len: int = 12
    sport: int | None = None
    flow_salt: int | None = None
    ipv6: bool = False

    def __post_init__(self) -> None:
        proto = self.protocol.lower()
        if proto not in _PROTOCOLS:
            raise ConfigError(f"protocol must be one of {', '.join(_PROTOCOLS)}, not {self.protocol!r}")
        object.__setattr__(self, "protocol", proto)
        checks = [
            (1 <= self.first_hop <= 255, "first_hop must be in 1..255"),
            (self.first_hop <= self.max_hops <= 255, "max_hops must be in first_hop..255"),
            (1 <= self.attempts <= 16, "attempts must be in 1..16"),
            (0 < self.timeout <= 60, "timeout must be in (0, 60] seconds"),
            (0 < self.pps <= 100_000, "pps must be in (0, 100000]"),
            (1 <= self.concurrency <= 100_000, "concurrency must be at least 1"),
            (self.stop_after_silent >= 0, "stop_after_silent must be >= 0"),
            (1 <= self.flow_diversity <= 1024, "flow_diversity must be in 1..1024"),
            (self.port is None or 1 <= self.port <= 65535, "port must be in 1..65535"),
            (self.sport is None or 1 <= self.sport <= 65535, "sport must be in 1..65535"),
            (2 <= self.payload_len <= 1400, "payload_len must be in 2..1400"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        if not self.paris and self.flow_diversity != 1:
            raise ConfigError("flow_diversity applies to Paris mode only (classic varies every probe)")


@dataclass(frozen=True)
class LocalProbe:
    """The host the traceroutes leave from, as an Atlas-like probe."""

    prb_id: int = DEFAULT_LOCAL_PRB_ID
    latitude: float | None = None
    longitude: float | None = None
    country_code: str | None = None
    asn_v4: int | None = None

    def as_atlas_probe(self, *, address_v4: str | None) -> dict[str, Any]:
        """An Atlas API v2 probe object for :func:`probes.store.write_probe_meta`."""
        geometry = None
        if self.latitude is not None and self.longitude is not None:
            geometry = {"type": "Point", "coordinates": [self.longitude, self.latitude]}
        return {
            "id": self.prb_id,
            "asn_v4": self.asn_v4,
            "asn_v6": None,
            "country_code": self.country_code,
            "geometry": geometry,
            "is_anchor": False,
            "address_v4": address_v4,
            "address_v6": None,
            "status": {"id": 1, "name": "Connected"},
            "tags": [{"name": "pathexp local", "slug": "pathexp-local"}],
            "origin": "local",
        }


def load_local_probe(
    path: str | Path | None = None, *, overrides: Mapping[str, Any] | None = None
) -> LocalProbe:
    """The local probe from the ``[local_probe]`` table of a TOML file, then ``overrides``.

    Keys: ``prb_id``, ``latitude``, ``longitude``, ``country_code``, ``asn_v4``.
    ``overrides`` entries that are None are ignored.
    """
    values: dict[str, Any] = {}
    if path is not None:
        try:
            doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read local probe settings {path}: {exc}") from exc
        table = doc.get("local_probe", {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [local_probe] must be a table")
        values.update(table)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = {f.name for f in fields(LocalProbe)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown local probe setting(s): {', '.join(unknown)}")
    try:
        probe = LocalProbe(**values)
    except TypeError as exc:  # pragma: no cover - guarded by the key check
        raise ConfigError(str(exc)) from exc
    _check_probe_id(probe)
    if probe.asn_v4 is not None and (type(probe.asn_v4) is not int or not 0 <= probe.asn_v4 <= _PRB_ID_MAX):
        raise ConfigError(f"local probe asn_v4 must be an integer in 0..{_PRB_ID_MAX}, not {probe.asn_v4!r}")
    if probe.latitude is not None and not -90 <= float(probe.latitude) <= 90:
        raise ConfigError(f"latitude out of range: {probe.latitude}")
    if probe.longitude is not None and not -180 <= float(probe.longitude) <= 180:
        raise ConfigError(f"longitude out of range: {probe.longitude}")
    return probe


#: Largest probe id a result can carry (the store keys results on 32-bit ids).
_PRB_ID_MAX = (1 << 32) - 1


def _check_probe_id(probe: LocalProbe) -> None:
    """Refuse a probe id the store would set aside, before any packet is sent."""
    if type(probe.prb_id) is not int or not 0 < probe.prb_id <= _PRB_ID_MAX:
        raise ConfigError(f"local probe id must be an integer in 1..{_PRB_ID_MAX}, not {probe.prb_id!r}")


#: IPv4 special-purpose space that is not globally reachable (IANA registry) although some
#: Python versions' ``is_global`` says otherwise: 192.0.0.0/24 but for 192.0.0.9 and
#: 192.0.0.10 (e.g. 192.0.0.8, the RFC 7600 dummy address).
_NOT_GLOBAL_V4 = ipaddress.ip_network("192.0.0.0/24")
_GLOBAL_IN_NOT_GLOBAL_V4 = frozenset({ipaddress.ip_address("192.0.0.9"), ipaddress.ip_address("192.0.0.10")})


@dataclass(frozen=True)
class Target:
    """A destination: the name given and the address it resolved to (once)."""

    name: str
    addr: str


def _refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``ip`` is no public destination, or None.

    An IPv6 address that wraps an IPv4 one (6to4 ``2002::/16``, IPv4-mapped, Teredo
    client) is refused when the IPv4 address is.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        teredo = ip.teredo
        for kind, inner in (("6to4", ip.sixtofour), ("IPv4-mapped", ip.ipv4_mapped),
                            ("Teredo", teredo[1] if teredo else None)):
            why = _refusal(inner) if inner is not None else None
            if why is not None:
                return f"{why} {inner} inside a {kind}"
    elif ip in _NOT_GLOBAL_V4 and ip not in _GLOBAL_IN_NOT_GLOBAL_V4:
        return "private/reserved"
    if ip.is_multicast:
        return "multicast"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_private:
        return "private/reserved"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "not globally routable"
    return None


def resolve_targets(
    names: Iterable[str], *, allow_private: bool = False, ipv6: bool = False
) -> list[Target]:
    """Resolve each name once (to IPv4, or IPv6 with ``ipv6``); refuse non-public ones.

    Address literals of either family are taken as they are.

    >>> resolve_targets(["8.8.8.8"])
    [Target(name='8.8.8.8', addr='8.8.8.8')]
    >>> resolve_targets(["10.1.2.3"])
    Traceback (most recent call last):
    ...
    probes.errors.TargetRefused: refusing 10.1.2.3 (10.1.2.3): private/reserved address; pass --allow-private to trace it
    """
    out: list[Target] = []
    seen: set[tuple[str, str]] = set()
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            try:
                family = socket.AF_INET6 if ipv6 else socket.AF_INET
                infos = socket.getaddrinfo(name, None, family, socket.SOCK_RAW)
            except (socket.gaierror, UnicodeError) as exc:
                raise TargetRefused(f"cannot resolve {name!r}: {exc}") from exc
            ip = ipaddress.ip_address(infos[0][4][0])
        reason = _refusal(ip)
        if reason is not None and not allow_private:
            raise TargetRefused(
                f"refusing {name} ({ip}): {reason} address; pass --allow-private to trace it"
            )
        if (name, str(ip)) not in seen:
            seen.add((name, str(ip)))
            out.append(Target(name, str(ip)))
    return out


def local_msm_id(
    dst: str, *, protocol: str, paris: bool, paris_id: int, name: str | None = None
) -> int:
    """The stable local measurement id of (destination, name, protocol, mode, flow).

    ``name`` is the target as given (a host name); it defaults to ``dst``, so two names
    resolving to one address get two measurements.

    >>> from probes.schema import LOCAL_MSM_ID_MIN
    >>> LOCAL_MSM_ID_MIN <= local_msm_id("192.0.2.1", protocol="udp", paris=True, paris_id=1) < 2**32
    True
    """
    # imported here: probes.schema pulls in pyarrow (0.25 s), not needed to trace
    from probes.schema import LOCAL_MSM_ID_MIN

    label = "" if name is None or name == dst else f"|{name}"
    text = f"{dst}|{protocol}|{'paris' if paris else 'classic'}|{paris_id}{label}".encode()
    h = int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")
    # local ids stay below 2**32, the range the store accepts for Atlas keys
    return LOCAL_MSM_ID_MIN + h % ((1 << 32) - LOCAL_MSM_ID_MIN)


@dataclass
class TraceRun:
    """The outcome of :func:`tracer`: Atlas results and counters of what happened."""

    results: list[dict[str, Any]]
    stats: Counter[str] = field(default_factory=Counter)
    src_addr: str | None = None

    @property
    def reached(self) -> int:
        """How many results reached their destination: a reply of the last hop came from it.

        (The hop table's ``destination_reached`` looks at every hop; this is what a trace
        run reports as it ends.)

        >>> hop = lambda *addrs: {"result": [{"from": a} for a in addrs]}
        >>> TraceRun([
        ...     {"dst_addr": "192.0.2.1", "result": [hop("198.51.100.1"), hop("192.0.2.1")]},
        ...     {"dst_addr": "192.0.2.2", "result": [hop("198.51.100.1"), hop()]},
        ...     {"dst_addr": "192.0.2.3", "result": []},
        ... ]).reached
        1
        """
        return sum(
            1 for r in self.results
            if r["result"] and any(x.get("from") == r["dst_addr"] for x in r["result"][-1]["result"])
        )


def _source_for(dst: str) -> str:
    """The local address the kernel would use toward ``dst`` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((dst, 9))
        except OSError as exc:
            raise TargetRefused(f"no route to {dst}: {exc}") from exc
        return s.getsockname()[0]


def _flow_ports(options: TraceOptions, salt: int, paris_id: int) -> tuple[int, int]:
    """(sport-or-icmp-id, dport) of flow ``paris_id``."""
    base = options.sport if options.sport is not None else 33000 + (salt * 64) % 28000
    sport = 1 + (base - 1 + paris_id - 1) % 65535
    if options.protocol == "icmp":
        return sport & 0xFFFF, 0
    default_port = 33435 if options.protocol == "udp" else 80
    return sport, options.port or default_port


def tracer(
    targets: Iterable[str | Target],
    *,
    options: TraceOptions = TraceOptions(),
    probe: LocalProbe = LocalProbe(),
) -> TraceRun:
    """Trace every target; return one Atlas traceroute result per (target, flow).

    Parameters
    ----------
    targets
        Addresses or hostnames (resolved once, recorded as ``dst_name``), or
        :class:`Target` objects.
    options
        :class:`TraceOptions`.
    probe
        The local probe (id and location) the results are attributed to.

    Raises
    ------
    TargetRefused
        A target is private/reserved/multicast (without ``allow_private``) or unresolvable.
    RawSocketPermission
        The process may not open raw sockets (not root, no CAP_NET_RAW).
    """
    _check_probe_id(probe)
    resolved: list[Target] = []
    names: list[str] = []
    for t in targets:
        if isinstance(t, Target):
            resolved.extend(resolve_targets([t.addr], allow_private=options.allow_private))
            resolved[-1] = Target(t.name, resolved[-1].addr)
        else:
            names.append(t)
    resolved.extend(
        resolve_targets(names, allow_private=options.allow_private, ipv6=options.ipv6)
    )
    salt = options.flow_salt if options.flow_salt is not None else os.getpid()
    proto = options.protocol.upper()
    run = TraceRun(results=[])
    if not resolved:
        return run
    load_scapy()
    # raw sockets first: without permission, say so before anything else can fail
    families = {6 if ":" in t.addr else 4 for t in resolved}
    with RawSockets(tcp=proto == "TCP", v4=4 in families, v6=6 in families) as sockets:
        jobs = _plan_jobs(resolved, options, salt)
        run.src_addr = jobs[0][2].src
        run.stats.update(
            run_jobs(
                [j for _, _, j in jobs], pps=options.pps, concurrency=options.concurrency,
                timeout=options.timeout, sockets=sockets,
            )
        )
    for target, paris_id, job in jobs:
        run.results.append(_atlas_result(target, paris_id, job, options, probe))
        run.stats[f"stop_{job.stop_reason}"] += 1
    run.stats["traces"] = len(jobs)
    return run


def _plan_jobs(
    resolved: list[Target], options: TraceOptions, salt: int
) -> list[tuple[Target, int, TraceJob]]:
    """One job per (target, flow), with the source address the kernel picks for it."""
    proto = options.protocol.upper()
    jobs: list[tuple[Target, int, TraceJob]] = []
    src_cache: dict[str, str] = {}
    repeats: Counter[str] = Counter()  # names resolving to one address get distinct flows
    for target in resolved:
        src = src_cache.get(target.addr) or _source_for(target.addr)
        src_cache[target.addr] = src
        shift = repeats[target.addr] * options.flow_diversity
        repeats[target.addr] += 1
        flows = range(1, options.flow_diversity + 1) if options.paris else [0]
        for paris_id in flows:
            sport, dport = _flow_ports(options, salt, max(paris_id, 1) + shift)
            job = TraceJob(
                dst=target.addr, src=src, proto=proto, paris=options.paris,
                sport=sport, dport=dport, first_hop=options.first_hop,
                max_hops=options.max_hops, attempts=options.attempts,
                stop_after_silent=options.stop_after_silent, payload_len=options.payload_len,
            )
            jobs.append((target, paris_id, job))
    return jobs


def _reply_entry(probe: Any, dst: str) -> dict[str, Any]:
    reply = probe.reply
    if reply is None:
        return {"x": "*"}
    entry: dict[str, Any] = {
        "from": reply.src,
        "rtt": round(probe.rtt_ms, 3),
        "size": reply.size,
        "ttl": reply.ttl,
    }
    if reply.quoted_ttl is not None and reply.quoted_ttl != 1:
        entry["ittl"] = reply.quoted_ttl
    if reply.icmp_type == 3:
        # Atlas leaves port-unreachable from the destination itself unmarked
        if not (reply.icmp_code == 3 and reply.src == dst):
            entry["err"] = _ERR_CODES.get(reply.icmp_code or 0, reply.icmp_code)
    if reply.tcp_flags is not None:
        entry["flags"] = "".join(c for bit, c in _TCP_FLAGS if reply.tcp_flags & bit)
    return entry


def _atlas_result(
    target: Target, paris_id: int, job: TraceJob, options: TraceOptions, probe: LocalProbe
) -> dict[str, Any]:
    proto = options.protocol.upper()
    msm_id = local_msm_id(target.addr, protocol=options.protocol, paris=options.paris,
                          paris_id=paris_id, name=target.name)
    hops = []
    for hop_probes in job.hops:
        if not hop_probes:
            continue
        hops.append({
            "hop": hop_probes[0].ttl,
            "result": [_reply_entry(p, job.dst) for p in hop_probes],
        })
    af = 6 if ":" in target.addr else 4
    size = (40 if af == 6 else 20) + (20 if proto == "TCP" else 8 + options.payload_len)
    flow: dict[str, int] = (
        {"icmp_id": job.sport} if proto == "ICMP" else {"sport": job.sport, "dport": job.dport}
    )
    return {
        "af": af,
        "dst_addr": target.addr,
        "dst_name": target.name,
        "src_addr": job.src,
        # Atlas "from" is the probe's public address: known only when the source is public
        "from": job.src if ipaddress.ip_address(job.src).is_global else None,
        "proto": proto,
        "paris_id": paris_id,
        "size": size,
        "msm_id": msm_id,
        "group_id": msm_id,
        "prb_id": probe.prb_id,
        "timestamp": int(job.started),
        "endtime": int(job.ended),
        "type": "traceroute",
        "msm_name": "Traceroute",
        "result": hops,
        "origin": "local",
        "pathexp_local": True,
        "pathexp": {
            "tool": "pathexp trace",
            "mode": "paris" if options.paris else "classic",
            "flow": flow,
            "attempts": options.attempts,
            "timeout": options.timeout,
            "first_hop": options.first_hop,
            "max_hops": options.max_hops,
            "stop_reason": job.stop_reason,
            "probe": {
                "latitude": probe.latitude,
                "longitude": probe.longitude,
                "country_code": probe.country_code,
            },
        },
    }


def trace_campaign(
    campaign: Campaign,
    targets: Iterable[str | Target],
    *,
    options: TraceOptions = TraceOptions(),
    probe: LocalProbe = LocalProbe(),
) -> tuple[TraceRun, Any]:
    """Trace ``targets`` and store the results in ``campaign`` (origin ``"local"``).

    Returns the :class:`TraceRun` and the store's ``IngestReport``; the local probe's
    metadata (id, location, source address) is merged into the campaign's probe table.
    """
    from probes import store

    run = tracer(targets, options=options, probe=probe)
    report = store.ingest_results(campaign, run.results, origin="local")
    store.write_probe_meta(campaign, [probe.as_atlas_probe(address_v4=run.src_addr)], origin="local")
    return run, report

