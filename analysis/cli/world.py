"""``pathexp world generate OUT [--seed N] [--size small|large]``: write the synthetic world."""

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
    gen.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from probes.world import generate_world, read_truth

    manifest = generate_world(args.out, seed=args.seed, size=args.size)
    c = manifest.counts
    print(
        f"synthetic world (seed {manifest.seed}, {manifest.size}) written to {manifest.out_dir}: "
        f"{c['ases']} ASes, {c['ixps']} IXPs, {c['probes']} probes ({c['anchors']} anchors), "
        f"{c['measurements']} measurements, {c['traces']} traceroutes "
        f"({c['traces_diverted']} diverted)"
    )
    truth = read_truth(args.out).world
    start, end = manifest.window
    print(f"diversion window (AS{truth['diversion']['leaker_asn']} leak): {start} .. {end}")
    for fam, parts in truth["exposure"].items():
        b = parts["baseline"]["transit"]["share"]
        w = parts["window"]["transit"]["share"]
        us = parts["all"]["transit_us_pop"]["share"]
        print(f"  {fam:14s} transit share baseline {b:.3f}  window {w:.3f}  at a US PoP {us:.3f}")
    return 0
