"""Table helpers the paths stage shares with the campaign edge (:mod:`analysis.campaign_io`).

The annotated-hop column contract of :func:`analysis.paths.build_paths`, the DuckDB
connection every stage opens, Arrow list building, the node-attribute query and the
registry look-ups. Pure functions; private to :mod:`analysis`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from analysis.paths import RegistryLike


#: Columns an annotated hop table must have for :func:`analysis.paths.build_paths`.
ANNOTATED_REQUIRED = (
    "msm_id", "prb_id", "timestamp", "hop", "attempt", "reply_from", "rtt", "ip_class",
    "asn", "ixp_id", "member_asn", "family",
)  # fmt: skip
#: Columns it may have, added as nulls of this type when absent.
ANNOTATED_OPTIONAL = {
    "late": pa.bool_(),
    "dup": pa.bool_(),
    "ixp_name": pa.string(),
    "ixp_city": pa.string(),
    "ixp_country": pa.string(),
    "ixp_lat": pa.float64(),
    "ixp_lon": pa.float64(),
    "as_country": pa.string(),
}


def connect(*, private: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection without the interactive progress bar.

    By default a new connection to the process's one in-memory database (about 1 ms; a
    database of its own costs 13 ms to open, and ``analyze`` opened several per partition
    and per row group). What a connection registers, its temporary tables and views and
    its session settings are its own; global settings (``memory_limit``,
    ``temp_directory``, ``threads``) and ordinary tables are the database's, so a caller
    that sets those or creates non-temporary objects asks for a ``private`` database.
    """
    con = duckdb.connect() if private else _process_database().cursor()
    # Inside Jupyter without ipywidgets DuckDB starts with the bar off and refuses any SET of it.
    if con.execute("SELECT current_setting('enable_progress_bar')").fetchall()[0][0]:
        con.execute("SET enable_progress_bar = false")
    return con


_DATABASE: tuple[int, duckdb.DuckDBPyConnection] | None = None
_DATABASE_LOCK = threading.Lock()


def _process_database() -> duckdb.DuckDBPyConnection:
    """This process's shared in-memory database (a forked child opens its own: DuckDB's
    threads do not survive a fork).

    A database that stays open keeps the memory its largest query freed (about 300 MiB
    after a group-by of 6M rows) unless its allocator's background threads purge it: with
    them RSS is back where it started about a second after the query.

    Its threads are Arrow's CPU count: the machine's cores, or a Dask worker's threads
    (:mod:`probes.engine` sizes Arrow's pool to them), so a one-thread worker's queries do
    not take every core of a machine its sibling workers share.
    """
    global _DATABASE
    with _DATABASE_LOCK:
        if _DATABASE is None or _DATABASE[0] != os.getpid():
            _DATABASE = (os.getpid(), duckdb.connect(config={"allocator_background_threads": True,
                                                             "threads": pa.cpu_count()}))
        return _DATABASE[1]


def int_np(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Integer column as an int64 NumPy array, nulls as -1."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], col.type)
    if col.null_count or not pa.types.is_integer(col.type) or col.type == pa.uint64():
        return pc.fill_null(col.cast(pa.int64()), -1).to_numpy(zero_copy_only=False).astype(np.int64)
    # no nulls: NumPy widens the values itself (Arrow's casts copy more)
    return np.array(col.to_numpy(), np.int64)


def float_np(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Numeric column as a float64 NumPy array of its own, nulls as NaN."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], col.type)
    if not pa.types.is_floating(col.type):
        return pc.fill_null(col.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False).astype(float)
    values = col.to_numpy(zero_copy_only=False)  # nulls as NaN; a fresh array when it had nulls
    return values.astype(float, copy=not values.flags.writeable)


def list_of(values: pa.Array, owner: np.ndarray, ntr: int) -> pa.Array:
    """List array with ``ntr`` rows from values sorted by their owning row index."""
    offsets = np.searchsorted(owner, np.arange(ntr + 1), side="left").astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), values)


#: Rows of a paths table whose AS paths are flattened at once (:func:`path_node_chunks`):
#: the graph and hegemony hold this many paths' hops at a time, whatever the campaign's size.
PATH_CHUNK_ROWS = 65_536


class NodeCodes:
    """The path nodes met so far, each with a code: the order of first appearance.

    Codes given chunk by chunk are the codes one ``dictionary_encode`` of the whole
    flattened column would give.
    """

    def __init__(self) -> None:
        self.names: list[str] = []
        self._code: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.names)

    def code_of(self, name: str) -> int:
        """The code of ``name``; -1 when it has not been met."""
        return self._code.get(name, -1)

    def codes(self, dictionary: pa.Array) -> np.ndarray:
        """The codes of ``dictionary``'s names (new names get the next codes, in order)."""
        out = np.empty(len(dictionary), np.int64)
        for i, name in enumerate(dictionary.to_pylist()):
            code = self._code.get(name)
            if code is None:
                code = self._code[name] = len(self.names)
                self.names.append(name)
            out[i] = code
        return out


def path_node_chunks(lists: pa.Array | pa.ChunkedArray, nodes: NodeCodes,
                     chunk_rows: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The hops of a list column (``as_path``), ``chunk_rows`` rows at a time (default
    :data:`PATH_CHUNK_ROWS`).

    Yields ``(row, code)`` per chunk with hops: each hop's row in ``lists`` (int64,
    ascending) and its node's code in ``nodes`` (int64). A path never spans two chunks.
    """
    chunk_rows = chunk_rows or PATH_CHUNK_ROWS
    for start in range(0, len(lists), chunk_rows):
        part = lists.slice(start, chunk_rows)
        if isinstance(part, pa.ChunkedArray):
            part = part.combine_chunks() if part.num_chunks else pa.array([], part.type)
        flat = pc.list_flatten(part)
        if not len(flat):
            continue
        row = pc.list_parent_indices(part).to_numpy(zero_copy_only=False).astype(np.int64) + start
        enc = flat.dictionary_encode()
        yield row, nodes.codes(enc.dictionary)[enc.indices.to_numpy(zero_copy_only=False)]


def nearly_sorted_unique(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(key, return_counts=True)`` for keys in nearly sorted order (ascending
    runs, each of a few unsorted values: a path's nodes, rows in order): a stable sort
    (timsort) orders them some ten times faster than np.unique's quicksort.

    >>> [v.tolist() for v in nearly_sorted_unique(np.array([3, 1, 3, 7, 5, 7]))]
    [[1, 3, 5, 7], [1, 2, 1, 2]]
    """
    key = np.sort(key, kind="stable")
    head = np.empty(len(key), bool)
    head[:1] = True
    np.not_equal(key[1:], key[:-1], out=head[1:])
    starts = np.flatnonzero(head)
    return key[starts], np.diff(np.append(starts, len(key)))


def unique_pairs(a: np.ndarray, b: np.ndarray, nb: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (a, b) pairs of non-negative ints with ``b < nb``, sorted by (a, b).

    One int64 key ``a * nb + b`` when it cannot overflow (a sort of one column is several
    times faster than ``np.unique(..., axis=0)``), the row-wise unique otherwise.
    """
    nb = max(nb, 1)
    if len(a) == 0 or int(a.max()) < (1 << 62) // nb:
        key = a.astype(np.int64) * nb + b
        # ``a`` ascending (rows in order): the keys are runs of a few unsorted values
        key = nearly_sorted_unique(key)[0] if bool((a[1:] >= a[:-1]).all()) else np.unique(key)
        return key // nb, key % nb
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def annotated_as(annotated: pa.Table) -> np.ndarray:
    """The AS each annotated row's ``family`` belongs to: the IXP member where the row has
    one (``member_asn``), else the origin AS (``asn``); -1 where neither is known. This is
    the AS the annotator looks the family up for (:func:`analysis.annotate.annotate`)."""
    member = int_np(annotated.column("member_asn"))
    return np.where(member >= 0, member, int_np(annotated.column("asn")))


def as_attribute(annotated: pa.Table, column: str = "family", key: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(asn, value)``: each AS the annotation gave a ``column`` value (its flagged
    ``family``, its registry ``as_country``), sorted by AS.

    The AS of a row is :func:`annotated_as` (an IXP LAN address announced by one AS and
    assigned to a member is the member's, and so are its family and country). Rows
    without a value, or with an empty one, say nothing. Where rows disagree the
    alphabetically first value wins, whatever the row order. ``key``: :func:`annotated_as`
    of the table, when the caller has it already.

    >>> t = pa.table({"asn": [7, 7, 9, 9], "member_asn": pa.array([None, None, None, 4134]),
    ...               "family": ["b", "a", None, "ct"]})
    >>> asn, fam = as_attribute(t)
    >>> asn.tolist(), fam.tolist()
    ([7, 4134], ['a', 'ct'])
    """
    key = annotated_as(annotated) if key is None else key
    enc = pc.dictionary_encode(annotated.column(column).cast(pa.string()))
    enc = enc.combine_chunks() if isinstance(enc, pa.ChunkedArray) else enc
    labels = enc.dictionary.to_pylist()
    alpha = sorted(range(len(labels)), key=labels.__getitem__)
    rank = np.empty(len(labels), np.int64)  # a label's place in alphabetical order
    rank[alpha] = np.arange(len(labels))
    by_rank = np.asarray([labels[i] for i in alpha], dtype=object)
    codes = int_np(enc.indices)
    named = (key >= 0) & (codes >= 0)
    named[named] = by_rank[rank[codes[named]]] != ""
    k, r = unique_pairs(key[named], rank[codes[named]], len(labels))
    first = np.ones(len(k), bool)
    first[1:] = k[1:] != k[:-1]
    return k[first], by_rank[r[first]]


def lex_order(*cols: np.ndarray) -> np.ndarray:
    """The stable order that sorts rows by ``cols``, the first the most significant: what
    ``np.lexsort(cols[::-1])`` gives.

    Adjacent integer columns are packed into one mixed-radix int64 key while the product of
    their ranges stays under 2**62, so the sort runs over one or two keys instead of many
    (a single key is about three times faster than ``np.lexsort`` of three).

    >>> lex_order(np.array([2, 1, 2, 1]), np.array([0, 5, -3, 5])).tolist()
    [1, 3, 2, 0]
    """
    if not len(cols) or not len(cols[0]):
        return np.empty(0, np.intp)
    keys: list[np.ndarray] = []  # most significant first
    key: np.ndarray | None = None
    span = 1
    for col in cols:
        c = np.asarray(col, np.int64)
        lo = int(c.min())
        width = int(c.max()) - lo + 1  # Python ints: no overflow
        if key is not None and span * width < 1 << 62:
            key, span = key * width + (c - lo), span * width
            continue
        if key is not None:
            keys.append(key)
        key, span = (c - lo, width) if width < 1 << 62 else (c, 1 << 62)
    assert key is not None
    keys.append(key)
    if _in_order(keys):  # rows often come in order already (a traceroute's hops and attempts)
        return np.arange(len(key))
    runs = _runs_in_order(np.asarray(cols[0], np.int64), keys)
    if runs is not None:
        return runs
    return np.argsort(keys[0], kind="stable") if len(keys) == 1 else np.lexsort(keys[::-1])


def _runs_in_order(first: np.ndarray, keys: list[np.ndarray]) -> np.ndarray | None:
    """The stable order by ``keys`` when moving whole runs of equal ``first`` values gives it.

    Rows often come in runs of one value of the first column (a traceroute's hop rows,
    traceroutes in the order they arrived): the runs, few, are sorted by that value
    (stably), and if the rows are then in order by every key the permutation is the
    stable sort (rows of equal keys keep their order). None otherwise, or when runs are
    too many for this to pay.
    """
    n = len(first)
    heads = _run_heads([first])
    if len(heads) > n >> 3:
        return None
    lengths = np.diff(np.append(heads, n))
    by_value = np.argsort(first[heads], kind="stable")
    # the rows of the runs in their new order: each run's start, then its offsets
    starts, lengths = heads[by_value], lengths[by_value]
    order = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(n)
    return order if _in_order([k[order] for k in keys]) else None


def group_ids(*cols: np.ndarray) -> np.ndarray:
    """Per row, the id of its ``cols`` value: rows with equal values share one, and ids
    count the distinct values in the order they first appear. Sorting rows by it brings
    each value's rows together, in their order; rows already together stay where they are.

    Only the first row of each run of equal values is looked at (a traceroute's hop rows
    lie together: some thousand runs for a million rows).

    >>> group_ids(np.array([5, 5, 2, 2, 5]), np.array([1, 1, 0, 0, 1])).tolist()
    [0, 0, 1, 1, 0]
    """
    n = len(cols[0])
    if not n:
        return np.empty(0, np.int64)
    cs = [np.asarray(c, np.int64) for c in cols]
    heads = _run_heads(cs)
    at = [c[heads] for c in cs]
    order = lex_order(*at)
    new = np.zeros(len(heads), bool)  # where a value begins among the sorted runs
    new[_run_heads([c[order] for c in at])] = True
    rank = np.empty(len(heads), np.int64)  # of the value, in sorted order
    rank[order] = np.cumsum(new) - 1
    # renumbered by first appearance: the first run of each value (stable sort: the earliest)
    first_run = order[new]
    ids = np.empty(len(first_run), np.int64)
    ids[np.argsort(first_run, kind="stable")] = np.arange(len(first_run))
    return np.repeat(ids[rank], np.diff(np.append(heads, n)))


def _run_heads(cols: list[np.ndarray]) -> np.ndarray:
    """Rows where a run of equal values of ``cols`` (non-empty) begins."""
    return np.flatnonzero(np.concatenate([[True], np.logical_or.reduce([c[1:] != c[:-1] for c in cols])]))


def _in_order(keys: list[np.ndarray]) -> bool:
    """Whether the rows are already sorted by ``keys`` (most significant first)."""
    tied = None  # adjacent pairs equal on the keys so far
    for key in keys:
        before, after = key[:-1], key[1:]
        down = after < before
        if (down if tied is None else down & tied).any():
            return False
        same = after == before
        tied = same if tied is None else tied & same
        if not tied.any():
            return True
    return True


def sum_by(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    """One row per distinct ``keys`` (nulls a key of their own): the keys, then every other
    column of ``table`` summed, under its own name and in its own order.

    >>> sum_by(pa.table({"k": ["a", "b", "a"], "n": [1, 2, 3]}), ["k"]).to_pylist()
    [{'k': 'a', 'n': 4}, {'k': 'b', 'n': 2}]
    """
    values = [c for c in table.column_names if c not in keys]
    out = table.group_by(list(keys), use_threads=False).aggregate([(c, "sum") for c in values])
    return out.select([*keys, *(f"{c}_sum" for c in values)]).rename_columns([*keys, *values])


def node_attributes_sql(con: duckdb.DuckDBPyConnection, weight: str | None = None) -> pa.Table:
    """The node attribute query over relation ``a`` (an annotated hop table or its files;
    with ``weight``, a column of ``a`` saying how many hop rows each row stands for).

    Each attribute is the node's most frequent non-null value, ties going to the
    alphabetically first: the counts per (node, value) in one scan (grouping sets), then
    the smallest ``(-count, value)``. DuckDB's ``mode()`` picks among ties by the order
    its threads meet the rows, which changes from run to run (an AS whose addresses lie in
    RIR blocks of two countries, seen as often in each).
    """
    rows, w = ("count(*)", "1") if weight is None else ("sum(w)", weight)
    rows_a = "count(*)" if weight is None else f"sum({weight})"
    return con.sql(
        f"""
        WITH x AS (
          SELECT CASE WHEN ixp_id IS NOT NULL THEN member_asn ELSE asn END AS node_asn,
                 org, family, as_country, {w} AS w
          FROM a WHERE (ixp_id IS NOT NULL OR ip_class = 'public' OR ip_class IS NULL)
        ), asc_ AS (
          SELECT node_asn, org, family, as_country, {rows} AS n,
                 GROUPING(org) AS g1, GROUPING(family) AS g2, GROUPING(as_country) AS g3
          FROM x WHERE node_asn IS NOT NULL
          GROUP BY GROUPING SETS ((node_asn, org), (node_asn, family), (node_asn, as_country))
        ), ixc AS (
          SELECT ixp_id, ixp_country, ixp_name, ixp_city, {rows_a} AS n,
                 GROUPING(ixp_country) AS g1, GROUPING(ixp_name) AS g2, GROUPING(ixp_city) AS g3
          FROM a WHERE ixp_id IS NOT NULL
          GROUP BY GROUPING SETS ((ixp_id, ixp_country), (ixp_id, ixp_name), (ixp_id, ixp_city))
        )
        SELECT 'AS' || node_asn::VARCHAR AS node, 'as' AS kind, node_asn AS asn,
               min((-n, org)) FILTER (WHERE g1 = 0 AND org IS NOT NULL)[2] AS org,
               min((-n, family)) FILTER (WHERE g2 = 0 AND family IS NOT NULL)[2] AS family,
               min((-n, as_country)) FILTER (WHERE g3 = 0 AND as_country IS NOT NULL)[2] AS country,
               NULL::VARCHAR AS name, NULL::VARCHAR AS city
        FROM asc_ GROUP BY node_asn
        UNION ALL
        SELECT 'IXP:' || ixp_id, 'ixp', NULL::BIGINT, NULL::VARCHAR, NULL::VARCHAR,
               min((-n, ixp_country)) FILTER (WHERE g1 = 0 AND ixp_country IS NOT NULL)[2],
               min((-n, ixp_name)) FILTER (WHERE g2 = 0 AND ixp_name IS NOT NULL)[2],
               min((-n, ixp_city)) FILTER (WHERE g3 = 0 AND ixp_city IS NOT NULL)[2]
        FROM ixc GROUP BY ixp_id
        ORDER BY node
        """
    ).to_arrow_table()


def replying_attributes_sql(source: str, where: str, country: str = "as_country", weight: str | None = None) -> str:
    """A subquery: per reply address of relation ``source`` (rows matching ``where``), its
    AS (the member AS at an IXP) and ``country`` as ``dst_addr, dst_asn, dst_country``
    (``weight``: as in :func:`node_attributes_sql`).

    Each is the address's most frequent non-null value, ties going to the smallest, as in
    :func:`node_attributes_sql`: DuckDB's ``mode()`` picks among ties by the order its
    threads meet the rows, so two annotations of one address seen as often would give a
    destination AS that changes from run to run.
    """
    return f"""
        SELECT dst_addr,
               min((-n, v_asn)) FILTER (WHERE g1 = 0 AND v_asn IS NOT NULL)[2] AS dst_asn,
               min((-n, v_country)) FILTER (WHERE g2 = 0 AND v_country IS NOT NULL)[2] AS dst_country
        FROM (SELECT dst_addr, v_asn, v_country, {"count(*)" if weight is None else "sum(w)"} AS n,
                     GROUPING(v_asn) AS g1, GROUPING(v_country) AS g2
              FROM (SELECT reply_from AS dst_addr,
                           CASE WHEN ixp_id IS NOT NULL THEN member_asn ELSE asn END AS v_asn,
                           {country} AS v_country{"" if weight is None else f", {weight} AS w"}
                    FROM {source} WHERE {where})
              GROUP BY GROUPING SETS ((dst_addr, v_asn), (dst_addr, v_country)))
        GROUP BY dst_addr"""


def override_families(table: pa.Table, registry: RegistryLike | None) -> pa.Table:
    """Node attributes with ``family`` looked up in ``registry`` (unchanged when None)."""
    if registry is not None:
        asn = int_np(table.column("asn"))
        fams = registry_lookup(registry, asn)
        table = table.set_column(table.schema.get_field_index("family"), "family", fams)
    return table


def registry_lookup(registry: RegistryLike, asn: np.ndarray) -> pa.Array:
    """Family id per ASN (null when not flagged or ``asn < 0``)."""
    if hasattr(registry, "lookup"):
        fam, _via = registry.lookup(pa.array(asn, pa.int64(), mask=asn < 0))
        return fam.cast(pa.string())
    uniq, inv = np.unique(asn, return_inverse=True)
    names = [registry.get(int(a)) if a >= 0 else None for a in uniq]
    return pa.array(names, pa.string()).take(pa.array(inv.astype(np.int64)))


def registry_family_ids(registry: RegistryLike) -> list[str]:
    """The family ids a registry (or ``asn -> family`` mapping) knows."""
    if hasattr(registry, "families"):
        return list(registry.families)
    return sorted(set(registry.values()))


def index_in(values: pa.Array | pa.ChunkedArray, keys: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``pc.index_in`` of string ``values`` in ``keys``: where each value first occurs among
    the keys (null when absent or null). A dictionary-encoded chunk is looked up once per
    dictionary entry, not once per row.

    >>> d = pa.DictionaryArray.from_arrays(pa.array([1, 0, None, 1], pa.int32()), ["x", "b"])
    >>> index_in(d, pa.array(["a", "b"])).to_pylist()
    [1, None, None, 1]
    """
    keys = keys.cast(pa.string())
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks() if keys.num_chunks else pa.array([], pa.string())
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    if keys.null_count:  # a null value finds a null key: look every row up
        chunks = [c.cast(pa.string()) for c in chunks]
    out = [
        pc.index_in(c.dictionary.cast(pa.string()), keys).take(c.indices)
        if pa.types.is_dictionary(c.type)
        else pc.index_in(c.cast(pa.string()), keys)
        for c in chunks
    ]
    return pa.concat_arrays(out) if out else pa.array([], pa.int32())


def string_codes(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Per row a code of its string: equal codes for equal strings, -1 for null. A
    dictionary-encoded column gives its own indices (its chunks' dictionaries unified)
    rather than a hash of every row.

    >>> string_codes(pa.chunked_array([["b", None, "a"], ["a", "b"]])).tolist()
    [0, -1, 1, 1, 0]
    """
    if isinstance(col, pa.Array):
        col = pa.chunked_array([col])
    if not len(col):
        return np.empty(0, np.int64)
    if not pa.types.is_dictionary(col.type):
        col = pc.dictionary_encode(col.cast(pa.string()))  # one dictionary for every chunk
    col = col.unify_dictionaries()
    values = col.chunk(0).dictionary
    if len(pc.unique(values)) < len(values):  # a dictionary that repeats a value: encode the values
        return string_codes(col.cast(values.type))
    return np.concatenate([int_np(c.indices) for c in col.chunks])


def plain(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """``col`` decoded to its value type when it is dictionary-encoded (else ``col``)."""
    return col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col


def plain_columns(table: pa.Table) -> pa.Table:
    """``table`` with every dictionary-encoded column decoded to its value type (:func:`plain`).

    >>> t = pa.table({"x": pa.DictionaryArray.from_arrays(pa.array([1, 0, None], pa.int32()), ["a", "b"])})
    >>> plain_columns(t).column("x").to_pylist(), plain_columns(t).schema.field("x").type
    (['b', 'a', None], DataType(string))
    """
    if not any(pa.types.is_dictionary(f.type) for f in table.schema):
        return table
    fields = [pa.field(f.name, f.type.value_type, f.nullable, f.metadata) if pa.types.is_dictionary(f.type) else f
              for f in table.schema]
    return pa.Table.from_arrays([plain(c) for c in table.columns],
                                schema=pa.schema(fields, metadata=table.schema.metadata))


#: The hop flags that make a reply stale: late (it answered an earlier probe) or a duplicate.
STALE_FLAGS = ("late", "dup")


def stale_replies(hops: pa.Table) -> np.ndarray:
    """Per row, whether the reply is late or a duplicate (:data:`STALE_FLAGS`; a null flag
    or a table without the column: not). :func:`stale_reply_sql` is the same test in SQL.

    >>> stale_replies(pa.table({"late": [True, None, False], "dup": [False, True, None]})).tolist()
    [True, True, False]
    """
    stale = np.zeros(hops.num_rows, bool)
    for flag in STALE_FLAGS:
        if flag in hops.column_names:
            stale |= np.asarray(pc.fill_null(hops.column(flag), False).to_numpy(zero_copy_only=False), bool)
    return stale


def stale_reply_sql(columns: Sequence[str], prefix: str = "") -> str:
    """SQL: the reply is late or a duplicate, by the :data:`STALE_FLAGS` among ``columns``
    (the SQL twin of :func:`stale_replies`).

    >>> stale_reply_sql(["late", "hop"], "a.")
    'coalesce(a.late, false)'
    """
    return " OR ".join(f"coalesce({prefix}{c}, false)" for c in STALE_FLAGS if c in columns) or "false"
