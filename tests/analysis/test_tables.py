"""analysis._tables.connect: connections on the process's shared DuckDB database stay apart."""

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
