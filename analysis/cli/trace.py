"""``pathexp trace``: local Paris traceroutes to many targets, stored as Atlas results."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    from analysis.cli import add_campaign_args

    p = sub.add_parser(
        "trace",
        help="traceroute from this host (Paris by default) into a campaign",
        description=(
            "Trace TARGETs (addresses or hostnames, resolved once) from this host with raw "
            "sockets, all concurrently under one packets-per-second cap, and store the "
            "results in the RIPE Atlas format in the campaign (origin 'local'), as "
            "`pathexp ingest` stores Atlas results. Needs root or CAP_NET_RAW."
        ),
    )
    p.add_argument("targets", nargs="*", metavar="TARGET", help="address or hostname")
    p.add_argument("--targets-file", type=Path, metavar="FILE",
                   help="file with one target per line ('#' starts a comment)")
    add_campaign_args(p)
    p.add_argument("--protocol", choices=("icmp", "udp", "tcp"), default="icmp",
                   help="probe packets: ICMP echo, UDP or TCP SYN (default icmp)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--classic", action="store_true",
                      help="classic traceroute: vary the flow per probe (default: Paris)")
    mode.add_argument("--flow-diversity", type=int, default=1, metavar="N",
                      help="Paris flows per target (paris_id 1..N, one result each)")
    p.add_argument("--first-hop", type=int, default=1, metavar="TTL",
                   help="TTL (hop limit) of the first probe (default 1)")
    p.add_argument("--max-hops", type=int, default=32, metavar="TTL",
                   help="largest TTL probed (default 32)")
    p.add_argument("--attempts", type=int, default=3, help="probes per hop (default 3)")
    p.add_argument("--timeout", type=float, default=1.0, metavar="S",
                   help="seconds to wait for each reply (default 1)")
    p.add_argument("--pps", type=float, default=100.0,
                   help="global cap on probes per second (default 100)")
    p.add_argument("--concurrency", type=int, default=64, help="traces in flight (default 64)")
    p.add_argument("--stop-after-silent", type=int, default=5, metavar="N",
                   help="stop a trace after N silent hops in a row (0: never; default 5)")
    p.add_argument("--port", type=int, help="destination port (UDP 33435, TCP 80 by default)")
    p.add_argument("--sport", type=int, help="source port / ICMP id of flow 1")
    p.add_argument("-6", "--ipv6", action="store_true",
                   help="resolve host names to IPv6 (address literals keep their family)")
    p.add_argument("--allow-private", action="store_true",
                   help="allow private, reserved, documentation and multicast targets")
    p.add_argument("--probe-config", type=Path, metavar="FILE",
                   help="TOML file with a [local_probe] table (prb_id, latitude, longitude, "
                        "country_code, asn_v4); default: the pathexp settings file if present")
    p.add_argument("--probe-id", type=int, help="local probe id (default 2000000000)")
    p.add_argument("--probe-lat", type=float, help="local probe latitude")
    p.add_argument("--probe-lon", type=float, help="local probe longitude")
    p.add_argument("--probe-country", help="local probe country code")
    p.set_defaults(func=run)


def _targets(args: argparse.Namespace) -> list[str]:
    from probes.errors import ConfigError
    from probes.targets import read_targets

    targets = list(args.targets)
    if args.targets_file is not None:
        targets += read_targets(args.targets_file)
    if not targets:
        raise ConfigError("no targets: give TARGET arguments or --targets-file")
    return targets


def run(args: argparse.Namespace) -> int:
    from analysis.cli import campaign_from_args
    from probes.local import TraceOptions, trace_campaign
    from probes.metadata import local_probe

    campaign = campaign_from_args(args)
    options = TraceOptions(
        protocol=args.protocol,
        paris=not args.classic,
        first_hop=args.first_hop,
        max_hops=args.max_hops,
        attempts=args.attempts,
        timeout=args.timeout,
        pps=args.pps,
        concurrency=args.concurrency,
        stop_after_silent=args.stop_after_silent,
        allow_private=args.allow_private,
        flow_diversity=args.flow_diversity,
        port=args.port,
        sport=args.sport,
        ipv6=args.ipv6,
    )
    probe = local_probe(
        args.probe_config,
        overrides={
            "prb_id": args.probe_id,
            "latitude": args.probe_lat,
            "longitude": args.probe_lon,
            "country_code": args.probe_country,
        },
    )
    run_, report = trace_campaign(campaign, _targets(args), options=options, probe=probe)
    reached = run_.reached
    stats = run_.stats
    print(
        f"traced {len(run_.results)} target flow(s) from {run_.src_addr} "
        f"(probe {probe.prb_id}): {reached} reached the destination; "
        f"{stats['probes_sent']} probes, {stats['replies_matched']} replies, "
        f"{stats['timeouts']} timeouts"
    )
    print(
        f"stored in {campaign.root}: {report.added} new result(s), "
        f"{report.duplicates} duplicate(s), {report.hop_rows} hop rows"
        + (f"; set aside: {dict(report.drops)}" if report.drops else "")
    )
    return 0
