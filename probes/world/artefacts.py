"""Measurement artefacts of the synthetic world: named rates and where they are applied.

A clean world (``artefacts=None``) answers every traceroute from the forward interface of
each router, numbers its customer links from the provider's space, publishes exact
reference data and probe locations. Real traceroutes and reference data are messier; the
:class:`Artefacts` rates put the well-known artefacts back in, each at a rate in the
range the measurement literature reports (the exact figure is our choice and is written
into the world's truth, ``truth/world.json`` ``world_artefacts``):

==========================  =================================================================
rate                        what happens
==========================  =================================================================
customer_numbered           a customer-provider link is numbered from the *customer's*
                            space (the provider's router then answers from an address the
                            prefix table gives to the customer)
third_party                 a router answers with the address of an interface that is not
                            on the forward path (its interface toward another neighbour)
unresponsive                a router never answers (replaces the clean world's 4%)
rate_limited                a router rate-limits ICMP: each probe packet is answered with
                            probability one half
mpls_invisible              a transit/tier-1 AS runs invisible MPLS tunnels: its interior
                            routers are absent from every traceroute (the hop after them is
                            labelled ``mpls-hidden-before``)
siblings                    an access AS belongs to the organisation of its (only) transit
                            provider (as2org and PeeringDB show one organisation)
ixp_port_moved              an IXP member's peering-LAN address was held by another network
                            before; PeeringDB ``netixlan`` still names the old holder
facility_omitted            a network's presence at a facility is missing from PeeringDB
                            ``netfac``
probe_obfuscation_km        every (non-anchor) probe's published coordinates are moved by up
                            to this many km
probe_misplaced             a probe's published location is another city of its continent
==========================  =================================================================

Every decision is a stable hash of the world seed and the entity (never a draw from the
topology's random generator), so the clean world's stream of random numbers, and hence
its bytes, is unchanged, and the same seed gives the same artefacts.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import asdict, dataclass, field

from probes.errors import ConfigError
from probes.world.topology import Interconnect, Topology, stable_hash

__all__ = ["Artefacts", "ArtefactState", "apply_artefacts", "chance", "HOP_ARTEFACTS"]

#: Values of the truth hop column ``artefact`` (null: none).
HOP_ARTEFACTS = (
    "neighbour-numbered",
    "third-party",
    "mpls-hidden-before",
    "unresponsive",
    "rate-limited",
)
_SCALE = 1_000_000


def chance(rate: float, *parts: object) -> bool:
    """Whether the entity ``parts`` is hit by an artefact of ``rate`` (stable, per entity).

    >>> chance(0.0, "x"), chance(1.0, "x")
    (False, True)
    """
    return stable_hash("artefact", *parts) % _SCALE < round(rate * _SCALE)


@dataclass(frozen=True)
class Artefacts:
    """Rates of the measurement artefacts the world models (all in [0, 1] but the km).

    Attributes
    ----------
    customer_numbered : float
        Share of customer-provider interconnects numbered from the customer's address
        space (default 0.2). Provider-numbered links are the common convention, and the
        reason origin-AS mapping misplaces AS boundaries; bdrmap (Luckie et al., IMC 2016)
        and MAP-IT (Marder & Smith, IMC 2016) are built on inferring which side numbered a
        link, because both occur.
    third_party : float
        Share of router hops answering with an interface not on the forward path
        (default 0.02). Marder et al. (bdrmapIT, "Pushing the boundaries with bdrmapIT",
        IMC 2018) treat third-party addresses as a small but real share of hops, a few
        percent at most.
    unresponsive : float
        Share of routers that never answer (default 0.08). Anonymous routers ("*" hops)
        are common in traceroutes (e.g. Gunes & Sarac, "Resolving anonymous routers in
        Internet topology measurement studies", INFOCOM 2008).
    rate_limited : float
        Share of routers that rate-limit ICMP time-exceeded replies and answer each probe
        with probability 1/2 (default 0.05; Ravaioli, Urvoy-Keller & Barakat,
        "Characterizing ICMP rate limitation on routers", ICC 2015).
    mpls_invisible : float
        Share of transit and tier-1 ASes whose interior routers are hidden by invisible
        MPLS tunnels (default 0.25; Donnet et al., "Revealing MPLS tunnels obscured from
        traceroute", CCR 2012; Vanaubel et al., TNT, TMA 2019: MPLS is widespread in
        transit networks and a large part of it is invisible).
    siblings : float
        Share of access ASes (outside China) with a single non-flagged transit provider
        that are siblings of it, one organisation in as2org (default 0.1; CAIDA AS2Org,
        Cai et al., IMC 2010: many organisations operate several ASes).
    ixp_port_moved : float
        Share of IXP member ports whose address PeeringDB still gives to a former holder
        (default 0.03; PeeringDB is operator-maintained and lags reality: Lodhi et al.,
        "Using PeeringDB to understand the peering ecosystem", CCR 2014).
    facility_omitted : float
        Share of a network's facility presences missing from PeeringDB ``netfac`` (default
        0.15; Giotsas et al., "Mapping peering interconnections to a facility", CoNEXT
        2015, had to complete PeeringDB facility lists from operators' own pages).
    probe_obfuscation_km : float
        Largest displacement of a probe's published coordinates (default 1.0 km; RIPE
        Atlas shows probe positions with deliberately reduced precision).
    probe_misplaced : float
        Share of probes whose published location is another city (default 0.03; hosts
        set probe locations by hand and some are stale or wrong: Bajpai et al., "Lessons
        learned from using the RIPE Atlas platform for measurement research", CCR 2015).
    """

    customer_numbered: float = 0.2
    third_party: float = 0.02
    unresponsive: float = 0.08
    rate_limited: float = 0.05
    mpls_invisible: float = 0.25
    siblings: float = 0.1
    ixp_port_moved: float = 0.03
    facility_omitted: float = 0.15
    probe_obfuscation_km: float = 1.0
    probe_misplaced: float = 0.03

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"artefact rate {name} must be a number, got {value!r}")
            if name.endswith("_km"):
                if not 0.0 <= value <= 100.0:
                    raise ConfigError(f"artefact {name} must be within 0..100 km, got {value!r}")
            elif not 0.0 <= value <= 1.0:
                raise ConfigError(f"artefact rate {name} must be within 0..1, got {value!r}")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Artefacts:
        """The rates of a world's ``world.json`` (unknown keys are an error)."""
        known = set(cls.__dataclass_fields__)
        extra = sorted(set(data) - known)
        if extra:
            raise ConfigError(f"unknown artefact rates {extra}; known: {sorted(known)}")
        return cls(**{k: float(v) for k, v in data.items()})


@dataclass
class ArtefactState:
    """Which entities of one topology the artefacts hit (read by the tracer and writers)."""

    rates: Artefacts
    customer_numbered: set[tuple[int, int, str]] = field(default_factory=set)  # (cust, prov, city)
    mpls_asns: set[int] = field(default_factory=set)
    siblings: dict[int, int] = field(default_factory=dict)  # access asn -> provider asn
    moved_ports: dict[tuple[int, int], int] = field(default_factory=dict)  # (ix, member) -> old
    omitted_fac: set[tuple[int, str]] = field(default_factory=set)  # (asn, city key)
    published: dict[int, tuple[float, float]] = field(default_factory=dict)  # prb -> lat, lon
    misplaced: set[int] = field(default_factory=set)

    def realised(self) -> dict[str, int]:
        return {
            "customer_numbered_links": len(self.customer_numbered),
            "mpls_invisible_asns": len(self.mpls_asns),
            "sibling_asns": len(self.siblings),
            "ixp_ports_moved": len(self.moved_ports),
            "facilities_omitted": len(self.omitted_fac),
            "probes_obfuscated": len(self.published) - len(self.misplaced),
            "probes_misplaced": len(self.misplaced),
        }


def apply_artefacts(topo: Topology, rates: Artefacts) -> ArtefactState:
    """Apply the topology-level artefacts to ``topo`` (in place) and return what was hit.

    Renumbers customer-numbered links, joins siblings into one organisation, and decides
    MPLS ASes, moved IXP ports, omitted facilities and published probe locations (the
    per-hop artefacts are the tracer's, :mod:`probes.world.trace`).
    """
    seed = topo.seed
    st = ArtefactState(rates)
    ases = topo.ases
    # customer-numbered links: renumber from the customer's link block
    for key in sorted(topo.links):
        a, b = key
        if b in topo.providers[a]:
            cust, prov = a, b
        elif a in topo.providers[b]:
            cust, prov = b, a
        else:
            continue
        new = []
        for ic in topo.links[key]:
            if ic.kind == "private" and chance(rates.customer_numbered, seed, "cnum", cust, prov, ic.city):
                blk = ases[cust]
                net = ipaddress.IPv4Network(blk.links)
                base = int(net.network_address) + 2 * blk.next_link
                blk.next_link += 1
                if blk.next_link > net.num_addresses // 2:
                    raise RuntimeError(f"link block of AS{cust} exhausted")
                addr = {cust: str(ipaddress.IPv4Address(base)), prov: str(ipaddress.IPv4Address(base + 1))}
                ic = Interconnect(ic.city, ic.kind, ic.ixp_id, addr)
                st.customer_numbered.add((cust, prov, ic.city))
            new.append(ic)
        topo.links[key] = new
    for asn in sorted(ases):
        info = ases[asn]
        if info.kind in ("tier1", "transit") and chance(rates.mpls_invisible, seed, "mpls", asn):
            st.mpls_asns.add(asn)
        provs = topo.providers[asn]
        if (
            info.kind == "access"
            and info.country != "CN"
            and len(provs) == 1
            and ases[provs[0]].family is None
            and chance(rates.siblings, seed, "sibling", asn)
        ):
            st.siblings[asn] = provs[0]
    for asn, prov in st.siblings.items():
        ases[asn].org_id = ases[prov].org_id
        ases[asn].org_name = ases[prov].org_name
    for ix_id in sorted(topo.ixps):
        ix = topo.ixps[ix_id]
        for member in sorted(ix.members):
            if not chance(rates.ixp_port_moved, seed, "port", ix_id, member):
                continue
            former = [
                a
                for a in sorted(ases)
                if a not in ix.members and ix.city in ases[a].cities and ases[a].family is None
            ] or [a for a in sorted(ases) if a not in ix.members and ases[a].family is None]
            st.moved_ports[(ix_id, member)] = former[stable_hash("former", seed, ix_id, member) % len(former)]
    for asn in sorted(ases):
        for ck in ases[asn].cities:
            if chance(rates.facility_omitted, seed, "fac", asn, ck):
                st.omitted_fac.add((asn, ck))
    for p in topo.probes:
        if p.is_anchor:
            continue
        c = topo.cities[p.city]
        if chance(rates.probe_misplaced, seed, "misplaced", p.prb_id):
            others = [k for k, o in topo.cities.items() if o.continent == c.continent and k != p.city]
            if others:
                o = topo.cities[others[stable_hash("where", seed, p.prb_id) % len(others)]]
                st.published[p.prb_id] = (o.lat, o.lon)
                st.misplaced.add(p.prb_id)
                continue
        h = stable_hash("obfuscate", seed, p.prb_id)
        dist = rates.probe_obfuscation_km * (h % 1000) / 1000.0
        bearing = 2 * math.pi * ((h >> 16) % 3600) / 3600.0
        dlat = dist * math.cos(bearing) / 111.32
        dlon = dist * math.sin(bearing) / (111.32 * max(math.cos(math.radians(p.lat)), 0.01))
        st.published[p.prb_id] = (round(p.lat + dlat, 4), round(p.lon + dlon, 4))
    return st
