"""Parse RIPE Atlas traceroute results into the hop and traceroute tables.

The hot path never builds a Python object per hop: a block of NDJSON lines is decoded into
:data:`RAW_SCHEMA` (every field of the Atlas traceroute result format that pathexp keeps)
by the native decoder :mod:`probes._atlasjson` (C, built by pip from ``_atlasjson.c``),
which takes the plain shape of the format and gives up on anything else, or else by Arrow's
C++ JSON reader, which builds the same table (``tests/probes/test_native_json.py``), more
slowly. The nested ``result`` lists are flattened with Arrow compute and numpy index
arithmetic. A block the strict reader refuses (a damaged
line, a field of the wrong JSON type, a firmware-1 text result) goes through
:func:`_sanitize` line by line: each line is either repaired where the Atlas format itself
is ambiguous (``err`` is a string or a number depending on firmware) or set aside with a
reason, and the clean lines are decoded by the same reader. Nothing is dropped silently:
:attr:`Parsed.drops` counts every record set aside, by reason.

Quirks handled (named constants below): ``x: "*"`` timeouts, ``err`` codes (N/H/A/P/p and
numeric), ``late`` replies (no rtt), ``dup``, ``edst``, ``itos``, ICMP extension objects
with MPLS labels, hops carrying ``error`` instead of replies, results with a top-level
``error``, IPv6, the hop-255 final probe, missing optional fields, and empty reply objects
``{}`` (real AfriNREN TCP results end hops with one): such a reply is a row with a null
``reply_from`` and ``rtt``, like a timeout, as sagan also reads it.

Validation (every field, before any cast, on every path): each field of a record is checked
for its JSON type (:data:`_TOP_TYPES`, :data:`_REPLY_TYPES`) and its range
(:data:`FIELD_RANGES`), addresses must be IPv4/IPv6 addresses, text must be UTF-8 and
strict JSON (no ``NaN``/``Infinity``), and a result may hold at most :data:`MAX_HOP_ENTRIES`
hop entries of at most :data:`MAX_REPLIES` replies. A record failing any check is set
aside with its reason and the rest of its block is kept. The verdict on a line depends on
that line only: the vectorized checks of :func:`_validate` run on every block, fast or
repaired, and a block holding text the strict reader would take differently from orjson
(``NaN``, bytes that are not UTF-8) is sent down the line-by-line path.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from probes.engine import spare_threads
from probes.inputs import MAX_LINE_BYTES, SetAside
from probes.schema import HOP_SCHEMA, PER_TRACE_HOP_STRINGS, STORED_HOP_SCHEMA, TRACE_SCHEMA

_atlasjson: ModuleType | None
try:  # built by pip from probes/_atlasjson.c; without it Arrow's reader decodes every block
    from probes import _atlasjson
except ImportError:  # pragma: no cover - a build without a C compiler
    _atlasjson = None

__all__ = [
    "Parsed",
    "parse_results",
    "parse_lines",
    "iter_parsed",
    "RAW_SCHEMA",
    "DROP_REASONS",
    "FIELD_RANGES",
    "MAX_LINE_BYTES",
    "MAX_HOP_ENTRIES",
    "MAX_REPLIES",
    "SetAside",
]

# --- named quirks -------------------------------------------------------------------
#: Atlas firmware before 4000 stored traceroute results as text, not hop lists.
FIRMWARE1_MAX = 3999
#: The final probe sent with TTL 255 by some firmware versions is reported as hop 255.
FINAL_PROBE_HOP = 255
#: A timeout reply is ``{"x": "*"}``.
TIMEOUT_MARK = "*"
#: A JSON ``null`` is the same as an absent field, for every field: the columnar reader
#: cannot tell them apart, so the line-by-line checks do not either (``"type": null``
#: reads as a traceroute, like a result without ``type``).
NULL_IS_ABSENT = True
#: A hop entry may lack its ``hop`` number when it carries ``error`` instead (real
#: firmware-4560 results: ``"result": [{"error": "name resolution failed: ..."}]``).
HOP_ERROR_WITHOUT_NUMBER = True
#: An empty address string (``"from": ""``, ``"src_addr": ""``) means "unknown" in real
#: Atlas results; it is kept as it is. Any other address text must be an IPv4/IPv6 address.
EMPTY_ADDRESS = ""
#: A reply ``{"error": "..."}`` without ``from`` reports the hop's error: it becomes the
#: hop's ``hop_error`` when the hop has none of its own (the first such reply wins).
REPLY_ERROR_IS_HOP_ERROR = True
#: Most hop entries one result may hold (Atlas sends at most 255 TTLs and the final probe).
MAX_HOP_ENTRIES = 1024
#: Most replies one hop may hold (Atlas sends at most 16 packets per hop).
MAX_REPLIES = 1024

#: Allowed range (inclusive) of every numeric field, by table (top level, hop, reply, MPLS).
#: ``lts`` is -1 when the probe does not know (real results).
FIELD_RANGES: dict[str, tuple[int | float, int | float]] = {
    "endtime": (0, (1 << 32) - 1),
    "af": (4, 6),  # and not 5: see _validate
    "paris_id": (0, (1 << 15) - 1),
    "size": (0, 65_535),
    "fw": (0, (1 << 31) - 1),
    "lts": (-1, (1 << 31) - 1),
    "hop.hop": (1, 255),
    "reply.rtt": (0.0, math.inf),  # finite: NaN and infinities are refused
    "reply.size": (0, 65_535),
    "reply.ttl": (0, 255),
    "reply.late": (0, (1 << 15) - 1),
    "reply.itos": (0, 255),
    "mpls.label": (0, (1 << 20) - 1),
}

#: Every reason a record can be set aside, with its meaning (stored with the counts).
DROP_REASONS = {
    "invalid_json": "the line is not valid JSON (truncated, garbage bytes)",
    "not_an_object": "valid JSON but not a JSON object",
    "not_traceroute": "a result of another measurement type (ping, dns, ...)",
    "firmware1_text": "firmware-1 traceroute stored as text (result is a string)",
    "missing_key": "msm_id, prb_id or timestamp missing or not an integer",
    "key_out_of_range": "msm_id, prb_id or timestamp negative or beyond 32 bits",
    "bad_result": "result is missing or not a list of hop objects",
    "bad_field_type": "a field has a JSON type the Atlas format does not allow",
    "duplicate": "same (msm_id, prb_id, timestamp) as a result already kept",
    "truncated_input": "the compressed input ended early or is corrupt; what could be read was ingested",
    "value_out_of_range": "a number outside the range its field allows (FIELD_RANGES: hop 1-255, af 4 or 6, "
                          "ttl 0-255, sizes, times; rtt finite and >= 0) or beyond 64 bits",
    "bad_address": "from, src_addr, dst_addr or a reply's from is not an IPv4/IPv6 address",
    "too_many_hops": "more than MAX_HOP_ENTRIES hop entries in one result or MAX_REPLIES replies in one hop",
    "line_too_long": "a line (one result) longer than MAX_LINE_BYTES; it was skipped without being read whole",
}


_TS = pa.timestamp("s", tz="UTC")

_MPLS = pa.struct([("label", pa.int64()), ("exp", pa.int64()), ("s", pa.int64()), ("ttl", pa.int64())])
_REPLY = pa.struct(
    [
        ("from", pa.string()),
        ("rtt", pa.float64()),
        ("size", pa.int64()),
        ("ttl", pa.int64()),
        ("x", pa.string()),
        ("err", pa.string()),
        ("late", pa.int64()),
        ("itos", pa.int64()),
        ("edst", pa.string()),
        ("dup", pa.bool_()),
        ("error", pa.string()),
        ("icmpext", pa.struct([("obj", pa.list_(pa.struct([("class", pa.int64()), ("type", pa.int64()), ("mpls", pa.list_(_MPLS))])))])),
    ]
)
_HOP = pa.struct([("hop", pa.int64()), ("error", pa.string()), ("result", pa.list_(_REPLY))])

#: The fields of an Atlas traceroute result that pathexp reads (others are ignored).
RAW_SCHEMA = pa.schema(
    [
        ("type", pa.string()),
        ("msm_id", pa.int64()),
        ("prb_id", pa.int64()),
        ("timestamp", pa.int64()),
        ("endtime", pa.int64()),
        ("af", pa.int64()),
        ("proto", pa.string()),
        ("paris_id", pa.int64()),
        ("src_addr", pa.string()),
        ("from", pa.string()),
        ("dst_addr", pa.string()),
        ("dst_name", pa.string()),
        ("size", pa.int64()),
        ("fw", pa.int64()),
        ("lts", pa.int64()),
        ("error", pa.string()),
        ("origin", pa.string()),
        ("result", pa.list_(_HOP)),
    ]
)

_PARSE_OPTIONS = pj.ParseOptions(explicit_schema=RAW_SCHEMA, unexpected_field_behavior="ignore")
_U32 = 1 << 32

# JSON types each field may take: (expected Python types, repair or None)
_INT = (int,)
_STR = (str,)
_NUM = (int, float)
_TOP_TYPES: dict[str, tuple[type, ...]] = {
    "endtime": _INT, "af": _INT, "proto": _STR, "paris_id": _INT, "src_addr": _STR,
    "from": _STR, "dst_addr": _STR, "dst_name": _STR, "size": _INT, "fw": _INT, "lts": _INT,
    "type": _STR, "origin": _STR,
}
_REPLY_TYPES: dict[str, tuple[type, ...]] = {
    "from": _STR, "rtt": _NUM, "size": _INT, "ttl": _INT, "x": _STR, "late": _INT,
    "itos": _INT, "edst": _STR, "dup": (bool,), "icmpext": (dict,),
}


@dataclass
class Parsed:
    """The tables parsed from a block of results, and what was set aside.

    ``raw`` holds the accepted input lines (one JSON object each, in row order of
    ``traces``) so the store can keep the source of truth exactly as received.
    """

    hops: pa.Table
    traces: pa.Table
    drops: Counter = field(default_factory=Counter)
    raw: list[bytes] = field(default_factory=list)
    #: for each hop row, the row of its traceroute in ``traces``
    hop_trace: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def take(self, rows: np.ndarray) -> Parsed:
        """The traceroutes at ``rows`` (sorted indices) with their hop rows."""
        keep = np.zeros(self.traces.num_rows, dtype=bool)
        keep[rows] = True
        hop_keep = keep[self.hop_trace]
        remap = np.cumsum(keep) - 1
        return Parsed(
            self.hops.filter(pa.array(hop_keep)),
            self.traces.take(pa.array(rows)),
            self.drops,
            [self.raw[i] for i in rows],
            remap[self.hop_trace[hop_keep]],
        )

    @property
    def keys(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = self.traces
        return (
            t.column("msm_id").to_numpy(),
            t.column("prb_id").to_numpy(),
            t.column("timestamp").cast(pa.int64()).to_numpy(),
        )


def parse_results(records: Iterable[bytes | str | dict], *, origin: str = "atlas") -> Parsed:
    """Parse Atlas traceroute results (JSON lines, or already-decoded dicts).

    Parameters
    ----------
    records
        One result per item: a JSON text (bytes or str) or a decoded dict.
    origin
        Written to the ``origin`` column when a result does not carry its own.

    Returns
    -------
    Parsed
        Hop table (:data:`probes.schema.HOP_SCHEMA`), traceroute table
        (:data:`probes.schema.TRACE_SCHEMA`), drops by reason, accepted raw lines.

    Examples
    --------
    >>> p = parse_results(['{"type":"traceroute","msm_id":5,"prb_id":7,"timestamp":1,'
    ...                    '"af":4,"dst_addr":"192.0.2.1","result":[{"hop":1,"result":'
    ...                    '[{"from":"192.0.2.1","rtt":1.5,"ttl":64,"size":28},{"x":"*"}]}]}',
    ...                    'not json'])
    >>> p.hops.column("reply_from").to_pylist(), dict(p.drops)
    (['192.0.2.1', None], {'invalid_json': 1})
    """
    lines: list[bytes] = []
    for rec in records:
        if isinstance(rec, dict):
            lines.append(orjson.dumps(rec))
        elif isinstance(rec, str):
            lines.append(rec.encode("utf-8", "surrogateescape"))
        else:
            lines.append(bytes(rec))
    return parse_lines(lines, origin=origin)


def parse_lines(lines: Sequence[bytes], *, origin: str = "atlas", use_threads: bool = True,
                encoded: bool = False, native: bool = True) -> Parsed:
    """Parse a block of NDJSON lines (no trailing newlines; blank lines are skipped).

    ``use_threads=False`` keeps Arrow's JSON decoder on the calling thread. ``encoded=True``
    gives the hop table as the store writes it (:data:`probes.schema.STORED_HOP_SCHEMA`:
    the traceroute's strings dictionary-encoded, not copied onto each hop row).
    ``native=False`` decodes with Arrow's reader only, never :mod:`probes._atlasjson`
    (the same answer, more slowly: the reference the tests and benchmarks compare with).
    """
    return _finish(*_decode(lines, use_threads, native), origin, encoded)


def iter_parsed(blocks: Iterable[Sequence[bytes]], *, origin: str = "atlas",
                encoded: bool = False) -> Iterator[Parsed]:
    """Parse blocks of lines in order, as :func:`parse_lines` would, one by one.

    The JSON of the next block is decoded on a helper thread (Arrow releases the GIL)
    while the current block is flattened and handed to the caller, so decoding overlaps
    with everything the caller does with a block (unless there is no core to spare:
    :func:`probes.engine.spare_threads`).
    """
    if not spare_threads():  # one core to work with: one block after the other
        for block in blocks:
            yield _finish(*_decode(block, True), origin, encoded)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pathexp-parse") as pool:
        pending: Future[tuple[pa.Table | None, list[bytes], Counter]] | None = None
        for block in blocks:
            decoding = pool.submit(_decode, block, True)
            if pending is not None:
                yield _finish(*pending.result(), origin, encoded)
            pending = decoding
        if pending is not None:
            yield _finish(*pending.result(), origin, encoded)


def _decode(lines: Sequence[bytes], use_threads: bool,
            native: bool = True) -> tuple[pa.Table | None, list[bytes], Counter]:
    """JSON to a raw Arrow table (RAW_SCHEMA); damaged blocks go through :func:`_sanitize`.

    The lines returned are the accepted input lines exactly as received (the store keeps
    them as the source of truth), even where the decoder was fed a repaired copy. A block
    whose text the strict reader would take where orjson refuses it (``NaN``/``Inf``
    literals, bytes that are not UTF-8) goes line by line, so the verdict on a line never
    depends on the block it is in.
    """
    drops: Counter = Counter()
    kept_lines: list[bytes] = []
    for ln in lines:
        if isinstance(ln, SetAside):
            drops[ln.reason] += 1
        elif len(ln) > MAX_LINE_BYTES:
            drops["line_too_long"] += 1
        elif ln.strip():
            kept_lines.append(ln)
    lines = kept_lines
    if not lines:
        return None, lines, drops
    data = b"\n".join(lines)
    if _strict_text(data):
        split = _native_split(lines, data, use_threads, drops) if native else None
        if split is not None:
            return split
        try:
            return _read_block(lines, use_threads, data, native=False), lines, drops
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            pass
    kept, repaired = _sanitize(lines, drops)
    if not kept:
        return None, kept, drops
    try:
        return _read_block(repaired, use_threads, native=native), kept, drops
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return _read_each(kept, repaired, drops, use_threads, native)


def _strict_text(data: bytes) -> bool:
    """Whether the strict reader and orjson agree on this text (no NaN/Inf, valid UTF-8)."""
    if _has_any(data, (b"NaN", b"Inf")):
        return False
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _native_paths() -> list[tuple[str, ...]]:
    """RAW_SCHEMA's fields as the native decoder returns its columns: each struct's fields in
    order, the structs level by level (traceroute, hop, reply, icmpext, object, MPLS entry)."""
    paths: list[tuple[str, ...]] = []
    groups: list[tuple[tuple[str, ...], pa.StructType | pa.Schema]] = [((), RAW_SCHEMA)]
    while groups:
        prefix, fields = groups.pop(0)
        for f in fields:
            paths.append((*prefix, f.name))
            inner = f.type.value_type if pa.types.is_list(f.type) else f.type
            if pa.types.is_struct(inner):
                groups.append(((*prefix, f.name), inner))
    return paths


_NATIVE_COLUMNS = _native_paths()


def _native_block(data: bytes, n_lines: int) -> pa.Table | None:
    """The block decoded by :mod:`probes._atlasjson` into RAW_SCHEMA, or None where the
    module is not built or any line is not of the plain shape it decodes (Arrow's reader
    and :func:`_sanitize` then judge the block, as without it). The table equals what
    Arrow's reader builds from the same text (tests/probes/test_native_json.py)."""
    got = _native_lines(data, n_lines)
    return got[0] if got is not None and not got[1] else None


def _native_split(lines: list[bytes], data: bytes, use_threads: bool,
                  drops: Counter) -> tuple[pa.Table | None, list[bytes], Counter] | None:
    """A strict block decoded by :mod:`probes._atlasjson`, but for the lines it refuses,
    which go the way they would alone (Arrow's reader, else :func:`_sanitize`): the verdict
    on a line is its own, so this is what the whole block's slow path gives, faster.

    None where the module is not built or takes no line. Rows and kept lines in input order.
    """
    got = _native_lines(data, len(lines))
    if got is None or len(got[1]) == len(lines):
        return None
    table, refused = got
    if not refused:
        return table, lines, drops
    rest_table, rest_kept, rest_drops = _decode([lines[i] for i in refused], use_threads, native=False)
    drops.update(rest_drops)
    taken = np.setdiff1d(np.arange(len(lines)), refused)
    if rest_table is None:
        return table, [lines[i] for i in taken], drops
    # where each kept refused line was: _decode hands back, in order, the line objects it
    # was given and kept, so they are matched walking both lists once
    kept_at: list[int] = []
    for i in refused:
        if len(kept_at) < len(rest_kept) and lines[i] is rest_kept[len(kept_at)]:
            kept_at.append(i)
    at = np.concatenate([taken, kept_at]).astype(np.int64)
    order = np.argsort(at, kind="stable")
    merged = pa.concat_tables([table, rest_table]).take(pa.array(order))
    return merged, [lines[i] for i in at[order]], drops


def _native_lines(data: bytes, n_lines: int) -> tuple[pa.Table, list[int]] | None:
    """The lines :mod:`probes._atlasjson` takes, as a RAW_SCHEMA table, and the indices of
    those it refuses; None where the module is not built or the line count differs (a
    "line" holding a newline)."""
    if _atlasjson is None:
        return None
    out = _atlasjson.decode(data)
    if out is None or out[0] + len(out[2]) != n_lines:
        return None
    columns = dict(zip(_NATIVE_COLUMNS, out[1], strict=True))
    arrays = [_native_array(columns, (f.name,), f.type) for f in RAW_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=RAW_SCHEMA), out[2]


# module-level, not nested: two closures calling each other form a reference cycle, which
# kept each block's buffers alive until the cyclic garbage collector ran (an ingest's memory
# grew by hundreds of MB between collections)
def _native_array(columns: dict, path: tuple[str, ...], typ: pa.DataType) -> pa.Array:
    """One RAW_SCHEMA field from the decoder's buffers (zero-copy), its children with it."""
    length, nulls, valid, values, data = columns[path]
    validity = pa.py_buffer(valid) if nulls else None
    if pa.types.is_list(typ):
        return pa.Array.from_buffers(typ, length, [validity, pa.py_buffer(values)], nulls,
                                     children=[_native_elements(columns, path, typ.value_type)])
    if pa.types.is_struct(typ):
        return pa.Array.from_buffers(typ, length, [validity], nulls,
                                     children=[_native_array(columns, (*path, f.name), f.type) for f in typ])
    if pa.types.is_string(typ):
        return pa.Array.from_buffers(typ, length, [validity, pa.py_buffer(values), pa.py_buffer(data)], nulls)
    return pa.Array.from_buffers(typ, length, [validity, pa.py_buffer(values)], nulls)


def _native_elements(columns: dict, path: tuple[str, ...], typ: pa.StructType) -> pa.Array:
    """The struct elements of the list at ``path`` (never null: the decoder refuses null elements)."""
    children = [_native_array(columns, (*path, f.name), f.type) for f in typ]
    return pa.Array.from_buffers(typ, len(children[0]), [None], 0, children=children)


def _has_any(data: bytes, words: tuple[bytes, ...]) -> bool:
    """Whether ``data`` holds any of ``words``, as ``word in data`` would say.

    Each word is looked for at the occurrences of its first byte, found with
    ``bytes.find`` of that one byte (memchr): 6x faster than ``in`` on Atlas text, where
    ``N`` and ``I`` are rare (one in a few thousand bytes). Text where the first byte is
    common (more than one in 1,024 bytes) is searched with ``in``.
    """
    budget = len(data) >> 10
    for word in words:
        first, seen = word[:1], 0
        at = data.find(first)
        while at >= 0:
            if data.startswith(word, at):
                return True
            seen += 1
            if seen > budget:
                if word in data:
                    return True
                break
            at = data.find(first, at + 1)
    return False


def _read_each(
    kept: list[bytes], repaired: list[bytes], drops: Counter, use_threads: bool, native: bool = True
) -> tuple[pa.Table | None, list[bytes], Counter]:
    """Safety net: decode repaired lines one by one, setting aside any the reader refuses."""
    tables, lines = [], []
    for line, fixed in zip(kept, repaired, strict=True):
        try:
            tables.append(_read_block([fixed], use_threads, native=native))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            drops["bad_field_type"] += 1
            continue
        lines.append(line)
    if not tables:
        return None, [], drops
    return pa.concat_tables(tables), lines, drops


def _finish(raw: pa.Table | None, lines: list[bytes], drops: Counter, origin: str, encoded: bool = False) -> Parsed:
    if raw is None:
        return Parsed((STORED_HOP_SCHEMA if encoded else HOP_SCHEMA).empty_table(), TRACE_SCHEMA.empty_table(),
                      drops, [])
    raw, lines = _validate(raw, lines, drops)
    traces, hops, hop_trace = _flatten(raw, origin, encoded)
    return Parsed(hops, traces, drops, lines, hop_trace)


def _read_block(lines: Sequence[bytes], use_threads: bool = True, data: bytes | None = None,
                native: bool = True) -> pa.Table:
    """The lines decoded into RAW_SCHEMA: by the native decoder where it takes the block
    (``native=False``: never), else by Arrow's reader, which raises where it refuses.
    Callers pass only text the strict reader and orjson agree on (:func:`_strict_text`)."""
    if data is None:
        data = b"\n".join(lines)
    if native:
        table = _native_block(data, len(lines))
        if table is not None:
            return table
    # blocks of 1 MiB let Arrow decode a block of lines (~10 MB of Atlas text) on several
    # threads, with less per-block work than smaller ones (7% less CPU than 256 KiB on
    # MENOG); a block must hold the longest line
    block = max(1 << 20, 2 * max(map(len, lines)) + 2)
    opts = pj.ReadOptions(block_size=block, use_threads=use_threads)
    table = pj.read_json(pa.BufferReader(data), read_options=opts, parse_options=_PARSE_OPTIONS)  # no copy
    if table.num_rows != len(lines):  # a line holding two objects, or a bare value
        raise pa.ArrowInvalid("row count differs from line count")
    return table


def _sanitize(lines: Sequence[bytes], drops: Counter) -> tuple[list[bytes], list[bytes]]:
    """Slow path: decode each line, repair format ambiguities, set aside what is invalid.

    Returns the accepted lines as received and, in the same order, their repaired copies
    for the decoder. Only what orjson reads is kept (the store reads raw lines back with
    it); a line only a lenient reader takes (``NaN``, an integer beyond 64 bits) is judged
    by :func:`_check_record` for its reason, then set aside.
    """
    kept: list[bytes] = []
    clean: list[bytes] = []
    for line in lines:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            drops[_lenient_reason(line)] += 1
            continue
        reason = _check_record(obj)
        if reason:
            drops[reason] += 1
            continue
        kept.append(line)
        clean.append(orjson.dumps(obj))
    return kept, clean


def _reject_constant(name: str) -> float:
    return float(name.replace("Infinity", "inf"))  # NaN/Infinity: judged by _check_record


def _lenient_reason(line: bytes) -> str:
    """The reason for a line orjson refuses: its field reason when a lenient reader takes it."""
    try:
        obj = json.loads(line, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # not JSON, not UTF-8 (MemoryError is not caught)
        return "invalid_json"
    return _check_record(obj) or "invalid_json"


_I64 = (-(1 << 63), (1 << 63) - 1)


def _int_reason(value: object, out_of_range: str, wrong_type: str) -> str | None:
    """None for an int64 integer, else why not (a huge integer may come as a float)."""
    if type(value) is int:
        return None if _I64[0] <= value <= _I64[1] else out_of_range
    if type(value) is float and (not math.isfinite(value) or (value.is_integer() and abs(value) > _I64[1])):
        return out_of_range
    return wrong_type


def _check_record(obj: object) -> str | None:
    """Return a drop reason for a decoded record, repairing it in place where allowed.

    Checks JSON types and what the columnar reader cannot hold (integers beyond 64 bits,
    non-finite numbers); ranges and addresses are checked by :func:`_validate` on every
    path. A null counts as absent (:data:`NULL_IS_ABSENT`).
    """
    if not isinstance(obj, dict):
        return "not_an_object"
    kind = obj.get("type")
    if kind is not None and kind != "traceroute":
        return "not_traceroute"
    for key in ("msm_id", "prb_id", "timestamp"):
        why = _int_reason(obj.get(key), "key_out_of_range", "missing_key")
        if why:
            return why
    for key, types in _TOP_TYPES.items():
        value = obj.get(key)
        if value is None:
            continue
        if types is _INT:
            why = _int_reason(value, "value_out_of_range", "bad_field_type")
            if why:
                return why
        elif type(value) not in types:
            return "bad_field_type"
    err = obj.get("error")
    if err is not None and not isinstance(err, str):
        obj["error"] = orjson.dumps(err).decode()
    result = obj.get("result")
    if isinstance(result, str):
        return "firmware1_text"
    if result is None and obj.get("error") is not None:
        return None
    if not isinstance(result, list):
        return "bad_result"
    for hop in result:
        if not isinstance(hop, dict):
            return "bad_result"
        if hop.get("error") is not None and not isinstance(hop["error"], str):
            hop["error"] = orjson.dumps(hop["error"]).decode()
        number = hop.get("hop")
        if number is None:
            if hop.get("error") is None:  # HOP_ERROR_WITHOUT_NUMBER
                return "bad_result"
        else:
            why = _int_reason(number, "value_out_of_range", "bad_result")
            if why:
                return why
        replies = hop.get("result")
        if replies is None:
            continue
        if not isinstance(replies, list):
            return "bad_result"
        for reply in replies:
            if not isinstance(reply, dict):
                return "bad_result"
            for key, types in _REPLY_TYPES.items():
                value = reply.get(key)
                if value is None:
                    continue
                if types is _INT:
                    why = _int_reason(value, "value_out_of_range", "bad_field_type")
                    if why:
                        return why
                elif type(value) not in types:
                    return "bad_field_type"
                elif key == "rtt" and not math.isfinite(value):
                    return "value_out_of_range"
            if reply.get("err") is not None and not isinstance(reply["err"], str):
                reply["err"] = str(reply["err"])  # numeric ICMP unreachable code
            rerr = reply.get("error")
            if rerr is not None and not isinstance(rerr, str):
                reply["error"] = rerr = orjson.dumps(rerr).decode()
            if rerr is not None and reply.get("from") is None and hop.get("error") is None:
                hop["error"] = rerr  # REPLY_ERROR_IS_HOP_ERROR (the fast path does the same)
            icmpext = reply.get("icmpext")
            if icmpext is not None and not _icmpext_ok(icmpext):
                reply.pop("icmpext")
    return None


def _icmpext_ok(icmpext: dict) -> bool:
    """Whether the ICMP extension has the shape and integer fields the reader expects."""
    objs = icmpext.get("obj")
    if objs is None:
        return True
    if not isinstance(objs, list):
        return False
    for obj in objs:
        if not isinstance(obj, dict):
            return False
        if any(obj.get(k) is not None and _int_reason(obj[k], "x", "x") for k in ("class", "type")):
            return False
        mpls = obj.get("mpls")
        if mpls is None:
            continue
        if not isinstance(mpls, list):
            return False
        for m in mpls:
            if not isinstance(m, dict):
                return False
            if any(m.get(k) is not None and _int_reason(m[k], "x", "x") for k in ("label", "exp", "s", "ttl")):
                return False
    return True


_V4 = (
    r"^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$"
)


def _is_address(text: str) -> bool:
    if "%" in text:  # no zone ids: an Atlas address is global
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _bad_addresses(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """True where a non-null, non-empty value is not an IPv4/IPv6 address.

    Each distinct value is checked once: IPv4 by pattern, the rest by :mod:`ipaddress`.
    """
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    if n == 0 or arr.null_count == n:
        return np.zeros(n, dtype=bool)
    uniq = pc.unique(arr)
    ok = pc.or_(pc.equal(uniq, EMPTY_ADDRESS), pc.match_substring_regex(uniq, _V4)).fill_null(True)
    if pc.all(ok).as_py():
        return np.zeros(n, dtype=bool)
    rest = uniq.filter(pc.invert(ok)).to_pylist()
    bad = [t for t in rest if not _is_address(t)]
    if not bad:
        return np.zeros(n, dtype=bool)
    return np.asarray(pc.is_in(arr, value_set=pa.array(bad, pa.string())).fill_null(False), dtype=bool)


def _outside(arr: pa.Array | pa.ChunkedArray, lo: float, hi: float) -> np.ndarray:
    """True where a non-null value lies outside [lo, hi] (or is NaN)."""
    low, high = (v.as_py() for v in pc.min_max(arr).values())  # NaN aside; the usual answer in one pass
    floating = pa.types.is_floating(arr.type)
    if low is None or (low >= lo and high <= hi and not (floating and pc.any(pc.is_nan(arr)).as_py())):
        return np.zeros(len(arr), dtype=bool)
    bad = pc.or_(pc.less(arr, lo), pc.greater(arr, hi))
    if floating:
        bad = pc.or_(bad, pc.invert(pc.is_finite(arr)))
    return np.asarray(bad.fill_null(False), dtype=bool)


def _validate(raw: pa.Table, lines: list[bytes], drops: Counter) -> tuple[pa.Table, list[bytes]]:
    """Vectorized record checks on a decoded block; returns the kept rows and lines.

    Runs on every block, whichever path decoded it, so a line's verdict is its own. The
    first failing check names the reason: type, keys, structure, sizes, ranges, addresses.
    """
    n = raw.num_rows
    keep = np.ones(n, dtype=bool)

    def drop(mask: np.ndarray, reason: str) -> None:
        hit = mask & keep
        count = int(hit.sum())
        if count:
            drops[reason] += count
            keep[hit] = False

    def per_trace(mask: np.ndarray, parent: np.ndarray) -> np.ndarray:
        out = np.zeros(n, dtype=bool)
        out[parent[mask]] = True
        return out

    kind = raw.column("type")
    drop(np.asarray(pc.fill_null(pc.not_equal(kind, "traceroute"), False)), "not_traceroute")
    keys = [raw.column(k) for k in ("msm_id", "prb_id", "timestamp")]
    drop(np.logical_or.reduce([np.asarray(k.is_null()) for k in keys]), "missing_key")
    drop(np.logical_or.reduce([_outside(k, 0, _U32 - 1) for k in keys]), "key_out_of_range")

    result = raw.column("result").combine_chunks()
    # kept combined for _flatten (a take keeps one chunk one chunk): combined once per block
    raw = raw.set_column(raw.schema.get_field_index("result"), "result", result)
    hops = pc.list_flatten(result)
    hop_trace = np.asarray(pc.list_parent_indices(result), dtype=np.int64)
    replies_lists = hops.field("result")
    replies = pc.list_flatten(replies_lists)
    reply_trace = hop_trace[np.asarray(pc.list_parent_indices(replies_lists), dtype=np.int64)]
    hop_no = hops.field("hop")

    no_result = np.asarray(result.is_null()) & np.asarray(raw.column("error").is_null())
    hop_bad = np.asarray(hops.is_null()) | (np.asarray(hop_no.is_null()) & np.asarray(hops.field("error").is_null()))
    drop(no_result | per_trace(hop_bad, hop_trace) | per_trace(np.asarray(replies.is_null()), reply_trace), "bad_result")

    many = np.asarray(pc.list_value_length(result).fill_null(0)) > MAX_HOP_ENTRIES
    many_replies = np.asarray(pc.list_value_length(replies_lists).fill_null(0)) > MAX_REPLIES
    drop(many | per_trace(many_replies, hop_trace), "too_many_hops")

    out = np.zeros(n, dtype=bool)
    for name in ("endtime", "af", "paris_id", "size", "fw", "lts"):
        out |= _outside(raw.column(name), *FIELD_RANGES[name])
    out |= np.asarray(pc.fill_null(pc.equal(raw.column("af"), 5), False))
    out |= per_trace(_outside(hop_no, *FIELD_RANGES["hop.hop"]), hop_trace)
    rep_out = np.zeros(len(replies), dtype=bool)
    for name in ("rtt", "size", "ttl", "late", "itos"):
        rep_out |= _outside(replies.field(name), *FIELD_RANGES[f"reply.{name}"])
    out |= per_trace(rep_out, reply_trace)
    objs_lists = replies.field("icmpext").field("obj")
    objs = pc.list_flatten(objs_lists)
    if len(objs):
        obj_trace = reply_trace[np.asarray(pc.list_parent_indices(objs_lists), dtype=np.int64)]
        mpls_lists = objs.field("mpls")
        mpls_trace = obj_trace[np.asarray(pc.list_parent_indices(mpls_lists), dtype=np.int64)]
        labels = pc.list_flatten(mpls_lists).field("label")
        out |= per_trace(_outside(labels, *FIELD_RANGES["mpls.label"]), mpls_trace)
    drop(out, "value_out_of_range")

    bad_addr = np.zeros(n, dtype=bool)
    for name in ("from", "src_addr", "dst_addr"):
        bad_addr |= _bad_addresses(raw.column(name))
    bad_addr |= per_trace(_bad_addresses(replies.field("from")), reply_trace)
    drop(bad_addr, "bad_address")
    if keep.all():
        return raw, lines
    idx = np.flatnonzero(keep)
    return raw.take(pa.array(idx)), [lines[i] for i in idx]


def _flatten(raw: pa.Table, origin: str, encoded: bool = False) -> tuple[pa.Table, pa.Table, np.ndarray]:
    n = raw.num_rows
    column = raw.column("result")  # one chunk, as _validate leaves it
    result = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    hops = pc.list_flatten(result)  # one struct per hop entry
    hop_trace = np.asarray(pc.list_parent_indices(result))
    replies_lists = hops.field("result")
    reply_len = np.asarray(pc.list_value_length(replies_lists).fill_null(0), dtype=np.int64)
    replies = pc.list_flatten(replies_lists)
    n_hops = len(hops)

    # one row per reply; a hop without replies (it carries "error") still gets one row
    rows_per_hop = np.maximum(reply_len, 1)
    n_rows = int(rows_per_hop.sum())
    row_hop = np.repeat(np.arange(n_hops), rows_per_hop)
    hop_start = np.cumsum(rows_per_hop) - rows_per_hop
    attempt = np.arange(n_rows) - np.repeat(hop_start, rows_per_hop)
    has_reply = np.repeat(reply_len > 0, rows_per_hop)
    # rows are the replies themselves, in order, when every hop has replies (the usual
    # case): reply columns are then used as they are, without a take
    every_reply = n_rows == len(replies)
    reply_take = None
    if not every_reply:
        reply_idx = np.full(n_rows, -1, dtype=np.int64)
        reply_idx[has_reply] = np.arange(len(replies))
        reply_take = pa.array(reply_idx, mask=~has_reply)
    row_trace = hop_trace[row_hop]
    trace_take = pa.array(row_trace)
    hop_take = pa.array(row_hop)
    schema = STORED_HOP_SCHEMA if encoded else HOP_SCHEMA
    types = {f.name: f.type for f in HOP_SCHEMA}

    # cast before the take: the per-traceroute and per-reply values are the same either
    # way (each is range-checked by _validate), and the take then copies narrow values
    def top(name: str, column: str | None = None) -> pa.Array:
        values = raw.column(column or name).combine_chunks().cast(types[name])
        if encoded and name in PER_TRACE_HOP_STRINGS:  # each traceroute's string once
            enc = values.dictionary_encode()
            return pa.DictionaryArray.from_arrays(enc.indices.take(trace_take), enc.dictionary)
        return values.take(trace_take)

    def per_reply(values: pa.Array) -> pa.Array:
        return values if reply_take is None else values.take(reply_take)

    def rep(name: str, column: str) -> pa.Array:
        return per_reply(replies.field(column).cast(types[name]))

    late = rep("late_count", "late")
    is_late = pc.fill_null(pc.greater(late, 0), False) if n_rows else pa.array([], pa.bool_())
    reply_from = rep("reply_from", "from")
    attempt_arr = pa.array(attempt.astype(np.int16), mask=~has_reply)
    dst_rows = top("dst_addr")

    hop_cols = {
        "msm_id": top("msm_id"),
        "prb_id": top("prb_id"),
        "timestamp": top("timestamp"),
        "af": top("af"),
        "proto": top("proto"),
        "paris_id": top("paris_id"),
        "src_addr": top("src_addr"),
        "from_addr": top("from_addr", "from"),
        "dst_addr": dst_rows,
        "dst_name": top("dst_name"),
        "hop": hops.field("hop").cast(types["hop"]).take(hop_take),
        "attempt": attempt_arr,
        "reply_from": reply_from,
        "rtt": rep("rtt", "rtt"),
        "reply_ttl": rep("reply_ttl", "ttl"),
        "size": rep("size", "size"),
        "err": rep("err", "err"),
        "late": is_late,
        "late_count": late,
        "itos": rep("itos", "itos"),
        "edst": rep("edst", "edst"),
        "dup": rep("dup", "dup"),
        "mpls": per_reply(_mpls_labels(replies)),
        "hop_error": _hop_errors(hops, replies, replies_lists).take(hop_take),
    }
    hop_table = pa.Table.from_arrays([hop_cols[f.name].cast(f.type) for f in schema], schema=schema)

    # per traceroute: hop entries, last hop (the final TTL-255 probe aside), destination reached
    hop_no = np.asarray(hops.field("hop").fill_null(0), dtype=np.int64)
    counted = hop_no != FINAL_PROBE_HOP
    hop_count = np.bincount(hop_trace, minlength=n)
    last_hop = np.zeros(n, dtype=np.int64)
    np.maximum.at(last_hop, hop_trace[counted], hop_no[counted])
    reached = np.zeros(n, dtype=bool)
    reached[row_trace[_replies_from_destination(reply_from, dst_rows)]] = True

    origin_col = pc.fill_null(raw.column("origin"), origin)
    trace_cols = {
        "msm_id": raw.column("msm_id"),
        "prb_id": raw.column("prb_id"),
        "timestamp": raw.column("timestamp").cast(_TS),
        "endtime": raw.column("endtime").cast(_TS),
        "af": raw.column("af"),
        "proto": raw.column("proto"),
        "paris_id": raw.column("paris_id"),
        "src_addr": raw.column("src_addr"),
        "from_addr": raw.column("from"),
        "dst_addr": raw.column("dst_addr"),
        "dst_name": raw.column("dst_name"),
        "size": raw.column("size"),
        "fw": raw.column("fw"),
        "lts": raw.column("lts"),
        "hop_count": pa.array(hop_count),
        "last_hop": pa.array(last_hop, mask=hop_count == 0),
        "destination_reached": pa.array(reached),
        "result_error": raw.column("error"),
        "origin": origin_col,
    }
    trace_table = pa.Table.from_arrays(
        [trace_cols[f.name].cast(f.type) for f in TRACE_SCHEMA],
        schema=TRACE_SCHEMA,
    )
    return trace_table, hop_table, row_trace


def _replies_from_destination(reply_from: pa.Array, dst: pa.Array) -> np.ndarray:
    """Per row, whether the reply came from the traceroute's destination (``dst`` plain or
    dictionary-encoded: then compared by dictionary code, no string built per row)."""
    if isinstance(dst, pa.DictionaryArray):
        code = pc.index_in(reply_from, value_set=dst.dictionary)
        same = pc.equal(code, dst.indices.cast(code.type))
    else:
        same = pc.equal(reply_from, dst)
    return np.asarray(pc.fill_null(same, False), dtype=bool)


def _hop_errors(hops: pa.StructArray, replies: pa.StructArray, replies_lists: pa.ListArray) -> pa.Array:
    """Each hop's ``error``, or the first reply-level error of a hop without one.

    :data:`REPLY_ERROR_IS_HOP_ERROR`: a reply ``{"error": ...}`` without ``from`` reports
    the hop's error (the line-by-line path repairs it the same way).
    """
    errors = hops.field("error")
    reply_err = replies.field("error")
    if reply_err.null_count == len(reply_err):
        return errors
    cand = np.asarray(reply_err.is_valid()) & np.asarray(replies.field("from").is_null())
    idx = np.flatnonzero(cand)
    if not len(idx):
        return errors
    reply_hop = np.asarray(pc.list_parent_indices(replies_lists), dtype=np.int64)[idx]
    hop_ids, first = np.unique(reply_hop, return_index=True)
    fill = np.full(len(hops), -1, dtype=np.int64)
    fill[hop_ids] = idx[first]
    from_reply = reply_err.take(pa.array(fill, mask=fill < 0))
    return pc.coalesce(errors, from_reply)


def _mpls_labels(replies: pa.StructArray) -> pa.ListArray:
    """MPLS labels of each reply's ICMP extension objects, as list<int32> (null if none)."""
    n = len(replies)
    objs_lists = replies.field("icmpext").field("obj")
    objs = pc.list_flatten(objs_lists)
    if len(objs) == 0:
        return pa.nulls(n, pa.list_(pa.int32()))
    obj_reply = np.asarray(pc.list_parent_indices(objs_lists))
    mpls_lists = objs.field("mpls")
    entries = pc.list_flatten(mpls_lists)
    entry_reply = obj_reply[np.asarray(pc.list_parent_indices(mpls_lists))]
    counts = np.bincount(entry_reply, minlength=n)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    labels = entries.field("label").cast(pa.int32())
    return pa.ListArray.from_arrays(pa.array(offsets), labels, mask=pa.array(counts == 0))
