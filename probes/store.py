"""The campaign store: raw results (append-only), hop and traceroute tables, probe metadata.

Only this module writes ``raw/``, ``traces/`` and ``hops/`` of a campaign
(:class:`probes.workspace.Campaign`). A *segment* ``seg-NNNNNN`` is three files written to
temporary names and renamed in a fixed order — raw NDJSON (zstd), then the traceroute
table, then the hop table — so a killed ingest leaves a readable store; the next ingest
(:func:`recover`) rebuilds the tables of any segment whose raw file is complete, raw
being the source of truth. Results are deduplicated on ``(msm_id, prb_id, timestamp)``
against the whole store: ingesting the same input twice adds nothing.

With ``engine="dask"`` (:func:`ingest_files`) Dask workers parse whole input files into
parts staged under ``<campaign>/.staging/`` in the segment format; this process, holding
the campaign lock, deduplicates them and commits them in input order (a part with no
stored result is renamed into a segment, raw first). The staging folder is discarded by
the next ingest, so a killed run leaves only committed segments behind.

Inputs are opened, decompressed and framed into records by :mod:`probes.inputs`; this
module parses them (:mod:`probes.parse`), deduplicates and stores them.

The campaign lock (:func:`campaign_lock`, a ``flock`` on ``<campaign>/.lock``) is held
by every stage that writes a campaign's folders: ingest here, annotate and analyze in
:mod:`analysis.campaign_io`; a second writer waits for the first (saying so once, on the
``probes.store`` logger), readers take it shared. :func:`generation` is what the later
stages record of the store: the number of its newest raw segment (every ingest that adds
results adds a segment, so it goes up; nothing ever lowers it) and a fingerprint of the
raw segments' names and sizes, read from the directory listing, never by rehashing.

Readers (:func:`scan_hops`, :func:`scan_traces`) yield Arrow record batches;
:func:`read_hops` and :func:`read_traces` collect them. :func:`segment_names` and
:func:`segment_path` give the per-segment files: a segment holds whole traceroutes, the
unit :mod:`analysis` works on segment by segment.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, closing, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from probes import fileio, memory
from probes._parquet_splice import write_row_groups
from probes.engine import refuse_while_a_child_imports_main, spare_threads
from probes.errors import StoreError
from probes.inputs import HashingReader, iter_records, open_input
from probes.parse import DROP_REASONS, Parsed, iter_parsed, parse_lines
from probes.progress import step
from probes.schema import HOP_SCHEMA, STORED_HOP_SCHEMA, TRACE_SCHEMA
from probes.workspace import Campaign

__all__ = [
    "IngestReport",
    "StoreGeneration",
    "campaign_lock",
    "generation",
    "hop_parquet_bytes",
    "ingest_files",
    "ingest_results",
    "ingest_stream",
    "recover",
    "scan_hops",
    "read_hops",
    "scan_traces",
    "read_traces",
    "iter_raw",
    "summary",
    "write_probe_meta",
    "read_probe_meta",
    "probes_without_meta",
    "PROBE_META_SCHEMA",
    "epoch_seconds",
    "segment_names",
    "segment_path",
]

#: Lines parsed together (one Arrow JSON decode per block).
BLOCK_LINES = 4096
#: Results collected before a segment is written.
SEGMENT_RESULTS = 32_768
_SEG = re.compile(r"^seg-(\d{6})\.")


#: Parquet settings of the hop table, the largest file an ingest writes (about a tenth of
#: its CPU time went to encoding it): those of every table (:data:`fileio.PARQUET_OPTIONS`)
#: except that ``rtt`` is not dictionary-encoded (nearly every reply has its own rtt, so
#: its dictionary is built and then abandoned for plain pages) and statistics are written
#: for the numeric columns only (statistics only let a reader skip row groups, which never
#: changes a result; the files come out slightly smaller). Every hop file goes through
#: these, whichever path writes it (ingest, Dask staging, :func:`recover`), so the same
#: results give the same bytes.
_HOP_PARQUET_OPTIONS = {**fileio.PARQUET_OPTIONS, **fileio.column_options(HOP_SCHEMA, plain={"rtt"})}

log = logging.getLogger(__name__)

PROBE_META_SCHEMA = pa.schema(
    [
        ("prb_id", pa.int64()),
        ("asn_v4", pa.int64()),
        ("asn_v6", pa.int64()),
        ("country_code", pa.string()),
        ("latitude", pa.float64()),
        ("longitude", pa.float64()),
        ("is_anchor", pa.bool_()),
        ("address_v4", pa.string()),
        ("address_v6", pa.string()),
        ("origin", pa.string()),
    ]
)


@dataclass
class IngestReport:
    """What one ingest did: results seen, added, duplicates, drops by reason."""

    seen: int = 0
    added: int = 0
    duplicates: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    hop_rows: int = 0
    segments: list[str] = field(default_factory=list)
    inputs: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def merge(self, other: IngestReport) -> None:
        self.seen += other.seen
        self.added += other.added
        self.duplicates += other.duplicates
        for k, v in other.drops.items():
            self.drops[k] = self.drops.get(k, 0) + v
        self.hop_rows += other.hop_rows
        self.segments += other.segments
        self.inputs += other.inputs


# --- lock and generation --------------------------------------------------------------


@contextmanager
def campaign_lock(campaign: Campaign, *, holder: str = "ingest", shared: bool = False,
                  wait: bool = True) -> Iterator[None]:
    """Hold the campaign lock (``flock`` on :attr:`~probes.workspace.Campaign.lock_file`).

    Writers (ingest, annotate, analyze) take it exclusively, readers (report) shared. When
    another process holds it, log one warning naming the holder and wait (``wait=True``)
    or raise. The lock is released when the block ends, or by the kernel when the process
    dies (``kill -9`` included). Not re-entrant: a process takes it once per stage.

    Parameters
    ----------
    campaign : probes.workspace.Campaign
    holder : str
        What takes it (written into the lock file while held exclusively, for the message
        another process shows), e.g. ``"annotate"``.
    shared : bool
        Take it shared (several readers at once, no writer).
    wait : bool
        Wait for the holder (default) or raise at once.

    Raises
    ------
    probes.errors.StoreError
        ``wait=False`` and the lock is held, or a table folder is a symbolic link.
    probes.errors.ConfigError
        Called by a worker process importing the main script again
        (:func:`probes.engine.refuse_while_a_child_imports_main`).
    """
    refuse_while_a_child_imports_main(f"pathexp {holder} of campaign {campaign.name!r}")
    campaign.check_folders()
    campaign.root.mkdir(parents=True, exist_ok=True)
    mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    with open(campaign.lock_file, "a+") as fh:
        try:
            fcntl.flock(fh, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            who = fh.read().strip() or "a reader (pathexp report or a notebook)"
            busy = f"campaign {campaign.name!r} is busy: {who}"
            if not wait:
                raise StoreError(f"{busy}; try again when it has finished") from None
            log.warning("%s; waiting for it to finish", busy)
            fcntl.flock(fh, mode)
        try:
            if not shared:
                fh.truncate(0)
                fh.write(f"pathexp {holder} (pid {os.getpid()}) holds it since "
                         f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
                fh.flush()
            yield
        finally:
            if not shared:
                fh.truncate(0)
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass(frozen=True)
class StoreGeneration:
    """What the store holds, as the later stages record it.

    Attributes
    ----------
    number : int
        Number of the newest raw segment (0: empty store). Every ingest that adds results
        adds a segment, so it goes up; nothing lowers it.
    fingerprint : str
        sha256 over the raw segments' names and sizes (from the directory listing).
    segments : int
        Raw segments stored.
    """

    number: int
    fingerprint: str
    segments: int

    def as_dict(self) -> dict:
        return asdict(self)


def generation(campaign: Campaign) -> StoreGeneration:
    """The store's current :class:`StoreGeneration` (a directory listing and stats, no hashing of data).

    Raw segments are append-only and never rewritten (recovery rebuilds only the tables
    derived from them), so equal generations mean equal stores.
    """
    raw = sorted(_segments(campaign.raw_dir, ".ndjson.zst").items())
    h = hashlib.sha256()
    for name, path in raw:
        h.update(f"{name} {path.stat().st_size}\n".encode())
    number = max((int(n[4:]) for n, _ in raw), default=0)
    return StoreGeneration(number=number, fingerprint=h.hexdigest(), segments=len(raw))


# --- the store ------------------------------------------------------------------------


class _KeyIndex:
    """Exact set of stored (msm_id, prb_id, timestamp) keys as sorted 12-byte strings.

    Kept as sorted runs, each at least twice as long as the next (a log-structured
    merge): adding a block sorts the block and merges only runs of similar length, so a
    key is merged about log2(n) times over an ingest and a look-up searches at most
    log2(n) runs. One sorted array re-sorted per block costs O(n) per block, quadratic
    over an ingest whose keys interleave with the stored ones (a second day of the same
    measurements): 3M results took 27 s in the index alone.
    """

    def __init__(self, keys: np.ndarray | None = None) -> None:
        self._runs: list[np.ndarray] = [np.sort(keys)] if keys is not None and len(keys) else []

    @staticmethod
    def encode(msm: np.ndarray, prb: np.ndarray, ts: np.ndarray) -> np.ndarray:
        packed = np.empty((len(msm), 3), dtype=">u4")
        packed[:, 0], packed[:, 1], packed[:, 2] = msm, prb, ts
        return packed.view("S12").ravel()

    def __len__(self) -> int:
        return sum(len(run) for run in self._runs)

    def select_new(self, keys: np.ndarray) -> np.ndarray:
        """Indices of ``keys`` that are neither stored nor repeated earlier in ``keys``."""
        # the distinct keys, sorted: sorted needles walk each run in order
        cand, first = np.unique(keys, return_index=True)
        for run in self._runs:
            if not len(cand):
                break
            pos = np.searchsorted(run, cand).clip(max=len(run) - 1)
            fresh = run[pos] != cand
            first, cand = first[fresh], cand[fresh]
        first.sort()
        return first

    def add(self, keys: np.ndarray) -> None:
        if not len(keys):
            return
        self._runs.append(np.sort(keys))
        while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
            # two sorted runs: the stable sort (timsort) merges them in linear time, in
            # place, the two runs freed first (a sorted copy would hold the keys three
            # times over at the last merge: 360 MB at 10M results)
            merged = np.concatenate([self._runs.pop(-2), self._runs.pop()])
            merged.sort(kind="stable")
            self._runs.append(merged)


class _SegmentFiles:
    """One segment's three files, written block by block to temporary names.

    Each block adds a zstd frame of its lines to the raw file (a stream of frames is one
    zstd stream to every reader: ``zstd -d``, Arrow, :func:`_raw_lines`) and a row group
    to each table (a row group keeps its own dictionaries, so no block's strings are
    re-encoded). :meth:`close` renames the files into place in the store's order (raw,
    traces, hops); after an error (:meth:`write` or :meth:`abort`) nothing is renamed and
    the temporaries are deleted (:func:`recover` deletes any a killed process left).
    """

    def __init__(self, files: dict[str, Path]) -> None:
        with ExitStack() as stack:  # a failure here deletes the temporaries made so far
            # entered hops first: an ExitStack leaves its contexts last-in first-out, so the
            # writers close before any rename and raw is renamed first, hops last
            self._tmp = {k: stack.enter_context(fileio.atomic_path(files[k])) for k in ("hops", "traces", "raw")}
            self._raw = stack.enter_context(open(self._tmp["raw"], "wb"))
            self._stack = stack.pop_all()
        self._codec = pa.Codec("zstd")
        self._tables: dict[str, pq.ParquetWriter] = {}
        self._failed = False

    def write(self, parsed: Parsed) -> None:
        """Append a block (its raw lines, traceroutes and hops); skipped after an error."""
        if self._failed:
            return
        try:
            self._raw.write(self._codec.compress(b"\n".join([*parsed.raw, b""])))
            self._append("traces", parsed.traces, fileio.PARQUET_OPTIONS)
            self._append("hops", parsed.hops, _HOP_PARQUET_OPTIONS)
        except BaseException:
            self._failed = True
            raise

    def _append(self, kind: str, table: pa.Table, options: dict) -> None:
        writer = self._tables.get(kind)
        if writer is None:
            writer = self._tables[kind] = self._stack.enter_context(pq.ParquetWriter(self._tmp[kind], table.schema,
                                                                                     **options))
        writer.write_table(table)

    def close(self) -> None:
        """Rename the files into place (raw, traces, hops); an empty or failed segment is
        aborted instead."""
        if self._failed or not self._tables:
            self.abort()
            if self._failed:
                return
            raise StoreError("internal: a segment closed without a block")
        self._stack.close()

    def abort(self) -> None:
        """Delete the temporaries; nothing is renamed."""
        exc = StoreError("segment aborted")
        self._failed = True
        self._stack.__exit__(type(exc), exc, None)


class _SegmentWriter:
    """Writes segments block by block on one background thread, strictly in order.

    The main thread parses the next block while this one is compressed and written; at
    most :data:`_QUEUED_BLOCKS` blocks wait, so a slow disk holds parsing back instead of
    memory piling up. A write's error is raised by the next :meth:`write`, :meth:`end`
    or :meth:`drain`; the segment it hit is then deleted, never renamed. Without a core
    to spare (:func:`probes.engine.spare_threads`: a one-thread Dask worker) each block
    is written as it is handed over, on the caller's thread.
    """

    def __init__(self, prefix: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=prefix) if spare_threads() else None
        self._queued: deque[Future] = deque()
        self._open: _SegmentFiles | None = None

    @property
    def busy(self) -> bool:
        """A segment is open (blocks written, not yet renamed into place)."""
        return self._open is not None

    def open(self, files: dict[str, Path]) -> None:
        """Begin a segment, written to ``files`` (none may be open)."""
        if self._open is not None:
            raise StoreError("internal: a segment is open already")
        self._open = _SegmentFiles(files)

    def write(self, parsed: Parsed) -> None:
        """Append a block to the open segment."""
        if self._open is None:
            raise StoreError("internal: no segment is open")
        self._submit(self._open.write, parsed)

    def end(self) -> None:
        """Close the open segment: its files are renamed into place once written."""
        if self._open is not None:
            seg, self._open = self._open, None
            self._submit(seg.close)

    def _submit(self, fn: Any, *args: Any) -> None:
        if self._pool is None:
            fn(*args)
            return
        while len(self._queued) >= _QUEUED_BLOCKS:
            self._queued.popleft().result()
        self._queued.append(self._pool.submit(fn, *args))

    def drain(self) -> None:
        """Wait for everything submitted; raise the first error, if any."""
        error: BaseException | None = None
        while self._queued:
            exc = self._queued.popleft().exception()
            error = error or exc
        if error is not None:
            raise error

    def shutdown(self) -> None:
        """Abort a segment left open (an interrupted ingest), wait, and stop the thread."""
        try:
            if self._open is not None:
                seg, self._open = self._open, None
                self._submit(seg.abort)
            self.drain()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)


#: Blocks handed to a :class:`_SegmentWriter` that may wait for its thread.
_QUEUED_BLOCKS = 2


class _Store:
    """Writer of one campaign's segments; holds the campaign lock while open."""

    def __init__(self, campaign: Campaign, *, segment_results: int = SEGMENT_RESULTS) -> None:
        self.campaign = campaign
        self.segment_results = segment_results
        self._locked = ExitStack()
        self._locked.enter_context(campaign_lock(campaign, holder="ingest"))
        for d in (campaign.raw_dir, campaign.traces_dir, campaign.hops_dir):
            d.mkdir(parents=True, exist_ok=True)
        recover(campaign, _locked=True)
        # parts staged by an earlier, interrupted Dask ingest were never committed
        shutil.rmtree(campaign.staging_dir, ignore_errors=True)
        self.index = _KeyIndex(_stored_keys(campaign))
        self.next_seg = _next_segment(campaign)
        self._segment_n = 0
        # compressing and writing a block overlaps with parsing the next
        self._writer = _SegmentWriter("pathexp-store")

    @property
    def busy(self) -> bool:
        """A segment is being filled (results added, not yet flushed)."""
        return self._writer.busy

    def drain(self) -> None:
        """Wait for the blocks being written; re-raise an error, if any."""
        self._writer.drain()

    def close(self) -> None:
        try:
            self._writer.shutdown()
        finally:
            self._locked.close()

    def add(self, parsed: Parsed, report: IngestReport) -> None:
        msm, prb, ts = parsed.keys
        keys = _KeyIndex.encode(msm, prb, ts)
        new = self.index.select_new(keys)
        report.duplicates += len(keys) - len(new)
        if len(new) == 0:
            return
        if len(new) != len(keys):
            parsed = parsed.take(new)
        self.index.add(keys[new])
        if not self._writer.busy:
            name = f"seg-{self.next_seg:06d}"
            self.next_seg += 1
            report.segments.append(name)
            self._writer.open(_segment_files(self.campaign, name))
        self._writer.write(parsed)
        self._segment_n += parsed.traces.num_rows
        report.added += parsed.traces.num_rows
        report.hop_rows += parsed.hops.num_rows
        if self._segment_n >= self.segment_results:
            self.flush(report)

    def flush(self, report: IngestReport) -> None:
        """End the segment being filled (its files are renamed once written)."""
        self._writer.end()
        self._segment_n = 0

    def commit_staged(self, part: dict, keys: np.ndarray, report: IngestReport) -> None:
        """Move a staged part (no stored key among its ``keys``) into the store as a segment.

        Renamed in the same order as :class:`_SegmentFiles` renames (raw, traces, hops), so
        an interruption leaves what :func:`recover` repairs.
        """
        self.drain()
        name = f"seg-{self.next_seg:06d}"
        self.next_seg += 1
        src = _staged_files(Path(part["stem"]))
        dst = _segment_files(self.campaign, name)
        for key in ("raw", "traces", "hops"):
            os.replace(src[key], dst[key])
        self.index.add(keys)
        report.added += part["results"]
        report.hop_rows += part["hop_rows"]
        report.segments.append(name)


def _segment_files(campaign: Campaign, name: str) -> dict[str, Path]:
    return {
        "raw": campaign.raw_dir / f"{name}.ndjson.zst",
        "traces": campaign.traces_dir / f"{name}.parquet",
        "hops": campaign.hops_dir / f"{name}.parquet",
    }


def _staged_files(stem: Path) -> dict[str, Path]:
    return {
        "raw": stem.with_name(stem.name + ".ndjson.zst"),
        "traces": stem.with_name(stem.name + ".traces.parquet"),
        "hops": stem.with_name(stem.name + ".hops.parquet"),
    }


def _write_hops(hops: pa.Table, target: Path) -> None:
    """A hop table as Parquet with :data:`_HOP_PARQUET_OPTIONS`, atomically (its blocks'
    dictionaries, :data:`probes.schema.STORED_HOP_SCHEMA`, merged first)."""
    with fileio.atomic_path(target) as tmp:
        pq.write_table(hops.unify_dictionaries(), tmp, **_HOP_PARQUET_OPTIONS)


def hop_parquet_bytes(hops: pa.Table, row_groups: Sequence[int]) -> bytes:
    """A hop table (:data:`probes.schema.STORED_HOP_SCHEMA`) as Parquet with
    :data:`_HOP_PARQUET_OPTIONS`, in row groups of ``row_groups`` rows."""
    return write_row_groups(hops, row_groups, **_HOP_PARQUET_OPTIONS).to_pybytes()


def _segments(directory: Path, suffix: str) -> dict[str, Path]:
    if not directory.is_dir():
        return {}
    return {p.name[: -len(suffix)]: p for p in directory.iterdir() if p.name.endswith(suffix) and _SEG.match(p.name)}


def _next_segment(campaign: Campaign) -> int:
    names = _segments(campaign.raw_dir, ".ndjson.zst")
    return max((int(n[4:]) for n in names), default=0) + 1


def _stored_keys(campaign: Campaign) -> np.ndarray | None:
    files = sorted(_segments(campaign.traces_dir, ".parquet").values())
    if not files:
        return None
    parts = []
    for f in files:
        t = pq.read_table(f, columns=["msm_id", "prb_id", "timestamp"])
        parts.append(
            _KeyIndex.encode(
                t.column("msm_id").to_numpy(),
                t.column("prb_id").to_numpy(),
                epoch_seconds(t.column("timestamp")),
            )
        )
    return np.concatenate(parts)


def epoch_seconds(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Seconds since the epoch of a timestamp column (Parquet stores seconds as ms)."""
    return column.cast(pa.timestamp("s", tz="UTC")).cast(pa.int64()).to_numpy()


def recover(campaign: Campaign, *, _locked: bool = False) -> list[str]:
    """Make the tables consistent with the raw segments after an interrupted ingest.

    A segment whose raw file exists but whose traceroute or hop table is missing gets its
    tables rebuilt from raw; tables without a raw file (impossible by the rename order,
    but checked) are removed; leftover ``*.part`` temporaries are deleted. Returns the
    names of the segments repaired. Refuses (:class:`~probes.errors.StoreError`) a
    campaign whose table folders are symbolic links.
    """
    campaign.check_folders()
    repaired: list[str] = []
    raw = _segments(campaign.raw_dir, ".ndjson.zst")
    traces = _segments(campaign.traces_dir, ".parquet")
    hops = _segments(campaign.hops_dir, ".parquet")
    for d in (campaign.raw_dir, campaign.traces_dir, campaign.hops_dir):
        if d.is_dir():
            for p in d.glob(".*.part"):
                p.unlink(missing_ok=True)
    for name in sorted(set(traces) | set(hops)):
        if name not in raw:
            traces.get(name, Path("/nonexistent")).unlink(missing_ok=True)
            hops.get(name, Path("/nonexistent")).unlink(missing_ok=True)
    for name, path in sorted(raw.items()):
        if name in traces and name in hops:
            continue
        lines = list(_raw_lines(path))
        parsed = parse_lines(lines, encoded=True)
        fileio.write_parquet(parsed.traces, campaign.traces_dir / f"{name}.parquet")
        _write_hops(parsed.hops, campaign.hops_dir / f"{name}.parquet")
        repaired.append(name)
    return repaired


def _raw_lines(path: Path) -> Iterator[bytes]:
    try:
        with pa.CompressedInputStream(pa.OSFile(str(path)), "zstd") as f:
            data = f.read()
    except (OSError, pa.ArrowInvalid) as exc:
        raise StoreError(f"raw segment {path} is unreadable: {exc}") from exc
    for line in data.split(b"\n"):
        if line:
            yield line


# --- ingest ---------------------------------------------------------------------------


def ingest_stream(
    campaign: Campaign,
    lines: Iterable[bytes],
    *,
    origin: str = "atlas",
    _store: _Store | None = None,
    report: IngestReport | None = None,
) -> IngestReport:
    """Ingest an iterable of JSON lines (one Atlas result each) into ``campaign``."""
    with _ingest_memory_pool():
        return _ingest_stream(campaign, lines, origin=origin, _store=_store, report=report)


def _ingest_stream(
    campaign: Campaign,
    lines: Iterable[bytes],
    *,
    origin: str,
    _store: _Store | None,
    report: IngestReport | None,
) -> IngestReport:
    report = report if report is not None else IngestReport()
    store = _store or _Store(campaign)
    drops: Counter = Counter()
    def counted(blocks: Iterator[list[bytes]]) -> Iterator[list[bytes]]:
        for block in blocks:
            report.seen += len(block)
            yield block

    try:
        # the next block's JSON is decoded while this one is flattened and stored
        for parsed in iter_parsed(counted(_blocks(lines, min(BLOCK_LINES, store.segment_results))), origin=origin,
                                  encoded=True):
            drops.update(parsed.drops)
            store.add(parsed, report)
            step("%s results read, %s new", f"{report.seen:,}", f"{report.added:,}")
        store.flush(report)
        store.drain()
    finally:
        if _store is None:
            store.close()
    for k, v in drops.items():
        report.drops[k] = report.drops.get(k, 0) + v
    return report


_pool_lock = threading.Lock()
_pool_users = 0
_pool_saved: pa.MemoryPool | None = None


def _fast_pool() -> pa.MemoryPool | None:
    """Arrow's jemalloc pool, unless the user chose a pool (``ARROW_DEFAULT_MEMORY_POOL``)."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return None
    try:
        return pa.jemalloc_memory_pool()
    except (NotImplementedError, pa.ArrowNotImplementedError):  # a build without jemalloc
        return None


@contextmanager
def _ingest_memory_pool() -> Iterator[None]:
    """Arrow allocates from its jemalloc pool while results are parsed and stored.

    Parsing a block allocates and frees hundreds of MiB of Arrow buffers; on Linux the
    default mimalloc pool gives freed memory back to the kernel and faults it in again
    (zeroed, as huge pages), which cost about a tenth of an ingest's CPU time. Arrow's
    default pool is set back when the last concurrent ingest ends; buffers keep the pool
    they came from, so tables outliving the ingest are unaffected.
    """
    global _pool_users, _pool_saved
    pool = _fast_pool()
    if pool is None:
        yield
        return
    with _pool_lock:
        if _pool_users == 0:
            _pool_saved = pa.default_memory_pool()
            pa.set_memory_pool(pool)
        _pool_users += 1
    try:
        yield
    finally:
        with _pool_lock:
            _pool_users -= 1
            if _pool_users == 0 and _pool_saved is not None:
                pa.set_memory_pool(_pool_saved)
                _pool_saved = None


def _blocks(lines: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    """Non-blank lines in blocks of ``size`` (the unit of parsing and dedup).

    ``size`` is :data:`BLOCK_LINES`, or the segment size when that is smaller (a segment
    is cut after the block that fills it).
    """
    block: list[bytes] = []
    for line in lines:
        if not line.strip():
            continue
        block.append(line)
        if len(block) >= size:
            yield block
            block = []
    if block:
        yield block


def ingest_results(
    campaign: Campaign, records: Iterable[bytes | str | dict], *, origin: str = "atlas"
) -> IngestReport:
    """Ingest results given as JSON texts or decoded dicts (from the Atlas API, a tracer).

    Idempotent: results already stored are counted as duplicates and not added again.
    The counts are recorded in the campaign's ``ingest.json`` under the source ``origin``.
    """

    def lines() -> Iterator[bytes]:
        for rec in records:
            if isinstance(rec, dict):
                yield orjson.dumps(rec)
            elif isinstance(rec, str):
                yield rec.encode("utf-8", "surrogateescape")
            else:
                yield bytes(rec)

    st = _Store(campaign)
    try:
        report = ingest_stream(campaign, lines(), origin=origin, _store=st)
        _record_run(campaign, report, [{"name": f"<{origin}>", "seen": report.seen, "drops": dict(report.drops)}])
    finally:
        st.close()
    return report


def ingest_files(
    campaign: Campaign,
    paths: Sequence[str | Path],
    *,
    origin: str = "atlas",
    segment_results: int = SEGMENT_RESULTS,
    engine: str = "local",
    scheduler: str | None = None,
    workers: int | None = None,
) -> IngestReport:
    """Ingest Atlas traceroute results from files (NDJSON, JSON array or object; gz/bz2/xz/zstd).

    ``-`` reads standard input. Output of ``traceroute -n``, ``mtr`` and scamper is
    converted to the Atlas format first. Each input's counts are stored in
    ``<campaign>/ingest.json`` keyed by the sha256 of its content, so re-ingesting a file
    replaces its entry instead of counting its drops twice.

    With ``engine="dask"`` (see :func:`probes.engine.open_runner` for ``scheduler`` and
    ``workers``) each input file is parsed by a worker into parts staged under
    ``<campaign>/.staging/`` (the same :func:`probes.parse.parse_lines` over the same
    blocks); this process deduplicates them against the store and commits them in input
    order, renaming a part into a segment when none of its results is stored yet. The
    segments, tables and counts are those of the local engine. A killed run leaves
    committed segments only (the staging folder is discarded by the next ingest), and a
    re-run adds the rest without duplicates.
    """
    from probes.engine import open_runner

    total = IngestReport()
    inputs: list[dict] = []
    failure: str | None = None
    with open_runner(engine, scheduler=scheduler, workers=workers) as runner:
        store = _Store(campaign, segment_results=segment_results)
        try:
            if runner.engine == "local":
                for path in paths:
                    one = IngestReport()
                    try:
                        entry = _ingest_one_local(campaign, store, path, origin, one)
                    finally:
                        total.merge(one)  # a failing input still counts what it did
                    inputs.append(entry)
            else:
                staging = campaign.staging_dir
                staging.mkdir(parents=True, exist_ok=True)
                files = [(i, str(p)) for i, p in enumerate(paths) if str(p) != "-"]
                jobs = [(i, p, str(staging), origin, segment_results) for i, p in files]
                with closing(runner.map(_stage_file, jobs)) as staged:
                    for path in paths:
                        if str(path) == "-":  # standard input is read here, in order
                            one = IngestReport()
                            entry = _ingest_one_local(campaign, store, path, origin, one)
                        else:
                            one, entry = _commit_staged_file(store, next(staged))
                        inputs.append(entry)
                        total.merge(one)
        except BaseException as exc:
            failure = f"{type(exc).__name__}: {str(exc)[:200]}"
            raise
        finally:
            try:
                # written even when the run fails midway: the inputs done, and what the
                # failing one had counted, are on record (the run says it failed)
                _record_run(campaign, total, inputs, failure=failure)
                shutil.rmtree(campaign.staging_dir, ignore_errors=True)
            finally:
                store.close()  # releases the campaign lock, after the staging folder is gone
    memory.release()  # what parsing freed, before the caller's next stage
    return total


def _ingest_one_local(campaign: Campaign, store: _Store, path: str | Path, origin: str,
                      one: IngestReport) -> dict:
    step("reading %s", "standard input" if str(path) == "-" else Path(path).name)
    found: list = []
    with open_input(path) as stream:
        hashing = HashingReader(stream)
        name = "<stdin>" if str(path) == "-" else str(path)
        ingest_stream(campaign, iter_records(hashing, name, probes=found), origin=origin, _store=store, report=one)
    hashing.count_truncation(one.drops)
    probes = _store_bundle_probes(campaign, found)
    return _input_entry(one, name, hashing.sha.hexdigest(), hashing.size, probes)


def _store_bundle_probes(campaign: Campaign, found: list) -> dict | None:
    """Store the probe objects an input's API bundles carried; their counts by outcome."""
    if not found:
        return None
    from probes.metadata import check_probe_objects

    drops: Counter = Counter()
    kept = check_probe_objects(found, drops)
    if kept:
        write_probe_meta(campaign, kept)
    return {"found": len(found), "stored": len(kept), "drops": dict(sorted(drops.items()))}


def _input_entry(one: IngestReport, name: str, sha256: str, size: int, probes: dict | None = None) -> dict:
    entry = {
        "name": name,
        "sha256": sha256,
        "bytes": size,
        "seen": one.seen,
        "added": one.added,
        "duplicates": one.duplicates,
        "drops": dict(sorted(one.drops.items())),
    }
    if probes is not None:
        entry["probes"] = probes
    one.inputs = [entry]
    return entry


def _stage_file(job: tuple[int, str, str, str, int], _ctx: object) -> dict:
    """Worker side of a Dask ingest: parse one input file into staged parts.

    Blocks, in-file deduplication and part boundaries follow the local engine exactly
    (a part is cut where :class:`_Store` would cut a segment if nothing were stored yet),
    so a part without stored results becomes a segment by renaming.
    """
    index, path, staging, origin, segment_results = job
    index_keys = _KeyIndex()
    drops: Counter = Counter()
    parts: list[dict] = []
    seen = dups = 0
    found: list = []
    writer = _SegmentWriter("pathexp-stage")
    try:
        with open_input(path) as stream:
            hashing = HashingReader(stream)
            for block in _blocks(iter_records(hashing, path, probes=found), min(BLOCK_LINES, segment_results)):
                seen += len(block)
                parsed = parse_lines(block, origin=origin, encoded=True)
                drops.update(parsed.drops)
                keys = _KeyIndex.encode(*parsed.keys)
                new = index_keys.select_new(keys)
                dups += len(keys) - len(new)
                if len(new) == 0:
                    continue
                if len(new) != len(keys):
                    parsed = parsed.take(new)
                index_keys.add(keys[new])
                if not writer.busy:
                    stem = Path(staging) / f"{index:06d}-{len(parts):06d}"
                    parts.append({"stem": str(stem), "blocks": [], "results": 0, "hop_rows": 0})
                    writer.open(_staged_files(stem))
                writer.write(parsed)
                part = parts[-1]
                part["blocks"].append(parsed.traces.num_rows)
                part["results"] += parsed.traces.num_rows
                part["hop_rows"] += parsed.hops.num_rows
                if part["results"] >= segment_results:
                    writer.end()
        writer.end()
        writer.drain()
    finally:
        writer.shutdown()
    hashing.count_truncation(drops)
    return {
        "name": path, "sha256": hashing.sha.hexdigest(), "bytes": hashing.size, "seen": seen,
        "duplicates": dups, "drops": dict(drops), "parts": parts, "probes": found,
    }


def _commit_staged_file(store: _Store, manifest: dict) -> tuple[IngestReport, dict]:
    """Client side of a Dask ingest: dedup one file's staged parts and commit them in order."""
    one = IngestReport(seen=manifest["seen"], duplicates=manifest["duplicates"], drops=dict(manifest["drops"]))
    for part in manifest["parts"]:
        files = _staged_files(Path(part["stem"]))
        t = pq.read_table(files["traces"], columns=["msm_id", "prb_id", "timestamp"])
        keys = _KeyIndex.encode(t.column("msm_id").to_numpy(), t.column("prb_id").to_numpy(),
                                epoch_seconds(t.column("timestamp")))
        if not store.busy and len(store.index.select_new(keys)) == len(keys):
            store.commit_staged(part, keys, one)
            continue
        # some results are stored already: replay the part block by block, as the local
        # engine would have added it
        parsed = _read_staged(files, keys)
        start = 0
        for size in part["blocks"]:
            store.add(parsed.take(np.arange(start, start + size)), one)
            start += size
    store.flush(one)
    store.drain()
    probes = _store_bundle_probes(store.campaign, manifest["probes"])
    return one, _input_entry(one, manifest["name"], manifest["sha256"], manifest["bytes"], probes)


def _read_staged(files: dict[str, Path], keys: np.ndarray) -> Parsed:
    """A staged part as :class:`Parsed` (its keys are unique: the worker deduplicated it)."""
    traces = pq.read_table(files["traces"]).cast(TRACE_SCHEMA)
    hops = pq.read_table(files["hops"]).cast(STORED_HOP_SCHEMA)
    hop_keys = _KeyIndex.encode(hops.column("msm_id").to_numpy(), hops.column("prb_id").to_numpy(),
                                epoch_seconds(hops.column("timestamp")))
    order = np.argsort(keys, kind="stable")
    hop_trace = order[np.searchsorted(keys[order], hop_keys)]
    return Parsed(hops, traces, Counter(), list(_raw_lines(files["raw"])), hop_trace)


def _record_run(campaign: Campaign, report: IngestReport, inputs: list[dict], *,
                failure: str | None = None) -> None:
    path = campaign.ingest_report
    state = orjson.loads(path.read_bytes()) if path.exists() else {"inputs": {}, "runs": []}
    for entry in inputs:
        key = entry.get("sha256") or entry["name"]
        prev = state["inputs"].get(key)
        if prev and "sha256" not in entry:  # API batches: accumulate
            entry = {**entry, "seen": prev["seen"] + entry["seen"], "drops": dict(Counter(prev["drops"]) + Counter(entry["drops"]))}
        state["inputs"][key] = entry
    state["runs"].append(
        {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seen": report.seen,
            "added": report.added,
            "duplicates": report.duplicates,
            "drops": dict(sorted(report.drops.items())),
            "segments": report.segments,
            **({"failed": failure} if failure else {}),
        }
    )
    totals: Counter = Counter()
    for entry in state["inputs"].values():
        totals.update(entry["drops"])
    state["drops"] = dict(sorted(totals.items()))
    state["drop_reasons"] = DROP_REASONS
    state["results_stored"] = sum(
        pq.ParquetFile(p).metadata.num_rows for p in _segments(campaign.traces_dir, ".parquet").values()
    )
    fileio.write_json(path, state)


# --- readers --------------------------------------------------------------------------


def _scan(directory: Path, schema: pa.Schema, columns: Sequence[str] | None) -> Iterator[pa.RecordBatch]:
    files = sorted(str(p) for p in _segments(directory, ".parquet").values())
    if not files:
        return
    import pyarrow.dataset as ds  # local import: an ingest never scans (~25 ms at start-up)

    dataset = ds.dataset(files, schema=schema, format="parquet")
    yield from dataset.to_batches(columns=list(columns) if columns else None)


def scan_hops(campaign: Campaign, *, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Yield the campaign's hop table as record batches, segment by segment."""
    return _scan(campaign.hops_dir, HOP_SCHEMA, columns)


def scan_traces(campaign: Campaign, *, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Yield the campaign's traceroute table as record batches."""
    return _scan(campaign.traces_dir, TRACE_SCHEMA, columns)


def _collect(batches: Iterator[pa.RecordBatch], schema: pa.Schema, columns: Sequence[str] | None) -> pa.Table:
    if columns:
        schema = pa.schema([schema.field(c) for c in columns])
    return pa.Table.from_batches(list(batches), schema=schema)


def read_hops(campaign: Campaign, *, columns: Sequence[str] | None = None) -> pa.Table:
    """The whole hop table (see :func:`scan_hops`)."""
    return _collect(scan_hops(campaign, columns=columns), HOP_SCHEMA, columns)


def read_traces(campaign: Campaign, *, columns: Sequence[str] | None = None) -> pa.Table:
    """The whole traceroute table (see :func:`scan_traces`)."""
    return _collect(scan_traces(campaign, columns=columns), TRACE_SCHEMA, columns)


def segment_names(campaign: Campaign, table: str = "hops") -> list[str]:
    """Names (``seg-NNNNNN``) of the stored segments of ``table`` (raw, traces or hops), in order.

    A segment holds whole traceroutes: its traceroute and hop tables describe the same
    results, so per-traceroute work can run segment by segment.
    """
    return sorted(_segments(*_table_dir(campaign, table)))


def segment_path(campaign: Campaign, name: str, table: str = "hops") -> Path:
    """File of one segment of ``table`` (raw, traces or hops)."""
    directory, suffix = _table_dir(campaign, table)
    return directory / f"{name}{suffix}"


def _table_dir(campaign: Campaign, table: str) -> tuple[Path, str]:
    dirs = {"raw": (campaign.raw_dir, ".ndjson.zst"), "traces": (campaign.traces_dir, ".parquet"),
            "hops": (campaign.hops_dir, ".parquet")}
    if table not in dirs:
        raise StoreError(f"unknown store table {table!r}: use raw, traces or hops")
    return dirs[table]


def summary(campaign: Campaign) -> dict:
    """Counts over the campaign's traceroute and hop tables (DuckDB over the Parquet files).

    Keys: traceroutes, measurements, probes, destinations, destination_reached, first and
    last timestamp, hop_rows, replies, timeouts, distinct_reply_addresses.
    """
    import duckdb

    con = duckdb.connect()
    traces, hops = campaign.glob("traces"), campaign.glob("hops")
    t = con.execute(
        f"""SELECT count(*), count(DISTINCT msm_id), count(DISTINCT prb_id),
                   count(DISTINCT dst_addr), sum(destination_reached::INT),
                   min(timestamp), max(timestamp)
            FROM read_parquet('{traces}')"""
    ).fetchone()
    h = con.execute(
        f"""SELECT count(*), count(reply_from), count(*) - count(reply_from),
                   count(DISTINCT reply_from)
            FROM read_parquet('{hops}')"""
    ).fetchone()
    assert t is not None and h is not None  # aggregates always return one row
    keys = ["traceroutes", "measurements", "probes", "destinations", "destination_reached", "first", "last"]
    out = dict(zip(keys, t, strict=True))
    out.update(dict(zip(["hop_rows", "replies", "timeouts", "distinct_reply_addresses"], h, strict=True)))
    return out


def iter_raw(campaign: Campaign) -> Iterator[dict]:
    """The stored raw results, as decoded dicts, in segment order."""
    for _, path in sorted(_segments(campaign.raw_dir, ".ndjson.zst").items()):
        for line in _raw_lines(path):
            yield orjson.loads(line)


# --- probe metadata -------------------------------------------------------------------


def write_probe_meta(campaign: Campaign, probes: Iterable[dict], *, origin: str = "atlas") -> int:
    """Store RIPE Atlas API v2 probe objects as ``<campaign>/probes.parquet``.

    Merged with what is stored by ``prb_id``; the newest object wins. Returns the
    number of probes now stored.
    """
    rows = []
    for obj in probes:
        if not isinstance(obj, dict) or type(obj.get("id")) is not int:
            raise StoreError(f"not an Atlas probe object (no integer 'id'): {str(obj)[:80]}")
        coords = ((obj.get("geometry") or {}).get("coordinates")) or [None, None]
        rows.append(
            {
                "prb_id": obj["id"],
                "asn_v4": obj.get("asn_v4"),
                "asn_v6": obj.get("asn_v6"),
                "country_code": obj.get("country_code"),
                "latitude": coords[1],
                "longitude": coords[0],
                "is_anchor": obj.get("is_anchor"),
                "address_v4": obj.get("address_v4"),
                "address_v6": obj.get("address_v6"),
                "origin": obj.get("origin", origin),
            }
        )
    new = pa.Table.from_pylist(rows, schema=PROBE_META_SCHEMA)
    old = read_probe_meta(campaign)
    seen = set(new.column("prb_id").to_pylist())
    keep = [i for i, p in enumerate(old.column("prb_id").to_pylist()) if p not in seen]
    merged = pa.concat_tables([old.take(pa.array(keep, pa.int64())), new]).sort_by("prb_id")
    fileio.write_parquet(merged, campaign.probes_parquet)
    return merged.num_rows


def probes_without_meta(campaign: Campaign) -> tuple[int, list[int]]:
    """The campaign's probes (ids seen in its traceroutes) and those with no stored metadata.

    Without metadata a probe has no country, AS or location: source-country figures,
    hegemony, maps and speed-of-light verdicts cannot use its traceroutes.
    """
    seen: set[int] = set()
    for batch in scan_traces(campaign, columns=["prb_id"]):
        seen.update(batch.column(0).to_pylist())
    known = set(read_probe_meta(campaign).column("prb_id").to_pylist())
    return len(seen), sorted(seen - known)


def read_probe_meta(campaign: Campaign) -> pa.Table:
    """Probe metadata stored by :func:`write_probe_meta` (empty if none)."""
    path = campaign.probes_parquet
    if not path.exists():
        return PROBE_META_SCHEMA.empty_table()
    return pq.read_table(path, schema=PROBE_META_SCHEMA)
