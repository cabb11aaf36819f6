"""Input decoding: a path or standard input turned into Atlas JSON records.

Everything between a file handed to ``pathexp ingest`` and the lines the parser reads:

* :func:`open_input` opens a path (``-`` = stdin) and decompresses gzip, bzip2, xz or
  zstd transparently, recognised by their magic bytes. A cut-off or corrupt compressed
  file yields every byte that could still be decoded and is flagged as truncated
  (counted under the drop reason ``truncated_input``), never raised.
* :class:`HashingReader` hashes everything read, so that an input is identified by its
  content (sha256 and size).
* :func:`iter_records` frames the stream whatever its shape: NDJSON line by line (flat
  memory), a JSON array or one pretty-printed object decoded whole, and the output of
  other traceroute tools (``traceroute -n``, mtr, scamper; sniffed from the first object)
  converted by :mod:`probes.convert`.

:mod:`probes.store` deduplicates and stores the records; nothing here writes.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import lzma
import sys
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import orjson
import pyarrow as pa

from probes.errors import InputFormatError, StoreError

__all__ = ["open_input", "HashingReader", "iter_records"]


@contextmanager
def open_input(path: str | Path) -> Iterator[IO[bytes]]:
    """Open an input file (``-`` = stdin), transparently decompressing gzip/bz2/xz/zstd.

    Raises
    ------
    probes.errors.StoreError
        The file cannot be read.
    """
    if str(path) == "-":
        raw: IO[bytes] = sys.stdin.buffer
        close = False
    else:
        try:
            raw = open(path, "rb")
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror}") from exc
        close = True
    try:
        buffered = io.BufferedReader(raw, 1 << 20) if not hasattr(raw, "peek") else raw  # type: ignore[type-var]
        magic = buffered.peek(6)[:6]  # type: ignore[attr-defined]
        if magic[:2] == b"\x1f\x8b":
            stream: IO[bytes] = _Decompressing(buffered, lambda: zlib.decompressobj(31))  # type: ignore[assignment]
        elif magic[:3] == b"BZh":
            stream = _Decompressing(buffered, bz2.BZ2Decompressor)  # type: ignore[assignment]
        elif magic == b"\xfd7zXZ\x00":
            stream = _Decompressing(buffered, lzma.LZMADecompressor)  # type: ignore[assignment]
        elif magic[:4] == b"\x28\xb5\x2f\xfd":
            stream = pa.CompressedInputStream(pa.PythonFile(buffered, mode="r"), "zstd")  # type: ignore[assignment]
        else:
            stream = buffered
        yield stream
    finally:
        if close:
            raw.close()


class _Decompressing:
    """Streaming decompression that keeps every byte a cut-off file still yields.

    The standard file wrappers (``gzip.GzipFile``, ``lzma.LZMAFile``) raise at a
    truncated end and discard what the failing read had decoded; a decompressor fed chunk
    by chunk returns all it can, and a stream that ends before its end marker is flagged
    in :attr:`truncated`. Concatenated members/streams (``cat a.gz b.gz``) are read on.
    """

    def __init__(self, raw: IO[bytes], factory) -> None:
        self._raw = raw
        self._factory = factory
        self._d = factory()
        self.truncated: str | None = None

    def read(self, n: int = -1) -> bytes:
        while True:
            chunk = self._raw.read(1 << 20)
            if not chunk:
                if not self._d.eof:
                    self.truncated = "compressed stream ended before its end marker"
                return b""
            out = self._d.decompress(chunk)
            while self._d.eof and self._d.unused_data:
                rest, self._d = self._d.unused_data, self._factory()
                out += self._d.decompress(rest)
            if out:
                return out


class HashingReader:
    """Wraps a binary stream, hashing everything read (identifies an input by content)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.sha = hashlib.sha256()
        self.size = 0
        #: why the input ended early (a cut-off or corrupt compressed file), or None
        self.truncated: str | None = None

    def read(self, n: int = -1) -> bytes:
        if self.truncated:
            return b""
        try:
            data = self._stream.read(n)
        except (EOFError, OSError, lzma.LZMAError, zlib.error) as exc:
            # corrupt compressed data: keep what was readable, count the input as truncated
            self.truncated = f"{type(exc).__name__}: {exc}"
            return b""
        if not data:
            self.truncated = getattr(self._stream, "truncated", None)
        self.sha.update(data)
        self.size += len(data)
        return data

    def count_truncation(self, drops: Counter | dict) -> None:
        """Count this input under ``truncated_input`` in ``drops`` if it ended early."""
        if self.truncated:
            drops["truncated_input"] = drops.get("truncated_input", 0) + 1


def _iter_lines(stream: HashingReader, chunk: int = 1 << 22) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, line) from a byte stream, without the newline."""
    pending = b""
    lineno = 0
    while True:
        data = stream.read(chunk)
        if not data:
            break
        data = pending + data
        parts = data.split(b"\n")
        pending = parts.pop()
        for part in parts:
            lineno += 1
            yield lineno, part.rstrip(b"\r")
    if pending.strip():
        yield lineno + 1, pending


def iter_records(stream: HashingReader, name: str) -> Iterator[bytes]:
    """The Atlas JSON records of one input, whatever its framing.

    NDJSON streams line by line (flat memory). A JSON array or a single pretty-printed
    object is decoded whole. Output of other traceroute tools is converted by
    :mod:`probes.convert`.

    Parameters
    ----------
    stream : HashingReader
        The opened input.
    name : str
        The input's name in error messages (a path, or ``<stdin>``).

    Raises
    ------
    probes.errors.InputFormatError
        The input is neither RIPE Atlas JSON nor a supported foreign format.
    """
    lines = _iter_lines(stream)
    head: list[bytes] = []
    first_lineno = 1
    for lineno, line in lines:
        if line.strip():
            head.append(line)
            first_lineno = lineno
            break
    if not head:
        return
    first = head[0].lstrip()
    ndjson = False
    if first.startswith(b"{"):
        try:
            obj = orjson.loads(head[0])
            ndjson = isinstance(obj, dict) and not _looks_foreign(obj)
        except orjson.JSONDecodeError:
            ndjson = False
    if ndjson:
        yield head[0]
        for _, line in lines:
            yield line
        return
    rest = b"\n".join(head + [ln for _, ln in lines])
    from probes import convert  # local import: converters are only needed for foreign input

    converted = convert.convert_foreign(rest, name=name)
    if converted is not None:
        for rec in converted:
            yield orjson.dumps(rec)
        return
    try:
        doc = orjson.loads(rest)
    except orjson.JSONDecodeError:
        lines_ = rest.split(b"\n")
        if not any(ln.lstrip().startswith(b"{") for ln in lines_):
            raise InputFormatError(
                f"{name}:{first_lineno}: neither RIPE Atlas JSON nor output of traceroute -n, mtr or scamper"
            ) from None
        # damaged NDJSON: each bad line is counted on its own, the rest is ingested
        yield from lines_
        return
    items = doc if isinstance(doc, list) else [doc]
    for item in items:
        yield orjson.dumps(item)


def _looks_foreign(obj: dict) -> bool:
    """A first JSON object that is another tool's output (scamper, mtr), not Atlas."""
    return "msm_id" not in obj and ("report" in obj or obj.get("type") in {"trace", "cycle-start", "list"})
