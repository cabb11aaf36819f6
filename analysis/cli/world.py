"""``pathexp world generate OUT [--seed N] [--size small|large] [--artefacts | --clean]``."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "world",
        help="the deterministic synthetic world (offline demo data with ground truth)",
        description="Generate the synthetic world: Atlas results and metadata, reference "
        "data in the real formats, and the ground truth. Same seed, same bytes.",
    )
    sub = parser.add_subparsers(dest="world_command", metavar="ACTION", required=True)
    gen = sub.add_parser("generate", help="write the world into a folder")
    gen.add_argument("out", type=Path, help="output folder (created)")
    gen.add_argument("--seed", type=int, default=0, help="world seed (default: 0)")
    gen.add_argument(
        "--size",
        choices=("small", "large"),
        default="small",
        help="small: ~7k traceroutes in seconds; large: ~100k traceroutes (default: small)",
    )
    mode = gen.add_mutually_exclusive_group()
    mode.add_argument(
        "--artefacts",
        dest="artefacts",
        action="store_true",
        help="model real traceroute artefacts (neighbour-numbered links, third-party replies, "
        "silent and rate-limiting routers, invisible MPLS, siblings, moved IXP ports, missing "
        "PeeringDB facilities, imprecise probe locations) at the default rates",
    )
    mode.add_argument(
        "--clean",
        dest="artefacts",
        action="store_false",
        help="the clean world, every router answering from its own interface (the default)",
    )
    gen.set_defaults(func=run, artefacts=False)


def run(args: argparse.Namespace) -> int:
    from probes.world import Artefacts, generate_world, read_truth

    art = Artefacts() if args.artefacts else None
    manifest = generate_world(args.out, seed=args.seed, size=args.size, artefacts=art)
    c = manifest.counts
    print(
        f"synthetic world (seed {manifest.seed}, {manifest.size}) written to {manifest.out_dir}: "
        f"{c['ases']} ASes, {c['ixps']} IXPs, {c['probes']} probes ({c['anchors']} anchors), "
        f"{c['measurements']} measurements, {c['traces']} traceroutes "
        f"({c['traces_diverted']} diverted)"
    )
    truth = read_truth(args.out).world
    wa = truth.get("world_artefacts") or {}
    if wa.get("enabled"):
        r = wa["realised"]
        print(
            f"artefacts: {r['customer_numbered_links']} customer-numbered links, "
            f"{r['hops:third-party']} third-party hops, {r['mpls_invisible_asns']} MPLS-invisible "
            f"ASes, {r['ixp_ports_moved']} moved IXP ports, {r['facilities_omitted']} facilities "
            f"missing from PeeringDB, {r['probes_misplaced']} misplaced probes"
        )
    else:
        print("clean world (no measurement artefacts; --artefacts adds them)")
    start, end = manifest.window
    print(f"diversion window (AS{truth['diversion']['leaker_asn']} leak): {start} .. {end}")
    for fam, parts in truth["exposure"].items():
        b = parts["baseline"]["transit"]["share"]
        w = parts["window"]["transit"]["share"]
        us = parts["all"]["transit_us_pop"]["share"]
        print(f"  {fam:14s} transit share baseline {b:.3f}  window {w:.3f}  at a US PoP {us:.3f}")
    return 0
