"""``pathexp campaign``: RIPE Atlas measurement campaigns (plan, submit, status, fetch, import)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["atlas_settings", "common_atlas_args", "register", "run"]

_HELP = (
    "Plan, submit, track and fetch RIPE Atlas traceroute campaigns described by a TOML spec "
    "(see probes/campaign_example.toml). The API key is read from RIPE_ATLAS_KEY or from "
    "the [atlas] key entry of a mode-0600 settings file; the server from --atlas-server or "
    "PATHEXP_ATLAS_SERVER (default atlas.ripe.net)."
)


def common_atlas_args(p: argparse.ArgumentParser, *, spec: str) -> None:
    if spec == "required":
        p.add_argument("spec", type=Path, metavar="SPEC", help="campaign spec (TOML)")
    elif spec == "optional":
        p.add_argument("spec", type=Path, metavar="SPEC", nargs="?", default=None,
                       help="campaign spec (TOML); or give --campaign")
    p.add_argument("--campaign", default=None, help="campaign name (instead of SPEC)")
    p.add_argument("--workspace", type=Path, default=None,
                   help="folder holding campaign workspaces (default: the spec's, else results/)")
    p.add_argument("--atlas-server", metavar="HOST[:PORT]", default=None,
                   help="Atlas API server (env PATHEXP_ATLAS_SERVER; default atlas.ripe.net)")
    p.add_argument("--ca-bundle", type=Path, default=None, metavar="PEM",
                   help="CA certificates to trust for the Atlas server (private CA)")
    p.add_argument("--config", type=Path, default=None, metavar="TOML",
                   help="settings file (default: <user config dir>/pathexp/config.toml)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--cache-dir", type=Path, default=None, metavar="DIR",
                   help="reference-data cache holding the snapshot [targets.sample] draws from "
                        "(default: PATHEXP_CACHE_DIR or the user cache)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("campaign", help="RIPE Atlas measurement campaigns", description=_HELP)
    csub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = csub.add_parser("plan", help="probe x target matrix and credit cost (writes nothing)")
    common_atlas_args(a, spec="required")
    a = csub.add_parser("submit", help="create the measurements (resumable, within budget)")
    common_atlas_args(a, spec="required")
    a.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    a = csub.add_parser("status", help="status of the campaign's measurements")
    common_atlas_args(a, spec="optional")
    a.add_argument("--offline", action="store_true", help="show recorded state, no API calls")
    a = csub.add_parser("fetch", help="fetch new results and ingest them")
    common_atlas_args(a, spec="optional")
    a.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = csub.add_parser("import", help="pull existing public measurements into a campaign")
    a.add_argument("msm_ids", nargs="+", type=int, metavar="MSM_ID",
                   help="ids of existing public Atlas measurements")
    a.add_argument("--since", type=_when, default=None, metavar="TIME",
                   help="fetch results from TIME on (ISO 8601 or Unix seconds; default: all of "
                        "a finished measurement, the last day of a running one)")
    common_atlas_args(a, spec="none")
    a.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _when(text: str) -> int:
    from datetime import datetime, timezone

    if text.isdigit():
        return int(text)
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (ISO 8601 or Unix seconds)") \
            from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return int(t.timestamp())


def atlas_settings(args: argparse.Namespace):  # noqa: ANN202
    from probes.config import load_settings

    return load_settings(path=args.config, server=args.atlas_server, ca_bundle=args.ca_bundle)


def _print_json(obj: object) -> None:
    import json

    print(json.dumps(obj, indent=2, sort_keys=True, default=str))


def run(args: argparse.Namespace) -> int:
    import sys

    from analysis.cli import campaign_from_args
    from analysis.targets import planned_sample
    from probes import campaign as cp
    from probes.atlas import AtlasClient
    from probes.errors import ConfigError

    settings = atlas_settings(args)
    client = AtlasClient(settings)
    if args.action == "plan":
        spec = cp.load_spec(args.spec, workspace=args.workspace)
        p = cp.plan(spec, client=client, settings=settings, resolver=cp.system_resolver,
                    sampler=planned_sample(cache_dir=args.cache_dir))
        balance = int(client.credits()["current_balance"]) if client.has_key else None
        if args.json:
            _print_json({**p.summary(), "balance": balance})
        else:
            print(cp.render_plan(p, balance=balance))
        return 0
    if args.action == "submit":
        spec = cp.load_spec(args.spec, workspace=args.workspace)

        def confirm(p: cp.Plan) -> bool:
            print(cp.render_plan(p), file=sys.stderr)
            if args.yes:
                return True
            if not sys.stdin.isatty():
                raise ConfigError("not submitting without confirmation: pass --yes")
            return input("submit these measurements? [y/N] ").strip().lower() in ("y", "yes")

        rep = cp.submit(spec, client=client, settings=settings, resolver=cp.system_resolver,
                        confirm=confirm, sampler=planned_sample(cache_dir=args.cache_dir))
        if args.json:
            _print_json(rep.as_dict())
        else:
            print(f"campaign {spec.name}: {rep.planned} measurement(s) planned, "
                  f"{rep.created} created now, {rep.adopted} adopted after an interrupted run, "
                  f"{rep.already} already created, {rep.failed} failed; credits committed "
                  f"{rep.committed_credits} of budget {rep.budget}")
            for f in rep.failures:
                print(f"  failed: {f}", file=sys.stderr)
        return 1 if rep.failed else 0
    if args.action == "status":
        camp = campaign_from_args(args)
        rows = cp.status(camp, client=None if args.offline else client)
        if args.json:
            _print_json(rows)
            return 0
        print(f"{'unit':<12} {'msm_id':>10} {'state':<9} {'status':<18} {'probes':>6} "
              f"{'cost':>8} {'records':>8}  target")
        for r in rows:
            print(f"{r['unit']:<12} {r['msm_id'] or '-':>10} {r['state']:<9} "
                  f"{(r['status'] or '-'):<18} {r['probes']:>6} {r['cost']:>8} "
                  f"{r['records_fetched']:>8}  {r['target']}")
        if rows:
            print(f"credits committed {rows[0]['committed_credits']} of budget "
                  f"{rows[0]['budget']}")
        return 0
    if args.action in ("fetch", "import"):
        camp = campaign_from_args(args)
        ids = None
        if args.action == "import":
            new = cp.import_measurements(camp, args.msm_ids, client=client, since=args.since)
            print(f"imported {len(new)} new measurement(s) into {camp.name}", file=sys.stderr)
            ids = args.msm_ids
        frep = cp.fetch(camp, client=client, settings=settings, msm_ids=ids,
                        progress=not args.no_progress and sys.stderr.isatty())
        if args.json:
            _print_json(frep.as_dict())
        else:
            print(f"campaign {camp.name}: {frep.measurements} measurement(s), {frep.windows} "
                  f"window(s), {frep.records} records received, {frep.added} new, "
                  f"{frep.duplicates} duplicates; {frep.done} measurement(s) complete")
            if frep.drops:
                print("  set aside: "
                      + ", ".join(f"{k} {v}" for k, v in sorted(frep.drops.items())))
            for e in frep.errors:
                print(f"  error: {e}", file=sys.stderr)
        return 1 if frep.errors else 0
    raise ConfigError(f"unknown campaign action {args.action!r}")  # pragma: no cover

