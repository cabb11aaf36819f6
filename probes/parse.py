"""Parse RIPE Atlas traceroute results into the hop and traceroute tables.

The hot path never builds a Python object per hop: a block of NDJSON lines is decoded by
Arrow's C++ JSON reader against :data:`RAW_SCHEMA` (every field of the Atlas traceroute
result format that pathexp keeps), and the nested ``result`` lists are flattened with
Arrow compute and numpy index arithmetic. A block the strict reader refuses (a damaged
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
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from probes.schema import HOP_SCHEMA, TRACE_SCHEMA

__all__ = [
    "Parsed",
    "parse_results",
    "parse_lines",
    "iter_parsed",
    "RAW_SCHEMA",
    "DROP_REASONS",
]

# --- named quirks -------------------------------------------------------------------
#: Atlas firmware before 4000 stored traceroute results as text, not hop lists.
FIRMWARE1_MAX = 3999
#: The final probe sent with TTL 255 by some firmware versions is reported as hop 255.
FINAL_PROBE_HOP = 255
#: A timeout reply is ``{"x": "*"}``.
TIMEOUT_MARK = "*"

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


def parse_lines(lines: Sequence[bytes], *, origin: str = "atlas", use_threads: bool = True) -> Parsed:
    """Parse a block of NDJSON lines (no trailing newlines; blank lines are skipped).

    ``use_threads=False`` keeps Arrow's JSON decoder on the calling thread.
    """
    return _finish(*_decode(lines, use_threads), origin)


def iter_parsed(blocks: Iterable[Sequence[bytes]], *, origin: str = "atlas") -> Iterator[Parsed]:
    """Parse blocks of lines in order, as :func:`parse_lines` would, one by one.

    The JSON of the next block is decoded on a helper thread (Arrow releases the GIL)
    while the current block is flattened and handed to the caller, so decoding overlaps
    with everything the caller does with a block.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pathexp-parse") as pool:
        pending: Future[tuple[pa.Table | None, list[bytes], Counter]] | None = None
        for block in blocks:
            decoding = pool.submit(_decode, block, True)
            if pending is not None:
                yield _finish(*pending.result(), origin)
            pending = decoding
        if pending is not None:
            yield _finish(*pending.result(), origin)


def _decode(lines: Sequence[bytes], use_threads: bool) -> tuple[pa.Table | None, list[bytes], Counter]:
    """JSON to a raw Arrow table (RAW_SCHEMA); damaged blocks go through :func:`_sanitize`.

    The lines returned are the accepted input lines exactly as received (the store keeps
    them as the source of truth), even where the decoder was fed a repaired copy.
    """
    lines = [ln for ln in lines if ln.strip()]
    drops: Counter = Counter()
    if not lines:
        return None, lines, drops
    try:
        return _read_block(lines, use_threads), lines, drops
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        kept, repaired = _sanitize(lines, drops)
        if not kept:
            return None, kept, drops
        return _read_block(repaired, use_threads), kept, drops


def _finish(raw: pa.Table | None, lines: list[bytes], drops: Counter, origin: str) -> Parsed:
    if raw is None:
        return Parsed(HOP_SCHEMA.empty_table(), TRACE_SCHEMA.empty_table(), drops, [])
    raw, lines = _validate(raw, lines, drops)
    traces, hops, hop_trace = _flatten(raw, origin)
    return Parsed(hops, traces, drops, lines, hop_trace)


def _read_block(lines: Sequence[bytes], use_threads: bool = True) -> pa.Table:
    data = b"\n".join(lines)
    # blocks of ~256 KiB let Arrow decode in parallel; a block must hold the longest line
    block = max(1 << 18, 2 * max(map(len, lines)) + 2)
    opts = pj.ReadOptions(block_size=block, use_threads=use_threads)
    table = pj.read_json(io.BytesIO(data), read_options=opts, parse_options=_PARSE_OPTIONS)
    if table.num_rows != len(lines):  # a line holding two objects, or a bare value
        raise pa.ArrowInvalid("row count differs from line count")
    return table


def _sanitize(lines: Sequence[bytes], drops: Counter) -> tuple[list[bytes], list[bytes]]:
    """Slow path: decode each line, repair format ambiguities, set aside what is invalid.

    Returns the accepted lines as received and, in the same order, their repaired copies
    for the decoder.
    """
    kept: list[bytes] = []
    clean: list[bytes] = []
    for line in lines:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            drops["invalid_json"] += 1
            continue
        reason = _check_record(obj)
        if reason:
            drops[reason] += 1
            continue
        kept.append(line)
        clean.append(orjson.dumps(obj))
    return kept, clean


def _check_record(obj: object) -> str | None:
    """Return a drop reason for a decoded record, repairing it in place where allowed."""
    if not isinstance(obj, dict):
        return "not_an_object"
    kind = obj.get("type", "traceroute")
    if kind != "traceroute":
        return "not_traceroute"
    for key in ("msm_id", "prb_id", "timestamp"):
        if type(obj.get(key)) is not int:
            return "missing_key"
    for key, types in _TOP_TYPES.items():
        if obj.get(key) is not None and type(obj[key]) not in types:
            return "bad_field_type"
    err = obj.get("error")
    if err is not None and not isinstance(err, str):
        obj["error"] = orjson.dumps(err).decode()
    result = obj.get("result")
    if isinstance(result, str):
        return "firmware1_text"
    if result is None and "error" in obj:
        return None
    if not isinstance(result, list):
        return "bad_result"
    for hop in result:
        if not isinstance(hop, dict) or type(hop.get("hop")) is not int:
            return "bad_result"
        if hop.get("error") is not None and not isinstance(hop["error"], str):
            hop["error"] = orjson.dumps(hop["error"]).decode()
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
                if value is not None and type(value) not in types:
                    return "bad_field_type"
            if "err" in reply and not isinstance(reply["err"], str) and reply["err"] is not None:
                reply["err"] = str(reply["err"])  # numeric ICMP unreachable code
            if "error" in reply and "from" not in reply:
                hop.setdefault("error", str(reply["error"]))
            icmpext = reply.get("icmpext")
            if icmpext is not None and not _icmpext_ok(icmpext):
                reply.pop("icmpext")
    return None


def _icmpext_ok(icmpext: dict) -> bool:
    objs = icmpext.get("obj")
    if objs is None:
        return True
    if not isinstance(objs, list):
        return False
    for obj in objs:
        if not isinstance(obj, dict):
            return False
        mpls = obj.get("mpls")
        if mpls is not None and (
            not isinstance(mpls, list)
            or not all(isinstance(m, dict) and type(m.get("label", 0)) is int for m in mpls)
        ):
            return False
    return True


def _validate(raw: pa.Table, lines: list[bytes], drops: Counter) -> tuple[pa.Table, list[bytes]]:
    """Vectorized record checks on a decoded block; returns the kept rows and lines."""
    n = raw.num_rows
    keep = np.ones(n, dtype=bool)

    def drop(mask: np.ndarray, reason: str) -> None:
        hit = mask & keep
        count = int(hit.sum())
        if count:
            drops[reason] += count
            keep[hit] = False

    kind = raw.column("type")
    drop(np.asarray(pc.fill_null(pc.not_equal(kind, "traceroute"), False)), "not_traceroute")
    keys = [raw.column(k) for k in ("msm_id", "prb_id", "timestamp")]
    drop(np.logical_or.reduce([np.asarray(k.is_null()) for k in keys]), "missing_key")
    vals = [k.fill_null(0).to_numpy() for k in keys]
    drop(np.logical_or.reduce([(v < 0) | (v >= _U32) for v in vals]), "key_out_of_range")
    no_result = np.asarray(raw.column("result").is_null()) & np.asarray(raw.column("error").is_null())
    drop(no_result, "bad_result")
    if keep.all():
        return raw, lines
    idx = np.flatnonzero(keep)
    return raw.take(pa.array(idx)), [lines[i] for i in idx]


def _flatten(raw: pa.Table, origin: str) -> tuple[pa.Table, pa.Table, np.ndarray]:
    n = raw.num_rows
    result = raw.column("result").combine_chunks()
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
    reply_idx = np.full(n_rows, -1, dtype=np.int64)
    reply_idx[has_reply] = np.arange(len(replies))
    reply_take = pa.array(reply_idx, mask=~has_reply)
    row_trace = hop_trace[row_hop]
    trace_take = pa.array(row_trace)

    def top(name: str) -> pa.Array:
        return raw.column(name).combine_chunks().take(trace_take)

    def rep(name: str) -> pa.Array:
        return replies.field(name).take(reply_take)

    late = rep("late")
    is_late = pc.fill_null(pc.greater(late, 0), False) if n_rows else pa.array([], pa.bool_())
    reply_from = rep("from")
    attempt_arr = pa.array(attempt.astype(np.int16), mask=~has_reply)

    hop_cols = {
        "msm_id": top("msm_id"),
        "prb_id": top("prb_id"),
        "timestamp": top("timestamp").cast(_TS),
        "af": top("af"),
        "proto": top("proto"),
        "paris_id": top("paris_id"),
        "src_addr": top("src_addr"),
        "from_addr": top("from"),
        "dst_addr": top("dst_addr"),
        "dst_name": top("dst_name"),
        "hop": hops.field("hop").take(pa.array(row_hop)),
        "attempt": attempt_arr,
        "reply_from": reply_from,
        "rtt": rep("rtt"),
        "reply_ttl": rep("ttl"),
        "size": rep("size"),
        "err": rep("err"),
        "late": is_late,
        "late_count": late,
        "itos": rep("itos"),
        "edst": rep("edst"),
        "dup": rep("dup"),
        "mpls": _mpls_labels(replies).take(reply_take),
        "hop_error": hops.field("error").take(pa.array(row_hop)),
    }
    hop_table = pa.Table.from_arrays(
        [hop_cols[f.name].cast(f.type) for f in HOP_SCHEMA], schema=HOP_SCHEMA
    )

    # per traceroute: hop entries, last hop (the final TTL-255 probe aside), destination reached
    hop_no = np.asarray(hops.field("hop").fill_null(0), dtype=np.int64)
    counted = hop_no != FINAL_PROBE_HOP
    hop_count = np.bincount(hop_trace, minlength=n)
    last_hop = np.zeros(n, dtype=np.int64)
    np.maximum.at(last_hop, hop_trace[counted], hop_no[counted])
    dst = raw.column("dst_addr").combine_chunks()
    reached_rows = pc.fill_null(pc.equal(reply_from, dst.take(trace_take)), False)
    reached = np.zeros(n, dtype=bool)
    reached[row_trace[np.asarray(reached_rows)]] = True

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
