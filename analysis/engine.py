"""Temporary shim (issue 12): the engine options moved to :mod:`analysis.cli`, the runner
is :mod:`probes.engine`'s. Removed with the other shims."""

from __future__ import annotations

from analysis.cli import add_engine_args, engine_options
from probes.engine import ENGINES, Runner, open_runner

__all__ = ["ENGINES", "Runner", "open_runner", "add_engine_args", "engine_options"]
