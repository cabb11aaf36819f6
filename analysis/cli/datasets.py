"""``pathexp datasets``: import, list and fetch reference-data snapshots."""

from __future__ import annotations

import argparse

__all__ = ["register", "run_import", "run_list", "run_fetch"]

#: :data:`analysis.datasets.KINDS`, spelled out so that ``pathexp`` starts without loading
#: the dataset readers (tests/test_cli_errors.py checks that the two agree).
_KINDS = ("pfx2as", "peeringdb", "caida-ixp", "pch-subnets", "pch-membership", "as2org", "rir-delegated",
          "ip2country", "ipmap", "as-rel", "as-siblings", "asnames", "mrt", "bgpdump", "vrp")
#: One line per kind for ``datasets import --help``.
_KIND_HELP = {
    "pfx2as": "prefix-to-AS: CAIDA RouteViews prefix2as (*.pfx2as.gz), pyasn IPASN .dat, prefix/len<TAB>asn tables",
    "peeringdb": "PeeringDB API v2 JSON (ix, ixlan, ixpfx, netixlan, net, fac, netfac) or a dump",
    "caida-ixp": "CAIDA IXP dataset (ixs_*.jsonl)",
    "pch-subnets": "PCH IXP subnets (ixp_subnets.csv, ix_ip4.csv / ix_ip6.csv, ixp_exchange.csv)",
    "pch-membership": "PCH IXP membership (ixp_membership.csv)",
    "as2org": "CAIDA AS-to-organisation (*.as-org2info.txt or .jsonl)",
    "rir-delegated": "RIR delegation files (delegated-<rir>-[extended-]latest)",
    "ip2country": "iptoasn ip2country-v4.tsv / ip2country-v6.tsv",
    "ipmap": "RIPE IPmap router geolocation CSV (ip, city, country, lat, lon, score)",
    "as-rel": "CAIDA AS relationships, serial-1 or serial-2 (*.as-rel[2].txt)",
    "as-siblings": "sibling AS groups, one organisation's ASNs per line",
    "asnames": "AS names: pyasn asnames.json or asn<TAB>name tables (AS-Prefix asn_names)",
    "mrt": "BGP MRT files: RIS / RouteViews RIB dumps (bview, rib) and updates (plain, gz, bz2)",
    "bgpdump": "BGP in `bgpdump -m` one-line text (BGP4MP|ts|A|..., TABLE_DUMP2|ts|B|...)",
    "vrp": "RPKI VRPs: rpki-client / Routinator CSV or JSON, Cloudflare rpki.json",
}
#: :data:`analysis._download.FETCH_KINDS`, spelled out for the same reason (checked too).
_FETCH_KINDS = ("pfx2as", "peeringdb", "caida-ixp", "as2org", "rir-delegated", "mrt")


def register(sub: argparse._SubParsersAction) -> None:
    from analysis.cli._options import add_cache_dir_arg

    p = sub.add_parser(
        "datasets",
        help="reference datasets: import local files, list snapshots, fetch (online)",
        description=(
            "Reference data (prefix-to-AS, IXPs, AS organisations, RIR delegations) lives in "
            "dated snapshots in the cache directory (PATHEXP_CACHE_DIR, else the platform's user "
            "cache dir). Several imports build one snapshot; `pathexp annotate` uses the newest."
        ),
    )
    add_cache_dir_arg(p)
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    imp = s.add_parser("import", help="import local files of one kind into a snapshot",
                       description="Import local reference files of one kind into a snapshot. "
                                   "Kinds and the files they take:\n"
                                   + "\n".join(f"  {k:<15} {v}" for k, v in _KIND_HELP.items()),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    imp.add_argument("--kind", required=True, choices=_KINDS, metavar="KIND",
                     help="what the files are (see the list above)")
    imp.add_argument("paths", nargs="+", metavar="PATH", help="files of that kind (plain or compressed)")
    imp.add_argument("--snapshot", default=None, help="snapshot id (default: today's UTC date)")
    imp.add_argument("--replace", action="store_true", help="drop files imported earlier for this kind")
    imp.set_defaults(func=run_import)
    ls = s.add_parser("list", help="list snapshots with source, date, row counts and sha256")
    ls.set_defaults(func=run_list)
    f = s.add_parser("fetch", help="download a source from its public site (needs network)")
    f.add_argument("--kind", required=True, choices=_FETCH_KINDS, help="source to download")
    f.add_argument("--snapshot", default=None, help="snapshot id (default: today's UTC date)")
    f.add_argument("--date", default=None, help="data date YYYY-MM-DD (pfx2as, as2org: default the newest; mrt: the day)")
    f.add_argument("--rir", action="append", default=None, help="rir-delegated: registries to fetch (default: all five)")
    f.add_argument("--collector", default=None,
                   help="mrt: BGP collector, RIPE RIS rrcNN (e.g. rrc24) or RouteViews route-views* (needs --date)")
    f.add_argument("--from", dest="time_from", default="00:00", metavar="HH:MM",
                   help="mrt: first file time of --date, UTC (default 00:00)")
    f.add_argument("--to", dest="time_to", default="00:15", metavar="HH:MM",
                   help="mrt: end of the window, UTC, exclusive (default 00:15)")
    f.add_argument("--rib", action="store_true", help="mrt: RIB dumps (RIS bview, RouteViews rib) instead of updates")
    f.set_defaults(func=run_fetch)


def run_import(args: argparse.Namespace) -> int:
    from analysis.datasets import import_files

    snap = import_files(args.kind, args.paths, snapshot_id=args.snapshot, cache_dir=args.cache_dir,
                        replace=args.replace)
    m = snap.manifest(args.kind)
    rows = ", ".join(f"{k}={v}" for k, v in m["rows"].items())
    print(f"snapshot {snap.id}: {args.kind} imported ({rows})")
    if m["dropped"]:
        print("  set aside: " + ", ".join(f"{k}={v}" for k, v in m["dropped"].items()))
    return 0


def run_list(args: argparse.Namespace) -> int:
    from analysis.datasets import cache_root, list_snapshots

    snaps = list_snapshots(cache_dir=args.cache_dir)
    if not snaps:
        print(f"no snapshots in {cache_root(args.cache_dir) / 'snapshots'}")
        return 0
    for snap in snaps:
        print(f"{snap.id}  updated {snap.info.get('updated')}  digest {snap.digest[:16]}")
        for kind in snap.kinds:
            m = snap.manifest(kind)
            rows = ", ".join(f"{k}={v}" for k, v in m["rows"].items())
            print(f"  {kind:<15} date {m['date'] or '?':<10} {rows}")
            for src in m["sources"]:
                print(f"    {src['name']}  sha256 {src['sha256']}  {src['bytes']} bytes")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    from analysis._download import fetch

    snap = fetch(args.kind, snapshot_id=args.snapshot, cache_dir=args.cache_dir, date=args.date, rirs=args.rir,
                 collector=args.collector, window=(args.time_from, args.time_to), rib=args.rib)
    print(f"snapshot {snap.id}: {args.kind} fetched and imported")
    return 0
