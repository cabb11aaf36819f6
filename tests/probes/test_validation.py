"""Total input validation (issue 14): one bad value sets its record aside, never the file.

A standing adversarial suite: hypothesis puts a bad value in every field of the Atlas
traceroute result (top level, hop, reply, MPLS) of real MENOG lines; the bad record is set
aside with the expected reason, every other record of the block comes out exactly as when
the block is parsed without it, and no exception escapes. Regression tests are named after
the findings of the adversarial review.
"""

from __future__ import annotations

import io
import lzma
from collections import Counter
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probes import store
from probes.errors import ConfigError, InputFormatError
from probes.inputs import HashingReader, iter_records
from probes.parse import DROP_REASONS, MAX_LINE_BYTES, SetAside, parse_lines
from probes.workspace import Campaign

MENOG = "ripe-atlas/traceroutes/menog_traceroutes_full.ndjson.xz"
N_LINES = 400


@pytest.fixture(scope="module")
def menog(test_data: Path) -> list[bytes]:
    """The first real MENOG results (read independently of pathexp)."""
    with lzma.open(test_data / MENOG) as fh:
        out = []
        for line in fh:
            if line.strip():
                out.append(line.rstrip(b"\n"))
            if len(out) == N_LINES:
                return out
    return out


def _rows(parsed) -> tuple[list, list, list]:
    return parsed.traces.to_pylist(), parsed.hops.to_pylist(), parsed.raw


def _assert_set_aside(block: list[bytes], index: int, bad: bytes, reason: str) -> None:
    """Insert ``bad`` at ``index``: it alone is set aside for ``reason``; the rest is unchanged."""
    without = parse_lines(block)
    with_bad = parse_lines(block[:index] + [bad] + block[index:])
    assert dict(with_bad.drops) == {**dict(without.drops), reason: without.drops.get(reason, 0) + 1}
    assert _rows(with_bad) == _rows(without)
    alone = parse_lines([bad])  # the same verdict alone (and so on the line-by-line path)
    assert dict(alone.drops) == {reason: 1}
    slow = parse_lines([b"not json", bad])  # a block that takes the line-by-line path
    assert slow.drops == Counter({"invalid_json": 1}) + Counter({reason: 1})
    assert reason in DROP_REASONS


# --- field mutations: (where, field, bad value, expected reason) ---------------------------

_OUT = "value_out_of_range"
_BIG = [2**31, 2**32, 2**62, -(2**40)]
TOP_INT = {  # field -> (allowed range, reason for a value outside it)
    "msm_id": ((0, 2**32 - 1), "key_out_of_range"),
    "prb_id": ((0, 2**32 - 1), "key_out_of_range"),
    "timestamp": ((0, 2**32 - 1), "key_out_of_range"),
    "endtime": ((0, 2**32 - 1), _OUT),
    "af": ((4, 6), _OUT),
    "paris_id": ((0, 2**15 - 1), _OUT),
    "size": ((0, 65535), _OUT),
    "fw": ((0, 2**31 - 1), _OUT),
    "lts": ((-1, 2**31 - 1), _OUT),
}
TOP_STR = ["proto", "dst_name", "origin"]
TOP_ADDR = ["from", "src_addr", "dst_addr"]
REPLY_INT = {"size": (0, 65535), "ttl": (0, 255), "late": (0, 2**15 - 1), "itos": (0, 255)}
REPLY_STR = ["x", "edst"]
_KEY_TYPE = "missing_key"


def _outside(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(hi + 1, hi + 2**40), st.integers(lo - 2**40, lo - 1),
                     st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, -(2**63)]))


_not_address = st.one_of(
    st.sampled_from(["not-an-addr", "256.1.1.1", "1.2.3", "01.2.3.4", "fe80::1%eth0", " 1.2.3.4", "::g", "1.2.3.4/24"]),
    st.text(min_size=1, max_size=12).filter(lambda t: not any(c in t for c in ".:")),
)
_wrong_for_int = st.sampled_from(["7", 1.5, True, [1], {"a": 1}])
_wrong_for_str = st.sampled_from([7, 1.5, True, [1], {"a": 1}])


def _json(obj: dict) -> bytes:
    """Dump, spelling integers beyond 64 bits as JSON text (orjson refuses them)."""
    big: dict[str, int] = {}

    def walk(x):
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, int) and not isinstance(x, bool) and not -(2**63) <= x < 2**64:
            tag = f"__big{len(big)}__"
            big[tag] = x
            return tag
        return x

    out = orjson.dumps(walk(obj))
    for tag, x in big.items():
        out = out.replace(f'"{tag}"'.encode(), str(x).encode())
    return out


@st.composite
def mutation(draw) -> tuple[str, object, str]:
    """(path, bad value, expected reason); path is 'top.f', 'hop.f', 'reply.f' or 'mpls.label'."""
    kind = draw(st.sampled_from(["top_int", "top_type", "top_str", "top_addr", "hop", "reply_int", "reply_type",
                                 "rtt", "reply_from", "reply_str", "mpls", "structure"]))
    if kind == "top_int":
        f = draw(st.sampled_from(sorted(TOP_INT)))
        (lo, hi), reason = TOP_INT[f]
        if f == "af":
            return f"top.{f}", draw(st.one_of(_outside(lo, hi), st.just(5))), reason
        return f"top.{f}", draw(_outside(lo, hi)), reason
    if kind == "top_type":
        f = draw(st.sampled_from(sorted(TOP_INT)))
        return f"top.{f}", draw(_wrong_for_int), _KEY_TYPE if f in ("msm_id", "prb_id", "timestamp") else "bad_field_type"
    if kind == "top_str":
        return f"top.{draw(st.sampled_from(TOP_STR + TOP_ADDR))}", draw(_wrong_for_str), "bad_field_type"
    if kind == "top_addr":
        return f"top.{draw(st.sampled_from(TOP_ADDR))}", draw(_not_address), "bad_address"
    if kind == "hop":
        return "hop.hop", draw(st.one_of(_outside(1, 255), st.just(0))), _OUT
    if kind == "reply_int":
        f = draw(st.sampled_from(sorted(REPLY_INT)))
        return f"reply.{f}", draw(_outside(*REPLY_INT[f])), _OUT
    if kind == "reply_type":
        f = draw(st.sampled_from(sorted(REPLY_INT)))
        return f"reply.{f}", draw(_wrong_for_int), "bad_field_type"
    if kind == "rtt":
        bad = draw(st.one_of(st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
                             st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400"])))
        return "reply.rtt", bad, _OUT
    if kind == "reply_from":
        return "reply.from", draw(_not_address), "bad_address"
    if kind == "reply_str":
        return f"reply.{draw(st.sampled_from(REPLY_STR + ['from']))}", draw(_wrong_for_str), "bad_field_type"
    if kind == "mpls":
        return "mpls.label", draw(_outside(0, 2**20 - 1).filter(lambda v: -(2**63) <= v < 2**63)), _OUT
    return draw(st.sampled_from([
        ("top.type", None, None),  # a null type reads as absent: kept
        ("top.result", None, "bad_result"),
        ("top.result", "1 192.0.2.1 1.0ms", "firmware1_text"),
        ("top.result", {"hop": 1}, "bad_result"),
        ("top.type", "ping", "not_traceroute"),
        ("hop.hop", None, "bad_result"),
        ("hop.hop", "1", "bad_result"),
        ("hop.result", 5, "bad_result"),
        ("hop.*", None, "bad_result"),
        ("reply.*", None, "bad_result"),
        ("reply.*", 7, "bad_result"),
        ("hops.count", 3000, "too_many_hops"),
        ("replies.count", 2000, "too_many_hops"),
    ]))


_SPECIAL = {"NaN": b"NaN", "Infinity": b"Infinity", "-Infinity": b"-Infinity", "1e400": b"1e400"}


def _apply(rec: dict, path: str, value: object) -> bytes:
    """The record with one field set (``"NaN"`` etc. are written as those JSON-ish literals)."""
    where, f = path.split(".")
    hops = rec["result"]
    hop = next((h for h in hops if h.get("result")), hops[0])
    reply = next((r for r in hop.get("result", []) if "from" in r), None)
    marker = "__special__"
    literal = _SPECIAL.get(value) if isinstance(value, str) and f == "rtt" else None
    v = marker if literal else value
    if where == "top":
        rec[f] = v
    elif where == "hops":
        rec["result"] = [{"hop": 1 + i % 255, "result": [{"x": "*"}]} for i in range(int(value))]  # type: ignore[call-overload]
    elif where == "replies":
        hop["result"] = [{"x": "*"}] * int(value)  # type: ignore[call-overload]
    elif where == "hop":
        if f == "*":
            hops[0] = v
        else:
            hop[f] = v
    elif where == "reply":
        if reply is None:
            hop["result"] = [reply := {"from": "192.0.2.1", "rtt": 1.0, "ttl": 64, "size": 28}]
        if f == "*":
            hop["result"][0] = v
        else:
            reply[f] = v
    elif where == "mpls":
        (reply if reply is not None else hop["result"][0])["icmpext"] = {
            "version": 2, "rfc4884": 0, "obj": [{"class": 1, "type": 1, "mpls": [{"label": v, "exp": 0, "s": 1, "ttl": 1}]}]}
    out = _json(rec)
    return out.replace(f'"{marker}"'.encode(), literal) if literal else out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_bad_value_in_any_field_sets_only_its_record_aside(menog, data):
    start = data.draw(st.integers(0, N_LINES - 40))
    block = menog[start : start + 40]
    victim = data.draw(st.integers(0, len(block) - 1))
    rec = orjson.loads(block[victim])
    path, value, reason = data.draw(mutation())
    bad = _apply(rec, path, value)
    rest = block[:victim] + block[victim + 1 :]
    if reason is None:  # stays valid: kept as the record it is
        assert sum(parse_lines([bad]).drops.values()) == 0
        return
    _assert_set_aside(rest, data.draw(st.integers(0, len(rest))), bad, reason)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_same_line_same_verdict_in_any_block(menog, data):
    """Damaged bytes anywhere in a real line: the verdict is the line's own, fast or slow."""
    line = menog[data.draw(st.integers(0, N_LINES - 1))]
    pos = data.draw(st.integers(0, len(line) - 1))
    junk = data.draw(st.binary(min_size=1, max_size=6)).replace(b"\n", b" ")
    bad = line[:pos] + junk + line[pos + data.draw(st.integers(0, 3)) :]
    alone = parse_lines([bad])
    in_block = parse_lines(menog[:30] + [bad])
    in_slow_block = parse_lines(menog[:30] + [b"{", bad])
    verdict = dict(alone.drops)
    base = parse_lines(menog[:30]).drops
    assert dict(in_block.drops - base) == verdict
    assert dict(in_slow_block.drops - base) == {**verdict, "invalid_json": verdict.get("invalid_json", 0) + 1}
    if alone.raw:  # kept: exactly as parsed alone, and readable back by orjson
        orjson.loads(alone.raw[0])
        assert in_block.traces.to_pylist()[-1] == alone.traces.to_pylist()[0]


# --- regression tests named after the findings ---------------------------------------------


def _with(menog: list[bytes], i: int, bad: bytes) -> list[bytes]:
    return menog[:i] + [bad] + menog[i:]


def test_hop_65536_sets_one_record_aside_and_keeps_the_rest(menog):
    rec = orjson.loads(menog[5])
    rec["result"][0]["hop"] = 65536
    _assert_set_aside(menog, 100, orjson.dumps(rec), "value_out_of_range")


@pytest.mark.parametrize(("field", "value"), [("af", 128), ("size", 2**31), ("fw", 2**31), ("endtime", 2**63 - 1)])
def test_out_of_range_top_level_integer_sets_one_record_aside(menog, field, value):
    rec = orjson.loads(menog[7])
    rec[field] = value
    _assert_set_aside(menog, 3, orjson.dumps(rec), "value_out_of_range")


@pytest.mark.parametrize("text", [b"9223372036854775808", b"18446744073709551615", b"18446744073709551616", b"1" * 40])
def test_integer_beyond_64_bits_sets_one_record_aside(menog, text):
    bad = menog[9].replace(b'"size":48', b'"size":' + text, 1)
    assert bad != menog[9]
    _assert_set_aside(menog, 50, bad, "value_out_of_range")


def test_three_million_hop_result_is_set_aside_not_cast_to_int16(menog):
    rec = orjson.loads(menog[0])
    rec["result"] = [{"hop": 1, "result": [{"x": "*"}]}] * 3_000_000
    bad = orjson.dumps(rec)
    assert len(bad) > MAX_LINE_BYTES  # on its own: too long a line, skipped
    assert dict(parse_lines(menog[:10] + [bad]).drops) == {"line_too_long": 1}
    rec["result"] = rec["result"][:40_000]  # under the line limit: too many hops
    _assert_set_aside(menog[:50], 10, orjson.dumps(rec), "too_many_hops")


def test_reply_from_with_non_utf8_bytes_is_never_stored(menog, tmp_path):
    bad = menog[3].replace(b'"from":"', b'"from":"\xff\xfe', 1)
    _assert_set_aside(menog, 20, bad, "invalid_json")
    campaign = Campaign("utf8", tmp_path)
    path = tmp_path / "in.ndjson"
    path.write_bytes(b"\n".join(_with(menog[:50], 20, bad)) + b"\n")
    report = store.ingest_files(campaign, [path])
    assert report.drops == {"invalid_json": 1}
    assert sum(1 for _ in store.iter_raw(campaign)) == 50  # every stored line reads back
    again = store.ingest_files(campaign, [path])  # and re-ingesting works
    assert again.duplicates == 50


@pytest.mark.parametrize("address", ["not-an-address", "1.2.3.4.5", "2001:db8::zz", "192.0.2.1\x00"])
@pytest.mark.parametrize("field", ["from", "src_addr", "dst_addr", "reply"])
def test_addresses_must_be_addresses(menog, field, address):
    rec = orjson.loads(menog[11])
    if field == "reply":
        next(r for h in rec["result"] for r in h.get("result", []) if "from" in r)["from"] = address
    else:
        rec[field] = address
    _assert_set_aside(menog[:60], 30, orjson.dumps(rec), "bad_address")


@pytest.mark.parametrize("rtt", [b"NaN", b"Infinity", b"-Infinity", b"-0.5", b"1e400"])
def test_nan_inf_and_negative_rtt_are_set_aside(menog, rtt):
    line = menog[13]
    i = line.index(b'"rtt":') + 6
    j = min(k for k in (line.find(b",", i), line.find(b"}", i)) if k > 0)
    _assert_set_aside(menog[:60], 30, line[:i] + rtt + line[j:], "value_out_of_range")


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda r: r.__setitem__("type", None), None),
        (lambda r: r["result"][0].__setitem__("hop", None), "bad_result"),
        (lambda r: r["result"].__setitem__(0, None), "bad_result"),
        (lambda r: r["result"][0].__setitem__("result", [None]), "bad_result"),
        (lambda r: r.__setitem__("msm_id", None), "missing_key"),
    ],
)
def test_null_type_hop_or_reply_gets_the_same_verdict_in_any_block(menog, mutate, reason):
    rec = orjson.loads(menog[15])
    mutate(rec)
    line = orjson.dumps(rec)
    verdicts = [dict(parse_lines(b).drops) for b in ([line], menog[:40] + [line], [b"junk", line], menog[:40] + [b"{", line])]
    junk = {"invalid_json": 1}
    want = {reason: 1} if reason else {}
    assert verdicts == [want, want, {**want, **junk}, {**want, **junk}]


def test_atlas_bundle_results_are_ingested_one_by_one(menog):
    probes_in = [{"id": 6001, "country_code": "AE"}, {"id": 6002}]
    bundle = orjson.dumps({"results": [orjson.loads(x) for x in menog[:87]], "probes": probes_in, "count": 87})
    for text in (bundle, bundle + b"\n" + menog[200], orjson.dumps(orjson.loads(bundle), option=orjson.OPT_INDENT_2)):
        sink: list = []
        records = list(iter_records(HashingReader(io.BytesIO(text)), "bundle", probes=sink))
        parsed = parse_lines(records)
        assert sum(parsed.drops.values()) == 0
        assert parsed.traces.num_rows == len(records) >= 87
        assert sink == probes_in


def test_memory_error_is_never_taken_for_bad_input(monkeypatch):
    import probes.parse as parse

    def boom(_line):
        raise MemoryError

    monkeypatch.setattr(parse.orjson, "loads", boom)
    with pytest.raises(MemoryError):
        parse.parse_lines([b"{not json"])


class _Zeros:
    """A stream of NUL bytes (like /dev/zero), then one newline and a real line, then EOF."""

    def __init__(self, n: int, tail: bytes) -> None:
        self.left, self.tail, self.reads = n, tail, 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if self.left > 0:
            k = min(self.left, size if size > 0 else 1 << 20)
            self.left -= k
            return b"\x00" * k
        out, self.tail = self.tail, b""
        return out


def test_line_longer_than_the_limit_is_set_aside_unread(menog):
    zeros = _Zeros(3 * MAX_LINE_BYTES, b"\n" + menog[0] + b"\n")
    records = list(iter_records(HashingReader(zeros), "zeros"))  # type: ignore[arg-type]
    assert len(records) == 2 and isinstance(records[0], SetAside)
    parsed = parse_lines(records)
    assert dict(parsed.drops) == {"line_too_long": 1}
    assert parsed.raw == [menog[0]]


def test_json_array_beyond_the_size_limit_is_refused_with_one_line(menog, monkeypatch):
    import probes.inputs as inputs

    array = b"[\n" + b",\n".join(menog[:100]) + b"\n]"
    assert len(list(iter_records(HashingReader(io.BytesIO(array)), "a.json"))) == 100
    monkeypatch.setattr(inputs, "MAX_DOCUMENT_BYTES", len(array) // 2)
    with pytest.raises(InputFormatError, match=r"a\.json: a JSON array .* NDJSON") as exc:
        list(iter_records(HashingReader(io.BytesIO(array)), "a.json"))
    assert "\n" not in str(exc.value)


def test_targets_file_dev_zero_is_refused_with_a_size_error():
    from probes.targets import read_targets

    with pytest.raises(ConfigError, match="larger than 16 MiB"):
        read_targets("/dev/zero")


@pytest.mark.parametrize(("args", "message"), [
    (["ingest", "--segment-results", "0"], "argument --segment-results: must be a whole number >= 1, got '0'"),
    (["ingest", "--segment-results", "-5"], "argument --segment-results: must be a whole number >= 1, got '-5'"),
    (["ingest", "--engine", "dask", "--workers", "0"], "argument --workers: must be a whole number >= 1"),
    (["analyze", "--bootstrap", "0"], "argument --bootstrap: must be a whole number >= 1"),
])
def test_cli_counts_below_one_are_refused_before_any_work(menog, tmp_path, capsys, args, message):
    from analysis.cli import main

    src = tmp_path / "m.ndjson"
    src.write_bytes(b"\n".join(menog[:20]) + b"\n")
    extra = [str(src)] if args[0] == "ingest" else []
    with pytest.raises(SystemExit) as exc:
        main([*args, "--campaign", "c", "--workspace", str(tmp_path / "ws"), *extra])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err.strip().splitlines()[-1], err
    assert "Traceback" not in err and not (tmp_path / "ws").exists()  # nothing written


def test_a_device_is_not_taken_for_a_missing_reference_file(tmp_path):
    from analysis.datasets import import_files
    from analysis.errors import DatasetFormatError

    with pytest.raises(DatasetFormatError, match="/dev/null is not a regular file"):
        import_files("pfx2as", ["/dev/null"], cache_dir=tmp_path)


def test_ingest_of_a_file_with_a_bad_value_stores_the_rest_and_writes_ingest_json(menog, tmp_path):
    rec = orjson.loads(menog[1])
    rec["result"][0]["hop"] = 65536
    path = tmp_path / "in.ndjson"
    path.write_bytes(b"\n".join(_with(menog, 200, orjson.dumps(rec))) + b"\n")
    campaign = Campaign("bad", tmp_path)
    report = store.ingest_files(campaign, [path])
    assert report.added == N_LINES and report.drops == {"value_out_of_range": 1}
    state = orjson.loads(campaign.ingest_report.read_bytes())
    assert state["drops"] == {"value_out_of_range": 1}
    assert state["results_stored"] == N_LINES


# --- probe metadata, registry, local traceroute ---------------------------------------------


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ([1], "not_an_object"),
        ({"id": "7"}, "bad_id"),
        ({"id": 2**40}, "bad_id"),
        ({"id": True}, "bad_id"),
        ({"id": 7, "asn_v4": 2**32}, "bad_asn"),
        ({"id": 7, "asn_v6": "AS1"}, "bad_asn"),
        ({"id": 7, "country_code": "Netherlands"}, "bad_country_code"),
        ({"id": 7, "country_code": 31}, "bad_country_code"),
        ({"id": 7, "geometry": {"type": "Point", "coordinates": [200.0, 10.0]}}, "bad_coordinates"),
        ({"id": 7, "geometry": {"type": "Point", "coordinates": [10.0, -91]}}, "bad_coordinates"),
        ({"id": 7, "geometry": {"coordinates": "here"}}, "bad_coordinates"),
        ({"id": 7, "geometry": [1, 2]}, "bad_coordinates"),
        ({"id": 7, "address_v4": "2001:db8::1"}, "bad_address"),
        ({"id": 7, "address_v6": "nope"}, "bad_address"),
        ({"id": 7, "is_anchor": "yes"}, "bad_field_type"),
    ],
)
def test_bad_probe_objects_are_set_aside_by_reason(tmp_path, obj, reason):
    from probes.metadata import PROBE_DROP_REASONS, read_probe_objects

    good = {"id": 6001, "asn_v4": 3320, "country_code": "DE", "geometry": {"type": "Point", "coordinates": [13.4, 52.5]},
            "address_v4": "192.0.2.7", "is_anchor": False}
    path = tmp_path / "probes.json"
    path.write_bytes(orjson.dumps({"count": 2, "results": [good, obj]}))
    drops: Counter = Counter()
    assert read_probe_objects(path, drops=drops) == [good]
    assert dict(drops) == {reason: 1} and reason in PROBE_DROP_REASONS
    campaign = Campaign("meta", tmp_path)
    assert store.write_probe_meta(campaign, read_probe_objects(path)) == 1  # never crashes


def test_real_probe_objects_all_pass(test_data):
    from probes.metadata import check_probe_objects, probe_objects

    files = sorted((test_data / "ripe-atlas").rglob("*probe*.json"))
    total = 0
    for f in files:
        try:
            objs = probe_objects(orjson.loads(f.read_bytes()))
        except Exception:  # not a probe file
            continue
        if not objs or not all(isinstance(o, dict) and "id" in o and ("geometry" in o or "asn_v4" in o) for o in objs):
            continue
        drops: Counter = Counter()
        assert len(check_probe_objects(objs, drops)) == len(objs), (f, drops)
        total += len(objs)
    if not total:
        pytest.skip("no probe metadata file in the real data set")


_REG = """schema = 1
[[family]]
id = "ct"
name = "China Telecom"
{body}
"""


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[[family.asn]]\nasn = true\nsource = 'x'", r"family 'ct' asn entry #1: 'asn' must be an integer in 1\.\.4294967295, not True"),
        ("[[family.asn]]\nasn = 4294967296\nsource = 'x'", r"family 'ct' asn entry #1: 'asn' must be an integer"),
        ("[[family.asn]]\nasn = 4134\nsource = 5", r"family 'ct' asn entry #1.*'source'"),
        ("asn = [4134]", r"family 'ct' asn entry #1: not a table"),
        ("asn = 4134", r"family 'ct': 'asn' must be an array of tables"),
        ("[[family.prefix]]\nprefix = 'not-a-prefix'\nasn = 4809\nrir = 'apnic'\ncountry = 'CN'\nsource = 'x'",
         r"family 'ct' prefix entry #1: 'prefix' 'not-a-prefix' is not an IP prefix"),
        ("[[family.prefix]]\nprefix = '59.43.0.0/16'\nasn = 2147483648000\nrir = 'apnic'\ncountry = 'CN'\nsource = 'x'",
         r"family 'ct' prefix entry #1: 'asn' must be an integer"),
        ("[[family.prefix]]\nprefix = '59.43.0.0/16'\nasn = 4809\nrir = 'apnic'\ncountry = 'China'\nsource = 'x'",
         r"family 'ct' prefix entry #1: 'country' must be a two-letter code"),
    ],
)
def test_registry_errors_name_file_family_and_field(tmp_path, body, message):
    from analysis.errors import RegistryError
    from analysis.registry import load_registry

    path = tmp_path / "reg.toml"
    path.write_text(_REG.format(body=body))
    with pytest.raises(RegistryError, match=message) as exc:
        load_registry(path)
    assert str(exc.value).startswith(str(path)) and "\n" not in str(exc.value)


@pytest.mark.parametrize("addr", ["192.0.0.8", "2002:c0a8::1", "2002:0a00:0001::1", "2002:7f00:1::1", "::ffff:192.168.1.1"])
def test_private_space_behind_special_addresses_is_refused(addr):
    from probes.errors import TargetRefused
    from probes.local.traceroute import resolve_targets

    with pytest.raises(TargetRefused, match="pass --allow-private"):
        resolve_targets([addr])
    assert resolve_targets(["2002:0808:0808::1"])[0].addr == "2002:808:808::1"  # public 6to4 passes


@pytest.mark.parametrize("prb_id", [99_999_999_999, 0, -3, 2**32])
def test_probe_id_out_of_range_is_refused_before_any_packet(prb_id):
    from probes.local.traceroute import LocalProbe, TraceOptions, load_local_probe, tracer

    with pytest.raises(ConfigError, match="local probe id"):
        load_local_probe(None, overrides={"prb_id": prb_id})
    with pytest.raises(ConfigError, match="local probe id"):  # before resolving or opening sockets
        tracer(["8.8.8.8"], options=TraceOptions(), probe=LocalProbe(prb_id=prb_id))


def test_drop_reasons_are_documented():
    for reason in ("value_out_of_range", "bad_address", "too_many_hops", "line_too_long"):
        assert DROP_REASONS[reason]
    assert pa.int16().bit_width == 16  # the hop table columns the ranges protect


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000).map(lambda b: bytes(b"NaIfx\""[c % 6] for c in b)),
       st.sampled_from([b"NaN", b"Inf"]), st.integers(0, 3000))
def test_the_nan_inf_search_agrees_with_in(text, word, at):
    """The block-level NaN/Inf search (first-byte scan, ``in`` past a budget) says what
    ``in`` says, on text dense or sparse in the words' first bytes, the word anywhere."""
    from probes.parse import _has_any

    for data in (text, text[:at] + word + text[at:], b"x" * 5000 + text):
        assert _has_any(data, (b"NaN", b"Inf")) == (b"NaN" in data or b"Inf" in data)
