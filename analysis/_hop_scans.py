"""analyze's campaign-wide questions over the annotated hops, answered file by file.

Before its per-segment paths, analyze asks questions of every hop row of the campaign:
the replies grouped by address and annotation (:func:`address_rows`), each probe's
smallest RTT to each destination (:func:`destination_pair_rtts`), the small RTT discs
that can prove a probe misplaced (:func:`near_discs`), and the RTT discs of the flagged
routers (:func:`rtt_discs`). Each answer is a grouping whose aggregates merge exactly
(a minimum of minima, a sum of counts, a union of distinct values), so the files are
reduced by ``runner`` and the reductions merged here by the same grouping. On Dask each
file is a task: the work grows with the workers, and the client, which may not even
see the files quickly, no longer scans the campaign whatever the number of workers. On
the local engine all files are one task: one DuckDB query over every file already
spreads over the cores. The owner-independent reductions come from one pass
(:func:`scan_files`); the flagged routers' discs need the owners, so they take two more
(the wanted addresses, then their RTTs).

A column that some files have and others lack reads as null in the files without it, as
DuckDB's ``union_by_name`` gives over the whole campaign (:func:`file_columns`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from analysis._tables import connect, int_np, registry_lookup, stale_reply_sql
from probes.engine import Runner

__all__ = ["ADDRESS_COLUMNS", "FileScans", "address_rows", "destination_pair_rtts", "file_columns",
           "near_discs", "rtt_discs", "scan_files"]

#: The annotation columns :func:`address_rows` keeps (absent ones are null strings).
ADDRESS_COLUMNS = ("asn", "member_asn", "ixp_id", "ip_class", "family", "as_country", "org",
                   "ixp_name", "ixp_city", "ixp_country")
#: Replies at most this many ms away make the discs that can prove a probe misplaced.
NEAR_MAX_RTT = 20.0
#: The smallest discs of an address kept for that proof.
NEAR_PER_ADDR = 16

PAIR_SCHEMA = pa.schema([("prb_id", pa.int64()), ("dst_addr", pa.string()), ("dst_rtt_ms", pa.float64())])


def file_columns(files: Sequence[Path]) -> dict[str, str]:
    """The annotated files' columns and DuckDB types, read the ``union_by_name`` way."""
    con = connect()
    try:
        return {r[0]: r[1] for r in con.sql("DESCRIBE SELECT * FROM read_parquet($files, union_by_name=true)",
                                            params={"files": [str(f) for f in files]}).fetchall()}
    finally:
        con.close()


#: The type of a scanned column that no file has (any other: a string).
_ABSENT_TYPES = {"msm_id": "BIGINT", "prb_id": "BIGINT", "timestamp": "TIMESTAMP WITH TIME ZONE", "hop": "BIGINT",
                 "attempt": "BIGINT", "rtt": "DOUBLE", "late": "BOOLEAN", "dup": "BOOLEAN", "asn": "BIGINT",
                 "member_asn": "BIGINT"}


def _relation(paths: Sequence[str], types: Mapping[str, str], wanted: Sequence[str]) -> str:
    """SQL: the ``wanted`` columns of some annotated files (``$files``), a column none of
    them has as a null of the campaign's type (the row set ``read_parquet(union_by_name=true)``
    over every file gives them; :data:`_ABSENT_TYPES` where no file has it)."""
    have = {n for p in paths for n in pq.read_schema(p).names}
    sel = ", ".join(f'"{c}"' if c in have else f'NULL::{types.get(c, _ABSENT_TYPES.get(c, "VARCHAR"))} AS "{c}"' for c in wanted)
    return f"(SELECT {sel} FROM read_parquet($files, union_by_name=true))"


def _batches(files: Sequence[Path], runner: Runner) -> list[list[str]]:
    """The tasks' files: one each on Dask workers; all in one on the local engine, where one
    query over every file is spread over the cores by DuckDB itself (file-sized queries on
    the runner's threads, each with DuckDB's threads, took longer: 3.0 s against 2.6 s at
    1M results)."""
    names = [str(f) for f in files]
    return [names] if runner.engine == "local" else [[n] for n in names]


def _merged(parts: list[pa.Table], sql: str, **tables: pa.Table) -> pa.Table:
    """``sql`` over the per-file reductions (registered as ``p``) and ``tables``."""
    con = connect()
    try:
        con.register("p", pa.concat_tables(parts, promote_options="permissive"))
        for name, table in tables.items():
            con.register(name, table)
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()


@dataclass(frozen=True)
class FileScans:
    """The owner-independent reductions of the annotated files, merged (:func:`scan_files`).

    ``addresses``: :func:`address_rows`. ``pair_rtts``: :func:`destination_pair_rtts`.
    ``near``: each public reply address's minimum RTT from each probe, at most
    :data:`NEAR_MAX_RTT` ms, replies from the traceroute's destination and stale ones left
    out (``addr, prb_id, rtt``; :func:`near_discs` places them). ``access``: each probe's
    minimum RTT to any public address (``prb_id, base``; the RTT floor's allowance).
    ``family_asns``: the origin ASes the annotation gave a family.
    """

    addresses: pa.Table
    pair_rtts: pa.Table
    near: pa.Table
    access: pa.Table
    family_asns: np.ndarray


def _reply_sql(columns: Sequence[str]) -> str:
    """SQL: a reply with an RTT, neither late nor a duplicate (what every disc is drawn from)."""
    return f"rtt IS NOT NULL AND rtt >= 0 AND reply_from IS NOT NULL AND NOT ({stale_reply_sql(columns)})"


def _file_queries(columns: Sequence[str]) -> dict[str, str]:
    """What a task of :func:`scan_files` reduces its files to: name -> SQL over their rows
    ``h``. :func:`scan_files` merges them by the same groupings, so the merge is exact."""
    sel = ", ".join(c if c in columns else f"NULL::VARCHAR AS {c}" for c in ADDRESS_COLUMNS)
    # without an ip_class column every address may make a small disc, and none is the access network
    public = "ip_class = 'public'" if "ip_class" in columns else "true"
    access = "ip_class = 'public'" if "ip_class" in columns else "false"
    not_dst = "reply_from IS DISTINCT FROM dst_addr" if "dst_addr" in columns else "true"
    reply = _reply_sql(columns)
    return {
        "addresses": f"SELECT reply_from, {sel}, count(*) AS n, "
                     "min(struct_pack(m := msm_id, p := prb_id, t := timestamp, h := hop, n := attempt)) AS k "
                     "FROM h WHERE reply_from IS NOT NULL GROUP BY ALL",
        # each probe's access allowance rides in the same grouping (a minimum of minima)
        "pair_rtts": "SELECT prb_id, dst_addr, min(rtt) FILTER (WHERE reply_from = dst_addr AND rtt IS NOT NULL) "
                     f"AS dst_rtt_ms, min(rtt) FILTER (WHERE {reply} AND {access}) AS base "
                     "FROM h GROUP BY prb_id, dst_addr",
        "near": f"SELECT reply_from AS addr, prb_id, min(rtt) AS rtt FROM h WHERE {reply} "
                f"AND rtt <= {NEAR_MAX_RTT} AND {public} AND {not_dst} GROUP BY reply_from, prb_id",
        "family_asns": "SELECT DISTINCT asn FROM h WHERE family IS NOT NULL AND asn IS NOT NULL",
    }


_SCANNED = ("reply_from", "msm_id", "prb_id", "timestamp", "hop", "attempt", "rtt", "dst_addr", "late", "dup",
            *ADDRESS_COLUMNS)


def _scan_files(paths: list[str], ctx: Mapping[str, Any]) -> dict[str, pa.Table]:
    """Annotated files' reductions (a task of :func:`scan_files`)."""
    types, columns = ctx["types"], ctx["columns"]
    rel = _relation(paths, types, _SCANNED)
    con = connect()
    try:
        # each query reads the columns it needs from the files (faster than decoding every
        # column once into a table and scanning that four times)
        return {name: con.sql(f"WITH h AS {rel} {sql}", params={"files": paths}).to_arrow_table()
                for name, sql in _file_queries(columns).items()}
    finally:
        con.close()


def scan_files(files: Sequence[Path], columns: Sequence[str], runner: Runner | None = None,
               types: Mapping[str, str] | None = None) -> FileScans:
    """The owner-independent reductions of the annotated ``files`` (:class:`FileScans`),
    computed by ``runner`` (default: the local engine; :func:`_batches`) and merged here.

    ``columns``: the campaign's annotated columns (the union over the files); ``types``
    their DuckDB types (default: read from the files, :func:`file_columns`).
    """
    types = dict(types) if types is not None else file_columns(files)
    parts: dict[str, list[pa.Table]] = {}
    shared = {"types": types, "columns": list(columns)}
    runner = runner or Runner()
    for got in runner.map(_scan_files, _batches(files, runner), shared=shared):
        for name, table in got.items():
            parts.setdefault(name, []).append(table)
    sel = ", ".join(ADDRESS_COLUMNS)
    return FileScans(
        addresses=_merged(parts["addresses"], f"SELECT reply_from, {sel}, sum(n)::BIGINT AS n, min(k) AS k "
                                              f"FROM p GROUP BY reply_from, {sel}"),
        pair_rtts=_merged(parts["pair_rtts"], "SELECT prb_id, dst_addr, min(dst_rtt_ms) AS dst_rtt_ms FROM p "
                                              "GROUP BY prb_id, dst_addr ORDER BY prb_id, dst_addr").cast(PAIR_SCHEMA),
        near=_merged(parts["near"], "SELECT addr, prb_id, min(rtt) AS rtt FROM p GROUP BY addr, prb_id"),
        access=_merged(parts["pair_rtts"], "SELECT prb_id, min(base) AS base FROM p GROUP BY prb_id "
                                           "HAVING min(base) IS NOT NULL"),
        family_asns=np.unique(np.concatenate([int_np(t.column("asn")) for t in parts["family_asns"]])),
    )


def address_rows(files: Sequence[Path], columns: Sequence[str], runner: Runner | None = None) -> pa.Table:
    """The campaign's replies grouped by address and annotation: ``reply_from``,
    :data:`ADDRESS_COLUMNS`, the hop rows ``n`` and the first row's key ``k`` (``msm_id,
    prb_id, timestamp, hop, attempt``), in no set order.

    The annotation is a function of the address (one snapshot and registry per campaign),
    so this is one row per reply address, or a few where segments were annotated apart
    (RDAP answers online). Counting and first-row questions over the hop rows have the
    same answers over these rows weighted by ``n``: the node attributes, the replying
    destinations' AS and country, the owners' per-address attributes. They read this
    instead of scanning every hop row three times.
    """
    return scan_files(files, columns, runner).addresses


def destination_pair_rtts(files: Sequence[Path], columns: Sequence[str], runner: Runner | None = None) -> pa.Table:
    """Each probe's smallest RTT to each destination (``prb_id, dst_addr, dst_rtt_ms``;
    null when the probe never reached it), sorted: the replies from the traceroute's
    destination only; what :func:`analysis.destinations.locate_destinations` reads, and the
    fallback RTT of a traceroute whose destination did not reply."""
    return scan_files(files, columns, runner).pair_rtts


def near_discs(near: pa.Table, probe_meta: pa.Table, per_addr: int = NEAR_PER_ADDR) -> pa.Table:
    """The small RTT discs of every public address two or more located probes saw
    (``addr, prb_id, lat, lon, rtt``), from :attr:`FileScans.near`: each probe's minimum
    RTT, at most :data:`NEAR_MAX_RTT` ms, the ``per_addr`` smallest per address. Disjoint
    discs of one address prove a probe misplaced (:func:`analysis.paths.misplaced_probes`);
    small discs are the ones that can be. Replies from the traceroute's destination are
    left out: services are often anycast."""
    return _merged([near], f"""
        WITH r AS (
            SELECT p.addr, p.prb_id, q.latitude AS lat, q.longitude AS lon, p.rtt,
                   row_number() OVER (PARTITION BY p.addr ORDER BY p.rtt, p.prb_id) AS k,
                   count(*) OVER (PARTITION BY p.addr) AS n
            FROM p JOIN probes q USING (prb_id)
            WHERE q.latitude IS NOT NULL AND q.longitude IS NOT NULL
        )
        SELECT addr, prb_id, lat, lon, rtt FROM r WHERE n >= 2 AND k <= {int(per_addr)} ORDER BY addr, prb_id
        """, probes=probe_meta.select(["prb_id", "latitude", "longitude"]))


def _flagged_addresses(paths: list[str], ctx: Mapping[str, Any]) -> pa.Table:
    """Files' addresses whose RTT discs :func:`rtt_discs` draws: the flagged replies
    (a family, or an address the owners flag) and the hop right before one in the same
    traceroute (the link's far end)."""
    types, columns = ctx["types"], ctx["columns"]
    reply = _reply_sql(columns)
    rel = _relation(paths, types, ("msm_id", "prb_id", "timestamp", "hop", "reply_from", "rtt", "family", "late", "dup"))
    con = connect()
    try:
        con.register("extra", pa.table({"addr": ctx["extra"]}))
        return con.sql(
            f"""
            WITH h AS NOT MATERIALIZED (  -- read twice, never held: all the files' replies
                SELECT msm_id, prb_id, timestamp, hop, reply_from, family FROM {rel} WHERE {reply}),
            f AS (SELECT msm_id, prb_id, timestamp, hop, reply_from FROM h
                  WHERE family IS NOT NULL OR reply_from IN (SELECT addr FROM extra))
            SELECT DISTINCT reply_from AS addr FROM f
            UNION
            SELECT h.reply_from FROM h SEMI JOIN f ON f.msm_id = h.msm_id AND f.prb_id = h.prb_id
                AND f.timestamp = h.timestamp AND f.hop = h.hop + 1
            """, params={"files": paths}).to_arrow_table()
    finally:
        con.close()


def _wanted_rtts(paths: list[str], ctx: Mapping[str, Any]) -> pa.Table:
    """Files' minimum RTT per wanted address and probe (``addr, prb_id, rtt``)."""
    types, columns = ctx["types"], ctx["columns"]
    reply = _reply_sql(columns)
    rel = _relation(paths, types, ("prb_id", "reply_from", "rtt", "late", "dup"))
    con = connect()
    try:
        con.register("wanted", ctx["wanted"])
        return con.sql(
            f"SELECT reply_from AS addr, prb_id, min(rtt) AS rtt FROM {rel} WHERE {reply} "
            "AND reply_from IN (SELECT addr FROM wanted) GROUP BY reply_from, prb_id",
            params={"files": paths}).to_arrow_table()
    finally:
        con.close()


def rtt_discs(files: Sequence[Path], columns: Sequence[str], scans: FileScans, owners: pa.Table | None,
              registry: Any, probe_meta: pa.Table, runner: Runner | None = None,
              types: Mapping[str, str] | None = None) -> pa.Table | None:
    """Per flagged reply address, each probe that saw it (with a location) and its minimum RTT.

    The speed-of-light discs the PoP location search intersects (``addr, prb_id, lat, lon,
    rtt, base``), over the whole campaign: addresses in a flagged family by origin
    (``family``) or by owner (the ownership stage), and the hop right before one. Late and
    duplicate replies are left out. ``base`` is the probe's minimum RTT to any public
    address (its access network; the RTT floor's allowance), null without an ``ip_class``
    column. Two passes over the files on ``runner``: the wanted addresses, then their RTTs.
    """
    if "family" not in columns or not probe_meta.num_rows:
        return None
    types = dict(types) if types is not None else file_columns(files)
    extra = pa.array([], pa.string())
    if owners is not None and owners.num_rows:
        owner = int_np(owners.column("owner_asn"))
        if registry is not None:
            flagged = pc.is_valid(registry_lookup(registry, owner))
        else:  # the families annotate gave the origin ASes
            flagged = pa.array(np.isin(owner, scans.family_asns))
        extra = owners.column("addr").filter(flagged).combine_chunks().cast(pa.string())
    runner = runner or Runner()
    names = _batches(files, runner)
    shared = {"types": types, "columns": list(columns)}
    found = [t.column(0).cast(pa.string())
             for t in runner.map(_flagged_addresses, names, shared={**shared, "extra": extra})]
    wanted = pa.table({"addr": pc.unique(pa.chunked_array(found, pa.string()))})
    parts = list(runner.map(_wanted_rtts, names, shared={**shared, "wanted": wanted}))
    if not parts:
        return None
    return _merged(parts, """
        WITH m AS (SELECT addr, prb_id, min(rtt) AS rtt FROM p GROUP BY addr, prb_id)
        SELECT m.addr, m.prb_id, q.latitude AS lat, q.longitude AS lon, m.rtt, a.base
        FROM m JOIN probes q USING (prb_id) LEFT JOIN access a USING (prb_id)
        WHERE q.latitude IS NOT NULL AND q.longitude IS NOT NULL
        ORDER BY ALL
        """, probes=probe_meta.select(["prb_id", "latitude", "longitude"]), access=scans.access)
