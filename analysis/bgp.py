"""The control plane: which BGP announcements carry the flagged families.

:func:`bgp_summary` reads the ``routes`` table of an ``mrt`` or ``bgpdump`` snapshot kind
(:mod:`analysis._readers_bgp`) and says, per flagged family of the registry, how many
distinct announcements -- (collector peer, prefix, AS path as announced) -- traverse one
of its ASes, how many of those the family originates, the prefixes, origin ASes and peers
concerned, and where those prefixes are (the snapshot's ``ip2country``, else its
``rir-delegated`` registry country, looked up at the prefix's first address).

:func:`valley_signals` finds the announcements in which a flagged AS breaks the
valley-free rule (Gao 2001): it learned the route from a provider or a peer and passed it
on to a provider or a peer -- the shape of a route leak (RFC 7908 types 1 and 4), the
shape of China Telecom's 2010 and 2019 incidents.

:func:`bgp_agreement` puts each traceroute beside the BGP paths toward its destination's
prefix seen from the probe's AS or its neighbours (IHR-style data-plane / control-plane
comparison): does BGP show the flagged transit the traceroute shows?
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from analysis._tables import connect
from analysis.errors import MissingReferenceData

__all__ = ["AGREEMENT", "BGP_KINDS", "ROV_STATES", "bgp_agreement", "bgp_routes", "bgp_summary", "campaign_bgp",
           "campaign_bgp_inputs", "control_plane_exposure", "covering_prefixes", "destination_rov", "line_up",
           "more_specific_signals", "path_change_signals", "rov_status", "valley_signals"]

#: Route-origin-validation states (RFC 6811), and ``unknown`` when prefix or origin is.
ROV_STATES = ("valid", "invalid", "not-found", "unknown")

#: Verdicts of :func:`bgp_agreement`, per traceroute and family.
AGREEMENT = ("agree", "traceroute-only", "bgp-only", "no-bgp-view")

#: A day, in seconds: signals first seen this long before the first traceroute still count.
_DAY = 86_400

#: Snapshot kinds holding a ``routes`` table.
BGP_KINDS = ("mrt", "bgpdump")


def _net_key(prefix: str) -> tuple[int, int, int]:
    """``(IP version, network address as int, length)`` of a prefix."""
    n = ipaddress.ip_network(prefix, strict=False)
    return n.version, int(n.network_address), n.prefixlen


def _supernets(key: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """The keys of ``key``'s prefix and of every prefix covering it, most specific first.

    >>> [k[2] for k in _supernets(_net_key("192.0.2.0/24"))][:3], _supernets(_net_key("10.1.0.0/16"))[8]
    ([24, 23, 22], (4, 167772160, 8))
    """
    version, base, length = key
    bits = 32 if version == 4 else 128
    return [(version, base >> (bits - k) << (bits - k), k) for k in range(length, -1, -1)]


def bgp_routes(snapshot: Any) -> tuple[pa.Table, str]:
    """The snapshot's ``routes`` table and the kind it came from (``mrt`` before ``bgpdump``)."""
    for kind in BGP_KINDS:
        if snapshot.has(kind):
            return snapshot.table(kind, "routes"), kind
    raise MissingReferenceData(
        f"snapshot {snapshot.id} holds no BGP data; import some with "
        "`pathexp datasets import --kind mrt FILE...` (RIS / RouteViews MRT) or --kind bgpdump")


def bgp_summary(routes: pa.Table, registry: Any, *, snapshot: Any = None, top: int = 10) -> dict[str, Any]:
    """Per flagged family: the BGP announcements whose AS path traverses it.

    Parameters
    ----------
    routes : pyarrow.Table
        A ``routes`` table (``peer_asn, prefix, kind, as_path, origin_asn, timestamp``).
    registry : analysis.registry.Registry
        The flagged families and their ASNs.
    snapshot : analysis.datasets.Snapshot, optional
        Where the prefixes are looked up (``ip2country``, else ``rir-delegated``).
    top : int
        Origin ASes listed per family (most announcements first).

    Returns
    -------
    dict
        ``routes`` (rows), ``announcements`` (distinct (peer, prefix, path) announced or in
        a RIB), ``peers``, ``first`` / ``last`` (record times), ``location_source`` and
        ``families``: per family id ``name``, ``announcements``, ``originated`` (the family
        is the origin AS), ``through_asns`` (its ASes on the paths, with counts),
        ``prefixes``, ``origin_asns`` (count), ``top_origins`` (``[asn, announcements]``),
        ``peers``, ``prefixes_by_country`` (``US``, ``other``, ``unknown``) and an
        ``example`` (source file and record of one announcement).

    Examples
    --------
    >>> from analysis.registry import load_registry
    >>> r = pa.table({"peer_asn": [64500, 64500, 64501], "prefix": ["192.0.2.0/24"] * 3,
    ...               "kind": ["announce"] * 3, "as_path": [[64500, 4134, 64510]] * 2 + [[64501, 64510]],
    ...               "origin_asn": [64510] * 3, "timestamp": [0, 1, 2], "source": ["f"] * 3, "record": [1, 2, 3]})
    >>> s = bgp_summary(r, load_registry())
    >>> s["announcements"], s["families"]["china-telecom"]["announcements"]
    (2, 1)
    """
    fam_rows = [(e.asn, e.family) for e in registry.asns]
    fam = pa.table({"asn": pa.array([a for a, _ in fam_rows], pa.int64()),
                    "family": pa.array([f for _, f in fam_rows], pa.string())})
    con = connect()
    try:
        con.register("r", routes.select(["peer_asn", "prefix", "kind", "as_path", "origin_asn", "timestamp",
                                         "source", "record"]))
        con.register("fam", fam)
        con.execute("""CREATE TEMP TABLE a AS
            SELECT peer_asn, prefix, as_path, min(origin_asn) AS origin_asn,
                   min(source) AS source, min(record) AS record
            FROM r WHERE kind IN ('announce', 'rib') GROUP BY peer_asn, prefix, as_path""")
        con.execute("""CREATE TEMP TABLE x AS
            SELECT DISTINCT a.*, fam.family, fam.asn AS through
            FROM (SELECT *, unnest(as_path) AS hop_asn FROM a) AS a JOIN fam ON fam.asn = a.hop_asn""")
        total = con.sql("""SELECT count(*), (SELECT count(DISTINCT peer_asn) FROM r),
                                  (SELECT min(timestamp) FROM r), (SELECT max(timestamp) FROM r)
                           FROM a""").fetchall()[0]
        per = con.sql("""
            SELECT family, count(DISTINCT (peer_asn, prefix, as_path)) AS announcements,
                   count(DISTINCT (peer_asn, prefix, as_path)) FILTER (WHERE origin_asn IN
                        (SELECT asn FROM fam f2 WHERE f2.family = x.family)) AS originated,
                   count(DISTINCT prefix) AS prefixes, count(DISTINCT origin_asn) AS origin_asns,
                   count(DISTINCT peer_asn) AS peers, min(source) AS source, min(record) AS record
            FROM x GROUP BY family ORDER BY family""").to_arrow_table().to_pylist()
        through = con.sql("""SELECT family, through, count(DISTINCT (peer_asn, prefix, as_path)) AS n
                             FROM x GROUP BY ALL ORDER BY family, n DESC, through""").fetchall()
        origins = con.sql("""SELECT family, origin_asn, count(DISTINCT (peer_asn, prefix, as_path)) AS n
                             FROM x WHERE origin_asn IS NOT NULL GROUP BY ALL
                             ORDER BY family, n DESC, origin_asn""").fetchall()
        prefixes = con.sql("SELECT DISTINCT family, prefix FROM x ORDER BY ALL").fetchall()
    finally:
        con.close()
    where, source = _prefix_countries(sorted({p for _, p in prefixes}), snapshot)
    out: dict[str, Any] = {
        "routes": routes.num_rows, "announcements": int(total[0]), "peers": int(total[1]),
        "first": None if total[2] is None else str(total[2]), "last": None if total[3] is None else str(total[3]),
        "location_source": source, "families": {},
    }
    for fid, name in registry.families.items():
        row = next((p for p in per if p["family"] == fid), None)
        by_country = {"US": 0, "other": 0, "unknown": 0}
        for f, p in prefixes:
            if f == fid:
                cc = where.get(p)
                by_country["unknown" if cc is None else "US" if cc == "US" else "other"] += 1
        out["families"][fid] = {
            "name": name,
            "announcements": int(row["announcements"]) if row else 0,
            "originated": int(row["originated"]) if row else 0,
            "through_asns": {str(a): int(n) for f, a, n in through if f == fid},
            "prefixes": int(row["prefixes"]) if row else 0,
            "origin_asns": int(row["origin_asns"]) if row else 0,
            "top_origins": [[int(a), int(n)] for f, a, n in origins if f == fid][:top],
            "peers": int(row["peers"]) if row else 0,
            "prefixes_by_country": by_country,
            "example": {"source": row["source"], "record": int(row["record"])} if row else None,
        }
    return out


def _prefix_countries(prefixes: list[str], snapshot: Any) -> tuple[dict[str, str | None], str]:
    """Country of each prefix's first address, and which source said so."""
    if snapshot is None or not prefixes:
        return {}, "none"
    from analysis.destinations import lookup_ip2country, registry_country

    first = pa.array([p.split("/", 1)[0] for p in prefixes], pa.string())
    if snapshot.has("ip2country"):
        cc = lookup_ip2country(snapshot, first).to_pylist()
        return dict(zip(prefixes, cc, strict=True)), "ip2country"
    if snapshot.has("rir-delegated"):
        return dict(zip(prefixes, registry_country(snapshot, first), strict=True)), "rir-delegated"
    return {}, "none (the snapshot has neither ip2country nor rir-delegated)"


def valley_signals(routes: pa.Table, relationships: pa.Table, registry: Any) -> pa.Table:
    """Announcements whose AS path has a flagged AS in a valley (a route-leak signal).

    Along an AS path as announced (collector peer first, origin last) the route travelled
    from the origin toward the peer: the AS at position i learned it from the AS at i+1
    and exported it to the AS at i-1. A flagged AS that learned it from its provider or
    peer and exported it to its provider or peer violates the valley-free rule. Prepending
    is collapsed first; a pair the relationships do not know makes no signal (unknown is
    not a violation), and neither does the collector peer itself (its export is to the
    collector, not to a provider).

    Parameters
    ----------
    routes : pyarrow.Table
        A ``routes`` table (``timestamp, peer_asn, prefix, kind, as_path, source, record``).
    relationships : pyarrow.Table
        CAIDA AS relationships (the ``as-rel`` kind's ``links``: ``provider, customer, rel``;
        ``rel`` -1 provider-to-customer, 0 peers).
    registry : analysis.registry.Registry
        The flagged families.

    Returns
    -------
    pyarrow.Table
        One row per distinct (peer, prefix, AS path) with a valley: ``family``, ``asn``
        (the flagged AS), ``learned_from`` and ``learned_rel`` ("provider" or "peer" of
        it), ``exported_to`` and ``exported_rel``, ``peer_asn``, ``prefix``, ``as_path``,
        ``first_seen``, ``last_seen``, ``messages`` and the first message's ``source`` and
        ``record`` (the evidence).

    Examples
    --------
    >>> from analysis.registry import load_registry
    >>> rel = pa.table({"provider": [3356, 3356, 174], "customer": [4134, 64500, 4134], "rel": [-1, -1, 0]})
    >>> r = pa.table({"timestamp": [0, 5], "peer_asn": [64500, 64500], "prefix": ["192.0.2.0/24"] * 2,
    ...               "kind": ["announce"] * 2, "as_path": [[64500, 3356, 4134, 4134, 174, 64510]] * 2,
    ...               "source": ["f"] * 2, "record": [1, 2]})
    >>> v = valley_signals(r, rel, load_registry()).to_pylist()[0]
    >>> (v["asn"], v["learned_from"], v["learned_rel"], v["exported_to"], v["exported_rel"], v["messages"])
    (4134, 174, 'peer', 3356, 'provider', 2)
    """
    flagged = {e.asn: e.family for e in registry.asns}
    rel: dict[tuple[int, int], str] = {}  # (x, y) -> what y is to x
    prov, cust = relationships.column("provider").to_pylist(), relationships.column("customer").to_pylist()
    kinds = relationships.column("rel").to_pylist() if "rel" in relationships.column_names else [-1] * len(prov)
    for p, c, k in zip(prov, cust, kinds, strict=True):
        if k == 0:
            rel[(p, c)] = rel[(c, p)] = "peer"
        else:
            rel[(c, p)], rel[(p, c)] = "provider", "customer"
    con = connect()
    try:
        con.register("r", routes.select(["timestamp", "peer_asn", "prefix", "kind", "as_path", "source", "record"]))
        fam_list = list(flagged)
        cand = con.sql(f"""
            SELECT peer_asn, prefix, as_path, min(timestamp) AS first_seen, max(timestamp) AS last_seen,
                   count(*) AS messages, arg_min(source, (timestamp, source, record)) AS source,
                   arg_min(record, (timestamp, source, record)) AS record
            FROM r WHERE kind IN ('announce', 'rib') AND list_has_any(as_path, {fam_list or [-1]})
            GROUP BY ALL ORDER BY ALL""").to_arrow_table().to_pylist()
    finally:
        con.close()
    rows: list[dict[str, Any]] = []
    for c in cand:
        path = [a for i, a in enumerate(c["as_path"]) if i == 0 or a != c["as_path"][i - 1]]
        for i in range(1, len(path) - 1):
            f = path[i]
            if f not in flagged:
                continue
            learned, exported = rel.get((f, path[i + 1])), rel.get((f, path[i - 1]))
            if learned in ("provider", "peer") and exported in ("provider", "peer"):
                rows.append({"family": flagged[f], "asn": f, "learned_from": path[i + 1], "learned_rel": learned,
                             "exported_to": path[i - 1], "exported_rel": exported, **c})
    schema = pa.schema([("family", pa.string()), ("asn", pa.int64()), ("learned_from", pa.int64()),
                        ("learned_rel", pa.string()), ("exported_to", pa.int64()), ("exported_rel", pa.string()),
                        ("peer_asn", pa.int64()), ("prefix", pa.string()), ("as_path", pa.list_(pa.int64())),
                        ("first_seen", routes.schema.field("timestamp").type), ("last_seen",
                         routes.schema.field("timestamp").type), ("messages", pa.int64()),
                        ("source", pa.string()), ("record", pa.int64())])
    return pa.Table.from_pylist(rows, schema=schema)


def _covering(addr: str | None, nets: dict[tuple[int, int, int], str]) -> Iterator[str]:
    """The prefixes of ``nets`` (key -> prefix) covering address ``addr``, most specific first.

    >>> nets = {_net_key(p): p for p in ["192.0.2.0/24", "192.0.0.0/16", "10.0.0.0/8"]}
    >>> list(_covering("192.0.2.7", nets)), list(_covering("bad", nets)), list(_covering(None, nets))
    (['192.0.2.0/24', '192.0.0.0/16'], [], [])
    """
    try:
        ip = ipaddress.ip_address(addr or "")
    except ValueError:
        return
    for k in _supernets((ip.version, int(ip), ip.max_prefixlen)):
        if k in nets:
            yield nets[k]


def covering_prefixes(addrs: Any, prefixes: Any) -> dict[str, str | None]:
    """Each address's most specific covering prefix among ``prefixes`` (None: none covers it).

    >>> covering_prefixes(["192.0.2.7", "198.51.100.1", "x"], ["192.0.2.0/24", "192.0.0.0/16"])
    {'192.0.2.7': '192.0.2.0/24', '198.51.100.1': None, 'x': None}
    """
    nets = {_net_key(p): p for p in prefixes}
    return {addr: next(_covering(addr, nets), None) for addr in addrs if addr}


def control_plane_exposure(paths: pa.Table, routes: pa.Table, registry: Any, *, n_boot: int = 1000,
                           seed: int = 0, confidence: float = 0.95) -> dict[str, Any]:
    """Per flagged family: the share of BGP paths toward the traceroutes' destinations that traverse it.

    The destinations are those of ``paths`` (pass the traceroutes in scope); each is
    covered by its most specific announced prefix. Every collector peer's distinct AS
    paths toward those prefixes (announced or in a RIB) are its view; a family is on a path
    when one of its ASes is between the peer and the origin (neither endpoint counts, as in
    the traceroutes' path exposure). A peer's share is the fraction of its paths that
    traverse the family; the estimate is the mean over peers (every peer weighs the same,
    however many paths it sent), with a percentile bootstrap over peers
    (:func:`analysis.metrics.cluster_bootstrap`, each peer its own cluster; Wilson over the
    peers when they all agree).

    Returns
    -------
    dict
        ``destinations`` / ``covered`` (with an announced covering prefix), ``prefixes``,
        ``peers``, ``paths`` and ``families``: per family id (and ``any``) ``estimate``,
        ``ci_low``, ``ci_high``, ``peers_traversing``; ``method``.

    Examples
    --------
    >>> from analysis.registry import load_registry
    >>> paths = pa.table({"dst_addr": ["192.0.2.7"]})
    >>> routes = pa.table({"peer_asn": [64500, 64500, 64501], "prefix": ["192.0.2.0/24"] * 3,
    ...                    "kind": ["announce", "announce", "rib"],
    ...                    "as_path": [[64500, 4134, 64510], [64500, 3356, 64510], [64501, 64510]]})
    >>> c = control_plane_exposure(paths, routes, load_registry(), n_boot=200)
    >>> c["peers"], c["paths"], c["families"]["china-telecom"]["estimate"]  # (1/2 + 0/1) / 2
    (2, 3, 0.25)
    """
    import numpy as np

    from analysis.metrics import ANY_FAMILY, cluster_bootstrap

    fam_of = {e.asn: e.family for e in registry.asns}
    families = [*registry.families, ANY_FAMILY]
    sel = routes.filter(pc.is_in(routes.column("kind"), pa.array(["announce", "rib"])))
    dsts = {d for d in paths.column("dst_addr").to_pylist() if d}
    cover = covering_prefixes(dsts, set(sel.column("prefix").to_pylist()))
    wanted = {p for p in cover.values() if p}
    per_peer: dict[int, set[tuple[str, tuple[int, ...]]]] = {}
    for peer, prefix, path in zip(sel.column("peer_asn").to_pylist(), sel.column("prefix").to_pylist(),
                                  sel.column("as_path").to_pylist(), strict=True):
        if prefix in wanted and path:
            per_peer.setdefault(peer, set()).add((prefix, tuple(path)))
    peers = sorted(per_peer)
    share = np.zeros((len(peers), len(families)))
    for i, peer in enumerate(peers):
        hits = np.zeros(len(families))
        for _, path in per_peer[peer]:
            on = {fam_of[a] for a in path[1:-1] if a in fam_of}
            hits += [f in on or (f == ANY_FAMILY and bool(on)) for f in families]
        share[i] = hits / len(per_peer[peer])
    out: dict[str, Any] = {
        "destinations": len(dsts), "covered": sum(1 for p in cover.values() if p), "prefixes": len(wanted),
        "peers": len(peers), "paths": sum(len(v) for v in per_peer.values()), "families": {},
        "method": f"mean over collector peers of the share of each peer's distinct AS paths toward the "
                  f"destinations' covering prefixes that traverse the family (peer and origin excluded); "
                  f"percentile bootstrap over peers (Wilson over peers when they all agree), "
                  f"{confidence:.0%}, B={n_boot}, seed={seed}",
    }
    for j, f in enumerate(families):
        est, lo, hi = (cluster_bootstrap(share[:, j], np.arange(len(peers)), n_boot=n_boot, seed=seed,
                                         confidence=confidence) if peers else (None, None, None))
        out["families"][f] = {"estimate": est, "ci_low": lo, "ci_high": hi,
                              "peers_traversing": int((share[:, j] > 0).sum())}
    return out


def path_change_signals(routes: pa.Table, registry: Any) -> pa.Table:
    """Announcements that put a flagged family on a peer's path to a prefix it was not on before.

    Per (collector peer, prefix), in time order (then file and record order), each
    announcement is compared with the peer's previous path for the prefix (a RIB entry or
    an earlier announcement; a withdrawal forgets it, and the first path seen has nothing
    to compare with). A family that is on the new path but was not on the previous one is a
    signal: ``new-origin`` when one of its ASes is now the origin, ``new-transit``
    otherwise -- a flagged AS originating, or newly on the path to, a prefix (a hijack or a
    leak through it).

    Returns
    -------
    pyarrow.Table
        Per (family, signal, flagged AS, prefix): ``peers``, ``first_seen``, ``last_seen``,
        ``messages``, the first message's ``previous_path``, ``as_path``, ``source`` and
        ``record`` (the evidence).

    Examples
    --------
    >>> from analysis.registry import load_registry
    >>> r = pa.table({"timestamp": [0, 5, 9], "peer_asn": [64500] * 3, "prefix": ["192.0.2.0/24"] * 3,
    ...               "kind": ["rib", "announce", "announce"],
    ...               "as_path": [[64500, 3356, 64510], [64500, 4134, 64510], [64500, 4134, 64510]],
    ...               "source": ["f"] * 3, "record": [1, 2, 3]})
    >>> [(x["signal"], x["asn"], x["first_seen"], x["previous_path"]) for x in
    ...  path_change_signals(r, load_registry()).to_pylist()]
    [('new-transit', 4134, 5, [64500, 3356, 64510])]
    """
    fam_of = {e.asn: e.family for e in registry.asns}
    t = routes.select(["timestamp", "peer_asn", "prefix", "kind", "as_path", "source", "record"])
    t = t.sort_by([("peer_asn", "ascending"), ("prefix", "ascending"), ("timestamp", "ascending"),
                   ("source", "ascending"), ("record", "ascending")])
    last: dict[tuple[int, str], list[int] | None] = {}
    hits: dict[tuple[str, str, int, str], dict[str, Any]] = {}
    for r in t.to_pylist():
        key = (r["peer_asn"], r["prefix"])
        if r["kind"] not in ("announce", "rib"):
            last[key] = None
            continue
        path, prev = r["as_path"] or [], last.get(key)
        last[key] = path
        if prev is None or r["kind"] != "announce":
            continue
        before = {fam_of[a] for a in prev if a in fam_of}
        for a in dict.fromkeys(x for x in path if x in fam_of):
            if fam_of[a] in before:
                continue
            kind = "new-origin" if path and path[-1] == a else "new-transit"
            h = hits.setdefault((fam_of[a], kind, a, r["prefix"]), {
                "family": fam_of[a], "signal": kind, "asn": a, "prefix": r["prefix"], "peers": set(),
                "first_seen": r["timestamp"], "last_seen": r["timestamp"], "messages": 0,
                "previous_path": prev, "as_path": path, "source": r["source"], "record": r["record"]})
            h["peers"].add(r["peer_asn"])
            h["messages"] += 1
            if r["timestamp"] < h["first_seen"]:
                h.update(first_seen=r["timestamp"], previous_path=prev, as_path=path, source=r["source"],
                         record=r["record"])
            h["last_seen"] = max(h["last_seen"], r["timestamp"])
    ts = routes.schema.field("timestamp").type
    schema = pa.schema([("family", pa.string()), ("signal", pa.string()), ("asn", pa.int64()),
                        ("prefix", pa.string()), ("peers", pa.int64()), ("first_seen", ts), ("last_seen", ts),
                        ("messages", pa.int64()), ("previous_path", pa.list_(pa.int64())),
                        ("as_path", pa.list_(pa.int64())), ("source", pa.string()), ("record", pa.int64())])
    return pa.Table.from_pylist([{**h, "peers": len(h["peers"])} for _, h in sorted(hits.items())], schema=schema)


def line_up(signals: pa.Table, events: pa.Table, *, margin_s: int = 3600) -> pa.Table:
    """Add ``change_starts`` to each signal: the data-plane change events it lines up with.

    A traceroute change event (:func:`analysis.metrics.change_events`: a probe-destination
    pair that starts transiting a family, between its last unchanged traceroute at
    ``previous_timestamp`` and its first changed one at ``timestamp``) lines up with a
    signal of the same family when the signal's ``first_seen`` falls in that interval,
    widened by ``margin_s`` before it (BGP propagation and the collectors' delay). A signal
    with none is seen in BGP only; events with no signal are in :func:`bgp_agreement`'s
    ``traceroute-only``.

    >>> import datetime as dt
    >>> t = lambda h: dt.datetime(2026, 3, 3, h, tzinfo=dt.timezone.utc)
    >>> sig = pa.table({"family": ["china-telecom", "china-mobile"], "first_seen": [t(12), t(12)]})
    >>> ev = pa.table({"family": ["china-telecom"] * 3, "event": ["start", "start", "stop"],
    ...                "previous_timestamp": [t(6), t(14), t(6)], "timestamp": [t(12), t(18), t(12)]})
    >>> line_up(sig, ev).column("change_starts").to_pylist()
    [1, 0]
    """
    from probes.store import epoch_seconds

    starts = events.filter(pc.equal(events.column("event"), "start"))
    by_family: dict[str, list[tuple[int, int]]] = {}
    for f, a, b in zip(starts.column("family").to_pylist(), epoch_seconds(starts.column("previous_timestamp")),
                       epoch_seconds(starts.column("timestamp")), strict=True):
        by_family.setdefault(f, []).append((int(a) - margin_s, int(b)))
    seen: Any = epoch_seconds(signals.column("first_seen")) if signals.num_rows else []
    n = [sum(1 for a, b in by_family.get(f, ()) if a <= int(t) <= b)
         for f, t in zip(signals.column("family").to_pylist(), seen, strict=True)]
    return signals.append_column("change_starts", pa.array(n, pa.int64()))


def bgp_agreement(paths: pa.Table, routes: pa.Table, registry: Any,
                  relationships: pa.Table | None = None) -> tuple[pa.Table, dict[str, Any]]:
    """Per traceroute and flagged family: does BGP show the transit the traceroute shows?

    The BGP view of a traceroute is every AS path announced (or in a RIB) for the most
    specific announced prefix covering its destination, by a collector peer that is the
    probe's AS (its own path) or, with ``relationships``, a neighbour of it (the path the
    probe's AS would get through that neighbour). A family is on a BGP path when one of its
    ASes is, the origin and the probe's own AS excepted (the traceroute counts transit, not
    its endpoints); a neighbour on the path is transit.
    Verdicts (:data:`AGREEMENT`): ``agree`` (both show it or neither does),
    ``traceroute-only`` (the traceroute transits the family, no BGP path of the view does),
    ``bgp-only`` (a BGP path of the view does, the traceroute does not), ``no-bgp-view``
    (no announced prefix covers the destination, or no peer is the probe's AS or a neighbour).

    Parameters
    ----------
    paths : pyarrow.Table
        ``msm_id, prb_id, timestamp, probe_asn, dst_addr, flagged_families`` (the paths
        table of ``pathexp analyze``, in scope).
    routes : pyarrow.Table
        A ``routes`` table (``peer_asn, prefix, kind, as_path``).
    registry : analysis.registry.Registry
    relationships : pyarrow.Table, optional
        ``provider, customer`` (CAIDA as-rel): neighbours of the probe's AS count as views.

    Returns
    -------
    (pyarrow.Table, dict)
        Per (traceroute, family): the key columns, ``family``, ``verdict``, ``bgp_prefix``,
        ``views`` (BGP paths in the view); and per family the count of each verdict.

    Examples
    --------
    >>> from analysis.registry import load_registry
    >>> paths = pa.table({"msm_id": [1, 1], "prb_id": [1, 2], "timestamp": [0, 0], "probe_asn": [64500, 64501],
    ...                   "dst_addr": ["192.0.2.7", "198.51.100.1"], "flagged_families": [["china-telecom"], []]})
    >>> routes = pa.table({"peer_asn": [64500], "prefix": ["192.0.2.0/24"], "kind": ["announce"],
    ...                    "as_path": [[64500, 3356, 64510]]})
    >>> t, s = bgp_agreement(paths, routes, load_registry())
    >>> s["china-telecom"]
    {'agree': 0, 'traceroute-only': 1, 'bgp-only': 0, 'no-bgp-view': 1}
    """
    fam_of = {e.asn: e.family for e in registry.asns}
    families = list(registry.families)
    neighbours: dict[int, set[int]] = {}
    if relationships is not None:
        for p, c in zip(relationships.column("provider").to_pylist(), relationships.column("customer").to_pylist(),
                        strict=True):
            neighbours.setdefault(p, set()).add(c)
            neighbours.setdefault(c, set()).add(p)
    # (prefix -> {peer -> [(families on the path after the peer, families with it)]}), announced or in a RIB;
    # the origin is never transit, and the peer itself is not when it is the probe's own AS
    by_prefix: dict[str, dict[int, list[tuple[frozenset[str], frozenset[str]]]]] = {}
    sel = routes.filter(pc.is_in(routes.column("kind"), pa.array(["announce", "rib"])))
    for peer, prefix, path in zip(sel.column("peer_asn").to_pylist(), sel.column("prefix").to_pylist(),
                                  sel.column("as_path").to_pylist(), strict=True):
        after = frozenset(fam_of[a] for a in path[1:-1] if a in fam_of)
        with_peer = after | ({fam_of[path[0]]} if len(path) > 1 and path[0] in fam_of else set())
        by_prefix.setdefault(prefix, {}).setdefault(peer, []).append((after, frozenset(with_peer)))
    cover = covering_prefixes(set(paths.column("dst_addr").to_pylist()), by_prefix)
    rows: list[dict[str, Any]] = []
    counts = {f: dict.fromkeys(AGREEMENT, 0) for f in families}
    cols = paths.select(["msm_id", "prb_id", "timestamp", "probe_asn", "dst_addr", "flagged_families"]).to_pylist()
    for r in cols:
        prefix = cover.get(r["dst_addr"])
        peers = by_prefix.get(prefix, {}) if prefix else {}
        asn = r["probe_asn"]
        view = [after if peer == asn else with_peer for peer, lists in peers.items()
                if asn is not None and (peer == asn or peer in neighbours.get(asn, ()))
                for after, with_peer in lists]
        seen = set(r["flagged_families"] or [])
        for f in families:
            if not view:
                verdict = "no-bgp-view"
            else:
                bgp = any(f in fams for fams in view)
                verdict = "agree" if bgp == (f in seen) else "traceroute-only" if f in seen else "bgp-only"
            counts[f][verdict] += 1
            rows.append({"msm_id": r["msm_id"], "prb_id": r["prb_id"], "timestamp": r["timestamp"], "family": f,
                         "verdict": verdict, "bgp_prefix": prefix if view else None, "views": len(view)})
    schema = pa.schema([("msm_id", paths.schema.field("msm_id").type), ("prb_id", paths.schema.field("prb_id").type),
                        ("timestamp", paths.schema.field("timestamp").type), ("family", pa.string()),
                        ("verdict", pa.string()), ("bgp_prefix", pa.string()), ("views", pa.int64())])
    return pa.Table.from_pylist(rows, schema=schema), counts


def rov_status(prefixes: list[str | None], origins: list[int | None], vrps: pa.Table) -> list[str]:
    """RFC 6811 route origin validation of each (prefix, origin AS) against ``vrps``.

    ``valid``: a VRP covers the prefix with this origin and a max length at least the
    prefix's; ``invalid``: VRPs cover it but none matches (wrong origin or too specific);
    ``not-found``: no VRP covers it; ``unknown``: prefix or origin missing.

    >>> v = pa.table({"asn": [64500, 64501], "prefix": ["192.0.2.0/24", "198.51.100.0/22"],
    ...               "max_length": [24, 23], "ta": ["t", "t"]})
    >>> rov_status(["192.0.2.0/24", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", None],
    ...            [64500, 64999, 64501, 64500, 64500], v)
    ['valid', 'invalid', 'invalid', 'not-found', 'unknown']
    """
    by_net: dict[tuple[int, int, int], list[tuple[int, int]]] = {}
    for a, p, m in zip(vrps.column("asn").to_pylist(), vrps.column("prefix").to_pylist(),
                       vrps.column("max_length").to_pylist(), strict=True):
        by_net.setdefault(_net_key(p), []).append((a, m))
    out = []
    for prefix, origin in zip(prefixes, origins, strict=True):
        if not prefix or origin is None:
            out.append("unknown")
            continue
        key = _net_key(prefix)
        covering = [vm for k in _supernets(key) for vm in by_net.get(k, ())]
        if not covering:
            out.append("not-found")
        else:
            ok = any(a == origin and m >= key[2] for a, m in covering)
            out.append("valid" if ok else "invalid")
    return out


def more_specific_signals(routes: pa.Table, registry: Any) -> pa.Table:
    """Announced more-specifics that pull traffic through a flagged AS (a leak or hijack signal).

    A prefix P is signalled when it is announced (an update, not a RIB entry) with a flagged
    AS F on its path (the origin included), P is not in any RIB of the data, a less
    specific prefix Q covering P is (announced or in a RIB), and no path toward Q carries
    F's family (the same peer's path, when it has one; else any peer's): longest-prefix
    match now sends P's traffic through the family, which the covering route did not (a
    carrier splitting its own aggregate is not a signal). The shape of a more-specific
    route leak (China Telecom 2010, 2019) and of a sub-prefix hijack.

    Returns
    -------
    pyarrow.Table
        Per (family, flagged AS, P): ``covering`` (the most specific such Q), ``peers``
        (peers announcing P with F), ``first_seen``, ``last_seen``, ``messages`` and the
        first message's ``source`` / ``record``.

    Examples
    --------
    >>> from analysis.registry import load_registry
    >>> r = pa.table({"timestamp": [0, 0, 9, 9], "peer_asn": [64500, 64501, 64500, 64501],
    ...               "prefix": ["192.0.2.0/23", "192.0.2.0/23", "192.0.2.0/24", "192.0.2.0/24"],
    ...               "kind": ["rib", "rib", "announce", "announce"],
    ...               "as_path": [[64500, 64510], [64501, 64510], [64500, 4134, 64510], [64501, 4134, 64510]],
    ...               "source": ["f"] * 4, "record": [1, 1, 2, 3]})
    >>> [(x["asn"], x["prefix"], x["covering"], x["peers"]) for x in more_specific_signals(r, load_registry()).to_pylist()]
    [(4134, '192.0.2.0/24', '192.0.2.0/23', 2)]
    """
    fam_of = {e.asn: e.family for e in registry.asns}
    rows = routes.select(["timestamp", "peer_asn", "prefix", "kind", "as_path", "source", "record"]).to_pylist()
    in_rib = {r["prefix"] for r in rows if r["kind"] == "rib"}
    # flagged families on the paths toward each prefix, per peer (None: any peer)
    flagged_on: dict[tuple[int | None, str], set[str]] = {}
    seen: set[str] = set()
    for r in rows:
        if r["kind"] in ("announce", "rib"):
            seen.add(r["prefix"])
            fl = {fam_of[a] for a in r["as_path"] if a in fam_of}
            flagged_on.setdefault((r["peer_asn"], r["prefix"]), set()).update(fl)
            flagged_on.setdefault((None, r["prefix"]), set()).update(fl)
    nets = {_net_key(p): p for p in seen}

    def covering(prefix: str) -> str | None:  # the most specific strictly less specific prefix seen
        return next((nets[k] for k in _supernets(_net_key(prefix))[1:] if k in nets), None)

    hits: dict[tuple[int, str], dict[str, Any]] = {}
    cover: dict[str, str | None] = {}
    for r in rows:
        if r["kind"] != "announce" or r["prefix"] in in_rib:
            continue
        for f in {a for a in r["as_path"] if a in fam_of}:
            p = r["prefix"]
            if p not in cover:
                cover[p] = covering(p)
            q = cover[p]
            before = flagged_on.get((r["peer_asn"], q), flagged_on.get((None, q), set())) if q else set()
            if q is None or fam_of[f] in before:
                continue
            h = hits.setdefault((f, p), {"family": fam_of[f], "asn": f, "prefix": p, "covering": q, "peers": set(),
                                          "first_seen": r["timestamp"], "last_seen": r["timestamp"], "messages": 0,
                                          "source": r["source"], "record": r["record"]})
            h["peers"].add(r["peer_asn"])
            h["messages"] += 1
            if r["timestamp"] < h["first_seen"]:
                h["first_seen"], h["source"], h["record"] = r["timestamp"], r["source"], r["record"]
            h["last_seen"] = max(h["last_seen"], r["timestamp"])
    out = [{**h, "peers": len(h["peers"])} for _, h in sorted(hits.items())]
    ts = routes.schema.field("timestamp").type
    schema = pa.schema([("family", pa.string()), ("asn", pa.int64()), ("prefix", pa.string()),
                        ("covering", pa.string()), ("peers", pa.int64()), ("first_seen", ts), ("last_seen", ts),
                        ("messages", pa.int64()), ("source", pa.string()), ("record", pa.int64())])
    return pa.Table.from_pylist(out, schema=schema)


def destination_rov(snapshot: Any, addrs: pa.Array) -> pa.Table:
    """RPKI state of each destination's route: its ``pfx2as`` prefix and origin against the ``vrp`` kind.

    Returns ``dst_addr, rov_prefix, rov_origin_asn, rov`` (:data:`ROV_STATES`); raises
    :class:`~analysis.errors.MissingReferenceData` when the snapshot lacks ``vrp`` or ``pfx2as``.
    """
    import numpy as np

    from analysis import _lpm

    for kind in ("vrp", "pfx2as"):
        if not snapshot.has(kind):
            raise MissingReferenceData(f"snapshot {snapshot.id} has no {kind}; import it with "
                                       f"`pathexp datasets import --kind {kind} FILE...`")
    addrs = addrs.cast(pa.string())
    row = _lpm.lookup_addresses(snapshot, "pfx2as", addrs)
    found = pa.array(row >= 0)
    p = snapshot.table("pfx2as", "prefixes").take(pa.array(np.maximum(row, 0)))
    prefixes = pc.if_else(found, p.column("prefix"), None).to_pylist()
    origins = pc.if_else(found, p.column("asn"), None).to_pylist()
    status = rov_status(prefixes, origins, snapshot.table("vrp", "vrps"))
    return pa.table({"dst_addr": addrs, "rov_prefix": pa.array(prefixes, pa.string()),
                     "rov_origin_asn": pa.array(origins, pa.int64()), "rov": pa.array(status, pa.string())})


def campaign_bgp_inputs(snapshot: Any, registry: Any, destinations: pa.Table,
                        period: tuple[int, int] | None = None) -> dict[str, Any] | None:
    """What :func:`campaign_bgp` needs from a snapshot, read before the snapshot is let go.

    None when the snapshot holds no BGP data (``mrt`` / ``bgpdump``) and no VRPs.
    ``destinations``: the campaign's located destinations (``dst_addr, dst_country``).
    Signals (valleys with ``as-rel``, more-specifics, path changes) get the ``country`` of
    their prefix: the located country of the campaign destinations inside it when they
    agree, else the prefix's own (``ip2country``, else ``rir-delegated``). ``period``
    (epoch seconds of the campaign's first and last traceroute) limits the signals to those
    :func:`campaign_bgp` can count: they are found in the routes up to its end (the whole
    history before it is kept, so a signal's first sighting is its true one), and none when
    the BGP data end more than a day before it starts.
    """
    dst_addrs = destinations.column("dst_addr").combine_chunks()
    has_bgp = any(snapshot.has(k) for k in BGP_KINDS)
    has_rov = snapshot.has("vrp") and snapshot.has("pfx2as")
    if not (has_bgp or has_rov):
        return None
    out: dict[str, Any] = {"snapshot": snapshot.id, "kind": None, "routes": None, "relationships": None,
                           "signals": None, "rov": destination_rov(snapshot, dst_addrs) if has_rov else None,
                           "rov_date": snapshot.manifest("vrp").get("date") if has_rov else None}
    if has_bgp:
        routes, kind = bgp_routes(snapshot)
        rel = snapshot.table("as-rel", "links") if snapshot.has("as-rel") else None
        history = _signal_history(routes, period)
        parts = [("path-change", path_change_signals(history, registry)),
                 ("more-specific", more_specific_signals(history, registry))]
        if rel is not None:
            parts.append(("valley", valley_signals(history, rel, registry)))
        signals = _signal_table(parts)
        prefixes = sorted(set(signals.column("prefix").to_pylist()))
        where, _ = _prefix_countries(prefixes, snapshot)
        where.update(_destination_countries(prefixes, destinations))
        signals = signals.append_column("country", pa.array([where.get(p) for p in
                                                             signals.column("prefix").to_pylist()], pa.string()))
        out.update(kind=kind, routes=routes, relationships=rel, signals=signals)
    return out


def _signal_history(routes: pa.Table, period: tuple[int, int] | None) -> pa.Table:
    """The routes signals within ``period`` can come from: those up to its end, none when
    they all end more than a day before its start; every route without a period."""
    import numpy as np

    from probes.store import epoch_seconds

    if period is None or not routes.num_rows:
        return routes
    ts = epoch_seconds(routes.column("timestamp"))
    if int(ts.max()) < period[0] - _DAY:
        return routes.slice(0, 0)
    return routes.filter(pa.array(np.asarray(ts) <= period[1]))


def _destination_countries(prefixes: list[str], destinations: pa.Table) -> dict[str, str]:
    """Prefix -> the located country of the destinations it covers, where they all agree.

    >>> d = pa.table({"dst_addr": ["192.0.2.7", "192.0.2.9", "198.51.100.1"], "dst_country": ["US", "US", "DE"]})
    >>> _destination_countries(["192.0.2.0/24", "198.51.0.0/16", "192.0.0.0/8", "203.0.113.0/24"], d)
    {'192.0.2.0/24': 'US', '192.0.0.0/8': 'US', '198.51.0.0/16': 'DE'}
    """
    nets = {_net_key(p): p for p in prefixes}
    seen: dict[str, set[str]] = {}
    for addr, cc in zip(destinations.column("dst_addr").to_pylist(), destinations.column("dst_country").to_pylist(),
                        strict=True):
        for prefix in _covering(addr, nets) if cc else ():
            seen.setdefault(prefix, set()).add(cc)
    return {p: next(iter(c)) for p, c in seen.items() if len(c) == 1}


def _signal_table(parts: list[tuple[str, pa.Table]]) -> pa.Table:
    """The signal tables, each named, in one: ``signal, family, asn, prefix, peers, first_seen,
    last_seen, messages, evidence`` (the first message's file and record; the AS paths when
    known). A table's own ``signal`` column (path changes) wins over its name."""
    rows: list[dict[str, Any]] = []
    for name, t in parts:
        for r in t.to_pylist():
            path = r.get("as_path")
            ev = f"{r['source']} record {r['record']}"
            if r.get("previous_path") is not None:
                ev += f"; path {' '.join(map(str, r['previous_path']))} -> {' '.join(map(str, path or []))}"
            elif path is not None:
                ev += f"; path {' '.join(map(str, path))}"
            if r.get("covering"):
                ev += f"; covering {r['covering']}"
            rows.append({"signal": r.get("signal", name), "family": r["family"], "asn": r["asn"],
                         "prefix": r["prefix"], "peers": r.get("peers", 1 if "peer_asn" in r else None),
                         "first_seen": r["first_seen"], "last_seen": r["last_seen"],
                         "messages": r["messages"], "evidence": ev})
    ts = parts[0][1].schema.field("first_seen").type
    schema = pa.schema([("signal", pa.string()), ("family", pa.string()), ("asn", pa.int64()),
                        ("prefix", pa.string()), ("peers", pa.int64()), ("first_seen", ts), ("last_seen", ts),
                        ("messages", pa.int64()), ("evidence", pa.string())])
    return pa.Table.from_pylist(rows, schema=schema)


def campaign_bgp(inputs: dict[str, Any], paths: pa.Table, events: pa.Table, registry: Any, *,
                 dst_country: str | None = "US", n_boot: int = 1000, seed: int = 0,
                 confidence: float = 0.95) -> tuple[dict[str, Any], dict[str, pa.Table]]:
    """The control plane beside a campaign's traceroutes: ``exposure.json``'s ``control_plane`` and its tables.

    ``paths`` are the traceroutes in scope, ``events`` the change events of the same run.
    Returns the summary (per family: control-plane exposure with its interval over peers,
    the per-traceroute agreement counts, the signals first seen within the campaign's
    period (from a day before its first traceroute) on prefixes in ``dst_country`` and how
    many line up with change events; RPKI states of the destinations, with the VRP data's
    date against the measurements (``rov_data``: ``date``, ``gap_days``, ``stale``); the BGP
    data's period beside the campaign's; exposure and agreement use the routes of the
    measurement period when the two overlap: RIB entries dumped up to its end and messages
    from a day before its start to its end, ``bgp_view``) and the tables ``bgp_agreement``
    and ``bgp_signals`` (every signal found in the routes up to the campaign's last
    traceroute, see :func:`campaign_bgp_inputs`; ``in_window`` marks those counted).
    """
    import datetime as dt

    import numpy as np

    from analysis.metrics import ANY_FAMILY
    from analysis.refdates import reference_dates
    from probes.store import epoch_seconds

    out: dict[str, Any] = {"snapshot": inputs["snapshot"], "kind": inputs["kind"]}
    tables: dict[str, pa.Table] = {}
    ts: Any = epoch_seconds(paths.column("timestamp")) if paths.num_rows else []
    period: list[int] | None = [int(min(ts)), int(max(ts))] if len(ts) else None
    if inputs["rov"] is not None:
        states = inputs["rov"].column("rov").to_pylist()
        out["rov"] = {s: states.count(s) for s in ROV_STATES}
        when = [dt.datetime.fromtimestamp(t, dt.timezone.utc) for t in period] if period else [None, None]
        out["rov_data"] = reference_dates({"vrp": {"date": inputs["rov_date"]}}, *when)["kinds"]["vrp"]
    routes = inputs["routes"]
    if routes is None:
        return out, tables
    rts: Any = epoch_seconds(routes.column("timestamp")) if routes.num_rows else []
    bgp_period = [int(min(rts)), int(max(rts))] if len(rts) else None
    out["campaign_period"], out["bgp_period"] = period, bgp_period
    out["periods_overlap"] = bool(period and bgp_period and bgp_period[0] <= period[1] and period[0] <= bgp_period[1])
    view = routes
    if out["periods_overlap"] and period is not None:
        # the routes of the measurement period: RIB entries dumped up to its end, messages
        # from a day before its start to its end
        kind = routes.column("kind")
        keep = (rts <= period[1]) & ((rts >= period[0] - _DAY)
                                    | np.asarray(pc.equal(kind, "rib").to_numpy(zero_copy_only=False), bool))
        view = routes.filter(pa.array(keep))
    out["bgp_view"] = (f"{view.num_rows:,} of {routes.num_rows:,} routes: RIB entries up to the last traceroute "
                       "and messages from a day before the first" if view is not routes else
                       "every route of the snapshot (its period does not overlap the measurements)")
    cp = control_plane_exposure(paths, view, registry, n_boot=n_boot, seed=seed, confidence=confidence)
    agreement, counts = bgp_agreement(paths, view, registry, inputs["relationships"])
    signals = line_up(inputs["signals"], events)
    first: Any = epoch_seconds(signals.column("first_seen")) if signals.num_rows else []
    lo, hi = (period[0] - _DAY, period[1]) if period else (1, 0)
    signals = signals.append_column("in_window", pa.array([lo <= int(t) <= hi for t in first], pa.bool_()))
    scoped = signals.filter(signals.column("in_window"))
    if dst_country is not None:
        scoped = scoped.filter(pc.fill_null(pc.equal(scoped.column("country"), dst_country), False))
    fams: dict[str, Any] = {}
    for f, c in cp["families"].items():
        mine = scoped if f == ANY_FAMILY else scoped.filter(pc.equal(scoped.column("family"), f))
        lined = int(pc.sum(pc.greater(mine.column("change_starts"), 0)).as_py() or 0)
        fams[f] = {"control_plane_exposure": c, "agreement": counts.get(f),
                   "signals": {s: int(pc.sum(pc.equal(mine.column("signal"), s)).as_py() or 0)
                               for s in ("valley", "more-specific", "new-origin", "new-transit")},
                   "signals_lined_up": lined}
    out.update({k: v for k, v in cp.items() if k != "families"})
    out["families"] = fams
    out["signals_country"] = dst_country
    out["relationships"] = inputs["relationships"] is not None
    tables["bgp_agreement"] = agreement
    tables["bgp_signals"] = signals
    return out, tables
