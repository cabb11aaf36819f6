"""Where a campaign's files live: the layout, defined once, on :class:`Campaign`.

A campaign workspace is ``<workspace>/<campaign>/`` (the :class:`Campaign` property that
names each entry on the right)::

    raw/seg-NNNNNN.ndjson.zst      raw results, Atlas JSON, append-only   raw_dir
                                   (the source of truth)
    traces/seg-NNNNNN.parquet      one row per traceroute                 traces_dir
                                   (probes.schema.TRACE_SCHEMA)
    hops/seg-NNNNNN.parquet        one row per reply/timeout              hops_dir
                                   (probes.schema.HOP_SCHEMA)
    ingest.json                    cumulative ingest counts, drops        ingest_report
    probes.parquet                 probe metadata (Atlas API v2 probes)   probes_parquet
    state.sqlite                   campaign state (Atlas measurements,    state_db
                                   cursors, credits)
    annotated/seg-NNNNNN.parquet   annotated hops, one file per hop       annotated_dir
                                   segment (analysis)
    annotate.json                  snapshot used, counts of what could    annotate_json
                                   not be resolved
    paths/paths.parquet            one row per traceroute (analysis)      paths_dir, paths_parquet
    exposure/<table>.parquet|.csv  exposure tables (analysis)             exposure_dir, exposure_table()
    exposure.json                  headline figures, method, drops        exposure_json
    graph/as_graph.graphml         AS/IXP graph and its flagged part      graph_dir, as_graph_graphml,
    graph/flagged_subgraph.graphml                                        flagged_subgraph_graphml
    report/index.html              self-contained HTML report             report_dir, report_html
    .staging/                      the store's ingest work folder         staging_dir
    .annotated.tmp/ .paths.tmp/    a folder being written, swapped in     stage_dir(folder)
    .exposure.tmp/ .graph.tmp/     for ``folder`` when complete
    .annotated.old/ ...            the folder being replaced, for an instant  previous_dir(folder)
    <folder>/.generation.json      the run that wrote an analysis folder  generation_marker(folder)
    .lock                          the campaign lock (ingest, annotate,   lock_file
                                   analyze hold it; report reads under it)

A run that was killed leaves its work folders; the next run removes them. Only
:mod:`probes.store` writes ``raw/``, ``traces/``, ``hops/``, ``ingest.json`` and
``probes.parquet``; only :mod:`analysis.campaign_io` writes the analysis folders.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from probes.errors import ConfigError, StoreError

__all__ = ["Campaign", "DEFAULT_WORKSPACE", "TABLE_FOLDERS"]

#: Default workspace folder, relative to the current directory.
DEFAULT_WORKSPACE = Path("results")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: The table folders of a campaign, which must be real folders inside it (never symbolic
#: links: recovery and the analysis stages delete files in them).
TABLE_FOLDERS = ("raw", "traces", "hops", "annotated", "paths", "exposure", "graph", "report")


@dataclass(frozen=True)
class Campaign:
    """A campaign's workspace folder, ``workspace / name``, and the name of everything in it.

    Each property names one file or folder of the layout drawn in the module docstring;
    code spells no file or folder name of a campaign itself.

    >>> Campaign("menog", Path("/tmp/ws")).hops_dir
    PosixPath('/tmp/ws/menog/hops')
    """

    name: str
    workspace: Path = DEFAULT_WORKSPACE

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ConfigError(
                f"invalid campaign name {self.name!r}: use letters, digits, '.', '_' or '-'"
            )
        object.__setattr__(self, "workspace", Path(self.workspace))

    @property
    def root(self) -> Path:
        """The campaign folder, ``<workspace>/<name>``."""
        return self.workspace / self.name

    # ------------------------------------------------------------------ written by probes
    @property
    def raw_dir(self) -> Path:
        """``raw/``: raw results, append-only compressed NDJSON segments."""
        return self.root / "raw"

    @property
    def traces_dir(self) -> Path:
        """``traces/``: the traceroute table, one Parquet file per segment."""
        return self.root / "traces"

    @property
    def hops_dir(self) -> Path:
        """``hops/``: the hop table, one Parquet file per segment."""
        return self.root / "hops"

    @property
    def ingest_report(self) -> Path:
        """``ingest.json``: cumulative ingest counts and drops by reason."""
        return self.root / "ingest.json"

    @property
    def probes_parquet(self) -> Path:
        """``probes.parquet``: probe metadata (Atlas API v2 probe objects)."""
        return self.root / "probes.parquet"

    @property
    def state_db(self) -> Path:
        """``state.sqlite``: campaign state (measurements, cursors, credit ledger)."""
        return self.root / "state.sqlite"

    @property
    def staging_dir(self) -> Path:
        """``.staging/``: the store's work folder of an ingest in progress."""
        return self.root / ".staging"

    # ---------------------------------------------------------------- written by analysis
    @property
    def annotated_dir(self) -> Path:
        """``annotated/``: annotated hops, one Parquet file per hop segment."""
        return self.root / "annotated"

    @property
    def annotate_json(self) -> Path:
        """``annotate.json``: the snapshot annotation used, counts by reason."""
        return self.root / "annotate.json"

    @property
    def paths_dir(self) -> Path:
        """``paths/``: the paths table's folder."""
        return self.root / "paths"

    @property
    def paths_parquet(self) -> Path:
        """``paths/paths.parquet``: one row per traceroute."""
        return self.paths_dir / "paths.parquet"

    @property
    def owners_parquet(self) -> Path:
        """``paths/owners.parquet``: the owner AS inferred for every reply address."""
        return self.paths_dir / "owners.parquet"

    @property
    def exposure_dir(self) -> Path:
        """``exposure/``: the exposure tables, each as Parquet and CSV."""
        return self.root / "exposure"

    def exposure_table(self, name: str, suffix: str = ".parquet") -> Path:
        """``exposure/<name><suffix>``, e.g. ``exposure/pop_exposure.csv``."""
        return self.exposure_dir / f"{name}{suffix}"

    @property
    def exposure_json(self) -> Path:
        """``exposure.json``: headline figures, method and drops of the analysis."""
        return self.root / "exposure.json"

    @property
    def graph_dir(self) -> Path:
        """``graph/``: the GraphML files."""
        return self.root / "graph"

    @property
    def as_graph_graphml(self) -> Path:
        """``graph/as_graph.graphml``: the AS/IXP graph of all paths."""
        return self.graph_dir / "as_graph.graphml"

    @property
    def flagged_subgraph_graphml(self) -> Path:
        """``graph/flagged_subgraph.graphml``: the flagged nodes and their neighbours."""
        return self.graph_dir / "flagged_subgraph.graphml"

    @property
    def report_dir(self) -> Path:
        """``report/``: the HTML report's folder."""
        return self.root / "report"

    @property
    def report_html(self) -> Path:
        """``report/index.html``: the self-contained HTML report."""
        return self.report_dir / "index.html"

    def stage_dir(self, folder: Path) -> Path:
        """Work folder in which ``folder`` is written before it replaces it: ``.<name>.tmp``.

        >>> c = Campaign("menog", Path("/tmp/ws"))
        >>> c.stage_dir(c.annotated_dir)
        PosixPath('/tmp/ws/menog/.annotated.tmp')
        """
        folder = Path(folder)
        return folder.parent / f".{folder.name}.tmp"

    def previous_dir(self, folder: Path) -> Path:
        """Where ``folder`` is moved while its replacement is renamed in: ``.<name>.old``.

        >>> c = Campaign("menog", Path("/tmp/ws"))
        >>> c.previous_dir(c.paths_dir)
        PosixPath('/tmp/ws/menog/.paths.old')
        """
        folder = Path(folder)
        return folder.parent / f".{folder.name}.old"

    @staticmethod
    def generation_marker(folder: Path) -> Path:
        """``<folder>/.generation.json``: which run of which stage wrote an analysis folder.

        Written last into the work folder, so a folder that has it is complete.
        """
        return Path(folder) / ".generation.json"

    @property
    def lock_file(self) -> Path:
        """``.lock``: the campaign lock (see :func:`probes.store.campaign_lock`)."""
        return self.root / ".lock"

    def check_folders(self) -> None:
        """Refuse a campaign whose table folders are symbolic links or lie outside it.

        Recovery and the analysis stages delete and replace files in these folders; a
        link could point them at another campaign's tables.

        Raises
        ------
        probes.errors.StoreError
            Naming the folder and where it points.
        """
        root = self.root.resolve()
        for name in TABLE_FOLDERS:
            folder = self.root / name
            if folder.is_symlink():
                raise StoreError(
                    f"campaign {self.name!r}: {folder} is a symbolic link (to {os.readlink(folder)}); "
                    "a campaign's table folders must be real folders inside it"
                )
            if folder.exists() and folder.resolve().parent != root:
                raise StoreError(f"campaign {self.name!r}: {folder} resolves outside {root}")

    def glob(self, table: str) -> str:
        """DuckDB glob for one of the campaign's Parquet tables, e.g. ``hops``."""
        return str(self.root / table / "**" / "*.parquet")
