"""What the CLI prints after storing results: counts over a campaign's tables and runs.

:func:`hop_table_summary` (DuckDB counts over the traceroute and hop tables) and
:func:`count_reached` (traceroutes whose last hop answered from the destination) are
library logic waiting for their stage module (the store's readers and the local
backend); :func:`print_ingest_summary` is the rich table ``pathexp ingest`` prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import duckdb
from rich.console import Console
from rich.table import Table

from probes.parse import DROP_REASONS
from probes.store import IngestReport
from probes.workspace import Campaign

__all__ = ["count_reached", "hop_table_summary", "print_ingest_summary"]


def hop_table_summary(campaign: Campaign) -> dict:
    """Counts over the campaign's hop and traceroute tables, computed with DuckDB."""
    con = duckdb.connect()
    traces, hops = campaign.glob("traces"), campaign.glob("hops")
    t = con.execute(
        f"""SELECT count(*), count(DISTINCT msm_id), count(DISTINCT prb_id),
                   count(DISTINCT dst_addr), sum(destination_reached::INT),
                   min(timestamp), max(timestamp)
            FROM read_parquet('{traces}')"""
    ).fetchone()
    h = con.execute(
        f"""SELECT count(*), count(reply_from), count(*) - count(reply_from),
                   count(DISTINCT reply_from)
            FROM read_parquet('{hops}')"""
    ).fetchone()
    keys = ["traceroutes", "measurements", "probes", "destinations", "destination_reached", "first", "last"]
    out = dict(zip(keys, t, strict=True))
    out.update(dict(zip(["hop_rows", "replies", "timeouts", "distinct_reply_addresses"], h, strict=True)))
    return out


def count_reached(results: Iterable[Mapping]) -> int:
    """How many Atlas traceroute results reached their destination.

    A result reached it when a reply of its last hop came from ``dst_addr`` (what
    ``pathexp trace`` reports; the hop table's ``destination_reached`` looks at every hop).

    >>> hop = lambda *addrs: {"result": [{"from": a} for a in addrs]}
    >>> count_reached([
    ...     {"dst_addr": "192.0.2.1", "result": [hop("198.51.100.1"), hop("192.0.2.1")]},
    ...     {"dst_addr": "192.0.2.2", "result": [hop("198.51.100.1"), hop()]},
    ...     {"dst_addr": "192.0.2.3", "result": []},
    ... ])
    1
    """
    return sum(
        1 for r in results
        if r["result"] and any(x.get("from") == r["dst_addr"] for x in r["result"][-1]["result"])
    )


def print_ingest_summary(campaign: Campaign, report: IngestReport, console: Console | None = None) -> None:
    """Print an ingest's counts, its drops by reason, and the campaign store's totals."""
    console = console or Console()
    console.print(
        f"[bold]{campaign.name}[/bold]: seen {report.seen:,} results, added {report.added:,}, "
        f"duplicates {report.duplicates:,}, hop rows added {report.hop_rows:,}"
    )
    if report.drops:
        table = Table(title="set aside (counted by reason, kept in ingest.json)")
        table.add_column("reason")
        table.add_column("records", justify="right")
        table.add_column("meaning")
        for reason, n in sorted(report.drops.items()):
            table.add_row(reason, f"{n:,}", DROP_REASONS.get(reason, ""))
        console.print(table)
    if any(campaign.traces_dir.glob("*.parquet")):
        s = hop_table_summary(campaign)
        table = Table(title=f"campaign store {campaign.root}")
        table.add_column("")
        table.add_column("value", justify="right")
        for k, v in s.items():
            table.add_row(k.replace("_", " "), f"{v:,}" if isinstance(v, int) else str(v))
        console.print(table)
