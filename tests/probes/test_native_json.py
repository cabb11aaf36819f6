"""The native JSON decoder (probes/_atlasjson.c) against Arrow's JSON reader.

The decoder may give up on any block (Arrow's reader then decodes it); where it does not,
its table must be the one Arrow's reader builds from the same text, buffer for buffer, and
the parse (drops, kept lines, hop and traceroute tables) must be the one ``native=False``
gives. Checked on every real Atlas file in the data set and on real lines rewritten in the
ways JSON allows (whitespace, escapes, number spellings) and damaged in the ways it does not.
"""

from __future__ import annotations

import math
import random

import numpy as np
import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probes import parse
from probes.store import BLOCK_LINES
from tests.probes.test_parse import TRACEROUTE_FILES, real_lines


def test_the_native_decoder_is_built():
    """pip builds it with the package: without it every block would take the slow reader."""
    assert parse._atlasjson is not None, "probes/_atlasjson.c was not compiled (pip install -e . needs gcc)"


def layout(arr: pa.Array | pa.ChunkedArray, path: str = "") -> dict[str, list]:
    """Every fact of an array's buffers downstream code can see: each level's validity,
    list offsets, and leaf values, including children of null structs and lists (which
    ``Array.equals`` skips but ``StructArray.field`` hands out)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    out = {f"{path}/valid": arr.is_valid().to_pylist()}
    if pa.types.is_struct(arr.type):
        for i, f in enumerate(arr.type):
            out.update(layout(arr.field(i), f"{path}.{f.name}"))
    elif pa.types.is_list(arr.type):
        offsets = np.asarray(arr.offsets)
        out[f"{path}/offsets"] = (offsets - offsets[0]).tolist()
        out.update(layout(arr.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0])), f"{path}[]"))
    else:
        out[path] = [None if v is None else (repr(v) if isinstance(v, float) else v) for v in arr.to_pylist()]
    return out


def assert_same_table(native: pa.Table, arrow: pa.Table) -> None:
    assert native.schema == arrow.schema
    for name in parse.RAW_SCHEMA.names:
        assert layout(native.column(name), name) == layout(arrow.column(name), name), name


def assert_same_parse(lines: list[bytes]) -> parse.Parsed:
    fast = parse.parse_lines(lines)
    slow = parse.parse_lines(lines, native=False)
    assert dict(fast.drops) == dict(slow.drops)
    assert fast.raw == slow.raw
    assert fast.traces.equals(slow.traces)
    assert fast.hops.equals(slow.hops)
    assert np.array_equal(fast.hop_trace, slow.hop_trace)
    return fast


@pytest.mark.parametrize("rel", TRACEROUTE_FILES)
def test_every_real_block_the_decoder_takes_is_arrows_table(test_data, rel):
    lines = real_lines(test_data, rel)
    taken = 0
    for start in range(0, len(lines), BLOCK_LINES):
        block = lines[start : start + BLOCK_LINES]
        data = b"\n".join(block)
        native = parse._native_block(data, len(block))
        if native is None:
            continue
        taken += 1
        assert_same_table(native, parse._read_block(block, False, data, native=False))
    if rel.endswith("menog_traceroutes_full.ndjson.xz"):  # plain real results: every block taken
        assert taken == -(-len(lines) // BLOCK_LINES)


@pytest.mark.parametrize("rel", TRACEROUTE_FILES)
def test_every_real_line_alone_decodes_as_arrow_reads_it_or_is_left_to_arrow(test_data, rel):
    """Line by line: where Arrow's reader refuses a line, the decoder refuses it too."""
    lines = real_lines(test_data, rel)[:3000]
    for line in lines:
        native = parse._native_block(line, 1)
        try:
            arrow = parse._read_block([line], False, line, native=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            assert native is None, line[:300]
            continue
        if native is not None:
            assert_same_table(native, arrow)


def test_in_a_real_block_the_decoder_takes_every_line_but_those_it_refuses(test_data):
    """AFRINREN: about 1% of its lines are refused (Arrow's reader refuses them too: a
    numeric ``err``, ...), one or more in every block; the other lines are decoded, into
    the table Arrow's reader builds from them alone."""
    lines = real_lines(test_data, "ripe-atlas/traceroutes/afrinren_traceroutes.ndjson.xz")
    refused_total = 0
    for start in range(0, len(lines), BLOCK_LINES):
        block = lines[start : start + BLOCK_LINES]
        got = parse._native_lines(b"\n".join(block), len(block))
        assert got is not None
        table, refused = got
        refused_total += len(refused)
        for i in refused:
            assert parse._native_block(block[i], 1) is None
        taken = [line for i, line in enumerate(block) if i not in set(refused)]
        assert_same_table(table, parse._read_block(taken, False, None, native=False))
    assert 0 < refused_total < len(lines) // 20


def test_a_refused_line_keeps_its_place_even_when_it_is_in_the_block_twice(test_data):
    good = real_lines(test_data, "ripe-atlas/traceroutes/menog_traceroutes_full.ndjson.xz")[:3]
    numeric_err = good[0].replace(b'"x":"*"', b'"err":3', 1).replace(b'"ttl":64}', b'"ttl":64,"err":3}', 1)
    damaged = good[1][:-5]
    assert parse._native_block(numeric_err, 1) is None and parse._native_block(damaged, 1) is None
    block = [good[0], numeric_err, good[1], damaged, numeric_err, good[2]]
    parsed = assert_same_parse(block)
    assert parsed.raw == [good[0], numeric_err, good[1], numeric_err, good[2]]
    assert dict(parsed.drops) == {"invalid_json": 1}


def test_the_real_afrinren_file_parses_the_same_with_and_without_the_decoder(test_data):
    """Real blocks holding lines only the line-by-line path takes (numeric ``err``, ...)."""
    lines = real_lines(test_data, "ripe-atlas/traceroutes/afrinren_traceroutes.ndjson.xz")
    for start in range(0, len(lines), BLOCK_LINES):
        assert_same_parse(lines[start : start + BLOCK_LINES])


# --- real lines rewritten and damaged ------------------------------------------------------

WHITESPACE = ["", "", "", " ", "\t", "\r", "  ", " \t"]
SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                 "\t": "\\t"}


def spelled(value, rng: random.Random) -> str:
    """``value`` as JSON text, spelled in one of the ways JSON allows (``rng`` chooses)."""
    ws = rng.choice(WHITESPACE)
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = rng.choice([repr(value), f"{value:.3f}", f"{value:e}", f"{value:E}", f"{value:.17g}"])
        return text if _json_number(text) else repr(value)
    if isinstance(value, str):
        out = []
        for ch in value:
            how = rng.randrange(10)
            if ch in SHORT_ESCAPES and (how < 5 or ch in '"\\' or ord(ch) < 0x20):
                out.append(SHORT_ESCAPES[ch])
            elif ord(ch) < 0x20 or how == 0:
                code = ord(ch)
                if code > 0xFFFF:
                    code -= 0x10000
                    out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04X}")
                else:
                    out.append(f"\\u{code:04x}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    if isinstance(value, list):
        return "[" + ws + ",".join(ws + spelled(v, rng) + ws for v in value) + "]"
    items = list(value.items())
    if items and rng.randrange(2000) == 0:  # a key twice (about one line in 50)
        items.append(rng.choice(items))
    return "{" + ws + ",".join(f'{ws}"{k}"{ws}:{ws}{spelled(v, rng)}{ws}' for k, v in items) + "}"


def _json_number(text: str) -> bool:
    try:
        return math.isfinite(float(text)) and orjson.loads(text) is not None
    except (ValueError, orjson.JSONDecodeError):
        return False


ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(1 << 70), 1 << 70),
    st.sampled_from([0, -1, 1 << 31, (1 << 63) - 1, 255, 256, 65_536]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1e-7, 1e300, 0.1, 2.5, 12.345678901234567]),
    st.text(max_size=12),
    st.sampled_from(["", "*", "N", "192.0.2.1", "2001:db8::1", "not an address", "traceroute", "ping"]),
    st.lists(st.integers(0, 3), max_size=3),
    st.dictionaries(st.sampled_from(["obj", "mpls", "label", "x", "class"]), st.integers(0, 5), max_size=3),
)
TRICKY_TEXT = st.one_of(
    st.sampled_from(["a\rb", "\n", 'q"uo\\te/', "\b\f\t", "ünïcödé", "\U0001F600 x", "\u2028", "\x7f", "\x00"]),
    st.text(alphabet=st.sampled_from('\r\n\t\b\f"\\/ aZ09é€\U0001F600\x01\x1f'), max_size=8),
)
RAW_TEXTS = st.sampled_from([
    "1e400", "-1e400", "1E-400", "NaN", "Infinity", "-0", "01", "1.", ".5", "1e", "+1", "0x10",
    "12345678901234567890", "1.0", "4e0", '"\\ud800"', '"\\udc00x"', '"\\u0000"', '"\\x41"', '"a\tb"',
    "tru", "nul", "[1,]", "{}", "[]", '{"a":1,}', '"', "[[[[[[[[[[[[1]]]]]]]]]]]]",
])


def _paths(rec: dict) -> list[tuple]:
    """Where a value can be replaced: every field of every object in the record."""
    out: list[tuple] = []

    def walk(obj, prefix):
        if isinstance(obj, dict):
            for k, v in obj.items():
                out.append((*prefix, k))
                walk(v, (*prefix, k))
        elif isinstance(obj, list):
            for i, v in enumerate(obj):
                walk(v, (*prefix, i))

    walk(rec, ())
    return out


def _at(rec, path: tuple):
    for step in path:
        rec = rec[step]
    return rec


@st.composite
def rewritten_line(draw, menog: list[bytes]) -> bytes:
    """A real MENOG or AFRINREN line, possibly with one value replaced (by any JSON value, or
    a string field by text full of escapes), a key dropped or an unknown key added, spelled
    in one of JSON's ways; sometimes with raw invalid text in place of one value."""
    rec = orjson.loads(menog[draw(st.integers(0, len(menog) - 1))])
    paths = _paths(rec)
    edit = draw(st.integers(0, 7))  # 6, 7: the line as it is, respelled
    raw_text = None
    if edit and paths:
        path = paths[draw(st.integers(0, len(paths) - 1))]
        parent = _at(rec, path[:-1])
        if edit == 1:
            parent[path[-1]] = draw(ODD_VALUES)
        elif edit == 2 and isinstance(parent, dict):
            del parent[path[-1]]
        elif edit == 3 and isinstance(parent, dict):
            parent["unknown_" + draw(st.sampled_from(["a", "b"]))] = draw(ODD_VALUES)
        elif edit == 5:  # a string field, whichever
            texts = [p for p in paths if isinstance(_at(rec, p), str)]
            path = texts[draw(st.integers(0, len(texts) - 1))]
            _at(rec, path[:-1])[path[-1]] = draw(TRICKY_TEXT)
        elif edit == 4:
            parent[path[-1]] = marker = "\x00raw-text\x00"
            raw_text = (marker, draw(RAW_TEXTS))
    text = spelled(rec, random.Random(draw(st.integers(0, 1 << 32))))
    if raw_text:
        text = text.replace(orjson.dumps(raw_text[0]).decode(), raw_text[1], 1)
    return text.encode()


@pytest.fixture(scope="module")
def corpus(test_data) -> list[bytes]:
    menog = real_lines(test_data, "ripe-atlas/traceroutes/menog_traceroutes_full.ndjson.xz")[:400]
    afrinren = real_lines(test_data, "ripe-atlas/traceroutes/afrinren_traceroutes.ndjson.xz")[:400]
    return menog + afrinren


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_rewritten_line_parses_the_same_with_and_without_the_decoder(corpus, data):
    line = data.draw(rewritten_line(corpus))
    assert_same_parse([line])
    native = parse._native_block(line, 1) if parse._strict_text(line) else None
    if native is not None:  # taken: Arrow's reader takes it too, into the same table
        assert_same_table(native, parse._read_block([line], False, line, native=False))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_block_of_rewritten_lines_parses_the_same_with_and_without_the_decoder(corpus, data):
    lines = data.draw(st.lists(rewritten_line(corpus), min_size=2, max_size=12))
    assert_same_parse(lines)


def test_the_decoder_gives_up_where_the_plain_shape_ends():
    """Each of these is valid for orjson or for Arrow in some way the decoder does not take;
    it returns None and the block goes to Arrow's reader (the table stays Arrow's)."""
    base = b'{"msm_id":1,"prb_id":2,"timestamp":3,"result":[{"hop":1,"result":[{"from":"192.0.2.1","rtt":1.5}]}]}'
    assert parse._native_block(base, 1) is not None
    for old, new in [
        (b'"rtt":1.5', b'"rtt":"1.5"'),            # a string where a number belongs
        (b'"hop":1', b'"hop":1.0'),                 # an integer with a fraction
        (b'"hop":1', b'"hop":12345678901234567890'),  # beyond 18 digits
        (b'"hop":1', b'"hop":1,"hop":2'),           # a duplicate key
        (b'"from"', b'"fr\\u006fm"'),               # an escaped key
        (b'"result":[{"hop"', b'"result":[null,{"hop"'),  # a null hop
        (b'"rtt":1.5', b'"rtt":1e400'),             # beyond a double
        (b'"from":"192.0.2.1"', b'"from":"192.0.2.1\x01"'),  # a control character
        (b'}]}]}', b'}]}]} {}'),                    # two objects on one line
    ]:
        assert parse._native_block(base.replace(old, new), 1) is None, new
    # two lines, one object each; a line count that does not match is refused
    table = parse._native_block(base + b"\n" + base, 2)
    assert table is not None and table.num_rows == 2
    assert parse._native_block(base + b"\n" + base, 3) is None


def test_every_escape_and_number_spelling_decodes_as_arrow_reads_it():
    base = ('{"msm_id":1,"prb_id":2,"timestamp":3,"dst_name":%s,"result":[{"hop":1,"error":%s,'
            '"result":[{"from":"192.0.2.1","rtt":%s,"x":"*","unknown":{"k":[1,2.5e3,"\\u00e9",null,true]}}]}]}')
    names = ['"a\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti"', '"\\u00e9\\u20AC\\ud83d\\ude00"', '"caf\xc3\xa9 \xe2\x82\xac"', '""']
    rtts = ["1.5", "0", "-0.0", "12.345678901234567", "1e-3", "2.5E+2", "123456789012345.6", "7"]
    lines = [(base % (names[i % len(names)], names[-1 - i % len(names)], rtt)).encode("latin-1")
             for i, rtt in enumerate(rtts)]
    for line in lines:
        native = parse._native_block(line, 1)
        assert native is not None, line
        assert_same_table(native, parse._read_block([line], False, line, native=False))
    assert_same_table(parse._native_block(b"\n".join(lines), len(lines)),
                      parse._read_block(lines, False, None, native=False))


def test_a_decoded_block_is_freed_when_its_table_goes(test_data):
    """No reference cycle holds the decoder's buffers: they go with the last array using
    them, not when the cyclic garbage collector next runs (a cycle between two nested
    functions once kept every block of an ingest alive for a while: hundreds of MB)."""
    import gc

    block = real_lines(test_data, "ripe-atlas/traceroutes/menog_traceroutes_full.ndjson.xz")[:200]
    gc.collect()
    gc.disable()
    try:
        table = parse._native_block(b"\n".join(block), len(block))
        assert table is not None
        parse.parse_lines(block)
        del table
        assert gc.collect() == 0
    finally:
        gc.enable()
