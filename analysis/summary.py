"""Readable summaries of campaign tables, for the CLI and notebooks."""

from __future__ import annotations

import duckdb
from rich.console import Console
from rich.table import Table

from probes.parse import DROP_REASONS
from probes.store import IngestReport
from probes.workspace import Campaign

__all__ = ["hop_table_summary", "print_ingest_summary"]


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


def print_ingest_summary(campaign: Campaign, report: IngestReport, console: Console | None = None) -> None:
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
