"""The hop annotator: IP -> origin AS, IXP, IXP member, organisation, flagged family.

:func:`annotate` is a pure table function (hop table in, annotated hop table out) over a
pinned :class:`~analysis.datasets.Snapshot`, with no I/O of its own (the RDAP fallback
aside, and only with ``online=True``); :func:`analysis.campaign_io.annotate_campaign` runs
it over a campaign's hop segments and writes ``<campaign>/annotated/*.parquet`` and
``<campaign>/annotate.json``.

Resolution order for one reply address (all steps vectorized over the *unique* addresses):

1. ``ip_class`` from the special-purpose registries; only ``public`` addresses go on.
2. IXP peering LAN (PeeringDB ``ixpfx``, CAIDA IXP prefixes, PCH subnets; longest match,
   PeeringDB first among equal prefixes) and the member holding the interface (PeeringDB
   ``netixlan``, then PCH membership) -> ``resolved_by="ixp"``.
3. Origin AS by longest-prefix match in CAIDA prefix2as -> ``resolved_by="pfx2as"``.
4. RIR delegation (+ the registry's static prefixes, e.g. CN2 59.43.0.0/16 -> China
   Telecom, when the delegation confirms registry and country) -> ``resolved_by="rir"``.
5. ipwhois RDAP, only with ``online=True`` (cached on disk, rate-limited) -> ``"rdap"``.

``org`` and ``as_country`` come from CAIDA as2org for the member AS on an IXP LAN, else the
origin AS; ``org`` falls back to the AS name (``asnames``) and ``as_country`` to the RIR
delegation country. ``family`` is the
registry family of that AS (``family_via="registry"``, or ``"as2org-sibling"``), or of a
static prefix (``"rir-static"``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analysis import _lpm
from analysis._ipclass import CLASSES, classify
from analysis.datasets import Snapshot
from analysis.errors import SchemaMismatch
from analysis.registry import Registry, load_registry, with_siblings
from probes.fileio import column_options, gathered_parquet

__all__ = [
    "ANNOTATION_FIELDS",
    "WRITTEN_FIELDS",
    "annotate",
    "annotation_file",
    "parquet_options",
]

#: Columns appended to the hop table (in this order).
ANNOTATION_FIELDS = pa.schema(
    [
        pa.field("asn", pa.int64()),
        pa.field("asns", pa.list_(pa.int64())),
        pa.field("moas", pa.bool_()),
        pa.field("prefix", pa.string()),
        pa.field("ip_class", pa.string()),
        pa.field("ixp_id", pa.string()),
        pa.field("ixp_name", pa.string()),
        pa.field("ixp_city", pa.string()),
        pa.field("ixp_country", pa.string()),
        pa.field("ixp_lat", pa.float64()),
        pa.field("ixp_lon", pa.float64()),
        pa.field("member_asn", pa.int64()),
        pa.field("org", pa.string()),
        pa.field("as_country", pa.string()),
        pa.field("family", pa.string()),
        pa.field("family_via", pa.string()),
        pa.field("resolved_by", pa.string()),
    ]
)

#: :data:`ANNOTATION_FIELDS` as :func:`annotation_file` writes them: the strings, stored
#: dictionary-encoded, are read back so by pyarrow (DuckDB reads plain strings;
#: :func:`analysis._tables.plain_columns` decodes them for pyarrow users).
WRITTEN_FIELDS = pa.schema(
    [pa.field(f.name, pa.dictionary(pa.int32(), f.type)) if f.type == pa.string() else f for f in ANNOTATION_FIELDS]
)


def _derived(snapshot: Snapshot, key: str, build: Any) -> Any:
    """Per-snapshot cache of structures built from its tables (IXP index, member index)."""
    k = ("derived", key)
    if k not in snapshot._tables:
        snapshot._tables[k] = build(snapshot)
    return snapshot._tables[k]


# ----------------------------------------------------------------------------- IXP index


def _build_ixp_index(snap: Snapshot) -> dict | None:
    """One prefix table over every IXP source, plus its LPM intervals per family."""
    rows: dict[str, list] = {k: [] for k in ("prefix", "ixp_id", "name", "city", "country", "lat", "lon")}
    pdb_loc: dict[int, tuple[float, float]] = {}
    pdb_ix: dict[int, tuple[str | None, str | None, str | None]] = {}
    if snap.has("peeringdb"):
        ix = snap.table("peeringdb", "ix").to_pylist()
        pdb_ix = {r["id"]: (r["name"], r["city"], r["country"]) for r in ix}
        fac = {r["id"]: (r["latitude"], r["longitude"]) for r in snap.table("peeringdb", "fac").to_pylist()}
        locs: dict[int, list[tuple[float, float]]] = {}
        for r in snap.table("peeringdb", "ixfac").to_pylist():
            ll = fac.get(r["fac_id"])
            if ll and ll[0] is not None and ll[1] is not None:
                locs.setdefault(r["ix_id"], []).append(ll)
        pdb_loc = {k: (float(np.median([a for a, _ in v])), float(np.median([b for _, b in v]))) for k, v in locs.items()}
        ixlan = {r["id"]: r["ix_id"] for r in snap.table("peeringdb", "ixlan").to_pylist()}
        for r in snap.table("peeringdb", "ixpfx").to_pylist():
            ix_id = ixlan.get(r["ixlan_id"])
            if ix_id is None or r["prefix"] is None:
                continue
            name, city, cc = pdb_ix.get(ix_id, (None, None, None))
            lat, lon = pdb_loc.get(ix_id, (None, None))
            for k, v in zip(rows, (r["prefix"], f"pdb:{ix_id}", name, city, cc, lat, lon), strict=True):
                rows[k].append(v)
    pch_to_pdb: dict[int, int] = {}
    if snap.has("caida-ixp"):
        ixs = {r["ix_id"]: r for r in snap.table("caida-ixp", "ixs").to_pylist()}
        for r in ixs.values():
            if r["pch_id"] is not None and r["pdb_id"] is not None:
                pch_to_pdb[r["pch_id"]] = r["pdb_id"]
        for r in snap.table("caida-ixp", "prefixes").to_pylist():
            x = ixs.get(r["ix_id"], {})
            pdb_id = x.get("pdb_id")
            ixp_id = f"pdb:{pdb_id}" if pdb_id is not None else f"caida:{r['ix_id']}"
            name, city, cc = pdb_ix.get(pdb_id, (None, None, None)) if pdb_id is not None else (None, None, None)
            lat, lon = pdb_loc.get(pdb_id, (x.get("latitude"), x.get("longitude"))) if pdb_id is not None else (x.get("latitude"), x.get("longitude"))
            for k, v in zip(rows, (r["prefix"], ixp_id, name or x.get("name"), city or x.get("city"),
                                   cc or x.get("country"), lat, lon), strict=True):
                rows[k].append(v)
    if snap.has("pch-subnets"):
        for r in snap.table("pch-subnets", "prefixes").to_pylist():
            pdb_id = pch_to_pdb.get(r["pch_id"]) if r["pch_id"] is not None else None
            if pdb_id is not None:
                ixp_id = f"pdb:{pdb_id}"
                name, city, cc = pdb_ix.get(pdb_id, (r["name"], r["city"], r["country"]))
                lat, lon = pdb_loc.get(pdb_id, (None, None))
            else:
                ixp_id = f"pch:{r['pch_id'] if r['pch_id'] is not None else r['name']}"
                name, city, cc, lat, lon = r["name"], r["city"], r["country"], None, None
            for k, v in zip(rows, (r["prefix"], ixp_id, name or r["name"], city or r["city"], cc or r["country"], lat, lon), strict=True):
                rows[k].append(v)
    if not rows["prefix"]:
        return None
    af, hi, lo, plen = _lpm.parse_prefixes(rows["prefix"], where="IXP prefixes")
    table = pa.table(
        {
            "ixp_id": pa.array(rows["ixp_id"], pa.string()),
            "ixp_name": pa.array(rows["name"], pa.string()),
            "ixp_city": pa.array(rows["city"], pa.string()),
            "ixp_country": pa.array(rows["country"], pa.string()),
            "ixp_lat": pa.array(rows["lat"], pa.float64()),
            "ixp_lon": pa.array(rows["lon"], pa.float64()),
        }
    )
    ivs = {}
    for v, width in ((4, 32), (6, 128)):
        sel = np.flatnonzero(af == v)
        iv = _lpm.flatten(hi[sel], lo[sel], plen[sel], width=width)
        owner = np.where(iv.owner >= 0, sel[np.maximum(iv.owner, 0)], -1) if sel.size else iv.owner
        ivs[v] = _lpm.Intervals(iv.start_hi, iv.start_lo, owner)
    return {"table": table, "intervals": ivs}


def _build_member_index(snap: Snapshot) -> dict | None:
    """IXP interface address -> member ASN (+ PeeringDB ix id), PeeringDB first."""
    addrs: list[str] = []
    asn: list[int] = []
    ixp: list[str | None] = []
    if snap.has("peeringdb"):
        for r in snap.table("peeringdb", "netixlan").to_pylist():
            for a in (r["ipaddr4"], r["ipaddr6"]):
                if a and r["asn"] is not None:
                    addrs.append(a)
                    asn.append(r["asn"])
                    ixp.append(f"pdb:{r['ix_id']}" if r["ix_id"] is not None else None)
    if snap.has("pch-membership"):
        m = snap.table("pch-membership", "members")
        addrs.extend(m["ip"].to_pylist())
        asn.extend(m["asn"].to_pylist())
        ixp.extend([None] * m.num_rows)
    if not addrs:
        return None
    af, hi, lo, ok = _lpm.parse_addresses(pa.array(addrs, pa.string()))
    rows = np.flatnonzero(ok)
    # sort by address then source order; keep the first (PeeringDB) of each address
    order = rows[np.lexsort((rows, lo[rows], hi[rows], af[rows]))]
    first = np.ones(order.size, dtype=bool)
    first[1:] = (af[order][1:] != af[order][:-1]) | (hi[order][1:] != hi[order][:-1]) | (lo[order][1:] != lo[order][:-1])
    order = order[first]
    out = {}
    asn_arr = np.array(asn, dtype=np.int64)
    ixp_arr = np.array(ixp, dtype=object)
    for v in (4, 6):
        sel = order[af[order] == v]
        out[v] = (hi[sel], lo[sel], asn_arr[sel], ixp_arr[sel])
    return out


# ----------------------------------------------------------------------------- as2org / RIR


def _build_asn_info(snap: Snapshot) -> dict:
    info: dict = {}
    if snap.has("as2org"):
        asns = snap.table("as2org", "asns")
        orgs = snap.table("as2org", "orgs")
        idx = pc.index_in(asns["org_id"], value_set=orgs["org_id"])
        info["as2org"] = (
            asns["asn"].to_numpy(),
            pc.take(orgs["org_name"], idx).combine_chunks() if asns.num_rows else pa.array([], pa.string()),
            pc.take(orgs["country"], idx).combine_chunks() if asns.num_rows else pa.array([], pa.string()),
        )
    if snap.has("rir-delegated"):
        t = snap.table("rir-delegated", "asns")
        info["rir_asn"] = (t["asn_start"].to_numpy(), t["asn_count"].to_numpy(), t["cc"].combine_chunks())
    if snap.has("asnames"):
        t = snap.table("asnames", "names")
        info["asnames"] = (t["asn"].to_numpy(), t["name"].combine_chunks())
    return info


def _asn_attrs(info: dict, asn: np.ndarray, has: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """org name (as2org, else the AS name) and country per ASN (null where unknown)."""
    n = asn.size
    org = pa.nulls(n, pa.string())
    cc = pa.nulls(n, pa.string())
    if "as2org" in info and n:
        keys, names, countries = info["as2org"]
        pos = np.searchsorted(keys, asn)
        posc = np.minimum(pos, max(keys.size - 1, 0))
        hit = has & (keys.size > 0) & (keys[posc] == asn) if keys.size else np.zeros(n, bool)
        take = pa.array(np.where(hit, posc, 0))
        org = pc.if_else(pa.array(hit), pc.take(names, take), org) if keys.size else org
        cc = pc.if_else(pa.array(hit), pc.take(countries, take), cc) if keys.size else cc
    if "asnames" in info and n and info["asnames"][0].size:
        keys, names = info["asnames"]
        posc = np.minimum(np.searchsorted(keys, asn), keys.size - 1)
        hit = has & (keys[posc] == asn)
        org = pc.coalesce(org, pc.if_else(pa.array(hit), pc.take(names, pa.array(np.where(hit, posc, 0))),
                                          pa.nulls(n, pa.string())))
    if "rir_asn" in info and n:
        start, count, rcc = info["rir_asn"]
        if start.size:
            pos = np.searchsorted(start, asn, side="right") - 1
            posc = np.maximum(pos, 0)
            hit = has & (pos >= 0) & (asn < start[posc] + count[posc])
            fill = pc.if_else(pa.array(hit), pc.take(rcc, pa.array(posc)), pa.nulls(n, pa.string()))
            cc = pc.coalesce(cc, fill)
    return org, cc


# ----------------------------------------------------------------------------- annotate


def annotate(
    hops: pa.Table,
    snapshot: Snapshot,
    *,
    registry: Registry | None = None,
    online: bool = False,
    rdap: Any = None,
    dictionary: bool = False,
) -> tuple[pa.Table, Counter]:
    """Annotate a hop table with AS, IXP, member, organisation and flagged family.

    Parameters
    ----------
    hops : pyarrow.Table
        A hop table (:data:`probes.schema.HOP_SCHEMA`); only ``reply_from`` is read.
    snapshot : Snapshot
        The reference data (:func:`analysis.datasets.load_snapshot`).
    registry : Registry, optional
        Flagged families; default :func:`analysis.registry.load_registry()`. as2org
        siblings are added when the snapshot has as2org.
    online : bool
        Allow the RDAP fallback (network I/O). Off by default.
    rdap : analysis._rdap.RdapClient, optional
        The RDAP client used when ``online`` (default: one caching under the cache root).
    dictionary : bool
        Return the annotation columns in the form cheapest to build and write to Parquet
        (what :func:`analysis.campaign_io.annotate_campaign` writes): the string columns
        that many hop rows hold dictionary-encoded over their distinct values (nulls in the
        indices), the others in their own types built with numpy gathers over the unique
        addresses (see :func:`_writable_columns`). The same values: Parquet reads every
        column back as the plain type (DuckDB as it is, pyarrow through
        :func:`analysis._tables.plain_columns`).

    Returns
    -------
    (pyarrow.Table, collections.Counter)
        The input columns followed by :data:`ANNOTATION_FIELDS`, and counts of hop rows:
        ``hops``, ``replies``, ``unique_addresses``, ``resolved:<by>``,
        ``unresolved:<reason>`` (``invalid-address``, an ``ip_class`` other than public,
        ``no-route``, ``rdap-failed``).
    """
    u, rows, per_u, counts = _annotate_hops(hops, snapshot, registry, online=online, rdap=rdap)
    rows = rows.astype(np.intp)  # numpy's gathers take intp indices as they are (others are converted first)
    cols = _writable_columns(u, rows, per_u) if dictionary else _plain_columns(u, rows)
    out = hops
    for f in ANNOTATION_FIELDS:
        col_out = cols[f.name]
        field = pa.field(f.name, col_out.type)
        out = out.append_column(field, pa.chunked_array([col_out], field.type))
    return out, counts


def annotation_file(
    hops: pa.Table,
    snapshot: Snapshot,
    *,
    row_groups: Sequence[int] = (),
    beside: bytes | None = None,
    registry: Registry | None = None,
    online: bool = False,
    rdap: Any = None,
) -> tuple[bytes, Counter]:
    """The annotation of ``hops`` as a Parquet file: :data:`WRITTEN_FIELDS` only, or
    after the columns of the Parquet file ``beside``.

    The same values as :func:`annotate` (same arguments), written in row groups of
    ``row_groups`` rows (those of ``beside``) by :func:`probes.fileio.gathered_parquet`
    straight from the annotation of each unique address and the address of each row: no
    column is built per hop row. :func:`analysis.campaign_io.annotate_campaign` writes
    each hop segment so, with the annotation beside its bytes. Needs the C packer
    (:func:`probes.fileio.gathered_parquet_available`).

    Returns the file's bytes and :func:`annotate`'s counts.
    """
    u, rows, _, counts = _annotate_hops(hops, snapshot, registry, online=online, rdap=rdap)
    return gathered_parquet(u, rows, WRITTEN_FIELDS, row_groups=row_groups, beside=beside), counts


def _annotate_hops(
    hops: pa.Table, snapshot: Snapshot, registry: Registry | None, *, online: bool, rdap: Any
) -> tuple[dict, np.ndarray, np.ndarray, Counter]:
    """:func:`_annotate_rows` of a hop table's ``reply_from``, once the table is checked."""
    if "reply_from" not in hops.column_names:
        raise SchemaMismatch("hop table has no 'reply_from' column (want probes.schema.HOP_SCHEMA)")
    col = hops["reply_from"]
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise SchemaMismatch(f"hop table column 'reply_from' is {col.type}, want string")
    clash = [f.name for f in ANNOTATION_FIELDS if f.name in hops.column_names]
    if clash:
        raise SchemaMismatch(f"hop table already has annotation columns {clash}; annotate raw hops")
    registry = registry if registry is not None else load_registry()
    if snapshot.has("as2org"):
        registry = with_siblings(registry, snapshot.table("as2org", "asns"))
    return _annotate_rows(col, snapshot, registry, online=online, rdap=rdap)


def _annotate_rows(
    col: pa.Array | pa.ChunkedArray, snapshot: Snapshot, registry: Registry, *, online: bool, rdap: Any
) -> tuple[dict, np.ndarray, np.ndarray, Counter]:
    """The annotation of each unique address, and which address each hop row holds.

    Returns ``(values, rows, per_address, counts)``: the annotation columns over the unique
    addresses (:func:`_annotate_unique`), each hop row's index into them (``int32``; the
    number of unique addresses for a row without a reply), the hop rows per index
    (``bincount(rows)``) and :func:`annotate`'s counts.
    """
    n_rows = len(col)
    col = pc.cast(col, pa.string())
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], pa.string())
    # one hash pass: the unique addresses and each row's index into them (null = timeout)
    enc = pc.dictionary_encode(col)
    uniq = enc.dictionary
    n_u = len(uniq)
    # int32, as Arrow gives them (what the Parquet page packer takes)
    rows = pc.fill_null(enc.indices, n_u).to_numpy(zero_copy_only=False)
    u = _annotate_unique(uniq, snapshot, registry, online=online, rdap=rdap)
    # hop-level counts, by reason
    per_u = np.bincount(rows, minlength=n_u + 1)
    counts: Counter = Counter()
    counts["hops"] = n_rows
    counts["replies"] = int(n_rows - per_u[n_u])
    counts["unique_addresses"] = n_u
    for key, mask in u.pop("_reasons").items():
        c = int(per_u[:n_u][mask].sum())
        if c:
            counts[key] = c
    return {f.name: u[f.name].cast(f.type) for f in ANNOTATION_FIELDS}, rows, per_u, counts


def _plain_columns(u: dict, rows: np.ndarray) -> dict[str, pa.Array]:
    """The annotation columns materialized per hop row (one Arrow take each)."""
    # the extra all-null entry at index n_u stands for timeouts, so the indices carry no
    # nulls (Arrow's take is much faster that way)
    idx = pa.array(rows.astype(np.int32))
    return {f.name: pc.take(pa.concat_arrays([u[f.name], pa.nulls(1, f.type)]), idx) for f in ANNOTATION_FIELDS}


#: A column that at most this share of the hop rows hold is filled at those rows only, and
#: written plain when it is a string column (Parquet's writer takes a mostly-null string
#: column faster plain than as a dictionary; ``tests/bench/bench_annotate.py``).
_SPARSE_SHARE = 1 / 4

#: numpy dtype of each fixed-width annotation type.
_NUMPY = {pa.int64(): np.dtype(np.int64), pa.float64(): np.dtype(np.float64), pa.bool_(): np.dtype(np.bool_)}


def _writable_columns(u: dict, rows: np.ndarray, per_u: np.ndarray) -> dict[str, pa.Array]:
    """The annotation columns per hop row, in the form cheapest to build and write to Parquet.

    ``u``: the columns over the unique addresses; ``rows``: each hop row's index into them
    (``len`` of them: no reply, null in every column); ``per_u``: ``bincount(rows)``.

    - string columns that more than :data:`_SPARSE_SHARE` of the rows hold:
      dictionary-encoded, int32 indices over the column's distinct values (no null, no
      repeat: Parquet refuses nulls in a dictionary) with the nulls in the indices;
    - other string columns and fixed-width ones (``asn``, ``moas``, ``ixp_lat``, ...): their
      own type, built with numpy;
    - lists (``asns``) and any other type: Arrow's take.

    Every form reads back from Parquet as the plain column (DuckDB; pyarrow after
    :func:`analysis._tables.plain_columns`), and the same input gives the same bytes. A
    column costs one numpy gather over the rows from a table over the unique addresses
    (a fixed-width one whose null pattern no column before it had, two), or, when few rows
    hold it, a fill at those rows, found once for all such columns.
    """
    n = rows.size
    no_reply = np.zeros(1, dtype=bool)
    valid = {k: np.concatenate([pc.is_valid(v).to_numpy(zero_copy_only=False), no_reply]) for k, v in u.items()}
    held = {k: int(per_u[m].sum()) for k, m in valid.items()}
    sparse = {k for k, v in u.items()
              if 0 < held[k] <= n * _SPARSE_SHARE and (pa.types.is_string(v.type) or v.type in _NUMPY)}
    # the rows of every sparse column, with one gather
    any_sparse = np.zeros(per_u.size, dtype=bool)
    for k in sparse:
        any_sparse |= valid[k]
    pos_s = np.flatnonzero(np.take(any_sparse, rows, mode="clip")) if sparse else np.zeros(0, dtype=np.intp)
    sub_s = rows[pos_s]
    bitmaps: dict[bytes, pa.Buffer | None] = {}  # validity bitmap by null pattern

    def where(k: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(rows, their address indices) holding sparse column ``k``; None for a dense one."""
        if k not in sparse:
            return None
        m = np.take(valid[k], sub_s)
        return pos_s[m], sub_s[m]

    def validity(k: str, hit: np.ndarray | None = None) -> pa.Buffer | None:
        """Column ``k``'s validity bitmap (``hit``: the rows that hold it, when at hand)."""
        key = valid[k].tobytes()
        if key not in bitmaps:
            if held[k] == n:
                bitmaps[key] = None
            else:
                if hit is None:
                    at = where(k)
                    if at is None:
                        hit = np.take(valid[k], rows, mode="clip")
                    else:
                        hit = np.zeros(n, dtype=bool)
                        hit[at[0]] = True
                bitmaps[key] = pa.py_buffer(np.packbits(hit, bitorder="little"))
        return bitmaps[key]

    gathered: dict[bytes, np.ndarray] = {}  # dictionary indices per row, by code table
    out: dict[str, pa.Array] = {}
    # dictionary columns first: their gathers give validity bitmaps the others may share
    first = [k for k, v in u.items() if pa.types.is_string(v.type) and held[k] and k not in sparse]
    for k in first + [k for k in u if k not in first]:
        vals = u[k]
        typ, at, nulls = vals.type, where(k), n - held[k]
        if not (pa.types.is_string(typ) or typ in _NUMPY):  # lists (asns)
            out[k] = pc.take(pa.concat_arrays([vals, pa.nulls(1, typ)]), pa.array(rows))
        elif held[k] == 0:
            out[k] = pa.nulls(n, typ)
        elif pa.types.is_string(typ) and at is not None:
            out[k] = _strings_at(vals, at, n, validity(k), nulls)
        elif pa.types.is_string(typ):
            # the distinct values in a fresh buffer (Parquet copies the whole dictionary
            # buffer: one built by other kernels may carry stale bytes, and the same table
            # would not give the same file twice); a null address has code -1
            enc = pc.dictionary_encode(vals)
            codes = np.concatenate([pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int32),
                                    np.full(1, -1, dtype=np.int32)])
            key = codes.tobytes()
            if key not in gathered:
                if valid[k].tobytes() in bitmaps:  # nulls known: a null row's index is 0
                    idx = np.take(np.maximum(codes, 0), rows, mode="clip")
                else:
                    idx = np.take(codes, rows, mode="clip")
                    validity(k, idx >= 0)
                    np.maximum(idx, 0, out=idx)  # a null row's index: 0, not -1
                gathered[key] = idx
            indices = pa.Array.from_buffers(pa.int32(), n, [validity(k), pa.py_buffer(gathered[key])], null_count=nulls)
            out[k] = pa.DictionaryArray.from_arrays(indices, enc.dictionary, safe=False)
        else:
            dtype = _NUMPY[typ]
            filled = pc.fill_null(vals, pa.scalar(dtype.type(0).item(), typ)).to_numpy(zero_copy_only=False)
            table = np.concatenate([filled, np.zeros(1, dtype=dtype)])  # a null row's value: 0
            if at is None:
                data = np.take(table, rows, mode="clip")
            else:
                data = np.zeros(n, dtype=dtype)
                data[at[0]] = table[at[1]]
            buf = pa.py_buffer(np.packbits(data, bitorder="little") if typ == pa.bool_() else data)
            out[k] = pa.Array.from_buffers(typ, n, [validity(k), buf], null_count=nulls)
    return {k: out[k] for k in u}


def _strings_at(vals: pa.Array, at: tuple[np.ndarray, np.ndarray], n: int, validity: pa.Buffer | None,
                null_count: int) -> pa.Array:
    """A plain string column of ``n`` rows: ``vals[sub]`` at rows ``pos`` (``at``), else null."""
    pos, sub = at
    held = pc.take(vals, pa.array(sub))  # the strings of those rows, in row order
    offsets = np.frombuffer(held.buffers()[1], dtype=np.int32, count=len(held) + 1, offset=4 * held.offset)
    # a row's string ends where that of the last holding row at or before it ends
    full = np.repeat(offsets, np.diff(pos, prepend=-1, append=n))
    data = held.buffers()[2] or pa.py_buffer(b"")
    return pa.Array.from_buffers(pa.string(), n, [validity, pa.py_buffer(full), data], null_count=null_count)


#: Columns of an annotated hop table written without a Parquet dictionary: measured
#: round-trip times are nearly all distinct, so the writer's dictionary outgrows its page
#: limit and falls back to plain after paying for the hashing (plain: faster and smaller).
_PLAIN_ENCODED = frozenset({"rtt"})

#: Rows the Parquet writer takes per batch in an annotated table (pyarrow's default: 1024).
#: Statistics are updated per batch, a dictionary column's with a pass over the values its
#: batch references; larger batches make that cheaper (``tests/bench/bench_annotate.py``).
_WRITE_BATCH_ROWS = 65_536


def parquet_options(table: pa.Table) -> dict[str, Any]:
    """:func:`probes.fileio.write_parquet` options for an annotated hop table.

    :func:`probes.fileio.column_options` (statistics only on the columns that are not
    strings, no dictionary for :data:`_PLAIN_ENCODED`) and batches of
    :data:`_WRITE_BATCH_ROWS`. No reader uses a string column's statistics: DuckDB would
    only prune row groups by them, and every row group of a segment holds most of the
    addresses, classes and names. Deterministic like the shared options (the same table
    gives the same bytes), and the values read back are the same whatever the options.

    >>> t = pa.table({"hop": pa.array([1], pa.int16()), "mpls": pa.array([[3]], pa.list_(pa.int32())),
    ...               "rtt": [1.5], "org": pa.array(["x"]).dictionary_encode()})
    >>> opts = parquet_options(t)
    >>> opts["write_statistics"], opts["use_dictionary"], opts["write_batch_size"]
    (['hop', 'mpls.list.element', 'rtt'], ['hop', 'mpls.list.element', 'org'], 65536)
    """
    return {**column_options(table.schema, plain=_PLAIN_ENCODED), "write_batch_size": _WRITE_BATCH_ROWS}


def _annotate_unique(
    uniq: pa.Array, snap: Snapshot, registry: Registry, *, online: bool, rdap: Any
) -> dict:
    """All annotation columns for an array of unique address strings."""
    n = len(uniq)
    af, hi, lo, ok = _lpm.parse_addresses(uniq)
    cls_idx = classify(af, hi, lo, ok)
    ip_class = pc.take(pa.array(CLASSES, pa.string()), pa.array(np.where(cls_idx >= 0, cls_idx, 0)))
    ip_class = pc.if_else(pa.array(cls_idx >= 0), ip_class, pa.nulls(n, pa.string()))
    public = cls_idx == CLASSES.index("public")

    # --- pfx2as
    pfx_row = np.full(n, -1, dtype=np.int64)
    if snap.has("pfx2as"):
        for v in (4, 6):
            sel = np.flatnonzero(public & (af == v))
            if sel.size:
                pfx_row[sel] = _lpm.lookup(snap.intervals("pfx2as", v), hi[sel], lo[sel])
    has_pfx = pfx_row >= 0
    take = pa.array(np.where(has_pfx, pfx_row, 0))
    mask = pa.array(has_pfx)
    if snap.has("pfx2as") and snap.table("pfx2as", "prefixes").num_rows:
        p = snap.table("pfx2as", "prefixes")
        asn = pc.if_else(mask, pc.take(p["asn"], take).combine_chunks(), pa.nulls(n, pa.int64()))
        asns = pc.if_else(mask, pc.take(p["asns"], take).combine_chunks(), pa.nulls(n, pa.list_(pa.int64())))
        moas = pc.if_else(mask, pc.take(p["moas"], take).combine_chunks(), pa.nulls(n, pa.bool_()))
        prefix = pc.if_else(mask, pc.take(p["prefix"], take).combine_chunks(), pa.nulls(n, pa.string()))
    else:
        asn = pa.nulls(n, pa.int64())
        asns = pa.nulls(n, pa.list_(pa.int64()))
        moas = pa.nulls(n, pa.bool_())
        prefix = pa.nulls(n, pa.string())

    # --- IXP LAN and member
    ixp = _derived(snap, "ixp", _build_ixp_index)
    ixp_row = np.full(n, -1, dtype=np.int64)
    ixp_cols = {f: pa.nulls(n, ANNOTATION_FIELDS.field(f).type) for f in
                ("ixp_id", "ixp_name", "ixp_city", "ixp_country", "ixp_lat", "ixp_lon")}
    if ixp is not None:
        for v in (4, 6):
            sel = np.flatnonzero(public & (af == v))
            if sel.size:
                ixp_row[sel] = _lpm.lookup(ixp["intervals"][v], hi[sel], lo[sel])
        hit = pa.array(ixp_row >= 0)
        t = pa.array(np.maximum(ixp_row, 0))
        for f in ixp_cols:
            ixp_cols[f] = pc.if_else(hit, pc.take(ixp["table"][f], t).combine_chunks(), ixp_cols[f])
    members = _derived(snap, "members", _build_member_index)
    member = np.zeros(n, dtype=np.int64)
    has_member = np.zeros(n, dtype=bool)
    member_ixp = np.full(n, None, dtype=object)
    if members is not None:
        for v in (4, 6):
            sel = np.flatnonzero(public & (af == v))
            khi, klo, kasn, kixp = members[v]
            if sel.size and khi.size:
                pos = _lpm.exact_lookup(khi, klo, hi[sel], lo[sel])
                got = pos >= 0
                member[sel[got]] = kasn[pos[got]]
                has_member[sel[got]] = True
                member_ixp[sel[got]] = kixp[pos[got]]
    # an interface PeeringDB's netixlan places on an IXP: when the LAN prefix is unknown or
    # known only to CAIDA/PCH, the PeeringDB IXP (id, name, city, country) is used
    known_pdb = pc.fill_null(pc.starts_with(ixp_cols["ixp_id"], "pdb:"), False).to_numpy(zero_copy_only=False)
    fill = has_member & ~known_pdb & np.array([x is not None for x in member_ixp], dtype=bool)
    if fill.any():
        ids = pa.array([x if f else None for x, f in zip(member_ixp.tolist(), fill.tolist(), strict=True)], pa.string())
        fmask = pa.array(fill)
        ixp_cols["ixp_id"] = pc.if_else(fmask, ids, ixp_cols["ixp_id"])
        if snap.has("peeringdb"):
            ixt = snap.table("peeringdb", "ix")
            keys = pc.binary_join_element_wise("pdb:", pc.cast(ixt["id"], pa.string()), "")
            j = pc.index_in(ids, value_set=keys)
            for f, src in (("ixp_name", "name"), ("ixp_city", "city"), ("ixp_country", "country")):
                got = pc.take(ixt[src], j).combine_chunks()
                ixp_cols[f] = pc.if_else(pc.and_(fmask, pc.is_valid(got)), got, ixp_cols[f])
    on_ixp = (ixp_row >= 0) | fill

    # --- RIR delegation and static prefixes
    rir_cc = pa.nulls(n, pa.string())
    via_rir = np.zeros(n, dtype=bool)
    static_asn = np.zeros(n, dtype=np.int64)
    static_fam = np.full(n, None, dtype=object)
    todo = public & ~has_pfx & ~on_ixp
    if snap.has("rir-delegated") and todo.any():
        rp = snap.table("rir-delegated", "prefixes")
        rrow = np.full(n, -1, dtype=np.int64)
        for v in (4, 6):
            sel = np.flatnonzero(todo & (af == v))
            if sel.size:
                rrow[sel] = _lpm.lookup(snap.intervals("rir-delegated", v), hi[sel], lo[sel])
        got = rrow >= 0
        t = pa.array(np.maximum(rrow, 0))
        reg = pc.if_else(pa.array(got), pc.take(rp["registry"], t).combine_chunks(), pa.nulls(n, pa.string()))
        rir_cc = pc.if_else(pa.array(got), pc.take(rp["cc"], t).combine_chunks(), rir_cc)
        via_rir = got & (reg.to_numpy(zero_copy_only=False) != "iana")  # IANA->RIR blocks say nothing
        if registry.prefixes:
            saf, shi, slo, splen = _lpm.parse_prefixes([s.prefix for s in registry.prefixes], where=registry.path)
            reg_np = np.array(reg.to_pylist(), dtype=object)
            cc_np = np.array(rir_cc.to_pylist(), dtype=object)
            for v, width in ((4, 32), (6, 128)):
                ssel = np.flatnonzero(saf == v)
                sel = np.flatnonzero(via_rir & (af == v))
                if not ssel.size or not sel.size:
                    continue
                iv = _lpm.flatten(shi[ssel], slo[ssel], splen[ssel], width=width)
                srow = _lpm.lookup(iv, hi[sel], lo[sel])
                for k in np.flatnonzero(srow >= 0):
                    sp = registry.prefixes[ssel[srow[k]]]
                    j = sel[k]
                    if reg_np[j] == sp.rir and cc_np[j] == sp.country:
                        static_asn[j] = sp.asn
                        static_fam[j] = sp.family
    has_static = np.array([f is not None for f in static_fam], dtype=bool)

    # --- RDAP (online only)
    rdap_asn = np.zeros(n, dtype=np.int64)
    rdap_has = np.zeros(n, dtype=bool)
    rdap_cc = np.full(n, None, dtype=object)
    rdap_failed = np.zeros(n, dtype=bool)
    todo = public & ~has_pfx & ~on_ixp & ~via_rir
    if online and todo.any():
        if rdap is None:
            from analysis._rdap import RdapClient

            rdap = RdapClient()
        for j in np.flatnonzero(todo).tolist():  # network calls: one per address, rate-limited
            res = rdap.lookup(uniq[j].as_py())
            if res is None:
                rdap_failed[j] = True
                continue
            if res.get("asn") is not None:
                rdap_asn[j] = int(res["asn"])
                rdap_has[j] = True
            rdap_cc[j] = res.get("country")
            if res.get("asn") is None and res.get("country") is None:
                rdap_failed[j] = True
    via_rdap = todo & (rdap_has | np.array([c is not None for c in rdap_cc], dtype=bool))

    # --- effective AS for org/country/family: the member on an IXP LAN, else the origin
    asn_np = pc.fill_null(asn, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    eff = np.where(has_member, member, np.where(has_pfx, asn_np, np.where(has_static, static_asn, rdap_asn)))
    eff_has = has_member | has_pfx | has_static | rdap_has
    asn = pc.if_else(pa.array(has_static), pa.array(static_asn), asn)
    asn = pc.if_else(pa.array(rdap_has & via_rdap), pa.array(rdap_asn), asn)
    info = _derived(snap, "asn_info", _build_asn_info)
    org, as_cc = _asn_attrs(info, eff, eff_has)
    as_cc = pc.coalesce(as_cc, pc.if_else(pa.array(via_rir), rir_cc, pa.nulls(n, pa.string())),
                        pa.array([c if v else None for c, v in zip(rdap_cc.tolist(), via_rdap.tolist(), strict=True)], pa.string()))
    fam, via = registry.lookup(pa.array(np.where(eff_has, eff, -1)))
    fam = pc.if_else(pa.array(eff_has), fam, pa.nulls(n, pa.string()))
    via = pc.if_else(pa.array(eff_has), via, pa.nulls(n, pa.string()))
    static_mask = pa.array(has_static & ~has_member)
    fam = pc.if_else(static_mask, pa.array(static_fam.tolist(), pa.string()), fam)
    via = pc.if_else(static_mask, pa.scalar("rir-static"), via)

    resolved = np.full(n, None, dtype=object)
    resolved[via_rdap] = "rdap"
    resolved[via_rir] = "rir"
    resolved[has_pfx] = "pfx2as"
    resolved[on_ixp] = "ixp"
    reasons: dict[str, np.ndarray] = {}
    for by in ("ixp", "pfx2as", "rir", "rdap"):
        reasons[f"resolved:{by}"] = resolved == by
    reasons["unresolved:invalid-address"] = ~ok
    for c in CLASSES[1:]:
        reasons[f"unresolved:{c}"] = cls_idx == CLASSES.index(c)
    unres_public = public & (resolved == None)  # noqa: E711 - elementwise on object array
    reasons["unresolved:rdap-failed"] = unres_public & rdap_failed
    reasons["unresolved:no-route"] = unres_public & ~rdap_failed
    return {
        "asn": asn,
        "asns": asns,
        "moas": moas,
        "prefix": prefix,
        "ip_class": ip_class,
        **ixp_cols,
        "member_asn": pa.array(np.where(has_member, member, 0), pa.int64(), mask=~has_member),
        "org": org,
        "as_country": as_cc,
        "family": fam,
        "family_via": via,
        "resolved_by": pa.array(resolved.tolist(), pa.string()),
        "_reasons": reasons,
    }
