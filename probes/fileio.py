"""File output: atomic writes of bytes, JSON and Parquet, shared by every writer.

Everything pathexp writes goes through here: write to a temporary name beside the
target, fsync, rename. A reader never sees a half-written file, and a killed writer
leaves only a ``*.part`` file that no glob of the stores matches (they match
``*.parquet``, ``*.ndjson.zst``). :data:`PARQUET_OPTIONS` are the Parquet settings every
table uses, so that identical tables give identical bytes.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from probes import _parquet_gather
from probes._parquet_splice import RowGroupAppender, append_columns, arrow_schema, row_group_sizes

__all__ = [
    "PARQUET_OPTIONS",
    "atomic_open",
    "atomic_path",
    "column_options",
    "gathered_parquet",
    "gathered_parquet_available",
    "joined_parquet",
    "parquet_buffer",
    "row_group_sizes",
    "write_bytes",
    "write_json",
    "write_parquet",
    "written_schema",
]

#: Parquet settings shared by every table pathexp writes (deterministic output).
PARQUET_OPTIONS = {"compression": "zstd", "write_statistics": True}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def atomic_open(target: Path | str, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file for writing that replaces ``target`` when closed cleanly."""
    with atomic_path(target) as tmp, open(tmp, mode) as fh:
        yield fh


def write_bytes(target: Path | str, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_open(target, "wb") as fh:
        fh.write(data)


def write_json(target: Path | str, obj: object) -> None:
    """Write ``obj`` as indented, key-sorted JSON (stable bytes for identical input)."""
    write_bytes(
        target, orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )


def write_parquet(table: pa.Table, target: Path | str, *, options: Mapping[str, Any] | None = None,
                  beside: bytes | None = None) -> None:
    """Write ``table`` to ``target`` atomically as Parquet with :data:`PARQUET_OPTIONS`.

    ``options`` override them for one kind of table (e.g. the annotated hops: which columns
    get statistics); they must be deterministic too, and leave the values read back alone.
    ``beside``: the bytes of a Parquet file with ``table``'s rows; ``target`` is then that
    file with ``table``'s columns after its own, in its row groups, its column chunks
    copied as they are (:func:`probes._parquet_splice.append_columns`).
    """
    opts = {**PARQUET_OPTIONS, **(options or {})}
    if beside is not None:
        write_bytes(target, append_columns(beside, table, **opts))
        return
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, **opts)


def parquet_buffer(table: pa.Table, schema: pa.Schema) -> pa.Buffer:
    """``table`` (of ``schema``) as the bytes :func:`write_parquet` would write: a part for
    :func:`joined_parquet`, compressed where it was computed."""
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, schema, **PARQUET_OPTIONS) as writer:
        writer.write_table(table)
    return sink.getvalue()


@contextmanager
def joined_parquet(target: Path | str, schema: pa.Schema) -> Iterator[RowGroupAppender]:
    """Write ``target`` atomically from parts, :func:`parquet_buffer` files of ``schema``
    given to the yielded appender's ``append`` in order: the file one writer would write
    from their tables, their column chunks copied instead of encoded again."""
    with atomic_open(target) as fh:
        appender = RowGroupAppender(fh, schema, **PARQUET_OPTIONS)
        yield appender
        appender.close()


def gathered_parquet_available() -> bool:
    """Whether :func:`gathered_parquet` can write (its C packer was built at install)."""
    return _parquet_gather.available()


def gathered_parquet(columns: Mapping[str, pa.Array], keys: Any, schema: pa.Schema, *,
                     row_groups: Collection[int] = (), beside: bytes | None = None) -> bytes:
    """The Parquet file (bytes) of the table ``schema`` whose row ``i`` holds
    ``columns[name][keys[i]]``, written straight from the columns over the keys
    (:func:`probes._parquet_gather.write_gathered`: the values of each key are never
    repeated per row), in row groups of ``row_groups`` rows. ``beside``: the bytes of a
    Parquet file with as many rows as ``keys``; the result is then that file with these
    columns after its own, in its row groups (``append_gathered``). A key equal to the
    number of keys stands for a row null in every column.
    """
    if beside is not None:
        return _parquet_gather.append_gathered(beside, dict(columns), keys, schema)
    return _parquet_gather.write_gathered(dict(columns), keys, list(row_groups), schema)


def written_schema(parquet: bytes) -> pa.Schema | None:
    """The Arrow schema a Parquet file (its bytes) was written from, or None if not recorded.

    As the writer had it, unlike :func:`pyarrow.parquet.read_schema`, which gives some types
    as Parquet stores them (``timestamp[s]`` as ``timestamp[ms]``, list items named
    ``element``). Raises ``ValueError`` for bytes that are not a Parquet file.
    """
    return arrow_schema(parquet)


def column_options(schema: pa.Schema, *, plain: Collection[str] = ()) -> dict[str, list[str]]:
    """Per-column writer options for a table of measurements (hops, annotated hops).

    ``write_statistics`` on the leaf columns that are not strings only: a string column's
    min/max cost the writer about as much as encoding it and only let a reader skip row
    groups, which never changes a result; the fixed-width ones cost next to nothing.
    ``use_dictionary`` on every leaf but those of the ``plain`` columns (nearly distinct
    values, such as round-trip times: the writer's dictionary would be built and then
    abandoned for plain pages). Column paths as pyarrow's writer names them (compliant
    lists: ``mpls.list.element``); a dictionary column's type is its values'.

    >>> o = column_options(pa.schema([("hop", pa.int16()), ("mpls", pa.list_(pa.int32())), ("rtt", pa.float64()),
    ...                               ("org", pa.dictionary(pa.int32(), pa.string()))]), plain={"rtt"})
    >>> o["write_statistics"], o["use_dictionary"]
    (['hop', 'mpls.list.element', 'rtt'], ['hop', 'mpls.list.element', 'org'])
    """
    def leaves(name: str, typ: pa.DataType) -> list[tuple[str, pa.DataType]]:
        if pa.types.is_dictionary(typ):
            typ = typ.value_type
        if pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ):
            return leaves(f"{name}.list.element", typ.value_type)
        if pa.types.is_struct(typ):
            return [x for i in range(typ.num_fields) for x in leaves(f"{name}.{typ.field(i).name}", typ.field(i).type)]
        if pa.types.is_map(typ):
            return [*leaves(f"{name}.key_value.key", typ.key_type), *leaves(f"{name}.key_value.value", typ.item_type)]
        return [(name, typ)]

    all_leaves = [(f.name, path, typ) for f in schema for path, typ in leaves(f.name, f.type)]
    return {
        "write_statistics": [path for _, path, typ in all_leaves
                             if not (pa.types.is_string(typ) or pa.types.is_large_string(typ))],
        "use_dictionary": [path for name, path, _ in all_leaves if name not in plain],
    }
