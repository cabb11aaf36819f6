"""``pathexp demo [--seed N] [--size small|large] [--workspace DIR]``: the offline main job."""

from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path
from typing import Any

__all__ = ["register", "run", "render"]


def register(subparsers: Any) -> None:
    from probes.workspace import DEFAULT_WORKSPACE

    parser = subparsers.add_parser(
        "demo",
        help="run the whole pipeline offline on a synthetic world and score it against the truth",
        description=(
            "Generate a deterministic synthetic Internet (flagged carriers with PoPs at US "
            "IXPs, Atlas probes worldwide, a route-leak diversion), then import its reference "
            "data, ingest, annotate and analyze it exactly as real data, and compare the "
            "results with the world's ground truth. No network. Everything goes to "
            "<workspace>/demo/ (its reference-data cache too)."
        ),
    )
    parser.add_argument("--seed", type=int, default=0, help="world seed (default: 0)")
    parser.add_argument("--size", choices=("small", "large"), default="small",
                        help="small: 7,200 traceroutes, seconds; large: ~100k traceroutes, 1-2 minutes "
                             "and ~2 GB of memory (default: small)")
    parser.add_argument("--workspace", type=Path, default=DEFAULT_WORKSPACE,
                        help=f"folder of campaign workspaces; the demo uses <workspace>/demo "
                             f"(default: {DEFAULT_WORKSPACE}/)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--artefacts", dest="artefacts", action="store_true",
                      help="run on a world with real traceroute artefacts (neighbour-numbered "
                           "links, third-party replies, invisible MPLS, moved IXP ports, missing "
                           "PeeringDB facilities, imprecise probe locations ...): the default")
    mode.add_argument("--clean-world", dest="artefacts", action="store_false",
                      help="run on the clean world instead, for comparison (every router answers "
                           "from its own operator's space)")
    parser.set_defaults(func=run, artefacts=True)


def run(args: argparse.Namespace) -> int:
    import time

    from analysis.cli._console import make_console
    from analysis.demo import run_demo

    console = make_console(highlight=False)
    t0 = time.perf_counter()
    kind = "with artefacts" if args.artefacts else "clean"
    console.rule(f"[bold]pathexp demo[/bold] · synthetic world ({kind}), seed {args.seed}, {args.size}")
    console.print("[dim]Nothing here is real measurement data; the world is generated, "
                  "with its ground truth, so the numbers below can be checked.[/dim]\n")
    result = run_demo(workspace=args.workspace, seed=args.seed, size=args.size, console=console,
                      artefacts="default" if args.artefacts else None)
    render(result, console, elapsed=time.perf_counter() - t0)
    return 1 if result.report_error else 0


# ---------------------------------------------------------------------------- rendering
_CAUSES = {
    "crossing_cities:unexplained": "wrong city (see false_examples in accuracy.json; with "
    "PeeringDB facilities, a carrier PoP missing from PeeringDB is placed at a facility the "
    "two networks share elsewhere)",
    "ixp-lan-hop-unresponsive": "at an IXP whose peering-LAN hop never answered, but reported "
    "as a private interconnect (the place cannot be seen; 'unknown' would be right)",
    "hop-at-boundary-silent": "a silent hop at the carrier boundary, yet a place was claimed",
    "forwarding-loop": "re-entries into the carrier inside a forwarding loop (the truth counts "
    "one crossing)",
}


def _pct(x: float | None, digits: int = 1) -> str:
    if x is None or x != x:
        return "-"
    return f"{100.0 * x:.{digits}f}%"


def _when(ts: int | None) -> str:
    if ts is None:
        return "-"
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%b %d %H:%M")


def _ok(flag: bool) -> str:
    return "[green]✓[/green]" if flag else "[red]✗[/red]"


def render(result: Any, console: Any, *, elapsed: float | None = None) -> None:
    """Print the demo's findings: exposure, PoPs, change events, accuracy, files."""
    from rich import box
    from rich.table import Table

    exp = result.exposure
    acc = result.accuracy
    names = {"any": "any flagged", **result.family_names}
    truth = {(r["family"], r["kind"]): r for r in acc["exposure"]}

    def table(title: str) -> Table:
        return Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD,
                     pad_edge=False)

    # exposure
    console.print()
    t = table(f"1. Exposure: {exp['traceroutes']:,} traceroutes from {exp['probes']} probes to US hosts")
    t.add_column("carrier family")
    t.add_column("transit [95% CI]", justify="right")
    t.add_column("true", justify="right")
    t.add_column(f"enters at a {exp['pop_country']} PoP", justify="right")
    t.add_column("true", justify="right")
    for fam, entry in exp["families"].items():
        row = [names.get(fam, fam)]
        for kind in ("path_exposure", "pop_exposure"):
            e = entry[kind]
            row.append(f"{_pct(e['estimate'])} [{_pct(e['ci_low'])[:-1]}–{_pct(e['ci_high'])}]")
            chk = truth.get((fam, kind))
            row.append(f"{_pct(chk['true'])} {_ok(chk['inside'])}" if chk else "-")
        t.add_row(*row)
    console.print(t)
    cc = exp["pop_country"]
    if exp.get("scope"):
        console.print(f"  scope: {exp['scope']['sentence']} (true shares over the same traceroutes)")
    console.print(f"[dim]  transit: share of traceroutes whose AS path crosses the family. enters at a "
                  f"{cc} PoP: the crossing is located in the {cc} (at an IXP, or by the facilities "
                  "both networks share) and consistent with the speed of light; a lower bound, "
                  "since not every crossing can be located. Intervals: cluster bootstrap over "
                  "probes. true ✓: the world's true share lies inside.[/dim]")
    loc = acc.get("crossing_pop_country")
    missed_pop = [r for r in acc["exposure"] if r["kind"] == "pop_exposure" and not r["inside"]]
    if loc and missed_pop:
        console.print(f"[dim]  ✗ above: only {loc['true_positives']:,} of {loc['truth']:,} true {cc} "
                      "entries could be located, so the lower bound falls below the truth "
                      "(see crossing_pop_country in accuracy.json)[/dim]")

    # top PoPs
    console.print()
    t = table("2. Where paths enter the flagged carriers (top PoPs)")
    t.add_column("carrier")
    t.add_column("AS", justify="right")
    t.add_column("entry point")
    t.add_column("traceroutes", justify="right")
    t.add_column("true", justify="right")
    for p in result.top_pops:
        true = p["true_traceroutes"]
        t.add_row(p["family_name"], str(p["asn"]), p["where"], f"{p['traceroutes']:,}",
                  "-" if true is None else f"{true:,}")
    console.print(t)

    # change events
    console.print()
    console.print("[bold]3. Change events[/bold] [dim](probe→destination pairs that start, then "
                  "stop, transiting a family together)[/dim]")
    div = acc["diversion"]
    for ep in result.episodes[:4]:
        end = (f"stop {_when(ep['last_seen'])}–{_when(ep['cleared_by'])[-5:]}"
               if ep["cleared_by"] is not None else "still on at the end")
        console.print(f"  {names.get(ep['family'], ep['family']):<14} {ep['pairs']:>4} pairs  "
                      f"start {_when(ep['onset_after'])}–{_when(ep['onset_by'])[-5:]}, {end}")
    if not result.episodes:
        console.print("  none found")
    leak = result.world["diversion"]
    verdict = ("onset and end found in the right measurement rounds" if div["detected"]
               else "[red]not found in the right rounds[/red]")
    console.print(f"  truth: AS{leak['leaker_asn']} route leak {_when(div['true_start'])} → "
                  f"{_when(div['true_end'])} UTC  {_ok(div['detected'])} {verdict}")
    console.print("[dim]  a time range is the gap between a pair's last unchanged and first "
                  "changed traceroute[/dim]")

    # accuracy
    console.print()
    t = table("4. Accuracy against the ground truth")
    t.add_column("what the pipeline detects")
    t.add_column("true", justify="right")
    t.add_column("found", justify="right")
    t.add_column("precision", justify="right")
    t.add_column("recall", justify="right")
    rows = [("flagged-carrier crossings", "flagged_crossings"),
            ("  … at an IXP or private", "crossing_locations"),
            ("  … located in a city", "crossing_cities"),
            (f"  … located in the {exp['pop_country']}", "crossing_pop_country"),
            ("IXP crossings", "ixp_crossings")]
    notes = []
    for label, key in rows:
        s = acc[key]
        t.add_row(label, f"{s['truth']:,}", f"{s['detected']:,}", _pct(s["precision"], 2),
                  _pct(s["recall"], 2))
        unobs = s["truth"] - s["truth_observable"]
        name = label.strip(" …")
        if unobs and key in ("crossing_locations", "ixp_crossings"):
            notes.append(f"{name}: recall leaves out {unobs:,} true ones behind a hop that never "
                         "answered (no traceroute can show them)")
        for cause, n in s["false_by_cause"].items():
            why = _CAUSES.get(f"{key}:{cause}", _CAUSES.get(cause, cause))
            notes.append(f"{name}: {n:,} false, {why}")
    for fam, s in acc["change_events"].items():
        if s["truth"] or s["detected"]:
            t.add_row(f"change events, {names.get(fam, fam)}", f"{s['truth']:,}", f"{s['detected']:,}",
                      _pct(s["precision"], 2), _pct(s["recall"], 2))
    bl = acc.get("bgp_leak")
    if bl:
        t.add_row("route-leak signals in BGP (leaked prefixes)", f"{bl['true']:,}", f"{bl['found']:,}",
                  _pct(bl["precision"], 2), _pct(bl["recall"], 2))
        if bl["found"] and not bl["onset_ok"]:
            notes.append("route-leak signals: the first one is not at the leak's start")
    ro = acc.get("router_owner")
    if ro and ro["hops"]:
        t.add_row(f"router owner ({ro['scored']}), responding public hops", f"{ro['hops']:,}",
                  f"{ro['correct']:,} right", _pct(ro["accuracy"], 2), "")
    for label, key in (("PoP city", "pop_city"), (f"PoP in the {exp['pop_country']}", "pop_us")):
        s = acc.get(key)
        if s:
            t.add_row(label, "", "", _pct(s["precision"], 2), _pct(s["recall"], 2))
    console.print(t)
    wa = acc.get("world_artefacts") or {}
    if wa.get("enabled"):
        r = wa["realised"]
        console.print(f"[dim]  world artefacts: {r['hops:neighbour-numbered']:,} neighbour-numbered, "
                      f"{r['hops:third-party']:,} third-party and {r['hops:mpls-hidden-before']:,} "
                      f"after-MPLS hops of {r['router_hops']:,} router hops; {r['ixp_ports_moved']} "
                      f"moved IXP ports, {r['facilities_omitted']} facilities missing from PeeringDB, "
                      f"{r['probes_misplaced']} misplaced probes (rates: accuracy.json)[/dim]")
    else:
        console.print("[dim]  clean world: no third-party replies, MPLS, stale PeeringDB or misplaced "
                      "probes (`pathexp demo` without --clean-world adds them)[/dim]")
    inside = sum(1 for r in acc["exposure"] if r["inside"])
    console.print(f"  true exposure inside the reported 95% interval: {inside} of {len(acc['exposure'])} "
                  f"{_ok(inside == len(acc['exposure']))}")
    upper = [r for r in acc["exposure"] if "below_upper" in r]
    if upper:
        below = sum(1 for r in upper if r["below_upper"])
        console.print(f"  true PoP exposure at or below the upper bound (PoPs possibly in the US "
                      f"counted too): {below} of {len(upper)} {_ok(below == len(upper))}")
    bounded = [r for r in acc["exposure"] if "bounds_inside" in r]
    if bounded:
        inside_b = sum(1 for r in bounded if r["bounds_inside"])
        console.print(f"  true PoP exposure inside the bounds' interval (located interval's low end to the "
                      f"possible one's high end): {inside_b} of {len(bounded)} {_ok(inside_b == len(bounded))}")
    for n in notes:
        console.print(f"[dim]  • {n}[/dim]")

    # files
    console.print()
    console.print("[bold]5. Files[/bold]")
    f = result.files
    rows = [("world and its ground truth", f"{f['world']}/"),
            ("exposure figures", f"{f['exposure']}, {f['tables']}/*.csv"),
            ("per-traceroute paths", str(f["paths"])),
            ("AS/IXP graph (GraphML)", str(f["graph"]))]
    if "report" in f:
        rows.append(("HTML report", str(f["report"])))
    rows.append(("accuracy vs truth", str(f["accuracy"])))
    for label, path in rows:
        console.print(f"  {label:<27} {path}")
    if result.report_error:
        console.print(f"[red]  the report step failed: {result.report_error}[/red]")
    if elapsed is not None:
        console.print(f"\n[dim]done in {elapsed:.0f} s. Real data next: `pathexp datasets fetch`, "
                      "`pathexp campaign`, `pathexp ingest` (see README).[/dim]")
