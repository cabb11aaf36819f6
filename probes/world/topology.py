"""Build the synthetic world's topology: ASes, relationships, PoPs, IXPs, addresses, probes.

Everything random is drawn from one :class:`numpy.random.Generator` passed in, in a fixed
order over sorted collections, so the same seed gives the same world. Per-entity choices
that must also be reproducible on demand (router responsiveness, load balancing) use
:func:`stable_hash` instead of the generator.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from probes.world.data import (
    CITIES,
    FLAGGED_ASES,
    MOAS_PREFIXES,
    OTHER_IXP_CITIES,
    US_IXP_CITIES,
    City,
)

__all__ = [
    "SIZES",
    "SizeParams",
    "ASInfo",
    "Interconnect",
    "IXP",
    "Probe",
    "Destination",
    "Topology",
    "build_topology",
    "stable_hash",
    "great_circle_km",
]

#: Speed of light in fibre, km per ms (one way): about 2/3 c.
FIBER_KM_PER_MS = 200.0

#: First synthetic ASN (16-bit private-use range 64512-65534).
_ASN_BASE = 64512
#: Synthetic address pool: sequential aligned blocks from here.
_POOL_START = int(ipaddress.IPv4Address("24.0.0.0"))
#: Synthetic IXP peering LANs: consecutive /23s from here.
_IXP_LAN_START = int(ipaddress.IPv4Address("206.53.128.0"))
#: First PeeringDB-style id of the synthetic objects (clearly apart from small real ids).
PDB_ID_BASE = 90000


@dataclass(frozen=True)
class SizeParams:
    tier1: int
    transit: dict[str, int]
    access: dict[str, int]
    china_access: int
    content: int
    probes: int
    anchors: int
    destinations: int
    probes_per_msm: int
    days: float
    interval_h: float


SIZES: dict[str, SizeParams] = {
    "small": SizeParams(
        tier1=8,
        transit={"NA": 6, "EU": 8, "AS": 7, "SA": 4, "AF": 4, "OC": 2},
        access={"NA": 40, "EU": 55, "AS": 35, "SA": 15, "AF": 12, "OC": 6},
        china_access=10,
        content=50,
        probes=150,
        anchors=10,
        destinations=30,
        probes_per_msm=15,
        days=4.0,
        interval_h=6.0,
    ),
    "large": SizeParams(
        tier1=10,
        transit={"NA": 10, "EU": 14, "AS": 12, "SA": 6, "AF": 6, "OC": 3},
        access={"NA": 120, "EU": 160, "AS": 110, "SA": 45, "AF": 35, "OC": 15},
        china_access=20,
        content=120,
        probes=800,
        anchors=30,
        destinations=60,
        probes_per_msm=40,
        days=7.0,
        interval_h=4.0,
    ),
}


@dataclass
class ASInfo:
    asn: int
    name: str
    kind: str  # tier1 | flagged | transit | access | content
    country: str
    continent: str
    cities: list[str]  # PoP city keys; cities[0] is home
    org_id: str
    org_name: str
    family: str | None = None
    prefixes: list[str] = field(default_factory=list)  # announced
    infra: str = ""  # /22 holding router interfaces
    links: str = ""  # block the AS numbers its private interconnects from
    hosts: str = ""  # block for customer / server addresses
    private_space: str | None = None  # "10.0.0.0/8" or "100.64.0.0/10" inside access nets
    filters_leaks: bool = False
    ixps: list[int] = field(default_factory=list)  # ix ids where it is a member
    next_link: int = 0  # next free /31 in ``links``


@dataclass(frozen=True)
class Interconnect:
    """One place where two ASes exchange traffic."""

    city: str
    kind: str  # "ixp" | "private"
    ixp_id: int | None
    addr: dict[int, str]  # asn -> that AS's interface address on this interconnect


@dataclass
class IXP:
    ix_id: int
    name: str
    city: str
    lan: str
    members: dict[int, str] = field(default_factory=dict)  # asn -> LAN address


@dataclass(frozen=True)
class Probe:
    prb_id: int
    asn: int
    city: str
    lat: float
    lon: float
    src_addr: str  # local interface address (private behind NAT)
    public_addr: str  # "from": the public address the controller sees
    prefix: str
    nat: bool
    is_anchor: bool
    fw: int
    country: str
    first_connected: int


@dataclass(frozen=True)
class Destination:
    addr: str
    asn: int
    city: str
    name: str


@dataclass
class Topology:
    seed: int
    size: str
    params: SizeParams
    cities: dict[str, City]
    ases: dict[int, ASInfo]
    providers: dict[int, list[int]]
    customers: dict[int, list[int]]
    peers: dict[int, list[int]]
    links: dict[tuple[int, int], list[Interconnect]]  # key (min asn, max asn)
    ixps: dict[int, IXP]
    probes: list[Probe]
    destinations: list[Destination]
    leaker: int
    leaked_asns: list[int]
    #: :class:`probes.world.artefacts.ArtefactState` of an artefact world; None: clean.
    artefacts: Any = None

    def rel(self, a: int, b: int) -> str:
        """Relationship of ``b`` seen from ``a``: "customer", "peer", "provider"."""
        if b in self.customers[a]:
            return "customer"
        if b in self.peers[a]:
            return "peer"
        if b in self.providers[a]:
            return "provider"
        raise KeyError(f"AS{a} and AS{b} are not neighbours")

    def interconnects(self, a: int, b: int) -> list[Interconnect]:
        return self.links[(min(a, b), max(a, b))]


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of ``parts`` that is stable across runs and platforms."""
    data = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance in km on a sphere of radius 6371 km."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(a)))


# --------------------------------------------------------------------------- builder


class _Pool:
    """Sequential allocator of aligned IPv4 blocks from the synthetic pool."""

    def __init__(self) -> None:
        self.next = _POOL_START

    def take(self, prefixlen: int) -> ipaddress.IPv4Network:
        size = 1 << (32 - prefixlen)
        start = (self.next + size - 1) // size * size
        self.next = start + size
        return ipaddress.IPv4Network((start, prefixlen))


_NAME_WORDS = (
    "Aurora",
    "Boreal",
    "Cobalt",
    "Delta",
    "Ember",
    "Fjord",
    "Granite",
    "Harbor",
    "Indigo",
    "Juniper",
    "Kestrel",
    "Lumen",
    "Meridian",
    "Nimbus",
    "Orchid",
    "Pioneer",
    "Quartz",
    "Raven",
    "Summit",
    "Tundra",
    "Umber",
    "Vertex",
    "Willow",
    "Xenon",
    "Yarrow",
    "Zephyr",
)


def _word(i: int) -> str:
    n = len(_NAME_WORDS)
    return _NAME_WORDS[i % n] + ("" if i < n else f"-{i // n + 1}")


def build_topology(*, seed: int, size: str) -> Topology:
    """Build the whole topology for ``seed`` and ``size`` (see :data:`SIZES`)."""
    params = SIZES[size]
    rng = np.random.Generator(np.random.PCG64(seed))
    cities = {c.key: c for c in CITIES}
    by_cont: dict[str, list[str]] = {}
    for c in CITIES:
        by_cont.setdefault(c.continent, []).append(c.key)
    us_cities = [c.key for c in CITIES if c.country == "US"]

    ases: dict[int, ASInfo] = {}
    providers: dict[int, set[int]] = {}
    peers: dict[int, set[int]] = {}
    next_asn = _ASN_BASE

    def new_asn() -> int:
        nonlocal next_asn
        asn = next_asn
        next_asn += 1
        return asn

    def pick(seq: list, k: int = 1) -> list:
        k = min(k, len(seq))
        idx = rng.choice(len(seq), size=k, replace=False)
        return [seq[int(i)] for i in sorted(idx)]

    # tier-1s
    t1_home = ["iad", "nyc", "dfw", "lon", "fra", "chi", "sjc", "sto", "ams", "par"]
    tier1: list[int] = []
    for i in range(params.tier1):
        asn = new_asn()
        home = t1_home[i % len(t1_home)]
        core = [*US_IXP_CITIES, "lon", "fra", "ams", "par", "hkg", "tyo", "sin"]
        extra = pick([c for c in cities if c not in core], 6)
        cl = [home] + [c for c in core + extra if c != home]
        ases[asn] = ASInfo(
            asn,
            f"SYN-T1-{_word(i).upper()}",
            "tier1",
            cities[home].country,
            "NA",
            cl,
            f"SYNORG-T1-{i}",
            f"Synthetic {_word(i)} Backbone",
        )
        tier1.append(asn)

    # flagged families (real ASNs)
    flagged: list[int] = []
    for f in FLAGGED_ASES:
        ases[f.asn] = ASInfo(
            f.asn,
            f.name,
            "flagged",
            f.country,
            "AS",
            list(f.cities),
            f.org_id,
            f.org_name,
            family=f.family,
        )
        flagged.append(f.asn)
    flagged_by_asn = {f.asn: f for f in FLAGGED_ASES}

    # regional transits
    transits: dict[str, list[int]] = {}
    bridge = {
        "NA": ["chi", "dfw"],
        "EU": ["nyc", "iad"],
        "AS": ["lax", "sjc", "sea"],
        "SA": ["mia"],
        "AF": ["lon"],
        "OC": ["lax", "sjc"],
    }
    k = 0
    for cont, n in params.transit.items():
        for _ in range(n):
            asn = new_asn()
            own = pick(by_cont[cont], int(rng.integers(2, 6)))
            ext = pick(bridge[cont], int(rng.integers(0, 2)) + (1 if cont != "NA" else 0))
            cl = own + [c for c in ext if c not in own]
            ases[asn] = ASInfo(
                asn,
                f"SYN-TRANSIT-{_word(k).upper()}",
                "transit",
                cities[own[0]].country,
                cont,
                cl,
                f"SYNORG-TR-{k}",
                f"Synthetic {_word(k)} Transit",
            )
            transits.setdefault(cont, []).append(asn)
            k += 1

    # access networks
    access: dict[str, list[int]] = {}
    k = 0
    for cont, n in params.access.items():
        for _ in range(n):
            asn = new_asn()
            home = pick(by_cont[cont], 1)[0]
            same_country = [c for c in by_cont[cont] if cities[c].country == cities[home].country]
            cl = [home] + [c for c in pick(same_country, 2) if c != home]
            ases[asn] = ASInfo(
                asn,
                f"SYN-ACCESS-{cities[home].country}-{k}",
                "access",
                cities[home].country,
                cont,
                cl,
                f"SYNORG-AC-{k}",
                f"Synthetic {_word(k)} Broadband",
                private_space="100.64.0.0/10" if rng.random() < 0.35 else "10.0.0.0/8",
            )
            access.setdefault(cont, []).append(asn)
            k += 1
    china_access: list[int] = []
    for i in range(params.china_access):
        asn = new_asn()
        home = ("pek", "sha", "can", "sha", "pek")[i % 5]
        ases[asn] = ASInfo(
            asn,
            f"SYN-ACCESS-CN-{i}",
            "access",
            "CN",
            "AS",
            [home],
            f"SYNORG-CN-{i}",
            f"Synthetic Provincial Network {i}",
            private_space="10.0.0.0/8",
        )
        china_access.append(asn)

    # US content / hosting networks (the destinations)
    content: list[int] = []
    for i in range(params.content):
        asn = new_asn()
        cl = pick(us_cities, int(rng.integers(1, 5)))
        kind_name = ("CLOUD", "HOSTING", "CDN", "MEDIA")[i % 4]
        ases[asn] = ASInfo(
            asn,
            f"SYN-{kind_name}-{i}",
            "content",
            "US",
            "NA",
            cl,
            f"SYNORG-CO-{i}",
            f"Synthetic {_word(i)} {kind_name.title()}",
        )
        content.append(asn)

    for asn in ases:
        providers[asn] = set()
        peers[asn] = set()

    def add_c2p(cust: int, prov: int) -> None:
        providers[cust].add(prov)
        a, b = ases[cust], ases[prov]
        if not set(a.cities) & set(b.cities):
            b.cities.append(a.cities[0])

    def add_p2p(a: int, b: int) -> None:
        peers[a].add(b)
        peers[b].add(a)

    # relationships
    for i, u in enumerate(tier1):
        for v in tier1[i + 1 :]:
            add_p2p(u, v)
    for f in FLAGGED_ASES:
        if f.provider is not None:
            add_c2p(f.asn, f.provider)
        if f.role == "backbone":
            for t in tier1:
                add_p2p(f.asn, t)
    backbones = [f.asn for f in FLAGGED_ASES if f.role == "backbone" and f.provider is None]
    for i, u in enumerate(backbones):
        for v in backbones[i + 1 :]:
            add_p2p(u, v)
    flagged_sellers = [4134, 4809, 4837, 58453, 10099]
    for cont, lst in transits.items():
        for asn in lst:
            n_prov = 2 if rng.random() < 0.7 else 1
            provs = pick(tier1, n_prov)
            if cont in ("AS", "AF", "SA", "OC") and rng.random() < 0.45:
                provs = provs[:1] + pick(flagged_sellers, 1)
            for p in provs:
                add_c2p(asn, p)
    for cont, lst in access.items():
        for asn in lst:
            cands = transits.get(cont, []) + tier1[:2]
            provs = pick(cands, 1 + int(rng.random() < 0.4))
            for p in provs:
                add_c2p(asn, p)
    for i, asn in enumerate(china_access):
        provs = [(4134, 4837, 9808, 4809, 9929)[i % 5]]
        if rng.random() < 0.4:
            provs.append((4837, 4134, 4134, 4837, 4134)[i % 5])
        for p in provs:
            add_c2p(asn, p)
    us_arms = [23764, 10099, 58807]
    for i, asn in enumerate(content):
        cands = tier1 + transits["NA"]
        provs = pick(cands, 1 + int(rng.random() < 0.6))
        if rng.random() < 0.15:
            provs = provs[:1] + [us_arms[i % 3]]
        for p in provs:
            add_c2p(asn, p)

    # addressing (before IXPs so LAN membership order is fixed)
    pool = _Pool()
    size_of = {"tier1": 16, "transit": 18, "access": 19, "content": 20, "flagged": 19}
    for asn in sorted(ases):
        info = ases[asn]
        fl = flagged_by_asn.get(asn)
        own = list(fl.prefixes) if fl else []
        pooled = pool.take(size_of[info.kind])
        info.prefixes = [*own, str(pooled)]
        infra_parent = ipaddress.IPv4Network(
            fl.router_space if fl and fl.router_space else info.prefixes[0]
        )
        base = int(infra_parent.network_address)
        info.infra = str(ipaddress.IPv4Network((base, 22)))
        info.links = str(ipaddress.IPv4Network((base + 4 * 256, 22)))
        hosts_base = int(pooled.network_address) + 8 * 256
        info.hosts = str(ipaddress.IPv4Network((hosts_base, 24)))
        rate = {"tier1": 0.5, "transit": 0.4, "access": 0.2, "content": 0.3, "flagged": 0.0}
        info.filters_leaks = bool(rng.random() < rate[info.kind])
    for pfx, origins in MOAS_PREFIXES.items():
        for o in origins:
            if pfx not in ases[o].prefixes:
                ases[o].prefixes.insert(0, pfx)

    # IXPs and memberships
    ixps: dict[int, IXP] = {}
    for i, ck in enumerate([*US_IXP_CITIES, *OTHER_IXP_CITIES]):
        ix_id = PDB_ID_BASE + 1 + i
        lan = ipaddress.IPv4Network((_IXP_LAN_START + i * 512, 23))
        ixps[ix_id] = IXP(ix_id, f"SYN-IX {cities[ck].name}", ck, str(lan))
    join_p = {"content": 0.85, "access": 0.5, "transit": 0.6, "tier1": 0.25}
    for ix in ixps.values():
        members = []
        for asn in sorted(ases):
            info = ases[asn]
            if info.kind == "flagged":
                if ix.city in flagged_by_asn[asn].ixp_cities:
                    members.append(asn)
            elif ix.city in info.cities and rng.random() < join_p[info.kind]:
                members.append(asn)
        lan = ipaddress.IPv4Network(ix.lan)
        for j, asn in enumerate(members):
            ix.members[asn] = str(lan.network_address + 10 + j)
            ases[asn].ixps.append(ix.ix_id)

    # open peering at IXPs
    peer_p = {
        frozenset(["content", "access"]): 0.6,
        frozenset(["content"]): 0.3,
        frozenset(["content", "transit"]): 0.4,
        frozenset(["transit"]): 0.3,
        frozenset(["access"]): 0.1,
        frozenset(["access", "transit"]): 0.2,
        frozenset(["flagged", "content"]): 0.75,
        frozenset(["flagged", "access"]): 0.3,
        frozenset(["flagged", "transit"]): 0.4,
    }
    shared: dict[tuple[int, int], list[int]] = {}
    for ix in ixps.values():
        mem = sorted(ix.members)
        for i, u in enumerate(mem):
            for v in mem[i + 1 :]:
                shared.setdefault((u, v), []).append(ix.ix_id)

    def related(u: int, v: int) -> bool:
        return v in providers[u] or u in providers[v] or v in peers[u]

    for (u, v), _ixs in sorted(shared.items()):
        ka, kb = ases[u].kind, ases[v].kind
        if "tier1" in (ka, kb) or related(u, v):
            continue
        if ka == kb == "flagged":
            continue
        p = peer_p.get(frozenset([ka, kb]), 0.0)
        if rng.random() < p:
            add_p2p(u, v)

    # interconnect locations
    links: dict[tuple[int, int], list[Interconnect]] = {}

    def pni(a: int, b: int, numbering: int, city: str) -> Interconnect:
        blk = ases[numbering]
        net = ipaddress.IPv4Network(blk.links)
        base = int(net.network_address) + 2 * blk.next_link
        blk.next_link += 1
        if blk.next_link > net.num_addresses // 2:
            raise RuntimeError(f"link block of AS{numbering} exhausted")
        other = b if numbering == a else a
        return Interconnect(
            city,
            "private",
            None,
            {
                numbering: str(ipaddress.IPv4Address(base)),
                other: str(ipaddress.IPv4Address(base + 1)),
            },
        )

    def order_cities(common: list[str]) -> list[str]:
        return [c for c in cities if c in common]

    for cust in sorted(providers):
        for prov in sorted(providers[cust]):
            common = order_cities(list(set(ases[cust].cities) & set(ases[prov].cities)))[:4]
            links[(min(cust, prov), max(cust, prov))] = [pni(cust, prov, prov, c) for c in common]
    for u in sorted(peers):
        for v in sorted(peers[u]):
            if v < u:
                continue
            ixs = shared.get((u, v), [])
            places: list[Interconnect] = []
            private_pair = {ases[u].kind, ases[v].kind} <= {"tier1", "flagged"}
            if private_pair or not ixs:
                common = order_cities(list(set(ases[u].cities) & set(ases[v].cities)))
                if not common:
                    ases[v].cities.append(ases[u].cities[0])
                    common = [ases[u].cities[0]]
                places = [pni(u, v, u, c) for c in common[:6]]
            if not private_pair:
                for ix_id in ixs:
                    ix = ixps[ix_id]
                    places.append(
                        Interconnect(ix.city, "ixp", ix_id, {u: ix.members[u], v: ix.members[v]})
                    )
            links[(u, v)] = places

    # probes
    probes: list[Probe] = []
    conts = list(params.access)
    weights = np.array(
        [{"NA": 0.2, "EU": 0.33, "AS": 0.2, "SA": 0.1, "AF": 0.1, "OC": 0.07}[c] for c in conts]
    )
    n_cn = max(5, params.probes // 25)
    n_regular = params.probes - params.anchors - n_cn
    conts_drawn = rng.choice(len(conts), size=n_regular, p=weights / weights.sum())
    host_counter: dict[int, int] = {}

    def host_addr(asn: int) -> str:
        n = host_counter.get(asn, 0)
        host_counter[asn] = n + 1
        net = ipaddress.IPv4Network(ases[asn].hosts)
        base = int(net.network_address) + 256 * (n // 200) + 10 + n % 200
        return str(ipaddress.IPv4Address(base))

    prb_id = 1_000_000
    t_first = 1_500_000_000

    def add_probe(asn: int, *, anchor: bool) -> None:
        nonlocal prb_id
        prb_id += 1 + int(rng.integers(0, 40))
        info = ases[asn]
        city = info.cities[0] if anchor or len(info.cities) == 1 else pick(info.cities, 1)[0]
        c = cities[city]
        lat = round(c.lat + (0.0 if anchor else float(rng.uniform(-0.25, 0.25))), 4)
        lon = round(c.lon + (0.0 if anchor else float(rng.uniform(-0.25, 0.25))), 4)
        public = host_addr(asn)
        nat = (not anchor) and rng.random() < 0.6
        src = f"192.168.{int(rng.integers(0, 3))}.{int(rng.integers(2, 250))}" if nat else public
        pfx = str(ipaddress.IPv4Network(public + "/24", strict=False))
        fw = 5080 if anchor else int(rng.choice([5020, 5040, 5060, 5080]))
        probes.append(
            Probe(
                prb_id,
                asn,
                city,
                lat,
                lon,
                src,
                public,
                pfx,
                nat,
                anchor,
                fw,
                c.country,
                t_first + int(rng.integers(0, 200_000_000)),
            )
        )

    for ci in conts_drawn:
        lst = access[conts[int(ci)]]
        add_probe(lst[int(rng.integers(0, len(lst)))], anchor=False)
    for i in range(n_cn):
        add_probe(china_access[i % len(china_access)], anchor=False)
    anchor_hosts = pick(content, params.anchors // 2) + pick(
        [t for lst in transits.values() for t in lst], params.anchors - params.anchors // 2
    )
    for asn in anchor_hosts:
        add_probe(asn, anchor=True)

    # destinations: hosts in US content networks (anchors in the US among them)
    destinations: list[Destination] = []
    dst_asns = pick(content, params.destinations)
    for i, asn in enumerate(dst_asns):
        info = ases[asn]
        city = pick(info.cities, 1)[0]
        destinations.append(Destination(host_addr(asn), asn, city, f"www.syn{i:03d}.example"))

    # diversion scenario: AS4134 leaks more-specifics of part of the destinations
    leaked = sorted(pick(sorted(set(dst_asns)), max(1, len(set(dst_asns)) * 2 // 5)))

    return Topology(
        seed=seed,
        size=size,
        params=params,
        cities=cities,
        ases=ases,
        providers={k: sorted(v) for k, v in providers.items()},
        customers={k: sorted(c for c in ases if k in providers[c]) for k in ases},
        peers={k: sorted(v) for k, v in peers.items()},
        links=links,
        ixps=ixps,
        probes=probes,
        destinations=destinations,
        leaker=4134,
        leaked_asns=leaked,
    )
