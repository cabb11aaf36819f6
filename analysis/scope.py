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
from analysis.metrics import bootstrap_groups, segment_starts
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
                         confidence: float = 0.95, n_boot: int = 1000, seed: int = 0) -> pa.Table:
    """Per destination: its AS and name, country and evidence, traceroutes, exposure with CI.

    Over the traceroutes of ``paths`` (pass the in-scope ones). ``exposure`` is the share of
    the destination's traceroutes that transit any flagged family. A destination's
    traceroutes come in clusters, one per probe (a probe's traceroutes share its access
    network and upstreams), so the interval is a percentile cluster bootstrap over the
    destination's probes (:func:`analysis.metrics.bootstrap_sums` of its per-probe sums,
    ``n_boot`` replicates, ``seed``): the interval :func:`analysis.metrics.path_exposure`
    gives the destination's row by ``destination``. Where the probes cannot differ (a
    single probe, or none or every one transiting) it is the Wilson interval over the
    probes, never a zero-width one; read ``probes``.

    Examples
    --------
    >>> import pyarrow as pa
    >>> paths = pa.table({"dst_addr": ["a", "a", "b"], "prb_id": [1, 2, 1],
    ...                   "transits_flagged": [True, False, False]})
    >>> d = pa.table({"dst_addr": ["a", "b"], "dst_asn": [15169, 4134], "dst_country": ["US", "US"],
    ...               "dst_country_via": ["ip2country", "as-country"], "dst_anycast": pa.array([None, None], pa.bool_())})
    >>> t = destination_exposure(paths, d)
    >>> t.select(["dst_addr", "traceroutes", "probes", "transiting", "exposure"]).to_pylist()[0]
    {'dst_addr': 'a', 'traceroutes': 2, 'probes': 2, 'transiting': 1, 'exposure': 0.5}
    >>> lo, hi = t.column("ci_low").to_pylist()[0], t.column("ci_high").to_pylist()[0]
    >>> lo <= 0.5 <= hi
    True
    """
    return destination_exposure_of(destination_pairs(paths), destinations, nodes, confidence=confidence,
                                   n_boot=n_boot, seed=seed)


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
                            confidence: float = 0.95, n_boot: int = 1000, seed: int = 0) -> pa.Table:
    """:func:`destination_exposure` from :func:`destination_pairs` (of parts, concatenated).

    The pairs are summed per (destination, probe) and sorted first, so the table depends
    neither on their order nor on how they were split into parts. Every destination's
    bootstrap runs at once (:func:`analysis.metrics.bootstrap_groups`).
    """
    pairs = _pair_sums(pairs).sort_by([("dst_addr", "ascending"), ("prb_id", "ascending")])
    starts = segment_starts(pairs, ["dst_addr"])
    n_c, k_c = (pairs.column(c).to_numpy(zero_copy_only=False) for c in ("n", "k"))
    _, lo, hi = bootstrap_groups(k_c, n_c, starts, n_boot=n_boot, confidence=confidence, seed=seed)
    dsts = pairs.column("dst_addr").take(pa.array(starts, pa.int64())).to_pylist()
    sizes = np.diff(np.append(starts, pairs.num_rows))
    n = dict(zip(dsts, np.add.reduceat(n_c, starts).tolist() if len(starts) else [], strict=True))
    k = dict(zip(dsts, np.add.reduceat(k_c, starts).tolist() if len(starts) else [], strict=True))
    probes = dict(zip(dsts, sizes.tolist(), strict=True))
    ci = dict(zip(dsts, zip(lo.tolist(), hi.tolist(), strict=True), strict=True))
    info = {r["dst_addr"]: r for r in destinations.to_pylist()}
    names: dict[int, str] = {}
    if nodes is not None and "org" in nodes.column_names:
        for r in nodes.select(["asn", "org"]).to_pylist():
            if r["asn"] is not None and r["org"]:
                names[int(r["asn"])] = r["org"]
    order = sorted(n, key=lambda d: (-n[d], str(d)))
    method = (f"cluster bootstrap over probes (prb_id), percentile, {confidence:.0%}, B={n_boot}, seed={seed}; "
              "where the probes cannot differ (a single probe, or none or every one transiting), the Wilson "
              "score interval over the probes")
    rows = []
    for d in order:
        r = info.get(d, {})
        asn = r.get("dst_asn")
        rows.append({
            "dst_addr": d, "dst_asn": asn, "dst_as_name": names.get(asn) if asn is not None else None,
            "dst_country": r.get("dst_country"), "dst_country_via": r.get("dst_country_via"),
            "dst_anycast": r.get("dst_anycast"), "dst_family": r.get("dst_family"),
            "traceroutes": n[d], "probes": probes[d],
            "transiting": k[d], "exposure": k[d] / n[d], "ci_low": ci[d][0], "ci_high": ci[d][1],
            "method": method,
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
                       confidence: float = 0.95, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Destination-hosted exposure: the share of traceroutes whose destination a flagged family hosts.

    Beside transit (an endpoint AS is not transit): ``E_dst(F) = #{t : dst_family(t) = F} / n``
    over the traceroutes of ``paths`` (pass the in-scope ones), and the list of those
    destinations with their AS, country and its evidence, so that a carrier's US data
    centres are told apart from its network in China.

    Whether a destination is hosted is the same for all its traceroutes, so the independent
    units are the destinations: the interval is a percentile cluster bootstrap over the
    destinations, each weighing its traceroutes (:func:`analysis.metrics.bootstrap_sums`,
    destinations in ascending order, ``n_boot`` replicates, ``seed``), and where they cannot
    differ (a single destination, or none or every one hosted) the Wilson interval over the
    destinations. Two destinations of 1,000 traceroutes each, one hosted, give 0.5 with an
    interval of nearly [0, 1], not the one of 2,000 independent traceroutes.

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
    >>> h["any"]["ci_low"] <= 0.75 <= h["any"]["ci_high"]
    True
    """
    return destination_hosted_of(Counter(paths.column("dst_addr").to_pylist()), destinations, families,
                                 confidence=confidence, n_boot=n_boot, seed=seed)


def destination_hosted_of(per: Mapping[Any, int], destinations: pa.Table, families: list[str], *,
                          confidence: float = 0.95, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """:func:`destination_hosted` from the traceroutes per destination (in any order)."""
    n = sum(per.values())
    info = {r["dst_addr"]: r for r in destinations.to_pylist()}
    fams = ["any", *families]
    hits = {fam: [d for d in per if info.get(d, {}).get("dst_family")
                  and (fam == "any" or info[d]["dst_family"] == fam)] for fam in fams}
    # the clusters: destinations with traceroutes, in ascending order (not the mapping's)
    dsts = sorted((d for d in per if per[d] > 0), key=lambda d: (d is None, str(d)))
    w = np.array([per[d] for d in dsts], float)
    hosted = [set(hits[fam]) for fam in fams]
    s = np.array([[per[d] if d in h else 0 for d in dsts] for h in hosted], float).reshape(-1)
    # one group per family, every group the same clusters: one draw of multiplicities for all
    _, lo, hi = bootstrap_groups(s, np.tile(w, len(fams)), np.arange(len(fams)) * len(dsts), n_boot=n_boot,
                                 confidence=confidence, seed=seed)
    out: dict[str, Any] = {}
    for i, fam in enumerate(fams):
        hit = hits[fam]
        k = sum(per[d] for d in hit)
        out[fam] = {
            "traceroutes": n, "hosted": k, "estimate": k / n if n else None,
            "ci_low": float(lo[i]) if n else None, "ci_high": float(hi[i]) if n else None,
            "method": f"cluster bootstrap over destinations (each weighing its traceroutes), percentile, "
                      f"{confidence:.0%}, B={n_boot}, seed={seed}; where the destinations cannot differ (a "
                      "single destination, or none or every one hosted), the Wilson score interval over the "
                      "destinations; share of traceroutes whose destination the family hosts (registry ASN, "
                      "sibling or static prefix)",
            "destinations": [
                {"dst_addr": d, "dst_asn": info[d].get("dst_asn"), "family": info[d]["dst_family"],
                 "evidence": info[d].get("dst_family_via"), "country": info[d].get("dst_country"),
                 "country_via": info[d].get("dst_country_via"), "traceroutes": per[d]}
                for d in sorted(hit, key=lambda d: (-per[d], d))][:MAX_LISTED],
        }
    return out
