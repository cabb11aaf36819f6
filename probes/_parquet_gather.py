"""Write a Parquet file whose rows each take their values from one of a few keys.

An annotated hop table is such a table: a hop row's annotation is that of its reply
address, and a part of a few million rows holds a few thousand addresses. Given the
columns over the keys and each row's key, :func:`write_gathered` writes the file without
building a single column per row: per row group and per column, a dictionary page holds
the values of the keys the group uses (each value once) and one data page the rows'
definition levels and dictionary indices, bit-packed in C (``probes/_pqpack.c``) in one
pass over the group's rows. Columns whose keys map to their values alike (the same
indices, the same nulls) share that pass and its compressed data page.

The file is what pyarrow writes for the same table in the same row groups, as far as any
reader sees: the same Parquet schema and ``ARROW:schema`` (taken from pyarrow's own file of
the schema, with no rows), the same values and nulls, dictionary pages in PLAIN, data
pages (v1) in RLE_DICTIONARY with RLE levels, booleans PLAIN, zstd, and min/max/null-count
statistics for the columns that are not strings. ``tests/probes/test_parquet_gather.py``
checks it against pyarrow writing the same table, read back by pyarrow and by DuckDB.

Types: nullable ``int64``, ``float64``, ``bool``, ``string`` (also as
``dictionary<int32, string>``: pyarrow then reads the column back dictionary-encoded, as it
is stored; its values are given plain) and ``list<int64>`` (nullable items);
:func:`supported` says whether a schema is within them. Without the C module
(a machine without a compiler) :func:`available` is false and callers write with pyarrow.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import lru_cache
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from probes._parquet_splice import (
    _BINARY,
    _FALSE,
    _FMD_NUM_ROWS,
    _FMD_ROW_GROUPS,
    _I32,
    _I64,
    _LIST,
    _RG_ROWS,
    _STRUCT,
    _TRUE,
    MAGIC,
    Field,
    Raw,
    Struct,
    _varint,
    base_footer,
    encode,
    extend_footer,
    footer,
)

_pqpack: ModuleType | None
try:  # built by pip from probes/_pqpack.c
    from probes import _pqpack
except ImportError:  # built without a C compiler
    _pqpack = None

__all__ = ["append_gathered", "available", "supported", "write_gathered"]

# parquet.thrift
_PLAIN, _RLE, _RLE_DICTIONARY = 0, 3, 8  # Encoding
_DATA_PAGE, _DICTIONARY_PAGE = 0, 2  # PageType
_INT64, _BYTE_ARRAY = 2, 6  # Type (BOOLEAN 0, DOUBLE 5 come from pyarrow's schema)
_ZSTD = 6  # CompressionCodec

_CODEC = pa.Codec("zstd")  # pyarrow's default level, as every other file pathexp writes
_SCALARS = frozenset({pa.int64(), pa.float64(), pa.bool_(), pa.string()})
#: A string column pyarrow reads back dictionary-encoded (as it is stored): its values are
#: given as plain strings all the same.
_DICT_STRING = pa.dictionary(pa.int32(), pa.string())


def available() -> bool:
    """Whether the C packer is built (else callers write with pyarrow)."""
    return _pqpack is not None


def supported(schema: pa.Schema) -> bool:
    """Whether :func:`write_gathered` writes every column of ``schema``."""
    for f in schema:
        if not f.nullable:
            return False
        if f.type == _DICT_STRING:
            continue
        if pa.types.is_list(f.type):
            if f.type.value_type != pa.int64() or not f.type.value_field.nullable:
                return False
        elif f.type not in _SCALARS:
            return False
    return True


def _tc(fields: Sequence[tuple[int, int, Any]], out: bytearray, last: int = 0, stop: bool = True) -> None:
    """Append a Thrift compact struct: ``(field id, compact type, value)`` in increasing
    ids at most 15 apart, None values left out; a struct value is such a sequence, a list
    value ``(element type, items)``. The footer codec's :func:`encode` writes the same
    bytes; this one skips its generality on the thousands of small structs a file has.
    ``last`` and ``stop``: the fields go on a struct whose fields up to id ``last`` are
    written already, and the struct is ended (or not)."""
    for fid, ctype, v in fields:
        if v is None:
            continue
        if ctype == _TRUE:  # a bool field: its value is its type
            out.append((fid - last) << 4 | (_TRUE if v else _FALSE))
        else:
            out.append((fid - last) << 4 | ctype)
            _tv(ctype, v, out)
        last = fid
    if stop:
        out.append(0)


def _tv(ctype: int, v: Any, out: bytearray) -> None:
    """Append one value of :func:`_tc`'s."""
    if ctype == _I32 or ctype == _I64:
        _varint((v << 1) ^ (v >> 63), out)  # zigzag
    elif ctype == _BINARY:
        _varint(len(v), out)
        out += v
    elif ctype == _STRUCT:
        _tc(v, out)
    else:  # a list (of fewer than 15 items here)
        etype, items = v
        assert len(items) < 15
        out.append(len(items) << 4 | etype)
        for item in items:
            _tv(etype, item, out)


@lru_cache(maxsize=8)
def _template(schema_bytes: bytes) -> tuple[Struct, list[tuple[int, list[bytes]]]]:
    """pyarrow's footer of ``schema`` with no rows, and each leaf column's type and path."""
    schema = pa.ipc.read_schema(pa.py_buffer(schema_bytes))
    sink = pa.BufferOutputStream()
    pq.write_table(schema.empty_table(), sink, compression="zstd")
    _, meta = footer(sink.getvalue().to_pybytes())
    chunks = meta.get(_FMD_ROW_GROUPS)[1][0].get(1)[1]
    leaves = [(c.get(3).get(1), c.get(3).get(3)[1]) for c in chunks]
    return meta, leaves


def _width(n: int) -> int:
    """Bits for dictionary indices 0..n-1 (at least 1)."""
    return max(1, int(n - 1).bit_length())


class _Codes:
    """A column's values over the keys as distinct values and each entry's code into them."""

    def __init__(self, values: pa.Array, nulls_after: int) -> None:
        if values.type == pa.bool_():
            self.distinct = None
            codes = pc.fill_null(pc.cast(values, pa.int8()), -1).to_numpy(zero_copy_only=False)
        else:
            enc = pc.dictionary_encode(values)
            self.distinct = enc.dictionary
            codes = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False)
        self.codes = np.concatenate([codes.astype(np.int32), np.full(nulls_after, -1, np.int32)])

    def per_group(self, used: np.ndarray, entry_used: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per row group: each entry's index in the group's dictionary (-1: null), and
        which distinct values the dictionary holds (a bool row per group)."""
        codes = self.codes
        use = used if entry_used is None else entry_used
        if self.distinct is None:  # booleans: PLAIN, the value itself
            return np.broadcast_to(codes, use.shape), np.zeros((use.shape[0], 0), bool)
        n = len(self.distinct)
        held = np.zeros((use.shape[0], n + 1), bool)
        g, e = np.nonzero(use)
        held[g, codes[e] + 1] = True
        held = held[:, 1:]
        rank = np.cumsum(held, axis=1, dtype=np.int32) - 1
        if not n:  # every entry null
            return np.full(use.shape, -1, np.int32), held
        return np.where(codes >= 0, rank[:, np.maximum(codes, 0)], -1).astype(np.int32), held


def _plain(values: pa.Array) -> tuple[list[bytes] | None, np.ndarray | None]:
    """The PLAIN bytes of distinct values: per value for strings, as an array otherwise."""
    if pa.types.is_string(values.type):
        data = values.buffers()[2]
        raw = data.to_pybytes() if data is not None else b""
        off = np.frombuffer(values.buffers()[1], np.int32, len(values) + 1, values.offset * 4)
        return [struct.pack("<I", b - a) + raw[a:b] for a, b in zip(off[:-1].tolist(), off[1:].tolist(),
                                                                      strict=True)], None
    return None, values.to_numpy(zero_copy_only=False)


def _stats(vals: np.ndarray | None, kind: str, nulls: int) -> list[tuple[int, int, Any]] | None:
    """pyarrow's column statistics for a group: min/max of the values it holds, null count."""
    if kind == "string":
        return None
    if vals is not None and len(vals):
        v = vals[~np.isnan(vals)] if vals.dtype.kind == "f" else vals
        if len(v):
            if kind == "bool":
                lo, hi = struct.pack("<?", bool(v.min())), struct.pack("<?", bool(v.max()))
            else:
                lo, hi = v.min().tobytes(), v.max().tobytes()
            return [(1, _BINARY, hi), (2, _BINARY, lo), (3, _I64, nulls), (5, _BINARY, hi), (6, _BINARY, lo),
                    (7, _TRUE, True), (8, _TRUE, True)]
    return [(3, _I64, nulls)]


def _check(columns: dict[str, pa.Array], keys: np.ndarray, groups: Sequence[int], schema: pa.Schema) -> int:
    """Refuse what :func:`write_gathered` cannot write; the number of keys."""
    if _pqpack is None:
        raise RuntimeError("probes._pqpack is not built (no C compiler at install): write with pyarrow")
    if not supported(schema):
        raise TypeError(f"write_gathered writes nullable int64, float64, bool, string and list<int64>, not {schema}")
    if sorted(columns) != sorted(schema.names):
        raise ValueError(f"columns {sorted(columns)} are not the schema's {schema.names}")
    for field in schema:
        want = pa.string() if field.type == _DICT_STRING else field.type
        if columns[field.name].type != want:
            raise TypeError(f"column {field.name!r} is {columns[field.name].type}, the schema says {want}")
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError("columns of different lengths")
    nk = lengths.pop() if lengths else 0
    if nk >= 2**31:
        raise ValueError("more than 2**31 keys")
    if len(keys) and (keys.min() < 0 or keys.max() > nk):
        raise ValueError(f"a row's key is outside 0..{nk}")
    if sum(groups) != len(keys) or any(n < 0 for n in groups):
        raise ValueError(f"row groups of {list(groups)} rows do not add up to {len(keys)} rows")
    return nk


def _pages(columns: dict[str, pa.Array], keys: np.ndarray, groups: Sequence[int], schema: pa.Schema,
           start: int) -> tuple[list[bytes | bytearray], list[tuple[list[Raw], int, int, int]]]:
    """The column chunks of :func:`write_gathered`'s file, its pages written from byte
    ``start`` on: the pages' bytes, and per row group its encoded column chunks, their
    uncompressed and compressed bytes and where the group's first page starts."""
    keys = np.asarray(keys)
    nk = _check(columns, keys, groups, schema)
    # int32 keys as they are (the C code reads them unsigned), others converted
    keys32 = keys.view(np.uint32) if keys.dtype == np.int32 and keys.flags.c_contiguous else \
        np.ascontiguousarray(keys, dtype=np.uint32)
    bounds = np.concatenate([[0], np.cumsum(np.asarray(groups, dtype=np.int64))]).astype(np.int64)
    _, leaves = _template(schema.serialize().to_pybytes())
    # per group, the keys its rows use (the null key included)
    used = np.frombuffer(_pqpack.used(keys32, bounds, nk + 1), np.bool_).reshape(len(groups), nk + 1)  # type: ignore[union-attr]
    # each column's dictionaries per group and the spec of its data pages; columns whose
    # keys map to the same indices share one spec (one pass, one compressed page per group)
    plans: list[tuple] = []
    specs: list[tuple] = []
    spec_of: dict[bytes, int] = {}
    for field, (ptype, path) in zip(schema, leaves, strict=True):
        col = columns[field.name]
        if pa.types.is_list(field.type):
            offsets, (defs, reps), items = _list_entries(col)
            codes = _Codes(items, 0)
            tabs, held = codes.per_group(used, used[:, np.repeat(np.arange(nk + 1), np.diff(offsets))])
            extra: tuple = (offsets, defs, reps)
        else:
            codes = _Codes(col, 1)
            tabs, held = codes.per_group(used)
            extra = ()
        kind = "bool" if codes.distinct is None else ("string" if ptype == _BYTE_ARRAY else "number")
        widths = np.array([_width(int(n)) for n in held.sum(axis=1)] if kind != "bool" else [1] * len(groups),
                          np.uint8)
        tabs = np.ascontiguousarray(tabs, dtype=np.int32)
        sig = tabs.tobytes() + widths.tobytes() + bytes([kind == "bool", bool(extra)])
        if sig not in spec_of:
            spec_of[sig] = len(specs)
            specs.append((tabs, widths, kind == "bool", *extra))
        plain_list, plain_arr = _plain(codes.distinct) if codes.distinct is not None else (None, None)
        # a column chunk's fields that are the same in every group: file_offset, then the
        # metadata's type, encodings, path and codec
        head = bytearray(b"\x26\x00\x1c")  # field 2 (i64 0), field 3 (struct) begins
        encodings = [_PLAIN, _RLE] if kind == "bool" else [_PLAIN, _RLE, _RLE_DICTIONARY]
        _tc(((1, _I32, ptype), (2, _LIST, (_I32, encodings)), (3, _LIST, (_BINARY, list(path))), (4, _I32, _ZSTD)),
            head, stop=False)
        plans.append((ptype, bytes(head), kind, spec_of[sig], held, plain_list, plain_arr, codes.codes))
    bodies = _pqpack.pack(keys32, bounds, specs, nk + 1)  # type: ignore[union-attr]
    zpages: dict[tuple[int, int], bytes] = {}  # compressed data page bodies, by spec and group
    zdicts: dict[bytes, bytes] = {}  # compressed dictionary page bodies, by content
    out: list[bytes | bytearray] = []
    pos = start
    row_groups = []
    for g in range(len(groups)):
        chunks, first, g_unc, g_comp = [], pos, 0, 0
        for ptype, head_bytes, kind, spec, held, plain_list, plain_arr, codes in plans:
            body, n_values, n_valid = bodies[spec][g]
            unc = comp = 0
            dict_off = data_off = None
            sel = np.flatnonzero(held[g])
            enc_stats = []
            if kind != "bool":
                if plain_list is not None:
                    dbody = b"".join([plain_list[i] for i in sel.tolist()])
                else:
                    dbody = np.ascontiguousarray(plain_arr[sel], dtype="<i8" if ptype == _INT64 else "<f8").tobytes()
                zdict = zdicts.get(dbody)  # groups often hold the same few values
                if zdict is None:
                    zdict = zdicts[dbody] = _CODEC.compress(dbody, asbytes=True)
                head = bytearray()
                _tc(((1, _I32, _DICTIONARY_PAGE), (2, _I32, len(dbody)), (3, _I32, len(zdict)),
                     (7, _STRUCT, ((1, _I32, len(sel)), (2, _I32, _PLAIN), (3, _TRUE, False)))), head)
                out += [head, zdict]
                dict_off, pos = pos, pos + len(head) + len(zdict)
                unc, comp = len(head) + len(dbody), len(head) + len(zdict)
                enc_stats.append(((1, _I32, _DICTIONARY_PAGE), (2, _I32, _PLAIN), (3, _I32, 1)))
            stats = None
            if kind != "string" and n_values:  # pyarrow writes none for an empty group
                vals = _bool_values(codes, used[g]) if plain_arr is None else plain_arr[sel]
                stats = _stats(vals, kind, n_values - n_valid)
            if n_values:
                if (spec, g) not in zpages:
                    zpages[spec, g] = _CODEC.compress(body, asbytes=True)
                zbody = zpages[spec, g]
                encoding = _PLAIN if kind == "bool" else _RLE_DICTIONARY
                head = bytearray()
                _tc(((1, _I32, _DATA_PAGE), (2, _I32, len(body)), (3, _I32, len(zbody)),
                     (5, _STRUCT, ((1, _I32, n_values), (2, _I32, encoding), (3, _I32, _RLE), (4, _I32, _RLE),
                                   (5, _STRUCT, stats)))), head)
                out += [head, zbody]
                data_off, pos = pos, pos + len(head) + len(zbody)
                unc, comp = unc + len(head) + len(body), comp + len(head) + len(zbody)
                enc_stats.append(((1, _I32, _DATA_PAGE), (2, _I32, encoding), (3, _I32, 1)))
            chunk = bytearray(head_bytes)
            _tc(((5, _I64, n_values), (6, _I64, unc), (7, _I64, comp), (9, _I64, data_off or 0),
                 (11, _I64, dict_off), (12, _STRUCT, stats), (13, _LIST, (_STRUCT, enc_stats))), chunk, last=4)
            chunk.append(0)  # the column chunk ends
            chunks.append(Raw(chunk))
            g_unc, g_comp = g_unc + unc, g_comp + comp
        row_groups.append((chunks, g_unc, g_comp, first))
    return out, row_groups


def write_gathered(columns: dict[str, pa.Array], keys: np.ndarray, groups: Sequence[int],
                   schema: pa.Schema) -> bytes:
    """The Parquet file of the table ``schema`` whose row ``i`` holds ``columns[c][keys[i]]``.

    ``columns``: one array per field of ``schema`` (in its type), all of the same length
    ``n_keys``; ``keys``: each row's key, where ``n_keys`` means a row null in every
    column; ``groups``: the number of rows in each row group (they sum to ``len(keys)``).
    ``ValueError`` on a key out of range or sizes that disagree, ``TypeError`` on a type
    :func:`supported` refuses, ``RuntimeError`` without the C packer.
    """
    pages, row_groups = _pages(columns, keys, groups, schema, len(MAGIC))
    template, _ = _template(schema.serialize().to_pybytes())
    meta = Struct(Field(f.fid, f.ctype, f.value) for f in template)
    meta.set(_FMD_NUM_ROWS, len(keys))
    meta.set(_FMD_ROW_GROUPS, (_STRUCT, [
        Struct([Field(1, _LIST, (_STRUCT, chunks)), Field(2, _I64, unc), Field(3, _I64, n), Field(5, _I64, first),
                Field(6, _I64, comp)])
        for (chunks, unc, comp, first), n in zip(row_groups, groups, strict=True)]))
    tail = encode(meta)
    return b"".join([MAGIC, *pages, tail, struct.pack("<I", len(tail)), MAGIC])


def append_gathered(base: bytes, columns: dict[str, pa.Array], keys: np.ndarray, schema: pa.Schema) -> bytes:
    """The Parquet file ``base`` with :func:`write_gathered`'s columns after its own, in
    its row groups (``keys``: one per row of ``base``), as bytes.

    The base file's bytes are kept up to its footer, the new pages written after them, and
    its footer names both sets of columns (:func:`probes._parquet_splice.extend_footer`):
    what :func:`probes._parquet_splice.join_columns` gives for :func:`write_gathered`'s
    file, without encoding that file's footer nor decoding it again. ``ValueError`` as
    :func:`write_gathered`, and on a column name the base file has.
    """
    b_start, meta, arrow = base_footer(base, schema)
    groups = [g.get(_RG_ROWS) for g in meta.get(_FMD_ROW_GROUPS)[1]]
    pages, row_groups = _pages(columns, keys, groups, schema, b_start)
    template, _ = _template(schema.serialize().to_pybytes())
    tail = extend_footer(meta, arrow, template, [(c, unc, comp) for c, unc, comp, _ in row_groups], schema)
    return b"".join([memoryview(base)[:b_start], *pages, tail, struct.pack("<I", len(tail)), MAGIC])


def _bool_values(codes: np.ndarray, used: np.ndarray) -> np.ndarray:
    """The boolean values (0/1) of the keys a group uses."""
    c = codes[used]
    return c[c >= 0]


def _list_entries(col: pa.Array) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], pa.Array]:
    """A list column over the keys as leaf entries: per key (and the null key after them)
    where its entries start, each entry's definition and repetition levels (a null list: 0;
    an empty one: 1; a null item: 2; an item: 3), and each entry's value (null where none)."""
    n = len(col)
    valid = pc.is_valid(col).to_numpy(zero_copy_only=False)
    lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    per_key = np.where(valid & (lengths > 0), lengths, 1)
    offsets = np.concatenate([[0], np.cumsum(np.append(per_key, 1))]).astype(np.int64)  # + the null key
    total = int(offsets[-1])
    defs = np.zeros(total, np.uint8)
    reps = np.zeros(total, np.uint8)
    values = np.full(total, -1, np.int64)
    vmask = np.zeros(total, bool)
    flat = pc.list_flatten(col)  # the items of the valid lists, in order
    item_valid = pc.is_valid(flat).to_numpy(zero_copy_only=False)
    item_vals = pc.fill_null(flat, 0).to_numpy(zero_copy_only=False)
    has_items = valid & (lengths > 0)
    starts = offsets[:n][has_items]
    pos = (np.repeat(starts, lengths[has_items]) +
           (np.arange(int(lengths[has_items].sum())) - np.repeat(np.cumsum(lengths[has_items]) - lengths[has_items],
                                                                  lengths[has_items])))
    defs[pos] = np.where(item_valid, 3, 2)
    reps[pos] = 1
    reps[starts] = 0
    values[pos] = item_vals
    vmask[pos] = item_valid
    empty = valid & (lengths == 0)
    defs[offsets[:n][empty]] = 1
    return offsets, (defs, reps), pa.array(values, pa.int64(), mask=~vmask)
