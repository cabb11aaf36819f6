"""The Atlas parser against ripe.atlas.sagan (independent oracle) and hand-written quirks."""

from __future__ import annotations

import lzma
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probes.parse import DROP_REASONS, parse_lines, parse_results
from probes.schema import HOP_SCHEMA, PER_TRACE_HOP_STRINGS, STORED_HOP_SCHEMA, TRACE_SCHEMA

TRACEROUTE_FILES = [
    "ripe-atlas/traceroutes/menog_traceroutes_full.ndjson.xz",
    "ripe-atlas/traceroutes/afrinren_traceroutes.ndjson.xz",
    "ripe-atlas/traceroutes/sagan_test_traceroutes.ndjson",
    "ripe-atlas/traceroutes/traixroute_example_paths_from_ripe.json",
    "ripe-atlas/pierky-ripe-atlas-monitor-fixtures/1033154.json",
    "ripe-atlas/pierky-ripe-atlas-monitor-fixtures/3082698.json",
]


def real_lines(root: Path, rel: str) -> list[bytes]:
    """Every real Atlas result of one file, one JSON text each (read independently of pathexp)."""
    path = root / rel
    data = lzma.decompress(path.read_bytes()) if path.suffix == ".xz" else path.read_bytes()
    if rel.endswith(".ndjson") or rel.endswith(".ndjson.xz"):
        return [ln for ln in data.split(b"\n") if ln.strip()]
    doc = orjson.loads(data)
    items = doc["results"] if isinstance(doc, dict) else doc
    return [orjson.dumps(x) for x in items]


def sagan_sequences(lines: list[bytes]) -> dict[tuple, list[tuple]]:
    """Per result: (hop, reply address, rtt, ttl) of every packet, as sagan sees them."""
    from ripe.atlas.sagan import TracerouteResult

    out = {}
    for line in lines:
        obj = orjson.loads(line)
        res = TracerouteResult(obj, on_error=TracerouteResult.ACTION_IGNORE)
        seq = []
        for hop in res.hops:
            for pkt in hop.packets:
                seq.append((hop.index, pkt.origin, pkt.rtt, pkt.ttl))
        out[(obj["msm_id"], obj["prb_id"], obj["timestamp"])] = seq
    return out


def pathexp_sequences(lines: list[bytes]) -> dict[tuple, list[tuple]]:
    """The same sequence from pathexp's hop table.

    Deliberate differences from sagan, aligned here and nowhere else:
    - sagan drops late packets ("late": n, no rtt); the hop table keeps them flagged
      ``late`` (a late reply is still evidence of the router), so they are skipped here;
    - sagan rounds rtt to 3 decimals; the hop table keeps the value as sent;
    - a hop carrying "error" has no packets in sagan; the hop table keeps one row with
      ``hop_error`` and a null attempt, skipped here.
    """
    parsed = parse_lines(lines)
    assert sum(parsed.drops.values()) == 0, parsed.drops
    h = parsed.hops
    cols = {c: h.column(c).to_pylist() for c in ("hop", "attempt", "reply_from", "rtt", "reply_ttl", "late")}
    t = parsed.traces
    keys = list(
        zip(
            t.column("msm_id").to_pylist(),
            t.column("prb_id").to_pylist(),
            t.column("timestamp").cast(pa.int64()).to_pylist(),
            strict=True,
        )
    )
    out: dict[tuple, list[tuple]] = {k: [] for k in keys}
    for i, tr in enumerate(parsed.hop_trace.tolist()):
        if cols["attempt"][i] is None or cols["late"][i]:
            continue
        rtt = cols["rtt"][i]
        out[keys[tr]].append(
            (cols["hop"][i], cols["reply_from"][i], None if rtt is None else round(rtt, 3), cols["reply_ttl"][i])
        )
    return out


@pytest.mark.slow
@pytest.mark.parametrize("rel", TRACEROUTE_FILES)
def test_every_real_result_matches_sagan(test_data, rel):
    lines = real_lines(test_data, rel)
    assert lines, rel
    for start in range(0, len(lines), 20_000):
        block = lines[start : start + 20_000]
        ours = pathexp_sequences(block)
        theirs = sagan_sequences(block)
        assert ours.keys() == theirs.keys()
        mismatched = [k for k in theirs if ours[k] != theirs[k]]
        assert not mismatched, (rel, mismatched[:3], ours[mismatched[0]][:5], theirs[mismatched[0]][:5])


def test_real_corpus_counts_and_schema(test_data):
    lines = real_lines(test_data, "ripe-atlas/traceroutes/sagan_test_traceroutes.ndjson")
    parsed = parse_lines(lines)
    assert parsed.hops.schema == HOP_SCHEMA
    assert parsed.traces.schema == TRACE_SCHEMA
    assert parsed.traces.num_rows == 19
    # every packet of every hop is a row, plus one row per hop without packets
    expected = 0
    for line in lines:
        for hop in orjson.loads(line)["result"]:
            expected += max(len(hop.get("result") or []), 1)
    assert parsed.hops.num_rows == expected


@pytest.mark.parametrize("rel", TRACEROUTE_FILES)
def test_the_stored_hop_table_holds_the_same_values(test_data, rel):
    """``encoded=True`` (what the store writes: the traceroute's strings dictionary-encoded)
    gives the same hop values, traceroutes (destination_reached included), row order and
    drops as the plain hop table, on real results and on the edge cases of the
    destination comparison (no destination, a timeout, a reply from elsewhere)."""
    lines = real_lines(test_data, rel)[:20_000]
    odd = [orjson.dumps({**BASE, **top, "result": result}) for top, result in [
        ({"dst_addr": None}, [{"hop": 1, "result": [{"from": "203.0.113.5", "rtt": 1.0}]}]),
        ({}, [{"hop": 1, "result": [{"x": "*"}, {"from": "203.0.113.5", "rtt": 2.0}]}]),
        ({}, [{"hop": 1, "result": [{"from": "192.0.2.1", "rtt": 1.0}]}]),
        ({"dst_name": None, "proto": None}, [{"hop": 2, "error": "network unreachable"}]),
    ]]
    for block in (lines, odd):
        plain, stored = parse_lines(block), parse_lines(block, encoded=True)
        assert stored.hops.schema == STORED_HOP_SCHEMA
        assert all(pa.types.is_dictionary(stored.hops.schema.field(c).type) for c in PER_TRACE_HOP_STRINGS)
        assert stored.hops.cast(HOP_SCHEMA).equals(plain.hops)
        assert stored.traces.equals(plain.traces)
        assert np.array_equal(stored.hop_trace, plain.hop_trace) and stored.drops == plain.drops
    assert plain.traces.column("destination_reached").to_pylist() == [False, True, False, False]


BASE = {
    "type": "traceroute", "msm_id": 1000, "prb_id": 7, "timestamp": 1_600_000_000,
    "endtime": 1_600_000_005, "af": 4, "proto": "ICMP", "paris_id": 3,
    "src_addr": "192.168.1.2", "from": "198.51.100.9", "dst_addr": "203.0.113.5",
    "dst_name": "example.net", "size": 48, "fw": 5020,
}


def one(result, **top):
    return parse_results([{**BASE, **top, "result": result}])


def rows(parsed, *cols):
    return list(zip(*(parsed.hops.column(c).to_pylist() for c in cols), strict=True))


def test_timeouts_err_late_edst_itos_dup():
    p = one(
        [
            {"hop": 1, "result": [{"x": "*"}, {"from": "192.0.2.1", "rtt": 1.25, "ttl": 254, "size": 28, "itos": 32}]},
            {"hop": 2, "result": [{"from": "192.0.2.2", "rtt": 2.0, "ttl": 253, "size": 28, "err": "N"},
                                  {"from": "192.0.2.2", "late": 2, "ttl": 253, "size": 28},
                                  {"from": "192.0.2.2", "rtt": 2.1, "ttl": 253, "size": 28, "err": 3, "dup": True}]},
            {"hop": 3, "result": [{"from": "203.0.113.5", "rtt": 3.0, "ttl": 60, "size": 28, "edst": "203.0.113.5"}]},
        ]
    )
    assert rows(p, "hop", "attempt", "reply_from", "rtt") == [
        (1, 0, None, None), (1, 1, "192.0.2.1", 1.25),
        (2, 0, "192.0.2.2", 2.0), (2, 1, "192.0.2.2", None), (2, 2, "192.0.2.2", 2.1),
        (3, 0, "203.0.113.5", 3.0),
    ]
    assert rows(p, "err") == [(None,), (None,), ("N",), (None,), ("3",), (None,)]
    assert rows(p, "late", "late_count") == [(False, None), (False, None), (False, None), (True, 2), (False, None), (False, None)]
    assert p.hops.column("itos").to_pylist()[1] == 32
    assert p.hops.column("dup").to_pylist()[4] is True
    assert p.hops.column("edst").to_pylist()[5] == "203.0.113.5"
    assert p.traces.column("destination_reached").to_pylist() == [True]
    assert p.traces.column("last_hop").to_pylist() == [3]


def test_hop_error_final_probe_and_mpls():
    mpls = {"icmpext": {"version": 2, "rfc4884": 0, "obj": [{"class": 1, "type": 1, "mpls": [
        {"label": 24001, "exp": 0, "s": 0, "ttl": 1}, {"label": 16, "exp": 0, "s": 1, "ttl": 1}]}]}}
    p = one(
        [
            {"hop": 1, "error": "connect failed: Network is unreachable"},
            {"hop": 2, "result": [{"from": "192.0.2.9", "rtt": 5.0, "ttl": 250, "size": 140, **mpls}]},
            {"hop": 255, "result": [{"x": "*"}]},
        ]
    )
    assert rows(p, "hop", "attempt", "hop_error") == [
        (1, None, "connect failed: Network is unreachable"), (2, 0, None), (255, 0, None)
    ]
    assert p.hops.column("mpls").to_pylist() == [None, [24001, 16], None]
    assert p.traces.column("last_hop").to_pylist() == [2]  # the TTL-255 final probe is not a hop
    assert p.traces.column("destination_reached").to_pylist() == [False]


def test_top_level_error_and_ipv6_and_missing_optional_fields():
    p = parse_results([
        {**BASE, "error": "sendto failed: Operation not permitted", "result": []},
        {"type": "traceroute", "msm_id": 5, "prb_id": 6, "timestamp": 7, "af": 6,
         "dst_addr": "2001:db8::1", "result": [{"hop": 1, "result": [{"from": "2001:db8::1", "rtt": 0.5, "ttl": 64, "size": 64}]}]},
    ])
    assert p.traces.column("result_error").to_pylist() == ["sendto failed: Operation not permitted", None]
    assert p.traces.column("paris_id").to_pylist() == [3, None]
    assert p.traces.column("destination_reached").to_pylist() == [False, True]
    assert p.hops.column("reply_from").to_pylist() == ["2001:db8::1"]
    assert sum(p.drops.values()) == 0


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (b'{"type": "traceroute", "msm_id": 1', "invalid_json"),
        (b"\xff\xfe garbage \x00", "invalid_json"),
        (b"[1, 2, 3]", "not_an_object"),
        (orjson.dumps({**BASE, "type": "ping", "result": [{"rtt": 1.0}]}), "not_traceroute"),
        (orjson.dumps({**BASE, "fw": 1, "result": "1 192.0.2.1 1.0ms\n2 * * *"}), "firmware1_text"),
        (orjson.dumps({**{k: v for k, v in BASE.items() if k != "msm_id"}, "result": []}), "missing_key"),
        (orjson.dumps({**BASE, "prb_id": "7", "result": []}), "missing_key"),
        (orjson.dumps({**BASE, "timestamp": -5, "result": []}), "key_out_of_range"),
        (orjson.dumps({**BASE, "result": {"hop": 1}}), "bad_result"),
        (orjson.dumps({**BASE, "result": [{"hop": "1"}]}), "bad_result"),
        (orjson.dumps({**BASE, "result": [{"hop": 1, "result": [{"from": 17, "rtt": 1.0}]}]}), "bad_field_type"),
        (orjson.dumps({**BASE, "af": "four", "result": []}), "bad_field_type"),
    ],
)
def test_malformed_records_are_counted_and_the_rest_survives(record, reason):
    good = orjson.dumps({**BASE, "result": [{"hop": 1, "result": [{"from": "192.0.2.1", "rtt": 1.0, "ttl": 64, "size": 28}]}]})
    p = parse_lines([good, record, good.replace(b'"prb_id":7', b'"prb_id":8')])
    assert dict(p.drops) == {reason: 1}
    assert reason in DROP_REASONS
    assert p.traces.column("prb_id").to_pylist() == [7, 8]
    assert p.raw[0] == good


# --- fuzzing: thousands of generated records, valid and damaged -----------------------

# no leading zeros: "192.0.2.05" is not an address (ambiguous octal) and is set aside as bad_address
_addr = st.from_regex(r"\A(192\.0\.2|198\.51\.100|203\.0\.113)\.(0|[1-9][0-9]?)\Z")
_reply = st.one_of(
    st.just({"x": "*"}),
    st.fixed_dictionaries(
        {"from": _addr, "rtt": st.floats(0, 1000, allow_nan=False), "ttl": st.integers(1, 255), "size": st.integers(0, 1500)},
        optional={"err": st.sampled_from(["N", "H", "A", "P", "p", 3, 9]), "late": st.integers(1, 5),
                  "itos": st.integers(0, 255), "dup": st.booleans()},
    ),
)
_hop = st.one_of(
    st.fixed_dictionaries({"hop": st.integers(1, 255), "result": st.lists(_reply, max_size=4)}),
    st.fixed_dictionaries({"hop": st.integers(1, 255), "error": st.text(max_size=20)}),
)
_valid = st.fixed_dictionaries(
    {"type": st.just("traceroute"), "msm_id": st.integers(1, 2**31), "prb_id": st.integers(1, 10**6),
     "timestamp": st.integers(0, 2**32 - 1), "af": st.just(4), "dst_addr": _addr,
     "result": st.lists(_hop, max_size=6)},
    optional={"paris_id": st.integers(0, 64), "proto": st.sampled_from(["ICMP", "UDP", "TCP"]), "fw": st.integers(4000, 6000)},
)


def _damage(data: st.DataObject, line: bytes) -> bytes:
    how = data.draw(st.sampled_from(["truncate", "garbage", "retype", "wrongtype", "none"]))
    if how == "truncate":
        return line[: data.draw(st.integers(1, max(1, len(line) - 1)))]
    if how == "garbage":
        return data.draw(st.binary(min_size=1, max_size=40)).replace(b"\n", b" ")
    if how == "retype":
        return line.replace(b'"traceroute"', b'"ping"')
    if how == "wrongtype":
        return line.replace(b'"msm_id":', b'"msm_id":"', 1).replace(b',"prb_id"', b'","prb_id"', 1)
    return line


def _expected_rows(rec: dict) -> int:
    return sum(max(len(h.get("result", [])), 1) for h in rec["result"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_fuzz_never_crashes_and_nothing_vanishes(data):
    records = data.draw(st.lists(_valid, min_size=1, max_size=60))
    lines, valid_rows, valid = [], 0, 0
    for rec in records:
        line = orjson.dumps(rec)
        damaged = _damage(data, line)
        lines.append(damaged)
        if damaged == line:
            valid += 1
            valid_rows += _expected_rows(rec)
        else:
            try:
                obj = orjson.loads(damaged)
            except orjson.JSONDecodeError:
                continue
            # a truncation can still be valid JSON (rare); a valid one must then be parsed
            if isinstance(obj, dict) and obj == rec:
                valid += 1
                valid_rows += _expected_rows(rec)
    parsed = parse_lines(lines)
    assert parsed.traces.num_rows + sum(parsed.drops.values()) == len([ln for ln in lines if ln.strip()])
    assert parsed.traces.num_rows == valid
    assert parsed.hops.num_rows == valid_rows
    assert set(parsed.drops) <= set(DROP_REASONS)


def test_raw_lines_are_kept_exactly_as_received_even_when_repaired():
    """A numeric err makes the block take the repair path; the stored raw line is untouched."""
    line = orjson.dumps({**BASE, "result": [{"hop": 1, "result": [{"from": "192.0.2.1", "rtt": 1.0, "ttl": 64, "size": 28, "err": 10}]}]})
    p = parse_lines([line])
    assert p.raw == [line]
    assert p.hops.column("err").to_pylist() == ["10"]
