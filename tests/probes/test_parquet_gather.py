"""Parquet files written from columns over a key set (:mod:`probes._parquet_gather`).

The reference is pyarrow writing the same table, each row's values taken from its key
(Arrow's take), in the same row groups: the gathered file must read back the same through
pyarrow and through DuckDB, with the same Arrow types, and carry the same statistics for
the columns pyarrow writes them for. The tables come from hypothesis (keys, nulls, empty
and null lists, empty row groups); tests/analysis/test_annotate.py checks the real MENOG
hop rows annotated the same way (:func:`check_gathered`).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes import _parquet_gather as pg
from probes import _pqpack
from probes._parquet_splice import footer, join_columns, write_row_groups

DICT = pa.dictionary(pa.int32(), pa.string())
SCHEMA = pa.schema([
    ("n", pa.int64()), ("f", pa.float64()), ("b", pa.bool_()), ("s", pa.string()), ("d", DICT),
    ("l", pa.list_(pa.int64())),
])


def _reference(columns: dict[str, pa.Array], keys: np.ndarray, schema: pa.Schema) -> pa.Table:
    """The table the gathered file stands for: each row the values of its key (the last
    key: null in every column), in the schema's types."""
    idx = pa.array(np.asarray(keys, dtype=np.int64))
    cols = []
    for f in schema:
        col = columns[f.name]
        whole = pc.take(pa.concat_arrays([col, pa.nulls(1, col.type)]), idx)
        cols.append(whole.dictionary_encode() if f.type == DICT else whole)
    return pa.Table.from_arrays(cols, schema=schema)


def plain(t: pa.Table) -> pa.Table:
    return t.cast(pa.schema([pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
                             for f in t.schema]))


def check_gathered(data: bytes, columns: dict[str, pa.Array], keys: np.ndarray, groups: list[int], schema: pa.Schema,
           tmp: Path) -> None:
    """``data`` (the gathered file) reads back as the reference table, through pyarrow (whole
    and row group by row group) and DuckDB, in its row groups, with pyarrow's statistics."""
    want = _reference(columns, keys, schema)
    got = pq.read_table(pa.BufferReader(data))
    assert got.schema == schema
    assert plain(got).equals(plain(want))
    meta, ref = pq.read_metadata(pa.BufferReader(data)), write_row_groups(want, groups, compression="zstd")
    ref_meta = pq.read_metadata(pa.BufferReader(ref))
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == groups
    f = pq.ParquetFile(pa.BufferReader(data))
    start = 0
    for i, n in enumerate(groups):
        assert plain(f.read_row_group(i)).equals(plain(want.slice(start, n))), i
        start += n
        # the statistics pyarrow writes for the columns that are not strings
        for j in range(meta.num_columns):
            c, r = meta.row_group(i).column(j), ref_meta.row_group(i).column(j)
            assert c.path_in_schema == r.path_in_schema
            if c.physical_type == "BYTE_ARRAY":
                assert not c.is_stats_set
                continue
            assert c.is_stats_set == r.is_stats_set, (i, c.path_in_schema)
            if r.is_stats_set:
                cs, rs = c.statistics, r.statistics
                assert (cs.null_count, cs.has_min_max) == (rs.null_count, rs.has_min_max), (i, c.path_in_schema)
                if rs.has_min_max:
                    assert (cs.min, cs.max) == (rs.min, rs.max), (i, c.path_in_schema)
    # the legacy min/max (old readers) are the same bounds as min_value/max_value
    _, raw = footer(data)
    for group in raw.get(4)[1]:
        for chunk in group.get(1)[1]:
            stats = chunk.get(3).get(12)
            if stats is not None and stats.get(5) is not None:
                assert (stats.get(1), stats.get(2)) == (stats.get(5), stats.get(6))
    path, ref_path = tmp / "gathered.parquet", tmp / "reference.parquet"
    path.write_bytes(data)
    ref_path.write_bytes(ref.to_pybytes())
    names = ", ".join(schema.names)
    assert duckdb.sql(f"SELECT {names} FROM read_parquet('{path}')").fetchall() == \
        duckdb.sql(f"SELECT {names} FROM read_parquet('{ref_path}')").fetchall()


@st.composite
def _tables(draw: st.DrawFn) -> tuple[dict[str, pa.Array], np.ndarray, list[int]]:
    nk = draw(st.integers(0, 40))
    ints = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))
    strings = st.one_of(st.none(), st.text(max_size=6))
    lists = st.one_of(st.none(), st.lists(st.one_of(st.none(), st.integers(-5, 5)), max_size=3))
    columns = {
        "n": pa.array(draw(st.lists(ints, min_size=nk, max_size=nk)), pa.int64()),
        "f": pa.array(draw(st.lists(st.one_of(st.none(), st.floats(allow_nan=False)), min_size=nk, max_size=nk)),
                      pa.float64()),
        "b": pa.array(draw(st.lists(st.one_of(st.none(), st.booleans()), min_size=nk, max_size=nk)), pa.bool_()),
        "s": pa.array(draw(st.lists(strings, min_size=nk, max_size=nk)), pa.string()),
        "d": pa.array(draw(st.lists(strings, min_size=nk, max_size=nk)), pa.string()),
        "l": pa.array(draw(st.lists(lists, min_size=nk, max_size=nk)), pa.list_(pa.int64())),
    }
    keys = np.array(draw(st.lists(st.integers(0, nk), max_size=300)), dtype=np.int32)
    cuts = sorted(draw(st.lists(st.integers(0, len(keys)), max_size=4)))
    groups = [b - a for a, b in zip([0, *cuts], [*cuts, len(keys)], strict=True)]
    return columns, keys, groups


@settings(max_examples=60, deadline=None)
@given(_tables())
def test_a_gathered_file_reads_back_as_the_table_pyarrow_writes(tmp_path_factory, case):
    """Any keys, nulls, empty and null lists, null items, empty strings, empty row groups."""
    columns, keys, groups = case
    check_gathered(pg.write_gathered(columns, keys, groups, SCHEMA), columns, keys, groups, SCHEMA,
           tmp_path_factory.mktemp("g"))


def test_sparse_and_dense_columns_wide_dictionaries_and_long_runs(tmp_path):
    """Columns few keys hold (written from the rows some sparse column holds) beside dense
    ones, a dictionary of more than 65,536 values in one group (17-bit indices), long runs
    of one definition level, and int64 keys."""
    nk = 70_000
    rng = np.random.default_rng(7)
    k = np.arange(nk)
    columns = {
        "n": pa.array(np.where(k % 1000 == 0, k, 0), pa.int64(), mask=k % 1000 != 0),  # sparse
        "f": pa.array(k / 7, pa.float64(), mask=k % 3 == 0),
        "b": pa.array(k % 2 == 0, pa.bool_(), mask=k % 500 != 1),  # sparse
        "s": pa.array([f"key-{i}" for i in k.tolist()], pa.string()),  # every key its own value
        "d": pa.array([["cn", "us", None][i % 3] for i in k.tolist()], pa.string()),
        "l": pa.array([None if i % 4 == 0 else [i, i + 1][: i % 3] for i in k.tolist()], pa.list_(pa.int64())),
    }
    keys = np.concatenate([np.arange(nk), np.full(5000, nk), rng.integers(0, nk + 1, 60_000),
                           np.full(3000, 17)]).astype(np.int64)
    groups = [nk + 5000, 0, 30_000, len(keys) - nk - 35_000]
    data = pg.write_gathered(columns, keys, groups, SCHEMA)
    check_gathered(data, columns, keys, groups, SCHEMA, tmp_path)
    assert pq.ParquetFile(pa.BufferReader(data)).read_row_group(0, columns=["s"])["s"].num_chunks == 1


def test_appended_beside_a_file_is_the_join_of_the_two_files(tmp_path):
    """append_gathered gives, byte for byte, the base file joined with write_gathered's."""
    rng = np.random.default_rng(3)
    nk = 50
    columns = {
        "n": pa.array(rng.integers(0, 9, nk), pa.int64()), "f": pa.array(rng.random(nk)),
        "b": pa.array(rng.random(nk) < 0.5), "s": pa.array([f"v{i % 7}" for i in range(nk)]),
        "d": pa.array([None if i % 5 else "x" for i in range(nk)], pa.string()),
        "l": pa.array([[i] for i in range(nk)], pa.list_(pa.int64())),
    }
    keys = rng.integers(0, nk + 1, 1000).astype(np.int32)
    groups = [400, 0, 600]
    base_table = pa.table({"row": pa.array(np.arange(1000)), "key": pa.array(keys)})
    base = write_row_groups(base_table, groups, compression="zstd").to_pybytes()
    joined = pg.append_gathered(base, columns, keys, SCHEMA)
    assert joined == join_columns(base, pg.write_gathered(columns, keys, groups, SCHEMA), SCHEMA)
    assert joined[:len(base) - 8 - int.from_bytes(base[-8:-4], "little")] == \
        base[:len(base) - 8 - int.from_bytes(base[-8:-4], "little")]
    back = pq.read_table(pa.BufferReader(joined))
    assert back.select(["row", "key"]).equals(base_table)
    assert plain(back.select(SCHEMA.names)).equals(plain(_reference(columns, keys, SCHEMA)))
    with pytest.raises(ValueError, match="already"):
        pg.append_gathered(joined, columns, keys, SCHEMA)


def test_empty_tables():
    """No rows (one empty row group, or none), no keys."""
    columns = {f.name: pa.array([], f.type.value_type if f.type == DICT else f.type) for f in SCHEMA}
    for groups in ([0], []):
        back = pq.read_table(pa.BufferReader(pg.write_gathered(columns, np.zeros(0, np.int32), groups, SCHEMA)))
        assert back.num_rows == 0 and back.schema == SCHEMA
    keys = np.zeros(3, np.int32)  # three rows, all of the null key
    back = pq.read_table(pa.BufferReader(pg.write_gathered(columns, keys, [3], SCHEMA)))
    assert all(back[c].null_count == 3 for c in SCHEMA.names)


def test_what_cannot_be_written_is_refused():
    columns = {"n": pa.array([1, 2], pa.int64())}
    schema = pa.schema([("n", pa.int64())])
    with pytest.raises(ValueError, match="outside"):
        pg.write_gathered(columns, np.array([0, 3]), [2], schema)
    with pytest.raises(ValueError, match="add up"):
        pg.write_gathered(columns, np.array([0, 1]), [1], schema)
    with pytest.raises(TypeError, match="the schema says"):
        pg.write_gathered({"n": pa.array([1, 2], pa.int32())}, np.array([0, 1]), [2], schema)
    with pytest.raises(ValueError, match="not the schema's"):
        pg.write_gathered({"m": pa.array([1, 2], pa.int64())}, np.array([0, 1]), [2], schema)
    for bad in (pa.schema([("n", pa.int32())]), pa.schema([pa.field("n", pa.int64(), nullable=False)]),
                pa.schema([("n", pa.list_(pa.string()))])):
        assert not pg.supported(bad)
        with pytest.raises(TypeError):
            pg.write_gathered(columns, np.array([0, 1]), [2], bad)
    # the C code checks what it indexes with, whatever the caller checked
    keys, bounds = np.array([0, 5], np.uint32), np.array([0, 2], np.int64)
    tabs, widths = np.zeros((1, 3), np.int32), np.ones(1, np.uint8)
    with pytest.raises(ValueError, match="outside the tables"):
        _pqpack.pack(keys, bounds, [(tabs, widths, False)], 3)
    with pytest.raises(ValueError, match="outside the tables"):
        _pqpack.used(keys, bounds, 3)
    with pytest.raises(ValueError, match="bounds"):
        _pqpack.pack(np.array([0, 1], np.uint32), np.array([0, 3], np.int64), [(tabs, widths, False)], 3)
    with pytest.raises(ValueError, match="one entry per key"):
        _pqpack.pack(np.array([0, 1], np.uint32), bounds, [(tabs, widths, False)], 2)
    offsets, levels = np.array([0, 1, 2, 3], np.int64), np.array([1, 3, 3], np.uint8)
    with pytest.raises(ValueError, match="repetition level"):
        _pqpack.pack(np.array([0, 1], np.uint32), bounds,
                     [(tabs, widths, False, offsets, levels, np.array([0, 1, 0], np.uint8))], 3)
