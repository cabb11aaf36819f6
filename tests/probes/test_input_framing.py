"""Lines and records of an input, whatever the reads of its stream return, and a file's
decompression begun before it is opened (``probes.inputs.read_early``).

The records :func:`probes.inputs.iter_records` gives must not depend on where the
stream's reads cut the text: a ``"results"`` key, a ``\\r\\n`` or a blank line split across
two reads is still found. The reference is what the same text gives read in one piece,
and counts known from how the text was built (each API bundle's results, each plain line).
"""

from __future__ import annotations

import lzma
import threading
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes import inputs, memory
from probes.errors import StoreError
from probes.inputs import HashingReader, iter_records, open_input

MENOG = "ripe-atlas/traceroutes/menog_traceroutes_full.ndjson.xz"


@pytest.fixture(scope="module")
def menog_lines(test_data: Path) -> list[bytes]:
    """The first 40 real MENOG results, one line each."""
    with lzma.open(test_data / MENOG) as fh:
        return [fh.readline().rstrip(b"\n") for _ in range(40)]


class _Pieces:
    """A stream handing out ``text`` in reads of the given sizes (cycled), then EOF."""

    def __init__(self, text: bytes, sizes: list[int]) -> None:
        self._text, self._sizes, self._at, self._i = text, sizes, 0, 0

    def read(self, n: int = -1) -> bytes:
        size = self._sizes[self._i % len(self._sizes)]
        self._i += 1
        out = self._text[self._at : self._at + size]
        self._at += len(out)
        return out


def _text(lines: list[bytes], kinds: list[int]) -> tuple[bytes, int]:
    """NDJSON built from real lines: per kind a plain line, a ``\\r\\n`` line, a blank line
    or an API bundle of three results; and the number of records it holds."""
    out, records = [], 0
    for i, kind in enumerate(kinds):
        line = lines[i % len(lines)]
        if kind == 0:
            out.append(line + b"\n")
            records += 1
        elif kind == 1:
            out.append(line + b"\r\n")
            records += 1
        elif kind == 2:
            out.append(b"  \n")
        else:
            bundle = {"results": [orjson.loads(ln) for ln in lines[i : i + 3]], "probes": []}
            out.append(orjson.dumps(bundle) + b"\n")
            records += len(bundle["results"])
    return b"".join(out), records


def _records(text: bytes, sizes: list[int]) -> list[bytes]:
    """The records read in pieces of ``sizes``; blank lines come through (the store's
    blocks skip them)."""
    return [bytes(r) for r in iter_records(HashingReader(_Pieces(text, sizes)), "pieces")]  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(kinds=st.lists(st.integers(0, 3), min_size=1, max_size=14),
       sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=6))
def test_records_do_not_depend_on_where_reads_cut_the_text(menog_lines, kinds, sizes):
    text, n_records = _text(menog_lines, [0, *kinds])  # a plain first line: NDJSON
    whole = _records(text, [len(text) + 1])
    assert sum(1 for r in whole if r.strip()) == n_records
    assert all(not r.endswith(b"\r") and b'"results"' not in r for r in whole)
    assert _records(text, sizes) == whole


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300), word=st.binary(max_size=12), at=st.integers(0, 300))
def test_native_contains_is_the_in_operator(data, word, at):
    native = pytest.importorskip("probes._atlasjson")
    planted = data[:at] + word + data[at:]
    assert native.contains(data, word) is (word in data)
    assert native.contains(planted, word) is True


def _ahead_threads() -> int:
    return sum(t.name == "pathexp-read" and t.is_alive() for t in threading.enumerate())


def test_read_early_hands_over_the_same_bytes(tmp_path, menog_lines):
    text = b"\n".join(menog_lines) + b"\n"
    path = tmp_path / "in.ndjson.xz"
    path.write_bytes(lzma.compress(text))
    before = _ahead_threads()
    inputs.read_early(path)
    try:
        assert str(path) in inputs._EARLY  # begun (its thread may have read it all already)
        with open_input(path) as stream:
            assert str(path) not in inputs._EARLY  # taken over
            hashing = HashingReader(stream)
            got = [bytes(r) for r in iter_records(hashing, str(path))]
        assert got == menog_lines
        assert hashing.size == len(text)
    finally:
        inputs.discard_early()
    assert _ahead_threads() == before  # taken over and closed with the input


def test_a_file_changed_after_read_early_is_read_afresh(tmp_path, menog_lines):
    path = tmp_path / "in.ndjson.xz"
    path.write_bytes(lzma.compress(b"\n".join(menog_lines[:5]) + b"\n"))
    inputs.read_early(path)
    try:
        path.write_bytes(lzma.compress(b"\n".join(menog_lines[5:15]) + b"\n"))
        with open_input(path) as stream:
            got = list(iter_records(HashingReader(stream), str(path)))
        assert got == menog_lines[5:15]
    finally:
        inputs.discard_early()


def test_read_early_leaves_unreadable_and_plain_files_to_open_input(tmp_path, menog_lines):
    before = _ahead_threads()
    inputs.read_early(tmp_path / "missing.xz")  # no error here: open_input reports it
    with pytest.raises(StoreError, match="cannot read"), open_input(tmp_path / "missing.xz"):
        pass
    plain = tmp_path / "in.ndjson"
    plain.write_bytes(b"\n".join(menog_lines[:3]) + b"\n")
    inputs.read_early(plain)
    assert _ahead_threads() == before and not inputs._EARLY  # nothing to decompress: nothing held open
    compressed = tmp_path / "in.ndjson.xz"
    compressed.write_bytes(lzma.compress(plain.read_bytes()))
    inputs.read_early(compressed)
    assert str(compressed) in inputs._EARLY
    inputs.discard_early()  # never opened: closed here (its thread joined)
    assert _ahead_threads() == before


def test_reuse_large_buffers_sets_glibc_malloc():
    # mallopt returns 1 for each setting it took; elsewhere (no glibc) nothing is set
    assert memory.reuse_large_buffers() is (memory._libc("mallopt") is not None)


@pytest.mark.parametrize("kind", ["xz", "gz", "xz+xz"])
def test_decompressed_reads_are_at_least_what_was_asked_and_lose_nothing(menog_lines, kind):
    import gzip
    import io
    import zlib

    text = b"\n".join(menog_lines) + b"\n"
    half = len(text) // 2
    packed = {"xz": lzma.compress(text), "gz": gzip.compress(text),
              "xz+xz": lzma.compress(text[:half]) + lzma.compress(text[half:])}[kind]
    factory = (lambda: zlib.decompressobj(31)) if kind == "gz" else lzma.LZMADecompressor
    stream = inputs._Decompressing(io.BytesIO(packed), factory)
    stream.FEED = 512  # many pieces per read (the real 64 KiB would take this input at once)
    reads = []
    while chunk := stream.read(5000):
        reads.append(chunk)
    assert b"".join(reads) == text
    assert all(len(r) >= 5000 for r in reads[:-1]) and len(reads) > 1
    assert stream.truncated is None
