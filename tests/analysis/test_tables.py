"""analysis._tables: connections on the process's shared DuckDB database stay apart; lex_order
is the stable order np.lexsort gives."""

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
