"""Step-by-step progress of long library calls, for whoever wants to show it.

Library functions (ingest, annotate, analyze) report where they are with
``step("annotated %d of %d segments", k, n)``: an INFO record on the ``pathexp.progress``
logger, which does not propagate. Nothing is shown unless a caller attaches a handler —
the command line does, as a one-line spinner on a terminal (see
``analysis.cli._console.progress``), and prints nothing when its output is piped.
"""

from __future__ import annotations

import logging

__all__ = ["PROGRESS", "step"]

PROGRESS = logging.getLogger("pathexp.progress")
PROGRESS.propagate = False
PROGRESS.setLevel(logging.INFO)


def step(message: str, *args: object) -> None:
    """Report one step (``%``-style arguments, formatted only if someone listens)."""
    if PROGRESS.handlers:
        PROGRESS.info(message, *args)
