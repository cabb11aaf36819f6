"""The ``pathexp`` console command: a thin layer over the library.

It parses arguments, calls library functions and prints; no logic lives only here, so a
notebook can do whatever a command does. The room::

    analysis/cli/__init__.py   main, the top-level parser, the shared options
                               (--campaign/--workspace) and the one Campaign builder
    analysis/cli/_options.py   the engine options (--engine, --scheduler, --workers)
    analysis/cli/_summary.py   rich summaries printed after ingest / trace
    analysis/cli/<command>.py  one module per subcommand: analyze, annotate, campaign,
                               datasets, demo, ingest, probes, report, show, trace, world

A command module defines ``register(subparsers)``, which adds its parser and sets
``func``; that function takes the parsed arguments, calls the library and prints, and
returns the exit code. :func:`main` turns the library's errors (the roots
:class:`probes.errors.ProbeError` and :class:`analysis.errors.AnalysisError`, and the
environment's :class:`OSError`) into one-line messages with exit code 2.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from analysis.cli._options import add_engine_args, engine_options
from analysis.errors import AnalysisError
from probes.errors import EXIT_NETWORK, ConfigError, NetworkUnavailable, ProbeError
from probes.workspace import DEFAULT_WORKSPACE, Campaign

#: Exit code when the reader of stdout went away (128 + SIGPIPE, as a shell reports a tool killed by it).
EXIT_BROKEN_PIPE = 141

__all__ = [
    "main",
    "console",
    "exit_quickly",
    "build_parser",
    "add_campaign_args",
    "add_engine_args",
    "campaign_from_args",
    "engine_options",
]

#: The subcommands, one module each in this package, in the order ``--help`` lists them.
_COMMANDS = ("analyze", "annotate", "bgp", "campaign", "datasets", "demo", "ingest", "probes", "report",
             "show", "trace", "world")


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
    """The campaign a command works on, from its parsed arguments.

    Every command builds its :class:`~probes.workspace.Campaign` here. With a campaign
    spec (``args.spec``, the ``campaign`` command) it is the spec's campaign, placed in
    ``--workspace`` if given, else where the spec says; ``--campaign``, if also given, must
    name the same campaign. Otherwise it is ``--campaign`` in ``--workspace`` (default
    :data:`~probes.workspace.DEFAULT_WORKSPACE`).

    Raises
    ------
    probes.errors.ConfigError
        Neither a spec nor ``--campaign``, a ``--campaign`` that differs from the spec's
        name, an invalid campaign name, or a spec that cannot be read.
    """
    name = getattr(args, "campaign", None)
    workspace = getattr(args, "workspace", None)
    if getattr(args, "spec", None) is not None:
        from probes.campaign import load_spec

        spec = load_spec(args.spec, workspace=workspace)
        if name and name != spec.name:
            raise ConfigError(f"--campaign {name} differs from the spec's name {spec.name!r}")
        return spec.campaign
    if not name:
        raise ConfigError("give a campaign spec or --campaign NAME")
    return Campaign(name, workspace or DEFAULT_WORKSPACE)


#: Examples shown at the end of each command's ``--help`` (commands may set their own).
EXAMPLES = {
    "analyze": ["pathexp analyze --campaign menog", "pathexp analyze --campaign menog --bootstrap 2000 --seed 1",
                "pathexp analyze --campaign menog --engine dask --workers 2"],
    "annotate": ["pathexp annotate --campaign menog", "pathexp annotate --campaign menog --snapshot 2026-12-03"],
    "bgp summary": ["pathexp bgp summary", "pathexp bgp summary --snapshot ris-2020 --json"],
    "bgp compare": ["pathexp bgp compare --campaign menog --snapshot ris-2020"],
    "bgp rov": ["pathexp bgp rov --campaign menog --snapshot rpki-2026-12-01"],
    "campaign plan": ["pathexp campaign plan probes/campaign_example.toml"],
    "campaign submit": ["pathexp campaign submit my-campaign.toml --yes"],
    "campaign status": ["pathexp campaign status --campaign my-campaign --offline"],
    "campaign fetch": ["pathexp campaign fetch my-campaign.toml"],
    "campaign import": ["pathexp campaign import 1033154 --campaign wiki",
                        "pathexp campaign import 5001 5004 --campaign roots --since 2026-12-01"],
    "datasets import": ["pathexp datasets import --kind pfx2as routeviews-rv2-20200201-1200.pfx2as.gz",
                        "pathexp datasets import --kind ip2country ip2country-v4.tsv.gz ip2country-v6.tsv.gz"],
    "datasets list": ["pathexp datasets list"],
    "datasets fetch": ["pathexp datasets fetch --kind pfx2as --date 2020-02-01",
                       "pathexp datasets fetch --kind mrt --collector rrc24 --date 2020-08-09 --from 03:20 --to 04:30"],
    "demo": ["pathexp demo", "pathexp demo --size large --workspace /tmp/demo", "pathexp demo --clean-world"],
    "ingest": ["pathexp ingest results.ndjson.xz --campaign menog",
               "pathexp ingest bundle.json --campaign wiki --probes probes.json",
               "traceroute -n example.org | pathexp ingest - --campaign mine"],
    "report": ["pathexp report --campaign menog", "pathexp report --campaign menog --out paper/report.html"],
    "show": ["pathexp show --campaign demo --workspace results/demo-ws --limit 2",
             "pathexp show --campaign menog --probe 6001 --dst 8.8.8.8 --format json"],
    "trace": ["sudo pathexp trace 198.51.100.7 --campaign lab --allow-private",
              "sudo pathexp trace --targets-file us.txt --campaign local --protocol udp --flow-diversity 4"],
    "world generate": ["pathexp world generate /tmp/world --seed 1 --artefacts"],
}


class _Formatter(argparse.HelpFormatter):
    """Wraps descriptions as usual but keeps the example lines of an epilog as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("example"):
            return "\n".join(indent + line for line in text.splitlines())
        return super()._fill_text(text, width, indent)


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):  # noqa: ANN202
    """Every command parser that takes no further subcommand, with its name path."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, child in action.choices.items():
            yield from _leaves(child, (*path, name))


def build_parser() -> argparse.ArgumentParser:
    """The ``pathexp`` parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="pathexp",
        description="Measure transit exposure of US-bound paths to flagged carriers.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}",
                        help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    for path, leaf in _leaves(parser):
        lines = EXAMPLES.get(" ".join(path))
        if lines and not leaf.epilog:
            leaf.epilog = "examples:\n" + "\n".join(f"  {x}" for x in lines)
            if leaf.formatter_class is argparse.HelpFormatter:
                leaf.formatter_class = _Formatter
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pathexp")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown (not installed)"


def _stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (poll reports an error on it)."""
    import select

    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no real stdout (captured, closed)
        return False


def console() -> NoReturn:
    """The ``pathexp`` executable: :func:`main`, then :func:`exit_quickly` with its code."""
    exit_quickly(main())


def exit_quickly(code: int) -> NoReturn:
    """End this process with ``code`` once a command has returned.

    It first does what the interpreter's own shutdown does: it waits for the process's
    threads (and stops the thread pools' idle workers), runs the ``atexit`` handlers
    (logging, Dask, temporary folders) and flushes the output. Then it ends without
    freeing every module and object one by one, which took 0.05-0.1 s after an ingest or
    an analyze; the kernel takes the memory back at once. Where this interpreter lacks
    those hooks, or the output cannot be flushed, it exits as usual.
    """
    shutdown = getattr(threading, "_shutdown", None)
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if shutdown is None or run_exit_handlers is None:
        sys.exit(code)
    shutdown()
    run_exit_handlers()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)  # the interpreter's exit reports it, as it would have
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pathexp`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError as exc:
        if not _stdout_gone():  # a socket closed on us, not our reader: an error like any other
            print(f"pathexp {args.command}: error: connection closed by the other side ({exc})", file=sys.stderr)
            return 2
        # the reader of our output went away (`| head`): stop quietly, like other Unix tools
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        return EXIT_BROKEN_PIPE
    except (ProbeError, AnalysisError) as exc:
        print(f"pathexp {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_NETWORK if isinstance(exc, NetworkUnavailable) else 2
    except OSError as exc:  # the environment: a path that is a file, a full disk, no permission
        where = f": {exc.filename}" if exc.filename else ""
        print(f"pathexp {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pathexp {args.command}: interrupted", file=sys.stderr)
        return 130
