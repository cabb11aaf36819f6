"""``pathexp show``: traceroutes of a campaign, hop by hop, with what pathexp knows of each hop."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    from analysis.cli import add_campaign_args

    p = sub.add_parser(
        "show", help="show traceroutes hop by hop (AS, owner, IXP, flagged family, verdicts)",
        description="Print traceroutes of a campaign hop by hop, like `ripe-atlas report`: per hop "
                    "the replying addresses, their AS (the router's owner where ownership inference "
                    "moved it away from the address's origin), IXP and member, flagged family, MPLS "
                    "labels and RTTs; under them the path's verdicts when `pathexp analyze` ran. "
                    "Without annotate/analyze, shows what exists and says which command adds the rest.",
    )
    add_campaign_args(p)
    p.add_argument("--msm", type=int, default=None, metavar="ID", help="only this measurement")
    p.add_argument("--probe", type=int, default=None, metavar="ID", help="only this probe")
    p.add_argument("--dst", default=None, metavar="ADDR", help="only traceroutes toward this address")
    p.add_argument("--limit", type=int, default=5, metavar="N", help="at most N traceroutes (default 5)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or JSON lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    import orjson
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from analysis._tables import plain_columns
    from analysis.cli import campaign_from_args
    from analysis.errors import MissingInput
    from analysis.show import render_trace, trace_record
    from probes import store

    camp = campaign_from_args(args)
    if not any(camp.traces_dir.glob("*.parquet")):
        raise MissingInput(f"campaign {camp.name!r} has no traceroutes in {camp.root}; run `pathexp ingest` first")
    if args.limit < 1:
        raise MissingInput("--limit must be at least 1")
    traces = store.read_traces(camp)
    cond = None
    for col, val in (("msm_id", args.msm), ("prb_id", args.probe), ("dst_addr", args.dst)):
        if val is not None:
            c = pc.equal(traces[col], val)
            cond = c if cond is None else pc.and_(cond, c)
    if cond is not None:
        traces = traces.filter(cond)
    if traces.num_rows == 0:
        wanted = ", ".join(f"{k} {v}" for k, v in (("msm", args.msm), ("probe", args.probe), ("dst", args.dst)) if v)
        raise MissingInput(f"campaign {camp.name!r}: no traceroute matches {wanted}")
    traces = traces.sort_by([("timestamp", "ascending"), ("msm_id", "ascending"), ("prb_id", "ascending")]
                            ).slice(0, args.limit)
    keys = traces.select(["msm_id", "prb_id", "timestamp"])
    annotated = sorted(camp.annotated_dir.glob("*.parquet")) if camp.annotated_dir.is_dir() else []
    source = annotated or sorted(camp.hops_dir.glob("*.parquet"))
    key_filter = pc.field("msm_id").isin(keys["msm_id"].unique()) & pc.field("prb_id").isin(keys["prb_id"].unique())
    hops = plain_columns(ds.dataset([str(f) for f in source]).to_table(filter=key_filter))
    owners = {}
    if camp.owners_parquet.is_file():
        own = ds.dataset(str(camp.owners_parquet)).to_table(
            filter=pc.field("addr").isin(pc.unique(hops["reply_from"].drop_null())))
        owners = {r["addr"]: r for r in own.to_pylist()}
    paths = {}
    if camp.paths_parquet.is_file():
        pt = ds.dataset(str(camp.paths_parquet)).to_table(filter=key_filter)
        paths = {(r["msm_id"], r["prb_id"], r["timestamp"]): r for r in pt.to_pylist()}
    probes = {r["prb_id"]: r for r in store.read_probe_meta(camp).to_pylist()}
    names = _as_names(camp, hops)
    by_key: dict = {}
    for h in hops.to_pylist():
        by_key.setdefault((h["msm_id"], h["prb_id"], h["timestamp"]), []).append(h)
    for t in traces.to_pylist():
        key = (t["msm_id"], t["prb_id"], t["timestamp"])
        rec = trace_record(t, by_key.get(key, []), owners, paths.get(key), probes.get(t["prb_id"]))
        if args.format == "json":
            seen = {a[k] for h in rec["hops"] for a in h["replies"] for k in ("asn", "origin_asn", "member_asn")}
            rec["as_names"] = {str(a): names[a] for a in sorted(x for x in seen if x in names)}
            sys.stdout.write(orjson.dumps(rec, default=str).decode() + "\n")
        else:
            print(render_trace(rec, names=names))
            print()
    if args.format == "text":
        missing = [cmd for cmd, have in (("pathexp annotate (AS, IXP, flagged family per hop)", annotated),
                                         ("pathexp analyze (router owners and the path's verdicts)",
                                          camp.paths_parquet.is_file())) if not have]
        if missing:
            print(f"not shown yet: run {' then '.join(missing)} --campaign {camp.name}")
    return 0


def _as_names(camp: Any, hops: Any) -> dict[int, str]:
    """AS number -> name: the annotation's ``org`` (organisation or AS name) of the hops shown,
    then the campaign graph's (router owners whose own space no hop shows)."""
    names: dict[int, str] = {}
    if camp.as_graph_graphml.is_file():
        import networkx as nx

        from analysis.graph import as_names

        names = as_names(nx.read_graphml(camp.as_graph_graphml))
    if {"asn", "org"} <= set(hops.column_names):
        for a, o in zip(hops.column("asn").to_pylist(), hops.column("org").to_pylist(), strict=True):
            if a is not None and o:
                names.setdefault(int(a), str(o))
    return names
