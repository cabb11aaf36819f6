"""The ``pathexp`` console command: a thin layer over the library.

Each subcommand lives in its own module in :mod:`analysis._commands` and exposes
``register(subparsers)``; this module discovers them, parses arguments, and turns the
library's errors into one-line messages. No logic lives only here.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence
from pathlib import Path

from analysis.errors import AnalysisError
from probes.errors import ProbeError
from probes.workspace import DEFAULT_WORKSPACE, Campaign

__all__ = ["main", "build_parser", "add_campaign_args", "campaign_from_args"]


def add_campaign_args(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """Add ``--campaign NAME`` and ``--workspace DIR`` to a subcommand."""
    parser.add_argument("--campaign", required=required, help="campaign name")
    parser.add_argument(
        "--workspace",
        type=Path,
        default=DEFAULT_WORKSPACE,
        help=f"folder holding campaign workspaces (default: {DEFAULT_WORKSPACE}/)",
    )


def campaign_from_args(args: argparse.Namespace) -> Campaign:
    return Campaign(args.campaign, args.workspace)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pathexp",
        description="Measure transit exposure of US-bound paths to flagged carriers.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    package = importlib.import_module("analysis._commands")
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"analysis._commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except (ProbeError, AnalysisError) as exc:
        print(f"pathexp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the environment: a path that is a file, a full disk, no permission
        where = f": {exc.filename}" if exc.filename else ""
        print(f"pathexp {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pathexp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
