"""The command line's output: consoles that fit the terminal, and a progress spinner.

:func:`make_console` follows the terminal's width and uses 120 columns when the output is
piped (rich's default of 80 wraps the tables). :func:`progress` shows the library's steps
(:mod:`probes.progress`) as one updating line on standard error while a command runs,
only when standard error is a terminal.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console

from probes.progress import PROGRESS

__all__ = ["PIPED_WIDTH", "make_console", "progress"]

#: Columns used when the output is not a terminal.
PIPED_WIDTH = 120


def make_console(*, stderr: bool = False, **kw: Any) -> Console:
    """A rich Console on stdout (or stderr): the terminal's width, else :data:`PIPED_WIDTH`."""
    stream = sys.stderr if stderr else sys.stdout
    tty = hasattr(stream, "isatty") and stream.isatty()
    return Console(stderr=stderr, width=None if tty else PIPED_WIDTH, **kw)


class _StatusHandler(logging.Handler):
    def __init__(self, status: Any, title: str) -> None:
        super().__init__(logging.INFO)
        self.status, self.title, self.start = status, title, time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            elapsed = time.monotonic() - self.start
            # naming the spinner makes rich draw the line now, not at its next tick
            self.status.update(f"{self.title}: {record.getMessage()} [dim]({elapsed:.0f} s)[/dim]", spinner="dots")
        except Exception:  # noqa: BLE001 - progress must never break the command
            self.handleError(record)


@contextmanager
def progress(title: str) -> Iterator[None]:
    """Show the library's steps under ``title`` while the block runs (terminals only)."""
    if not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        yield
        return
    console = Console(stderr=True)
    with console.status(title) as status:
        handler = _StatusHandler(status, title)
        PROGRESS.addHandler(handler)
        try:
            yield
        finally:
            PROGRESS.removeHandler(handler)
