"""``pathexp analyze``: paths, exposure tables with intervals, graphs, ``exposure.json``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    from analysis.cli import add_campaign_args, add_engine_args
    from analysis.cli._options import positive_int

    parser = subparsers.add_parser(
        "analyze",
        help="build paths and exposure metrics (with 95%% intervals) for a campaign",
        description=(
            "Turn a campaign's annotated hops into per-traceroute AS/IXP paths, exposure "
            "tables (Parquet and CSV), the AS graph (GraphML) and exposure.json."
        ),
    )
    add_campaign_args(parser)
    parser.add_argument("--pop-country", default="US", type=_country,
                        help="ISO 3166-1 alpha-2 country of the PoPs (default: US)")
    parser.add_argument("--dst-country", default=None, type=_scope_country, metavar="CC|any",
                        help="count only traceroutes toward destinations in this country (located, not "
                             "anycast, within reach of their RTT); 'any' keeps every traceroute "
                             "(default: [analyze] dst_country of the settings file, else US)")
    parser.add_argument(
        "--bootstrap", type=positive_int, default=1000, metavar="B", help="bootstrap replicates (default: 1000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    parser.add_argument(
        "--include-endpoints",
        action="store_true",
        help="count hops in the probe's or destination's own AS as transit",
    )
    parser.add_argument(
        "--origin-as",
        action="store_true",
        help="use each reply address's origin AS as the router's AS, instead of the owner AS "
             "inferred by the ownership stage (for comparison)",
    )
    parser.add_argument(
        "--registry",
        default=None,
        metavar="FILE",
        help="flagged-carrier registry TOML overriding the families recorded by annotate",
    )
    parser.add_argument(
        "--cache-dir", default=None, help="reference-data cache root (to annotate destinations)"
    )
    parser.add_argument(
        "--force", action="store_true",
        help="if annotated/ is stale (results ingested, registry or snapshot changed since "
             "annotate, or annotate interrupted), annotate again first with the snapshot and "
             "registry annotate.json records, instead of refusing",
    )
    parser.add_argument("--config", type=Path, default=None, metavar="TOML",
                        help="settings file for [analyze] defaults (default: <user config dir>/pathexp/config.toml)")
    add_engine_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from analysis.campaign_io import analyze_campaign
    from analysis.cli import campaign_from_args, engine_options
    from analysis.cli._console import make_console, progress
    from analysis.refdates import stale_lines
    from analysis.vantage import derived_countries_line
    from probes.config import analyze_defaults

    campaign = campaign_from_args(args)
    registry = None
    if args.registry:
        from analysis.registry import load_registry

        registry = load_registry(args.registry)
    with progress(f"analyze {campaign.name}"):
        report = analyze_campaign(
            campaign,
            registry=registry,
            pop_country=args.pop_country,
            n_boot=args.bootstrap,
            seed=args.seed,
            include_endpoints=args.include_endpoints,
            cache_dir=args.cache_dir,
            infer_owners=not args.origin_as,
            dst_country=args.dst_country or analyze_defaults(args.config).get("dst_country", "US"),
            force=args.force,
            **engine_options(args),
        )
    console = make_console()
    scope = report.get("scope") or {}
    if scope:
        console.print(f"[bold]Scope:[/bold] {scope['sentence']}.")
        unknown = scope.get("unknown_destinations") or {}
        if unknown.get("count"):
            console.print(f"{unknown['count']:,} destinations could not be located (no source knows "
                          f"them): {', '.join(unknown['addresses'][:5])}{' ...' if unknown['count'] > 5 else ''}")
    meta = (report.get("probe_metadata") or {}).get("status")
    if meta:
        console.print(f"[yellow]{meta}[/yellow]")
    derived = derived_countries_line((report.get("probe_metadata") or {}).get("derived_countries"))
    if derived:
        console.print(f"[yellow]{derived}[/yellow]")
    for line in stale_lines(((report.get("annotate") or {}).get("reference_dates")) or {}):
        console.print(f"[yellow]{line}[/yellow]")
    if scope and not scope.get("traceroutes_in_scope"):
        console.print(f"No traceroute of the campaign's {scope.get('traceroutes', 0):,} goes toward "
                      f"{scope.get('country')} destinations, so there is no exposure to report; widen "
                      "the scope with --dst-country any (every destination) or name another country.")
        console.print(f"wrote {campaign.exposure_json}")
        return 0
    table = Table(
        title=(
            f"Exposure of {report['traceroutes']:,} traceroutes from {report['probes']:,} probes "
            f"(campaign {report['campaign']}, snapshot {report['snapshot'] or 'unknown'})"
        )
    )
    table.add_column("family", no_wrap=True)
    table.add_column("path exposure [95% CI]", justify="right")
    table.add_column("paths", justify="right")
    table.add_column(f"PoP exposure, {report['pop_country']} [95% CI]", justify="right")
    table.add_column("paths", justify="right")
    for family, entry in report["families"].items():
        pe, po = entry["path_exposure"], entry["pop_exposure"]
        table.add_row(
            family,
            _cell(pe),
            f"{pe['transiting']:,}",
            _cell(po),
            f"{po['transiting']:,}",
        )
    console.print(table)
    upper = [(fam, e["pop_exposure"].get("possibly")) for fam, e in report["families"].items()]
    upper = [(fam, u) for fam, u in upper if u and u["transiting"] > _lower_count(report, fam)]
    if upper:
        console.print(f"PoP exposure could be as high as (crossings not located but possibly in "
                      f"{report['pop_country']}): " + "; ".join(f"{fam} {_cell(u)}" for fam, u in upper))
    if report["top_pops"]:
        pops = Table(title="Where the flagged families are entered (top PoPs)")
        pops.add_column("family", no_wrap=True)
        pops.add_column("PoP", no_wrap=True)
        pops.add_column("place")
        pops.add_column("paths", justify="right")
        pops.add_column("probes", justify="right")
        pops.add_column("light: ok/bad/?", justify="right")
        for p in report["top_pops"][:10]:
            place = ", ".join(x for x in (p["pop_city"], p["pop_country"]) if x) or "-"
            pops.add_row(
                p["family"],
                p["ixp_name"] or p["ixp_id"] or p["kind"],
                place,
                f"{p['traceroutes']:,}",
                f"{p['probes']:,}",
                f"{p['consistent']}/{p['inconsistent']}/{p['unknown']}",
            )
        console.print(pops)
    hosted = report.get("destination_hosted") or {}
    if hosted.get("any", {}).get("hosted"):
        parts = [f"{fam} {_cell(e)} ({e['hosted']:,} traceroutes)" for fam, e in hosted.items() if e["hosted"]]
        console.print("destination hosted by a flagged family (not transit): " + "; ".join(parts))
        for d in hosted["any"]["destinations"][:5]:
            console.print(f"  {d['dst_addr']} AS{d['dst_asn']} {d['family']} ({d['evidence']}), "
                          f"in {d['country'] or '?'} by {d['country_via']}: {d['traceroutes']:,} traceroutes")
    console.print(f"intervals: {report['method']['ci']}")
    console.print(
        f"IXP crossings in {report['ixp_crossing_traceroutes']:,} traceroutes; "
        f"{report['pop_crossings']:,} flagged PoP crossings; {report['detours']:,} detours; "
        f"{report['loops']:,} loops."
    )
    if report["drops"]:
        console.print("set aside: " + ", ".join(f"{k} {v:,}" for k, v in report["drops"].items()))
    console.print(f"wrote {campaign.exposure_json}")
    return 0


def _cell(entry: dict[str, Any]) -> str:
    return f"{_pct(entry['estimate'])} [{_pct(entry['ci_low'])}-{_pct(entry['ci_high'])}]"


def _pct(value: float | None) -> str:
    if value is None or value != value:
        return "-"
    return f"{100.0 * value:.2f}%"


def _scope_country(text: str) -> str:
    return "any" if text.lower() == "any" else _country(text)


def _country(text: str) -> str:
    if len(text) != 2 or not text.isalpha():
        raise argparse.ArgumentTypeError(f"want a two-letter ISO 3166-1 code such as US, got {text!r}")
    return text.upper()


def _lower_count(report: dict[str, Any], family: str) -> int:
    """Traceroutes counted by the lower bound of PoP exposure for ``family``."""
    return int(report["families"][family]["pop_exposure"]["transiting"])
