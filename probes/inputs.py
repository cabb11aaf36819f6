"""Input decoding: a path or standard input turned into Atlas JSON records.

Everything between a file handed to ``pathexp ingest`` and the lines the parser reads:

* :func:`open_input` opens a path (``-`` = stdin) and decompresses gzip, bzip2, xz or
  zstd transparently, recognised by their magic bytes. A cut-off or corrupt compressed
  file yields every byte that could still be decoded and is flagged as truncated
  (counted under the drop reason ``truncated_input``), never raised.
* :class:`HashingReader` hashes everything read, so that an input is identified by its
  content (sha256 and size).
* :func:`iter_records` frames the stream whatever its shape: NDJSON line by line (flat
  memory; a line over :data:`MAX_LINE_BYTES` is set aside unread), RIPE
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
import os
import queue
import sys
import threading
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from itertools import chain
from pathlib import Path
from types import ModuleType
from typing import IO

import orjson

from probes.engine import spare_threads
from probes.errors import InputFormatError, StoreError

_atlasjson: ModuleType | None
try:  # built by pip from probes/_atlasjson.c (see probes.parse)
    from probes import _atlasjson
except ImportError:
    _atlasjson = None

__all__ = ["open_input", "read_early", "discard_early", "HashingReader", "iter_records", "MAX_DOCUMENT_BYTES",
           "MAX_LINE_BYTES", "SetAside"]

#: Largest input read whole (a JSON array, a pretty-printed object, another tool's text
#: output): decoded, it takes about 13 times its size in memory. NDJSON has no limit.
MAX_DOCUMENT_BYTES = 64 << 20
#: Longest input line (one result) read; a longer line is set aside as ``line_too_long``
#: without being held in memory whole. Real results are < 64 KiB.
MAX_LINE_BYTES = 8 << 20


class SetAside(bytes):
    """A placeholder line for a record set aside before parsing (e.g. ``line_too_long``).

    :func:`iter_records` yields one where it skipped a record, so that the parser
    (:mod:`probes.parse`) counts it under :attr:`reason` with the others. Its bytes are not JSON.
    """

    reason: str

    def __new__(cls, reason: str) -> SetAside:
        obj = super().__new__(cls, b"\x00set-aside:" + reason.encode())
        obj.reason = reason
        return obj


#: Files whose decompression began before anything opened them (:func:`read_early`), by
#: path as given: the file's identity then, the stack that closes it, and the stream.
_EARLY: dict[str, tuple[tuple[int, int, int, int], ExitStack, IO[bytes]]] = {}


def read_early(path: str | Path) -> None:
    """Begin decompressing a compressed input file on a helper thread now, ahead of the
    :func:`open_input` that will read it.

    A command calls this before its slow imports (Arrow, DuckDB), which run on one core:
    the helper decompresses the first chunks on the other meanwhile. The next
    :func:`open_input` of the same path takes the stream over if the file is still the
    one opened here (same inode, device, size and modification time) and a helper thread
    is still allowed (:func:`probes.engine.spare_threads`); otherwise the early stream is
    closed and the file opened afresh. Anything that cannot be opened this way (standard
    input, an uncompressed or unreadable file, a machine with one core) is left to
    :func:`open_input`, which reports its errors. Call :func:`discard_early` when done.
    """
    if str(path) == "-" or len(os.sched_getaffinity(0)) < 2:
        return
    discard_early(path)
    stack = ExitStack()
    try:
        key = _identity(path)
        # a helper thread is assumed allowed here (importing Arrow to ask would be the
        # wait this saves); open_input asks before it takes the stream over
        stream = stack.enter_context(_open_input(path, spare=True))
    except Exception:  # noqa: BLE001 - open_input raises it again, where it is reported
        stack.close()
        return
    if isinstance(stream, _ReadAhead):
        _EARLY[str(path)] = (key, stack, stream)
    else:
        stack.close()


def discard_early(path: str | Path | None = None) -> None:
    """Close what :func:`read_early` opened and no :func:`open_input` took (all, or ``path``'s)."""
    for name in [str(path)] if path is not None else list(_EARLY):
        early = _EARLY.pop(name, None)
        if early is not None:
            early[1].close()


def _identity(path: str | Path) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


@contextmanager
def open_input(path: str | Path) -> Iterator[IO[bytes]]:
    """Open an input file (``-`` = stdin), transparently decompressing gzip/bz2/xz/zstd.

    A compressed file is decompressed ahead on a helper thread where a core is spare; one
    whose decompression :func:`read_early` began is taken over from there.

    Raises
    ------
    probes.errors.StoreError
        The file cannot be read.
    """
    early = _EARLY.pop(str(path), None)
    if early is not None:
        key, stack, stream = early
        try:
            same = key == _identity(path) and spare_threads()
        except OSError:
            same = False
        if same:
            with stack:
                yield stream
            return
        stack.close()
    with _open_input(path) as stream:
        yield stream


@contextmanager
def _open_input(path: str | Path, spare: bool | None = None) -> Iterator[IO[bytes]]:
    if spare is None:
        spare = spare_threads()
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
            parallel = _ParallelBz2.open(path) if close and spare else None
            stream = parallel or _Decompressing(buffered, bz2.BZ2Decompressor)  # type: ignore[assignment]
        elif magic == b"\xfd7zXZ\x00":
            stream = _Decompressing(buffered, lzma.LZMADecompressor)  # type: ignore[assignment]
        elif magic[:4] == b"\x28\xb5\x2f\xfd":
            import pyarrow as pa

            stream = pa.CompressedInputStream(pa.PythonFile(buffered, mode="r"), "zstd")  # type: ignore[assignment]
        else:
            stream = buffered
        if close and stream is not buffered and spare:
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
        self._in = memoryview(b"")  # compressed bytes read, fed from _at on
        self._at = 0
        self._error: BaseException | None = None
        self.truncated: str | None = None

    def read(self, n: int = -1) -> bytes:
        """At least ``n`` decompressed bytes (4 MiB if ``n`` < 1), unless the stream ends or
        breaks first; ``b""`` at its end."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        want = n if n > 0 else 1 << 22
        out: list[bytes] = []
        size = 0
        while size < want:
            if self._at >= len(self._in):
                self._in, self._at = memoryview(self._raw.read(1 << 20)), 0
                if not self._in:
                    if not self._d.eof:
                        self.truncated = "compressed stream ended before its end marker"
                    break
            piece = self._in[self._at : self._at + self.FEED]
            self._at += self.FEED
            try:
                if self._d.eof:  # the last member ended exactly here: a new one starts
                    self._d = self._factory()
                out.append(self._d.decompress(piece))
                size += len(out[-1])
                while self._d.eof and self._d.unused_data:
                    rest, self._d = self._d.unused_data, self._factory()
                    out.append(self._d.decompress(rest))
                    size += len(out[-1])
            except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
                if not size:
                    raise
                self._error = exc  # raised by the next read: this one hands out what was decoded
                break
        return b"".join(out)


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
            import pyarrow as pa
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

    #: at most 48 MiB decompressed ahead: what the helper decodes while a command imports
    #: its libraries (:func:`read_early`, about 0.15 s of xz), or while a block is parsed
    DEPTH = 12
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


def _line_runs(stream: HashingReader, limit: int = MAX_LINE_BYTES) -> Iterator[tuple[int, list[bytes], bool]]:
    """The lines of a byte stream, without their newlines, a run per read of the stream:
    (number of the run's first line, its lines, whether any of them may be an API bundle).

    A ``\\r`` before a newline is dropped. A line longer than ``limit`` bytes is skipped as
    it streams by (never held whole) and given as a :class:`SetAside` ``line_too_long``
    placeholder. A run whose lines cannot hold ``"results"`` is flagged as such by one
    search of the whole read, so its lines need no test of their own.
    """
    pending = b""
    skipping = False
    lineno = 0
    while True:
        data = stream.read(1 << 22)
        if not data:
            break
        parts = data.split(b"\n")
        last = parts.pop()
        if parts:
            parts[0] = first = SetAside("line_too_long") if skipping else pending + parts[0]
            # the first line began in an earlier read: it is tested on its own
            bundle = _contains(data, _BUNDLE_KEY) or (bool(pending) and _contains(first, _BUNDLE_KEY))
            skipping = False
            if b"\r" in data or parts[0].endswith(b"\r") or max(map(len, parts)) > limit:
                parts = [ln if isinstance(ln, SetAside) else SetAside("line_too_long") if len(ln) > limit
                         else ln.rstrip(b"\r") for ln in parts]
            yield lineno + 1, parts, bundle
            lineno += len(parts)
            pending = last
        elif not skipping:
            pending += last
        if len(pending) > limit:
            skipping, pending = True, b""
    if skipping:
        yield lineno + 1, [SetAside("line_too_long")], False
    elif pending.strip():
        yield lineno + 1, [pending], _contains(pending, _BUNDLE_KEY)


#: The key of a RIPE Atlas API bundle's results (:func:`_is_bundle`); a line without it is
#: a record of its own.
_BUNDLE_KEY = b'"results"'


def _contains(data: bytes, word: bytes) -> bool:
    """``word in data``, with the native module's memmem where it is built."""
    return _atlasjson.contains(data, word) if _atlasjson is not None else word in data


def _unbundle(line: bytes, probes: list | None) -> Iterator[bytes]:
    """A line as records: an API bundle ``{"results": [...], "probes": [...]}`` is unwrapped."""
    if _BUNDLE_KEY in line:
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
    :data:`MAX_LINE_BYTES` is skipped unread and counted ``line_too_long``.
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
    found = _first_line(_line_runs(stream))
    if found is None:
        return
    first_lineno, line, rest = found
    head = [line]
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
        for run, bundle in rest:
            if not bundle:
                yield from run
                continue
            for line in run:
                if _BUNDLE_KEY in line:  # the test _unbundle starts with, inlined: one generator less per line
                    yield from _unbundle(line, probes)
                else:
                    yield line
        return
    text = _read_document(head, (line for run, _ in rest for line in run), name)
    from probes import convert  # local import: converters are only needed for foreign input

    converted = convert.convert_foreign(text, name=name)
    if converted is not None:
        for rec in converted:
            yield orjson.dumps(rec)
        return
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:  # a MemoryError is not bad input: it propagates
        lines_ = text.split(b"\n")
        if not any(ln.lstrip().startswith(b"{") for ln in lines_):
            raise InputFormatError(
                f"{name}:{first_lineno}: neither RIPE Atlas JSON nor output of traceroute -n, mtr or scamper"
            ) from None
        # damaged NDJSON: each bad line is counted on its own, the rest is ingested
        yield from lines_
        return
    del text
    if _is_bundle(doc):
        yield from _bundle_results(doc, probes)
        return
    items = doc if isinstance(doc, list) else [doc]
    for item in items:
        if _is_bundle(item):
            yield from _bundle_results(item, probes)
        else:
            yield orjson.dumps(item)


def _first_line(runs: Iterator[tuple[int, list[bytes], bool]]
                ) -> tuple[int, bytes, Iterator[tuple[list[bytes], bool]]] | None:
    """The first non-blank line of the runs, its number, and the runs of the lines after it
    (with their bundle flags); None if every line is blank."""
    for lineno, run, bundle in runs:
        for at, line in enumerate(run):
            if line.strip():
                return lineno + at, line, chain([(run[at + 1 :], bundle)], ((r, b) for _, r, b in runs))
    return None


def _read_document(head: list[bytes], lines: Iterator[bytes], name: str) -> bytes:
    """The rest of an input that is read whole, refused beyond :data:`MAX_DOCUMENT_BYTES`."""
    parts = list(head)
    size = sum(len(p) + 1 for p in parts)
    for line in lines:
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
