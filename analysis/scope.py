"""Which traceroutes the figures are about: toward the destination country of the study.

"How often does traffic toward US destinations transit a flagged carrier" needs, per
traceroute, whether it went toward the US. :func:`scope_traceroutes` decides it with
:func:`analysis.destinations.toward_country` (the destination located in the country by
non-anycast evidence and reachable within its RTT; see that function for the reasons), or
keeps every traceroute for ``"any"``. :func:`with_scope` adds the verdict to the paths
table, :func:`in_scope` selects the traceroutes every figure is computed from,
:func:`scope_summary` is the ``scope`` object of ``exposure.json`` (what was kept, what was
left out and why, the destinations that could not be located, by name), and
:func:`destination_exposure` is the per-destination table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analysis._tables import sum_by
from analysis.destinations import SCOPE_REASONS, Located, Scope, toward_country
from analysis.errors import AnalysisError
from analysis.metrics import wilson_interval
from analysis.paths import PATHS_SCHEMA

__all__ = [
    "ANY",
    "SCOPE_COLUMNS",
    "SCOPED_PATHS_SCHEMA",
    "ScopeTally",
    "destination_exposure",
    "destination_exposure_of",
    "destination_pairs",
    "destination_families",
    "destination_hosted",
    "destination_hosted_of",
    "in_scope",
    "scope_summary",
    "scope_traceroutes",
    "with_scope",
]

#: The scope that keeps every traceroute, whatever its destination.
ANY = "any"

#: Columns :func:`with_scope` adds to (or sets in) the paths table.
SCOPE_COLUMNS = pa.schema([
    ("dst_country_via", pa.string()),
    ("dst_anycast", pa.bool_()),
    ("dst_family", pa.string()),
    ("dst_family_via", pa.string()),
    ("dst_rtt_ms", pa.float64()),
    ("in_scope", pa.bool_()),
    ("scope_reason", pa.string()),
])

#: The paths table with the scope verdict (``paths/paths.parquet``).
SCOPED_PATHS_SCHEMA = pa.schema([*PATHS_SCHEMA, *SCOPE_COLUMNS])

#: Unlocated or out-of-scope destinations listed by name in ``exposure.json`` (the rest counted).
MAX_LISTED = 50

_KEYS = ["msm_id", "prb_id", "timestamp"]


def _check_country(country: str) -> str:
    if country == ANY:
        return country
    if not (isinstance(country, str) and len(country) == 2 and country.isalpha()):
        raise AnalysisError(f"destination country must be a two-letter ISO 3166 code or 'any', got {country!r}")
    return country.upper()


def scope_traceroutes(rtts: pa.Table, destinations: Located | pa.Table, probes: pa.Table | None,
                      country: str = "US") -> Scope:
    """Per traceroute, whether it counts as traffic toward ``country`` (or ``"any"``).

    Parameters
    ----------
    rtts : pyarrow.Table
        :func:`analysis.destinations.destination_rtts` output (one row per traceroute).
    destinations : Located or pyarrow.Table
        ``dst_addr, dst_country, dst_country_via, dst_anycast`` per destination.
    probes : pyarrow.Table or None
        Probe metadata with ``prb_id, latitude, longitude``.
    country : str
        ISO 3166 alpha-2 code, or ``"any"`` (every traceroute in scope, reason ``any``).

    Returns
    -------
    analysis.destinations.Scope

    Examples
    --------
    A destination in Germany, reached from a probe in New York in 90 ms: not toward the US,
    but kept when the scope is any country.

    >>> import pyarrow as pa
    >>> rtts = pa.table({"msm_id": [7], "prb_id": [3], "timestamp": [0], "dst_addr": ["198.51.100.7"],
    ...                  "dst_rtt_ms": [90.0]})
    >>> dst = pa.table({"dst_addr": ["198.51.100.7"], "dst_country": ["DE"], "dst_country_via": ["rir-delegated"],
    ...                 "dst_anycast": pa.array([False])})
    >>> probes = pa.table({"prb_id": [3], "latitude": [40.7], "longitude": [-74.0]})
    >>> scope_traceroutes(rtts, dst, probes, "US").table.column("scope_reason").to_pylist()
    ['located-elsewhere']
    >>> scope_traceroutes(rtts, dst, probes, "any").table.column("scope_reason").to_pylist()
    ['any']
    """
    country = _check_country(country)
    if country != ANY:
        return toward_country(rtts, destinations, probes, country=country)
    table = toward_country(rtts, destinations, probes).table  # its columns; then every row kept
    n = table.num_rows
    for name, values in (("country_distance_km", pa.nulls(n, pa.float64())),
                         ("in_scope", pa.array(np.ones(n, bool), pa.bool_())),
                         ("scope_reason", pa.array([ANY] * n, pa.string()))):
        table = table.set_column(table.schema.get_field_index(name), name, values)
    return Scope(table, Counter(traceroutes=n, in_scope=n, any=n), ANY)


def with_scope(paths: pa.Table, scope: pa.Table) -> pa.Table:
    """The paths table with :data:`SCOPE_COLUMNS` from ``scope`` (joined on the traceroute key).

    A traceroute missing from ``scope`` is out of scope with reason ``unknown-location``.
    ``dst_country`` is the scope's (the located country) where the scope has one.
    """
    for f in SCOPE_COLUMNS:
        if f.name not in scope.column_names:
            scope = scope.append_column(f.name, pa.nulls(scope.num_rows, f.type))
    keys = scope.select([*_KEYS, "dst_country", *SCOPE_COLUMNS.names]).rename_columns(
        [*_KEYS, "scope_dst_country", *SCOPE_COLUMNS.names])
    keys = keys.set_column(2, "timestamp", pc.cast(keys["timestamp"], PATHS_SCHEMA.field("timestamp").type))
    order = pa.array(np.arange(paths.num_rows), pa.int64())
    # the key columns only (Arrow joins carry no list columns), back in the paths' order
    joined = paths.select(_KEYS).append_column("_row", order).join(
        keys, keys=_KEYS, join_type="left outer", use_threads=False).sort_by("_row")
    out = paths.drop_columns([c for c in SCOPE_COLUMNS.names if c in paths.column_names])
    out = out.set_column(out.schema.get_field_index("dst_country"), "dst_country",
                         pc.coalesce(joined["scope_dst_country"], out["dst_country"]))
    for name in SCOPE_COLUMNS.names:
        col = joined[name]
        if name == "in_scope":
            col = pc.fill_null(col, False)
        elif name == "scope_reason":
            col = pc.fill_null(col, "unknown-location")
        out = out.append_column(name, col)
    return out.select(SCOPED_PATHS_SCHEMA.names).cast(SCOPED_PATHS_SCHEMA)


def in_scope(paths: pa.Table) -> pa.Table:
    """The traceroutes in scope (all of them when the table has no ``in_scope`` column)."""
    if "in_scope" not in paths.column_names:
        return paths
    keep = pc.fill_null(paths["in_scope"], False)
    if pc.all(keep).as_py() is not False:  # every one (or none at all): no copy of the table
        return paths
    return paths.filter(keep)


@dataclass
class ScopeTally:
    """What :func:`scope_summary` needs of a scope verdict, summed over its parts.

    A campaign's traceroutes are scoped part by part (one store segment at a time): each
    part's :class:`~analysis.destinations.Scope` is tallied with :meth:`of` and the tallies
    summed with ``+``; no table of every traceroute is kept.
    """

    country: str
    traceroutes: int = 0
    in_scope: int = 0
    reasons: Counter = field(default_factory=Counter)
    destinations_in_scope: set = field(default_factory=set)

    @classmethod
    def empty(cls, country: str) -> ScopeTally:
        """No traceroute yet, toward ``country`` (as :func:`scope_traceroutes` takes it)."""
        return cls(_check_country(country))

    @classmethod
    def of(cls, scope: Scope) -> ScopeTally:
        t = scope.table
        kept = pc.fill_null(t["in_scope"], False)
        return cls(scope.country, t.num_rows, int(pc.sum(kept).as_py() or 0),
                   Counter(t.column("scope_reason").to_pylist()),
                   set(pc.unique(t.filter(kept).column("dst_addr")).to_pylist()))

    def __add__(self, other: ScopeTally) -> ScopeTally:
        if other.country != self.country:
            raise AnalysisError(f"scope tallies of different countries: {self.country} and {other.country}")
        return ScopeTally(self.country, self.traceroutes + other.traceroutes, self.in_scope + other.in_scope,
                          self.reasons + other.reasons, self.destinations_in_scope | other.destinations_in_scope)


def scope_summary(scope: Scope | ScopeTally, located: Located) -> dict[str, Any]:
    """The ``scope`` object of ``exposure.json``.

    ``country``; ``traceroutes`` (all) and ``traceroutes_in_scope``; ``destinations`` and
    ``destinations_in_scope``; ``left_out`` (traceroutes by :data:`SCOPE_REASONS` reason);
    ``located_by`` (destinations by evidence); ``unknown_destinations`` and
    ``anycast_destinations`` (up to :data:`MAX_LISTED` addresses each, with their counts);
    ``sentence``: the line the console and the report open with.
    """
    tally = scope if isinstance(scope, ScopeTally) else ScopeTally.of(scope)
    reasons = tally.reasons
    dst_in = sorted(tally.destinations_in_scope)
    n_in = tally.in_scope
    lt = located.table
    unknown = lt.filter(pc.equal(lt["dst_country_via"], "unknown"))
    anycast = lt.filter(pc.fill_null(lt["dst_anycast"], False))
    left = {r: reasons[r] for r in SCOPE_REASONS if r in reasons and r not in ("in-country", "anycast-rtt-compatible")}
    where = "any country" if tally.country == ANY else f"{tally.country} destinations"
    sentence = (f"toward {len(dst_in):,} {'destinations' if tally.country == ANY else where}, "
                f"{n_in:,} traceroutes")
    if tally.country != ANY:
        out = tally.traceroutes - n_in
        sentence += (f"; {out:,} traceroutes to other or unknown countries left out"
                     + (" (" + ", ".join(f"{k} {v:,}" for k, v in left.items()) + ")" if left else ""))
    return {
        "country": tally.country,
        "traceroutes": tally.traceroutes,
        "traceroutes_in_scope": n_in,
        "destinations": lt.num_rows,
        "destinations_in_scope": len(dst_in),
        "left_out": left,
        "located_by": dict(sorted(Counter(lt.column("dst_country_via").to_pylist()).items())),
        "unknown_destinations": {"count": unknown.num_rows,
                                 "addresses": unknown.column("dst_addr").to_pylist()[:MAX_LISTED]},
        "anycast_destinations": {"count": anycast.num_rows,
                                 "addresses": anycast.column("dst_addr").to_pylist()[:MAX_LISTED]},
        "method": "destination located by the strongest evidence (anchor, IPmap, ip2country, RIR "
                  "registry country, the AS's country); counted toward the country only when not "
                  "anycast and the country is within reach of the traceroute's own RTT to the "
                  "destination (2/3 c); see analysis.destinations.toward_country",
        "sentence": sentence,
    }


def destination_exposure(paths: pa.Table, destinations: pa.Table, nodes: pa.Table | None = None, *,
                         confidence: float = 0.95) -> pa.Table:
    """Per destination: its AS and name, country and evidence, traceroutes, exposure with CI.

    Over the traceroutes of ``paths`` (pass the in-scope ones). ``exposure`` is the share of
    the destination's traceroutes that transit any flagged family, with a Wilson score
    interval (one destination is one cluster: no bootstrap over probes here).

    Examples
    --------
    >>> import pyarrow as pa
    >>> paths = pa.table({"dst_addr": ["a", "a", "b"], "prb_id": [1, 2, 1],
    ...                   "transits_flagged": [True, False, False]})
    >>> d = pa.table({"dst_addr": ["a", "b"], "dst_asn": [15169, 4134], "dst_country": ["US", "US"],
    ...               "dst_country_via": ["ip2country", "as-country"], "dst_anycast": pa.array([None, None], pa.bool_())})
    >>> t = destination_exposure(paths, d)
    >>> t.select(["dst_addr", "traceroutes", "transiting", "exposure"]).to_pylist()[0]
    {'dst_addr': 'a', 'traceroutes': 2, 'transiting': 1, 'exposure': 0.5}
    """
    return destination_exposure_of(destination_pairs(paths), destinations, nodes, confidence=confidence)


def destination_pairs(paths: pa.Table) -> pa.Table:
    """Per (``dst_addr``, ``prb_id``): traceroutes ``n`` and those transiting a flagged
    family ``k``. Pairs of parts of a table, concatenated, sum to the whole's.

    >>> destination_pairs(pa.table({"dst_addr": ["a", "a"], "prb_id": [1, 1], "transits_flagged": [True, None]})
    ...                   ).to_pylist()
    [{'dst_addr': 'a', 'prb_id': 1, 'n': 2, 'k': 1}]
    """
    t = pa.table({"dst_addr": paths["dst_addr"], "prb_id": paths["prb_id"],
                  "n": pa.array(np.ones(paths.num_rows, np.int64)),
                  "k": pc.cast(pc.fill_null(paths["transits_flagged"], False), pa.int64())})
    return _pair_sums(t)


def _pair_sums(t: pa.Table) -> pa.Table:
    return sum_by(t.select(["dst_addr", "prb_id", "n", "k"]), ["dst_addr", "prb_id"])


def destination_exposure_of(pairs: pa.Table, destinations: pa.Table, nodes: pa.Table | None = None, *,
                            confidence: float = 0.95) -> pa.Table:
    """:func:`destination_exposure` from :func:`destination_pairs` (of parts, concatenated)."""
    pairs = _pair_sums(pairs)
    per = pairs.group_by("dst_addr", use_threads=False).aggregate([("n", "sum"), ("k", "sum"), ("prb_id", "count")])
    dsts = per.column("dst_addr").to_pylist()
    n = dict(zip(dsts, per.column("n_sum").to_pylist(), strict=True))
    k = dict(zip(dsts, per.column("k_sum").to_pylist(), strict=True))
    probes = dict(zip(dsts, per.column("prb_id_count").to_pylist(), strict=True))
    info = {r["dst_addr"]: r for r in destinations.to_pylist()}
    names: dict[int, str] = {}
    if nodes is not None and "org" in nodes.column_names:
        for r in nodes.select(["asn", "org"]).to_pylist():
            if r["asn"] is not None and r["org"]:
                names[int(r["asn"])] = r["org"]
    order = sorted(n, key=lambda d: (-n[d], str(d)))
    nn = np.array([n[d] for d in order], float)
    kk = np.array([k[d] for d in order], float)
    lo, hi = wilson_interval(kk, nn, confidence=confidence) if order else (np.zeros(0), np.zeros(0))
    rows = []
    for i, d in enumerate(order):
        r = info.get(d, {})
        asn = r.get("dst_asn")
        rows.append({
            "dst_addr": d, "dst_asn": asn, "dst_as_name": names.get(asn) if asn is not None else None,
            "dst_country": r.get("dst_country"), "dst_country_via": r.get("dst_country_via"),
            "dst_anycast": r.get("dst_anycast"), "dst_family": r.get("dst_family"),
            "traceroutes": n[d], "probes": probes[d],
            "transiting": k[d], "exposure": k[d] / n[d], "ci_low": float(lo[i]), "ci_high": float(hi[i]),
            "method": f"Wilson score interval, {confidence:.0%}",
        })
    return pa.Table.from_pylist(rows, schema=_DEST_SCHEMA)


_DEST_SCHEMA = pa.schema([
    ("dst_addr", pa.string()), ("dst_asn", pa.int64()), ("dst_as_name", pa.string()),
    ("dst_country", pa.string()), ("dst_country_via", pa.string()), ("dst_anycast", pa.bool_()),
    ("dst_family", pa.string()), ("traceroutes", pa.int64()), ("probes", pa.int64()), ("transiting", pa.int64()),
    ("exposure", pa.float64()), ("ci_low", pa.float64()), ("ci_high", pa.float64()), ("method", pa.string()),
])


def destination_families(destinations: pa.Table, registry: Any, node_family: dict[str, str] | None = None
                         ) -> pa.Table:
    """The destination table with ``dst_family`` and ``dst_family_via``: the flagged family whose
    network hosts each destination, and the evidence.

    ``registry-asn`` (the destination AS is a family ASN, as the annotation or the registry
    says), ``as2org-sibling`` (a sibling the registry added), ``static-prefix`` (the address
    is in the family's router space that no BGP table carries); null when not flagged.

    Examples
    --------
    >>> import pyarrow as pa
    >>> from analysis.registry import load_registry
    >>> d = pa.table({"dst_addr": ["192.0.2.1", "198.51.100.1"], "dst_asn": [4134, 15169]})
    >>> destination_families(d, load_registry()).column("dst_family").to_pylist()
    ['china-telecom', None]
    """
    import ipaddress

    node_family = node_family or {}
    fam: list[str | None] = []
    via: list[str | None] = []
    nets = [(ipaddress.ip_network(sp.prefix), sp.family) for sp in getattr(registry, "prefixes", ())]
    for addr, asn in zip(destinations["dst_addr"].to_pylist(), destinations["dst_asn"].to_pylist(), strict=True):
        f, v = None, None
        if asn is not None:
            entry = registry.family_of(asn) if registry is not None else None
            if node_family.get(f"AS{asn}"):
                f, v = node_family[f"AS{asn}"], "registry-asn"
            elif entry is not None:
                f, v = entry.family, "as2org-sibling" if entry.via == "as2org-sibling" else "registry-asn"
        if f is None and addr and nets:
            try:
                ip = ipaddress.ip_address(addr)
            except ValueError:
                ip = None
            for net, family in nets:
                if ip is not None and ip.version == net.version and ip in net:
                    f, v = family, "static-prefix"
                    break
        fam.append(f)
        via.append(v)
    out = destinations
    for name, values in (("dst_family", fam), ("dst_family_via", via)):
        if name in out.column_names:
            out = out.drop_columns([name])
        out = out.append_column(name, pa.array(values, pa.string()))
    return out


def destination_hosted(paths: pa.Table, destinations: pa.Table, families: list[str], *,
                       confidence: float = 0.95) -> dict[str, Any]:
    """Destination-hosted exposure: the share of traceroutes whose destination a flagged family hosts.

    Beside transit (an endpoint AS is not transit): ``E_dst(F) = #{t : dst_family(t) = F} / n``
    over the traceroutes of ``paths`` (pass the in-scope ones), with a Wilson score interval,
    and the list of those destinations with their AS, country and its evidence, so that a
    carrier's US data centres are told apart from its network in China.

    Examples
    --------
    >>> import pyarrow as pa
    >>> p = pa.table({"dst_addr": ["a", "a", "b", "c"]})
    >>> d = pa.table({"dst_addr": ["a", "b", "c"], "dst_asn": [4134, 58807, 15169],
    ...               "dst_country": ["US", "US", "US"], "dst_country_via": ["ip2country"] * 3,
    ...               "dst_family": ["china-telecom", "china-mobile", None],
    ...               "dst_family_via": ["registry-asn", "registry-asn", None]})
    >>> h = destination_hosted(p, d, ["china-telecom", "china-mobile"])
    >>> h["any"]["hosted"], h["any"]["estimate"], h["china-telecom"]["estimate"]
    (3, 0.75, 0.5)
    """
    return destination_hosted_of(Counter(paths.column("dst_addr").to_pylist()), destinations, families,
                                 confidence=confidence)


def destination_hosted_of(per: Mapping[Any, int], destinations: pa.Table, families: list[str], *,
                          confidence: float = 0.95) -> dict[str, Any]:
    """:func:`destination_hosted` from the traceroutes per destination."""
    n = sum(per.values())
    info = {r["dst_addr"]: r for r in destinations.to_pylist()}
    out: dict[str, Any] = {}
    for fam in ["any", *families]:
        hit = [d for d in per if info.get(d, {}).get("dst_family") and (fam == "any" or info[d]["dst_family"] == fam)]
        k = sum(per[d] for d in hit)
        lo, hi = wilson_interval(np.array([k], float), np.array([n], float), confidence=confidence)
        out[fam] = {
            "traceroutes": n, "hosted": k, "estimate": k / n if n else None,
            "ci_low": float(lo[0]) if n else None, "ci_high": float(hi[0]) if n else None,
            "method": f"Wilson score interval, {confidence:.0%}; share of traceroutes whose destination "
                      "the family hosts (registry ASN, sibling or static prefix)",
            "destinations": [
                {"dst_addr": d, "dst_asn": info[d].get("dst_asn"), "family": info[d]["dst_family"],
                 "evidence": info[d].get("dst_family_via"), "country": info[d].get("dst_country"),
                 "country_via": info[d].get("dst_country_via"), "traceroutes": per[d]}
                for d in sorted(hit, key=lambda d: (-per[d], d))][:MAX_LISTED],
        }
    return out
