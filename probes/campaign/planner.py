"""The planner's pure part: candidates + targets + rates -> probe x target matrix and cost.

No I/O here; :func:`probes.campaign.plan` fetches the candidates (probes API) and resolves the
targets, then calls :func:`build_plan`.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from probes.campaign.spec import AREAS, CampaignSpec, SourceSpec
from probes.config import AtlasLimits, CreditRates
from probes.errors import BudgetExceeded, ConfigError, TargetRefused

__all__ = ["Plan", "PlannedTarget", "Unit", "build_plan", "check_target_address",
           "source_label", "select_diverse"]


@dataclass(frozen=True)
class PlannedTarget:
    """A traceroute target: what is sent to Atlas (``name``) and what it resolved to."""

    name: str
    addresses: tuple[str, ...]
    origin: str  # "address" | "hostname" | "anchor" | "sample"
    #: For a sampled target: why it was chosen, its origin AS and its location evidence.
    why: str = ""
    asn: int | None = None
    evidence: str = ""

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "addresses": list(self.addresses), "origin": self.origin}
        if self.origin == "sample":
            d.update(why=self.why, asn=self.asn, evidence=self.evidence)
        return d


@dataclass(frozen=True)
class Unit:
    """One measurement to create: one target, a set of probes (<= Atlas limit)."""

    seq: int
    target: PlannedTarget
    probe_ids: tuple[int, ...]
    cost: int


@dataclass(frozen=True)
class Plan:
    spec: CampaignSpec
    probes: tuple[dict, ...]
    targets: tuple[PlannedTarget, ...]
    units: tuple[Unit, ...]
    credits_per_result: int
    results_per_probe: int
    total_credits: int
    set_aside: dict[str, int] = field(default_factory=dict)
    per_source: tuple[tuple[str, int, int], ...] = ()

    @property
    def probe_ids(self) -> tuple[int, ...]:
        return tuple(int(p["id"]) for p in self.probes)

    def summary(self) -> dict[str, Any]:
        return {
            "campaign": self.spec.name, "probes": len(self.probes),
            "targets": len(self.targets), "measurements": len(self.units),
            "credits_per_result": self.credits_per_result,
            "results_per_probe": self.results_per_probe,
            "total_credits": self.total_credits, "budget": self.spec.budget,
            "set_aside": dict(sorted(self.set_aside.items())),
            "per_source": [list(s) for s in self.per_source],
            "target_list": [t.as_dict() for t in self.targets],
        }


def source_label(i: int, src: SourceSpec) -> str:
    v = ",".join(map(str, src.value)) if isinstance(src.value, tuple) else src.value
    return f"source #{i + 1} ({src.kind} {v})"


#: IANA special-purpose blocks that are not globally reachable but that some Python versions
#: call global (RFC 6890 and updates: IETF protocol assignments except the two anycast
#: services, 192.0.0.9 and 192.0.0.10; benchmarking; the former Class E space).
_NOT_GLOBAL = tuple(ipaddress.ip_network(n) for n in (
    "192.0.0.0/29", "192.0.0.8/32", "192.0.0.11/32", "192.0.0.12/30", "192.0.0.16/28",
    "192.0.0.32/27", "192.0.0.64/26", "192.0.0.128/25", "198.18.0.0/15", "240.0.0.0/4"))


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a 6to4, Teredo (client) or IPv4-mapped address carries."""
    return ip.sixtofour or (ip.teredo[1] if ip.teredo else None) or ip.ipv4_mapped


def check_target_address(name: str, address: str) -> str:
    """Refuse addresses that are not globally routable unicast (private, loopback, ...).

    A 6to4, Teredo or IPv4-mapped address is judged by the IPv4 address it carries.

    >>> check_target_address("x", "8.8.8.8")
    '8.8.8.8'
    >>> check_target_address("2002:a00:1::1", "2002:a00:1::1")
    Traceback (most recent call last):
    ...
    probes.errors.TargetRefused: target '2002:a00:1::1' is a private address (2002:a00:1::1 carries 10.0.0.1); Atlas probes cannot measure it
    """
    ip = ipaddress.ip_address(address)
    inner = _embedded_v4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    judged = inner or ip
    if (judged.is_multicast or not judged.is_global or judged.is_reserved or judged.is_unspecified
            or any(judged in n for n in _NOT_GLOBAL if n.version == judged.version)):
        kind = ("loopback" if judged.is_loopback else "private" if judged.is_private else
                "multicast" if judged.is_multicast else "link-local" if judged.is_link_local else
                "reserved")
        via = "" if name == address else f" ({name} resolves to {address})"
        if inner is not None:
            via += f" ({address} carries {inner})"
        raise TargetRefused(f"target {name!r} is a {kind} address{via}; Atlas probes "
                            "cannot measure it")
    return str(ip)


def _in_area(p: dict, area: str) -> bool:
    coords = (p.get("geometry") or {}).get("coordinates")
    if not coords or len(coords) != 2 or coords[0] is None:
        return False
    lon, lat = coords
    return any(a <= lon < b and c <= lat <= d for a, b, c, d in AREAS[area])


def select_diverse(cands: Sequence[dict], *, requested: int, max_per_asn: int | None,
                   asn_of: Callable[[dict], int | None]) -> list[dict]:
    """Pick up to ``requested`` probes, round-robin over ASes (lowest id first per AS).

    At most ``max_per_asn`` per AS; probes without an ASN form one group.

    >>> ps = [{"id": i, "asn_v4": a} for i, a in [(1, 10), (2, 10), (3, 10), (4, 20), (5, 30)]]
    >>> [p["id"] for p in select_diverse(ps, requested=4, max_per_asn=None,
    ...                                  asn_of=lambda p: p["asn_v4"])]
    [1, 4, 5, 2]
    >>> [p["id"] for p in select_diverse(ps, requested=9, max_per_asn=1,
    ...                                  asn_of=lambda p: p["asn_v4"])]
    [1, 4, 5]
    """
    groups: dict[int, list[dict]] = defaultdict(list)
    for p in sorted(cands, key=lambda p: int(p["id"])):
        a = asn_of(p)
        groups[-1 if a is None else int(a)].append(p)
    order = sorted(groups)
    out: list[dict] = []
    rnd = 0
    while len(out) < requested:
        took = False
        for a in order:
            g = groups[a]
            if rnd < len(g) and (max_per_asn is None or rnd < max_per_asn):
                out.append(g[rnd])
                took = True
                if len(out) == requested:
                    break
        if not took:
            break
        rnd += 1
    return out


def _eligible(p: dict, src: SourceSpec, af: int, reasons: Counter) -> bool:
    status = (p.get("status") or {}).get("id", 1)
    if status != 1:
        reasons["not connected"] += 1
        return False
    if not p.get(f"address_v{af}") and not p.get(f"asn_v{af}"):
        reasons[f"no IPv{af}"] += 1
        return False
    anchor = bool(p.get("is_anchor"))
    if (src.anchors == "exclude" and anchor) or (src.anchors == "only" and not anchor):
        reasons["anchor filter"] += 1
        return False
    slugs = {t.get("slug") for t in p.get("tags") or [] if isinstance(t, dict)}
    if src.tags_include and not set(src.tags_include) <= slugs:
        reasons["tags_include"] += 1
        return False
    if src.tags_exclude and slugs & set(src.tags_exclude):
        reasons["tags_exclude"] += 1
        return False
    if src.kind == "area" and not _in_area(p, src.value):
        reasons["outside area"] += 1
        return False
    return True


def build_plan(spec: CampaignSpec, candidates: Sequence[Sequence[dict]],
               targets: Sequence[PlannedTarget], *, rates: CreditRates,
               limits: AtlasLimits) -> Plan:
    """The probe x target matrix, split into measurements, with its credit cost.

    Raises :class:`~probes.errors.ConfigError` when a source matches no probe and
    :class:`~probes.errors.BudgetExceeded` when the cost exceeds ``spec.budget``. So every
    plan returned satisfies ``total_credits <= spec.budget``.
    """
    if len(candidates) != len(spec.sources):
        raise ValueError("one candidate list per source expected")
    if not targets:
        raise TargetRefused("no targets left to measure")
    af = spec.measurement.af
    reasons: Counter[str] = Counter()
    chosen: dict[int, dict] = {}
    per_source = []
    for i, (src, cands) in enumerate(zip(spec.sources, candidates, strict=True)):
        ok = [p for p in cands if _eligible(p, src, af, reasons)]
        fresh = [p for p in ok if int(p["id"]) not in chosen]
        reasons["in an earlier source"] += len(ok) - len(fresh)
        if not fresh:
            raise ConfigError(f"{spec.origin}:{src.line}: no probes match {source_label(i, src)}"
                              f" ({len(cands)} candidates, {len(ok)} eligible)")
        picked = select_diverse(fresh, requested=src.requested, max_per_asn=src.max_per_asn,
                                asn_of=lambda p: p.get(f"asn_v{af}"))
        reasons["diversity/requested cap"] += len(fresh) - len(picked)
        for p in picked:
            chosen[int(p["id"])] = p
        per_source.append((source_label(i, src), len(cands), len(picked)))
    probes = tuple(chosen[k] for k in sorted(chosen))
    ids = tuple(sorted(chosen))
    m = spec.measurement
    cpr = rates.traceroute_credits_per_result(packets=m.packets, size=m.size,
                                              oneoff=spec.schedule.oneoff)
    rpp = spec.schedule.results_per_probe()
    step = limits.max_probes_per_measurement
    units = []
    seq = 0
    for t in targets:
        for k in range(0, len(ids), step):
            chunk = ids[k:k + step]
            seq += 1
            units.append(Unit(seq=seq, target=t, probe_ids=chunk, cost=len(chunk) * rpp * cpr))
    total = sum(u.cost for u in units)
    if total > spec.budget:
        raise BudgetExceeded(
            f"plan for campaign {spec.name!r} costs {total} credits "
            f"({len(ids)} probes x {len(targets)} targets x {rpp} result(s) x {cpr} credits) "
            f"but the budget is {spec.budget}; lower sources' requested counts or targets, "
            f"or raise [budget].max_credits")
    return Plan(spec=spec, probes=probes, targets=tuple(targets), units=tuple(units),
                credits_per_result=cpr, results_per_probe=rpp, total_credits=total,
                set_aside={k: v for k, v in reasons.items() if v},
                per_source=tuple(per_source))
