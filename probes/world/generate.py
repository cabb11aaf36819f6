"""Generate the synthetic world: :class:`World` rebuilt from a seed, :func:`generate_world`.

:func:`generate_world` writes Atlas results and metadata (API v2 shapes), reference data
(CAIDA pfx2as, PeeringDB API JSON, CAIDA IXP jsonl, CAIDA as2org and as-rel, APNIC
delegated-extended) and the ground truth (Parquet and JSON) into one folder. The same
seed gives byte-identical files. :class:`World` rebuilds the world from its seed and
produces Atlas-format traceroutes on demand (used by the stand-in Atlas API server).
The topology, routing, hop-level traces and file formats live in the sibling modules.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import ipaddress
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from probes.errors import ConfigError
from probes.fileio import PARQUET_OPTIONS, atomic_path, write_bytes, write_json, write_parquet
from probes.world.artefacts import HOP_ARTEFACTS, Artefacts, apply_artefacts
from probes.world.routing import compute_leak_routes, compute_routes
from probes.world.topology import (
    SIZES,
    Destination,
    Probe,
    Topology,
    build_topology,
    stable_hash,
)
from probes.world.trace import TraceBuilder, TraceOutput
from probes.world.writers import (
    TRUTH_ASES_FILE,
    TRUTH_CITIES_FILE,
    TRUTH_FLAGGED_SCHEMA,
    TRUTH_HOP_SCHEMA,
    TRUTH_IXP_SCHEMA,
    TRUTH_SUMMARY_FILE,
    TRUTH_TRACE_SCHEMA,
    anchor_object,
    as2org_text,
    as_rel_text,
    caida_ixp_jsonl,
    delegated_apnic_text,
    gzip_bytes,
    measurement_object,
    ndjson,
    peeringdb_objects,
    pfx2as_text,
    probe_object,
    readme_text,
    truth_table_file,
)

__all__ = ["World", "WorldManifest", "ScheduledTrace", "generate_world", "WORLD_START"]

#: First measurement round of every world: 2026-03-02T00:00:00Z.
WORLD_START = 1772409600
#: First synthetic measurement id (far below probes.schema.LOCAL_MSM_ID_MIN).
_MSM_BASE = 91_000_000
_PROTOS = ("ICMP", "ICMP", "ICMP", "UDP", "ICMP", "TCP", "ICMP", "UDP", "ICMP", "ICMP")


@dataclass(frozen=True)
class ScheduledTrace:
    """One traceroute of the world's measurement schedule."""

    msm_id: int
    prb_id: int
    dst_addr: str
    timestamp: int
    proto: str
    paris_id: int


@dataclass(frozen=True)
class WorldManifest:
    """What :func:`generate_world` wrote.

    Attributes
    ----------
    out_dir : pathlib.Path
    seed, size : int, str
    files : dict
        Relative path -> sha256 of every file written (``world.json`` excluded).
    counts : dict
        ASes, IXPs, probes, measurements, traceroutes, hops ...
    window : tuple of int
        The diversion window ``[start, end)`` in Unix seconds.
    """

    out_dir: Path
    seed: int
    size: str
    files: dict[str, str]
    counts: dict[str, int]
    window: tuple[int, int]
    artefacts: Artefacts | None = None

    def as_dict(self) -> dict:
        return {
            "generator": "pathexp.world",
            "format_version": 1,
            "synthetic": True,
            "seed": self.seed,
            "size": self.size,
            "artefacts": None if self.artefacts is None else self.artefacts.as_dict(),
            "counts": self.counts,
            "window": {"start": self.window[0], "end": self.window[1]},
            "reference": {
                k: [str(p.relative_to(self.out_dir)) for p in v]
                for k, v in self.reference_files().items()
            },
            "files": self.files,
        }

    def reference_files(self) -> dict[str, list[Path]]:
        """Reference data files by dataset kind (the kinds of :mod:`analysis.datasets`).

        ``pfx2as``, ``peeringdb``, ``caida-ixp``, ``as2org``, ``rir-delegated``, ``as-rel``
        (CAIDA AS relationships) and ``bgpdump`` (a route collector's RIB and the leak's
        updates, ``bgpdump -m`` text).
        """
        out: dict[str, list[Path]] = {}
        for rel in sorted(self.files):
            parts = rel.split("/")
            if parts[0] == "reference":
                out.setdefault(parts[1], []).append(self.out_dir / rel)
        return out

    def result_files(self) -> list[Path]:
        """The Atlas result files (gzip NDJSON, one per measurement)."""
        return [self.out_dir / r for r in sorted(self.files) if r.startswith("atlas/results/")]


def _ip_int(addr: str) -> int:
    try:
        a, b, c, d = (int(x) for x in addr.split("."))
    except ValueError as exc:
        raise ConfigError(f"not an IPv4 address: {addr!r}") from exc
    if not all(0 <= x <= 255 for x in (a, b, c, d)):
        raise ConfigError(f"not an IPv4 address: {addr!r}")
    return a << 24 | b << 16 | c << 8 | d


@dataclass(repr=False)
class World:
    """The synthetic world, rebuilt from ``(seed, size)``.

    Use :meth:`build` or :meth:`load`; the constructor takes a built :class:`Topology`.
    """

    topo: Topology
    _builder: TraceBuilder = field(init=False, repr=False)
    _routes: dict[int, dict[int, tuple[int, ...]]] = field(default_factory=dict, repr=False)
    _leaks: dict[int, dict[int, tuple[int, ...]]] = field(default_factory=dict, repr=False)
    _prefixes: list[tuple[int, int, int]] = field(default_factory=list, repr=False)
    _probe_by_id: dict[int, Probe] = field(default_factory=dict, repr=False)
    _dest_by_addr: dict[str, Destination] = field(default_factory=dict, repr=False)
    _leaked24: frozenset[int] = field(default=frozenset(), repr=False)

    def __repr__(self) -> str:
        return f"World(seed={self.seed}, size={self.size!r})"

    def __post_init__(self) -> None:
        self._builder = TraceBuilder(self.topo)
        self._probe_by_id = {p.prb_id: p for p in self.topo.probes}
        self._dest_by_addr = {d.addr: d for d in self.topo.destinations}
        self._leaked24 = frozenset(
            _ip_int(d.addr) >> 8 for d in self.topo.destinations if d.asn in self.topo.leaked_asns
        )
        rows = []
        for asn, a in self.topo.ases.items():
            for pfx in a.prefixes:
                net = ipaddress.IPv4Network(pfx)
                rows.append((net.prefixlen, int(net.network_address), asn))
        # longest first, then lowest address and ASN: deterministic longest match
        self._prefixes = sorted(rows, key=lambda r: (-r[0], r[1], r[2]))

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, *, seed: int = 0, size: str = "small", artefacts: Artefacts | None = None) -> World:
        """Build the world for ``seed`` and ``size`` ("small" or "large").

        ``artefacts``: the measurement artefacts' rates (:class:`Artefacts`); None, the
        default, builds the clean world.
        """
        if size not in SIZES:
            raise ConfigError(f"unknown world size {size!r}; choose one of {sorted(SIZES)}")
        if not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"world seed must be a non-negative integer, got {seed!r}")
        if artefacts is not None and not isinstance(artefacts, Artefacts):
            raise ConfigError(f"artefacts must be an Artefacts or None, got {artefacts!r}")
        topo = build_topology(seed=seed, size=size)
        if artefacts is not None:
            topo.artefacts = apply_artefacts(topo, artefacts)
        return cls(topo)

    @property
    def artefacts(self) -> Artefacts | None:
        """The artefact rates of this world (None: clean)."""
        return None if self.topo.artefacts is None else self.topo.artefacts.rates

    @classmethod
    def load(cls, path: str | Path) -> World:
        """Rebuild the world a folder written by :func:`generate_world` came from."""
        manifest = Path(path) / "world.json"
        try:
            info = orjson.loads(manifest.read_bytes())
        except FileNotFoundError as exc:
            raise ConfigError(f"{manifest}: not a generated world (no world.json)") from exc
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"{manifest}: unreadable world manifest: {exc}") from exc
        if info.get("generator") != "pathexp.world":
            raise ConfigError(f"{manifest}: not written by pathexp world")
        rates = info.get("artefacts")
        world = cls.build(
            seed=int(info["seed"]),
            size=str(info["size"]),
            artefacts=None if rates is None else Artefacts.from_dict(rates),
        )
        want = info.get("files", {}).get("atlas/probes.json")
        if want != _sha(_api_list(world.probes())):
            raise ConfigError(
                f"{manifest}: the folder was written by another version of the world "
                f"generator (probes differ); regenerate it with `pathexp world generate`"
            )
        return world

    # ------------------------------------------------------------------ properties
    @property
    def seed(self) -> int:
        return self.topo.seed

    @property
    def size(self) -> str:
        return self.topo.size

    @property
    def interval(self) -> int:
        return int(self.topo.params.interval_h * 3600)

    @property
    def end(self) -> int:
        """End of the measurement schedule (Unix seconds, exclusive)."""
        return WORLD_START + int(self.topo.params.days * 86400)

    @property
    def window(self) -> tuple[int, int]:
        """The diversion window ``[start, end)`` (Unix seconds)."""
        span_h = self.topo.params.days * 24
        ih = self.topo.params.interval_h
        start_h = int(span_h * 0.375 // ih) * ih
        return WORLD_START + int(start_h * 3600), WORLD_START + int(
            (start_h + span_h * 0.3125) * 3600
        )

    @property
    def leaked_prefixes(self) -> list[str]:
        """The /24 more-specifics AS4134 announces during the window."""
        nets = {
            str(ipaddress.IPv4Network(d.addr + "/24", strict=False))
            for d in self.topo.destinations
            if d.asn in self.topo.leaked_asns
        }
        return sorted(nets, key=lambda p: _ip_int(p.split("/")[0]))

    # ------------------------------------------------------------------ Atlas objects
    def probe(self, prb_id: int) -> Probe:
        p = self._probe_by_id.get(prb_id)
        if p is not None:
            return p
        raise ConfigError(f"probe {prb_id} is not in the synthetic world")

    def probes(self) -> list[dict]:
        """Every probe (anchors included) as an Atlas API v2 probe object, by id."""
        return [probe_object(self.topo, p, now=self.end) for p in self.topo.probes]

    def anchors(self) -> list[dict]:
        """The anchors as Atlas API v2 anchor objects."""
        anchors = [p for p in self.topo.probes if p.is_anchor]
        return [anchor_object(self.topo, p, index=i + 1) for i, p in enumerate(anchors)]

    def _msm_plan(self) -> list[tuple[int, Destination, str, list[int]]]:
        topo = self.topo
        rng = np.random.Generator(np.random.PCG64([topo.seed, 5]))
        regular = [p for p in topo.probes if not p.is_anchor]
        cn = [p for p in regular if p.country == "CN"]
        others = [p for p in regular if p.country != "CN"]
        anchors = [p for p in topo.probes if p.is_anchor]
        plan = []
        k = topo.params.probes_per_msm
        for i, dest in enumerate(topo.destinations):
            chosen = [cn[int(rng.integers(0, len(cn)))]] if cn else []
            idx = rng.choice(len(others), size=k - 2, replace=False)
            chosen += [others[int(j)] for j in sorted(idx)]
            chosen.append(anchors[int(rng.integers(0, len(anchors)))])
            ids = sorted({p.prb_id for p in chosen if p.asn != dest.asn})
            plan.append((_MSM_BASE + i, dest, _PROTOS[i % len(_PROTOS)], ids))
        return plan

    def measurements(self) -> list[dict]:
        """The world's measurements as Atlas API v2 measurement objects."""
        out = []
        for msm_id, dest, proto, ids in self._msm_plan():
            start = WORLD_START + (msm_id - _MSM_BASE) * 7 % 600
            out.append(
                measurement_object(
                    msm_id=msm_id,
                    dst_addr=dest.addr,
                    dst_asn=dest.asn,
                    proto=proto,
                    interval=self.interval,
                    start=start,
                    stop=self.end,
                    probes=ids,
                )
            )
        return out

    def schedule(self, *, msm_ids: set[int] | None = None) -> Iterator[ScheduledTrace]:
        """Every traceroute of the measurement schedule, by measurement then time."""
        rounds = int(self.topo.params.days * 24 // self.topo.params.interval_h)
        for msm_id, dest, proto, ids in self._msm_plan():
            if msm_ids is not None and msm_id not in msm_ids:
                continue
            start = WORLD_START + (msm_id - _MSM_BASE) * 7 % 600
            for r in range(rounds):
                for prb_id in ids:
                    spread = stable_hash("spread", msm_id, prb_id) % 240
                    paris = (r + stable_hash("paris", prb_id)) % 16 + 1
                    yield ScheduledTrace(
                        msm_id,
                        prb_id,
                        dest.addr,
                        start + r * self.interval + spread,
                        proto,
                        paris,
                    )

    # ------------------------------------------------------------------ routing
    def destination(self, dst_addr: str) -> Destination | None:
        """The host ``dst_addr`` in the world (None: no AS announces it)."""
        d = self._dest_by_addr.get(dst_addr)
        if d is not None:
            return d
        try:
            n = _ip_int(dst_addr)
        except ValueError as exc:
            raise ConfigError(f"not an IPv4 address: {dst_addr!r}") from exc
        for plen, net, asn in self._prefixes:
            if n >> (32 - plen) == net >> (32 - plen):
                a = self.topo.ases[asn]
                for p in self.topo.probes:
                    if p.public_addr == dst_addr:
                        return Destination(dst_addr, asn, p.city, dst_addr)
                return Destination(dst_addr, asn, a.cities[0], dst_addr)
        return None

    def routes(self, dest_asn: int) -> dict[int, tuple[int, ...]]:
        """Baseline AS paths toward ``dest_asn`` from every AS."""
        r = self._routes.get(dest_asn)
        if r is None:
            r = compute_routes(self.topo, dest_asn)
            self._routes[dest_asn] = r
        return r

    def leak_routes(self, dest_asn: int) -> dict[int, tuple[int, ...]]:
        """AS paths that change during the diversion toward a leaked destination AS."""
        if dest_asn not in self.topo.leaked_asns:
            return {}
        r = self._leaks.get(dest_asn)
        if r is None:
            r = compute_leak_routes(self.topo, dest_asn, self.routes(dest_asn))
            self._leaks[dest_asn] = r
        return r

    def as_path(
        self, src_asn: int, dst_addr: str, timestamp: int
    ) -> tuple[tuple[int, ...] | None, bool]:
        """The AS path from ``src_asn`` to ``dst_addr`` at ``timestamp``; True if leaked."""
        dest = self.destination(dst_addr)
        if dest is None:
            return None, False
        base = self.routes(dest.asn).get(src_asn)
        start, end = self.window
        if start <= timestamp < end and self._is_leaked(dst_addr):
            leak = self.leak_routes(dest.asn).get(src_asn)
            if leak is not None:
                return leak, True
        return base, False

    def _is_leaked(self, dst_addr: str) -> bool:
        return _ip_int(dst_addr) >> 8 in self._leaked24

    def bgp_peers(self) -> list[int]:
        """The route collector's BGP peers: every tier-1 and transit AS (full feeds)."""
        return [a for a in sorted(self.topo.ases) if self.topo.ases[a].kind in ("tier1", "transit")]

    def bgpdump_text(self) -> bytes:
        """What a route collector peering with :meth:`bgp_peers` records, as ``bgpdump -m``.

        A RIB dump at the start of the schedule (``TABLE_DUMP2|..|B|``: every peer's best
        path to every destination AS's prefixes), then the route leak: at the window start
        each peer that takes a leaked /24 announces it with its leaked path (``BGP4MP|..|A|``),
        at the window end it withdraws it (``|W|``). Peer addresses are the first address of
        each peer's infrastructure block.
        """
        topo = self.topo
        peers = self.bgp_peers()
        addr = {a: str(ipaddress.IPv4Network(topo.ases[a].infra).network_address + 1) for a in peers}
        tail = "|IGP|{nh}|0|0||NAG||"
        lines = []
        dest_asns = sorted({d.asn for d in topo.destinations})
        for dst in dest_asns:
            routes = self.routes(dst)
            for prefix in topo.ases[dst].prefixes:
                for peer in peers:
                    path = routes.get(peer)
                    if path is not None:
                        lines.append(f"TABLE_DUMP2|{WORLD_START}|B|{addr[peer]}|{peer}|{prefix}|"
                                     f"{' '.join(map(str, path))}" + tail.format(nh=addr[peer]))
        start, end = self.window
        leaked = sorted({(d.asn, str(ipaddress.IPv4Network(d.addr + "/24", strict=False)))
                         for d in topo.destinations if d.asn in topo.leaked_asns})
        withdraws = []
        for dst, prefix in leaked:
            leak = self.leak_routes(dst)
            for peer in peers:
                if peer in leak:
                    lines.append(f"BGP4MP|{start}|A|{addr[peer]}|{peer}|{prefix}|{' '.join(map(str, leak[peer]))}"
                                 + tail.format(nh=addr[peer]))
                    withdraws.append(f"BGP4MP|{end}|W|{addr[peer]}|{peer}|{prefix}")
        return ("\n".join(lines + withdraws) + "\n").encode()

    # ------------------------------------------------------------------ traceroutes
    def trace_output(
        self,
        prb_id: int,
        dst_addr: str,
        timestamp: int,
        *,
        msm_id: int,
        proto: str = "ICMP",
        paris_id: int = 1,
    ) -> TraceOutput:
        """The Atlas result of one traceroute together with its ground truth."""
        if proto not in ("ICMP", "UDP", "TCP"):
            raise ConfigError(f"unsupported traceroute protocol {proto!r}")
        probe = self.probe(prb_id)
        dest = self.destination(dst_addr)
        path, leak = self.as_path(probe.asn, dst_addr, timestamp)
        start, end = self.window
        return self._builder.build(
            seed=self.seed,
            probe=probe,
            dest=dest,
            dst_addr=dst_addr,
            path=path,
            timestamp=int(timestamp),
            msm_id=int(msm_id),
            proto=proto,
            paris_id=int(paris_id),
            leak=leak,
            in_window=start <= timestamp < end,
        )

    def traceroute(
        self,
        prb_id: int,
        dst_addr: str,
        timestamp: int,
        *,
        msm_id: int,
        proto: str = "ICMP",
        paris_id: int = 1,
    ) -> dict:
        """One Atlas-format traceroute result (a dict as the Atlas API returns it)."""
        return self.trace_output(
            prb_id, dst_addr, timestamp, msm_id=msm_id, proto=proto, paris_id=paris_id
        ).result

    def measurement_results(
        self,
        msm_id: int,
        *,
        start: int | None = None,
        stop: int | None = None,
        probe_ids: set[int] | None = None,
    ) -> list[dict]:
        """The scheduled results of one world measurement, as the Atlas results endpoint.

        Parameters
        ----------
        msm_id : int
            A measurement id of :meth:`measurements`.
        start, stop : int, optional
            Keep results with ``start <= timestamp <= stop`` (Unix seconds).
        probe_ids : set of int, optional
            Keep only these probes.

        Raises
        ------
        ConfigError
            ``msm_id`` is not a measurement of this world.
        """
        plan = {m for m, _d, _p, _i in self._msm_plan()}
        if msm_id not in plan:
            raise ConfigError(f"measurement {msm_id} is not in the synthetic world")
        out = []
        for s in self.schedule(msm_ids={msm_id}):
            if start is not None and s.timestamp < start:
                continue
            if stop is not None and s.timestamp > stop:
                continue
            if probe_ids is not None and s.prb_id not in probe_ids:
                continue
            out.append(
                self.traceroute(
                    s.prb_id,
                    s.dst_addr,
                    s.timestamp,
                    msm_id=s.msm_id,
                    proto=s.proto,
                    paris_id=s.paris_id,
                )
            )
        return out

    def affected_pairs(self) -> list[dict]:
        """Scheduled (probe, destination) pairs whose path the diversion changes."""
        out = []
        for msm_id, dest, _proto, ids in self._msm_plan():
            if not self._is_leaked(dest.addr):
                continue
            leak = self.leak_routes(dest.asn)
            base = self.routes(dest.asn)
            for prb_id in ids:
                asn = self.probe(prb_id).asn
                if asn in leak:
                    out.append(
                        {
                            "msm_id": msm_id,
                            "prb_id": prb_id,
                            "dst_addr": dest.addr,
                            "baseline_as_path": list(base.get(asn, ())),
                            "diverted_as_path": list(leak[asn]),
                        }
                    )
        return out


# ---------------------------------------------------------------------------- generation


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _exposure(traces: list[dict], families: list[str]) -> dict:
    def share(rows: list[dict], fam: str, col: str) -> dict:
        n = len(rows)
        k = sum(1 for t in rows if fam in t[col])
        return {"n": n, "k": k, "share": (k / n) if n else None}

    parts = {
        "all": traces,
        "baseline": [t for t in traces if not t["in_window"]],
        "window": [t for t in traces if t["in_window"]],
    }
    return {
        fam: {
            part: {
                "transit": share(rows, fam, "families"),
                "transit_us_pop": share(rows, fam, "families_us"),
                "transit_observable": share(rows, fam, "families_observable"),
            }
            for part, rows in parts.items()
        }
        for fam in families
    }


def generate_world(
    out_dir: str | Path, *, seed: int = 0, size: str = "small", artefacts: Artefacts | None = None
) -> WorldManifest:
    """Generate the synthetic world into ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Folder to write (created; files already there with the same names are replaced).
    seed : int
        World seed; the same seed gives byte-identical files.
    size : {"small", "large"}
        "small": about 270 ASes, 150 probes, 30 destinations, 7,200 traceroutes over 4 days;
        "large": about 700 ASes, 800 probes, 60 destinations, ~100k traceroutes over 7 days.
    artefacts : Artefacts, optional
        Rates of the measurement artefacts to model (:class:`probes.world.artefacts.Artefacts`:
        neighbour-numbered links, third-party replies, unresponsive and rate-limiting
        routers, invisible MPLS, siblings, moved IXP ports, PeeringDB facility omissions,
        imprecise probe locations). None (the default): the clean world. The rates used
        and the realised counts are in ``truth/world.json`` (``world_artefacts``).

    Returns
    -------
    WorldManifest
    """
    world = World.build(seed=seed, size=size, artefacts=artefacts)
    topo = world.topo
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"cannot write the world into {out}: it is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the world folder {out}: {exc}") from exc
    files: dict[str, bytes] = {}
    date = WORLD_START

    # Atlas metadata
    files["atlas/probes.json"] = _api_list(world.probes())
    files["atlas/anchors.json"] = _api_list(world.anchors())
    msms = world.measurements()
    files["atlas/measurements.json"] = _api_list(msms)

    # traceroutes and truth, streamed one measurement at a time
    digests: dict[str, str] = {}
    traces: list[dict] = []
    ixp_x: list[dict] = []
    flag_x: list[dict] = []
    hops_rel = truth_table_file("hops")
    n_hops = 0
    hop_labels: dict[str, int] = {}
    router_hops = 0
    with atomic_path(out / hops_rel) as tmp_hops:
        writer = pq.ParquetWriter(tmp_hops, TRUTH_HOP_SCHEMA, **PARQUET_OPTIONS)
        try:
            for msm_id, group in itertools.groupby(world.schedule(), key=lambda s: s.msm_id):
                results: list[dict] = []
                hops: list[dict] = []
                for s in group:
                    o = world.trace_output(
                        s.prb_id,
                        s.dst_addr,
                        s.timestamp,
                        msm_id=s.msm_id,
                        proto=s.proto,
                        paris_id=s.paris_id,
                    )
                    results.append(o.result)
                    traces.append(o.trace)
                    hops.extend(o.hops)
                    for h in o.hops:
                        if h["kind"] in ("router", "border", "ixp"):
                            router_hops += 1
                        if h["artefact"] is not None:
                            hop_labels[h["artefact"]] = hop_labels.get(h["artefact"], 0) + 1
                    ixp_x.extend(o.ixp_crossings)
                    flag_x.extend(o.flagged_crossings)
                rel = f"atlas/results/{msm_id}.ndjson.gz"
                data = gzip_bytes(ndjson(results))
                write_bytes(out / rel, data)
                digests[rel] = _sha(data)
                writer.write_table(pa.Table.from_pylist(hops, schema=TRUTH_HOP_SCHEMA))
                n_hops += len(hops)
        finally:
            writer.close()
    digests[hops_rel] = _sha((out / hops_rel).read_bytes())

    # reference data
    ymd = _dt.datetime.fromtimestamp(date, _dt.timezone.utc).strftime("%Y%m%d")
    files[f"reference/pfx2as/routeviews-rv2-{ymd}-1200.pfx2as.gz"] = gzip_bytes(pfx2as_text(topo))
    for name, obj in peeringdb_objects(topo, date=date).items():
        files[f"reference/peeringdb/{name}.json"] = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    files[f"reference/caida-ixp/ixs_{ymd[:6]}.jsonl"] = caida_ixp_jsonl(topo, date=date)
    files[f"reference/as2org/{ymd}.as-org2info.txt"] = as2org_text(topo, date=date)
    files[f"reference/as-rel/{ymd}.as-rel.txt"] = as_rel_text(topo, date=date)
    files[f"reference/rir-delegated/delegated-apnic-extended-{ymd}"] = delegated_apnic_text(
        date=date
    )
    files[f"reference/bgpdump/rrc-synthetic.{ymd}.bgpdump.txt.gz"] = gzip_bytes(world.bgpdump_text())

    # truth
    families = sorted({a.family for a in topo.ases.values() if a.family})
    start, end = world.window
    affected = world.affected_pairs()
    summary = {
        "synthetic": True,
        "seed": seed,
        "size": size,
        "schedule": {"start": WORLD_START, "end": world.end, "interval": world.interval},
        "diversion": {
            "kind": "more-specific route leak",
            "leaker_asn": topo.leaker,
            "start": start,
            "end": end,
            "leaked_prefixes": world.leaked_prefixes,
            "leaked_dst_asns": topo.leaked_asns,
            "affected_pairs": affected,
            "traces_diverted": sum(1 for t in traces if t["leak"]),
        },
        "exposure": _exposure(traces, families),
        "world_artefacts": _artefact_summary(topo, router_hops, hop_labels),
        "flagged_pops": _pop_counts(flag_x),
        "families": {
            fam: sorted(a.asn for a in topo.ases.values() if a.family == fam) for fam in families
        },
        "counts": {
            "traces": len(traces),
            "hops": n_hops,
            "ixp_crossings": len(ixp_x),
            "flagged_crossings": len(flag_x),
            "loops": sum(1 for t in traces if t["loop"]),
            "reached": sum(1 for t in traces if t["reached"]),
        },
    }
    files[TRUTH_SUMMARY_FILE] = (
        orjson.dumps(summary, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )
    files[TRUTH_ASES_FILE] = orjson.dumps(
        [
            {
                "asn": a.asn,
                "name": a.name,
                "kind": a.kind,
                "country": a.country,
                "continent": a.continent,
                "family": a.family,
                "org_id": a.org_id,
                "cities": a.cities,
                "prefixes": a.prefixes,
                "infra": a.infra,
                "filters_leaks": a.filters_leaks,
            }
            for a in sorted(topo.ases.values(), key=lambda x: x.asn)
        ],
        option=orjson.OPT_SORT_KEYS,
    )
    files[TRUTH_CITIES_FILE] = orjson.dumps(
        {
            k: {"name": c.name, "country": c.country, "lat": c.lat, "lon": c.lon}
            for k, c in topo.cities.items()
        },
        option=orjson.OPT_SORT_KEYS,
    )

    names = sorted(
        [
            *files,
            *digests,
            "README.md",
            truth_table_file("traces"),
            truth_table_file("ixp_crossings"),
            truth_table_file("flagged_crossings"),
        ]
    )
    files["README.md"] = readme_text(seed=seed, size=size, files=names)
    for rel, data in sorted(files.items()):
        write_bytes(out / rel, data)
        digests[rel] = _sha(data)
    tables = {
        truth_table_file("traces"): pa.Table.from_pylist(traces, schema=TRUTH_TRACE_SCHEMA),
        truth_table_file("ixp_crossings"): pa.Table.from_pylist(ixp_x, schema=TRUTH_IXP_SCHEMA),
        truth_table_file("flagged_crossings"): pa.Table.from_pylist(
            flag_x, schema=TRUTH_FLAGGED_SCHEMA
        ),
    }
    for rel, table in tables.items():
        write_parquet(table, out / rel)
        digests[rel] = _sha((out / rel).read_bytes())
    counts = {
        "ases": len(topo.ases),
        "ixps": len(topo.ixps),
        "probes": len(topo.probes),
        "anchors": sum(1 for p in topo.probes if p.is_anchor),
        "measurements": len(msms),
        "traces": len(traces),
        "hops": n_hops,
        "ixp_crossings": len(ixp_x),
        "flagged_crossings": len(flag_x),
        "traces_diverted": sum(1 for t in traces if t["leak"]),
    }
    manifest = WorldManifest(
        out, seed, size, dict(sorted(digests.items())), counts, (start, end), artefacts
    )
    write_json(out / "world.json", manifest.as_dict())
    return manifest


def _artefact_summary(topo: Topology, router_hops: int, hop_labels: dict[str, int]) -> dict:
    """``world_artefacts``: the rates used (null: clean world) and what they produced."""
    st = topo.artefacts
    realised: dict[str, int] = {"router_hops": router_hops}
    realised.update({f"hops:{k}": hop_labels.get(k, 0) for k in HOP_ARTEFACTS})
    n_cp = sum(len(v) for v in topo.providers.values())
    realised["customer_provider_pairs"] = n_cp
    realised["private_c2p_interconnects"] = sum(
        len(topo.links[(min(c, p), max(c, p))]) for c in topo.providers for p in topo.providers[c]
    )
    realised["transit_asns"] = sum(1 for a in topo.ases.values() if a.kind in ("tier1", "transit"))
    realised["ixp_ports"] = sum(len(x.members) for x in topo.ixps.values())
    realised["probes"] = sum(1 for p in topo.probes if not p.is_anchor)
    if st is not None:
        realised.update(st.realised())
    return {
        "enabled": st is not None,
        "rates": None if st is None else st.rates.as_dict(),
        "realised": dict(sorted(realised.items())),
        "hit": None
        if st is None
        else {
            "mpls_invisible_asns": sorted(st.mpls_asns),
            "siblings": {str(a): p for a, p in sorted(st.siblings.items())},
            "ixp_ports_moved": [
                {"ixp_id": f"pdb:{ix}", "member_asn": m, "peeringdb_asn": old}
                for (ix, m), old in sorted(st.moved_ports.items())
            ],
            "probes_misplaced": sorted(st.misplaced),
        },
    }


def _api_list(results: list[dict]) -> bytes:
    return orjson.dumps(
        {"count": len(results), "next": None, "previous": None, "results": results},
        option=orjson.OPT_SORT_KEYS,
    )


def _pop_counts(flag_x: list[dict]) -> list[dict]:
    counts: dict[tuple, int] = {}
    for x in flag_x:
        k = (x["family"], x["asn"], x["city"], x["country"], x["via"], x["ixp_id"] or "")
        counts[k] = counts.get(k, 0) + 1
    rows = [
        {
            "family": k[0],
            "asn": k[1],
            "city": k[2],
            "country": k[3],
            "via": k[4],
            "ixp_id": k[5] or None,
            "traces": n,
        }
        for k, n in counts.items()
    ]
    rows.sort(
        key=lambda r: (-r["traces"], r["family"], r["asn"], r["city"], r["via"], r["ixp_id"] or "")
    )
    return rows
