"""``pathexp probes fetch``: the metadata of a campaign's probes, from the Atlas API."""

from __future__ import annotations

import argparse
from collections import Counter

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    from analysis.cli.campaign import common_atlas_args

    p = sub.add_parser("probes", help="probe metadata of a campaign (country, AS, location)")
    psub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = psub.add_parser(
        "fetch", help="fetch the metadata of the campaign's probes that have none",
        description="Fetch from the Atlas API (no key needed) the probe objects of every probe "
                    "seen in the campaign's traceroutes that has no stored metadata, check them, "
                    "and store them in <campaign>/probes.parquet. Probes already known are not "
                    "asked for again.",
        epilog="example: pathexp probes fetch --campaign menog",
    )
    common_atlas_args(a, spec="none")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from analysis.cli import campaign_from_args
    from analysis.cli.campaign import atlas_settings
    from analysis.errors import MissingInput
    from probes import store
    from probes.atlas import AtlasClient
    from probes.metadata import check_probe_objects

    camp = campaign_from_args(args)
    n, missing = store.probes_without_meta(camp)
    if not n:
        raise MissingInput(f"campaign {camp.name!r} has no traceroutes, so no probes to fetch metadata for; "
                           "bring results in first (`pathexp ingest` or `pathexp campaign fetch`)")
    client = AtlasClient(atlas_settings(args))
    drops: Counter = Counter()
    got = check_probe_objects(client.probes_by_id(missing), drops) if missing else []
    if got:
        store.write_probe_meta(camp, got)
    _, still = store.probes_without_meta(camp)
    rep = {"probes": n, "missing_before": len(missing), "stored": len(got),
           "unknown_to_atlas": still, "set_aside": dict(sorted(drops.items()))}
    if args.json:
        import json

        print(json.dumps(rep, indent=2, sort_keys=True))
        return 0
    print(f"campaign {camp.name}: {n} probes, {len(missing)} without metadata; "
          f"{len(got)} probe objects fetched and stored")
    if drops:
        print("  set aside: " + ", ".join(f"{k} {v}" for k, v in sorted(drops.items())))
    if still:
        print(f"  still without metadata (unknown to the server): {len(still)} probes, ids "
              + ", ".join(map(str, still[:10])) + (", ..." if len(still) > 10 else ""))
    return 0
