"""``pathexp bgp``: the control plane beside the traceroutes (BGP data of a snapshot)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register", "run_compare", "run_rov", "run_summary"]


def register(sub: argparse._SubParsersAction) -> None:
    from analysis.cli._options import add_cache_dir_arg

    p = sub.add_parser(
        "bgp", help="BGP announcements through the flagged carriers (imported MRT / bgpdump data)",
        description="Read the BGP data of a reference snapshot (`pathexp datasets import --kind mrt` "
                    "or --kind bgpdump) and relate it to the flagged carriers.")
    add_cache_dir_arg(p)
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    summ = s.add_parser(
        "summary", help="per flagged family: announcements whose AS path traverses it",
        description="Per flagged family: the distinct announcements (collector peer, prefix, AS path "
                    "as announced) whose path traverses one of its ASes, how many it originates, the "
                    "prefixes, origin ASes and peers concerned, and how many of those prefixes are in "
                    "the US (the snapshot's ip2country, else its RIR delegations); with CAIDA AS "
                    "relationships in the snapshot, the announcements in which a flagged AS sits in a "
                    "valley (learned from a provider or peer, passed to a provider or peer: the shape "
                    "of a route leak), with their evidence; and new more-specifics whose paths cross a "
                    "flagged AS that the covering prefix's paths do not.")
    _options(summ, holding="the BGP data", json="the summary as JSON", registry=True)
    summ.set_defaults(func=run_summary)
    from analysis.cli import add_campaign_args

    cmp_ = s.add_parser(
        "compare", help="per traceroute: does BGP show the flagged transit the traceroute shows?",
        description="Put each in-scope traceroute of an analysed campaign beside the BGP paths toward "
                    "its destination's prefix seen from the probe's AS or its neighbours (CAIDA as-rel in "
                    "the snapshot): per flagged family, agree / traceroute-only / bgp-only / no-bgp-view.")
    add_campaign_args(cmp_)
    _options(cmp_, holding="the BGP data", json="the counts as JSON", registry=True)
    cmp_.set_defaults(func=run_compare)
    rov = s.add_parser(
        "rov", help="RPKI route origin validation of the campaign's destinations",
        description="RFC 6811 route origin validation of every in-scope destination of an analysed "
                    "campaign: its prefix and origin AS from the snapshot's pfx2as, checked against the "
                    "snapshot's RPKI VRPs (`datasets import --kind vrp`): valid / invalid / not-found.")
    add_campaign_args(rov)
    _options(rov, holding="pfx2as and vrp", json="the table as JSON lines", registry=False)
    rov.set_defaults(func=run_rov)


def _options(parser: argparse.ArgumentParser, *, holding: str, json: str, registry: bool) -> None:
    """``--snapshot``, ``--json`` and (optionally) ``--registry`` of a ``bgp`` action."""
    parser.add_argument("--snapshot", default=None, help=f"snapshot id holding {holding} (default: the newest)")
    if registry:
        parser.add_argument("--registry", default=None,
                            help="flagged-carrier registry TOML (default: the shipped one)")
    parser.add_argument("--json", action="store_true", help=f"print {json}")


def run_summary(args: argparse.Namespace) -> int:
    import orjson

    from analysis.bgp import (
        bgp_routes,
        bgp_summary,
        more_specific_signals,
        path_change_signals,
        valley_signals,
    )
    from analysis.datasets import load_snapshot
    from analysis.registry import load_registry

    snap = load_snapshot(args.snapshot, cache_dir=args.cache_dir)
    routes, kind = bgp_routes(snap)
    registry = load_registry(args.registry)
    s = bgp_summary(routes, registry, snapshot=snap)
    s = {"snapshot": snap.id, "kind": kind, **s}
    _by_family(s["families"], more_specific_signals(routes, registry), "more_specifics", "more_specific_examples",
               weight="peers")
    _by_family(s["families"], path_change_signals(routes, registry), "path_changes", "path_change_examples",
               weight="peers")
    valleys = None
    if snap.has("as-rel"):
        valleys = valley_signals(routes, snap.table("as-rel", "links"), registry)
        _by_family(s["families"], valleys, "valleys", "valley_examples", weight="messages")
        s["valley_source"] = f"as-rel of snapshot {snap.id}"
    else:
        s["valley_source"] = "none (import CAIDA AS relationships with `datasets import --kind as-rel`)"
    if args.json:
        print(orjson.dumps(s, option=orjson.OPT_INDENT_2).decode())
        return 0
    from rich.table import Table

    from analysis.cli._console import make_console

    con = make_console()
    con.print(f"snapshot {snap.id} ({kind}): {s['routes']:,} routes, {s['announcements']:,} distinct "
              f"announcements from {s['peers']:,} peers, {s['first']} to {s['last']}")
    t = Table("family", "announcements", "originated", "prefixes", "in the US", "origin ASes", "peers",
              "through (announcements)")
    for fam in s["families"].values():
        by = fam["prefixes_by_country"]
        t.add_row(fam["name"], f"{fam['announcements']:,}", f"{fam['originated']:,}", f"{fam['prefixes']:,}",
                  f"{by['US']:,}" + (f" ({by['unknown']:,} unknown)" if by["unknown"] else ""),
                  f"{fam['origin_asns']:,}", f"{fam['peers']:,}",
                  ", ".join(f"AS{a} {n:,}" for a, n in list(fam["through_asns"].items())[:4]))
    con.print(t)
    con.print(f"prefix locations: {s['location_source']}; an announcement is (peer, prefix, AS path as announced)")
    con.print("new more-specifics through a flagged AS (not in a RIB; the covering prefix's paths do not cross "
              "it): " + ", ".join(f"{f['name']} {f['more_specifics']:,}" for f in s["families"].values()))
    m = Table("family", "AS", "prefix", "covering", "peers", "seen", "messages", "evidence")
    for fam in s["families"].values():
        for e in fam["more_specific_examples"]:
            m.add_row(fam["name"], str(e["asn"]), e["prefix"], e["covering"], f"{e['peers']:,}",
                      e["first_seen"][:16], f"{e['messages']:,}", f"{e['source']} #{e['record']}")
    if m.row_count:
        con.print(m)
    con.print("paths that newly cross a flagged family (new origin or new transit; the peer's previous path for "
              "the prefix did not): " + ", ".join(f"{f['name']} {f['path_changes']:,}" for f in s["families"].values()))
    c = Table("family", "signal", "AS", "prefix", "peers", "seen", "previous path", "new path", "evidence")
    for fam in s["families"].values():
        for e in fam["path_change_examples"]:
            c.add_row(fam["name"], e["signal"], str(e["asn"]), e["prefix"], f"{e['peers']:,}", e["first_seen"][:16],
                      " ".join(map(str, e["previous_path"])), " ".join(map(str, e["as_path"])),
                      f"{e['source']} #{e['record']}")
    if c.row_count:
        con.print(c)
    if valleys is None:
        con.print(f"route-leak signals: {s['valley_source']}")
        return 0
    con.print(f"route-leak signals (a flagged AS passing a route from a provider or peer to a provider or peer; "
              f"{s['valley_source']}): " + ", ".join(f"{f['name']} {f['valleys']:,}" for f in s["families"].values()))
    v = Table("family", "AS", "learned from", "exported to", "prefix", "peer", "seen", "messages", "evidence")
    for fam in s["families"].values():
        for e in fam["valley_examples"]:
            v.add_row(fam["name"], str(e["asn"]), f"AS{e['learned_from']} ({e['learned_rel']})",
                      f"AS{e['exported_to']} ({e['exported_rel']})", e["prefix"], f"AS{e['peer_asn']}",
                      e["first_seen"][:16], f"{e['messages']:,}", f"{e['source']} #{e['record']}")
    if v.row_count:
        con.print(v)
    return 0


def _by_family(families: dict[str, dict[str, Any]], signals: Any, key: str, examples: str, *, weight: str) -> None:
    """Per family: the number of ``signals`` rows (``key``) and the five heaviest by ``weight``
    (then earliest), times as text (``examples``)."""
    import pyarrow.compute as pc

    for fid, fam in families.items():
        mine = signals.filter(pc.equal(signals.column("family"), fid)).sort_by(
            [(weight, "descending"), ("first_seen", "ascending")])
        fam[key] = mine.num_rows
        fam[examples] = [{**r, "first_seen": str(r["first_seen"]), "last_seen": str(r["last_seen"])}
                                  for r in mine.slice(0, 5).to_pylist()]


def run_compare(args: argparse.Namespace) -> int:
    import orjson
    import pyarrow.parquet as pq

    from analysis.bgp import AGREEMENT, bgp_agreement, bgp_routes
    from analysis.cli import campaign_from_args
    from analysis.datasets import load_snapshot
    from analysis.errors import MissingInput
    from analysis.registry import load_registry
    from analysis.scope import in_scope

    camp = campaign_from_args(args)
    if not camp.paths_parquet.is_file():
        raise MissingInput(f"campaign {camp.name!r} has no paths; run `pathexp analyze --campaign {camp.name}` first")
    paths = in_scope(pq.read_table(camp.paths_parquet))
    snap = load_snapshot(args.snapshot, cache_dir=args.cache_dir)
    routes, kind = bgp_routes(snap)
    rel = snap.table("as-rel", "links") if snap.has("as-rel") else None
    _, counts = bgp_agreement(paths, routes, load_registry(args.registry), rel)
    out = {"campaign": camp.name, "snapshot": snap.id, "kind": kind, "traceroutes": paths.num_rows,
           "neighbours": "as-rel" if rel is not None else "none (the probe's own AS only)", "families": counts}
    if args.json:
        print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
        return 0
    from rich.table import Table

    from analysis.cli._console import make_console

    con = make_console()
    con.print(f"campaign {camp.name}: {paths.num_rows:,} traceroutes in scope against the BGP data of snapshot "
              f"{snap.id} ({kind}; views from the probe's AS and {out['neighbours']} neighbours)")
    t = Table("family", *AGREEMENT)
    for fam, c in counts.items():
        t.add_row(fam, *(f"{c[v]:,}" for v in AGREEMENT))
    con.print(t)
    return 0


def run_rov(args: argparse.Namespace) -> int:
    import orjson
    import pyarrow.parquet as pq

    from analysis.bgp import ROV_STATES, destination_rov
    from analysis.cli import campaign_from_args
    from analysis.datasets import load_snapshot
    from analysis.errors import MissingInput

    camp = campaign_from_args(args)
    path = camp.exposure_table("destinations")
    if not path.is_file():
        raise MissingInput(f"campaign {camp.name!r} has no destination table; run `pathexp analyze --campaign "
                           f"{camp.name}` first")
    dst = pq.read_table(path)
    snap = load_snapshot(args.snapshot, cache_dir=args.cache_dir)
    out = destination_rov(snap, dst.column("dst_addr").combine_chunks())
    status = out.column("rov").to_pylist()
    if args.json:
        for r in out.to_pylist():
            print(orjson.dumps({"campaign": camp.name, "snapshot": snap.id, "dst_addr": r["dst_addr"],
                                "prefix": r["rov_prefix"], "origin_asn": r["rov_origin_asn"], "rov": r["rov"]}).decode())
        return 0
    from rich.table import Table

    from analysis.cli._console import make_console

    con = make_console()
    counts = {s: status.count(s) for s in ROV_STATES}
    con.print(f"campaign {camp.name}: {len(status):,} destinations in scope, RPKI against snapshot {snap.id}: "
              + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    t = Table("destination", "prefix (pfx2as)", "origin", "RPKI")
    for r in out.to_pylist():
        t.add_row(r["dst_addr"], r["rov_prefix"] or "-", f"AS{r['rov_origin_asn']}" if r["rov_origin_asn"] else "-",
                  r["rov"])
    con.print(t)
    return 0
