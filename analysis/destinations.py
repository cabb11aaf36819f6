"""Where a destination is: country with evidence, anycast, and "toward a country" scope.

One pure stage over Arrow tables, in three steps:

1. :func:`destination_rtts` -- per traceroute, the smallest RTT of the replies that came
   from the destination address itself (null when the destination never replied).
2. :func:`locate_destinations` -- per destination address, its country and the evidence it
   rests on (``dst_country_via``, strongest first, :data:`LOCATION_SOURCES`): an Atlas
   anchor's own address and geometry, RIPE IPmap, iptoasn ip2country, an RIR delegation
   (registry only, the weakest address-level evidence), the destination AS's country;
   else ``unknown`` with a reason (:data:`UNKNOWN_REASONS`). Also ``dst_anycast`` from
   the probes' speed-of-light discs (Cicalese et al., iGreedy).
3. :func:`toward_country` -- per traceroute, whether it counts as traffic toward a country:
   located there by non-anycast evidence *and* physically compatible with the RTT (the
   probe-to-country distance lower bound of :func:`country_distance_km` must be within
   ``RTT/2 x 2/3 c``); else out of scope with a reason (:data:`SCOPE_REASONS`).

Speed of light: a reply that took ``rtt`` ms for the round trip came from at most
``rtt x`` :data:`analysis.geo.KM_PER_MS_RTT` (99.93 km per ms of RTT: half the round trip,
at 2/3 of c in vacuum, the speed of light in fibre) away, the bound of constraint-based
geolocation (Gueye et al., IEEE/ACM ToN 2006). Probe coordinates published by RIPE Atlas
are approximate, so every distance test allows :data:`PROBE_LOCATION_SLACK_KM` per probe.
Every test errs on the lenient side: nothing is called anycast or faster than light unless
the geometry proves it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tomllib

from analysis import _lpm
from analysis._ipclass import CLASSES, classify
from analysis._tables import float_np
from analysis.errors import MissingReferenceData, SchemaMismatch
from analysis.geo import KM_PER_MS_RTT, haversine_km

__all__ = [
    "LOCATION_SOURCES",
    "NOT_A_COUNTRY",
    "UNKNOWN_REASONS",
    "SCOPE_REASONS",
    "PROBE_LOCATION_SLACK_KM",
    "MAX_DISCS",
    "Located",
    "Scope",
    "destination_rtts",
    "lookup_ip2country",
    "lookup_ipmap",
    "registry_country",
    "locate_destinations",
    "load_country_geometry",
    "country_distance_km",
    "toward_country",
]

#: Evidence for a destination's country, strongest first (``dst_country_via``).
#: ``rir-delegated`` is the registry's country of the address block: where it was
#: registered, not where it is used -- the weakest address-level evidence.
LOCATION_SOURCES = ("anchor", "ipmap", "ip2country", "rir-delegated", "as-country", "unknown")

#: Codes that name no country: unknown (``ZZ``) or a whole region (``EU``, ``AP``).
#: A source answering one of them does not locate the destination.
NOT_A_COUNTRY = frozenset({"ZZ", "EU", "AP"})

#: Why a destination has no location (``unknown_reason``).
UNKNOWN_REASONS = ("invalid-address", "not-public", "no-source")

#: Reasons of :func:`toward_country`: the first two are in scope, the rest are not.
SCOPE_REASONS = (
    "in-country",  # located in the country by non-anycast evidence, RTT compatible
    "anycast-rtt-compatible",  # anycast, claimed in the country, the country within reach
    "anycast-local-instance",  # anycast, and the country is out of reach of the RTT
    "faster-than-light-to-country",  # not anycast-flagged, but the country is out of reach
    "located-elsewhere",  # located in another country
    "unknown-location",  # no location (see locate_destinations' unknown_reason)
    "probe-unlocated",  # in the country by its evidence, but the probe has no coordinates
    "not-reached",  # the destination never replied: no RTT to test
)

#: Allowance for the imprecision of a probe's published coordinates, km per probe
#: (RIPE Atlas shows probe locations as their hosts set them, rounded; anchors exactly).
PROBE_LOCATION_SLACK_KM = 10.0

#: At most this many discs (the smallest) are compared pairwise per destination.
MAX_DISCS = 2000

_RTT_SCHEMA = pa.schema(
    [
        ("msm_id", pa.int64()),
        ("prb_id", pa.int64()),
        ("timestamp", pa.timestamp("s", tz="UTC")),
        ("dst_addr", pa.string()),
        ("dst_rtt_ms", pa.float64()),
    ]
)

_LOCATED_SCHEMA = pa.schema(
    [
        ("dst_addr", pa.string()),
        ("dst_country", pa.string()),
        ("dst_country_via", pa.string()),
        ("unknown_reason", pa.string()),
        ("dst_city", pa.string()),
        ("dst_lat", pa.float64()),
        ("dst_lon", pa.float64()),
        ("dst_asn", pa.int64()),
        ("dst_anycast", pa.bool_()),
        ("anycast_evidence", pa.string()),
        ("n_instances_min", pa.int64()),
        ("n_probes", pa.int64()),
        ("n_located_probes", pa.int64()),
        ("min_rtt_ms", pa.float64()),
    ]
)

_SCOPE_SCHEMA = pa.schema(
    [
        ("msm_id", pa.int64()),
        ("prb_id", pa.int64()),
        ("timestamp", pa.timestamp("s", tz="UTC")),
        ("dst_addr", pa.string()),
        ("dst_country", pa.string()),
        ("dst_country_via", pa.string()),
        ("dst_anycast", pa.bool_()),
        ("dst_rtt_ms", pa.float64()),
        ("country_distance_km", pa.float64()),
        ("in_scope", pa.bool_()),
        ("scope_reason", pa.string()),
    ]
)


@dataclass
class Located:
    """The result of :func:`locate_destinations`.

    Attributes
    ----------
    table : pyarrow.Table
        One row per destination address (columns in the function's docstring).
    counts : collections.Counter
        ``destinations``, ``via:<source>``, ``unknown:<reason>``, ``anycast:true|false|null``.
    """

    table: pa.Table
    counts: Counter = field(default_factory=Counter)


@dataclass
class Scope:
    """The result of :func:`toward_country`.

    Attributes
    ----------
    table : pyarrow.Table
        One row per traceroute (columns in the function's docstring).
    counts : collections.Counter
        ``traceroutes``, ``in_scope`` and one count per :data:`SCOPE_REASONS` entry seen.
    country : str
        The country tested.
    """

    table: pa.Table
    counts: Counter
    country: str


def _need(table: pa.Table, cols: tuple[str, ...], what: str) -> None:
    missing = [c for c in cols if c not in table.column_names]
    if missing:
        raise SchemaMismatch(f"{what} lacks columns {missing} (has {table.column_names})")


def destination_rtts(hops: pa.Table) -> pa.Table:
    """Per traceroute, the smallest RTT of a reply from the destination address.

    ``dst_rtt_ms = min { rtt : reply_from = dst_addr }`` over the hop rows of one
    traceroute ``(msm_id, prb_id, timestamp)``; null when no reply came from the
    destination (the SQL equivalent: ``min(rtt) FILTER (WHERE reply_from = dst_addr)``).

    Parameters
    ----------
    hops : pyarrow.Table
        A hop table (:data:`probes.schema.HOP_SCHEMA`): ``msm_id, prb_id, timestamp,
        dst_addr, reply_from, rtt`` are read.

    Returns
    -------
    pyarrow.Table
        ``msm_id, prb_id, timestamp, dst_addr, dst_rtt_ms``, one row per traceroute,
        sorted by the key.

    References
    ----------
    RIPE Atlas traceroute result format, "result[].result[].from / rtt".

    Examples
    --------
    >>> import pyarrow as pa
    >>> hops = pa.table({"msm_id": [1, 1, 1, 2], "prb_id": [7, 7, 7, 7], "timestamp": [0, 0, 0, 0],
    ...                  "dst_addr": ["192.0.2.1"] * 4, "reply_from": ["10.0.0.1", "192.0.2.1", "192.0.2.1", None],
    ...                  "rtt": [1.0, 9.5, 8.25, None]})
    >>> destination_rtts(hops).column("dst_rtt_ms").to_pylist()
    [8.25, None]
    """
    _need(hops, ("msm_id", "prb_id", "timestamp", "dst_addr", "reply_from", "rtt"), "hop table")
    keys = ["msm_id", "prb_id", "timestamp", "dst_addr"]
    t = hops.select([*keys, "reply_from", "rtt"])
    ts = t.column("timestamp")
    if not pa.types.is_timestamp(ts.type):
        t = t.set_column(2, "timestamp", pc.cast(pc.cast(ts, pa.int64()), pa.timestamp("s", tz="UTC")))
    else:
        t = t.set_column(2, "timestamp", pc.cast(ts, pa.timestamp("s", tz="UTC")))
    all_keys = t.select(keys).group_by(keys, use_threads=False).aggregate([])
    hit = pc.and_kleene(pc.equal(t["reply_from"], t["dst_addr"]), pc.is_valid(t["rtt"]))
    mins = (
        t.filter(pc.fill_null(hit, False))
        .group_by(keys, use_threads=False)
        .aggregate([("rtt", "min")])
        .rename_columns([*keys, "dst_rtt_ms"])
    )
    out = all_keys.join(mins, keys=keys, join_type="left outer", use_threads=False)
    out = out.select([*keys, "dst_rtt_ms"]).sort_by([(k, "ascending") for k in keys[:3]])
    return out.cast(_RTT_SCHEMA)


def lookup_ip2country(snapshot: Any, addrs: pa.Array) -> pa.Array:
    """The iptoasn ip2country country of each address (null where no range covers it).

    One binary search per address over the disjoint intervals stored at import
    (:func:`analysis._lpm.flatten_ranges`: nested ranges resolve to the narrowest).

    Parameters
    ----------
    snapshot : analysis.datasets.Snapshot
        A snapshot holding the ``ip2country`` kind.
    addrs : pyarrow.Array of str
        Addresses (v4 or v6); invalid strings and nulls give null.

    Returns
    -------
    pyarrow.Array of str

    References
    ----------
    iptoasn.com, "IP to country" database (ip2country-v4.tsv, ip2country-v6.tsv), PDDL.

    Examples
    --------
    >>> import tempfile, pathlib, pyarrow as pa
    >>> from analysis.datasets import import_files
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "ip2country-v4.tsv").write_text("1.0.0.0\\t1.0.0.255\\tAU\\n8.8.8.0\\t8.8.8.255\\tUS\\n")
    >>> snap = import_files("ip2country", [d / "ip2country-v4.tsv"], snapshot_id="doc", cache_dir=d)
    >>> lookup_ip2country(snap, pa.array(["8.8.8.8", "1.0.0.7", "9.9.9.9", "x"])).to_pylist()
    ['US', 'AU', None, None]
    """
    addrs = _as_array(addrs)
    ranges = snapshot.table("ip2country", "ranges")
    return _take_or_null(ranges.column("cc"), _lpm.lookup_addresses(snapshot, "ip2country", addrs))


def lookup_ipmap(snapshot: Any, addrs: pa.Array) -> pa.Table:
    """The RIPE IPmap geolocation of each address (exact match; nulls where absent).

    Parameters
    ----------
    snapshot : analysis.datasets.Snapshot
        A snapshot holding the ``ipmap`` kind.
    addrs : pyarrow.Array of str
        Addresses (v4 or v6).

    Returns
    -------
    pyarrow.Table
        ``cc, city, lat, lon, score``, aligned with ``addrs``.

    References
    ----------
    Du, Candela, Huffaker, Snoeren, claffy, "RIPE IPmap active geolocation: mechanism and
    performance evaluation", ACM SIGCOMM CCR 50(2), 2020.

    Examples
    --------
    >>> import tempfile, pathlib, pyarrow as pa
    >>> from analysis.datasets import import_files
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> row = "192.0.2.1/32,X,Paris,IDF,France,FR,FRA,48.85,2.35,60\\n"
    >>> _ = (d / "ipmap.csv").write_text(row)
    >>> snap = import_files("ipmap", [d / "ipmap.csv"], snapshot_id="doc", cache_dir=d)
    >>> lookup_ipmap(snap, pa.array(["192.0.2.1", "192.0.2.2"])).column("cc").to_pylist()
    ['FR', None]
    """
    addrs = _as_array(addrs)
    t = snapshot.table("ipmap", "addresses")
    af, hi, lo, ok = _lpm.parse_addresses(addrs)
    row = np.full(len(addrs), -1, np.int64)
    taf = t.column("af").to_numpy()
    thi, tlo = t.column("hi").to_numpy(), t.column("lo").to_numpy()
    for v in (4, 6):
        sel = np.flatnonzero(ok & (af == v))
        keys = np.flatnonzero(taf == v)  # rows are sorted by (af, hi, lo): one block per family
        if sel.size and keys.size:
            pos = _lpm.exact_lookup(thi[keys], tlo[keys], hi[sel], lo[sel])
            row[sel] = np.where(pos >= 0, keys[np.maximum(pos, 0)], -1)
    return pa.table({c: _take_or_null(t.column(c), row) for c in ("cc", "city", "lat", "lon", "score")})


def locate_destinations(
    rtts: pa.Table,
    probes: pa.Table | None,
    snapshot: Any = None,
    *,
    min_probes: int = 2,
    slack_km: float = PROBE_LOCATION_SLACK_KM,
) -> Located:
    """Country, evidence and anycast status of every destination address.

    The country is taken from the first source, in :data:`LOCATION_SOURCES` order, that
    knows the address: ``anchor`` (the address is an Atlas anchor's ``address_v4`` /
    ``address_v6`` in ``probes``, with its ``country_code`` and coordinates), ``ipmap``,
    ``ip2country``, ``rir-delegated`` (IANA blocks excluded), ``as-country`` (the
    country of the address's origin AS from :func:`analysis.annotate.annotate`). With
    none, ``dst_country`` is null, ``dst_country_via`` is ``"unknown"`` and
    ``unknown_reason`` says why (:data:`UNKNOWN_REASONS`) -- never a silent ``ZZ``.

    Anycast, after iGreedy: each probe ``i`` that reached the destination defines a disc
    centred on the probe, of radius ``r_i = min RTT_i x KM_PER_MS_RTT`` (99.93 km per ms).
    A unicast destination lies in every disc, so two disjoint discs,
    ``d(p_i, p_j) > r_i + r_j + 2 x slack_km``, prove more than one location:
    ``dst_anycast = True``. ``False`` when no two discs are disjoint, at least
    ``min_probes`` probes are located, and the destination's own point (anchor or IPmap)
    lies in every disc (``d(p_i, dst) <= r_i + slack_km``). Otherwise null (not enough
    evidence: too few located probes, or no point to test). ``n_instances_min`` is the
    greedy count of pairwise-disjoint discs (smallest first), a lower bound on the number
    of instances seen. At most :data:`MAX_DISCS` smallest discs are compared pairwise.

    Parameters
    ----------
    rtts : pyarrow.Table
        :func:`destination_rtts` output (``prb_id, dst_addr, dst_rtt_ms`` are read).
    probes : pyarrow.Table or None
        Probe metadata (:data:`probes.store.PROBE_META_SCHEMA`: ``prb_id, latitude,
        longitude``; ``is_anchor, address_v4, address_v6, country_code`` for anchors).
    snapshot : analysis.datasets.Snapshot, optional
        Reference data; the kinds it lacks are skipped.
    min_probes : int
        Located probes needed before a destination is declared unicast.
    slack_km : float
        Allowance for each probe's coordinate error.

    Returns
    -------
    Located
        ``table``: ``dst_addr, dst_country, dst_country_via, unknown_reason, dst_city,
        dst_lat, dst_lon, dst_asn, dst_anycast, anycast_evidence, n_instances_min,
        n_probes, n_located_probes, min_rtt_ms``, sorted by ``dst_addr``;
        ``counts``: ``destinations``, ``via:<source>``, ``unknown:<reason>``,
        ``anycast:true|false|null``.

    References
    ----------
    D. Cicalese, D. Joumblatt, D. Rossi, M.-O. Buob, J. Augé, T. Friedman, "A fistful of
    pings: accurate and lightweight anycast enumeration and geolocation", IEEE INFOCOM 2015.
    B. Gueye, A. Ziviani, M. Crovella, S. Fdida, "Constraint-based geolocation of Internet
    hosts", IEEE/ACM ToN 14(6), 2006.

    Examples
    --------
    Two probes 45 degrees of longitude apart on the equator (5,004 km), each 2 ms from
    the destination (discs of 200 km): the destination is in two places at once.

    >>> import pyarrow as pa
    >>> rtts = pa.table({"prb_id": [1, 2], "dst_addr": ["192.0.2.1"] * 2, "dst_rtt_ms": [2.0, 2.0]})
    >>> probes = pa.table({"prb_id": [1, 2], "latitude": [0.0, 0.0], "longitude": [0.0, 45.0]})
    >>> loc = locate_destinations(rtts, probes)
    >>> loc.table.select(["dst_country_via", "unknown_reason", "dst_anycast", "n_instances_min"]).to_pylist()
    [{'dst_country_via': 'unknown', 'unknown_reason': 'not-public', 'dst_anycast': True, 'n_instances_min': 2}]
    """
    _need(rtts, ("prb_id", "dst_addr", "dst_rtt_ms"), "rtts")
    addrs = pc.unique(pc.drop_null(rtts.column("dst_addr").combine_chunks().cast(pa.string())))
    addrs = addrs.take(pc.array_sort_indices(addrs))
    n = len(addrs)
    addr_list = addrs.to_pylist()
    country: list[str | None] = [None] * n
    via = np.array(["unknown"] * n, dtype=object)
    city: list[str | None] = [None] * n
    lat = np.full(n, np.nan)
    lon = np.full(n, np.nan)
    counts: Counter = Counter(destinations=n)

    def fill(source: str, cc: list, lats: np.ndarray | None = None, lons: np.ndarray | None = None,
             cities: list | None = None) -> None:
        for i in range(n):
            if via[i] == "unknown" and cc[i] and cc[i] not in NOT_A_COUNTRY:
                via[i], country[i] = source, cc[i]
                if lats is not None and lons is not None and not (np.isnan(lats[i]) or np.isnan(lons[i])):
                    lat[i], lon[i] = lats[i], lons[i]
                if cities is not None:
                    city[i] = cities[i]

    plat, plon = _probe_coords(probes)
    # 1. an Atlas anchor's own address
    if probes is not None and "is_anchor" in probes.column_names:
        anchors: dict[str, tuple[str | None, float, float]] = {}
        for r in probes.to_pylist():
            if r.get("is_anchor") and r.get("latitude") is not None and r.get("longitude") is not None:
                for k in ("address_v4", "address_v6"):
                    if r.get(k):
                        anchors[str(r[k])] = (r.get("country_code"), float(r["latitude"]), float(r["longitude"]))
        hit = [anchors.get(a) for a in addr_list]
        fill("anchor", [h[0] if h else None for h in hit],
             np.array([h[1] if h else np.nan for h in hit]), np.array([h[2] if h else np.nan for h in hit]))
    dst_asn = pa.nulls(n, pa.int64())
    if snapshot is not None:
        if snapshot.has("ipmap"):
            g = lookup_ipmap(snapshot, addrs)
            fill("ipmap", g.column("cc").to_pylist(), float_np(g.column("lat")), float_np(g.column("lon")),
                 g.column("city").to_pylist())
        if snapshot.has("ip2country"):
            fill("ip2country", lookup_ip2country(snapshot, addrs).to_pylist())
        if snapshot.has("rir-delegated"):
            fill("rir-delegated", registry_country(snapshot, addrs))
        if snapshot.has("pfx2as"):
            from analysis.annotate import annotate

            ann, _ = annotate(pa.table({"reply_from": addrs}), snapshot)
            fill("as-country", ann.column("as_country").to_pylist())
            dst_asn = ann.column("asn").combine_chunks().cast(pa.int64())
    af, hi, lo, ok = _lpm.parse_addresses(addrs)
    cls = classify(af, hi, lo, ok)
    public = CLASSES.index("public")
    reason = np.array([None if via[i] != "unknown" else "invalid-address" if not ok[i]
                       else "not-public" if cls[i] != public else "no-source" for i in range(n)], dtype=object)
    for i in range(n):
        counts[f"via:{via[i]}"] += 1
        if reason[i] is not None:
            counts[f"unknown:{reason[i]}"] += 1
    anycast, evidence, inst, n_pr, n_loc, min_rtt = _anycast(
        rtts, addr_list, plat, plon, lat, lon, min_probes=min_probes, slack_km=slack_km
    )
    for a in anycast:
        counts[f"anycast:{'null' if a is None else str(a).lower()}"] += 1
    table = pa.table(
        {
            "dst_addr": addrs,
            "dst_country": pa.array(country, pa.string()),
            "dst_country_via": pa.array(via.tolist(), pa.string()),
            "unknown_reason": pa.array(reason.tolist(), pa.string()),
            "dst_city": pa.array(city, pa.string()),
            "dst_lat": pa.array(lat, pa.float64(), from_pandas=True),
            "dst_lon": pa.array(lon, pa.float64(), from_pandas=True),
            "dst_asn": dst_asn,
            "dst_anycast": pa.array(anycast, pa.bool_()),
            "anycast_evidence": pa.array(evidence, pa.string()),
            "n_instances_min": pa.array(inst, pa.int64()),
            "n_probes": pa.array(n_pr, pa.int64()),
            "n_located_probes": pa.array(n_loc, pa.int64()),
            "min_rtt_ms": pa.array(min_rtt, pa.float64(), from_pandas=True),
        },
        schema=_LOCATED_SCHEMA,
    )
    return Located(table, counts)


def load_country_geometry(path: str | Path | None = None) -> pa.Table:
    """Boxes that contain each country's territory (default: ``analysis/country_geometry.toml``).

    Parameters
    ----------
    path : path, optional
        A TOML file of ``[[box]]`` tables (``country``, ``region``, ``lat = [min, max]``,
        ``lon = [min, max]``); default the packaged file (the US, territories included,
        with the sources of its bounds).

    Returns
    -------
    pyarrow.Table
        ``country, region, lat_min, lat_max, lon_min, lon_max``.

    References
    ----------
    USGS, "Extreme points of the United States" (the bounds of the packaged US boxes).

    Examples
    --------
    >>> g = load_country_geometry()
    >>> sorted(set(g.column("country").to_pylist()))
    ['US']
    """
    if path is None:
        raw = resources.files("analysis").joinpath("country_geometry.toml").read_bytes()
        where = "analysis/country_geometry.toml"
    else:
        raw, where = Path(path).read_bytes(), str(path)
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
        boxes = doc["box"]
        rows = [
            (str(b["country"]).upper(), str(b.get("region", "")), float(b["lat"][0]), float(b["lat"][1]),
             float(b["lon"][0]), float(b["lon"][1]))
            for b in boxes
        ]
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise SchemaMismatch(f"{where}: not a country geometry file ({type(exc).__name__}: {exc})") from exc
    for r in rows:
        if not (-90 <= r[2] <= r[3] <= 90 and -180 <= r[4] <= r[5] <= 180):
            raise SchemaMismatch(f"{where}: box {r[0]} {r[1]!r} has bounds out of order or range")
    names = ["country", "region", "lat_min", "lat_max", "lon_min", "lon_max"]
    return pa.table({k: [r[i] for r in rows] for i, k in enumerate(names)},
                    schema=pa.schema([(k, pa.string() if i < 2 else pa.float64()) for i, k in enumerate(names)]))


def country_distance_km(
    lat: np.ndarray, lon: np.ndarray, geometry: pa.Table, *, country: str = "US"
) -> np.ndarray:
    """A lower bound of the great-circle distance from each point to a country, in km.

    Each box of the country is cut into cells of at most 1 x 1 degree; a cell lies inside
    the disc around its centre ``c`` of radius ``rho = 1.01 x max(d(c, corner)) + 1 km``,
    so for any point ``p`` of the cell ``d(P, p) >= d(P, c) - rho`` (triangle
    inequality). The bound is ``max(0, min over cells (d(P, c) - rho))``: never more than
    the true distance (the boxes contain the territory), at most about 80 km less.

    Parameters
    ----------
    lat, lon : numpy.ndarray
        Points, degrees (NaN gives NaN).
    geometry : pyarrow.Table
        :func:`load_country_geometry` output.
    country : str
        ISO code.

    Returns
    -------
    numpy.ndarray of float

    Raises
    ------
    analysis.errors.MissingReferenceData
        The geometry has no box for ``country``.

    References
    ----------
    B. Gueye et al., "Constraint-based geolocation of Internet hosts", IEEE/ACM ToN 2006.

    Examples
    --------
    >>> g = load_country_geometry()
    >>> d = country_distance_km(np.array([40.71, 25.2]), np.array([-74.0, 55.3]), g)  # New York, Dubai
    >>> float(d[0]), bool(d[1] > 7000)
    (0.0, True)
    """
    clat, clon, rho = _cells(geometry, country)
    lat = np.asarray(lat, float).reshape(-1)
    lon = np.asarray(lon, float).reshape(-1)
    out = np.full(lat.size, np.nan)
    for start in range(0, lat.size, 256):  # bounded memory: 256 points x cells at a time
        a, b = lat[start:start + 256, None], lon[start:start + 256, None]
        d = haversine_km(a, b, clat[None, :], clon[None, :]) - rho[None, :]
        out[start:start + 256] = np.maximum(d.min(axis=1), 0.0)
    out[np.isnan(lat) | np.isnan(lon)] = np.nan
    return out


def toward_country(
    rtts: pa.Table,
    destinations: Located | pa.Table,
    probes: pa.Table | None,
    country_geometry: pa.Table | None = None,
    *,
    country: str = "US",
    slack_km: float = PROBE_LOCATION_SLACK_KM,
) -> Scope:
    """Whether each traceroute counts as traffic toward ``country``, with the reason.

    In scope (``in-country``) when the destination is located in ``country`` by
    non-anycast evidence and ``D <= RTT x KM_PER_MS_RTT + slack_km``, where ``D`` is
    :func:`country_distance_km` from the probe and RTT the traceroute's own
    ``dst_rtt_ms``. An anycast destination claimed in the country counts
    (``anycast-rtt-compatible``) only when the country is within reach; out of reach it
    is ``anycast-local-instance``. A destination in the country by its evidence that
    answered faster than light allows from the probe to any point of the country is
    ``faster-than-light-to-country``. Otherwise, in this order: ``not-reached``,
    ``unknown-location``, ``located-elsewhere``, ``probe-unlocated`` (the RTT cannot be
    tested, so it is not counted).

    Parameters
    ----------
    rtts : pyarrow.Table
        :func:`destination_rtts` output.
    destinations : Located or pyarrow.Table
        :func:`locate_destinations` output (``dst_addr, dst_country, dst_country_via,
        dst_anycast`` are read).
    probes : pyarrow.Table or None
        Probe metadata with ``prb_id, latitude, longitude``.
    country_geometry : pyarrow.Table, optional
        :func:`load_country_geometry` output; default the packaged file.
    country : str
        ISO code of the country tested.
    slack_km : float
        Allowance for the probe's coordinate error.

    Returns
    -------
    Scope
        ``table``: ``msm_id, prb_id, timestamp, dst_addr, dst_country, dst_country_via,
        dst_anycast, dst_rtt_ms, country_distance_km, in_scope, scope_reason``, one row
        per traceroute of ``rtts``; ``counts`` by reason.

    References
    ----------
    D. Cicalese et al., "A fistful of pings", IEEE INFOCOM 2015 (anycast by
    speed-of-light discs); B. Gueye et al., IEEE/ACM ToN 2006 (the RTT distance bound).

    Examples
    --------
    A probe in Dubai answered in 0.5 ms by a "US" destination: a local copy, not the US.

    >>> import pyarrow as pa
    >>> rtts = pa.table({"msm_id": [1, 1], "prb_id": [1, 2], "timestamp": [0, 0],
    ...                  "dst_addr": ["192.0.2.1"] * 2, "dst_rtt_ms": [0.5, 12.0]})
    >>> dst = pa.table({"dst_addr": ["192.0.2.1"], "dst_country": ["US"],
    ...                 "dst_country_via": ["ip2country"], "dst_anycast": pa.array([None], pa.bool_())})
    >>> probes = pa.table({"prb_id": [1, 2], "latitude": [25.2, 40.7], "longitude": [55.3, -74.0]})
    >>> toward_country(rtts, dst, probes).table.column("scope_reason").to_pylist()
    ['faster-than-light-to-country', 'in-country']
    """
    _need(rtts, ("msm_id", "prb_id", "timestamp", "dst_addr", "dst_rtt_ms"), "rtts")
    d = destinations.table if isinstance(destinations, Located) else destinations
    _need(d, ("dst_addr", "dst_country", "dst_country_via", "dst_anycast"), "destinations")
    geometry = country_geometry if country_geometry is not None else load_country_geometry()
    country = country.upper()
    n = rtts.num_rows
    dst = rtts.column("dst_addr").combine_chunks().cast(pa.string())
    idx = pc.index_in(dst, value_set=d.column("dst_addr").combine_chunks().cast(pa.string()))
    idx_np = pc.fill_null(idx, -1).to_numpy(zero_copy_only=False)
    dcc = _take_or_null(d.column("dst_country"), idx_np)
    dvia = _take_or_null(d.column("dst_country_via"), idx_np)
    dany = _take_or_null(d.column("dst_anycast"), idx_np)
    prb = rtts.column("prb_id").to_numpy(zero_copy_only=False)
    plat, plon = _probe_coords(probes)
    uniq_prb, inv = np.unique(prb, return_inverse=True)
    ulat = np.array([plat.get(int(p), np.nan) for p in uniq_prb])
    ulon = np.array([plon.get(int(p), np.nan) for p in uniq_prb])
    dist = country_distance_km(ulat, ulon, geometry, country=country)[inv] if uniq_prb.size else np.zeros(0)
    rtt = float_np(rtts.column("dst_rtt_ms"))
    cc_np = np.array(dcc.to_pylist(), dtype=object)
    any_np = np.array(dany.to_pylist(), dtype=object)
    reach = dist <= rtt * KM_PER_MS_RTT + slack_km  # False where NaN
    reason = np.full(n, "in-country", dtype=object)
    in_c = cc_np == country
    is_any = any_np == True  # noqa: E712 - object array of True/False/None
    unlocated = np.isnan(dist)
    reason[in_c & ~is_any & ~reach] = "faster-than-light-to-country"
    reason[in_c & is_any & reach] = "anycast-rtt-compatible"
    reason[in_c & is_any & ~reach] = "anycast-local-instance"
    reason[in_c & unlocated] = "probe-unlocated"
    reason[~in_c] = "located-elsewhere"
    reason[np.array([c is None for c in cc_np], bool)] = "unknown-location"
    reason[np.isnan(rtt)] = "not-reached"
    in_scope = np.isin(reason, ["in-country", "anycast-rtt-compatible"])
    table = pa.table(
        {
            "msm_id": rtts.column("msm_id"),
            "prb_id": rtts.column("prb_id"),
            "timestamp": pc.cast(rtts.column("timestamp"), pa.timestamp("s", tz="UTC"))
            if pa.types.is_timestamp(rtts.schema.field("timestamp").type)
            else pc.cast(pc.cast(rtts.column("timestamp"), pa.int64()), pa.timestamp("s", tz="UTC")),
            "dst_addr": dst,
            "dst_country": dcc,
            "dst_country_via": dvia,
            "dst_anycast": dany.cast(pa.bool_()),
            "dst_rtt_ms": pa.array(rtt, pa.float64(), from_pandas=True),
            "country_distance_km": pa.array(dist, pa.float64(), from_pandas=True),
            "in_scope": pa.array(in_scope, pa.bool_()),
            "scope_reason": pa.array(reason.tolist(), pa.string()),
        },
        schema=_SCOPE_SCHEMA,
    )
    counts: Counter = Counter(traceroutes=n, in_scope=int(in_scope.sum()))
    counts.update(reason.tolist())
    return Scope(table, counts, country)


# ----------------------------------------------------------------------------- helpers


def _as_array(addrs: Any) -> pa.Array:
    if isinstance(addrs, pa.ChunkedArray):
        addrs = addrs.combine_chunks()
    if not isinstance(addrs, pa.Array):
        addrs = pa.array(addrs, pa.string())
    return addrs.cast(pa.string())


def _take_or_null(col: pa.ChunkedArray | pa.Array, row: np.ndarray) -> pa.Array:
    """``col[row]``, null where ``row < 0``."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if len(arr) == 0:
        return pa.nulls(len(row), arr.type)
    took = arr.take(pa.array(np.maximum(row, 0), pa.int64()))
    return pc.if_else(pa.array(row >= 0), took, pa.nulls(len(row), arr.type))


def _probe_coords(probes: pa.Table | None) -> tuple[dict[int, float], dict[int, float]]:
    if probes is None or probes.num_rows == 0:
        return {}, {}
    _need(probes, ("prb_id", "latitude", "longitude"), "probe metadata")
    plat: dict[int, float] = {}
    plon: dict[int, float] = {}
    for p, la, lo in zip(probes.column("prb_id").to_pylist(), probes.column("latitude").to_pylist(),
                         probes.column("longitude").to_pylist(), strict=True):
        if p is not None and la is not None and lo is not None and abs(la) <= 90 and abs(lo) <= 180:
            plat[int(p)], plon[int(p)] = float(la), float(lo)
    return plat, plon


def registry_country(snapshot: Any, addrs: pa.Array) -> list[str | None]:
    """Registry country of each address's delegated block (``rir-delegated``; IANA blocks
    and addresses outside every block give None)."""
    t = snapshot.table("rir-delegated", "prefixes")
    row = _lpm.lookup_addresses(snapshot, "rir-delegated", addrs)
    cc = _take_or_null(t.column("cc"), row).to_pylist()
    reg = _take_or_null(t.column("registry"), row).to_pylist()
    return [c if r != "iana" else None for c, r in zip(cc, reg, strict=True)]


def _cells(geometry: pa.Table, country: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g = geometry.filter(pc.equal(geometry.column("country"), country)).to_pylist()
    if not g:
        raise MissingReferenceData(
            f"no geometry for country {country!r} (have {sorted(set(geometry.column('country').to_pylist()))}); "
            "add [[box]] entries to a country geometry file and pass it"
        )
    clat, clon, rho = [], [], []
    for b in g:
        nla = max(1, int(np.ceil(b["lat_max"] - b["lat_min"])))
        nlo = max(1, int(np.ceil(b["lon_max"] - b["lon_min"])))
        la_edges = np.linspace(b["lat_min"], b["lat_max"], nla + 1)
        lo_edges = np.linspace(b["lon_min"], b["lon_max"], nlo + 1)
        la0, lo0 = np.meshgrid(la_edges[:-1], lo_edges[:-1], indexing="ij")
        la1, lo1 = np.meshgrid(la_edges[1:], lo_edges[1:], indexing="ij")
        cla, clo = (la0 + la1) / 2, (lo0 + lo1) / 2
        far = np.max([haversine_km(cla, clo, a, o) for a, o in ((la0, lo0), (la0, lo1), (la1, lo0), (la1, lo1))], axis=0)
        clat.append(cla.ravel())
        clon.append(clo.ravel())
        rho.append((1.01 * far + 1.0).ravel())
    return np.concatenate(clat), np.concatenate(clon), np.concatenate(rho)


def _anycast(
    rtts: pa.Table, addrs: list[str], plat: dict[int, float], plon: dict[int, float],
    dlat: np.ndarray, dlon: np.ndarray, *, min_probes: int, slack_km: float,
) -> tuple[list, list, list, list, list, list]:
    """Per destination: anycast flag, its evidence, instance lower bound, probe counts, min RTT."""
    t = rtts.select(["dst_addr", "prb_id", "dst_rtt_ms"]).filter(pc.is_valid(rtts.column("dst_rtt_ms")))
    g = t.group_by(["dst_addr", "prb_id"], use_threads=False).aggregate([("dst_rtt_ms", "min")])
    g = g.sort_by([("dst_addr", "ascending"), ("dst_rtt_ms_min", "ascending")])
    ga = g.column("dst_addr").to_pylist()
    gp = g.column("prb_id").to_numpy(zero_copy_only=False)
    gr = g.column("dst_rtt_ms_min").to_numpy(zero_copy_only=False)
    spans: dict[str, tuple[int, int]] = {}
    start = 0
    for i in range(1, len(ga) + 1):
        if i == len(ga) or ga[i] != ga[start]:
            spans[ga[start]] = (start, i)
            start = i
    out: tuple[list, list, list, list, list, list] = ([], [], [], [], [], [])
    for k, a in enumerate(addrs):
        s, e = spans.get(a, (0, 0))
        prb, rtt = gp[s:e], gr[s:e]
        la = np.array([plat.get(int(p), np.nan) for p in prb])
        lo = np.array([plon.get(int(p), np.nan) for p in prb])
        loc = ~np.isnan(la)
        prb_l, la, lo, r = prb[loc], la[loc], lo[loc], rtt[loc] * KM_PER_MS_RTT  # sorted by radius
        flag: bool | None = None
        why: str | None = None
        inst: int | None = 1 if r.size else None
        m = min(r.size, MAX_DISCS)
        if m >= 2:
            dm = haversine_km(la[:m, None], lo[:m, None], la[None, :m], lo[None, :m])
            apart = dm > r[:m, None] + r[None, :m] + 2 * slack_km
            if apart.any():
                i, j = (int(x) for x in np.unravel_index(int(np.argmax(dm - r[:m, None] - r[None, :m])), dm.shape))
                flag = True
                why = (f"probes {int(prb_l[i])} and {int(prb_l[j])} are {dm[i, j]:.0f} km apart > "
                       f"{r[i]:.0f} + {r[j]:.0f} km (+{2 * slack_km:.0f} slack)")
                inst = _greedy_instances(apart)
        if flag is None and r.size >= max(min_probes, 1) and not np.isnan(dlat[k]):
            dd = haversine_km(la, lo, dlat[k], dlon[k])
            if bool(np.all(dd <= r + slack_km)):
                flag = False
                why = f"all {r.size} probe discs contain the located point"
        out[0].append(flag)
        out[1].append(why)
        out[2].append(inst)
        out[3].append(int(e - s))
        out[4].append(int(r.size))
        out[5].append(float(rtt.min()) if rtt.size else np.nan)
    return out


def _greedy_instances(apart: np.ndarray) -> int:
    """iGreedy's count: take discs smallest first, keeping each disjoint from all kept."""
    kept: list[int] = []
    for i in range(apart.shape[0]):
        if all(apart[i, j] for j in kept):
            kept.append(i)
    return len(kept)
