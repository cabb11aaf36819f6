"""Test helper: a minimal hop table built straight from Atlas JSON with orjson.

Independent of probes.parse on purpose (the annotator only reads ``reply_from``); columns
follow probes.schema.HOP_SCHEMA for the ones filled, the rest are null.
"""

from __future__ import annotations

import lzma
from pathlib import Path

import orjson
import pyarrow as pa

from probes.schema import HOP_SCHEMA


def atlas_records(path: Path) -> list[dict]:
    data = path.read_bytes()
    if path.suffix == ".xz":
        data = lzma.decompress(data)
    if data.lstrip().startswith(b"["):
        return orjson.loads(data)
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


def hop_table(records: list[dict]) -> pa.Table:
    """One row per reply or timeout, like HOP_SCHEMA (key, af, dst, hop, attempt, reply_from)."""
    cols: dict[str, list] = {k: [] for k in ("msm_id", "prb_id", "timestamp", "af", "dst_addr", "hop", "attempt", "reply_from")}
    for r in records:
        for h in r.get("result") or []:
            for i, rep in enumerate(h.get("result") or []):
                cols["msm_id"].append(r["msm_id"])
                cols["prb_id"].append(r["prb_id"])
                cols["timestamp"].append(r["timestamp"])
                cols["af"].append(r.get("af"))
                cols["dst_addr"].append(r.get("dst_addr"))
                cols["hop"].append(h.get("hop"))
                cols["attempt"].append(i)
                cols["reply_from"].append(rep.get("from"))
    n = len(cols["msm_id"])
    arrays = []
    for f in HOP_SCHEMA:
        if f.name in cols:
            arrays.append(pa.array(cols[f.name], pa.int64()).cast(f.type) if f.name == "timestamp" else pa.array(cols[f.name], f.type))
        else:
            arrays.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(arrays, schema=HOP_SCHEMA)
