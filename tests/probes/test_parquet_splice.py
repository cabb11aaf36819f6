"""Columns appended beside a Parquet file's own bytes, and files written apart joined
into one, their row groups copied (:mod:`probes._parquet_splice`).

The reference is pyarrow writing the whole table in the same row groups: the joined file
must read back the same (pyarrow, row group by row group and column by column, and
DuckDB), with the same Arrow schema record, while the base file's bytes stay as they were.
The footer codec must give every footer it reads back byte for byte: real store segments
and files with every Parquet feature pyarrow writes. Files written apart and joined must
give, byte for byte, the file one pyarrow writer writes from the same tables.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import io
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from probes import fileio, store
from probes._parquet_splice import (
    Field,
    RowGroupAppender,
    Struct,
    append_columns,
    decode,
    encode,
    footer,
)
from probes.workspace import Campaign

MENOG = Path("ripe-atlas") / "traceroutes" / "menog_traceroutes_full.ndjson.xz"


def _table(n: int, offset: int = 0) -> pa.Table:
    """``n`` rows of most Arrow types pyarrow writes to Parquet, with nulls and repeats."""
    i = list(range(offset, offset + n))
    return pa.table({
        "i8": pa.array([x % 100 - 50 for x in i], pa.int8()),
        "u16": pa.array([x % 60000 for x in i], pa.uint16()),
        "i64": pa.array([None if x % 7 == 0 else x * 10**9 - 3 for x in i], pa.int64()),
        "f64": pa.array([x / 3 if x % 5 else None for x in i], pa.float64()),
        "flag": pa.array([None if x % 11 == 0 else x % 2 == 0 for x in i], pa.bool_()),
        "text": pa.array([f"addr-{x % 37}" if x % 4 else None for x in i], pa.string()),
        "big": pa.array([f"{x}" * (x % 5) for x in i], pa.large_string()),
        "blob": pa.array([bytes([x % 256]) * (x % 3) for x in i], pa.binary()),
        "code": pa.array([["us", "cn", None, "de"][x % 4] for x in i]).dictionary_encode(),
        "when": pa.array([x * 1000 for x in i], pa.timestamp("s", tz="UTC")),
        "day": pa.array([dt.date(2020, 1, 1) + dt.timedelta(days=x % 400) for x in i], pa.date32()),
        "money": pa.array([decimal.Decimal(x) / 100 for x in i], pa.decimal128(12, 2)),
        "labels": pa.array([None if x % 9 == 0 else [x % 3, None, x][: x % 4] for x in i], pa.list_(pa.int32())),
        "pair": pa.array([{"a": x, "b": f"{x % 3}"} if x % 6 else None for x in i],
                         pa.struct([("a", pa.int64()), ("b", pa.string())])),
        "attrs": pa.array([[("k", x), ("m", None)] if x % 2 else [] for x in i], pa.map_(pa.string(), pa.int64())),
        "fixed": pa.array([x.to_bytes(4, "little") for x in i], pa.binary(4)),
    })


def _split(t: pa.Table, k: int) -> tuple[pa.Table, pa.Table]:
    return t.select(t.column_names[:k]), t.select(t.column_names[k:])


def _write(t: pa.Table, rows: list[int], **opts: object) -> bytes:
    """``t`` in row groups of ``rows`` rows, as pyarrow writes it."""
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, t.schema, **{**fileio.PARQUET_OPTIONS, **opts}) as w:
        at = 0
        for n in rows:
            w.write_table(t.slice(at, n), row_group_size=max(n, 1))
            at += n
    return sink.getvalue().to_pybytes()


def _same_as_whole(joined: bytes, whole: bytes, tmp_path: Path, *, same_chunks: bool = True) -> None:
    """``joined`` reads back exactly as ``whole`` does: pyarrow and DuckDB, every row group.

    ``same_chunks``: both were written with the same options, so every column chunk has
    the same sizes, encodings and statistics in both (only where it starts differs)."""
    a, b = pq.ParquetFile(pa.BufferReader(joined)), pq.ParquetFile(pa.BufferReader(whole))
    assert a.schema_arrow.equals(b.schema_arrow, check_metadata=True)
    assert a.metadata.metadata == b.metadata.metadata  # ARROW:schema, byte for byte
    assert a.metadata.num_rows == b.metadata.num_rows
    assert a.metadata.num_row_groups == b.metadata.num_row_groups
    assert a.read().equals(b.read())
    for g in range(a.metadata.num_row_groups):
        ga, gb = a.metadata.row_group(g), b.metadata.row_group(g)
        assert ga.num_rows == gb.num_rows
        if not same_chunks:
            continue
        assert ga.total_byte_size == gb.total_byte_size
        for c in range(ga.num_columns):  # the same chunks, at other places in the file
            ca, cb = ga.column(c).to_dict(), gb.column(c).to_dict()
            at = [(d.pop("data_page_offset"), d.pop("dictionary_page_offset"), d.pop("file_offset")) for d in (ca, cb)]
            assert ca == cb
            (da, ia, fa), (db, ib, fb) = at
            assert (ia is None) == (ib is None) and (fa == 0) == (fb == 0)
            assert (da == 0) == (db == 0) and (ia is None or da == 0 or da - ia == db - ib)
        for name in a.schema_arrow.names:  # each chunk alone: its own offsets
            assert a.read_row_group(g, columns=[name]).equals(b.read_row_group(g, columns=[name])), (g, name)
    pa_, pb = tmp_path / "joined.parquet", tmp_path / "whole.parquet"
    pa_.write_bytes(joined)
    pb.write_bytes(whole)
    q = "SELECT * FROM read_parquet('{}')"
    assert duckdb.sql(q.format(pa_)).fetchall() == duckdb.sql(q.format(pb)).fetchall()


@pytest.mark.parametrize("rows", [[5000], [1000, 1, 2999, 1000], [0], [], [600, 0, 400]],
                         ids=["one-group", "uneven-groups", "one-empty-group", "no-group", "an-empty-group-between"])
@pytest.mark.parametrize("opts", [{}, {"write_page_index": True, "data_page_version": "2.0"},
                                  {"compression": "none", "use_dictionary": False, "write_statistics": False}],
                         ids=["default", "page-index-v2-pages", "plain-uncompressed"])
def test_appended_columns_read_back_as_pyarrow_writing_the_whole_table(rows, opts, tmp_path):
    t = _table(sum(rows))
    base_t, new_t = _split(t, 7)
    base = _write(base_t, rows, **opts)
    new_opts = {k: v for k, v in opts.items() if k != "write_page_index"}  # refused: see below
    joined = append_columns(base, new_t, **{**fileio.PARQUET_OPTIONS, **new_opts})
    b_start, _ = footer(base)
    assert joined[:b_start] == base[:b_start]  # the base columns: copied, not written again
    if "write_page_index" not in opts:
        _same_as_whole(joined, _write(t, rows, **opts), tmp_path)
    else:
        _same_as_whole(joined, _write(t, rows, **new_opts), tmp_path, same_chunks=False)


def test_a_base_page_index_stays_valid_and_none_is_written_for_the_new_columns(tmp_path):
    """The base file's page index is copied with it (its page offsets unchanged); one for
    the new columns is refused, since its page offsets would be those of the file written
    apart."""
    t = _table(3000, offset=17)
    base_t, new_t = _split(t, 10)
    opts = {"write_page_index": True, "data_page_size": 512}  # many pages per chunk
    base = _write(base_t, [1200, 1800], **opts)
    with pytest.raises(ValueError, match="page index"):
        append_columns(base, new_t, **{**fileio.PARQUET_OPTIONS, **opts})
    joined = append_columns(base, new_t, **{**fileio.PARQUET_OPTIONS, "data_page_size": 512})
    _same_as_whole(joined, _write(t, [1200, 1800], **opts), tmp_path, same_chunks=False)
    meta, base_meta = pq.read_metadata(pa.BufferReader(joined)), pq.read_metadata(pa.BufferReader(base))
    for g in range(meta.num_row_groups):
        for c in range(meta.num_columns):
            col = meta.row_group(g).column(c)
            assert col.has_offset_index == col.has_column_index == (c < base_meta.num_columns)
            assert 4 <= col.data_page_offset < len(joined) - 8
            if c < base_meta.num_columns:
                assert col.to_dict() == base_meta.row_group(g).column(c).to_dict()
    # DuckDB prunes pages and row groups by the moved statistics: the same rows either way
    p = tmp_path / "joined.parquet"
    p.write_bytes(joined)
    want = t.filter(pa.compute.greater(t["u16"], 2500)).num_rows
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{p}') WHERE u16 > 2500").fetchall() == [(want,)]
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{p}') WHERE money > 30").fetchall()[0][0] == \
        t.filter(pa.compute.greater(t["money"], pa.scalar(decimal.Decimal(30), pa.decimal128(12, 2)))).num_rows


def test_a_real_store_segment_gets_columns_beside_its_bytes(test_data, tmp_path):
    """A hop segment of the real MENOG results (many row groups, the store's own options)
    with new columns appended: the same as pyarrow writing the whole table."""
    camp = Campaign("menog", tmp_path)
    store.ingest_files(camp, [test_data / MENOG])
    seg = store.segment_path(camp, store.segment_names(camp, "hops")[0], "hops")
    base = seg.read_bytes()
    hops = pq.read_table(seg)
    meta = pq.read_metadata(seg)
    rows = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    assert len(rows) > 1
    new = pa.table({"len": pa.compute.utf8_length(hops["reply_from"]),
                    "hop2": pa.compute.multiply(hops["hop"], 2)})
    joined = append_columns(base, new, **fileio.PARQUET_OPTIONS)
    assert fileio.written_schema(joined) == pa.schema(list(fileio.written_schema(base)) + list(new.schema))
    # the whole table as the store's writer has it (its Arrow schema, not the read-back one)
    whole_t = pa.Table.from_arrays(hops.columns + new.columns, names=hops.column_names + new.column_names)
    whole_t = whole_t.cast(fileio.written_schema(joined))
    _same_as_whole(joined, _write(whole_t, rows), tmp_path, same_chunks=False)  # the store's options
    # the ARROW:schema record is what pyarrow writes for that schema
    rec = pq.read_metadata(pa.BufferReader(joined)).metadata[b"ARROW:schema"]
    assert pa.ipc.read_schema(pa.py_buffer(base64.b64decode(rec))).equals(
        fileio.written_schema(base).append(new.schema.field(0)).append(new.schema.field(1)))


def test_every_footer_encodes_to_its_own_bytes(test_data, tmp_path):
    """Real store segments (hops, traceroutes) and files with every feature used above."""
    camp = Campaign("menog", tmp_path)
    store.ingest_files(camp, [test_data / MENOG])
    files = [store.segment_path(camp, n, kind).read_bytes()
             for kind in ("hops", "traces") for n in store.segment_names(camp, kind)]
    t = _table(2000)
    files += [_write(t, [100] * 20, write_page_index=True), _write(t, [2000], sorting_columns=[
        pq.SortingColumn(0), pq.SortingColumn(3, descending=True)], data_page_version="2.0")]
    for data in files:
        start, meta = footer(data)
        assert encode(meta) == data[start:-8]
        assert len(meta) >= 4  # version, schema, rows, row groups at least


def test_the_codec_round_trips_every_compact_form():
    """Field ids far apart and out of order, negative and 64-bit ints, bools, doubles,
    bytes, long lists, maps and nested structs: encode then decode gives the struct back."""
    inner = Struct([Field(1, 8, b"x" * 300), Field(2, 1, True), Field(3, 2, False)])
    s = Struct([
        Field(1, 5, -1), Field(2, 6, 2**62 + 5), Field(30, 6, -(2**63)), Field(4, 4, -32768), Field(5, 3, -7),
        Field(6, 7, -1.5e300), Field(7, 9, (5, [i - 8 for i in range(40)])), Field(8, 9, (12, [inner, inner])),
        Field(9, 11, (8, 5, [(b"k", 1), (b"", -2)])), Field(10, 11, (0, 0, [])), Field(11, 12, inner),
        Field(12, 9, (1, [True, False, True])), Field(13, 9, (8, [])),
    ])
    data = encode(s)
    back = decode(data)
    assert back == s and encode(back) == data


@pytest.mark.parametrize("case", ["rows", "clash", "not-parquet", "truncated"])
def test_what_cannot_be_joined_is_refused(case):
    t = _table(100)
    base_t, new_t = _split(t, 5)
    base = _write(base_t, [100])
    with pytest.raises(ValueError, match={"rows": "rows", "clash": "already", "not-parquet": "PAR1",
                                          "truncated": "footer"}[case]):
        if case == "rows":
            append_columns(base, new_t.slice(1))
        elif case == "clash":
            append_columns(base, t.select(["i8", "big"]))
        elif case == "not-parquet":
            append_columns(b"PAR0" + base[4:], new_t)
        else:
            n = int.from_bytes(base[-8:-4], "little")
            append_columns(base[:-8 - n] + base[-8 - n:-8][:-3] + (n - 3).to_bytes(4, "little") + b"PAR1", new_t)


def _joined(files: list[bytes], schema: pa.Schema, **opts: object) -> bytes:
    out = io.BytesIO()
    appender = RowGroupAppender(out, schema, **{**fileio.PARQUET_OPTIONS, **opts})
    for data in files:
        appender.append(data)
    appender.close()
    return out.getvalue()


@pytest.mark.parametrize("parts", [[[5000]], [[1000], [0], [1200, 800], [3]], [[0]], [[], [700], []],
                                   [[250]] * 12],
                         ids=["one-file", "uneven-with-empty-group", "one-empty-group", "files-without-groups",
                              "twelve-files"])
@pytest.mark.parametrize("opts", [{}, {"compression": "none", "use_dictionary": False, "write_statistics": False},
                                  {"data_page_version": "2.0", "data_page_size": 512,
                                   "sorting_columns": [pq.SortingColumn(1)]}],
                         ids=["default", "plain-uncompressed", "v2-small-pages-sorted"])
def test_files_written_apart_join_into_what_one_writer_writes(parts, opts, tmp_path):
    """Each file holds some row groups of one table; joined in order they are the file one
    writer writes with a ``write_table`` per file (every file's chunks moved, the row
    groups' offsets and ordinals renumbered), and DuckDB reads it."""
    t = _table(sum(map(sum, parts)), offset=3)
    files, at = [], 0
    for rows in parts:
        files.append(_write(t.slice(at, sum(rows)), rows, **opts))
        at += sum(rows)
    joined = _joined(files, t.schema, **opts)
    whole = _write(t, [n for rows in parts for n in rows], **opts)
    assert joined == whole
    p = tmp_path / "joined.parquet"
    p.write_bytes(joined)
    assert duckdb.sql(f"SELECT count(*), sum(i64), count(DISTINCT text) FROM read_parquet('{p}')").fetchall() == \
        [(t.num_rows, pa.compute.sum(t["i64"]).as_py(), pa.compute.count_distinct(t["text"]).as_py())]


def test_real_segments_split_and_joined_are_the_segment_one_writer_writes(test_data, tmp_path):
    """The real MENOG hops, in parts written apart with :func:`probes.fileio.parquet_buffer`
    and joined by :func:`probes.fileio.joined_parquet`: what :func:`probes.fileio.write_parquet`
    writes from the parts one ``write_table`` each, and nothing when no part came."""
    camp = Campaign("menog", tmp_path)
    store.ingest_files(camp, [test_data / MENOG])
    hops = pa.concat_tables(pq.read_table(store.segment_path(camp, n, "hops"))
                            for n in store.segment_names(camp, "hops"))
    cuts = [0, 1, 4000, 4000, hops.num_rows // 2, hops.num_rows]
    parts = [hops.slice(a, b - a) for a, b in zip(cuts, cuts[1:], strict=False)]
    assert hops.num_rows > 50_000 and any(p.num_rows == 0 for p in parts)
    with fileio.joined_parquet(tmp_path / "joined.parquet", hops.schema) as out:
        for part in parts:
            out.append(fileio.parquet_buffer(part, hops.schema))
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, hops.schema, **fileio.PARQUET_OPTIONS) as w:
        for part in parts:
            w.write_table(part)
    assert (tmp_path / "joined.parquet").read_bytes() == sink.getvalue().to_pybytes()
    back = pq.read_table(tmp_path / "joined.parquet")
    decoded = pa.schema([f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in hops.schema])
    assert back.num_rows == hops.num_rows and back.cast(decoded).equals(hops.cast(decoded))
    with fileio.joined_parquet(tmp_path / "none.parquet", hops.schema):
        pass
    empty = pq.ParquetFile(tmp_path / "none.parquet")
    assert empty.metadata.num_row_groups == 0 and empty.schema_arrow.equals(hops.schema)


@pytest.mark.parametrize("case", ["schema", "metadata", "page-index", "not-parquet"])
def test_what_cannot_be_appended_is_refused(case):
    t = _table(100)
    first = _write(t, [100])
    other = {"schema": _write(t.select(t.column_names[1:]), [100]),
             "metadata": _write(t.replace_schema_metadata({"x": "y"}), [100]),
             "page-index": _write(t, [100], write_page_index=True),
             "not-parquet": b"PAR0" + first[4:]}[case]
    appender = RowGroupAppender(io.BytesIO(), t.schema)
    appender.append(first)
    with pytest.raises(ValueError, match={"schema": "another schema", "metadata": "another schema",
                                          "page-index": "page index", "not-parquet": "PAR1"}[case]):
        appender.append(other)


def test_row_group_ordinals_are_renumbered_in_the_joined_file():
    """pyarrow writes no ``RowGroup.ordinal`` (other writers do, for encryption): joined
    files' ordinals count the row groups of the joined file, not each file's own."""
    t = _table(90)

    def with_ordinals(data: bytes) -> bytes:
        start, meta = footer(data)
        for i, g in enumerate(meta.get(4)[1]):  # FileMetaData.row_groups
            g.append(Field(7, 4, i))  # RowGroup.ordinal, an i16
        tail = encode(meta)
        return data[:start] + tail + len(tail).to_bytes(4, "little") + b"PAR1"

    files = [with_ordinals(_write(t.slice(0, 50), [20, 30])), with_ordinals(_write(t.slice(50), [10, 0, 30]))]
    _, meta = footer(_joined(files, t.schema))
    assert [g.get(7) for g in meta.get(4)[1]] == [0, 1, 2, 3, 4]
    assert [g.get(3) for g in meta.get(4)[1]] == [20, 30, 10, 0, 30]
