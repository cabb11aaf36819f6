"""Append columns to a Parquet file without re-encoding the columns it has.

A Parquet file is ``PAR1``, the column chunks, the footer (a Thrift ``FileMetaData`` in
the compact protocol), the footer's length and ``PAR1`` again
(https://github.com/apache/parquet-format). :func:`append_columns` writes the new
columns with pyarrow, row group by row group beside the base file's, then joins the two:
the base file's bytes up to its footer, the new file's column chunks, and one footer
naming both sets of chunks (the new ones' offsets moved by where they now start). Every
value reads back as if pyarrow had written the whole table, and the base columns cost a
byte copy instead of a decode and an encode. :func:`join_columns` joins any file written
in the base file's row groups; :func:`extend_footer` is its footer part, which
:mod:`probes._parquet_gather` uses for pages it writes straight after the base file's.

The footer codec (:func:`decode`, :func:`encode`) keeps every field it reads, in order,
so that an unchanged footer encodes to its own bytes; it knows the Parquet fields it
edits by their Thrift ids (``parquet.thrift``), written beside each constant below.

:class:`RowGroupAppender` is the other direction: Parquet files of one schema, each
written apart (on a worker, say), become one file of all their row groups in order, again
by copying their column chunks and writing one footer.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["Field", "Raw", "RowGroupAppender", "Struct", "append_columns", "arrow_schema", "base_footer", "decode",
           "encode", "extend_footer", "footer", "join_columns", "row_group_sizes", "write_row_groups"]

MAGIC = b"PAR1"

# Thrift compact protocol types
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(1, 13)

# parquet.thrift field ids
_FMD_SCHEMA, _FMD_NUM_ROWS, _FMD_ROW_GROUPS, _FMD_KV, _FMD_COLUMN_ORDERS, _FMD_ENCRYPTION = 2, 3, 4, 5, 7, 8
_SE_NUM_CHILDREN = 5  # SchemaElement.num_children
_RG_COLUMNS, _RG_BYTES, _RG_ROWS, _RG_OFFSET, _RG_COMPRESSED, _RG_ORDINAL = 1, 2, 3, 5, 6, 7  # RowGroup
_CC_FILE_PATH, _CC_FILE_OFFSET, _CC_META, _CC_OFFSET_INDEX, _CC_COLUMN_INDEX = 1, 2, 3, 4, 6  # ColumnChunk
_CC_CRYPTO, _CC_ENCRYPTED_META = 8, 9
#: ColumnMetaData offsets: data_page_offset, index_page_offset, dictionary_page_offset,
#: bloom_filter_offset
_CMD_OFFSETS = (9, 10, 11, 14)
_CMD_COMPRESSED = 7  # ColumnMetaData.total_compressed_size
_KV_KEY, _KV_VALUE = 1, 2  # KeyValue
ARROW_SCHEMA = b"ARROW:schema"


@dataclass
class Field:
    """One field of a Thrift struct: its id, compact type and value (lists: ``(type, items)``)."""

    fid: int
    ctype: int
    value: Any


class Raw(bytes):
    """A Thrift struct encoded already: written as it is where a struct goes."""


class Struct(list):
    """A decoded Thrift struct: its :class:`Field` objects in the order they were read."""

    def get(self, fid: int, default: Any = None) -> Any:
        for f in self:
            if f.fid == fid:
                return f.value
        return default

    def set(self, fid: int, value: Any) -> None:
        """Replace field ``fid``'s value (it must be present)."""
        for f in self:
            if f.fid == fid:
                f.value = value
                return
        raise KeyError(fid)


# ----------------------------------------------------------------------------- codec
class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def byte(self) -> int:
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        out = shift = 0
        while True:
            b = self.byte()
            out |= (b & 0x7F) << shift
            if b < 0x80:
                return out
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, ctype: int) -> Any:
        if ctype in (_TRUE, _FALSE):  # inside a list: one byte
            return self.byte() == _TRUE
        if ctype == _BYTE:
            return struct.unpack("b", bytes([self.byte()]))[0]
        if ctype in (_I16, _I32, _I64):
            return self.zigzag()
        if ctype == _DOUBLE:
            self.pos += 8
            return struct.unpack("<d", self.data[self.pos - 8:self.pos])[0]
        if ctype == _BINARY:
            n = self.varint()
            self.pos += n
            return bytes(self.data[self.pos - n:self.pos])
        if ctype in (_LIST, _SET):
            head = self.byte()
            n, etype = head >> 4, head & 0x0F
            if n == 15:
                n = self.varint()
            return etype, [self.value(etype) for _ in range(n)]
        if ctype == _MAP:
            n = self.varint()
            if not n:
                return 0, 0, []
            kv = self.byte()
            return kv >> 4, kv & 0x0F, [(self.value(kv >> 4), self.value(kv & 0x0F)) for _ in range(n)]
        if ctype == _STRUCT:
            return self.struct()
        raise ValueError(f"Parquet footer: unknown Thrift compact type {ctype} at byte {self.pos}")

    def struct(self) -> Struct:
        out, last = Struct(), 0
        while True:
            head = self.byte()
            if head == 0:
                return out
            ctype, delta = head & 0x0F, head >> 4
            fid = last + delta if delta else self.zigzag()
            value = ctype == _TRUE if ctype in (_TRUE, _FALSE) else self.value(ctype)
            out.append(Field(fid, ctype, value))
            last = fid


def _varint(n: int, out: bytearray) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _zigzag(n: int, out: bytearray) -> None:
    _varint((n << 1) ^ (n >> 63), out)


def _value(ctype: int, value: Any, out: bytearray) -> None:
    if ctype in (_TRUE, _FALSE):
        out.append(_TRUE if value else _FALSE)
    elif ctype == _BYTE:
        out += struct.pack("b", value)
    elif ctype in (_I16, _I32, _I64):
        _zigzag(value, out)
    elif ctype == _DOUBLE:
        out += struct.pack("<d", value)
    elif ctype == _BINARY:
        _varint(len(value), out)
        out += value
    elif ctype in (_LIST, _SET):
        etype, items = value
        if len(items) < 15:
            out.append(len(items) << 4 | etype)
        else:
            out.append(0xF0 | etype)
            _varint(len(items), out)
        for item in items:
            _value(etype, item, out)
    elif ctype == _MAP:
        ktype, vtype, pairs = value
        _varint(len(pairs), out)
        if pairs:
            out.append(ktype << 4 | vtype)
        for k, v in pairs:
            _value(ktype, k, out)
            _value(vtype, v, out)
    elif ctype == _STRUCT:
        if isinstance(value, Raw):
            out += value
        else:
            _struct(value, out)
    else:
        raise ValueError(f"Thrift compact type {ctype} cannot be written")


def _struct(s: Struct, out: bytearray) -> None:
    last = 0
    for f in s:
        ctype = (_TRUE if f.value else _FALSE) if f.ctype in (_TRUE, _FALSE) else f.ctype
        if 0 < f.fid - last <= 15:
            out.append((f.fid - last) << 4 | ctype)
        else:
            out.append(ctype)
            _zigzag(f.fid, out)
        if ctype not in (_TRUE, _FALSE):
            _value(ctype, f.value, out)
        last = f.fid
    out.append(0)


def decode(data: bytes) -> Struct:
    """The Thrift compact struct in ``data`` (a Parquet footer: ``FileMetaData``)."""
    r = _Reader(data)
    try:
        s = r.struct()
    except (IndexError, struct.error) as exc:
        raise ValueError(f"Parquet footer: truncated Thrift struct ({len(data)} bytes)") from exc
    if r.pos != len(data):
        raise ValueError(f"Parquet footer: {len(data) - r.pos} bytes after the Thrift struct")
    return s


def encode(s: Struct) -> bytes:
    """The Thrift compact bytes of ``s`` (:func:`decode`'s inverse)."""
    out = bytearray()
    _struct(s, out)
    return bytes(out)


def footer(data: bytes | memoryview) -> tuple[int, Struct]:
    """Where a Parquet file's footer starts, and the footer decoded."""
    start = _footer_start(data)
    return start, decode(bytes(data[start:len(data) - 8]))


def _footer_start(data: bytes | memoryview) -> int:
    """Where a Parquet file's footer starts (``ValueError`` if it is not a Parquet file)."""
    if len(data) < 12 or bytes(data[:4]) != MAGIC or bytes(data[-4:]) != MAGIC:
        raise ValueError("not a Parquet file (no PAR1 at both ends)")
    n = struct.unpack("<I", bytes(data[-8:-4]))[0]
    start = len(data) - 8 - n
    if start < 4:
        raise ValueError(f"Parquet footer length {n} exceeds the file ({len(data)} bytes)")
    return start


# ----------------------------------------------------------------------------- splice
def append_columns(base: bytes, table: pa.Table, **options: Any) -> bytes:
    """The Parquet file ``base`` with ``table``'s columns after its own, as bytes.

    ``table`` has the base file's rows, in its order; it is written with pyarrow
    (``options``: :class:`pyarrow.parquet.ParquetWriter`'s) in row groups of the base
    file's sizes, then joined to it (:func:`join_columns`).

    Raises ``ValueError`` as :func:`join_columns` does, and when the rows do not match.
    """
    sizes = row_group_sizes(base)
    if sum(sizes) != table.num_rows:
        raise ValueError(f"base file has {sum(sizes)} rows, the new columns {table.num_rows}")
    return join_columns(base, write_row_groups(table, sizes, **options), table.schema)


def write_row_groups(table: pa.Table, sizes: Sequence[int], **options: Any) -> pa.Buffer:
    """``table`` as a Parquet file written by pyarrow (``options``: its
    :class:`pyarrow.parquet.ParquetWriter`'s) in row groups of ``sizes`` rows."""
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, table.schema, **options) as writer:
        offset = 0
        for n in sizes:
            writer.write_table(table.slice(offset, n), row_group_size=max(n, 1))  # 0: an empty group
            offset += n
    return sink.getvalue()


def row_group_sizes(data: bytes) -> list[int]:
    """The number of rows in each row group of a Parquet file."""
    _footer_start(data)
    try:
        meta = pq.read_metadata(pa.BufferReader(data))
    except OSError as exc:  # pyarrow's word for a footer it cannot decode
        raise ValueError(f"Parquet footer: {exc}") from exc
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def join_columns(base: bytes, new: bytes | pa.Buffer, schema: pa.Schema) -> bytes:
    """The Parquet file ``base`` with the columns of the Parquet file ``new`` after its own.

    ``new`` holds the base file's rows in the same row groups; ``schema`` is its Arrow
    schema. The base file's column chunks are copied as they are, the new file's after
    them; one footer names both, its key-value metadata the base file's, with
    ``ARROW:schema`` (which pyarrow reads the column types back from) now describing both
    sets of columns.

    Raises ``ValueError`` when the rows or row groups do not match, a column name is in
    both, a file is encrypted or keeps its columns in other files, or ``new`` has a page
    index (its page offsets would point into the file written apart; the base file's
    stays valid).
    """
    b_start, meta, arrow = base_footer(base, schema)
    sizes = [g.get(_RG_ROWS) for g in meta.get(_FMD_ROW_GROUPS)[1]]
    n_start, new_meta = footer(new)
    new_groups = new_meta.get(_FMD_ROW_GROUPS)[1]
    if new_meta.get(_FMD_NUM_ROWS) != meta.get(_FMD_NUM_ROWS) or [g.get(_RG_ROWS) for g in new_groups] != sizes:
        raise ValueError("the new columns are not in the base file's rows and row groups")
    _refuse_encrypted(new_meta)
    shift = b_start - len(MAGIC)  # the new chunks move from after PAR1 to after the base chunks
    added = []
    for extra in new_groups:
        chunks = extra.get(_RG_COLUMNS)[1]
        for chunk in chunks:
            _move(chunk, shift)
        total = extra.get(_RG_COMPRESSED)
        if total is None:
            total = sum(c.get(_CC_META).get(_CMD_COMPRESSED) for c in chunks)
        added.append((chunks, extra.get(_RG_BYTES), total))
    tail = extend_footer(meta, arrow, new_meta, added, schema)
    return b"".join([memoryview(base)[:b_start], memoryview(new)[len(MAGIC):n_start],
                     tail, struct.pack("<I", len(tail)), MAGIC])


def base_footer(base: bytes, schema: pa.Schema) -> tuple[int, Struct, pa.Schema]:
    """Where the Parquet file ``base``'s footer starts, the footer decoded and its Arrow
    schema, for columns of ``schema`` to join it (``ValueError`` on a name it has)."""
    b_start, meta = footer(base)
    arrow = arrow_schema(base)
    if arrow is None:
        arrow = pq.read_schema(pa.BufferReader(base))
    clash = sorted(set(arrow.names) & set(schema.names))
    if clash:
        raise ValueError(f"columns {clash} are in the base file already")
    return b_start, meta, arrow


def extend_footer(meta: Struct, arrow: pa.Schema, new_meta: Struct, added: Sequence[tuple[list, int, int]],
                  schema: pa.Schema) -> bytes:
    """The encoded footer ``meta`` (a base file's, its Arrow schema ``arrow``) naming more
    columns: per row group, ``added`` gives their column chunks (at their offsets in the
    joined file; :class:`Raw` when encoded already), uncompressed and compressed bytes;
    ``new_meta`` is a footer of those columns alone (their schema elements and column
    orders), ``schema`` their Arrow schema."""
    _refuse_encrypted(meta)
    groups = meta.get(_FMD_ROW_GROUPS)[1]
    for g, (chunks, nbytes, compressed) in zip(groups, added, strict=True):
        g.get(_RG_COLUMNS)[1].extend(chunks)
        g.set(_RG_BYTES, g.get(_RG_BYTES) + nbytes)
        if g.get(_RG_COMPRESSED) is not None:
            g.set(_RG_COMPRESSED, g.get(_RG_COMPRESSED) + compressed)
    # the schema: the base's root takes the new root's children
    elements, new_elements = meta.get(_FMD_SCHEMA)[1], new_meta.get(_FMD_SCHEMA)[1]
    elements[0].set(_SE_NUM_CHILDREN, elements[0].get(_SE_NUM_CHILDREN) + new_elements[0].get(_SE_NUM_CHILDREN))
    elements.extend(new_elements[1:])
    orders, new_orders = meta.get(_FMD_COLUMN_ORDERS), new_meta.get(_FMD_COLUMN_ORDERS)
    if orders is not None and new_orders is not None:
        orders[1].extend(new_orders[1])
    elif orders is not None:  # one order per leaf column or none at all
        meta[:] = Struct(f for f in meta if f.fid != _FMD_COLUMN_ORDERS)
    whole = pa.schema(list(arrow) + list(schema), metadata=arrow.metadata)
    _set_arrow_schema(meta, base64.b64encode(whole.serialize().to_pybytes()))
    return encode(meta)


def _refuse_encrypted(meta: Struct) -> None:
    """``ValueError`` for the footer of an encrypted Parquet file."""
    if meta.get(_FMD_ENCRYPTION) is not None:
        raise ValueError("encrypted Parquet files are not supported")


def _move(chunk: Struct, shift: int) -> None:
    """Move a column chunk's offsets by ``shift`` bytes.

    An offset of 0 stays 0: nothing starts at byte 0 of a Parquet file (``PAR1`` does), and
    pyarrow writes 0 for "none" (the deprecated ``file_offset``; ``data_page_offset`` of a
    chunk with no data page, in an empty row group).
    """
    if any(chunk.get(fid) is not None for fid in (_CC_FILE_PATH, _CC_CRYPTO, _CC_ENCRYPTED_META)):
        raise ValueError("column chunks in other files or encrypted are not supported")
    if chunk.get(_CC_OFFSET_INDEX) is not None:
        # an offset index holds the file offsets of its pages, in the file written apart
        raise ValueError("a page index for the appended columns is not supported (write_page_index)")
    for fields, ids in ((chunk, (_CC_FILE_OFFSET, _CC_COLUMN_INDEX)), (chunk.get(_CC_META), _CMD_OFFSETS)):
        for f in fields:
            if f.fid in ids and f.value:
                f.value += shift


def arrow_schema(data: bytes) -> pa.Schema | None:
    """The Arrow schema a Parquet file was written from (its ``ARROW:schema``), or None.

    As the writer had it: pyarrow's reader gives some types as Parquet stores them
    (``timestamp[s]`` as ``timestamp[ms]``, list items named ``element``). The footer is
    read by pyarrow (a twentieth of :func:`footer`'s time on a store segment's footer).
    """
    _footer_start(data)
    record = (pq.read_metadata(pa.BufferReader(data)).metadata or {}).get(ARROW_SCHEMA)
    return None if record is None else pa.ipc.read_schema(pa.py_buffer(base64.b64decode(record)))


def _set_arrow_schema(meta: Struct, value: bytes) -> None:
    """Put ``ARROW:schema`` = ``value`` in the footer's key-value metadata."""
    kv = meta.get(_FMD_KV)
    if kv is None:
        kv = (_STRUCT, [])
        fields = [f for f in meta if f.fid < _FMD_KV]
        meta.insert(len(fields), Field(_FMD_KV, _LIST, kv))
    for item in kv[1]:
        if item.get(_KV_KEY) == ARROW_SCHEMA:
            item.set(_KV_VALUE, value)
            return
    kv[1].append(Struct([Field(_KV_KEY, _BINARY, ARROW_SCHEMA), Field(_KV_VALUE, _BINARY, value)]))


# ----------------------------------------------------------------------------- row groups
class RowGroupAppender:
    """Parquet files of one schema written into ``out`` one after another as one file.

    :meth:`append` copies a file's column chunks as they are and keeps its row groups'
    metadata, their offsets moved to where the chunks now are; :meth:`close` writes one
    footer naming every row group, in the order they came: the file a single
    :class:`pyarrow.parquet.ParquetWriter` writes from the same tables (each
    ``write_table`` call one file here). The first file's footer is the template: its
    schema, key-value metadata and column orders; every later file must have the same.
    ``schema`` and ``options`` write the file when nothing was appended.

    Raises ``ValueError`` for a file that is not Parquet, has another schema, is
    encrypted, keeps its columns elsewhere or has a page index.
    """

    def __init__(self, out: IO[bytes], schema: pa.Schema, **options: Any) -> None:
        self._out, self._schema, self._options = out, schema, options
        self._meta: Struct | None = None
        self._same: list[bytes] = []  # the template's encoded schema, key-value metadata, column orders
        self._pos = 0

    def append(self, data: bytes | memoryview | pa.Buffer) -> None:
        """Add the row groups of the Parquet file ``data``."""
        view = memoryview(data)
        start, meta = footer(view)
        added = list(meta.get(_FMD_ROW_GROUPS)[1])
        _refuse_encrypted(meta)
        same = [encode(Struct(f for f in meta if f.fid == fid)) for fid in (_FMD_SCHEMA, _FMD_KV, _FMD_COLUMN_ORDERS)]
        if self._meta is None:
            self._out.write(MAGIC)
            self._pos, self._meta, self._same = len(MAGIC), meta, same
            groups = meta.get(_FMD_ROW_GROUPS)[1]
            groups.clear()
        elif same != self._same:
            raise ValueError("a Parquet file with another schema or metadata than the first one")
        else:
            groups = self._meta.get(_FMD_ROW_GROUPS)[1]
        shift = self._pos - len(MAGIC)  # the chunks move from after PAR1 to after those written
        for g in added:
            for chunk in g.get(_RG_COLUMNS)[1]:
                _move(chunk, shift)
            for f in g:
                if f.fid == _RG_OFFSET and f.value:  # 0: none, as in _move
                    f.value += shift
            groups.append(g)
        self._out.write(view[len(MAGIC):start])
        self._pos += start - len(MAGIC)

    def close(self) -> None:
        """Write the footer (or the whole file when nothing was appended)."""
        meta = self._meta
        if meta is None:
            sink = pa.BufferOutputStream()
            pq.ParquetWriter(sink, self._schema, **self._options).close()
            self._out.write(sink.getvalue())
            return
        groups = meta.get(_FMD_ROW_GROUPS)[1]
        meta.set(_FMD_NUM_ROWS, sum(g.get(_RG_ROWS) for g in groups))
        for i, g in enumerate(groups):
            if g.get(_RG_ORDINAL) is not None:  # an i16: no ordinal past 32767, as the format allows
                if i < 2 ** 15:
                    g.set(_RG_ORDINAL, i)
                else:
                    g[:] = Struct(f for f in g if f.fid != _RG_ORDINAL)
        tail = encode(meta)
        self._out.write(tail + struct.pack("<I", len(tail)) + MAGIC)
