"""The hop table and the traceroute table: the columnar form of Atlas traceroute results.

Defined once here; every writer and reader in :mod:`probes` and :mod:`analysis` uses these
schemas. One row of :data:`HOP_SCHEMA` is one reply *or* one timeout (``reply_from`` null)
of one hop of one traceroute; one row of :data:`TRACE_SCHEMA` is one traceroute. Both are
keyed by ``(msm_id, prb_id, timestamp)``, the Atlas result identity.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "KEY_COLUMNS",
    "HOP_SCHEMA",
    "PER_TRACE_HOP_STRINGS",
    "STORED_HOP_SCHEMA",
    "TRACE_SCHEMA",
    "LOCAL_MSM_ID_MIN",
    "empty_hops",
    "empty_traces",
]

#: Columns identifying one traceroute result.
KEY_COLUMNS = ("msm_id", "prb_id", "timestamp")

#: Measurement ids at or above this value are local (not RIPE Atlas) traceroutes:
#: results written by ``pathexp trace`` or converted from other tools' output.
#: Atlas ids are far below it (about 1e8 in 2026).
LOCAL_MSM_ID_MIN = 2_000_000_000

_TS = pa.timestamp("s", tz="UTC")

HOP_SCHEMA = pa.schema(
    [
        pa.field("msm_id", pa.int64(), nullable=False),
        pa.field("prb_id", pa.int64(), nullable=False),
        pa.field("timestamp", _TS, nullable=False),
        pa.field("af", pa.int8()),
        pa.field("proto", pa.string()),
        pa.field("paris_id", pa.int32()),
        pa.field("src_addr", pa.string()),
        pa.field("from_addr", pa.string()),  # the probe's public address ("from")
        pa.field("dst_addr", pa.string()),
        pa.field("dst_name", pa.string()),
        pa.field("hop", pa.int16()),
        pa.field("attempt", pa.int16()),  # 0-based index of the reply within the hop
        pa.field("reply_from", pa.string()),  # null for a timeout ("x": "*")
        pa.field("rtt", pa.float64()),  # ms; null for a timeout
        pa.field("reply_ttl", pa.int16()),
        pa.field("size", pa.int32()),
        pa.field("err", pa.string()),  # Atlas err code (N/H/A/P/p or a number) or null
        pa.field("late", pa.bool_()),  # true for a late packet ("late": n)
        pa.field("late_count", pa.int16()),
        pa.field("itos", pa.int16()),
        pa.field("edst", pa.string()),
        pa.field("dup", pa.bool_()),
        pa.field("mpls", pa.list_(pa.int32())),  # ICMP-extension MPLS labels
        pa.field("hop_error", pa.string()),  # hop carried "error" instead of replies
    ]
)

TRACE_SCHEMA = pa.schema(
    [
        pa.field("msm_id", pa.int64(), nullable=False),
        pa.field("prb_id", pa.int64(), nullable=False),
        pa.field("timestamp", _TS, nullable=False),
        pa.field("endtime", _TS),
        pa.field("af", pa.int8()),
        pa.field("proto", pa.string()),
        pa.field("paris_id", pa.int32()),
        pa.field("src_addr", pa.string()),
        pa.field("from_addr", pa.string()),
        pa.field("dst_addr", pa.string()),
        pa.field("dst_name", pa.string()),
        pa.field("size", pa.int32()),
        pa.field("fw", pa.int32()),
        pa.field("lts", pa.int32()),
        pa.field("hop_count", pa.int16()),  # number of hop entries in the result
        pa.field("last_hop", pa.int16()),
        pa.field("destination_reached", pa.bool_()),
        pa.field("result_error", pa.string()),  # top-level "error" of the result
        pa.field("origin", pa.string()),  # "atlas", "local" or "converted:<tool>"
    ]
)


#: Hop columns that are the traceroute's: the same on every hop row of one traceroute.
PER_TRACE_HOP_STRINGS = ("proto", "src_addr", "from_addr", "dst_addr", "dst_name")

#: :data:`HOP_SCHEMA` as the store writes the hop segments: the
#: :data:`PER_TRACE_HOP_STRINGS` dictionary-encoded (one string per traceroute, not per
#: hop row). The values are the same; DuckDB and ``pq.read_table(..., schema=HOP_SCHEMA)``
#: read them as plain strings.
STORED_HOP_SCHEMA = pa.schema(
    [pa.field(f.name, pa.dictionary(pa.int32(), f.type), f.nullable) if f.name in PER_TRACE_HOP_STRINGS else f
     for f in HOP_SCHEMA]
)


def empty_hops() -> pa.Table:
    """An empty hop table with :data:`HOP_SCHEMA`."""
    return HOP_SCHEMA.empty_table()


def empty_traces() -> pa.Table:
    """An empty traceroute table with :data:`TRACE_SCHEMA`."""
    return TRACE_SCHEMA.empty_table()
