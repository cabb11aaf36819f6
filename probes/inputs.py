"""Input decoding: a path or standard input turned into Atlas JSON records.

Everything between a file handed to ``pathexp ingest`` and the lines the parser reads:

* :func:`open_input` opens a path (``-`` = stdin) and decompresses gzip, bzip2, xz or
  zstd transparently, recognised by their magic bytes. A cut-off or corrupt compressed
  file yields every byte that could still be decoded and is flagged as truncated
  (counted under the drop reason ``truncated_input``), never raised.
* :class:`HashingReader` hashes everything read, so that an input is identified by its
  content (sha256 and size).
* :func:`iter_records` frames the stream whatever its shape: NDJSON line by line (flat
  memory; a line over :data:`probes.parse.MAX_LINE_BYTES` is set aside unread), RIPE
  Atlas API bundles unwrapped result by result, a JSON array or one pretty-printed object
  decoded whole up to :data:`MAX_DOCUMENT_BYTES` (refused beyond), and the output of
  other traceroute tools (``traceroute -n``, mtr, scamper; sniffed from the first object)
  converted by :mod:`probes.convert`.

:mod:`probes.store` deduplicates and stores the records; nothing here writes.
"""

from __future__ import annotations

import bz2
import hashlib
import io
import lzma
import queue
import sys
import threading
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import orjson
import pyarrow as pa

from probes.engine import spare_threads
from probes.errors import InputFormatError, StoreError
from probes.parse import MAX_LINE_BYTES, SetAside

__all__ = ["open_input", "HashingReader", "iter_records", "MAX_DOCUMENT_BYTES"]

#: Largest input read whole (a JSON array, a pretty-printed object, another tool's text
#: output): decoded, it takes about 13 times its size in memory. NDJSON has no limit.
MAX_DOCUMENT_BYTES = 64 << 20


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
            # a file (not stdin): seekable; on one core the streaming decompressor, which
            # checks every block's CRC (indexed_bzip2 on one thread hands out damaged blocks)
            parallel = _ParallelBz2.open(path) if close and spare_threads() else None
            stream = parallel or _Decompressing(buffered, bz2.BZ2Decompressor)  # type: ignore[assignment]
        elif magic == b"\xfd7zXZ\x00":
            stream = _Decompressing(buffered, lzma.LZMADecompressor)  # type: ignore[assignment]
        elif magic[:4] == b"\x28\xb5\x2f\xfd":
            stream = pa.CompressedInputStream(pa.PythonFile(buffered, mode="r"), "zstd")  # type: ignore[assignment]
        else:
            stream = buffered
        if close and stream is not buffered and spare_threads():
            # a file (not stdin, whose reads may block for ever): decompress ahead on a
            # helper thread, overlapping with the parsing of what was read before
            ahead = _ReadAhead(stream)
            try:
                yield ahead  # type: ignore[misc]
            finally:
                ahead.close()
                if isinstance(stream, _ParallelBz2):
                    stream.close()
        else:
            yield stream
    finally:
        if close:
            raw.close()


class _Decompressing:
    """Streaming decompression that keeps every byte a cut-off or damaged file still yields.

    The standard file wrappers (``gzip.GzipFile``, ``lzma.LZMAFile``) raise at a
    truncated end and discard what the failing read had decoded; a decompressor fed
    :data:`FEED` bytes at a time returns all it can, and a stream that ends before its end
    marker is flagged in :attr:`truncated`. Where the data is damaged (or what follows
    the last member is not compressed data), what the pieces before decoded is handed out
    and the error is raised by the next read. Concatenated members/streams
    (``cat a.gz b.gz``) are read on.
    """

    #: Compressed bytes given to the decompressor at once: what a damaged piece can cost.
    FEED = 1 << 16

    def __init__(self, raw: IO[bytes], factory) -> None:
        self._raw = raw
        self._factory = factory
        self._d = factory()
        self._error: BaseException | None = None
        self.truncated: str | None = None

    def read(self, n: int = -1) -> bytes:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        while True:
            chunk = self._raw.read(1 << 20)
            if not chunk:
                if not self._d.eof:
                    self.truncated = "compressed stream ended before its end marker"
                return b""
            out: list[bytes] = []
            try:
                for i in range(0, len(chunk), self.FEED):
                    if self._d.eof:  # the last member ended exactly here: a new one starts
                        self._d = self._factory()
                    out.append(self._d.decompress(chunk[i : i + self.FEED]))
                    while self._d.eof and self._d.unused_data:
                        rest, self._d = self._d.unused_data, self._factory()
                        out.append(self._d.decompress(rest))
            except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
                if not any(out):
                    raise
                self._error = exc  # raised by the next read: this one hands out what was decoded
            data = b"".join(out)
            if data or self._error is not None:
                return data


class _ParallelBz2:
    """A bzip2 file decompressed on several threads (``indexed_bzip2`` finds the blocks).

    bzip2 compresses blocks independently, so a file's blocks are decompressed at once on
    Arrow's CPU count of threads (on a Dask worker, its own threads) instead of one after
    the other; used only with two or more (:func:`probes.engine.spare_threads`). At any
    error (a cut-off or corrupt file, data after the last stream that is not bzip2) the
    standard library's streaming decompressor (:class:`_Decompressing`) reads the file
    again from its start, skips the bytes already handed out and goes on
    from there: a cut-off file yields exactly what the streaming path yields, and a
    corrupt one at least that (the streaming path loses the good blocks decoded in the
    same 1 MiB read as the damage), flagged as truncated the same way. Without
    ``indexed_bzip2`` (or where it cannot open the file) :func:`open_input` uses the
    streaming decompressor directly.
    """

    def __init__(self, path: str | Path, reader: IO[bytes]) -> None:
        self._path = path
        self._reader: IO[bytes] | None = reader
        self._fallback: _Decompressing | None = None
        self._fallback_raw: IO[bytes] | None = None
        self._delivered = 0
        self.truncated: str | None = None

    @classmethod
    def open(cls, path: str | Path) -> _ParallelBz2 | None:
        try:
            import indexed_bzip2
        except ImportError:
            return None
        try:
            reader = indexed_bzip2.open(str(path), parallelization=max(1, pa.cpu_count()))
        except Exception:  # noqa: BLE001 - not openable by it: the streaming path decides
            return None
        return cls(path, reader)

    def read(self, n: int = -1) -> bytes:
        if self._reader is not None:
            try:
                data = self._reader.read(n if n > 0 else _ReadAhead.CHUNK)
            except Exception:  # noqa: BLE001 - its errors are C++ exceptions of several types
                self._switch()
            else:
                if data or _ends_with_bz2_stream_end(self._path):
                    self._delivered += len(data)
                    return data
                # it ended where the file does not: what follows the last stream is decided
                # (and flagged) as the streaming path does
                self._switch()
        assert self._fallback is not None
        data = self._fallback.read(n)
        self.truncated = self._fallback.truncated
        return data

    def _switch(self) -> None:
        """Go on with the streaming decompressor from the first byte not yet handed out."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._fallback_raw = open(self._path, "rb")
        self._fallback = _Decompressing(self._fallback_raw, bz2.BZ2Decompressor)
        skip = self._delivered
        while skip:
            data = self._fallback.read()  # raises where the stream is damaged, as it would have
            if not data:  # it ends before the bytes already handed out: nothing more to give
                self.truncated = self._fallback.truncated or "bzip2 stream ended early"
                return
            if len(data) > skip:
                self._fallback = _Prefixed(data[skip:], self._fallback)  # type: ignore[assignment]
                return
            skip -= len(data)

    def close(self) -> None:
        for f in (self._reader, self._fallback_raw):
            if f is not None:
                f.close()
        self._reader = self._fallback_raw = None


#: The 48-bit magic that ends a bzip2 stream (then a 32-bit CRC, then padding to a byte).
_BZ2_STREAM_END = 0x177245385090


def _ends_with_bz2_stream_end(path: str | Path) -> bool:
    """Whether the file's last bytes are a bzip2 end-of-stream marker (nothing after it)."""
    with open(path, "rb") as fh:
        fh.seek(0, io.SEEK_END)
        fh.seek(max(0, fh.tell() - 11))
        tail = int.from_bytes(fh.read(), "big")
    return any((tail >> (pad + 32)) & ((1 << 48) - 1) == _BZ2_STREAM_END for pad in range(8))


class _Prefixed:
    """A stream that first returns ``head``, then reads ``rest`` (with its ``truncated``)."""

    def __init__(self, head: bytes, rest: _Decompressing) -> None:
        self._head: bytes | None = head
        self._rest = rest

    @property
    def truncated(self) -> str | None:
        return self._rest.truncated

    def read(self, n: int = -1) -> bytes:
        if self._head is not None:
            head, self._head = self._head, None
            return head
        return self._rest.read(n)


class _ReadAhead:
    """Reads a stream on a helper thread, at most :attr:`DEPTH` reads ahead of the caller.

    The decompressors release the GIL, so decompressing the next chunk overlaps with
    whatever the caller does with this one. Each :meth:`read` returns what one read of the
    wrapped stream returned, in order; an exception raised by a read is raised by the
    matching :meth:`read` here, and nothing is read after it (the wrapped stream stops
    there too). ``truncated`` is the wrapped stream's, read once the stream has ended.
    """

    DEPTH = 2
    CHUNK = 1 << 22

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._queue: queue.Queue[tuple[bytes, BaseException | None]] = queue.Queue(self.DEPTH)
        self._stop = threading.Event()
        self._ended = False
        self._thread = threading.Thread(target=self._run, name="pathexp-read", daemon=True)
        self._thread.start()

    @property
    def truncated(self) -> str | None:
        return getattr(self._stream, "truncated", None)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._stream.read(self.CHUNK)
            except BaseException as exc:  # handed to the caller, raised by its read
                self._put((b"", exc))
                return
            self._put((data, None))
            if not data:
                return

    def _put(self, item: tuple[bytes, BaseException | None]) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def read(self, n: int = -1) -> bytes:
        """The next chunk the helper thread read (up to :attr:`CHUNK` bytes; ``b""`` at the
        end). ``n`` is not honoured: the callers take whatever one read gives, as from a pipe."""
        if self._ended:
            return b""
        data, exc = self._queue.get()
        if exc is not None:
            self._ended = True
            raise exc
        if not data:
            self._ended = True
        return data

    def close(self) -> None:
        """Stop the helper thread (after its current read) and wait for it."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.1)
            except queue.Empty:
                pass
        self._thread.join()


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


def _iter_lines(stream: HashingReader, chunk: int = 1 << 22, limit: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes]]:
    """Yield (line number, line) from a byte stream, without the newline.

    A line longer than ``limit`` bytes is skipped as it streams by (never held whole) and
    yielded as a :class:`probes.parse.SetAside` ``line_too_long`` placeholder.
    """
    pending = b""
    skipping = False
    lineno = 0

    def checked(line: bytes) -> bytes:
        return SetAside("line_too_long") if len(line) > limit else line.rstrip(b"\r")

    while True:
        data = stream.read(chunk)
        if not data:
            break
        parts = data.split(b"\n")
        last = parts.pop()
        if parts:
            lineno += 1
            yield lineno, SetAside("line_too_long") if skipping else checked(pending + parts[0])
            skipping = False
            for part in parts[1:]:
                lineno += 1
                yield lineno, checked(part)
            pending = last
        elif not skipping:
            pending += last
        if len(pending) > limit:
            skipping, pending = True, b""
    if skipping:
        yield lineno + 1, SetAside("line_too_long")
    elif pending.strip():
        yield lineno + 1, pending


def _unbundle(line: bytes, probes: list | None) -> Iterator[bytes]:
    """A line as records: an API bundle ``{"results": [...], "probes": [...]}`` is unwrapped."""
    if b'"results"' in line:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            yield line
            return
        if _is_bundle(obj):
            yield from _bundle_results(obj, probes)
            return
    yield line


def _is_bundle(obj: object) -> bool:
    return isinstance(obj, dict) and "msm_id" not in obj and isinstance(obj.get("results"), list)


def _bundle_results(obj: dict, probes: list | None) -> Iterator[bytes]:
    if probes is not None and obj.get("probes") is not None:
        from probes.metadata import probe_objects  # a list, or an API page of them

        try:
            probes.extend(probe_objects(obj["probes"]))
        except InputFormatError:
            probes.append(obj["probes"])  # set aside as not_an_object when checked
    for item in obj["results"]:
        yield orjson.dumps(item)


def iter_records(stream: HashingReader, name: str, *, probes: list | None = None) -> Iterator[bytes]:
    """The Atlas JSON records of one input, whatever its framing.

    NDJSON streams line by line (flat memory); a line longer than
    :data:`probes.parse.MAX_LINE_BYTES` is skipped unread and counted ``line_too_long``.
    A RIPE Atlas API bundle ``{"results": [...], "probes": [...], ...}`` (on one line, or
    as the whole document) yields its results one by one; its probe objects are appended
    to ``probes`` when a list is given. A JSON array or a single pretty-printed object is
    decoded whole, up to :data:`MAX_DOCUMENT_BYTES` (it takes about 13 times its size in
    memory). Output of other traceroute tools is converted by :mod:`probes.convert`.

    Parameters
    ----------
    stream : HashingReader
        The opened input.
    name : str
        The input's name in error messages (a path, or ``<stdin>``).
    probes : list, optional
        Receives the probe objects of API bundles (unchecked; see
        :func:`probes.metadata.check_probe_objects`).

    Raises
    ------
    probes.errors.InputFormatError
        The input is neither RIPE Atlas JSON nor a supported foreign format, or is a
        whole document larger than :data:`MAX_DOCUMENT_BYTES`.
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
    ndjson = isinstance(head[0], SetAside)
    if first.startswith(b"{") and not ndjson:
        try:
            obj = orjson.loads(head[0])
            ndjson = isinstance(obj, dict) and not _looks_foreign(obj)
        except orjson.JSONDecodeError:
            ndjson = False
    if ndjson:
        yield from _unbundle(head[0], probes)
        for _, line in lines:
            if b'"results"' in line:  # the test _unbundle starts with, inlined: one generator less per line
                yield from _unbundle(line, probes)
            else:
                yield line
        return
    rest = _read_document(head, lines, name)
    from probes import convert  # local import: converters are only needed for foreign input

    converted = convert.convert_foreign(rest, name=name)
    if converted is not None:
        for rec in converted:
            yield orjson.dumps(rec)
        return
    try:
        doc = orjson.loads(rest)
    except orjson.JSONDecodeError:  # a MemoryError is not bad input: it propagates
        lines_ = rest.split(b"\n")
        if not any(ln.lstrip().startswith(b"{") for ln in lines_):
            raise InputFormatError(
                f"{name}:{first_lineno}: neither RIPE Atlas JSON nor output of traceroute -n, mtr or scamper"
            ) from None
        # damaged NDJSON: each bad line is counted on its own, the rest is ingested
        yield from lines_
        return
    del rest
    if _is_bundle(doc):
        yield from _bundle_results(doc, probes)
        return
    items = doc if isinstance(doc, list) else [doc]
    for item in items:
        if _is_bundle(item):
            yield from _bundle_results(item, probes)
        else:
            yield orjson.dumps(item)


def _read_document(head: list[bytes], lines: Iterator[tuple[int, bytes]], name: str) -> bytes:
    """The rest of an input that is read whole, refused beyond :data:`MAX_DOCUMENT_BYTES`."""
    parts = list(head)
    size = sum(len(p) + 1 for p in parts)
    for _, line in lines:
        size += len(line) + 1
        if isinstance(line, SetAside) or size > MAX_DOCUMENT_BYTES:
            raise InputFormatError(
                f"{name}: a JSON array or multi-line document larger than {MAX_DOCUMENT_BYTES >> 20} MiB "
                f"is not read whole (it needs about 13 times its size in memory); write it as NDJSON, "
                f"one result per line (e.g. jq -c '.[]' {name})"
            )
        parts.append(line)
    return b"\n".join(parts)


def _looks_foreign(obj: dict) -> bool:
    """A first JSON object that is another tool's output (scamper, mtr), not Atlas."""
    return "msm_id" not in obj and ("report" in obj or obj.get("type") in {"trace", "cycle-start", "list"})
