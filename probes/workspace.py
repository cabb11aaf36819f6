"""Where a campaign's files live.

A campaign workspace is ``<workspace>/<campaign>/``::

    raw/seg-NNNNNN.ndjson.zst      raw results, Atlas JSON, append-only (source of truth)
    traces/seg-NNNNNN.parquet      one row per traceroute   (probes.schema.TRACE_SCHEMA)
    hops/seg-NNNNNN.parquet        one row per reply/timeout (probes.schema.HOP_SCHEMA)
    ingest.json                    cumulative ingest counts, drops by reason
    probes.parquet                 probe metadata (Atlas API v2 probe objects)
    state.sqlite                   campaign state (Atlas measurements, cursors, credits)
    annotated/seg-NNNNNN.parquet   annotated hops, one file per hop segment (analysis)
    annotate.json                  snapshot used, counts of what could not be resolved
    paths/ exposure/ graph/ report/ exposure.json   written by :mod:`analysis`
    .staging/ .annotated.tmp/ .paths.tmp/   work folders of a run in progress; a run that
                                   was killed leaves them, the next run removes them

Only :mod:`probes.store` writes ``raw/``, ``traces/`` and ``hops/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from probes.errors import ConfigError

__all__ = ["Campaign", "DEFAULT_WORKSPACE"]

#: Default workspace folder, relative to the current directory.
DEFAULT_WORKSPACE = Path("results")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Campaign:
    """A campaign's workspace folder: ``workspace / name``.

    >>> Campaign("menog", Path("/tmp/ws")).hops_dir
    PosixPath('/tmp/ws/menog/hops')
    """

    name: str
    workspace: Path = DEFAULT_WORKSPACE

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(
                f"invalid campaign name {self.name!r}: use letters, digits, '.', '_' or '-'"
            )
        object.__setattr__(self, "workspace", Path(self.workspace))

    @property
    def root(self) -> Path:
        return self.workspace / self.name

    @property
    def raw_dir(self) -> Path:
        return self.root / "raw"

    @property
    def traces_dir(self) -> Path:
        return self.root / "traces"

    @property
    def hops_dir(self) -> Path:
        return self.root / "hops"

    @property
    def annotated_dir(self) -> Path:
        return self.root / "annotated"

    @property
    def paths_dir(self) -> Path:
        return self.root / "paths"

    @property
    def ingest_report(self) -> Path:
        return self.root / "ingest.json"

    @property
    def state_db(self) -> Path:
        return self.root / "state.sqlite"

    def glob(self, table: str) -> str:
        """DuckDB glob for one of the campaign's Parquet tables, e.g. ``hops``."""
        return str(self.root / table / "**" / "*.parquet")
