"""Temporary shim: moved to :mod:`probes.fileio`."""

from __future__ import annotations

from probes.fileio import *  # noqa: F403
from probes.fileio import (  # noqa: F401
    PARQUET_OPTIONS,
    atomic_open,
    atomic_path,
    write_bytes,
    write_json,
    write_parquet,
)
