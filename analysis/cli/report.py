"""``pathexp report``: a self-contained HTML report of an analysed campaign."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    from analysis.cli import add_campaign_args

    parser = subparsers.add_parser(
        "report",
        help="write a self-contained HTML report (figures embedded) for an analysed campaign",
        description=(
            "Write <workspace>/<campaign>/report/index.html: headline exposure with intervals, "
            "figures, the method, the reference-data snapshot, drop and unresolved counts, and "
            "tables of crossings. Run `pathexp analyze` first. Refuses outputs of an interrupted "
            "analyze or computed before new results were ingested (or annotate ran again)."
        ),
    )
    add_campaign_args(parser)
    parser.add_argument("--out", type=Path, default=None,
                        help="write the report here instead (default: <campaign>/report/index.html)")
    parser.add_argument("--force", action="store_true",
                        help="if the analysis is stale or was interrupted, run annotate and/or analyze "
                             "again (with the options they recorded) first, instead of refusing")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from analysis.campaign_io import write_report
    from analysis.cli import campaign_from_args

    path = write_report(campaign_from_args(args), out=args.out, force=args.force)
    print(f"wrote {path} ({path.stat().st_size / 1024:,.0f} KiB)")
    return 0
