"""Turn an AS path into a hop-level traceroute: routers, addresses, RTTs, Atlas JSON, truth.

One traceroute draws from its own :class:`random.Random`, seeded by a stable hash of the
world seed and the traceroute's identity, so a result generated on demand is identical to
the one written to disk.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, replace

from probes.world.artefacts import chance
from probes.world.topology import (
    FIBER_KM_PER_MS,
    Destination,
    Interconnect,
    Probe,
    Topology,
    great_circle_km,
    stable_hash,
)

__all__ = ["Node", "TraceBuilder", "TraceOutput"]

#: Atlas' default maximum number of hops.
MAX_HOPS = 32
#: Consecutive silent hops after which Atlas gives up (then reports hop 255).
GAP_LIMIT = 5
#: Share of routers that never answer (per router, stable).
UNRESPONSIVE_PERCENT = 4
#: Probability that one probe packet gets no answer.
PACKET_LOSS = 0.01
#: Probability that a traceroute runs into a transient forwarding loop.
LOOP_PROBABILITY = 0.004
#: Probability that a rate-limiting router answers one probe packet.
RATE_LIMIT_ANSWER = 0.5
#: Fibre paths are longer than great circles by this factor (at least).
PATH_STRETCH = 1.12

_PROTO_SIZE = {"ICMP": 48, "UDP": 40, "TCP": 0}
_PROTO_CODE = {"ICMP": 1, "UDP": 17, "TCP": 6}


@dataclass(frozen=True)
class Node:
    """One router (or host) on the forward path."""

    addr: str
    asn: int  # AS operating the router (ground truth, not the address' origin)
    city: str | None  # None: at the probe's own location (home gateway)
    ixp_id: int | None
    kind: str  # gateway | private | router | border | ixp | host
    responsive: bool
    rate_limited: bool = False  # answers each probe with probability RATE_LIMIT_ANSWER
    artefact: str | None = None  # third-party | mpls-hidden-before (set on the path)


@dataclass
class TraceOutput:
    result: dict
    trace: dict
    hops: list[dict]
    ixp_crossings: list[dict]
    flagged_crossings: list[dict]


def _ip(n: int) -> str:
    return f"{n >> 24 & 255}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


class TraceBuilder:
    """Hop-level path construction for one topology (caches per-AS lookups)."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.city_idx = {a: {c: i for i, c in enumerate(x.cities)} for a, x in topo.ases.items()}
        self.infra = {
            a: int(ipaddress.IPv4Network(x.infra).network_address) for a, x in topo.ases.items()
        }
        self._dist: dict[tuple[str, str], float] = {}
        self.family = {a: x.family for a, x in topo.ases.items() if x.family}
        self._ecmp: dict[tuple[int, str], bool] = {}
        self._alive: dict[tuple, bool] = {}
        self.art = topo.artefacts  # ArtefactState or None (clean world)
        self.link_block = {
            a: (int(n.network_address), int(n.broadcast_address))
            for a, x in topo.ases.items()
            for n in [ipaddress.IPv4Network(x.links)]
        }
        self._adj: dict[int, list[tuple[int, Interconnect]]] | None = None

    # ----------------------------------------------------------------- geometry
    def city_dist(self, a: str, b: str) -> float:
        key = (a, b) if a <= b else (b, a)
        d = self._dist.get(key)
        if d is None:
            ca, cb = self.topo.cities[a], self.topo.cities[b]
            d = great_circle_km(ca.lat, ca.lon, cb.lat, cb.lon)
            self._dist[key] = d
        return d

    # ----------------------------------------------------------------- routers
    def ecmp_index(self, asn: int, city: str, flow: int) -> int:
        """Which of two parallel routers a flow takes (0 where the PoP has only one)."""
        has = self._ecmp.get((asn, city))
        if has is None:
            has = stable_hash("ecmp", asn, city) % 3 == 0
            self._ecmp[(asn, city)] = has
        if not has:
            return 0
        return stable_hash("flow", asn, city, flow) % 2

    def alive(self, *router: object) -> bool:
        """Whether a router answers traceroute probes at all (stable per router)."""
        ok = self._alive.get(router)
        if ok is None:
            if self.art is None:
                ok = stable_hash("unresp", *router) % 100 >= UNRESPONSIVE_PERCENT
            else:
                ok = not chance(self.art.rates.unresponsive, self.topo.seed, "unresp", *router)
            self._alive[router] = ok
        return ok

    def rate_limited(self, *router: object) -> bool:
        """Whether a router rate-limits its ICMP replies (artefact worlds only)."""
        if self.art is None:
            return False
        return chance(self.art.rates.rate_limited, self.topo.seed, "ratelimit", *router)

    def own_link_addr(self, asn: int, addr: str) -> bool:
        """Whether ``addr`` lies in the block ``asn`` numbers its interconnects from."""
        lo, hi = self.link_block[asn]
        a, b, c, d = (int(x) for x in addr.split("."))
        return lo <= (a << 24 | b << 16 | c << 8 | d) <= hi

    def third_party_addr(self, node: Node, avoid: set[int], src_asn: int) -> str | None:
        """An interface of ``node``'s router toward a neighbour not in ``avoid`` (or None)."""
        if self._adj is None:
            adj: dict[int, list[tuple[int, Interconnect]]] = {}
            for (u, v), ics in sorted(self.topo.links.items()):
                for ic in ics:
                    if ic.kind == "private":
                        adj.setdefault(u, []).append((v, ic))
                        adj.setdefault(v, []).append((u, ic))
            self._adj = adj
        cands = [
            ic.addr[node.asn]
            for nbr, ic in self._adj.get(node.asn, [])
            if nbr not in avoid and ic.city == node.city and ic.addr[node.asn] != node.addr
        ]
        if not cands:
            return None
        return cands[stable_hash("3p-pick", self.topo.seed, node.addr, src_asn) % len(cands)]

    def router(self, asn: int, city: str, r: int, prev: str, kind: str = "router") -> Node:
        ci = self.city_idx[asn].get(city)
        if ci is None:  # a PoP added late (interconnect city); stable extra index
            ci = len(self.topo.ases[asn].cities) + stable_hash("late", asn, city) % 16
        k = stable_hash("iface", asn, city, r, prev) % 4
        addr = _ip(self.infra[asn] + 1 + ((ci * 2 + r) * 4 + k) % 1020)
        ok = self.alive(asn, city, r)
        return Node(addr, asn, city, None, kind, ok, self.rate_limited(asn, city, r))

    # ----------------------------------------------------------------- path
    def nodes_for(
        self,
        probe: Probe,
        dest: Destination | None,
        path: tuple[int, ...] | None,
        *,
        flow: int,
        leak: bool,
    ) -> tuple[list[Node], bool]:
        """Routers on the forward path; second value: the path reaches ``dest``."""
        topo = self.topo
        nodes: list[Node] = []
        src = topo.ases[probe.asn]
        if probe.nat:
            gw = probe.src_addr.rsplit(".", 1)[0] + ".1"
            nodes.append(Node(gw, probe.asn, None, None, "gateway", True))
        if src.private_space and not probe.is_anchor:
            h = stable_hash("agg", probe.prb_id)
            if src.private_space.startswith("100.64"):
                addr = f"100.{64 + h % 64}.{(h >> 8) % 256}.{1 + (h >> 16) % 254}"
            else:
                addr = f"10.{h % 256}.{(h >> 8) % 256}.{1 + (h >> 16) % 254}"
            nodes.append(Node(addr, probe.asn, probe.city, None, "private", True))
        cur = probe.city
        prev = probe.src_addr
        nodes.append(self.router(probe.asn, cur, self.ecmp_index(probe.asn, cur, flow), prev))
        if path is None or dest is None:
            return nodes, False
        for i in range(len(path) - 1):
            a, b = path[i], path[i + 1]
            if leak and a == topo.leaker and "sha" in self.city_idx[a] and cur != "sha":
                nodes.append(self.router(a, "sha", 0, nodes[-1].addr))
                cur = "sha"
            ics = topo.interconnects(a, b)
            ic = min(ics, key=lambda x: self.city_dist(cur, x.city))
            if ic.city != cur:
                r = self.ecmp_index(a, ic.city, flow)
                nodes.append(self.router(a, ic.city, r, nodes[-1].addr))
                cur = ic.city
            far_ok = self.alive(b, cur, "border")
            far_rl = self.rate_limited(b, cur, "border")
            if ic.kind == "ixp":
                nodes.append(Node(ic.addr[b], b, cur, ic.ixp_id, "ixp", far_ok, far_rl))
            else:
                nodes.append(Node(ic.addr[b], b, cur, None, "border", far_ok, far_rl))
            if b != path[-1]:
                nodes.append(self.router(b, cur, self.ecmp_index(b, cur, flow), nodes[-1].addr))
        d = path[-1]
        if dest.city != cur:
            nodes.append(self.router(d, dest.city, 0, nodes[-1].addr))
        nodes.append(Node(dest.addr, d, dest.city, None, "host", True))
        if self.art is not None:
            nodes = self._path_artefacts(nodes, probe)
        return nodes, True

    def _path_artefacts(self, nodes: list[Node], probe: Probe) -> list[Node]:
        """Hide interior routers of MPLS ASes; let some routers answer third-party."""
        art = self.art
        out: list[Node] = []
        hidden = False
        for i, node in enumerate(nodes):
            prev = nodes[i - 1] if i else None
            nxt = nodes[i + 1] if i + 1 < len(nodes) else None
            if (
                node.kind == "router"
                and node.asn in art.mpls_asns
                and prev is not None
                and nxt is not None
                and prev.asn == node.asn
                and nxt.asn == node.asn
            ):
                hidden = True
                continue
            if hidden:
                node = replace(node, artefact="mpls-hidden-before")
                hidden = False
            if node.kind in ("router", "border") and node.city is not None and chance(
                art.rates.third_party, self.topo.seed, "3p", node.addr, probe.asn
            ):
                avoid = {m.asn for m in (prev, nxt) if m is not None}
                alt = self.third_party_addr(node, avoid, probe.asn)
                if alt is not None:
                    node = replace(node, addr=alt, artefact="third-party")
            out.append(node)
        return out

    # ----------------------------------------------------------------- result
    def build(
        self,
        *,
        seed: int,
        probe: Probe,
        dest: Destination | None,
        dst_addr: str,
        path: tuple[int, ...] | None,
        timestamp: int,
        msm_id: int,
        proto: str,
        paris_id: int,
        leak: bool,
        in_window: bool,
    ) -> TraceOutput:
        rng = random.Random(
            stable_hash("trace", seed, probe.prb_id, dst_addr, timestamp, msm_id, proto, paris_id)
        )
        flow = stable_hash("flowid", probe.src_addr, dst_addr, _PROTO_CODE[proto], paris_id)
        nodes, routed = self.nodes_for(probe, dest, path, flow=flow, leak=leak)
        dest_silent = (
            dest is not None
            and proto != "ICMP"
            and stable_hash("silent", dest.addr, proto) % 4 == 0
        )
        loop = routed and len(nodes) >= 5 and rng.random() < LOOP_PROBABILITY
        if loop:
            k = rng.randrange(2, len(nodes) - 2)
            pair = [nodes[k - 1], nodes[k]]
            nodes = nodes[: k + 1]
            while len(nodes) < MAX_HOPS:
                nodes.append(pair[(len(nodes) - k - 1) % 2])
        elif dest_silent:
            nodes = nodes[:-1]
        access_ms = rng.uniform(0.8, 9.0)
        cities = self.topo.cities
        dist = 0.0
        prev_lat, prev_lon = probe.lat, probe.lon
        hops_json: list[dict] = []
        truth_hops: list[dict] = []
        key = {"msm_id": msm_id, "prb_id": probe.prb_id, "timestamp": timestamp}
        for n, node in enumerate(nodes[:MAX_HOPS], start=1):
            if node.city is None:
                lat, lon = probe.lat, probe.lon
                base = 0.25
            else:
                c = cities[node.city]
                lat, lon = c.lat, c.lon
                dist += great_circle_km(prev_lat, prev_lon, lat, lon)
                base = 2.0 * dist * PATH_STRETCH / FIBER_KM_PER_MS + access_ms + 0.04 * n
            prev_lat, prev_lon = lat, lon
            replies: list[dict] = []
            for _ in range(3):
                if (
                    not node.responsive
                    or rng.random() < PACKET_LOSS
                    or (node.rate_limited and rng.random() >= RATE_LIMIT_ANSWER)
                ):
                    replies.append({"x": "*"})
                    continue
                rtt = base + rng.expovariate(2.0)
                if rng.random() < 0.02:
                    rtt += rng.uniform(5.0, 60.0)
                is_host = node.kind == "host"
                replies.append(
                    {
                        "from": node.addr,
                        "rtt": round(rtt, 3),
                        "size": _PROTO_SIZE[proto] if is_host and proto != "TCP" else 28,
                        "ttl": (64 if node.kind in ("host", "gateway") else 255) - (n - 1),
                    }
                )
            hops_json.append({"hop": n, "result": replies})
            truth_hops.append(
                {
                    **key,
                    "hop": n,
                    "addr": node.addr,
                    "router_asn": node.asn,
                    "responded": node.responsive and any("from" in r for r in replies),
                    "kind": node.kind,
                    "city": cities[node.city or probe.city].name,
                    "country": cities[node.city or probe.city].country,
                    "lat": lat,
                    "lon": lon,
                    "ixp_id": None if node.ixp_id is None else f"pdb:{node.ixp_id}",
                    "owner_asn": node.asn,
                    "router_city": cities[node.city or probe.city].name,
                    "router_country": cities[node.city or probe.city].country,
                    "artefact": self._hop_artefact(node),
                }
            )
        reached = routed and not loop and not dest_silent and len(nodes) <= MAX_HOPS
        if not reached and not loop:
            last = len(hops_json)
            for n in range(last + 1, min(last + GAP_LIMIT, MAX_HOPS) + 1):
                hops_json.append({"hop": n, "result": [{"x": "*"}] * 3})
            hops_json.append({"hop": 255, "result": [{"x": "*"}] * 3})
        duration = 1 + len(hops_json) // 4 + rng.randrange(0, 4)
        result = {
            "af": 4,
            "dst_addr": dst_addr,
            "dst_name": dst_addr,
            "endtime": timestamp + duration,
            "from": probe.public_addr,
            "fw": probe.fw,
            "group_id": msm_id,
            "lts": rng.randrange(3, 240),
            "msm_id": msm_id,
            "msm_name": "Traceroute",
            "paris_id": paris_id,
            "prb_id": probe.prb_id,
            "proto": proto,
            "result": hops_json,
            "size": _PROTO_SIZE[proto] if proto != "TCP" else 0,
            "src_addr": probe.src_addr,
            "stored_timestamp": timestamp + duration + rng.randrange(5, 90),
            "timestamp": timestamp,
            "type": "traceroute",
        }
        return self._truth(
            result,
            truth_hops,
            nodes,
            path,
            probe,
            dest,
            dst_addr,
            leak=leak,
            in_window=in_window,
            loop=loop,
            reached=reached,
        )

    def _hop_artefact(self, node: Node) -> str | None:
        """The truth label of one hop (see :data:`probes.world.artefacts.HOP_ARTEFACTS`)."""
        if node.artefact is not None:
            return node.artefact
        if node.kind == "border" and not self.own_link_addr(node.asn, node.addr):
            return "neighbour-numbered"
        if not node.responsive:
            return "unresponsive"
        if node.rate_limited:
            return "rate-limited"
        return None

    def _truth(
        self,
        result: dict,
        truth_hops: list[dict],
        nodes: list[Node],
        path: tuple[int, ...] | None,
        probe: Probe,
        dest: Destination | None,
        dst_addr: str,
        *,
        leak: bool,
        in_window: bool,
        loop: bool,
        reached: bool,
    ) -> TraceOutput:
        topo = self.topo
        key = {"msm_id": result["msm_id"], "prb_id": probe.prb_id, "timestamp": result["timestamp"]}
        as_path = list(path) if path is not None else [probe.asn]
        path_nodes: list[str] = []
        ixp_x: list[dict] = []
        flagged_x: list[dict] = []
        prev_asn: int | None = None
        limit = len(truth_hops)
        for i, node in enumerate(nodes[:limit]):
            if loop and i > 0 and (node.addr, node.asn) in {(m.addr, m.asn) for m in nodes[:i]}:
                break  # the looping tail repeats earlier routers
            hop = truth_hops[i]
            if node.kind == "ixp":
                assert node.ixp_id is not None
                ix = topo.ixps[node.ixp_id]
                path_nodes.append(f"IX:pdb:{node.ixp_id}")
                ixp_x.append(
                    {
                        **key,
                        "ixp_id": f"pdb:{node.ixp_id}",
                        "ixp_name": ix.name,
                        "city": topo.cities[ix.city].name,
                        "country": topo.cities[ix.city].country,
                        "near_asn": prev_asn,
                        "far_asn": node.asn,
                        "hop": hop["hop"],
                        "addr": node.addr,
                        "observable": hop["responded"],
                    }
                )
            if node.asn != prev_asn:
                path_nodes.append(f"AS{node.asn}")
                fam = self.family.get(node.asn)
                if fam is not None:
                    city = topo.cities[node.city] if node.city else topo.cities[probe.city]
                    seg = [
                        h
                        for h, m in zip(truth_hops, nodes[:limit], strict=True)
                        if m.asn == node.asn
                    ]
                    pops = []
                    for m in nodes[:limit]:
                        if m.asn == node.asn and (m.city or probe.city) not in pops:
                            pops.append(m.city or probe.city)
                    last = topo.cities[pops[-1]]
                    idx = [j for j, m in enumerate(nodes[:limit]) if m.asn == node.asn]
                    nxt = nodes[idx[-1] + 1] if idx[-1] + 1 < limit else None
                    if nxt is None or nxt.asn == node.asn:
                        exit_via, exit_ixp = None, None
                    elif nxt.kind == "ixp":
                        exit_via, exit_ixp = "ixp", f"pdb:{nxt.ixp_id}"
                    else:
                        exit_via, exit_ixp = "private", None
                    flagged_x.append(
                        {
                            **key,
                            "family": fam,
                            "asn": node.asn,
                            "via": "ixp" if node.kind == "ixp" else "private",
                            "ixp_id": None if node.ixp_id is None else f"pdb:{node.ixp_id}",
                            "city": city.name,
                            "country": city.country,
                            "hop": hop["hop"],
                            "addr": node.addr,
                            "observable": any(h["responded"] for h in seg),
                            "exit_city": last.name,
                            "exit_country": last.country,
                            "exit_via": exit_via,
                            "exit_ixp_id": exit_ixp,
                            "pop_cities": [topo.cities[c].name for c in pops],
                            "us_pop": any(topo.cities[c].country == "US" for c in pops),
                        }
                    )
            prev_asn = node.asn
        fams = sorted({x["family"] for x in flagged_x})
        fams_us = sorted({x["family"] for x in flagged_x if x["us_pop"]})
        fams_obs = sorted({x["family"] for x in flagged_x if x["observable"]})
        trace = {
            **key,
            "dst_addr": dst_addr,
            "src_asn": probe.asn,
            "dst_asn": dest.asn if dest is not None else None,
            "as_path": as_path,
            "path_nodes": path_nodes,
            "leak": leak,
            "in_window": in_window,
            "loop": loop,
            "reached": reached,
            "families": fams,
            "families_us": fams_us,
            "families_observable": fams_obs,
        }
        return TraceOutput(result, trace, truth_hops, ixp_x, flagged_x)
