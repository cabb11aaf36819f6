"""The campaign I/O edge of the analysis stages: the one module that reads and writes a
campaign's analysis folders.

The stages themselves are pure functions over tables (:func:`analysis.annotate.annotate`,
:func:`analysis.paths.build_paths`, :mod:`analysis.metrics`, :mod:`analysis.graph`,
:func:`analysis.report.render_html`); this module runs them over a campaign workspace
(:class:`probes.workspace.Campaign`, whose properties name every file and folder below),
segment by segment, locally or on Dask workers (:func:`probes.engine.open_runner`)::

    <campaign>/                           Campaign property
      hops/seg-NNNNNN.parquet         r   hops_dir            (probes.store)
      traces/seg-NNNNNN.parquet       r   traces_dir          (probes.store)
      probes.parquet                  r   probes_parquet      (probes.store.read_probe_meta)
      ingest.json                     r   ingest_report
      annotated/seg-NNNNNN.parquet    rw  annotated_dir       annotate_campaign, read_annotated
      annotate.json                   rw  annotate_json       annotate_campaign
      paths/paths.parquet             rw  paths_parquet       analyze_campaign
      exposure/<table>.parquet|.csv   rw  exposure_table()    analyze_campaign
      exposure.json                   rw  exposure_json       analyze_campaign
      graph/as_graph.graphml          rw  as_graph_graphml    analyze_campaign
      graph/flagged_subgraph.graphml  w   flagged_subgraph_graphml
      report/index.html               w   report_html         write_report
      .annotated.tmp/ .paths.tmp/     w   stage_dir(folder)   the folder being written
      .exposure.tmp/ .graph.tmp/

Every output folder (``annotated/``, ``paths/``, ``exposure/``, ``graph/``) is written the
same way (:func:`_staged`): into its work folder ``.<name>.tmp/``, emptied first (a killed
run leaves it), with the run's ``.generation.json`` last; then the old folder is moved to
``.<name>.old/``, the work folder renamed onto it and the old one removed (a run killed
between the two renames leaves ``.<name>.old/``, which the next run puts back). The
stage's manifest (``annotate.json``, ``exposure.json``) is written last of all, so it
names a complete set of folders (see :mod:`analysis.lineage`).

annotate and analyze hold the campaign lock (:func:`probes.store.campaign_lock`, the one
ingest holds) for their whole run: a second writer waits. analyze refuses an
``annotated/`` that is not current (store, registry or snapshot changed since annotate,
or annotate was interrupted) unless ``force=True``, which re-annotates first with the
snapshot and registry annotate recorded. :func:`load_campaign` reads an analysed campaign
back for the report and the notebooks, under the lock taken shared, and refuses outputs
of mixed or stale generations; :func:`write_report` with ``force=True`` recomputes the
stale stages first (:func:`refresh_campaign`).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import shutil
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from analysis import bgp, lineage, plots
from analysis._hop_scans import address_rows, file_columns, near_discs, rtt_discs, scan_files
from analysis._tables import (
    ANNOTATED_OPTIONAL,
    ANNOTATED_REQUIRED,
    STALE_FLAGS,
    connect,
    index_in,
    int_np,
    node_attributes_sql,
    override_families,
    plain_columns,
    registry_family_ids,
    registry_lookup,
    replying_attributes_sql,
    stale_replies,
    stale_reply_sql,
)
from analysis.annotate import annotate, annotation_file, parquet_options
from analysis.datasets import load_snapshot
from analysis.destinations import load_country_geometry, locate_destinations
from analysis.errors import MissingInput, MissingReferenceData, SchemaMismatch
from analysis.ownership import apply_owners
from analysis.path_sums import GROUPINGS, PathSums, scoped_batches
from analysis.paths import build_paths, misplaced_probes
from analysis.registry import Registry, load_registry
from analysis.report import CampaignData, render_html
from analysis.scope import (
    SCOPED_PATHS_SCHEMA,
    ScopeTally,
    destination_exposure_of,
    destination_families,
    destination_hosted_of,
    in_scope,
    scope_summary,
    scope_traceroutes,
    with_scope,
)
from probes import fileio, memory, store
from probes.engine import Runner, open_runner
from probes.errors import StoreError
from probes.progress import step
from probes.schema import HOP_SCHEMA, PER_TRACE_HOP_STRINGS, STORED_HOP_SCHEMA, TRACE_SCHEMA

if TYPE_CHECKING:
    from analysis.paths import RegistryLike
    from probes.workspace import Campaign

__all__ = [
    "GROUPINGS",
    "CampaignData",
    "annotate_campaign",
    "read_annotated",
    "analyze_campaign",
    "refresh_campaign",
    "load_campaign",
    "write_report",
]

#: The exposure tables :func:`analyze_campaign` writes (``exposure/<name>.parquet|.csv``)
#: and :func:`load_campaign` reads back (all but ``pops``).
_EXPOSURE_TABLES = ("path_exposure", "pop_exposure", "change_events", "hegemony", "destinations", "places")


# ---------------------------------------------------------------------------- staging
@contextmanager
def _staged(campaign: Campaign, folder: Path, *, stage: str, run: str) -> Iterator[Path]:
    """Write a campaign folder under its work name; swap it in for ``folder`` when done.

    Yields :meth:`~probes.workspace.Campaign.stage_dir` of ``folder``, emptied first (a run
    that was killed leaves it). When the block ends without an error, the run's
    ``.generation.json`` (``stage``, ``run``: the generation id) is written into it last,
    the old ``folder`` is moved to :meth:`~probes.workspace.Campaign.previous_dir`, the
    work folder renamed onto ``folder`` and the old one removed; after an error the work
    folder stays (the next run removes it) and ``folder`` is untouched. Call with the
    campaign lock held.
    """
    tmp = campaign.stage_dir(folder)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    yield tmp
    fileio.write_json(campaign.generation_marker(tmp), {"stage": stage, "id": run})
    old = campaign.previous_dir(folder)
    if old.exists():
        shutil.rmtree(old)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


_ANALYSIS_FOLDERS = ("annotated_dir", "paths_dir", "exposure_dir", "graph_dir")


def _restore_folders(campaign: Campaign) -> None:
    """Undo what a run killed while swapping folders left (call with the campaign lock held).

    A folder that is missing while its ``.<name>.old/`` exists gets it back (the swap
    had not finished: the old folder is the complete one); other ``.old`` folders and
    the work folders are removed.
    """
    for attr in _ANALYSIS_FOLDERS:
        folder = getattr(campaign, attr)
        old = campaign.previous_dir(folder)
        if old.exists():
            if folder.exists():
                shutil.rmtree(old)
            else:
                old.rename(folder)
        shutil.rmtree(campaign.stage_dir(folder), ignore_errors=True)


# ---------------------------------------------------------------------------- annotate
def annotate_campaign(
    campaign: Campaign,
    *,
    snapshot_id: str | None = None,
    cache_dir: str | Path | None = None,
    registry_path: str | Path | None = None,
    online: bool = False,
    engine: str = "local",
    scheduler: str | None = None,
    workers: int | None = None,
    closest: bool = False,
) -> dict:
    """Annotate every hop of a campaign; write ``annotated/`` and ``annotate.json``.

    Runs :func:`analysis.annotate.annotate` segment by segment
    (``annotated/seg-NNNNNN.parquet`` for hop segment ``seg-NNNNNN``): one segment is in
    memory at a time, so memory does not grow with the campaign. With ``engine="dask"`` the
    segments are annotated by Dask workers (see :func:`probes.engine.open_runner`), each
    loading the snapshot once; the files written are the same.

    Parameters
    ----------
    campaign : probes.workspace.Campaign
    snapshot_id : str, optional
        Default: the latest snapshot.
    closest : bool
        Instead of one snapshot, take each reference-data kind from the local snapshot
        whose data are closest in time to the middle of the campaign's measurements
        (:func:`analysis.refdates.closest_choices`), composed into one snapshot
        (:func:`analysis.datasets.compose_snapshot`). Not with ``snapshot_id``.
    cache_dir : path, optional
        Reference-data cache root (see :func:`analysis.datasets.cache_root`).
    registry_path : path, optional
        A registry TOML file instead of the default one.
    online : bool
        Allow the RDAP fallback.
    engine : {"local", "dask"}
    scheduler : str, optional
        Dask scheduler address (default: a LocalCluster for the run).
    workers : int, optional
        Worker processes of that LocalCluster (default: one per core).

    Returns
    -------
    dict
        The report written to ``annotate.json``: snapshot id and digest, registry sha256,
        rows, parts, counts by reason, and ``generation`` (see :mod:`analysis.lineage`):
        its id, the store generation annotated, snapshot, registry path and sha256. The
        same inputs and snapshot give byte-identical files.

    Notes
    -----
    Holds the campaign lock (:func:`probes.store.campaign_lock`) for the whole run: an
    ingest, annotate or analyze of the same campaign waits for it, and it for them.
    """
    if not store.segment_names(campaign, "hops"):
        raise MissingInput(
            f"campaign {campaign.name!r} has no hop table in {campaign.hops_dir}; "
            "run `pathexp ingest ... --campaign NAME` (or campaign fetch / trace) first"
        )
    with store.campaign_lock(campaign, holder="annotate"):
        return _annotate_locked(campaign, snapshot_id=snapshot_id, cache_dir=cache_dir,
                                registry_path=registry_path, online=online, engine=engine,
                                scheduler=scheduler, workers=workers, closest=closest)


def _annotate_locked(
    campaign: Campaign,
    *,
    snapshot_id: str | None,
    cache_dir: str | Path | None,
    registry_path: str | Path | None,
    online: bool,
    engine: str,
    scheduler: str | None,
    workers: int | None,
    closest: bool = False,
) -> dict:
    """:func:`annotate_campaign`'s work, the campaign lock held."""
    from analysis import refdates
    from analysis.datasets import compose_snapshot, list_snapshots

    _restore_folders(campaign)
    store.recover(campaign)  # a killed ingest may have left a segment's tables unbuilt
    names = store.segment_names(campaign, "hops")
    first, last = _measurement_period(campaign)
    if closest:
        if snapshot_id is not None:
            raise MissingInput("--closest picks the snapshot per kind: give it without --snapshot")
        if first is None or last is None:
            raise MissingInput(f"campaign {campaign.name!r} has no traceroute with a time: nothing to be close to")
        choices = refdates.closest_choices(list_snapshots(cache_dir=cache_dir), first, last)
        snap = compose_snapshot(choices, cache_dir=cache_dir)
    else:
        snap = load_snapshot(snapshot_id, cache_dir=cache_dir)
    registry = load_registry(registry_path)
    reg_bytes = Path(registry.path).read_bytes()
    record: dict[str, Any] = {
        "store": store.generation(campaign).as_dict(),
        "snapshot": {"id": snap.id, "digest": snap.digest},
        "registry": {"path": None if registry_path is None else str(Path(registry_path).resolve()),
                     "sha256": hashlib.sha256(reg_bytes).hexdigest()},
        "online": online,
    }
    run = lineage.generation_id(record)
    generation = {"id": run, **record}
    counts: Counter = Counter()
    parts: list[str] = []
    rows = 0
    with _staged(campaign, campaign.annotated_dir, stage="annotate", run=run) as stage:
        shared = {"campaign": campaign, "snapshot_id": snap.id, "cache_dir": cache_dir,
                  "registry_path": registry_path, "online": online, "out": stage}
        # RDAP look-ups are rate-limited per client: one segment at a time when online
        with open_runner(engine, scheduler=scheduler, workers=workers,
                         local_threads=1 if online else None) as runner:
            for name, n, c in runner.map(_annotate_segment, names, setup=_segment_context, shared=shared):
                counts.update(c)
                parts.append(f"{name}.parquet")
                rows += n
                step("annotated %d of %d segments (%s hop rows)", len(parts), len(names), f"{rows:,}")
    report = {
        "snapshot": {
            "id": snap.id,
            "digest": snap.digest,
            "kinds": {k: {"date": v.get("date"), "sources": v.get("sources")} for k, v in snap.info.get("kinds", {}).items()},
            "composed_from": snap.info.get("composed_from"),
        },
        "reference_dates": refdates.reference_dates(
            snap.info.get("kinds", {}), first, last,
            closest=None if first is None or last is None
            else refdates.closer_than_current(list_snapshots(cache_dir=cache_dir), snap, first, last)),
        "registry": {"sha256": hashlib.sha256(reg_bytes).hexdigest(), "default": registry_path is None},
        "online": online,
        "rows": rows,
        "parts": parts,
        "counts": dict(sorted(counts.items())),
        "generation": generation,
    }
    fileio.write_json(campaign.annotate_json, report)  # last: it names a complete annotated/
    memory.release()  # what the segments freed, before the caller's next stage
    return report


def _measurement_period(campaign: Campaign) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The first and last traceroute time of the campaign's store (None, None when empty)."""
    period = _trace_period([str(store.segment_path(campaign, n, "traces"))
                            for n in store.segment_names(campaign, "traces")])
    if period is None:
        return None, None
    first, last = (dt.datetime.fromtimestamp(t, dt.timezone.utc) for t in period)
    return first, last


def _segment_context(shared: dict) -> dict:
    """Per process (or Dask worker): the snapshot and registry, loaded once."""
    snap = load_snapshot(shared["snapshot_id"], cache_dir=shared["cache_dir"])
    return {**shared, "snapshot": snap, "registry": load_registry(shared["registry_path"])}


def _annotate_segment(name: str, ctx: dict) -> tuple[str, int, Counter]:
    """Annotate one hop segment into ``<out>/<name>.parquet``; return its row count and counts.

    The file is the hop segment's bytes as they are, the annotation's columns after them;
    only ``reply_from`` is decoded. The annotation is written by
    :func:`analysis.annotate.annotation_file` straight from the unique addresses'
    annotation, or, where the C packer is not built, by pyarrow in its writable form
    (:func:`analysis.annotate.annotate` with ``dictionary=True``, put beside the segment
    by :func:`probes.fileio.write_parquet`). A segment written before
    :data:`probes.schema.STORED_HOP_SCHEMA` is first read whole, cast to it and written
    again in its own row groups.
    """
    path = store.segment_path(ctx["campaign"], name, "hops")
    data = path.read_bytes()
    try:
        older = fileio.written_schema(data) != STORED_HOP_SCHEMA
        # the row groups only where the segment is written again (each footer read costs a ms)
        groups = fileio.row_group_sizes(data) if older else []
    except ValueError as exc:
        raise StoreError(f"hop segment {path} is damaged: {exc}") from exc
    if older:
        # the traceroute's own strings, repeated on each of its hop rows, are read as
        # Parquet dictionaries and stored so, as the store writes them now
        hops = pq.read_table(pa.BufferReader(data), read_dictionary=PER_TRACE_HOP_STRINGS).cast(STORED_HOP_SCHEMA)
        data = store.hop_parquet_bytes(hops, groups)
        del hops
    hops = pq.read_table(pa.BufferReader(data), columns=["reply_from"])
    target = Path(ctx["out"]) / f"{name}.parquet"
    kw = {"registry": ctx["registry"], "online": ctx["online"]}
    if fileio.gathered_parquet_available():
        annotated, counts = annotation_file(hops, ctx["snapshot"], beside=data, **kw)
        fileio.write_bytes(target, annotated)
        return name, hops.num_rows, counts
    annotated, counts = annotate(hops, ctx["snapshot"], dictionary=True, **kw)
    annotation = annotated.drop_columns(["reply_from"])
    # no statistics on the string columns (no reader uses them, and they cost the writer
    # as much as the columns themselves), larger write batches
    fileio.write_parquet(annotation, target, options=parquet_options(annotation), beside=data)
    return name, annotation.num_rows, counts


def read_annotated(campaign: Campaign) -> pa.Table:
    """The annotated hop table of a campaign (all parts, in order), with plain column types.

    The parts store the dense string annotation columns dictionary-encoded
    (:func:`analysis.annotate.annotate` with ``dictionary=True``); DuckDB reads them as
    plain columns, and so does this.
    """
    files = sorted(Path(campaign.annotated_dir).glob("*.parquet"))
    if not files:
        raise MissingInput(f"{campaign.annotated_dir}: no annotated hops; run `pathexp annotate`")
    return pa.concat_tables(plain_columns(pq.read_table(f)) for f in files)


# ---------------------------------------------------------------------------- analyze
def analyze_campaign(
    campaign: Campaign,
    *,
    registry: RegistryLike | None = None,
    families: Sequence[str] | None = None,
    pop_country: str = "US",
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    include_endpoints: bool = False,
    rtt_jump_ms: float = 40.0,
    cache_dir: str | Path | None = None,
    infer_owners: bool = True,
    dst_country: str = "US",
    force: bool = False,
    engine: str = "local",
    scheduler: str | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Paths, exposure tables, graphs and ``exposure.json`` for one campaign (the I/O edge).

    Refuses (:class:`~analysis.errors.MissingInput`, naming what changed and the command to
    run) an ``annotated/`` that is not current (:func:`analysis.lineage.annotate_verdict`:
    results ingested, registry or snapshot changed since annotate, or annotate
    interrupted); with ``force=True`` re-annotates it first, with the snapshot, registry
    and online setting ``annotate.json`` records. Holds the campaign lock for the whole run.
    ``exposure.json`` (written last) records the generation: what the run was computed
    from (annotate id, store generation, probe metadata sha256, options); ``paths/``,
    ``exposure/`` and ``graph/`` carry its id.

    Reads ``<campaign>/annotated/**/*.parquet``, the traceroute table and the probe
    metadata; writes ``paths/paths.parquet``, ``exposure/{path_exposure,pop_exposure,
    hegemony,change_events}.{parquet,csv}``, ``graph/as_graph.graphml``,
    ``graph/flagged_subgraph.graphml`` and ``exposure.json`` (``exposure/pops`` lists where
    the flagged families are entered: IXP or located facility city), and returns what
    ``exposure.json`` holds.

    ``families``: families to report (default: those in ``registry``, in the annotated
    table and in the default registry file); ``"any"`` (any flagged family) is always
    reported. Path and PoP exposure carry a cluster-bootstrap interval over probes (the
    headline, ``n_boot`` replicates, ``seed``) and a Wilson interval for comparison.

    Destination AS and country come from annotating the destination addresses with the
    snapshot named in ``annotate.json`` (looked up in ``cache_dir``, see
    :func:`analysis.datasets.cache_root`); if that snapshot is not in the cache, only
    destinations that answered a hop are known, and ``exposure.json`` says so.

    Memory stays flat in the campaign's size: when the annotated files are the store's
    segments (as :func:`annotate_campaign` writes them), the campaign-wide
    lookups (destinations, node attributes) are aggregated from the files first, then
    :func:`analysis.paths.build_paths` runs segment by segment (a segment holds whole traceroutes) and
    ``paths.parquet`` is written part by part, one row group per segment, in segment order
    (rows sorted by key within a segment); the metrics then read the path columns they
    need. ``engine="dask"`` runs the segments on Dask workers (``scheduler``, ``workers``:
    see :func:`probes.engine.open_runner`) with the same output.
    """
    if not campaign.annotated_dir.is_dir():
        raise MissingReferenceData(
            f"campaign {campaign.name!r} has no annotated hops in {campaign.annotated_dir}; "
            "run `pathexp annotate` first"
        )
    engine_opts = {"engine": engine, "scheduler": scheduler, "workers": workers}
    with store.campaign_lock(campaign, holder="analyze"):
        return _analyze_locked(campaign, registry=registry, families=families, pop_country=pop_country,
                               n_boot=n_boot, seed=seed, confidence=confidence,
                               include_endpoints=include_endpoints, rtt_jump_ms=rtt_jump_ms,
                               cache_dir=cache_dir, infer_owners=infer_owners, dst_country=dst_country,
                               force=force, engine_opts=engine_opts)


def _reannotate(campaign: Campaign, *, cache_dir: str | Path | None, engine_opts: dict[str, Any]) -> dict:
    """Annotate again as ``annotate.json`` records (snapshot, registry, online); lock held."""
    info = lineage.read_manifest(campaign.annotate_json) or {}
    gen = info.get("generation") or {}
    snap = (gen.get("snapshot") or info.get("snapshot") or {}).get("id")
    if "registry" in gen:
        registry_path = gen["registry"].get("path")
    elif (info.get("registry") or {}).get("default", False):
        registry_path = None
    else:
        snap = None
    if snap is None:
        raise MissingInput(f"{campaign.annotate_json} does not say how to annotate again: "
                           f"run {lineage.command(campaign, 'annotate')} with your options")
    return _annotate_locked(campaign, snapshot_id=snap, cache_dir=cache_dir, registry_path=registry_path,
                            online=bool(info.get("online", False)), **engine_opts)


def _analyze_locked(
    campaign: Campaign,
    *,
    registry: RegistryLike | None,
    families: Sequence[str] | None,
    pop_country: str,
    n_boot: int,
    seed: int,
    confidence: float,
    include_endpoints: bool,
    rtt_jump_ms: float,
    cache_dir: str | Path | None,
    infer_owners: bool,
    force: bool,
    engine_opts: dict[str, Any],
    dst_country: str = "US",
) -> dict[str, Any]:
    """:func:`analyze_campaign`'s work, the campaign lock held."""
    import orjson
    import pyarrow.csv as pacsv

    from analysis import graph as graph_mod
    from analysis import metrics

    engine, scheduler, workers = engine_opts["engine"], engine_opts["scheduler"], engine_opts["workers"]
    _restore_folders(campaign)
    store.recover(campaign)
    verdict = lineage.annotate_verdict(campaign, cache_dir=cache_dir)
    if force and verdict.kind in ("stale", "mixed"):
        _reannotate(campaign, cache_dir=cache_dir, engine_opts=engine_opts)
        verdict = lineage.annotate_verdict(campaign, cache_dir=cache_dir)
    ann_files = sorted(campaign.annotated_dir.glob("**/*.parquet"))
    if not ann_files:
        raise MissingReferenceData(
            f"campaign {campaign.name!r} has no annotated hops in {campaign.annotated_dir}; "
            "run `pathexp annotate` first"
        )
    types = file_columns(ann_files)
    ann_columns = _annotated_columns(ann_files, types)
    if not verdict.current:
        hint = "" if verdict.kind == "missing" else (
            f" (or {lineage.command(campaign, 'analyze', '--force')} to annotate again with "
            "the snapshot and registry annotate.json records, then analyze)")
        raise MissingInput(verdict.message() + hint)
    partitions = _partitions(campaign, ann_files)
    trace_files = [f for _, _, tf in partitions for f in tf]
    probe_meta = store.read_probe_meta(campaign)
    snapshot, annotate_info = _annotate_info(campaign)
    ann_registry = _annotation_registry(annotate_info)
    snap, snap_note = _campaign_snapshot(snapshot, cache_dir)
    step("probe metadata")
    probe_meta, probe_status = _with_derived_probes(campaign, probe_meta, trace_files, snap)
    # the campaign-wide questions over every hop row run on the runner (on Dask one
    # annotated file per task), their reductions merged here (analysis._hop_scans)
    with open_runner(engine, scheduler=scheduler, workers=workers) as runner:
        step("scanning the annotated hops: %d files", len(ann_files))
        scans = scan_files(ann_files, ann_columns, runner, types)
        addresses = scans.addresses
        step("locating destinations")
        dst_addrs = _distinct_destinations(trace_files)
        destinations, dst_source = _destination_table(dst_addrs, snap, snap_note, registry)
        destinations = _with_replying_destinations(destinations, dst_addrs, addresses)
        # each probe's smallest RTT to each destination: what locating them needs; the scope of
        # each traceroute is decided with the paths, one partition at a time
        pair_rtts = scans.pair_rtts
        located = locate_destinations(pair_rtts, probe_meta, snap)
        destinations = _located(destinations, located.table)
        dst_info = destinations
        facilities, fac_source = _facility_table(snap, snap_note)
        routers = snap.table("ipmap", "addresses") if snap is not None and snap.has("ipmap") else None
        places = plots.place_table(facilities, routers)
        step("inferring router owners")
        # with what the annotation gave each owner AS over the whole campaign: a moved hop
        # takes its owner's family and country whichever partition it is in
        owners, owner_source, owner_attrs = (
            _owner_table(ann_files, ann_columns, trace_files, snap, snap_note, destinations, runner=runner,
                         registry=ann_registry, addresses=addresses)
            if infer_owners else (None, "not inferred (origin AS used)", None))
        step("RTT discs of the flagged routers")
        discs = (rtt_discs(ann_files, ann_columns, scans, owners, registry, probe_meta, runner, types)
                 if facilities is not None else None)
        # probes whose published place the RTTs contradict: the small discs of every address, and
        # the flagged routers' own
        misplaced: list[int] = []
        if discs is not None:
            step("probes the RTTs misplace")
            misplaced = misplaced_probes(pa.concat_tables([
                near_discs(scans.near, probe_meta), discs.select(["addr", "prb_id", "lat", "lon", "rtt"])]))
            # their discs could exclude the true place of every router they saw
            discs = discs.filter(pc.invert(pc.is_in(discs.column("prb_id"), value_set=pa.array(misplaced, pa.int64()))))
        step("node attributes")
        nodes = _campaign_node_attributes(addresses, registry)
        del addresses, scans
        node_family = {n: f for n, f in zip(nodes.column("node").to_pylist(), nodes.column("family").to_pylist(),
                                            strict=True) if f}
        full_registry = registry if hasattr(registry, "family_of") else ann_registry
        dst_info = destination_families(dst_info, full_registry, node_family)
        bgp_inputs = (bgp.campaign_bgp_inputs(snap, full_registry, dst_info, _trace_period(trace_files))
                      if snap is not None else None)
        del snap
        memory.release()  # the reference tables and the scans above, before the paths
        generation = {
            "annotate": annotate_info["generation"]["id"],
            "store": store.generation(campaign).as_dict(),
            "probes": lineage.file_sha256(campaign.probes_parquet),
            "options": {"pop_country": pop_country, "n_boot": n_boot, "seed": seed, "confidence": confidence,
                        "include_endpoints": include_endpoints, "rtt_jump_ms": rtt_jump_ms,
                        "infer_owners": infer_owners, "dst_country": dst_country,
                        "families": None if families is None else list(families),
                        "registry": _registry_record(registry)},
            "references": {"destinations": dst_source, "facilities": fac_source, "owners": owner_source,
                           "routers": f"{snap_note}: ipmap" if routers is not None else "no ipmap in the snapshot"},
        }
        run = lineage.generation_id(generation)
        generation = {"id": run, **generation,
                      "rerun": {"cache_dir": None if cache_dir is None else str(cache_dir)}}

        drops: Counter[str] = Counter()
        if misplaced:
            drops["probe-discs-misplaced-probe"] = len(misplaced)
        parts_done = 0
        with _staged(campaign, campaign.paths_dir, stage="analyze", run=run) as stage:
            shared = {
                "probes": probe_meta, "registry": registry, "destinations": destinations,
                "facilities": facilities, "discs": discs, "owners": owners, "routers": routers,
                "owner_attributes": owner_attrs,
                "include_endpoints": include_endpoints,
                "pair_rtts": pair_rtts, "dst_info": dst_info, "dst_country": dst_country,
                "rtt_jump_ms": rtt_jump_ms, "columns": ann_columns,
            }
            step("paths: 0 of %d partitions", len(partitions))
            scope = ScopeTally.empty(dst_country)
            # each partition's paths come back as a Parquet file in memory, compressed where
            # they were computed (a local thread or a Dask worker), in partition order; each
            # is appended to paths.parquet as it arrives, its bytes copied, while the next
            # ones are computed
            with fileio.joined_parquet(stage / campaign.paths_parquet.name, SCOPED_PATHS_SCHEMA) as paths_out:
                for part, part_drops, part_scope in runner.map(_paths_partition, partitions, shared=shared):
                    drops.update(part_drops)
                    scope += part_scope
                    parts_done += 1
                    paths_out.append(part)
                    del part
                    step("paths: %d of %d partitions", parts_done, len(partitions))
            probe_basis = probe_meta.select(["prb_id", "origin"])
            del shared, destinations, facilities, probe_meta, discs, routers, pair_rtts
            if owners is not None:
                fileio.write_parquet(owners, stage / campaign.owners_parquet.name)
                owner_vias = dict(sorted(Counter(owners.column("owner_via").to_pylist()).items()))
            else:
                owner_vias = {}
            del owners
            memory.release()  # the partitions' tables, before the exposure pass
        paths_file = campaign.paths_parquet
        fams = _report_families(paths_file, nodes, registry if registry is not None else ann_registry, families,
                                annotation=registry is None)
        geometry = load_country_geometry()  # the upper bound's speed-of-light test, once for every family
        # one pass over the paths in scope, a row group per task, reduced to sums: memory
        # grows with the probes, destinations and AS graph, not with the traceroutes
        row_groups = pq.ParquetFile(paths_file).num_row_groups
        step("exposure: summing %d row groups of paths", row_groups)
        sums = PathSums([None, *fams], pop_country, geometry)
        # a few tasks per slot, each summing a run of row groups in one worker: the client
        # merges a few dozen sums, not one per partition
        per = -(-row_groups // (_TASKS_PER_SLOT * runner.slots)) if row_groups else 1
        for part in runner.map(_sums_task, [list(range(g, min(g + per, row_groups)))
                                            for g in range(0, row_groups, per)],
                               shared={"paths_file": str(paths_file), "families": [None, *fams],
                                       "pop_country": pop_country, "geometry": geometry}):
            sums.merge(part)
        opts = {"n_boot": n_boot, "seed": seed, "confidence": confidence}
        # the exposure tables (a cluster bootstrap per group) are independent tasks
        tasks = [(fam, kind, by, w) for fam in [None, *fams] for kind in ("path_exposure", "pop_exposure")
                 for by, w in ((None, False), (None, True), *((g, False) for g in GROUPINGS))]
        step("exposure: %d bootstrap tables", len(tasks))
        exposure = dict(zip(tasks, runner.map(_exposure_task, tasks, shared={"sums": sums.for_exposure(), **opts}),
                            strict=True))
    step("hegemony, change events, writing")
    g = sums.graph.graph(nodes=nodes)
    hegemony = sums.hegemony.table()
    node_family = dict(zip(nodes.column("node").to_pylist(), nodes.column("family").to_pylist(), strict=True))
    path_tabs: list[pa.Table] = []
    pop_tabs: list[pa.Table] = []
    summary: dict[str, Any] = {}
    for fam in [None, *fams]:
        label = fam or metrics.ANY_FAMILY
        entry: dict[str, Any] = {}
        for kind in ("path_exposure", "pop_exposure"):
            boot = exposure[(fam, kind, None, False)]
            entry[kind] = _summary_row(boot)
            row = exposure[(fam, kind, None, True)].to_pylist()[0]
            entry[kind]["probe_weighted"] = {
                "estimate": row["exposure"], "ci_low": row["ci_low"], "ci_high": row["ci_high"],
                "method": row["method"] + "; every probe weighs the same (1 / its traceroutes)",
            }
            tabs = path_tabs if kind == "path_exposure" else pop_tabs
            tabs.append(_long(boot, None))
            for grouping in GROUPINGS:
                tabs.append(_long(exposure[(fam, kind, grouping, False)], grouping))
        pop = entry["pop_exposure"]
        pop["possibly"] = _pop_upper(sums, fam, pop_country, confidence, n_boot=n_boot, seed=seed)
        pop["bounds"] = _pop_bounds(pop, pop["possibly"], confidence)
        entry["hegemony"] = _family_hegemony(hegemony, node_family, fam)
        summary[label] = entry

    from analysis.vantage import country_basis

    basis = country_basis(sums.country_pairs(), probe_basis)
    derived_basis = {cc: b for cc, b in basis.items() if b != "probe metadata"}
    if derived_basis:
        probe_status = {**probe_status, "derived_countries": derived_basis}
    written = {"paths": str(paths_file)}
    if owner_vias:
        written["owners"] = str(campaign.owners_parquet)
    tables = {
        "destinations": destination_exposure_of(sums.destination_pairs(), dst_info, nodes, confidence=confidence,
                                                n_boot=n_boot, seed=seed),
        "path_exposure": _with_country_basis(pa.concat_tables(path_tabs, promote_options="permissive"), basis),
        "pop_exposure": _with_country_basis(pa.concat_tables(pop_tabs, promote_options="permissive"), basis),
        "hegemony": hegemony,
        "pops": sums.crossing_locations(),
        "places": places,
        "change_events": metrics.change_events_file(paths_file, [None, *fams]),
    }
    control_plane = None
    if bgp_inputs is not None:
        step("control plane: BGP paths, agreement, signals")
        # the control plane's comparison still reads every traceroute in scope at once
        scoped = in_scope(pq.read_table(paths_file, columns=[*_BGP_COLUMNS, "in_scope"]))
        control_plane, bgp_tables = bgp.campaign_bgp(
            bgp_inputs, scoped, tables["change_events"], full_registry,
            dst_country=None if dst_country == "any" else dst_country, n_boot=n_boot, seed=seed,
            confidence=confidence)
        tables.update({k: _csv_ready(t) for k, t in bgp_tables.items()})
        if bgp_inputs["rov"] is not None:
            tables["destinations"] = _with_columns(tables["destinations"], bgp_inputs["rov"], "dst_addr")
        del bgp_inputs
    with _staged(campaign, campaign.exposure_dir, stage="analyze", run=run) as stage:
        for name, table in tables.items():
            fileio.write_parquet(table, stage / campaign.exposure_table(name).name)
            with fileio.atomic_path(stage / campaign.exposure_table(name, ".csv").name) as tmp:
                pacsv.write_csv(table, tmp)
            written[name] = str(campaign.exposure_table(name))
    with _staged(campaign, campaign.graph_dir, stage="analyze", run=run) as stage:
        graph_mod.write_graphml(g, stage / campaign.as_graph_graphml.name)
        graph_mod.write_graphml(graph_mod.flagged_subgraph(g), stage / campaign.flagged_subgraph_graphml.name)
    written["graph"] = str(campaign.as_graph_graphml)

    report = {
        "campaign": campaign.name,
        "snapshot": snapshot,
        "annotate": annotate_info,
        "scope": scope_summary(scope, located),
        "destination_hosted": destination_hosted_of(sums.per_destination(), dst_info, fams, confidence=confidence,
                                                    n_boot=n_boot, seed=seed),
        "probe_metadata": probe_status,
        "traceroutes": sums.counts["traceroutes"],
        "probes": sums.probes(),
        "transiting_any": sums.transiting_any(),
        "ixp_crossing_traceroutes": sums.counts["ixp_crossing_traceroutes"],
        "pop_crossings": sums.counts["pop_crossings"],
        "detours": sums.counts["detours"],
        "loops": sums.counts["loops"],
        "pop_country": pop_country,
        "destinations": dst_source,
        "facilities": fac_source,
        "families": summary,
        "method": {
            "ci": f"cluster bootstrap over probes (prb_id), percentile, {confidence:.0%}, "
            f"B={n_boot}, seed={seed}; Wilson score interval alongside",
            "path_exposure": "share of traceroutes whose AS path transits the family "
            "(endpoints excluded)" if not include_endpoints else
            "share of traceroutes whose AS path contains the family",
            "pop_exposure": f"share of traceroutes entering the family at an IXP in {pop_country} "
            "(or at a facility located by a constrained facility search) with a speed-of-light "
            "verdict that is not inconsistent; a lower bound: crossings that cannot be located "
            "do not count",
        },
        "drops": dict(sorted(drops.items())),
        "graph": {"nodes": g.number_of_nodes(), "edges": g.number_of_edges()},
        "top_pops": tables["pops"].slice(0, 20).to_pylist(),
        "top_hegemony": hegemony.slice(0, 20).to_pylist(),
        "outputs": written,
        "owners": {"source": owner_source, "addresses_by_rule": owner_vias},
        "control_plane": control_plane,
        "generation": generation,
    }
    # last: exposure.json names a complete set of paths/, exposure/ and graph/ (their marker)
    fileio.write_bytes(
        campaign.exposure_json,
        orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
                     | orjson.OPT_SERIALIZE_NUMPY) + b"\n",
    )
    return report



def _with_columns(table: pa.Table, extra: pa.Table, key: str) -> pa.Table:
    """``table`` with every column of ``extra`` but ``key``, matched on ``key`` (nulls where unmatched)."""
    idx = pc.index_in(table.column(key).cast(pa.string()), extra.column(key).cast(pa.string()))
    for name in extra.column_names:
        if name != key:
            table = table.append_column(name, extra.column(name).combine_chunks().take(idx))
    return table


def _csv_ready(table: pa.Table) -> pa.Table:
    """List columns joined into space-separated text (CSV has no lists)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_list(f.type):
            table = table.set_column(i, f.name, pc.binary_join(pc.cast(table.column(i), pa.list_(pa.string())), " "))
    return table


def _registry_record(registry: RegistryLike | None) -> dict[str, Any] | None:
    """What analyze records of its registry option: the file and its sha256, or the family ids."""
    if registry is None:
        return None
    path = getattr(registry, "path", "")
    if path:
        return {"path": str(path), "sha256": lineage.file_sha256(Path(path))}
    return {"families": sorted(registry_family_ids(registry))}


def refresh_campaign(
    campaign: Campaign,
    *,
    cache_dir: str | Path | None = None,
    engine: str = "local",
    scheduler: str | None = None,
    workers: int | None = None,
) -> list[str]:
    """Recompute whatever of the campaign's analysis is not current, on the current inputs.

    Annotates again if ``annotated/`` is stale (with the snapshot, registry and online
    setting ``annotate.json`` records), then analyzes again with the options
    ``exposure.json`` records (its ``cache_dir`` unless one is given) if the analysis
    outputs are stale or of mixed runs. Returns the stages run (``[]``: all current).

    Raises
    ------
    analysis.errors.MissingInput
        When the campaign was never annotated or analysed, or its records do not say how
        to run a stage again (then the message names the command to run).
    """
    if not campaign.exposure_json.is_file():
        lineage.require_current(lineage.analyze_verdict(campaign, cache_dir=cache_dir))
    with store.campaign_lock(campaign, holder="analyze"):
        info = lineage.read_manifest(campaign.exposure_json) or {}
        gen = info.get("generation") or {}
        if cache_dir is None:
            cache_dir = (gen.get("rerun") or {}).get("cache_dir")
        if lineage.analyze_verdict(campaign, cache_dir=cache_dir).current:
            return []
        ran = [] if lineage.annotate_verdict(campaign, cache_dir=cache_dir).current else ["annotate"]
        opts = dict(gen.get("options") or {})
        reg = opts.pop("registry", None)
        registry = None
        if reg is not None:
            if "path" not in reg:
                raise MissingInput(f"analyze ran with a registry given as an object, not a file: run "
                                   f"{lineage.command(campaign, 'analyze')} with your options")
            registry = load_registry(reg["path"])
        engine_opts = {"engine": engine, "scheduler": scheduler, "workers": workers}
        _analyze_locked(campaign, registry=registry, families=opts.get("families"),
                        pop_country=opts.get("pop_country", "US"), n_boot=opts.get("n_boot", 1000),
                        seed=opts.get("seed", 0), confidence=opts.get("confidence", 0.95),
                        include_endpoints=opts.get("include_endpoints", False),
                        rtt_jump_ms=opts.get("rtt_jump_ms", 40.0), cache_dir=cache_dir,
                        infer_owners=opts.get("infer_owners", True), dst_country=opts.get("dst_country", "US"),
                        force=True, engine_opts=engine_opts)
        return [*ran, "analyze"]


#: Path columns the metrics, graph and report read back from ``paths.parquet``.
_METRIC_COLUMNS = (
    "msm_id", "prb_id", "timestamp", "day", "probe_asn", "probe_country", "dst_addr", "dst_asn",
    "as_path", "loop", "transits_flagged", "flagged_families", "pop_crossings", "detour",
    "probe_lat", "probe_lon",
)  # fmt: skip
#: What the control-plane comparison reads of the paths (:func:`analysis.bgp.campaign_bgp`).
_BGP_COLUMNS = ("msm_id", "prb_id", "timestamp", "probe_asn", "dst_addr", "flagged_families")


def _annotated_columns(files: list[Path], types: Mapping[str, str] | None = None) -> list[str]:
    """Columns of the annotated parts that paths and router owners use (``dst_addr``: the
    traceroute's destination on its hop rows); raises if a required one is missing.
    ``types``: the parts' columns (:func:`analysis._hop_scans.file_columns`), if read."""
    wanted = set(ANNOTATED_REQUIRED) | set(ANNOTATED_OPTIONAL) | {"org", "dup", "late", "dst_addr"}
    names = list(types if types is not None else file_columns(files))
    missing = [c for c in ANNOTATED_REQUIRED if c not in names]
    if missing:
        raise SchemaMismatch(
            f"annotated hops in {files[0].parent} lack required column(s) {', '.join(missing)}"
        )
    return [c for c in names if c in wanted]


def _read_annotated(files: list[Path], columns: Sequence[str]) -> pa.Table:
    """The columns :func:`~analysis.paths.build_paths` uses, from annotated parts."""
    con = connect()
    try:
        sel = ", ".join(f'"{c}"' for c in columns)
        return con.sql(
            f"SELECT {sel} FROM read_parquet($files, union_by_name=true)",
            params={"files": [str(f) for f in files]},
        ).to_arrow_table()
    finally:
        con.close()


def _read_partition_hops(files: list[Path], columns: Sequence[str]) -> pa.Table:
    """:func:`_read_annotated` for one partition, straight from Parquet: the string columns
    stay dictionary-encoded as they are stored (the paths take one row per hop of them), and
    no copy passes through DuckDB. Parts that differ in their columns or types are read the
    union-by-name way."""
    schemas = [pq.read_schema(f) for f in files]
    if not files or any(c not in s.names for s in schemas for c in columns):
        return _read_annotated(files, columns)
    types = {c: schemas[0].field(c).type for c in columns}
    if any(s.field(c).type != t for s in schemas[1:] for c, t in types.items()):
        return _read_annotated(files, columns)
    strings = [c for c, t in types.items() if pa.types.is_string(t) or pa.types.is_large_string(t)]
    return pa.concat_tables([pq.read_table(f, columns=list(columns), read_dictionary=strings) for f in files])


def _partitions(campaign: Campaign, ann_files: list[Path]) -> list[tuple[int, list[str], list[str]]]:
    """(index, annotated files, traceroute files) per unit of work.

    One per store segment when the annotated parts are named after the segments; otherwise
    (parts written another way) a single partition of everything.
    """

    names = store.segment_names(campaign, "traces")
    by_name = {f.name[: -len(".parquet")]: f for f in ann_files}
    if names and sorted(by_name) == names and all(f.parent == campaign.annotated_dir for f in ann_files):
        return [
            (i, [str(by_name[n])], [str(store.segment_path(campaign, n, "traces"))])
            for i, n in enumerate(names)
        ]
    return [(0, [str(f) for f in ann_files], [str(store.segment_path(campaign, n, "traces")) for n in names])]


def _read_traces(files: Sequence[str]) -> pa.Table:

    if not files:
        return TRACE_SCHEMA.empty_table()
    return pa.concat_tables([pq.read_table(f, schema=TRACE_SCHEMA) for f in files])


def _paths_partition(part: tuple[int, list[str], list[str]],
                     ctx: dict[str, Any]) -> tuple[pa.Buffer, Counter[str], ScopeTally]:
    """Build the paths of one partition, each with its traceroute's scope verdict; return
    them as a Parquet file in memory (:func:`probes.fileio.parquet_buffer`), the drops and
    the partition's scope tally."""

    _, ann_files, trace_files = part
    columns = ctx["columns"]  # and the destination, for the destination RTTs
    read = list(columns) if "dst_addr" in columns else [*columns, "dst_addr"]
    annotated = _read_partition_hops([Path(f) for f in ann_files], read)
    traces = _read_traces(trace_files)
    dst_rtts = _destination_rtts(annotated, traces, ctx["pair_rtts"])
    if ctx["owners"] is not None:
        annotated = apply_owners(annotated, ctx["owners"])
    paths, drops = build_paths(
        annotated,
        traces,
        ctx["probes"],
        registry=ctx["registry"],
        destinations=ctx["destinations"],
        facilities=ctx["facilities"],
        discs=ctx.get("discs"),
        routers=ctx.get("routers"),
        include_endpoints=ctx["include_endpoints"],
        rtt_jump_ms=ctx["rtt_jump_ms"],
        owner_attributes=ctx.get("owner_attributes"),
    )
    del annotated
    scope = scope_traceroutes(dst_rtts, ctx["destinations"], ctx["probes"], ctx["dst_country"])
    paths = with_scope(paths, _with_destination_family(scope.table, ctx["dst_info"]))
    return fileio.parquet_buffer(paths, SCOPED_PATHS_SCHEMA), drops, ScopeTally.of(scope)


#: Tasks per runner slot (:attr:`probes.engine.Runner.slots`) of the exposure sums.
_TASKS_PER_SLOT = 8


def _sums_task(row_groups: list[int], ctx: dict[str, Any]) -> PathSums:
    """The sums of the in-scope paths of some row groups of ``paths_file``."""
    sums = PathSums(ctx["families"], ctx["pop_country"], ctx["geometry"])
    for table, row0 in scoped_batches(ctx["paths_file"], _METRIC_COLUMNS, row_groups=row_groups):
        sums.add(table, row0)
    return sums


def _exposure_task(task: tuple[str | None, str, str | None, bool], ctx: dict[str, Any]) -> pa.Table:
    """One exposure table: (family, path_exposure|pop_exposure, grouping, probe-weighted)."""
    family, kind, by, weighted = task
    return ctx["sums"].exposure(family, kind, by, weighted, n_boot=ctx["n_boot"], seed=ctx["seed"],
                                confidence=ctx["confidence"])


def _distinct_destinations(trace_files: Sequence[str]) -> pa.Array:
    """The distinct non-null ``dst_addr`` of the traceroute files, sorted."""
    if not trace_files:
        return pa.array([], pa.string())
    con = connect()
    try:
        res = con.sql(
            "SELECT DISTINCT dst_addr FROM read_parquet($files) WHERE dst_addr IS NOT NULL ORDER BY 1",
            params={"files": list(trace_files)},
        ).to_arrow_table()
    finally:
        con.close()
    return res.column(0).combine_chunks().cast(pa.string()) if res.num_rows else pa.array([], pa.string())


def _trace_period(trace_files: Sequence[str]) -> tuple[int, int] | None:
    """Epoch seconds of the first and last traceroute of the files (None: no traceroute)."""
    if not trace_files:
        return None
    con = connect()
    try:
        lo, hi = con.execute("SELECT epoch(min(timestamp))::BIGINT, epoch(max(timestamp))::BIGINT "
                             "FROM read_parquet($files)", {"files": list(trace_files)}).fetchall()[0]
    finally:
        con.close()
    return None if lo is None or hi is None else (int(lo), int(hi))


def _with_derived_probes(campaign: Campaign, probe_meta: pa.Table, trace_files: Sequence[str],
                         snap: Any) -> tuple[pa.Table, dict[str, Any]]:
    """Stored probe metadata, plus records derived from the ``from`` address of probes without it.

    Returns the table and the ``probe_metadata`` object of ``exposure.json``: counts of
    probes with stored, derived and no metadata, and the one-line status with the remedy
    (:func:`analysis.vantage.probe_metadata_status`), or null when all is stored.
    """
    from analysis.vantage import derive_probe_meta, probe_metadata_status

    con = connect()
    try:
        # each probe's source addresses with their traceroute counts (the votes), not every row
        traces = con.sql("SELECT prb_id, from_addr, count(*) AS n FROM read_parquet($files) "
                         "GROUP BY prb_id, from_addr ORDER BY prb_id, from_addr",
                         params={"files": list(trace_files)}).to_arrow_table() if trace_files else \
            pa.table({"prb_id": pa.array([], pa.int64()), "from_addr": pa.array([], pa.string()),
                      "n": pa.array([], pa.int64())})
    finally:
        con.close()
    derived = derive_probe_meta(traces, snap, probe_meta) if snap is not None else None
    table = probe_meta if derived is None or not derived.num_rows else pa.concat_tables([probe_meta, derived])
    seen = set(pc.unique(traces["prb_id"]).to_pylist())
    stored = seen & set(probe_meta.column("prb_id").to_pylist())
    n_derived = 0 if derived is None else derived.num_rows
    status = {"probes": len(seen), "stored": len(stored), "derived": n_derived,
              "missing": len(seen) - len(stored) - n_derived,
              "status": probe_metadata_status(traces, table, campaign.name)}
    return table, status


def _with_destination_family(scope: pa.Table, destinations: pa.Table) -> pa.Table:
    """The per-traceroute scope table with its destination's ``dst_family`` and evidence."""
    idx = pc.index_in(scope.column("dst_addr"), value_set=destinations.column("dst_addr"))
    for name in ("dst_family", "dst_family_via"):
        col = pc.take(destinations.column(name), idx)
        if name in scope.column_names:
            scope = scope.drop_columns([name])
        scope = scope.append_column(name, col)
    return scope


def _destination_rtts(hops: pa.Table, traces: pa.Table, pair_rtts: pa.Table) -> pa.Table:
    """:func:`analysis.destinations.destination_rtts` over a partition's annotated hops (read
    once, for the paths and for this), one row per traceroute of ``traces``.

    The same definition in SQL: per traceroute, ``min(rtt) FILTER (WHERE reply_from =
    dst_addr)``. A traceroute whose destination did not reply takes the smallest RTT the
    same probe measured to the same destination in another traceroute of the campaign
    (``pair_rtts``, :func:`analysis._hop_scans.destination_pair_rtts` over every file: the geography does not
    change between them); null when the probe never reached it. A traceroute without hop
    rows (an empty ``result``, or an ``error`` instead) has a row too: its scope is decided
    by its destination like any other's, and the scope tally counts it.
    """
    con = connect()
    try:
        con.register("pairs", pair_rtts)
        con.register("h", hops.select(["msm_id", "prb_id", "timestamp", "dst_addr", "reply_from", "rtt"]))
        con.register("t", traces.select(["msm_id", "prb_id", "timestamp", "dst_addr"]))
        res = con.sql(
            """
            WITH own AS (
                SELECT msm_id, prb_id, timestamp, dst_addr,
                       min(rtt) FILTER (WHERE reply_from = dst_addr AND rtt IS NOT NULL) AS rtt
                FROM h
                GROUP BY msm_id, prb_id, timestamp, dst_addr)
            SELECT msm_id, prb_id, timestamp, t.dst_addr,
                   coalesce(own.rtt, pairs.dst_rtt_ms) AS dst_rtt_ms
            FROM t LEFT JOIN own USING (msm_id, prb_id, timestamp)
                   LEFT JOIN pairs ON pairs.prb_id = t.prb_id AND pairs.dst_addr = t.dst_addr
            ORDER BY msm_id, prb_id, timestamp
            """
        ).to_arrow_table()
    finally:
        con.close()
    return res.cast(pa.schema([("msm_id", pa.int64()), ("prb_id", pa.int64()),
                               ("timestamp", pa.timestamp("s", tz="UTC")), ("dst_addr", pa.string()),
                               ("dst_rtt_ms", pa.float64())]))


def _located(destinations: pa.Table, located: pa.Table) -> pa.Table:
    """The destination table with the country where each destination is (and how it is known).

    ``dst_country`` becomes the located country (:func:`analysis.destinations.locate_destinations`,
    strongest evidence first); the AS and the country of replying hops stay as fallbacks.
    ``dst_lat`` / ``dst_lon`` (an anchor's or IPmap's point) only for a destination proven
    unicast: the PoP search draws its RTT ellipse around that point.
    """
    con = connect()
    try:
        con.register("d", destinations)
        con.register("l", located.select(["dst_addr", "dst_country", "dst_country_via", "dst_anycast",
                                          "dst_lat", "dst_lon"]))
        return con.sql(
            """
            SELECT d.dst_addr, d.dst_asn,
                   CASE WHEN l.dst_country IS NOT NULL THEN l.dst_country
                        WHEN d.dst_country NOT IN ('ZZ', 'EU', 'AP') THEN d.dst_country END AS dst_country,
                   CASE WHEN l.dst_country IS NOT NULL THEN l.dst_country_via
                        WHEN d.dst_country NOT IN ('ZZ', 'EU', 'AP') THEN 'replying-hop-as-country'
                        ELSE 'unknown' END AS dst_country_via,
                   l.dst_anycast,
                   CASE WHEN l.dst_anycast = false THEN l.dst_lat END AS dst_lat,
                   CASE WHEN l.dst_anycast = false THEN l.dst_lon END AS dst_lon
            FROM d LEFT JOIN l USING (dst_addr) ORDER BY d.dst_addr
            """
        ).to_arrow_table().cast(pa.schema([("dst_addr", pa.string()), ("dst_asn", pa.int64()),
                                           ("dst_country", pa.string()), ("dst_country_via", pa.string()),
                                           ("dst_anycast", pa.bool_()), ("dst_lat", pa.float64()),
                                           ("dst_lon", pa.float64())]))
    finally:
        con.close()


def _with_replying_destinations(
    destinations: pa.Table | None, dst_addrs: pa.Array, addresses: pa.Table
) -> pa.Table:
    """Destination AS/country: the snapshot's, else the annotation of hops replying from it.

    Campaign-wide (the replying hop may be in another segment than the traceroute), so a
    segment's :func:`~analysis.paths.build_paths` sees what the whole table would give.
    """
    d = destinations if destinations is not None else pa.table({
        "dst_addr": dst_addrs, "dst_asn": pa.nulls(len(dst_addrs), pa.int64()),
        "dst_country": pa.nulls(len(dst_addrs), pa.string())})
    replying = replying_attributes_sql("r", "reply_from IN (SELECT dst_addr FROM q)", weight="n")
    con = connect()
    try:
        con.register("d", d.select(["dst_addr", "dst_asn", "dst_country"]))
        con.register("q", pa.table({"dst_addr": dst_addrs}))
        con.register("r", addresses)
        return con.sql(
            f"""
            SELECT q.dst_addr, coalesce(g.dst_asn, h.dst_asn) AS dst_asn,
                   coalesce(g.dst_country, h.dst_country) AS dst_country
            FROM q
            LEFT JOIN (SELECT dst_addr, min(dst_asn) dst_asn, min(dst_country) dst_country
                       FROM d GROUP BY dst_addr) g USING (dst_addr)
            LEFT JOIN ({replying}) h USING (dst_addr)
            ORDER BY q.dst_addr
            """
        ).to_arrow_table().cast(pa.schema([("dst_addr", pa.string()), ("dst_asn", pa.int64()),
                                           ("dst_country", pa.string())]))
    finally:
        con.close()


def _campaign_node_attributes(addresses: pa.Table, registry: RegistryLike | None) -> pa.Table:
    """:func:`~analysis.paths.node_attributes` over the campaign, from its :func:`analysis._hop_scans.address_rows`."""
    con = connect()
    try:
        con.register("a", addresses)
        table = node_attributes_sql(con, weight="n")
    finally:
        con.close()
    return override_families(table, registry)


def _owner_table(
    ann_files: list[Path], columns: Sequence[str], trace_files: Sequence[str], snap: Any, note: str,
    destinations: pa.Table | None = None, *, runner: Runner | None = None, registry: RegistryLike | None = None,
    addresses: pa.Table | None = None,
) -> tuple[pa.Table | None, str, pa.Table | None]:
    """The ownership stage (:func:`analysis.ownership.infer_owners`) over every annotated hop:
    the owners, where the adjacency data came from, and the owner ASes' family and
    country (:func:`_owner_attribute_table`, from the same per-address query).

    An address's owner is decided from all its occurrences, so it runs here, before the
    per-partition paths, but one traceroute-complete chunk at a time: the addresses'
    attributes (first row over the campaign) in one grouped query, then per store segment
    (its annotated part and its traceroute segment) the representative hops, reduced to the
    segment's distinct occurrence tuples and merged (:mod:`analysis.ownership` notes), so
    only one segment's hops are held. Parts not named after the segments are one chunk.
    The segments are read and reduced by ``runner`` (analyze's: local threads or Dask
    workers; default: the local engine), the reduction merged here.
    The owners table is one row per reply address. AS relationships (``as-rel``) and sibling groups
    (``as-siblings``) come from the campaign's snapshot when it has them; without them
    the rules that need adjacency fall back as :mod:`analysis.ownership` says.
    """
    from analysis import ownership

    cols = [c for c in (*ownership.REQUIRED_COLUMNS, *STALE_FLAGS, "family", "dst_addr") if c in columns]
    if not trace_files:
        return None, "no traceroute table", None
    dests = (destinations.select(["dst_addr", "dst_asn"]) if destinations is not None
             else pa.table({"dst_addr": pa.array([], pa.string()), "dst_asn": pa.array([], pa.int64())}))
    # traceroute-complete chunks: one per store segment (its annotated part and its
    # traceroute segment, named alike); parts written another way are one chunk
    by_stem = {Path(f).name: f for f in trace_files}
    chunks = ([([str(f)], [by_stem[f.name]]) for f in ann_files] if all(f.name in by_stem for f in ann_files)
              else [([str(f) for f in ann_files], list(trace_files))])
    rel = snap.table("as-rel", "links") if snap is not None and snap.has("as-rel") else None
    sib = snap.table("as-siblings", "groups") if snap is not None and snap.has("as-siblings") else None
    used = [k for k, t in (("as-rel", rel), ("as-siblings", sib)) if t is not None]
    if sib is None and snap is not None and snap.has("as2org"):
        # the ASes of one CAIDA organisation are siblings
        asns = snap.table("as2org", "asns")
        org = pc.dictionary_encode(asns.column("org_id").combine_chunks())
        sib = pa.table({"group": org.indices.cast(pa.int64()), "asn": asns.column("asn")})
        used.append("as2org organisations as siblings")
    source = f"{note}: {', '.join(used)}" if used else f"{note}: no as-rel, as-siblings or as2org (adjacency rules off)"
    stale = stale_reply_sql(cols, "a.")
    if addresses is None:
        addresses = address_rows(ann_files, columns, runner)
    con = connect()
    try:
        con.register("a", addresses)
        # each address's attributes from its first row over the whole campaign, in the order
        # of first rows (one row per address); the first row's key rides in the struct
        attrs = con.sql(
            "SELECT addr, f FROM (SELECT a.reply_from AS addr, arg_min(struct_pack(asn := a.asn::BIGINT, "
            "ip_class := a.ip_class::VARCHAR, ixp := a.ixp_id IS NOT NULL, member_asn := a.member_asn::BIGINT, "
            "family := a.family::VARCHAR, as_country := a.as_country::VARCHAR, k := a.k), a.k) AS f "
            "FROM a GROUP BY a.reply_from) ORDER BY struct_extract(f, 'k')",
        ).to_arrow_table()
        first = attrs.column("f").combine_chunks() if attrs.num_rows else None
        attrs = pa.table({
            "addr": attrs.column("addr").cast(pa.string()),
            **{c: (first.field(c) if first is not None else pa.array([], t))
               for c, t in (("asn", pa.int64()), ("ip_class", pa.string()), ("ixp", pa.bool_()),
                            ("member_asn", pa.int64()), ("family", pa.string()), ("as_country", pa.string()))},
        })

    finally:
        con.close()

    readers = (functools.partial(_segment_hops, ann, tr, cols, dests, stale) for ann, tr in chunks)
    owners = ownership.infer_owners_chunked(attrs.drop_columns(["family", "as_country"]), readers,
                                            relationships=rel, siblings=sib,
                                            runner=runner if runner is not None else Runner())
    return owners, source, _owner_attribute_table(attrs, owners, registry if registry is not None else load_registry())


def _owner_attribute_table(addresses: pa.Table, owners: pa.Table, registry: RegistryLike) -> pa.Table:
    """Per owner AS the annotation met (as the IXP member on a LAN row, else the origin):
    the family and registry country it gave it, the alphabetically first non-empty one
    where its addresses disagree (the rule of :func:`analysis._tables.as_attribute`);
    ``asn, family, as_country``, sorted by AS. An owner AS the annotation never met takes
    its family from ``registry`` (the one annotate used) and no country.

    From ``addresses``, one row per reply address of the campaign (``asn, member_asn,
    family, as_country``): the annotation is a function of the address, so every row of
    an address carries these values and the addresses stand for all the rows.
    """
    con = connect()
    try:
        con.register("wanted", owners.select(["owner_asn"]))
        con.register("addresses", addresses.select(["asn", "member_asn", "family", "as_country"]))
        met = con.sql(
            "SELECT a AS asn, min(f) FILTER (WHERE f <> '') AS family, min(c) FILTER (WHERE c <> '') AS as_country "
            "FROM (SELECT coalesce(member_asn, asn)::BIGINT AS a, family AS f, as_country AS c FROM addresses) "
            "WHERE a IN (SELECT owner_asn FROM wanted) GROUP BY a ORDER BY a"
        ).to_arrow_table()
    finally:
        con.close()
    owner = pc.unique(owners.column("owner_asn").drop_null()).cast(pa.int64())
    unmet = int_np(owner.filter(pc.invert(pc.is_in(owner, value_set=met.column("asn").cast(pa.int64())))))
    if not len(unmet):
        return met
    new = pa.table({"asn": pa.array(unmet, pa.int64()), "family": registry_lookup(registry, unmet),
                    "as_country": pa.nulls(len(unmet), pa.string())})
    return pa.concat_tables([met.cast(new.schema), new]).sort_by("asn")


def _segment_hops(ann: list[str], tr: list[str], cols: list[str], dests: pa.Table, stale: str) -> pa.Table:
    """One chunk of :func:`_owner_table`: the hops its occurrences can use.

    Replies that are neither late nor a duplicate (timeouts say nothing; the occurrences
    take each hop's first one), with the traceroute's destination and its AS: the
    destination the hop rows carry (read straight from Parquet, the strings left
    dictionary-encoded, and filtered in Arrow), or, for annotated parts without that
    column, the traceroute segment's (joined in SQL, on a connection of its own: chunks
    are read in several threads or on Dask workers). The destination's AS is looked up
    here rather than joined in SQL, so the rows keep the file's order (a traceroute's hops
    in order: the occurrences need not sort them).
    """
    if "dst_addr" in cols:  # the hop rows carry their traceroute's destination (selected with cols)
        hops = _read_partition_hops([Path(f) for f in ann], cols)  # strings dictionary-encoded
        keep = np.asarray(pc.is_valid(hops.column("reply_from")).to_numpy(zero_copy_only=False), bool)
        hops = hops.filter(pa.array(keep & ~stale_replies(hops)))
    else:
        seg = connect()
        try:
            hops = seg.sql(
                f"SELECT {', '.join(f'a.{c}' for c in cols)}, t.dst_addr "
                "FROM read_parquet($ann, union_by_name=true) a "
                "LEFT JOIN read_parquet($tr) t USING (msm_id, prb_id, timestamp) "
                f"WHERE a.reply_from IS NOT NULL AND NOT ({stale})",
                params={"ann": ann, "tr": tr},
            ).to_arrow_table()
        finally:
            seg.close()
    at = index_in(hops.column("dst_addr"), dests.column("dst_addr"))
    return hops.append_column("dst_asn", dests.column("dst_asn").combine_chunks().take(at))


def _campaign_snapshot(snapshot_id: str | None, cache_dir: str | Path | None) -> tuple[Any, str]:
    """The reference snapshot ``annotate.json`` names, or None and why it is not available."""
    if snapshot_id is None:
        return None, "annotate.json names no snapshot"
    try:
        return load_snapshot(snapshot_id, cache_dir=cache_dir), f"snapshot {snapshot_id}"
    except MissingReferenceData as exc:
        return None, f"snapshot {snapshot_id!r} not available: {exc}"


def _destination_table(
    dst: pa.Array, snap: Any, note: str, registry: Any
) -> tuple[pa.Table | None, str]:
    """Annotate the distinct destination addresses with the campaign's snapshot."""

    if snap is None:
        return None, f"from replying hops only ({note})"
    n = len(dst)
    cols = {f.name: pa.nulls(n, f.type) for f in HOP_SCHEMA}
    cols.update({"msm_id": pa.array(np.zeros(n, np.int64)), "prb_id": pa.array(np.zeros(n, np.int64)),
                 "timestamp": pa.array(np.zeros(n, np.int64)).cast(HOP_SCHEMA.field("timestamp").type),
                 "reply_from": dst, "dst_addr": dst})
    hop_like = pa.Table.from_arrays([cols[f.name] for f in HOP_SCHEMA], schema=HOP_SCHEMA)
    reg = registry if hasattr(registry, "lookup") else None
    ann, _ = annotate(hop_like, snap, registry=reg)
    asn = pc.if_else(pc.is_valid(ann.column("ixp_id")), ann.column("member_asn"), ann.column("asn"))
    table = pa.table({"dst_addr": ann.column("reply_from"), "dst_asn": asn,
                      "dst_country": ann.column("as_country")})
    return table, f"annotated with {note}, then replying hops"


def _facility_table(snap: Any, note: str) -> tuple[pa.Table | None, str]:
    """``asn, city, country, lat, lon`` of every PeeringDB netfac row of the snapshot."""
    if snap is None:
        return None, f"none ({note})"
    if not snap.has("peeringdb"):
        return None, f"none ({note} has no PeeringDB data)"
    con = connect()
    try:
        con.register("nf", snap.table("peeringdb", "netfac"))
        con.register("net", snap.table("peeringdb", "net"))
        con.register("fac", snap.table("peeringdb", "fac"))
        table = con.sql(
            """
            SELECT DISTINCT coalesce(nf.local_asn, net.asn) AS asn, fac.city, fac.country,
                   fac.latitude AS lat, fac.longitude AS lon
            FROM nf LEFT JOIN net ON net.id = nf.net_id JOIN fac ON fac.id = nf.fac_id
            WHERE coalesce(nf.local_asn, net.asn) IS NOT NULL
              AND fac.latitude IS NOT NULL AND fac.longitude IS NOT NULL
            ORDER BY ALL
            """
        ).to_arrow_table()
    finally:
        con.close()
    return table, f"PeeringDB netfac/fac of {note}: {table.num_rows} (network, facility) rows"


def _annotate_info(campaign: Campaign) -> tuple[str | None, dict[str, Any]]:
    import orjson

    path = campaign.annotate_json
    if not path.exists():
        return None, {}
    info = orjson.loads(path.read_bytes())
    if not isinstance(info, dict):
        raise SchemaMismatch(f"{path} is not a JSON object")
    snap = info.get("snapshot_id", info.get("snapshot"))
    if isinstance(snap, dict):
        snap = snap.get("id", snap.get("snapshot_id"))
    return (str(snap) if snap is not None else None), info


def _report_families(
    paths_file: Path, nodes: pa.Table, registry: RegistryLike, families: Sequence[str] | None, *, annotation: bool
) -> list[str]:
    """The families the figures are given for: ``families`` when named, else every family of
    ``registry`` (analyze's, or the annotation's when ``annotation``) and any family a path in
    scope transits (and, for the annotation's, any a node carries)."""
    if families is not None:
        return list(dict.fromkeys(families))
    found = set(registry_family_ids(registry))
    con = connect()
    try:
        found.update(r[0] for r in con.execute(
            "SELECT DISTINCT f FROM (SELECT unnest(flagged_families) AS f FROM read_parquet(?) WHERE in_scope) "
            "WHERE f IS NOT NULL AND f <> ''", [str(paths_file)]).fetchall())
    finally:
        con.close()
    if annotation:
        found.update(f for f in nodes.column("family").to_pylist() if f)
    return sorted(found)


def _annotation_registry(annotate_info: Mapping[str, Any]) -> Registry:
    """The registry ``annotate.json`` records (the shipped one when it names no file): the
    families the annotated hops carry. Without ``--registry`` analyze keeps them for what
    the hops do not say (the destinations' families, the families reported, the control
    plane, owner ASes the annotation never met); the annotation's verdict has already
    checked that the file is the one annotate read."""
    path = ((annotate_info.get("generation") or {}).get("registry") or {}).get("path")
    return load_registry(path)


def _family_hegemony(hegemony: pa.Table, node_family: Mapping[str, Any], family: str | None) -> dict[str, Any]:
    """The family's node with the highest AS hegemony (IHR), or nulls."""
    for row in hegemony.to_pylist():  # sorted by hegemony, descending
        fam = node_family.get(row["node"])
        if fam and (family is None or fam == family):
            return {"node": row["node"], "hegemony": row["hegemony"], "viewpoints": row["n_viewpoints"]}
    return {"node": None, "hegemony": 0.0, "viewpoints": hegemony.column("n_viewpoints")[0].as_py()
            if hegemony.num_rows else 0}


def _pop_upper(sums: PathSums, family: str | None, country: str, confidence: float, *, n_boot: int,
               seed: int) -> dict[str, Any]:
    """The upper bound of PoP exposure (:func:`analysis.metrics.pop_upper_indicator`), with
    the same cluster bootstrap over probes as the located (lower-bound) figure."""
    k, _n, est, lo, hi = sums.pop_upper(family, n_boot=n_boot, seed=seed, confidence=confidence)
    return {"estimate": est, "transiting": k, "ci_low": lo, "ci_high": hi,
            "method": f"upper bound: also crossings with no located PoP that the speed of light does not "
                      f"keep out of {country}; cluster bootstrap over prb_id, percentile {confidence:.0%}, "
                      f"B={n_boot}, seed={seed}"}


def _pop_bounds(lower: Mapping[str, Any], upper: Mapping[str, Any], confidence: float) -> dict[str, Any]:
    """PoP exposure is only partly identified while crossings stay unlocated: the located
    share and the possible share bound it. The interval from the lower bound's lower end to
    the upper bound's upper end covers the whole region with at least ``confidence``
    (Imbens & Manski, Econometrica 72(6), 2004: the conservative union of the two one-sided
    intervals)."""
    return {"low": lower.get("estimate"), "high": upper.get("estimate"),
            "ci_low": lower.get("ci_low"), "ci_high": upper.get("ci_high"),
            "method": f"partial identification: [located, possibly] with the lower end of the located "
                      f"interval and the upper end of the possible one ({confidence:.0%} each)"}


def _summary_row(boot: pa.Table) -> dict[str, Any]:
    b = boot.to_pylist()[0]
    return {
        "traceroutes": b["traceroutes"],
        "transiting": b["transiting"],
        "probes": b["probes"],
        "estimate": b["exposure"],
        "ci_low": b["ci_low"],
        "ci_high": b["ci_high"],
        "method": b["method"],
        "wilson": {"ci_low": b["wilson_low"], "ci_high": b["wilson_high"],
                   "method": "wilson score interval, traceroutes as independent"},
    }


def _long(table: pa.Table, grouping: str | None) -> pa.Table:
    """Exposure table in long form: family, [pop_country], grouping, group (as text), figures."""
    from analysis.metrics import GROUP_ALIASES

    col = GROUP_ALIASES.get(grouping, grouping) if grouping else None
    group = (
        pc.cast(table.column(col), pa.string()) if col else pa.nulls(table.num_rows, pa.string())
    )
    if col:
        table = table.drop_columns([col])
    pos = 2 if "pop_country" in table.column_names else 1
    table = table.add_column(pos, "grouping", pa.array([grouping or "overall"] * table.num_rows, pa.string()))
    return table.add_column(pos + 1, "group", group)


def _with_country_basis(table: pa.Table, basis: dict[str, str]) -> pa.Table:
    """The long exposure table with ``country_basis`` on its source-country rows.

    What each source country rests on (:func:`analysis.vantage.country_basis`): probe
    metadata, or a country derived from the probes' source addresses; null on other rows.
    """
    rows = pc.fill_null(pc.equal(table.column("grouping"), "source_country"), False).to_numpy(zero_copy_only=False)
    groups = table.column("group").to_pylist()
    vals = [basis.get(g) if r and g is not None else None for g, r in zip(groups, rows, strict=True)]
    return table.append_column("country_basis", pa.array(vals, pa.string()))


# ---------------------------------------------------------------------------- report
def load_campaign(campaign: Campaign) -> CampaignData:
    """Read an analysed campaign's outputs (what :func:`analyze_campaign` wrote).

    Reads ``exposure.json``, ``paths/paths.parquet``, the ``exposure/`` tables,
    ``graph/as_graph.graphml``, ``annotate.json`` and ``ingest.json`` (empty when absent),
    the probe metadata and the IXP hops of the annotated table.

    Reads under the campaign lock taken shared (it waits for a running ingest, annotate or
    analyze), and only outputs of one analyze run on the current annotation of the
    current store (:func:`analysis.lineage.analyze_verdict`).

    Raises
    ------
    analysis.errors.MissingReferenceData
        When the campaign has not been analysed (no ``exposure.json`` or a table it names).
    analysis.errors.MissingInput
        When the outputs are of mixed analyze runs (one was interrupted) or stale (results
        ingested, annotate run again, or probe metadata changed since): one line saying
        what and which command to run.
    """
    summary_path = campaign.exposure_json
    if not summary_path.is_file():
        raise MissingReferenceData(
            f"campaign {campaign.name!r} has not been analysed (no {summary_path}); "
            "run `pathexp analyze` first"
        )
    with store.campaign_lock(campaign, holder="report", shared=True):
        gen = (lineage.read_manifest(summary_path) or {}).get("generation") or {}
        cache_dir = (gen.get("rerun") or {}).get("cache_dir") if isinstance(gen, dict) else None
        lineage.require_current(lineage.analyze_verdict(campaign, cache_dir=cache_dir))
        return _load_campaign(campaign)


def _load_campaign(campaign: Campaign) -> CampaignData:
    import networkx as nx
    import orjson

    summary_path = campaign.exposure_json
    needed = [campaign.paths_parquet, campaign.as_graph_graphml]
    needed += [campaign.exposure_table(n) for n in (*_EXPOSURE_TABLES, "pops")]
    for p in needed:
        if not p.is_file():
            raise MissingReferenceData(f"{p} is missing; run `pathexp analyze` again")

    def js(path: Path) -> dict[str, Any]:
        if not path.is_file():
            return {}
        obj = orjson.loads(path.read_bytes())
        if not isinstance(obj, dict):
            raise SchemaMismatch(f"{path} is not a JSON object")
        return obj

    paths = in_scope(pq.read_table(campaign.paths_parquet))  # what the figures are about
    exp = {n: pq.read_table(campaign.exposure_table(n)) for n in _EXPOSURE_TABLES}
    return CampaignData(
        campaign=campaign,
        summary=js(summary_path),
        annotate=js(campaign.annotate_json),
        ingest=js(campaign.ingest_report),
        paths=paths,
        crossings=plots.crossing_table(paths),
        graph=nx.read_graphml(campaign.as_graph_graphml),
        probes=store.read_probe_meta(campaign),
        pops=plots.pop_locations(_ixp_hops(campaign)),
        entries=pq.read_table(campaign.exposure_table("pops")),
        **exp,
    )


def write_report(campaign: Campaign, *, out: str | Path | None = None, force: bool = False) -> Path:
    """Write the campaign's self-contained HTML report; return its path.

    :func:`load_campaign`, then :func:`analysis.report.render_html`. Refuses outputs that
    are not current; with ``force=True`` recomputes them first (:func:`refresh_campaign`).

    Parameters
    ----------
    campaign : probes.workspace.Campaign
        An analysed campaign (``pathexp analyze`` has run).
    out : path, optional
        Target file; default ``<workspace>/<campaign>/report/index.html``.
    force : bool
        Recompute stale stages first (:func:`refresh_campaign`) instead of refusing.

    Returns
    -------
    pathlib.Path
    """

    if force:
        refresh_campaign(campaign)
    from analysis.report import report_figures

    data = load_campaign(campaign)
    target = Path(out) if out is not None else campaign.report_html
    files: dict[str, dict[str, bytes]] = {}
    figures = report_figures(data, files=files)
    # the figures as files a paper can use, next to the page: figures/<id>.png|svg|pdf
    for fid, rendered in files.items():
        for fmt, blob in rendered.items():
            fileio.write_bytes(target.parent / "figures" / f"{fid}.{fmt}", blob)
    fileio.write_bytes(target, render_html(data, figures=figures).encode("utf-8"))
    return target


_IXP_COLS = ("ixp_id", "ixp_name", "ixp_city", "ixp_country", "ixp_lat", "ixp_lon", "family")


def _ixp_hops(campaign: Campaign) -> pa.Table:
    """The IXP-LAN replies of the annotated table (only the columns the PoP map needs)."""
    files = sorted(str(p) for p in campaign.annotated_dir.glob("**/*.parquet"))
    if not files:
        return pa.table({c: pa.array([], pa.float64() if c in ("ixp_lat", "ixp_lon") else pa.string())
                         for c in _IXP_COLS})
    src = "read_parquet([" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "], union_by_name=true)"
    con = connect()
    try:
        names = {r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {src}").fetchall()}
        sel = ", ".join(c if c in names else f"NULL::{'DOUBLE' if c in ('ixp_lat', 'ixp_lon') else 'VARCHAR'} AS {c}"
                        for c in _IXP_COLS)
        if "ixp_id" not in names:
            return con.sql(f"SELECT {sel} LIMIT 0").to_arrow_table()
        return con.sql(f"SELECT {sel} FROM {src} WHERE ixp_id IS NOT NULL").to_arrow_table()
    finally:
        con.close()
