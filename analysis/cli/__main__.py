"""``python -m analysis.cli``: the ``pathexp`` command."""

from __future__ import annotations

from analysis.cli import console

if __name__ == "__main__":  # pragma: no cover
    console()
