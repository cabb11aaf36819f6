"""What the CLI prints after storing results: the rich table ``pathexp ingest`` prints.

The counts come from the library (:func:`probes.store.summary`); this module only lays
them out.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from analysis.cli._console import make_console
from probes.parse import DROP_REASONS
from probes.store import IngestReport, summary
from probes.workspace import Campaign

__all__ = ["print_ingest_summary"]


def print_ingest_summary(campaign: Campaign, report: IngestReport, console: Console | None = None) -> None:
    """Print an ingest's counts, its drops by reason, and the campaign store's totals."""
    console = console or make_console()
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
        s = summary(campaign)
        table = Table(title=f"campaign store {campaign.root}")
        table.add_column("")
        table.add_column("value", justify="right")
        for k, v in s.items():
            table.add_row(k.replace("_", " "), f"{v:,}" if isinstance(v, int) else str(v))
        console.print(table)
