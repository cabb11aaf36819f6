"""The campaign store: raw results (append-only), hop and traceroute tables, probe metadata.

Only this module writes ``raw/``, ``traces/`` and ``hops/`` of a campaign
(:class:`probes.workspace.Campaign`). A *segment* ``seg-NNNNNN`` is three files written to
temporary names and renamed in a fixed order — raw NDJSON (zstd), then the traceroute
table, then the hop table — so a killed ingest leaves a readable store; the next ingest
(:func:`recover`) rebuilds the tables of any segment whose raw file is complete, raw
being the source of truth. Results are deduplicated on ``(msm_id, prb_id, timestamp)``
against the whole store: ingesting the same input twice adds nothing.

Readers (:func:`scan_hops`, :func:`scan_traces`) yield Arrow record batches;
:func:`read_hops` and :func:`read_traces` collect them.
"""

from __future__ import annotations

import bz2
import fcntl
import gzip
import hashlib
import io
import lzma
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from probes import _io
from probes.errors import StoreError
from probes.parse import DROP_REASONS, Parsed, parse_lines
from probes.schema import HOP_SCHEMA, TRACE_SCHEMA
from probes.workspace import Campaign

__all__ = [
    "IngestReport",
    "ingest_files",
    "ingest_results",
    "ingest_stream",
    "recover",
    "scan_hops",
    "read_hops",
    "scan_traces",
    "read_traces",
    "iter_raw",
    "write_probe_meta",
    "read_probe_meta",
    "PROBE_META_SCHEMA",
    "open_input",
    "epoch_seconds",
]

#: Lines parsed together (one Arrow JSON decode per block).
BLOCK_LINES = 4096
#: Results collected before a segment is written.
SEGMENT_RESULTS = 32_768
_SEG = re.compile(r"^seg-(\d{6})\.")

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


# --- input ----------------------------------------------------------------------------


@contextmanager
def open_input(path: str | Path) -> Iterator[IO[bytes]]:
    """Open an input file (``-`` = stdin), transparently decompressing gzip/bz2/xz/zstd."""
    if str(path) == "-":
        raw: IO[bytes] = sys.stdin.buffer
        close = False
    else:
        try:
            raw = open(path, "rb")
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror}") from exc
        close = True
    try:
        buffered = io.BufferedReader(raw, 1 << 20) if not hasattr(raw, "peek") else raw
        magic = buffered.peek(6)[:6]  # type: ignore[attr-defined]
        if magic[:2] == b"\x1f\x8b":
            stream: IO[bytes] = gzip.GzipFile(fileobj=buffered)  # type: ignore[assignment]
        elif magic[:3] == b"BZh":
            stream = bz2.BZ2File(buffered)  # type: ignore[assignment]
        elif magic == b"\xfd7zXZ\x00":
            stream = lzma.LZMAFile(buffered)  # type: ignore[assignment]
        elif magic[:4] == b"\x28\xb5\x2f\xfd":
            stream = pa.CompressedInputStream(pa.PythonFile(buffered, mode="r"), "zstd")  # type: ignore[assignment]
        else:
            stream = buffered
        yield stream
    finally:
        if close:
            raw.close()


class _Hashing:
    """Wraps a binary stream, hashing everything read (identifies an input by content)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data


def _iter_lines(stream: _Hashing, chunk: int = 1 << 22) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, line) from a byte stream, without the newline."""
    pending = b""
    lineno = 0
    while True:
        data = stream.read(chunk)
        if not data:
            break
        data = pending + data
        parts = data.split(b"\n")
        pending = parts.pop()
        for part in parts:
            lineno += 1
            yield lineno, part.rstrip(b"\r")
    if pending.strip():
        yield lineno + 1, pending


def _records_of(stream: _Hashing, name: str) -> Iterator[bytes]:
    """The Atlas JSON records of one input, whatever its framing.

    NDJSON streams line by line (flat memory). A JSON array or a single pretty-printed
    object is decoded whole. Output of other traceroute tools is converted by
    :mod:`probes.convert`.
    """
    lines = _iter_lines(stream)
    head: list[bytes] = []
    for _, line in lines:
        if line.strip():
            head.append(line)
            break
    if not head:
        return
    first = head[0].lstrip()
    ndjson = False
    if first.startswith(b"{"):
        try:
            obj = orjson.loads(head[0])
            ndjson = isinstance(obj, dict) and not _looks_foreign(obj)
        except orjson.JSONDecodeError:
            ndjson = False
    if ndjson:
        yield head[0]
        for _, line in lines:
            yield line
        return
    rest = b"\n".join(head + [ln for _, ln in lines])
    from probes import convert  # local import: converters are only needed for foreign input

    converted = convert.convert_foreign(rest, name=name)
    if converted is not None:
        for rec in converted:
            yield orjson.dumps(rec)
        return
    try:
        doc = orjson.loads(rest)
    except orjson.JSONDecodeError:
        # not one JSON document: treat as NDJSON so each bad line is counted on its own
        yield from rest.split(b"\n")
        return
    items = doc if isinstance(doc, list) else [doc]
    for item in items:
        yield orjson.dumps(item)


def _looks_foreign(obj: dict) -> bool:
    """A first JSON object that is another tool's output (scamper, mtr), not Atlas."""
    return "msm_id" not in obj and ("report" in obj or obj.get("type") in {"trace", "cycle-start", "list"})


# --- the store ------------------------------------------------------------------------


class _KeyIndex:
    """Exact set of stored (msm_id, prb_id, timestamp) keys as sorted 12-byte strings."""

    def __init__(self, keys: np.ndarray | None = None) -> None:
        self._keys = np.sort(keys) if keys is not None else np.empty(0, dtype="S12")

    @staticmethod
    def encode(msm: np.ndarray, prb: np.ndarray, ts: np.ndarray) -> np.ndarray:
        packed = np.empty((len(msm), 3), dtype=">u4")
        packed[:, 0], packed[:, 1], packed[:, 2] = msm, prb, ts
        return packed.view("S12").ravel()

    def __len__(self) -> int:
        return len(self._keys)

    def select_new(self, keys: np.ndarray) -> np.ndarray:
        """Indices of ``keys`` that are neither stored nor repeated earlier in ``keys``."""
        _, first = np.unique(keys, return_index=True)
        first.sort()
        cand = keys[first]
        if len(self._keys):
            pos = np.searchsorted(self._keys, cand).clip(max=len(self._keys) - 1)
            first = first[self._keys[pos] != cand]
        return first

    def add(self, keys: np.ndarray) -> None:
        self._keys = np.sort(np.concatenate([self._keys, keys]), kind="stable")


class _Store:
    """Writer of one campaign's segments; holds the campaign lock while open."""

    def __init__(self, campaign: Campaign, *, segment_results: int = SEGMENT_RESULTS) -> None:
        self.campaign = campaign
        self.segment_results = segment_results
        for d in (campaign.raw_dir, campaign.traces_dir, campaign.hops_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._lock = open(campaign.root / ".lock", "a+")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        recover(campaign, _locked=True)
        self.index = _KeyIndex(_stored_keys(campaign))
        self.next_seg = _next_segment(campaign)
        self._pending: list[Parsed] = []
        self._pending_n = 0
        # one background writer: compressing a segment overlaps with parsing the next;
        # segments are still written strictly in order, at most one in flight
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pathexp-store")
        self._inflight: Future | None = None

    def drain(self) -> None:
        """Wait for the segment being written; re-raise its error, if any."""
        if self._inflight is not None:
            inflight, self._inflight = self._inflight, None
            inflight.result()

    def close(self) -> None:
        try:
            self.drain()
        finally:
            self._writer.shutdown(wait=True)
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

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
        self._pending.append(parsed)
        self._pending_n += parsed.traces.num_rows
        report.added += parsed.traces.num_rows
        report.hop_rows += parsed.hops.num_rows
        if self._pending_n >= self.segment_results:
            self.flush(report)

    def flush(self, report: IngestReport) -> None:
        if not self._pending:
            return
        name = f"seg-{self.next_seg:06d}"
        self.next_seg += 1
        self.drain()
        self._inflight = self._writer.submit(
            _write_segment,
            self.campaign,
            name,
            [ln for p in self._pending for ln in p.raw],
            pa.concat_tables([p.traces for p in self._pending]),
            pa.concat_tables([p.hops for p in self._pending]),
        )
        report.segments.append(name)
        self._pending, self._pending_n = [], 0


def _write_segment(campaign: Campaign, name: str, raw: list[bytes], traces: pa.Table, hops: pa.Table) -> None:
    raw_path = campaign.raw_dir / f"{name}.ndjson.zst"
    with _io.atomic_path(raw_path) as tmp:
        with pa.CompressedOutputStream(str(tmp), "zstd") as out:
            out.write(b"\n".join(raw) + b"\n")
    _io.write_parquet(traces, campaign.traces_dir / f"{name}.parquet")
    _io.write_parquet(hops, campaign.hops_dir / f"{name}.parquet")


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
    names of the segments repaired.
    """
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
        parsed = parse_lines(lines)
        _io.write_parquet(parsed.traces, campaign.traces_dir / f"{name}.parquet")
        _io.write_parquet(parsed.hops, campaign.hops_dir / f"{name}.parquet")
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
    report = report if report is not None else IngestReport()
    store = _store or _Store(campaign)
    drops: Counter = Counter()
    try:
        block: list[bytes] = []
        for line in lines:
            if not line.strip():
                continue
            block.append(line)
            if len(block) >= BLOCK_LINES:
                _ingest_block(store, block, origin, report, drops)
                block = []
        if block:
            _ingest_block(store, block, origin, report, drops)
        store.flush(report)
        store.drain()
    finally:
        if _store is None:
            store.close()
    for k, v in drops.items():
        report.drops[k] = report.drops.get(k, 0) + v
    return report


def _ingest_block(store: _Store, block: list[bytes], origin: str, report: IngestReport, drops: Counter) -> None:
    report.seen += len(block)
    parsed = parse_lines(block, origin=origin)
    drops.update(parsed.drops)
    store.add(parsed, report)


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

    report = ingest_stream(campaign, lines(), origin=origin)
    _record_run(campaign, report, [{"name": f"<{origin}>", "seen": report.seen, "drops": dict(report.drops)}])
    return report


def ingest_files(
    campaign: Campaign,
    paths: Sequence[str | Path],
    *,
    origin: str = "atlas",
    segment_results: int = SEGMENT_RESULTS,
) -> IngestReport:
    """Ingest Atlas traceroute results from files (NDJSON, JSON array or object; gz/bz2/xz/zstd).

    ``-`` reads standard input. Output of ``traceroute -n``, ``mtr`` and scamper is
    converted to the Atlas format first. Each input's counts are stored in
    ``<campaign>/ingest.json`` keyed by the sha256 of its content, so re-ingesting a file
    replaces its entry instead of counting its drops twice.
    """
    total = IngestReport()
    store = _Store(campaign, segment_results=segment_results)
    inputs = []
    try:
        for path in paths:
            one = IngestReport()
            with open_input(path) as stream:
                hashing = _Hashing(stream)
                name = "<stdin>" if str(path) == "-" else str(path)
                ingest_stream(campaign, _records_of(hashing, name), origin=origin, _store=store, report=one)
            entry = {
                "name": name,
                "sha256": hashing.sha.hexdigest(),
                "bytes": hashing.size,
                "seen": one.seen,
                "added": one.added,
                "duplicates": one.duplicates,
                "drops": dict(sorted(one.drops.items())),
            }
            one.inputs = [entry]
            inputs.append(entry)
            total.merge(one)
    finally:
        store.close()
    _record_run(campaign, total, inputs)
    return total


def _record_run(campaign: Campaign, report: IngestReport, inputs: list[dict]) -> None:
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
    _io.write_json(path, state)


# --- readers --------------------------------------------------------------------------


def _scan(directory: Path, schema: pa.Schema, columns: Sequence[str] | None) -> Iterator[pa.RecordBatch]:
    files = sorted(str(p) for p in _segments(directory, ".parquet").values())
    if not files:
        return
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
    _io.write_parquet(merged, campaign.root / "probes.parquet")
    return merged.num_rows


def read_probe_meta(campaign: Campaign) -> pa.Table:
    """Probe metadata stored by :func:`write_probe_meta` (empty if none)."""
    path = campaign.root / "probes.parquet"
    if not path.exists():
        return PROBE_META_SCHEMA.empty_table()
    return pq.read_table(path, schema=PROBE_META_SCHEMA)
