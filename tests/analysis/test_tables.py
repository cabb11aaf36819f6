"""analysis._tables: connections on the process's shared DuckDB database stay apart; lex_order
is the stable order np.lexsort gives; group_ids number values by first appearance; the
per-row look-ups and conversions agree with Arrow's; a partition read from Parquet holds
what the DuckDB reader gives."""

from __future__ import annotations

import threading

import pyarrow as pa

from analysis._tables import connect


def test_shared_database_connections_keep_their_tables_views_and_limits_apart():
    """Threads register tables and temporary views under one name on connections of the
    shared database and each reads its own; a private database's memory limit stays its own."""
    results: dict[int, list[tuple[int, int]]] = {}
    start = threading.Barrier(4)

    def work(i: int) -> None:
        con = connect()
        try:
            start.wait()
            for round_ in range(20):
                con.register("x", pa.table({"v": [i, round_]}))
                con.execute(f"CREATE OR REPLACE TEMP VIEW w AS SELECT {i} AS me")
                got = con.sql("SELECT sum(v), (SELECT me FROM w) FROM x").fetchall()[0]
                results.setdefault(i, []).append(got)
                con.unregister("x")
        finally:
            con.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: [(i + r, i) for r in range(20)] for i in range(4)}

    other = connect()
    private = connect(private=True)
    try:
        before = other.sql("SELECT current_setting('memory_limit')").fetchall()
        private.execute("SET memory_limit = '123MB'")
        assert other.sql("SELECT current_setting('memory_limit')").fetchall() == before
        assert private.sql("SELECT current_setting('memory_limit')").fetchall() != before
        assert not other.sql("SELECT * FROM duckdb_views() WHERE view_name = 'w'").fetchall()
    finally:
        other.close()
        private.close()


def test_lex_order_is_lexsort_on_sorted_unsorted_and_wide_columns():
    """lex_order packs columns into keys, returns at once when the rows are in order and
    moves whole runs of the first column when that sorts them: on random, presorted,
    run-shuffled, nearly sorted and wide (several keys) columns it must be exactly the
    stable order np.lexsort gives."""
    import numpy as np

    from analysis._tables import lex_order

    rng = np.random.default_rng(7)
    for trial in range(2000):
        n, k = int(rng.integers(0, 80)), int(rng.integers(1, 4))
        cols = [rng.integers(-3, int(rng.integers(1, 5)), n) for _ in range(k)]
        if trial % 3 == 0 and n:  # sorted, then (sometimes) one pair swapped
            order = np.lexsort(cols[::-1])
            cols = [c[order] for c in cols]
            if trial % 2 and n > 1:
                i = int(rng.integers(0, n - 1))
                cols = [np.concatenate([c[:i], c[i + 1:i + 2], c[i:i + 1], c[i + 2:]]) for c in cols]
        if trial % 3 == 1 and n:  # sorted, then whole runs of the first column moved (arrival order)
            order = np.lexsort(cols[::-1])
            cols = [c[order] for c in cols]
            moved = np.concatenate([np.flatnonzero(cols[0] == v) for v in rng.permutation(np.unique(cols[0]))])
            cols = [c[moved] for c in cols]
            if trial % 2 and n > 1:
                i = int(rng.integers(0, n - 1))
                cols = [np.concatenate([c[:i], c[i + 1:i + 2], c[i:i + 1], c[i + 2:]]) for c in cols]
        if trial % 7 == 0:
            cols = [c * (1 << 40) for c in cols]  # too wide to pack into one key
        expected = np.lexsort(cols[::-1]) if n else np.empty(0, np.intp)
        assert lex_order(*cols).tolist() == expected.tolist()


def test_index_in_int_np_and_float_np_agree_with_arrow_on_plain_and_dictionary_chunks():
    """The look-ups the paths take per hop row: index_in on plain or dictionary-encoded
    chunks (dictionaries differing between chunks, nulls among values and keys) is
    pc.index_in over the decoded strings, and string_codes give equal codes exactly to
    equal strings; int_np and float_np give Arrow's cast with nulls
    as -1 / NaN, as arrays the caller may write to."""
    import numpy as np
    import pyarrow.compute as pc

    from analysis._tables import float_np, index_in, int_np, string_codes

    repeated = pa.DictionaryArray.from_arrays(pa.array([0, 1, 2, None, 1], pa.int32()), ["a", "a", "b"])
    codes = string_codes(repeated).tolist()  # a dictionary that repeats a value: still one code per string
    assert codes[0] == codes[1] == codes[4] != codes[2] and codes[3] == -1
    rng = np.random.default_rng(11)
    words = np.array(["192.0.2.1", "192.0.2.2", "2001:db8::1", "198.51.100.7", "203.0.113.9"])
    for trial in range(300):
        chunks = []
        for _ in range(int(rng.integers(0, 4))):
            n = int(rng.integers(0, 30))
            vals = pa.array([None if rng.random() < 0.2 else str(w) for w in rng.choice(words, n)], pa.string())
            chunks.append(pc.dictionary_encode(vals) if trial % 2 else vals)
        col = pa.chunked_array(chunks, pa.dictionary(pa.int32(), pa.string()) if trial % 2 else pa.string())
        keys = pa.array([None if rng.random() < 0.1 else str(w)
                         for w in rng.choice(words, int(rng.integers(0, 5)))], pa.string())
        plain = col.cast(pa.string())
        expected = (pc.index_in(plain.combine_chunks(), keys) if len(plain) else pa.array([], pa.int32()))
        assert index_in(col, keys).to_pylist() == expected.to_pylist()
        codes = string_codes(col).tolist()  # equal codes exactly for equal strings, -1 for null
        values = plain.to_pylist()
        assert [c < 0 for c in codes] == [v is None for v in values]
        assert all((codes[i] == codes[j]) == (values[i] == values[j])
                   for i in range(len(codes)) for j in range(len(codes)) if values[i] is not None)

        n = int(rng.integers(0, 40))
        for typ, lo, hi in ((pa.int16(), -(1 << 15), 1 << 15), (pa.int64(), -(1 << 62), 1 << 62),
                            (pa.uint32(), 0, 1 << 32)):  # the whole range of each type
            ints = pa.array([None if rng.random() < (trial % 3) / 4 else int(x) for x in rng.integers(lo, hi, n)], typ)
            got = int_np(pa.chunked_array([ints.slice(0, n // 2), ints.slice(n // 2)]))
            assert got.dtype == np.int64 and got.flags.writeable
            assert got.tolist() == [-1 if v is None else v for v in ints.to_pylist()]
        for ftyp in (pa.float64(), pa.float32(), pa.int32()):
            raw = [None if rng.random() < (trial % 3) / 4 else float(x) for x in rng.integers(0, 300, n)]
            arr = pa.array([None if v is None else (int(v) if ftyp == pa.int32() else v) for v in raw], ftyp)
            got = float_np(arr)
            assert got.dtype == np.float64 and got.flags.writeable
            assert [None if np.isnan(v) else v for v in got.tolist()] == raw


def test_a_partition_read_from_parquet_holds_what_the_duckdb_reader_gives(tmp_path):
    """_read_partition_hops reads the parts straight from Parquet, the strings left
    dictionary-encoded: decoded, every value equals what the union-by-name DuckDB reader
    gives, for one part, for two parts with the same columns, and (through that reader)
    for parts whose columns differ."""
    import pyarrow.parquet as pq

    from analysis._tables import plain_columns
    from analysis.campaign_io import _read_annotated, _read_partition_hops

    a = pa.table({"msm_id": [1, 1, 2], "reply_from": ["192.0.2.1", None, "192.0.2.1"],
                  "ip_class": pa.array(["public", None, "public"]).dictionary_encode(), "rtt": [1.5, None, 2.0]})
    b = pa.table({"msm_id": [3], "reply_from": ["2001:db8::1"],
                  "ip_class": pa.array(["public"]).dictionary_encode(), "rtt": [0.25]})
    c = b.drop_columns(["ip_class"])
    for name, t in (("a", a), ("b", b), ("c", c)):
        pq.write_table(t, tmp_path / f"{name}.parquet")
    cols = ["msm_id", "reply_from", "ip_class", "rtt"]
    for parts, fast in ((["a"], True), (["a", "b"], True), (["a", "c"], False)):
        files = [tmp_path / f"{p}.parquet" for p in parts]
        got = _read_partition_hops(files, cols)
        assert pa.types.is_dictionary(got.schema.field("reply_from").type) is fast
        assert plain_columns(got).to_pydict() == _read_annotated(files, cols).to_pydict()


def test_group_ids_number_the_distinct_values_in_order_of_first_appearance():
    """group_ids against a dictionary filled row by row: rows with equal values share an
    id, ids follow first appearance, on random columns and on runs that come back later."""
    import numpy as np

    from analysis._tables import group_ids

    rng = np.random.default_rng(5)
    for trial in range(1500):
        n, k = int(rng.integers(1, 60)), int(rng.integers(1, 4))
        cols = [rng.integers(-2, int(rng.integers(1, 4)), n) for _ in range(k)]
        if trial % 2:  # runs of equal rows, some values coming back after others
            times = rng.integers(1, 5, n)
            cols = [np.repeat(c, times) for c in cols]
        seen: dict[tuple[int, ...], int] = {}
        expected = [seen.setdefault(tuple(int(c[i]) for c in cols), len(seen)) for i in range(len(cols[0]))]
        assert group_ids(*cols).tolist() == expected


def test_unique_pairs_are_the_sorted_distinct_pairs_whether_or_not_the_first_column_is_sorted():
    """unique_pairs against np.unique over the stacked pairs: first column ascending (the
    rows of a path table, the stable-sort branch), shuffled, and too wide for one key; and
    nearly_sorted_unique against np.unique with counts."""
    import numpy as np

    from analysis._tables import nearly_sorted_unique, unique_pairs

    rng = np.random.default_rng(9)
    for trial in range(600):
        n, nb = int(rng.integers(0, 50)), int(rng.integers(1, 6))
        a = rng.integers(0, 8, n)
        if trial % 2:
            a = np.sort(a)
        if trial % 5 == 0:
            a = a * (1 << 59)  # a * nb would overflow one int64 key
        b = rng.integers(0, nb, n)
        want = np.unique(np.stack([a, b], axis=1), axis=0) if n else np.zeros((0, 2), np.int64)
        got_a, got_b = unique_pairs(a, b, nb)
        assert got_a.tolist() == want[:, 0].tolist() and got_b.tolist() == want[:, 1].tolist()
        key = a * nb + b if trial % 5 else b
        assert [v.tolist() for v in nearly_sorted_unique(key)] == [v.tolist() for v in np.unique(key, return_counts=True)]
