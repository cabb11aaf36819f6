"""``pathexp datasets``: import, list and fetch reference-data snapshots."""

from __future__ import annotations

import argparse

__all__ = ["register", "run_import", "run_list", "run_fetch"]

#: :data:`analysis.datasets.KINDS`, spelled out so that ``pathexp`` starts without loading
#: the dataset readers (tests/test_cli_errors.py checks that the two agree).
_KINDS = ("pfx2as", "peeringdb", "caida-ixp", "pch-subnets", "pch-membership", "as2org", "rir-delegated",
          "ip2country", "ipmap", "as-rel", "as-siblings")
#: :data:`analysis._download.FETCH_KINDS`, spelled out for the same reason (checked too).
_FETCH_KINDS = ("pfx2as", "peeringdb", "caida-ixp", "as2org", "rir-delegated")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "datasets",
        help="reference datasets: import local files, list snapshots, fetch (online)",
        description=(
            "Reference data (prefix-to-AS, IXPs, AS organisations, RIR delegations) lives in "
            "dated snapshots in the cache directory (PATHEXP_CACHE_DIR, else the platform's user "
            "cache dir). Several imports build one snapshot; `pathexp annotate` uses the newest."
        ),
    )
    p.add_argument("--cache-dir", default=None, help="cache root (default: PATHEXP_CACHE_DIR or the user cache dir)")
    s = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    imp = s.add_parser("import", help="import local files of one kind into a snapshot")
    imp.add_argument("--kind", required=True, choices=_KINDS)
    imp.add_argument("paths", nargs="+", metavar="PATH")
    imp.add_argument("--snapshot", default=None, help="snapshot id (default: today's UTC date)")
    imp.add_argument("--replace", action="store_true", help="drop files imported earlier for this kind")
    imp.set_defaults(func=run_import)
    ls = s.add_parser("list", help="list snapshots with source, date, row counts and sha256")
    ls.set_defaults(func=run_list)
    f = s.add_parser("fetch", help="download a source from its public site (needs network)")
    f.add_argument("--kind", required=True, choices=_FETCH_KINDS)
    f.add_argument("--snapshot", default=None)
    f.add_argument("--date", default=None, help="data date YYYY-MM-DD (pfx2as, as2org); default: newest")
    f.add_argument("--rir", action="append", default=None, help="rir-delegated: registries to fetch (default: all five)")
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

    snap = fetch(args.kind, snapshot_id=args.snapshot, cache_dir=args.cache_dir, date=args.date, rirs=args.rir)
    print(f"snapshot {snap.id}: {args.kind} fetched and imported")
    return 0
