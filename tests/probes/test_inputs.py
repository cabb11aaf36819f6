"""bzip2 inputs decompressed on several threads give exactly what the streaming decompressor gives.

Real MENOG results compressed with 100 kB blocks (many blocks, so the threads share the
work), whole, cut off at several points, with damaged bytes, and with garbage after the
stream. Two references: the streaming path ``open_input`` took before (the standard
library's decompressor fed 1 MiB reads, :class:`probes.inputs._Decompressing`), and the
most a damaged file yields (the same decompressor fed 4 KiB at a time, keeping every block
decoded before the damage). A cut-off file must give exactly the bytes of both; a damaged
one at least the streaming path's and never more than the most.
"""

from __future__ import annotations

import bz2
import lzma
from pathlib import Path

import pytest

from probes import inputs
from probes.engine import spare_threads
from probes.inputs import HashingReader, open_input

MENOG = "ripe-atlas/traceroutes/menog_traceroutes_full.ndjson.xz"


@pytest.fixture(scope="module")
def compressed(test_data: Path) -> tuple[bytes, bytes]:
    """About 6 MB of real results and their bzip2 (100 kB blocks: about 60 of them)."""
    with lzma.open(test_data / MENOG) as fh:
        plain = fh.read(6 << 20)
    plain = plain[: plain.rindex(b"\n") + 1]
    return plain, bz2.compress(plain, compresslevel=1)


@pytest.fixture(params=[1, 2], ids=["1-core", "2-cores"])
def cores(request):
    """Arrow's CPU budget for the test (a one-thread Dask worker has 1), restored after."""
    import pyarrow as pa

    saved = pa.cpu_count()
    pa.set_cpu_count(request.param)
    yield request.param
    pa.set_cpu_count(saved)


def _oracle(data: bytes) -> tuple[bytes, bool]:
    """The most the decompressor yields (4 KiB fed at a time), and whether the input ended early or broke."""
    out, d = [], bz2.BZ2Decompressor()
    try:
        for i in range(0, len(data), 1 << 12):
            out.append(d.decompress(data[i : i + (1 << 12)]))
            while d.eof and d.unused_data:
                rest, d = d.unused_data, bz2.BZ2Decompressor()
                out.append(d.decompress(rest))
    except OSError:
        return b"".join(out), True
    return b"".join(out), not d.eof


def _streaming(path: Path) -> tuple[bytes, bool]:
    """What the streaming path reads, and whether it flagged truncation."""
    with open(path, "rb") as raw:
        reader = HashingReader(inputs._Decompressing(raw, bz2.BZ2Decompressor))  # type: ignore[arg-type]
        chunks = []
        while data := reader.read(1 << 20):
            chunks.append(data)
    return b"".join(chunks), reader.truncated is not None


def _read(path: Path) -> tuple[bytes, bool, bool]:
    """Bytes read through open_input, whether it flagged truncation, whether it went parallel."""
    with open_input(path) as stream:
        parallel = inputs._ParallelBz2 in (type(stream), type(getattr(stream, "_stream", None)))
        reader = HashingReader(stream)
        chunks = []
        while data := reader.read(1 << 20):
            chunks.append(data)
    return b"".join(chunks), reader.truncated is not None, parallel


def test_whole_file_and_concatenated_streams(compressed, tmp_path, cores):
    plain, comp = compressed
    f = tmp_path / "whole.bz2"
    f.write_bytes(comp)
    got, truncated, parallel = _read(f)
    # indexed_bzip2 is a dependency: the file is read on several threads, given two cores
    assert parallel == (cores > 1) == spare_threads()
    assert (got, truncated) == (plain, False)
    half = len(plain) // 2
    cut = plain.index(b"\n", half) + 1
    f.write_bytes(bz2.compress(plain[:cut], 1) + bz2.compress(plain[cut:], 1))  # cat a.bz2 b.bz2
    assert _read(f)[:2] == (plain, False)


@pytest.mark.parametrize("fraction", [0.03, 0.31, 0.5, 0.77, 0.999])
def test_cut_off_file_yields_every_decodable_byte(compressed, tmp_path, fraction, cores):
    _, comp = compressed
    data = comp[: int(len(comp) * fraction)]
    f = tmp_path / "cut.bz2"
    f.write_bytes(data)
    want, want_truncated = _oracle(data)
    assert want_truncated and (len(want) > 0 or fraction < 0.05)
    got, truncated, _ = _read(f)
    assert len(got) == len(want)
    assert (got, truncated) == (want, True) == _streaming(f)


@pytest.mark.parametrize("at", [0.2, 0.5, 0.9])
def test_damaged_bytes_yield_what_the_streaming_decompressor_yields(compressed, tmp_path, at, cores):
    """On one core as on two: never a byte more than the damaged file holds intact (one
    thread of indexed_bzip2 hands out a damaged block's bytes: it is not used there)."""
    _, comp = compressed
    data = bytearray(comp)
    i = int(len(data) * at)
    data[i : i + 8] = b"\x00\xff" * 4
    f = tmp_path / "bad.bz2"
    f.write_bytes(bytes(data))
    most, most_truncated = _oracle(bytes(data))
    streamed, streamed_truncated = _streaming(f)
    assert most_truncated and streamed_truncated and most.startswith(streamed)
    got, truncated, _ = _read(f)
    assert truncated
    assert most.startswith(got) and got.startswith(streamed), (len(streamed), len(got), len(most))


def test_garbage_after_the_stream(compressed, tmp_path):
    plain, comp = compressed
    f = tmp_path / "tail.bz2"
    f.write_bytes(comp + b"this is not bzip2\n")
    want, want_truncated = _oracle(f.read_bytes())
    assert want == plain and want_truncated
    assert _read(f)[:2] == (want, True) == _streaming(f)
