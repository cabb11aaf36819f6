"""``pathexp annotate``: add AS / IXP / organisation / flagged-family columns to the hops."""

from __future__ import annotations

import argparse
import sys

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    from analysis.cli import add_campaign_args, add_engine_args
    from analysis.cli._options import add_cache_dir_arg

    p = sub.add_parser(
        "annotate",
        help="annotate a campaign's hops with AS, IXP, member, org and flagged family",
        description=(
            "Annotate every hop of a campaign with a pinned reference snapshot (the newest "
            "unless --snapshot). Writes <campaign>/annotated/*.parquet and <campaign>/annotate.json "
            "(snapshot id and digest, counts of unresolved hops by reason)."
        ),
    )
    add_campaign_args(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--snapshot", default=None, help="snapshot id (default: the newest)")
    which.add_argument("--closest", action="store_true",
                       help="take each reference-data kind from the local snapshot whose data are closest in "
                            "time to the campaign's measurements (composed into one snapshot)")
    add_cache_dir_arg(p)
    p.add_argument("--registry", default=None, help="flagged-carrier registry TOML (default: the shipped one)")
    p.add_argument("--online", action="store_true",
                   help="allow the ipwhois RDAP fallback for unresolved public addresses (network I/O)")
    add_engine_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from analysis.campaign_io import annotate_campaign
    from analysis.cli import campaign_from_args, engine_options
    from analysis.cli._console import progress
    from analysis.refdates import stale_lines
    from probes import memory

    memory.reuse_large_buffers()
    campaign = campaign_from_args(args)
    with progress(f"annotate {campaign.name}"):
        report = annotate_campaign(campaign, snapshot_id=args.snapshot, cache_dir=args.cache_dir,
                                   registry_path=args.registry, online=args.online, closest=args.closest,
                                   **engine_options(args))
    c = report["counts"]
    print(f"annotated {report['rows']} hop rows with snapshot {report['snapshot']['id']} "
          f"({len(report['parts'])} parts)")
    composed = report["snapshot"].get("composed_from")
    if composed:
        print("  kinds taken from: " + ", ".join(f"{k} {sid}" for k, sid in composed.items()))
    for line in stale_lines(report["reference_dates"]):
        print(f"warning: {line}", file=sys.stderr)
    for k in sorted(c):
        if k.startswith(("resolved:", "unresolved:")):
            print(f"  {k:<28} {c[k]}")
    return 0
