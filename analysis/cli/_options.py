"""Shared options: the engine of ``pathexp ingest|annotate|analyze`` (where the batch work runs),
counts, and the reference-data cache directory.

``--engine dask [--scheduler ADDRESS] [--workers N]`` run the same pure table functions
(:func:`probes.parse.parse_lines`, :func:`analysis.annotate.annotate`,
:func:`analysis.paths.build_paths`) over the same partitions -- input files for ingest, the
store's segments for annotate and analyze -- on Dask workers instead of one after the other
in this process; the files written are the same. Without ``--scheduler`` a
:class:`distributed.LocalCluster` of ``--workers`` single-threaded processes (default: one
per core, dashboard off) is started for the run. With a scheduler address (a cluster
started by ``dask-jobqueue`` on SLURM, or on Kubernetes) the workers must have pathexp
installed and see the campaign folder at the same path (a shared file system).

The library functions take the same choice as keyword options ``engine``, ``scheduler``
and ``workers`` (:func:`engine_options` maps the parsed arguments onto them); the context
manager behind them is :func:`probes.engine.open_runner`.
"""

from __future__ import annotations

import argparse
from typing import Any

from probes.engine import ENGINES

__all__ = ["add_cache_dir_arg", "add_engine_args", "engine_options", "positive_int"]


def add_engine_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--engine``, ``--scheduler`` and ``--workers`` to a subcommand."""
    group = parser.add_argument_group("engine")
    group.add_argument("--engine", choices=ENGINES, default="local",
                       help="where the batch work runs: this process (default) or Dask distributed")
    group.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 (default: start a LocalCluster)")
    group.add_argument("--workers", type=positive_int, default=None, metavar="N",
                       help="worker processes of the LocalCluster (default: one per core)")


def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``engine``, ``scheduler`` and ``workers`` keyword options from parsed arguments."""
    return {"engine": args.engine, "scheduler": args.scheduler, "workers": args.workers}


def positive_int(text: str) -> int:
    """An argparse ``type``: a whole number >= 1, else a one-line usage error.

    >>> positive_int("3")
    3
    >>> positive_int("-5")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be a whole number >= 1, got '-5'
    """
    value = int(text) if text.lstrip("-").isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def add_cache_dir_arg(parser: argparse.ArgumentParser) -> None:
    """``--cache-dir DIR``: where the reference-data snapshots are."""
    parser.add_argument("--cache-dir", default=None, metavar="DIR",
                        help="reference-data cache root (default: PATHEXP_CACHE_DIR or the user cache dir)")
