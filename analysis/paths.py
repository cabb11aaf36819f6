"""Per-traceroute AS/IXP paths, flagged-carrier crossings and speed-of-light verdicts.

:func:`build_paths` turns the annotated hop table (one row per reply, see the contracts in
``analysis.annotate``) into one row per traceroute. The rules, after traIXroute (Nomikos and
Dimitropoulos, PAM 2016) and the IHR AS-hegemony path cleaning (Fontugne et al., PAM 2018):

* Each hop is represented by its first reply (lowest attempt, late and duplicate packets
  excluded); its RTT is the minimum over the replies from that same address.
* A hop becomes a path node only if it is public and resolved to an AS (node ``AS<n>``),
  or lies on an IXP peering LAN (node ``IXP:<ixp_id>`` followed by ``AS<member>`` for the
  member holding that interface). Timeouts, private/shared/other non-public addresses and
  unresolved public addresses create no node and hence no AS link; consecutive equal nodes
  collapse, so a gap inside one AS is bridged.
* A node that reappears after a different node marks a **loop** (``loop`` column); the path
  is kept as observed.
* Each *entry* into a flagged family (the first node row of a run of that family) is a
  **PoP crossing**. Where it happened: at an IXP when the entering hop's address is on an
  IXP LAN (evidence ``ixp-lan-member-interface``) or the hop right before it is
  (``follows-ixp-lan-address``); ``unknown`` when the hop right before it did not answer
  (``after-unresponsive-hop``: that hop may have been the IXP); otherwise ``private
  interconnect`` (``direct-adjacency``). Entries are per family: moving between two ASes
  of the same family (AS4134 -> AS23764) is not a new entry.
  The crossing's RTT is the minimum RTT of the hop that is on the IXP LAN (else of the
  entering hop); an IXP crossing's location verdict comes from
  :func:`analysis.geo.location_verdict` against the probe's location.
* Every crossing carries ``pop_city`` / ``pop_country`` / ``location_evidence`` /
  ``location_confidence`` (:data:`LOCATION_WEIGHTS`; null where no place is given): the IXP's
  (``ixp``), or, for crossings not at an IXP and when ``facilities`` are given, the result
  of a constrained facility search after Giotsas et al. (CoNEXT 2015): the facilities
  (cities) where both the entered AS and the AS crossed from are present
  (``netfac-shared``), else the entered carrier's own PoPs -- its facilities plus, for an
  AS registered in China, its home backbone cities, which its facility list misses
  (``carrier-pops``; against a shared facility they count only for a network registered in
  China or its SARs, :data:`HOME_REGION`, or one listed there itself: others meet the
  carriers where both list a facility) -- kept only inside the speed-of-light disc
  (``min RTT x 99.93 km``) of every probe that saw the entering address (CBG-style;
  ``+rtt-discs`` when more than one; for a private interconnect also the hop before it, the
  link's far end), else of this traceroute's probe. After a silent hop the entering router
  may lie beyond the crossing: its discs place the router, as this probe's own disc alone
  would. Where the traceroute reached a destination whose
  place is known (an anchor or an IPmap point, proven unicast), the entering router is on
  the forward path to it, so the round trip probe -> router -> destination -> probe fits in
  the destination's RTT: candidates outside that ellipse are dropped too
  (``+dst-ellipse``). The RTT floor (Octant's negative constraints) drops a candidate two
  probes (with a known access RTT) saw the router too late to be near (``+rtt-floor``;
  :data:`FLOOR_STRETCH`), unless it would leave no facility city in reach (a tromboned
  path). When nothing of the entered AS is kept and the traceroute goes on
  inside the family, the facilities of the AS crossed from inside the same constraints
  stand in (``netfac-far-side``: the carrier's presence there is missing from PeeringDB);
  when neither list fits, two or more probes' discs keeping the facility cities (of any
  network) of one country (one city) only give that place (``facility-cities``:
  interconnects sit in facilities; a lone entry hop too, since the discs place the router
  that answered). A router location (``routers``: RIPE IPmap) of the entering address that
  the discs keep places it where nothing else did (``ipmap``), confirms the same city
  (``+ipmap``), or, naming another city, withholds both (``+ipmap-conflict``: either
  source may be stale).
  A country (city) is set only when every kept candidate agrees on it, and a
  ``carrier-pops`` city only when the AS crossed from lists no facility inside the
  constraints (else one of the two lists misses the interconnect's facility: the country
  alone) and no network lists a facility inside them in another city (the carrier's list
  may miss its PoP there: only what every facility city in reach shares is given -- the
  country, or nothing); such a crossing's verdict is ``consistent`` by construction.
  PeeringDB is incomplete, so this locates, never refutes.
* Hops in the probe's own AS or the destination's AS are endpoints, not transit, unless
  ``include_endpoints=True``.
* **RTT jumps** of at least ``rtt_jump_ms`` between consecutive responsive hops are
  recorded (ocean crossings).
* **Detour**: source and destination countries known and outside China, and a flagged
  (non-endpoint) hop whose registry country is CN (the IXP's country when on an IXP LAN,
  else the AS's) and whose min RTT is large enough to reach mainland China from the probe
  (RTT x 99.93 km/ms >= distance to the nearest of Beijing, Shanghai, Guangzhou). Null when
  the probe location or either country is unknown.

Path nodes are the ids of :mod:`analysis.nodes` (``AS<n>``, ``IXP:<ixp_id>``; re-exported
here). Everything in this module is a pure function over tables;
:func:`analysis.campaign_io.analyze_campaign` is the I/O edge that runs it (and
:mod:`analysis.metrics`, :mod:`analysis.graph`) over a campaign workspace.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analysis._tables import (
    ANNOTATED_OPTIONAL,
    ANNOTATED_REQUIRED,
    annotated_as,
    as_attribute,
    connect,
    float_np,
    int_np,
    lex_order,
    list_of,
    nearly_sorted_unique,
    node_attributes_sql,
    override_families,
    plain,
    registry_lookup,
    replying_attributes_sql,
    stale_replies,
    string_codes,
)
from analysis.errors import SchemaMismatch
from analysis.geo import KM_PER_MS_RTT, VERDICTS, haversine_km, location_verdict
from analysis.metrics import segment_starts
from analysis.nodes import AS_PREFIX, IXP_PREFIX, as_node, ixp_node, parse_node

if TYPE_CHECKING:
    from analysis.registry import Registry

    #: A flagged-carrier registry: a :class:`analysis.registry.Registry` or ``asn -> family``.
    RegistryLike = Mapping[int, str] | Registry

__all__ = [
    "AS_PREFIX",
    "IXP_PREFIX",
    "PRIVATE_INTERCONNECT",
    "UNKNOWN_INTERCONNECT",
    "CHINA_REFERENCE_POINTS",
    "HOME_REGION",
    "LOCATION_WEIGHTS",
    "ONE_DISC_FACTOR",
    "PATHS_SCHEMA",
    "CROSSING_TYPE",
    "RTT_JUMP_TYPE",
    "as_node",
    "ixp_node",
    "parse_node",
    "build_paths",
    "misplaced_probes",
    "node_attributes",
]

#: ``kind`` of a crossing that is not at a known IXP, the previous hop having answered.
PRIVATE_INTERCONNECT = "private interconnect"
#: ``kind`` of a crossing right after an unresponsive hop (which may have been an IXP LAN).
UNKNOWN_INTERCONNECT = "unknown"

#: The RTT floor (Octant's negative constraints, Wong et al., NSDI 2007): a router at ``d`` km
#: from a probe answers it within ``base + FLOOR_STRETCH x d / 99.93 km + FLOOR_SLACK_MS``,
#: ``base`` the probe's own minimum RTT to any public hop (its access network). A candidate
#: place is out of reach when at least :data:`FLOOR_PROBES` probes at distinct places saw the
#: router later than that. Not a law of physics as the discs are (a path can trombone): it
#: needs two probes, and it is dropped for a crossing whose discs keep no facility city it
#: allows. Path stretch on the Internet is mostly below 2-3x great-circle fibre distance.
FLOOR_STRETCH = 3.0
FLOOR_SLACK_MS = 15.0
FLOOR_PROBES = 2

#: Allowance for probes' published coordinates (Atlas moves them by up to ~1 km; IPmap and
#: users round them) when two probes' discs for one address are tested for overlap.
MISPLACED_SLACK_KM = 50.0

#: ``location_confidence`` of a crossing's place by its evidence (the first part of
#: ``location_evidence``), rule weights in the manner of the ownership stage's: an IXP LAN
#: address is at its IXP; facilities both networks list, then the carrier's own PoPs, then
#: places inferred around a list that misses them. On the large artefact world (seed 0) the
#: cities they gave were right for 100% (ixp, 6,402 cities), 98.0% (netfac-shared, 9,238),
#: 99.7% (carrier-pops, 3,040), 70% (netfac-far-side and facility-cities, 60 each), a false
#: crossing's place counting as wrong (accuracy.json's ``location_by_evidence``).
LOCATION_WEIGHTS = {"ixp": 0.95, "netfac-shared": 0.9, "ipmap": 0.85, "carrier-pops": 0.85,
                    "netfac-far-side": 0.6, "facility-cities": 0.6}
#: Factor on a place that one probe's disc alone constrained (CBG with a single landmark).
ONE_DISC_FACTOR = 0.9
#: Registration countries of the networks that meet the Chinese carriers at their home
#: backbone cities (cross-border backhaul into Guangzhou, Shenzhen, ...): mainland China
#: and its SARs. A network registered elsewhere meets them where both list a facility.
HOME_REGION = ("CN", "HK", "MO")
#: (name, latitude, longitude) of the flagged carriers' main mainland-China backbone cities.
CHINA_REFERENCE_POINTS = (
    ("Beijing", 39.9042, 116.4074),
    ("Shanghai", 31.2304, 121.4737),
    ("Guangzhou", 23.1291, 113.2644),
)

_TRACES_REQUIRED = ("msm_id", "prb_id", "timestamp", "dst_addr")

CROSSING_TYPE = pa.struct(
    [
        ("family", pa.string()),
        ("asn", pa.int64()),
        ("from_asn", pa.int64()),
        ("hop", pa.int16()),
        ("address", pa.string()),
        ("kind", pa.string()),
        ("ixp_id", pa.string()),
        ("ixp_name", pa.string()),
        ("ixp_city", pa.string()),
        ("ixp_country", pa.string()),
        ("evidence", pa.string()),
        ("min_rtt", pa.float64()),
        ("distance_km", pa.float64()),
        ("max_distance_km", pa.float64()),
        ("verdict", pa.string()),
        ("pop_city", pa.string()),
        ("pop_country", pa.string()),
        ("location_evidence", pa.string()),
        ("location_confidence", pa.float64()),
    ]
)
RTT_JUMP_TYPE = pa.struct(
    [
        ("from_hop", pa.int16()),
        ("to_hop", pa.int16()),
        ("from_rtt", pa.float64()),
        ("to_rtt", pa.float64()),
        ("delta_ms", pa.float64()),
    ]
)
_TS = pa.timestamp("s", tz="UTC")

#: Schema of the table :func:`build_paths` returns (one row per traceroute).
PATHS_SCHEMA = pa.schema(
    [
        ("msm_id", pa.int64()),
        ("prb_id", pa.int64()),
        ("timestamp", _TS),
        ("day", pa.date32()),
        ("af", pa.int8()),
        ("probe_addr", pa.string()),
        ("probe_asn", pa.int64()),
        ("probe_country", pa.string()),
        ("probe_lat", pa.float64()),
        ("probe_lon", pa.float64()),
        ("dst_addr", pa.string()),
        ("dst_name", pa.string()),
        ("dst_asn", pa.int64()),
        ("dst_country", pa.string()),
        ("destination_reached", pa.bool_()),
        ("as_path", pa.list_(pa.string())),
        ("loop", pa.bool_()),
        ("responsive_hops", pa.int32()),
        ("unresolved_hops", pa.int32()),
        ("transits_flagged", pa.bool_()),
        ("flagged_families", pa.list_(pa.string())),
        ("pop_crossings", pa.list_(CROSSING_TYPE)),
        ("rtt_jumps", pa.list_(RTT_JUMP_TYPE)),
        ("detour", pa.bool_()),
        ("detour_hops", pa.list_(pa.int16())),
    ]
)


# ---------------------------------------------------------------------------- build_paths
def build_paths(
    annotated: pa.Table,
    traces: pa.Table,
    probes: pa.Table,
    *,
    registry: RegistryLike | None = None,
    destinations: pa.Table | None = None,
    include_endpoints: bool = False,
    rtt_jump_ms: float = 40.0,
    facilities: pa.Table | None = None,
    discs: pa.Table | None = None,
    routers: pa.Table | None = None,
    owner_attributes: pa.Table | None = None,
) -> tuple[pa.Table, Counter[str]]:
    """One row per traceroute: AS/IXP path, flagged crossings, verdicts, RTT jumps, detours.

    Parameters
    ----------
    annotated : pyarrow.Table
        Annotated hop table (hop-table columns plus ``asn``, ``ip_class``, ``ixp_*``,
        ``member_asn``, ``family``, ``as_country``).
    traces : pyarrow.Table
        Traceroute table (:data:`probes.schema.TRACE_SCHEMA`); it decides which traceroutes
        exist, so a traceroute without hops still gets a row.
    probes : pyarrow.Table
        Probe metadata (``prb_id``, ``asn_v4``, ``asn_v6``, ``country_code``, ``latitude``,
        ``longitude``); probes missing from it have null AS/country/location.
    registry : analysis.registry.Registry or mapping of int to str, optional
        Overrides the annotated ``family`` column (e.g. a user's own list).
    destinations : pyarrow.Table, optional
        ``dst_addr, dst_asn, dst_country`` for destinations; otherwise the annotation of a
        hop replying from the destination address is used.
    include_endpoints : bool
        Count hops in the probe's or the destination's AS as transit.
    rtt_jump_ms : float
        Smallest RTT increase between consecutive responsive hops recorded as a jump.
    facilities : pyarrow.Table, optional
        ``asn, city, country, lat, lon``: the facilities each network is present at
        (PeeringDB ``netfac`` + ``fac``). Locates crossings that are not at an IXP by a
        constrained facility search (see the module notes).
    discs : pyarrow.Table, optional
        ``addr, lat, lon, rtt``: per reply address, the location of each probe that saw it
        and its minimum RTT from there (the whole campaign's, not only these traceroutes');
        the facility search keeps only candidates inside all of them. An optional ``base``
        (the probe's minimum RTT to any public address) enables the RTT floor.
    routers : pyarrow.Table, optional
        ``ip, city, cc, lat, lon``: geolocated router addresses (the ``ipmap`` kind's
        ``addresses`` table). An entering address found there is placed in its city when
        the discs keep that point (see the module notes).
    owner_attributes : pyarrow.Table, optional
        ``asn, family, as_country``: per AS, the family and registry country the
        annotation gave it over the whole campaign (one row per AS it met; null where it
        gave none). A hop the ownership stage moved to another AS takes that AS's family
        and country from it; without it, from the rows of ``annotated``
        (:func:`_owner_attributes`).

    Returns
    -------
    (pyarrow.Table, collections.Counter)
        The paths (:data:`PATHS_SCHEMA`) sorted by key, and counts of set-aside or
        non-node records by reason.
    """
    drops: Counter[str] = Counter()
    annotated = _check_columns(annotated, ANNOTATED_REQUIRED, ANNOTATED_OPTIONAL, "annotated hops")
    _check_columns(traces, _TRACES_REQUIRED, {}, "traces")
    _check_columns(probes, ("prb_id",), {}, "probe metadata")

    tr = _trace_frame(traces, drops)
    ntr = tr.num_rows
    probe_cols = _probe_columns(tr, probes)
    hops = _representative_hops(annotated, tr, drops)

    tid = hops["tid"]
    dst_asn, dst_country, dst_lat, dst_lon = _destination_columns(tr, annotated, destinations)
    p_asn = probe_cols["probe_asn"]
    p_lat, p_lon = probe_cols["probe_lat"], probe_cols["probe_lon"]

    # --- node rows ---------------------------------------------------------------
    is_ixp = hops["is_ixp"]
    is_pub = hops["is_public"]
    asn, member = hops["asn"], hops["member"]
    if "owner" in hops:
        origin_asn, origin_member = asn, member
        asn, member, reassigned = _owner_columns(hops, drops)
        # the owner's country (where the crossing is searched, detours) and family
        hops.update(_owner_attributes(hops, annotated, asn, member, reassigned,
                                      ("as_country",) if registry is not None else ("as_country", "family"),
                                      owner_attributes))
    is_as = ~is_ixp & is_pub & (asn >= 0)
    eff_asn = np.where(is_ixp, member, np.where(is_as, asn, -1))
    _count(drops, "unresolved-public-hop", int((~is_ixp & is_pub & (asn < 0)).sum()))
    _count(drops, "non-public-hop", int((~is_ixp & ~is_pub).sum()))

    fam_names, fam = _families(hops, eff_asn, registry)
    endpoint = (eff_asn >= 0) & (
        (eff_asn == p_asn[tid]) | (eff_asn == dst_asn[tid])
    )
    transit_fam = np.where((fam >= 0) & (include_endpoints | ~endpoint), fam, -1)

    as_path, loop = _as_path(tid, is_ixp, is_as, asn, member, hops["ixp_id"], ntr)
    if "owner" in hops:
        origin_is_as = ~is_ixp & is_pub & (origin_asn >= 0)
        _, origin_loop = _as_path(tid, is_ixp, origin_is_as, origin_asn, origin_member, hops["ixp_id"], ntr)
        _count_loop_artefacts(drops, tid, origin_loop & ~loop, reassigned, hops["owner_via"])

    # flagged families per traceroute
    has = transit_fam >= 0
    pair = np.unique(tid[has] * max(len(fam_names), 1) + transit_fam[has])
    f_tid, f_code = pair // max(len(fam_names), 1), pair % max(len(fam_names), 1)
    flagged = list_of(
        pa.array(np.asarray(fam_names, dtype=object)[f_code] if len(f_code) else [], pa.string()),
        f_tid,
        ntr,
    )
    transits = np.zeros(ntr, bool)
    transits[f_tid] = True

    ellipse = (p_lat, p_lon, dst_lat, dst_lon, _destination_rtt(hops, tid, tr.column("dst_addr"), ntr))
    crossings = _crossings(
        hops, tid, is_ixp, is_as, eff_asn, transit_fam, fam_names, p_lat, p_lon, ntr, facilities, discs, ellipse,
        routers,
    )
    jumps = _rtt_jumps(tid, hops["hop"], hops["rtt"], rtt_jump_ms, ntr)
    detour, detour_hops = _detours(
        hops, tid, transit_fam, is_ixp, p_lat, p_lon, probe_cols["probe_country"], dst_country, ntr
    )

    responsive = np.bincount(tid, minlength=ntr).astype(np.int32)
    unresolved = np.bincount(tid[~is_ixp & is_pub & (asn < 0)], minlength=ntr).astype(np.int32)
    reached = (
        tr.column("destination_reached")
        if "destination_reached" in tr.column_names
        else pa.nulls(ntr, pa.bool_())
    )
    cols: dict[str, Any] = {
        "msm_id": tr.column("msm_id"),
        "prb_id": tr.column("prb_id"),
        "timestamp": tr.column("timestamp").cast(_TS),
        "day": pc.cast(tr.column("timestamp").cast(_TS), pa.date32()),
        "af": tr.column("af") if "af" in tr.column_names else pa.nulls(ntr, pa.int8()),
        "probe_addr": probe_cols["probe_addr"],
        "probe_asn": _nullable_int(p_asn),
        "probe_country": probe_cols["probe_country"],
        "probe_lat": _nullable_float(p_lat),
        "probe_lon": _nullable_float(p_lon),
        "dst_addr": tr.column("dst_addr"),
        "dst_name": tr.column("dst_name") if "dst_name" in tr.column_names else pa.nulls(ntr, pa.string()),
        "dst_asn": _nullable_int(dst_asn),
        "dst_country": dst_country,
        "destination_reached": reached,
        "as_path": as_path,
        "loop": pa.array(loop),
        "responsive_hops": pa.array(responsive),
        "unresolved_hops": pa.array(unresolved),
        "transits_flagged": pa.array(transits),
        "flagged_families": flagged,
        "pop_crossings": crossings,
        "rtt_jumps": jumps,
        "detour": detour,
        "detour_hops": detour_hops,
    }
    arrays = [pa.chunked_array([c]) if isinstance(c, pa.Array) else c for c in cols.values()]
    table = pa.Table.from_arrays(arrays, names=list(cols))
    return table.cast(PATHS_SCHEMA), drops


def node_attributes(annotated: pa.Table, *, registry: RegistryLike | None = None) -> pa.Table:
    """Attributes of every path node seen in an annotated hop table.

    Returns a table ``node, kind, asn, org, family, country, name, city`` with one row per
    AS node (from ``asn`` of public hops and ``member_asn`` of IXP-LAN hops) and per IXP
    node; the most frequent non-null value wins.
    """
    annotated = _check_columns(annotated, ("asn", "ixp_id", "member_asn", "family"), {
        "org": pa.string(), "as_country": pa.string(), "ixp_name": pa.string(),
        "ixp_city": pa.string(), "ixp_country": pa.string(), "ip_class": pa.string(),
    }, "annotated hops")  # fmt: skip
    con = connect()
    try:
        con.register("a", annotated)
        table = node_attributes_sql(con)
    finally:
        con.close()
    return override_families(table, registry)


# ---------------------------------------------------------------------------- helpers
def _check_columns(
    table: pa.Table, required: tuple[str, ...], optional: Mapping[str, pa.DataType], what: str
) -> pa.Table:
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise SchemaMismatch(f"{what} lack required column(s) {', '.join(missing)}")
    for name, typ in optional.items():
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, typ))
    return table


def _trace_frame(traces: pa.Table, drops: Counter[str]) -> pa.Table:
    tr = traces.sort_by([("msm_id", "ascending"), ("prb_id", "ascending"), ("timestamp", "ascending")])
    if tr.num_rows > 1:
        m = tr.column("msm_id").to_numpy()
        p = tr.column("prb_id").to_numpy()
        t = tr.column("timestamp").cast(pa.int64()).to_numpy()
        dup = np.zeros(tr.num_rows, bool)
        dup[1:] = (m[1:] == m[:-1]) & (p[1:] == p[:-1]) & (t[1:] == t[:-1])
        if dup.any():
            _count(drops, "duplicate-trace", int(dup.sum()))
            tr = tr.filter(pa.array(~dup))
    return tr.append_column("tid", pa.array(np.arange(tr.num_rows, dtype=np.int64)))


def _probe_columns(tr: pa.Table, probes: pa.Table) -> dict[str, Any]:
    ntr = tr.num_rows
    prb = tr.column("prb_id").to_numpy()
    af = tr.column("af").to_numpy(zero_copy_only=False) if "af" in tr.column_names else None
    ids = probes.column("prb_id").to_numpy() if probes.num_rows else np.empty(0, np.int64)
    idx = np.full(ntr, -1, np.int64)
    if len(ids):
        order = np.argsort(ids, kind="stable")
        pos = np.clip(np.searchsorted(ids[order], prb), 0, len(ids) - 1)
        idx = np.where(ids[order][pos] == prb, order[pos], -1)

    def take(col: str, typ: pa.DataType) -> pa.Array:
        if col not in probes.column_names or not probes.num_rows:
            return pa.nulls(ntr, typ)
        sel = pa.array(np.where(idx >= 0, idx, 0))
        vals = probes.column(col).combine_chunks().take(sel)
        return pc.if_else(pa.array(idx >= 0), vals, pa.nulls(ntr, vals.type)).cast(typ)

    asn4 = int_np(take("asn_v4", pa.int64()))
    asn6 = int_np(take("asn_v6", pa.int64()))
    probe_asn = np.where((af == 6) if af is not None else np.zeros(ntr, bool), asn6, asn4)
    addr = tr.column("from_addr") if "from_addr" in tr.column_names else pa.nulls(ntr, pa.string())
    if "src_addr" in tr.column_names:
        addr = pc.coalesce(addr, tr.column("src_addr"))
    return {
        "probe_asn": probe_asn,
        "probe_country": take("country_code", pa.string()),
        "probe_lat": float_np(take("latitude", pa.float64())),
        "probe_lon": float_np(take("longitude", pa.float64())),
        "probe_addr": addr,
    }


def _representative_hops(annotated: pa.Table, tr: pa.Table, drops: Counter[str]) -> dict[str, Any]:
    """One row per responsive (traceroute, hop): its first reply and that address's min RTT.

    Vectorised: a hash join maps hop rows to traceroute indices, one lexsort orders the
    replies by (traceroute, hop, attempt), and ``minimum.reduceat`` takes the RTT minimum
    over each hop's replies from the representative address.
    """
    keys = ["msm_id", "prb_id", "timestamp"]
    n = annotated.num_rows
    # a traceroute's rows lie together: join the first row of each run of equal keys (a
    # null key is a run of its own) and give the run's rows its traceroute
    heads = segment_starts(annotated, keys)
    probe = annotated.select(keys).take(pa.array(heads)).append_column("__run", pa.array(np.arange(len(heads))))
    probe = probe.cast(pa.schema([pa.field(k, tr.schema.field(k).type) for k in keys]
                                 + [pa.field("__run", pa.int64())]))
    joined = probe.join(tr.select([*keys, "tid"]), keys=keys, join_type="inner", use_threads=True)
    run_tid = np.full(len(heads), -1, np.int64)
    run_tid[joined.column("__run").to_numpy()] = joined.column("tid").to_numpy()
    tid_of = np.repeat(run_tid, np.diff(np.append(heads, n)))
    _count(drops, "hop-without-traceroute", int((tid_of < 0).sum()))

    replied = pc.is_valid(annotated.column("reply_from")).to_numpy(zero_copy_only=False)
    bad = replied & stale_replies(annotated)
    _count(drops, "late-or-duplicate-reply", int((bad & (tid_of >= 0)).sum()))
    rows = np.flatnonzero(replied & ~bad & (tid_of >= 0))

    t = tid_of[rows]
    h = int_np(annotated.column("hop"))[rows]
    a = int_np(annotated.column("attempt"))[rows]
    order = lex_order(t, h, a)
    rows, t, h = rows[order], t[order], h[order]
    first = np.ones(len(rows), bool)
    if len(rows) > 1:
        first[1:] = (t[1:] != t[:-1]) | (h[1:] != h[:-1])
    starts = np.flatnonzero(first)
    group = np.cumsum(first) - 1
    addr_codes = string_codes(annotated.column("reply_from").take(pa.array(rows)))
    same = addr_codes == addr_codes[starts][group]
    rtt = float_np(annotated.column("rtt"))[rows]
    masked = np.where(same & ~np.isnan(rtt), rtt, np.inf)
    min_rtt = np.minimum.reduceat(masked, starts) if len(starts) else np.empty(0)
    min_rtt[np.isinf(min_rtt)] = np.nan
    rep = pa.array(rows[starts])

    def col(name: str) -> pa.Array:  # a column as read may be dictionary-encoded: decoded here
        return plain(annotated.column(name).take(rep)).combine_chunks()

    cls = col("ip_class")
    ixp_id = col("ixp_id")
    out = {
        "tid": t[starts],
        "hop": h[starts],
        "addr": col("reply_from"),
        "rtt": min_rtt,
        "is_public": np.asarray(pc.fill_null(pc.equal(cls, "public"), False).to_numpy(zero_copy_only=False), bool),
        "is_ixp": np.asarray(pc.is_valid(ixp_id).to_numpy(zero_copy_only=False), bool),
        "asn": int_np(col("asn")),
        "member": int_np(col("member_asn")),
        "ixp_id": ixp_id,
        "ixp_name": col("ixp_name"),
        "ixp_city": col("ixp_city"),
        "ixp_country": col("ixp_country"),
        "ixp_lat": float_np(col("ixp_lat")),
        "ixp_lon": float_np(col("ixp_lon")),
        "family": col("family"),
        "as_country": col("as_country"),
    }
    if "owner_asn" in annotated.column_names:
        out["owner"] = int_np(col("owner_asn"))
        out["owner_via"] = col("owner_via").cast(pa.string()) if "owner_via" in annotated.column_names \
            else pa.nulls(len(starts), pa.string())
    return out


def _owner_columns(hops: dict[str, Any], drops: Counter[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(asn, member, reassigned) with the owner AS where the ownership stage set one.

    A row whose ``owner_via`` is null (address unknown to the stage) keeps its origin AS.
    Counts the rows whose owner differs from the origin as ``owner-<via>``.
    """
    asn, member, owner = hops["asn"], hops["member"], hops["owner"]
    via = hops["owner_via"]
    known = np.asarray(pc.is_valid(via).to_numpy(zero_copy_only=False), bool)
    is_ixp = hops["is_ixp"]
    new_asn = np.where(known & ~is_ixp, owner, asn)
    new_member = np.where(known & is_ixp, owner, member)
    reassigned = np.where(is_ixp, new_member != member, new_asn != asn)
    if reassigned.any():
        for v, n in Counter(via.filter(pa.array(reassigned)).to_pylist()).items():
            drops[f"owner-{v}"] += n
    return new_asn, new_member, reassigned


def _owner_attributes(
    hops: dict[str, Any], annotated: pa.Table, asn: np.ndarray, member: np.ndarray, reassigned: np.ndarray,
    columns: tuple[str, ...], table: pa.Table | None = None,
) -> dict[str, pa.Array]:
    """The hops' ``columns`` (``family``, ``as_country``), reassigned hops given their
    owner AS's.

    That is the value the annotation gave the owner AS (as an origin or IXP member; the
    alphabetically first where rows disagree, :func:`analysis._tables.as_attribute`):
    from ``table`` (the whole campaign's, one row per AS the annotation met) when given,
    else from the rows of ``annotated``. None where the annotation met that AS without a
    value; for an AS it never met, no country and, without ``table``, the shipped
    registry's family (analyze's ``table`` holds those ASes too, with the family the
    registry annotate used gives them).
    """
    if not reassigned.any():
        return {column: hops[column] for column in columns}
    if table is not None:
        order = np.argsort(int_np(table.column("asn")), kind="stable")
        met = int_np(table.column("asn"))[order]
    else:
        key = annotated_as(annotated)
        met = key[key >= 0]
    eff = np.where(hops["is_ixp"], member, asn)[reassigned]
    unseen = (eff >= 0) & ~np.isin(eff, met)
    out = {}
    for column in columns:
        if table is not None:
            k = met
            got = table.column(column).cast(pa.string()).take(pa.array(order)).to_pylist()
            k_value = np.asarray([v or None for v in got], dtype=object)
        else:
            k, k_value = as_attribute(annotated, column, key)
        pos = np.searchsorted(k, eff)
        hit = pos < len(k)
        hit[hit] = k[pos[hit]] == eff[hit]
        vals = np.full(len(eff), None, dtype=object)
        vals[hit] = k_value[pos[hit]]
        if column == "family" and unseen.any():
            from analysis.registry import load_registry

            vals[unseen] = np.asarray(registry_lookup(load_registry(), eff[unseen]).to_pylist(), dtype=object)
        out[column] = pc.replace_with_mask(hops[column].cast(pa.string()), pa.array(reassigned),
                                           pa.array(vals, pa.string()))
    return out


def _count_loop_artefacts(
    drops: Counter[str], tid: np.ndarray, resolved: np.ndarray, reassigned: np.ndarray, via: pa.Array
) -> None:
    """Count traceroutes whose origin-AS path loops but owner-AS path does not, by kind
    (``loop-artefact-<via>``, once per kind of reassigned hop in that traceroute)."""
    hit = resolved[tid] & reassigned
    if not hit.any():
        return
    v = np.asarray(via.filter(pa.array(hit)).to_pylist(), dtype=object)
    pairs = set(zip(tid[hit].tolist(), v.tolist(), strict=True))
    for kind, n in Counter(k for _, k in pairs).items():
        drops[f"loop-artefact-{kind}"] += n
    drops["loop-artefact"] += int(resolved.sum())


def _destination_columns(
    tr: pa.Table, annotated: pa.Table, destinations: pa.Table | None
) -> tuple[np.ndarray, pa.Array, np.ndarray, np.ndarray]:
    """Destination AS and country per traceroute: the ``destinations`` table first, then the
    annotation of hops that replied from the destination address; and the destination's
    place (``dst_lat`` / ``dst_lon`` of the ``destinations`` table, NaN when not given)."""
    d = (
        _check_columns(destinations, ("dst_addr",), {"dst_asn": pa.int64(), "dst_country": pa.string(),
                                                     "dst_lat": pa.float64(), "dst_lon": pa.float64()},
                       "destinations")
        .select(["dst_addr", "dst_asn", "dst_country", "dst_lat", "dst_lon"])
        if destinations is not None
        else pa.table({"dst_addr": pa.array([], pa.string()), "dst_asn": pa.array([], pa.int64()),
                       "dst_country": pa.array([], pa.string()), "dst_lat": pa.array([], pa.float64()),
                       "dst_lon": pa.array([], pa.float64())})
    )
    con = connect()
    try:
        con.register("t", tr.select(["tid", "dst_addr"]))
        con.register("d", d)
        con.register("a", annotated.select(["reply_from", "asn", "ixp_id", "member_asn", "as_country"]))
        replying = replying_attributes_sql("a", "reply_from IN (SELECT DISTINCT dst_addr FROM t)")
        res = con.sql(
            f"""
            SELECT t.tid, coalesce(g.dst_asn, h.dst_asn) AS dst_asn,
                   coalesce(g.dst_country, h.dst_country) AS dst_country, g.dst_lat, g.dst_lon
            FROM t
            LEFT JOIN (SELECT dst_addr, min(dst_asn) dst_asn, min(dst_country) dst_country,
                              CASE WHEN count(DISTINCT (dst_lat, dst_lon)) = 1 THEN min(dst_lat) END dst_lat,
                              CASE WHEN count(DISTINCT (dst_lat, dst_lon)) = 1 THEN min(dst_lon) END dst_lon
                       FROM d GROUP BY dst_addr) g USING (dst_addr)
            LEFT JOIN ({replying}) h USING (dst_addr)
            ORDER BY t.tid
            """
        ).to_arrow_table()
    finally:
        con.close()
    country = res.column("dst_country").combine_chunks() if res.num_rows else pa.array([], pa.string())
    return (int_np(res.column("dst_asn")), country.cast(pa.string()),
            float_np(res.column("dst_lat")), float_np(res.column("dst_lon")))


def _destination_rtt(hops: dict[str, Any], tid: np.ndarray, dst_addr: pa.ChunkedArray, ntr: int) -> np.ndarray:
    """Per traceroute, the smallest RTT of a reply from its own destination address (NaN if none)."""
    out = np.full(ntr, np.inf)
    if len(tid):
        want = dst_addr.combine_chunks().cast(pa.string()).take(pa.array(tid))
        is_dst = np.asarray(pc.fill_null(pc.equal(hops["addr"].cast(pa.string()), want), False)
                            .to_numpy(zero_copy_only=False), bool)
        rtt = hops["rtt"]
        ok = is_dst & ~np.isnan(rtt)
        np.minimum.at(out, tid[ok], rtt[ok])
    out[np.isinf(out)] = np.nan
    return out


def _families(
    hops: dict[str, Any], eff_asn: np.ndarray, registry: RegistryLike | None
) -> tuple[list[str], np.ndarray]:
    """Family code per hop row (-1 = not flagged) and the code -> family name list."""
    if registry is not None:
        fam_arr = registry_lookup(registry, eff_asn)
    else:
        fam_arr = hops["family"]
        fam_arr = pc.if_else(pa.array(eff_asn >= 0), fam_arr, pa.nulls(len(fam_arr), pa.string()))
    enc = fam_arr.dictionary_encode() if len(fam_arr) else pa.array([], pa.string()).dictionary_encode()
    names = enc.dictionary.to_pylist()
    codes = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return names, codes


def _as_path(
    tid: np.ndarray,
    is_ixp: np.ndarray,
    is_as: np.ndarray,
    asn: np.ndarray,
    member: np.ndarray,
    ixp_id: pa.Array,
    ntr: int,
) -> tuple[pa.Array, np.ndarray]:
    # token vocabulary: AS nodes then IXP nodes
    as_vals = np.unique(np.concatenate([asn[is_as], member[is_ixp & (member >= 0)]]))
    ixp_enc = ixp_id.filter(pa.array(is_ixp)).dictionary_encode() if is_ixp.any() else None
    ixp_names = ixp_enc.dictionary.to_pylist() if ixp_enc is not None else []
    vocab = [as_node(a) for a in as_vals] + [ixp_node(x) for x in ixp_names]
    n_as = len(as_vals)

    first = np.full(len(tid), -1, np.int64)
    second = np.full(len(tid), -1, np.int64)
    first[is_as] = np.searchsorted(as_vals, asn[is_as])
    if ixp_enc is not None:
        first[is_ixp] = n_as + ixp_enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        has_member = is_ixp & (member >= 0)
        second[has_member] = np.searchsorted(as_vals, member[has_member])
    counts = (first >= 0).astype(np.int64) + (second >= 0)
    row = np.repeat(np.arange(len(tid)), counts)
    starts = np.cumsum(counts) - counts
    pos = np.arange(len(row)) - starts[row]
    tok = np.where(pos == 0, first[row], second[row])
    ttid = tid[row]
    keep = np.ones(len(tok), bool)
    if len(tok) > 1:
        keep[1:] = (tok[1:] != tok[:-1]) | (ttid[1:] != ttid[:-1])
    tok, ttid = tok[keep], ttid[keep]

    loop = np.zeros(ntr, bool)
    if len(tok):
        key = ttid * max(len(vocab), 1) + tok
        uk, cnt = nearly_sorted_unique(key)  # ttid ascending
        loop[uk[cnt > 1] // max(len(vocab), 1)] = True
    values = pa.array(vocab, pa.string()).take(pa.array(tok, pa.int64())) if len(tok) else pa.array([], pa.string())
    return list_of(values, ttid, ntr), loop


def _crossings(
    hops: dict[str, Any],
    tid: np.ndarray,
    is_ixp: np.ndarray,
    is_as: np.ndarray,
    eff_asn: np.ndarray,
    transit_fam: np.ndarray,
    fam_names: list[str],
    p_lat: np.ndarray,
    p_lon: np.ndarray,
    ntr: int,
    facilities: pa.Table | None = None,
    discs: pa.Table | None = None,
    ellipse: tuple[np.ndarray, ...] | None = None,
    routers: pa.Table | None = None,
) -> pa.Array:
    node = np.flatnonzero(is_ixp | is_as)  # hop rows that are path nodes, in order
    ntid = tid[node]
    nfam = transit_fam[node]
    fresh = np.ones(len(node), bool)  # first node row of its traceroute
    if len(node) > 1:
        fresh[1:] = ntid[1:] != ntid[:-1]
    prev_fam = np.concatenate([[-1], nfam[:-1]]) if len(node) else nfam
    entry = (nfam >= 0) & (fresh | (prev_fam != nfam))
    e = np.flatnonzero(entry)
    rows = node[e]  # hop-row index of the entering hop
    # the next path node is in the same family too: the traceroute went on inside it
    nxt = np.minimum(e + 1, max(len(node) - 1, 0))
    inside = (e + 1 < len(node)) & (ntid[nxt] == ntid[e]) & (nfam[nxt] == nfam[e]) if len(e) else e.astype(bool)
    prev_rows = np.where(fresh[e], -1, node[np.maximum(e - 1, 0)])
    on_lan = is_ixp[rows]
    hop = hops["hop"]
    prevc = np.maximum(prev_rows, 0)
    after_lan = ~on_lan & (prev_rows >= 0) & is_ixp[prevc] & (hop[rows] - hop[prevc] == 1)
    loc = np.where(on_lan, rows, np.where(after_lan, prev_rows, -1))
    # an unresponsive hop right before the entry (or no responsive hop before it at all)
    # may have been the IXP address: the kind of interconnect is then unknown
    prev_any = rows - 1
    has_prev = (rows > 0) & (tid[np.maximum(prev_any, 0)] == tid[rows])
    gap = ~has_prev | (hop[rows] - hop[np.maximum(prev_any, 0)] > 1)
    unknown_kind = (loc < 0) & gap

    # the AS crossed from: nearest preceding plain-AS node row in the same traceroute
    as_idx = np.where(is_as, np.arange(len(tid)), -1)
    last_as = np.maximum.accumulate(as_idx) if len(as_idx) else as_idx
    before = np.where(rows > 0, last_as[np.maximum(rows - 1, 0)], -1)
    before = np.where((before >= 0) & (tid[np.maximum(before, 0)] == tid[rows]), before, -1)
    from_asn = np.where(before >= 0, eff_asn[np.maximum(before, 0)], -1)

    locc = np.maximum(loc, 0)
    has_loc = loc >= 0
    etid = tid[rows]
    rtt = np.where(has_loc, hops["rtt"][locc], hops["rtt"][rows])
    dist = haversine_km(p_lat[etid], p_lon[etid], hops["ixp_lat"][locc], hops["ixp_lon"][locc])
    dist = np.where(has_loc, dist, np.nan)
    verdict = location_verdict(dist, rtt)
    mask = pa.array(~has_loc)

    def at_loc(name: str) -> pa.Array:
        arr = hops[name].take(pa.array(locc)) if len(locc) else pa.array([], pa.string())
        return pc.if_else(mask, pa.nulls(len(locc), pa.string()), arr) if len(locc) else arr

    evidence = np.where(
        on_lan,
        "ixp-lan-member-interface",
        np.where(
            after_lan,
            "follows-ixp-lan-address",
            np.where(unknown_kind, "after-unresponsive-hop", "direct-adjacency"),
        ),
    )
    kind = np.where(has_loc, "ixp", np.where(unknown_kind, UNKNOWN_INTERCONNECT, PRIVATE_INTERCONNECT))
    pop_city = np.asarray(at_loc("ixp_city").to_pylist(), dtype=object)
    pop_country = np.asarray(at_loc("ixp_country").to_pylist(), dtype=object)
    loc_ev = np.where(has_loc, np.array("ixp", dtype=object), np.array(None, dtype=object))
    if (facilities is not None or routers is not None) and len(rows):
        if facilities is None:
            facilities = pa.table({"asn": pa.array([], pa.int64()), "city": pa.array([], pa.string()),
                                   "country": pa.array([], pa.string()), "lat": pa.array([], pa.float64()),
                                   "lon": pa.array([], pa.float64())})
        todo = np.flatnonzero(~has_loc)
        # the AS crossed from (from_asn: its nearest node before the entry, not whatever
        # hop row precedes it) is registered in China or its SARs, or unknown
        bt = before[todo]
        from_cc = pc.if_else(pa.array(bt >= 0), hops["as_country"].take(pa.array(np.maximum(bt, 0))).cast(pa.string()),
                             pa.nulls(len(bt), pa.string()))
        from_home = np.asarray(pc.or_(pc.is_null(from_cc), pc.is_in(from_cc, value_set=pa.array(HOME_REGION)))
                               .to_numpy(zero_copy_only=False), bool)
        f_city, f_cc, f_ev = _facility_search(
            facilities, eff_asn[rows][todo], from_asn[todo],
            p_lat[etid][todo], p_lon[etid][todo], rtt[todo],
            # other probes' discs locate the entering router, as this probe's own disc does
            # (after a silent hop that router may lie beyond the crossing either way); the far
            # end of the link, the hop before it, only where the router is adjacent to the AS
            # crossed from (a private interconnect)
            addr=[a if k in (PRIVATE_INTERCONNECT, UNKNOWN_INTERCONNECT) else None for a, k in zip(
                hops["addr"].take(pa.array(rows[todo])).to_pylist(), kind[todo], strict=True)],
            prev_addr=[a if k == PRIVATE_INTERCONNECT else None for a, k in zip(
                hops["addr"].take(pa.array(np.maximum(rows[todo] - 1, 0))).to_pylist(), kind[todo], strict=True)],
            home=np.asarray(pc.fill_null(pc.equal(hops["as_country"].take(pa.array(rows[todo])), "CN"),
                                         False).to_numpy(zero_copy_only=False), bool),
            from_home=from_home,
            discs=discs,
            ellipses=None if ellipse is None else np.stack([col[etid][todo] for col in ellipse], axis=1),
            inside=inside[todo],
            routers=routers,
        )
        pop_city[todo], pop_country[todo], loc_ev[todo] = f_city, f_cc, f_ev
        verdict[todo[f_cc != None]] = 0  # noqa: E711 - consistent by construction
    struct = pa.StructArray.from_arrays(
        [
            pa.array(np.asarray(fam_names, dtype=object)[transit_fam[rows]].tolist() if len(rows) else [], pa.string()),
            _nullable_int(eff_asn[rows]),
            _nullable_int(from_asn),
            pa.array(hops["hop"][rows].astype(np.int16)),
            hops["addr"].take(pa.array(rows)) if len(rows) else pa.array([], pa.string()),
            pa.array(kind.tolist(), pa.string()),
            at_loc("ixp_id"),
            at_loc("ixp_name"),
            at_loc("ixp_city"),
            at_loc("ixp_country"),
            pa.array(evidence.tolist(), pa.string()),
            _nullable_float(rtt),
            _nullable_float(dist),
            _nullable_float(rtt * KM_PER_MS_RTT),
            pa.array([VERDICTS[v] for v in verdict], pa.string()),
            pa.array(pop_city.tolist(), pa.string()),
            pa.array(pop_country.tolist(), pa.string()),
            pa.array(loc_ev.tolist(), pa.string()),
            _location_confidence(loc_ev, pop_country),
        ],
        fields=list(CROSSING_TYPE),
    )
    return list_of(struct, etid, ntr)


def _location_confidence(evidence: np.ndarray, country: np.ndarray) -> pa.Array:
    """Per crossing: :data:`LOCATION_WEIGHTS` of its evidence (combined with the ``ipmap``
    weight as independent evidence, 1 - (1 - a)(1 - b), where a router location agrees), x
    :data:`ONE_DISC_FACTOR` when one probe's disc alone constrained it; null where no place
    was given."""
    out: list[float | None] = []
    for ev, cc in zip(evidence.tolist(), country.tolist(), strict=True):
        if ev is None or cc is None:
            out.append(None)
            continue
        parts = ev.split("+")
        w = LOCATION_WEIGHTS.get(parts[0], 0.5)
        if "ipmap" in parts[1:]:  # a router location agrees: two independent sources
            w = 1 - (1 - w) * (1 - LOCATION_WEIGHTS["ipmap"])
        out.append(round(w if ev == "ixp" or "rtt-discs" in parts else w * ONE_DISC_FACTOR, 4))
    return pa.array(out, pa.float64())


def misplaced_probes(discs: pa.Table, slack_km: float = MISPLACED_SLACK_KM) -> list[int]:
    """Probes whose published place contradicts the other probes' RTTs (sorted ``prb_id``).

    Two probes that saw the same address have discs that intersect when both are where they
    say (the router is in both): ``d(p, q) <= (r_p + r_q) x 99.93 km`` (plus ``slack_km``
    for coordinate rounding). Each disjoint pair proves one of the two misplaced. The
    probes are removed greedily, the one in conflict with the most other probes first (the
    lower ``prb_id`` on a tie), until no conflict is left; a pair in conflict only with
    each other loses both, since nothing tells which one is wrong. An address counts only
    when its conflicts share a probe (one probe against the others): conflicts among many
    probes at once are the address's doing (anycast, one address on several routers).
    ``discs``: ``addr, prb_id, lat, lon, rtt`` (as :mod:`analysis.campaign_io` builds
    them). A CBG intersection with a misplaced probe's disc can exclude the router's true
    place.
    """
    if discs is None or not discs.num_rows or "prb_id" not in discs.column_names:
        return []
    order = pc.sort_indices(discs, [("addr", "ascending")])
    d = discs.take(order)
    addr = d.column("addr").combine_chunks().dictionary_encode().indices.to_numpy(zero_copy_only=False)
    prb = int_np(d.column("prb_id"))
    lat, lon, rtt = (float_np(d.column(c)) for c in ("lat", "lon", "rtt"))
    starts = np.flatnonzero(np.r_[True, addr[1:] != addr[:-1]]) if len(addr) else np.array([], int)
    bounds = np.r_[starts, len(addr)]
    edges: set[tuple[int, int]] = set()
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if b - a < 2:
            continue
        i, j = np.triu_indices(b - a, 1)
        i, j = i + a, j + a
        apart = haversine_km(lat[i], lon[i], lat[j], lon[j]) > (rtt[i] + rtt[j]) * KM_PER_MS_RTT + slack_km
        here = {(min(x, y), max(x, y)) for x, y in zip(prb[i[apart]].tolist(), prb[j[apart]].tolist(), strict=True)
                if x != y}
        # one probe against the others; conflicts with no probe in common are the address's
        # own doing (anycast, one address on several routers): it proves nothing
        if here and set.intersection(*(set(e) for e in here)):
            edges |= here
    out: set[int] = set()
    while edges:
        degree: Counter[int] = Counter()
        for x, y in edges:
            degree[x] += 1
            degree[y] += 1
        top = max(degree.values())
        worst = min(p for p, k in degree.items() if k == top)
        drop = {worst} if top > 1 else {x for e in edges for x in e}
        out |= drop
        edges = {e for e in edges if not (set(e) & drop)}
    return sorted(out)


def _facility_search(
    facilities: pa.Table,
    asn: np.ndarray,
    from_asn: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    rtt: np.ndarray,
    addr: list[str | None] | None = None,
    prev_addr: list[str | None] | None = None,
    home: np.ndarray | None = None,
    from_home: np.ndarray | None = None,
    discs: pa.Table | None = None,
    ellipses: np.ndarray | None = None,
    inside: np.ndarray | None = None,
    routers: pa.Table | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Locate crossings not at an IXP: (city, country, evidence) per crossing.

    Candidates are first the facilities both the entered AS and the AS crossed from are
    present at (``netfac-shared``, Giotsas et al.), else the entered carrier's own PoPs:
    its facilities plus, where ``home`` is true (an entered AS registered in China), its
    home backbone cities (:data:`CHINA_REFERENCE_POINTS`, which the carriers' facility
    lists miss) (``carrier-pops``). A candidate is kept only inside every speed-of-light
    disc known for the entering address (``addr``) and the hop before it (``prev_addr``,
    the far end of a private interconnect): each probe that saw them, at its minimum RTT
    (``discs``: ``addr, lat, lon, rtt[, base]``; CBG-style), else this traceroute's probe alone
    (``+rtt-discs`` in the evidence when more than one disc was used). ``inside`` (per
    crossing: the next path node is in the entered family too) allows, when nothing of the
    entered AS is kept, the facilities of the AS crossed from inside the same constraints
    (``netfac-far-side``: the entered AS's presence is missing from PeeringDB). Then, with
    two or more discs, the facility cities of any network inside them when they agree
    (``facility-cities``), whether or not the path goes on in the family: the discs place
    the router that answered. ``ellipses`` (one row
    per crossing: probe lat, lon, destination lat, lon, the destination's RTT in this
    traceroute; NaN where unknown) keeps only candidates ``c`` with ``d(p, c) + d(c, dst) +
    d(dst, p) <= 2 x RTT x 99.93 km`` (``+dst-ellipse``). A country (city)
    is given only when every kept candidate agrees -- the home backbone cities the discs
    keep count against shared facilities too when ``from_home`` (the AS crossed from is
    registered in :data:`HOME_REGION`, or its country is unknown) or when that AS lists a
    facility there itself; none is given when the discs keep nothing. A
    ``carrier-pops`` answer also needs every city with a facility of any network inside the
    constraints to agree (the carrier's own list is incomplete). ``routers`` (``ip, city,
    cc, lat, lon``, IPmap) place an entering address they list, when its point is inside
    the same constraints (floor and ellipse aside): where the search found no city and no
    other country, there (``ipmap``); where it found the same city, ``+ipmap`` is added to
    the evidence; where it found another city or country, what they dispute is withheld
    (the country kept when both agree on it; ``+ipmap-conflict``): either source may be
    stale.
    """
    fac = _check_columns(facilities, ("asn", "city", "country", "lat", "lon"), {}, "facilities")
    m = len(asn)
    out_city = np.full(m, None, dtype=object)
    out_cc = np.full(m, None, dtype=object)
    out_ev = np.full(m, None, dtype=object)
    if not m:
        return out_city, out_cc, out_ev
    by_asn: dict[int, list[tuple[str | None, str | None, float, float]]] = {}
    for a, city, cc, la, lo in zip(int_np(fac.column("asn")).tolist(), fac.column("city").to_pylist(),
                                   fac.column("country").to_pylist(), float_np(fac.column("lat")).tolist(),
                                   float_np(fac.column("lon")).tolist(), strict=True):
        if a >= 0 and la == la and lo == lo:
            by_asn.setdefault(a, []).append((city, cc, la, lo))
    home_points = [(name, "CN", la, lo) for name, la, lo in CHINA_REFERENCE_POINTS]
    places = sorted({(c[0], c[1], round(c[2], 1), round(c[3], 1)) for v in by_asn.values() for c in v},
                    key=lambda c: (str(c[0]), str(c[1]), c[2], c[3]))  # every city with a facility
    seen: dict[str, list[tuple[float, float, float, float]]] = {}
    if discs is not None and addr is not None:
        want = {a for a in (*addr, *(prev_addr or ())) if a is not None}
        d = discs.filter(pc.is_in(discs.column("addr"), value_set=pa.array(sorted(want), pa.string()))) \
            if want else discs.slice(0, 0)
        base = float_np(d.column("base")) if "base" in d.column_names else np.full(d.num_rows, np.nan)
        for a, la, lo, r, b in zip(d.column("addr").to_pylist(), float_np(d.column("lat")).tolist(),
                                   float_np(d.column("lon")).tolist(), float_np(d.column("rtt")).tolist(),
                                   base.tolist(), strict=True):
            if la == la and lo == lo and r == r and r >= 0:
                seen.setdefault(a, []).append((la, lo, r, b if b == b else -1.0))  # -1: access RTT unknown
    where = _router_places(routers, addr)
    memo: dict[tuple[Any, ...], tuple[str | None, str | None, str | None]] = {}
    for i in range(m):
        a_i = addr[i] if addr is not None else None
        b_i = prev_addr[i] if prev_addr is not None else None
        cons = [*seen.get(a_i, ()), *(seen.get(b_i, ()) if b_i is not None else ())] if a_i is not None else None
        if not cons:
            cons = [(float(lat[i]), float(lon[i]), float(rtt[i]), -1.0)] \
                if lat[i] == lat[i] and lon[i] == lon[i] and rtt[i] == rtt[i] else []
        h = bool(home[i]) if home is not None else False
        # the RTT rounded up to the next ms (never tighter), so that crossings share the memo
        ell = (*(float(x) for x in ellipses[i][:4]), float(np.ceil(ellipses[i][4]))) \
            if ellipses is not None and not np.isnan(ellipses[i]).any() else None
        far = bool(inside[i]) if inside is not None else False
        fh = bool(from_home[i]) if from_home is not None else True
        key = (int(asn[i]), int(from_asn[i]), h, tuple(cons), ell, far, fh)
        if key not in memo:
            memo[key] = _locate_one(by_asn, home_points if h else [], *key[:2], cons, ell, far_side=far,
                                    places=places, from_home=fh)
        out_city[i], out_cc[i], out_ev[i] = memo[key]
        point = where.get(a_i) if a_i is not None else None
        if point is not None and cons and _inside([point], cons, None)[0]:
            out_city[i], out_cc[i], out_ev[i] = _with_router_place(out_city[i], out_cc[i], out_ev[i], point,
                                                                   "+rtt-discs" if len(cons) > 1 else "")
    return out_city, out_cc, out_ev


def _router_places(routers: pa.Table | None, addr: list[str | None] | None) -> dict[str, tuple[Any, ...]]:
    """``addr -> (city, cc, lat, lon)`` of the addresses in ``addr`` that ``routers`` lists."""
    want = sorted({a for a in addr or () if a is not None})
    if routers is None or not want:
        return {}
    r = _check_columns(routers, ("ip", "city", "cc", "lat", "lon"), {}, "router locations")
    r = r.filter(pc.is_in(r.column("ip").cast(pa.string()), value_set=pa.array(want, pa.string())))
    return {ip: (city, cc, la, lo) for ip, city, cc, la, lo in zip(
        r.column("ip").cast(pa.string()).to_pylist(), r.column("city").to_pylist(), r.column("cc").to_pylist(),
        float_np(r.column("lat")).tolist(), float_np(r.column("lon")).tolist(), strict=True)
        if city is not None and cc is not None and la == la and lo == lo}


def _with_router_place(city: str | None, cc: str | None, ev: str | None, point: tuple[Any, ...],
                       discs: str) -> tuple[str | None, str | None, str | None]:
    """Combine the facility search's (city, country, evidence) with a router location the
    constraints keep (see :func:`_facility_search`)."""
    r_city, r_cc = point[0], point[1]
    if city is None and cc in (None, r_cc):
        return r_city, r_cc, "ipmap" + discs
    if city is not None and city == r_city and cc == r_cc:
        return city, cc, f"{ev}+ipmap"
    # two places: what they dispute is not given (the country stays where both agree)
    return None, (cc if cc == r_cc else None), f"{ev}+ipmap-conflict"


def _locate_one(
    by_asn: dict[int, list[tuple[str | None, str | None, float, float]]],
    home_points: list[tuple[str, str, float, float]],
    asn: int,
    from_asn: int,
    cons: list[tuple[float, float, float, float]],
    ellipse: tuple[float, ...] | None = None,
    *,
    far_side: bool = False,
    places: list[tuple[str | None, str | None, float, float]] | None = None,
    from_home: bool = True,
) -> tuple[str | None, str | None, str | None]:
    """(city, country, evidence) of one crossing: see :func:`_facility_search`."""
    if asn < 0 or not cons:
        return None, None, None
    cands = [*by_asn.get(asn, []), *home_points]
    other_cities = {c[0] for c in by_asn.get(from_asn, [])} if from_asn >= 0 else set()
    n_own = len(cands) - len(home_points)
    floor = _floor_applies(places or cands, cons, ellipse)
    suffix = ("+rtt-discs" if len(cons) > 1 else "") + ("+dst-ellipse" if ellipse is not None else "") \
        + ("+rtt-floor" if floor else "")

    def inside(c: list[tuple[Any, ...]]) -> np.ndarray:
        return _inside(c, cons, ellipse, floor=floor)

    ok = inside(cands)
    kept = [c for c, k in zip(cands, ok, strict=True) if k]
    # the entered AS's facilities in a city the AS crossed from is also present in
    kept_shared = [c for i, (c, k) in enumerate(zip(cands, ok, strict=True)) if k and i < n_own and c[0] in other_cities]
    if kept_shared:  # the home backbone cities the discs keep stay possible for a Chinese or SAR
        # network: for a network from elsewhere, only where it lists a facility itself
        home_kept = [c for c in kept if c in home_points and (from_home or c[0] in other_cities)]
        return (*_unanimous(kept_shared + home_kept), "netfac-shared" + suffix)
    if kept:
        city, cc = _unanimous(kept)
        # the AS crossed from lists facilities inside the constraints, none in a kept city:
        # one of the two lists misses the interconnect's facility, so the city is not known
        others = by_asn.get(from_asn, []) if from_asn >= 0 else []
        if city is not None and others and inside(others).any():
            city = None
        if cc is not None and places:
            # the carrier's list may miss the PoP: any other place with a facility the
            # constraints keep is as possible, so only what they all share is given
            near = [c for c, k in zip(places, inside(places), strict=True) if k]
            c2, cc2 = _unanimous([*kept, *near])
            city, cc = (city if c2 is not None else None), cc2
        if cc is not None:
            return city, cc, "carrier-pops" + suffix
        return None, None, None
    # nothing of the entered AS inside the constraints: when the traceroute went on inside
    # the family (the entry is no lone third-party reply), its presence there is missing
    # from PeeringDB (operators' lists are incomplete), and a private interconnect still
    # sits where the AS crossed from is present
    far = by_asn.get(from_asn, []) if from_asn >= 0 and far_side else []
    if far:
        kept_far = [c for c, k in zip(far, inside(far), strict=True) if k]
        if kept_far:
            city, cc = _unanimous(kept_far)
            if cc is not None:
                return city, cc, "netfac-far-side" + suffix
    # no list of the two ASes fits: interconnects sit in facility cities, so when two or
    # more probes' discs keep the facility cities (of any network) of one country only (of
    # one city), that is where the router that answered is, lone entry hop or not (unlike
    # the far side's list, this says nothing about which AS's presence is missing)
    near = [c for c, k in zip(places or [], inside(places or []), strict=True) if k]
    if near and len(cons) > 1:
        city, cc = _unanimous(near)
        if cc is not None:
            return city, cc, "facility-cities" + suffix
    return None, None, None


def _inside(
    cands: list[tuple[Any, ...]],
    cons: list[tuple[float, float, float, float]],
    ellipse: tuple[float, ...] | None,
    *,
    floor: bool = False,
) -> np.ndarray:
    """Which candidate places (``(city, cc, lat, lon)``) lie inside every RTT disc and the
    ellipse (and, with ``floor``, not beyond the RTT floor of :data:`FLOOR_PROBES` probes)."""
    c_lat = np.array([c[2] for c in cands], float)
    c_lon = np.array([c[3] for c in cands], float)
    ok = np.ones(len(cands), bool)
    for la, lo, r, _ in cons:
        ok &= haversine_km(la, lo, c_lat, c_lon) <= r * KM_PER_MS_RTT
    if ellipse is not None:
        pla, plo, dla, dlo, dr = ellipse
        ok &= (haversine_km(pla, plo, c_lat, c_lon) + haversine_km(c_lat, c_lon, dla, dlo)
               <= 2 * dr * KM_PER_MS_RTT - haversine_km(pla, plo, dla, dlo))
    if floor:
        ok &= ~_beyond_floor(c_lat, c_lon, cons)
    return ok


def _beyond_floor(c_lat: np.ndarray, c_lon: np.ndarray, cons: list[tuple[float, float, float, float]]) -> np.ndarray:
    """Per candidate place: :data:`FLOOR_PROBES` or more probes (distinct places, with a
    known access RTT ``base``) saw the router later than a router there would answer."""
    late: dict[tuple[float, float], np.ndarray] = {}
    for la, lo, r, b in cons:
        if b >= 0:
            reach = b + FLOOR_STRETCH * haversine_km(la, lo, c_lat, c_lon) / KM_PER_MS_RTT + FLOOR_SLACK_MS
            late[(la, lo)] = late.get((la, lo), np.zeros(len(c_lat), bool)) | (r > reach)
    return np.sum(list(late.values()), axis=0) >= FLOOR_PROBES if late else np.zeros(len(c_lat), bool)


def _floor_applies(
    places: list[tuple[Any, ...]], cons: list[tuple[float, float, float, float]], ellipse: tuple[float, ...] | None
) -> bool:
    """The RTT floor rules out some of the places the discs keep, and not all of them (a
    floor that leaves no facility city in reach says the paths tromboned: it is not used)."""
    if not places or sum(b >= 0 for *_, b in cons) < FLOOR_PROBES:
        return False
    pos = _inside(places, cons, ellipse)
    both = pos & ~_beyond_floor(np.array([c[2] for c in places], float), np.array([c[3] for c in places], float),
                                cons)
    return bool(both.any() and (pos & ~both).any())


def _unanimous(cands: list[tuple[Any, ...]]) -> tuple[str | None, str | None]:
    """(city, country) the candidates agree on; the city only when the country is agreed too."""
    ccs = {c[1] for c in cands}
    if len(ccs) != 1 or None in ccs:
        return None, None
    cities = {c[0] for c in cands}
    return (next(iter(cities)) if len(cities) == 1 else None), next(iter(ccs))


def _rtt_jumps(tid: np.ndarray, hop: np.ndarray, rtt: np.ndarray, threshold: float, ntr: int) -> pa.Array:
    ok = np.flatnonzero(~np.isnan(rtt))
    t, h, r = tid[ok], hop[ok], rtt[ok]
    same = np.zeros(len(ok), bool)
    if len(ok) > 1:
        same[1:] = t[1:] == t[:-1]
    delta = np.full(len(ok), np.nan)
    delta[1:] = r[1:] - r[:-1] if len(ok) > 1 else delta[1:]
    j = np.flatnonzero(same & (delta >= threshold))
    struct = pa.StructArray.from_arrays(
        [
            pa.array(h[j - 1].astype(np.int16)),
            pa.array(h[j].astype(np.int16)),
            pa.array(r[j - 1]),
            pa.array(r[j]),
            pa.array(delta[j]),
        ],
        fields=list(RTT_JUMP_TYPE),
    )
    return list_of(struct, t[j], ntr)


def _detours(
    hops: dict[str, Any],
    tid: np.ndarray,
    transit_fam: np.ndarray,
    is_ixp: np.ndarray,
    p_lat: np.ndarray,
    p_lon: np.ndarray,
    probe_country: pa.Array,
    dst_country: pa.Array,
    ntr: int,
) -> tuple[pa.Array, pa.Array]:
    # the hop's country: its IXP's on a peering LAN, else its AS's (compared in Arrow)
    cc = pc.if_else(pa.array(is_ixp, pa.bool_()), hops["ixp_country"].cast(pa.string()),
                    hops["as_country"].cast(pa.string()))
    cn = np.asarray(pc.fill_null(pc.equal(cc, "CN"), False).to_numpy(zero_copy_only=False), bool)
    china_km = np.min(
        np.stack([haversine_km(p_lat, p_lon, lat, lon) for _, lat, lon in CHINA_REFERENCE_POINTS]), axis=0
    ) if ntr else np.empty(0)
    reach = hops["rtt"] * KM_PER_MS_RTT >= china_km[tid]
    in_cn = (transit_fam >= 0) & cn & reach  # NaN rtt or location compares False
    hit_t = tid[in_cn]
    hit_h = hops["hop"][in_cn].astype(np.int16)
    src = pc.fill_null(probe_country, "").to_numpy(zero_copy_only=False)
    dst = pc.fill_null(dst_country, "").to_numpy(zero_copy_only=False)
    known = (src != "") & (dst != "") & ~np.isnan(p_lat) & ~np.isnan(p_lon)
    outside = (src != "CN") & (dst != "CN")
    hit = np.zeros(ntr, bool)
    hit[hit_t] = True
    det = pa.array(np.where(known, outside & hit, False), mask=~known)
    return det, list_of(pa.array(hit_h, pa.int16()), hit_t, ntr)


def _count(drops: Counter[str], reason: str, n: int) -> None:
    if n:
        drops[reason] += n


def _nullable_int(a: np.ndarray) -> pa.Array:
    return pa.array(a, pa.int64(), mask=a < 0)


def _nullable_float(a: np.ndarray) -> pa.Array:
    return pa.array(a, pa.float64(), mask=np.isnan(a))
