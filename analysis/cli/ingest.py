"""``pathexp ingest``: store Atlas traceroute results and build the hop table."""

from __future__ import annotations

import argparse
from collections import Counter

__all__ = ["probe_lines", "register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    from analysis.cli import add_campaign_args, add_engine_args
    from analysis.cli._options import positive_int

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
    p.add_argument("--segment-results", type=positive_int, default=None, metavar="N",
                   help="results per stored segment (default 32768); smaller segments commit more often")
    add_engine_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from probes import inputs

    if args.engine == "local":  # the first file decompresses while the imports below run
        inputs.read_early(args.paths[0])
    try:
        return _run(args)
    finally:
        inputs.discard_early()


def _run(args: argparse.Namespace) -> int:
    from analysis.cli import campaign_from_args, engine_options
    from analysis.cli._console import make_console, progress
    from analysis.cli._summary import print_ingest_summary
    from probes import memory, store
    from probes.metadata import read_probe_objects

    memory.reuse_large_buffers()
    campaign = campaign_from_args(args)
    kwargs = {"segment_results": args.segment_results} if args.segment_results else {}
    with progress(f"ingest {campaign.name}"):
        report = store.ingest_files(campaign, args.paths, **kwargs, **engine_options(args))
    probe_drops: Counter = Counter()
    for path in args.probes:
        store.write_probe_meta(campaign, read_probe_objects(path, drops=probe_drops))
    console = make_console(highlight=False)
    print_ingest_summary(campaign, report, console)
    for line in probe_lines(report.inputs, probe_drops, store.probes_without_meta(campaign)):
        console.print(line, markup=False)
    return 0


def probe_lines(inputs: list[dict], file_drops: Counter, coverage: tuple[int, list[int]]) -> list[str]:
    """What became of the probe metadata: bundles' probe objects, files, probes still unknown.

    Examples
    --------
    >>> probe_lines([{"probes": {"found": 3, "stored": 2, "drops": {"bad_id": 1}}}], Counter(), (5, [9]))[0]
    'probe metadata from API bundles: 2 of 3 probe objects stored; set aside: bad_id 1'
    >>> probe_lines([], Counter(), (5, [9]))[0][:60]
    'warning: 1 of 5 probes have no metadata (no country, AS or l'
    """
    lines = []
    found: Counter = Counter()
    drops = Counter(file_drops)
    for entry in inputs:
        part = entry.get("probes") or {}
        found.update({"found": part.get("found", 0), "stored": part.get("stored", 0)})
        drops.update(part.get("drops", {}))
    if found["found"]:
        lines.append(f"probe metadata from API bundles: {found['stored']:,} of {found['found']:,} "
                     f"probe objects stored" + _drop_text(drops))
    elif drops:
        lines.append("probe objects set aside" + _drop_text(drops))
    n_probes, missing = coverage
    if missing:
        sample = ", ".join(str(p) for p in missing[:5]) + (", ..." if len(missing) > 5 else "")
        lines.append(
            f"warning: {len(missing):,} of {n_probes:,} probes have no metadata (no country, AS or "
            f"location: source countries, hegemony, maps and speed-of-light verdicts leave their "
            f"traceroutes out); probe ids {sample}. Add it with `pathexp probes fetch --campaign "
            f"NAME` (online) or `pathexp ingest --probes FILE` (Atlas API probe objects)"
        )
    return lines


def _drop_text(drops: Counter) -> str:
    return "; set aside: " + ", ".join(f"{k} {v:,}" for k, v in sorted(drops.items())) if drops else ""
