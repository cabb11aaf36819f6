"""``pathexp ingest``: store Atlas traceroute results and build the hop table."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    from analysis.cli import add_campaign_args, add_engine_args

    p = sub.add_parser(
        "ingest",
        help="ingest traceroute results (Atlas JSON; traceroute/mtr/scamper output)",
        description=(
            "Ingest RIPE Atlas traceroute results (NDJSON, JSON array or one object; plain, "
            "gzip, bz2, xz or zstd; '-' for stdin) into a campaign: raw results are kept "
            "deduplicated on (msm_id, prb_id, timestamp) and the hop table is written as "
            "Parquet. Records set aside are counted by reason in <campaign>/ingest.json."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="input files, or - for stdin")
    add_campaign_args(p)
    p.add_argument("--probes", metavar="FILE", action="append", default=[],
                   help="Atlas API probe objects (JSON list or API page) to store as probe metadata")
    p.add_argument("--segment-results", type=int, default=None, metavar="N",
                   help="results per stored segment (default 32768); smaller segments commit more often")
    add_engine_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from analysis.cli import campaign_from_args, engine_options
    from analysis.cli._summary import print_ingest_summary
    from probes import store
    from probes.metadata import read_probe_objects

    campaign = campaign_from_args(args)
    kwargs = {"segment_results": args.segment_results} if args.segment_results else {}
    report = store.ingest_files(campaign, args.paths, **kwargs, **engine_options(args))
    for path in args.probes:
        store.write_probe_meta(campaign, read_probe_objects(path))
    print_ingest_summary(campaign, report)
    return 0
