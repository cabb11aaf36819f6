"""``python -m analysis.cli``: the ``pathexp`` command."""

from __future__ import annotations

import sys

from analysis.cli import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
