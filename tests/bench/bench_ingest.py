"""Ingest speed on the real MENOG results: pathexp parse-to-Arrow vs sagan vs bare orjson.

Run: ``.venv/bin/python tests/bench/bench_ingest.py`` (or ``make bench``). Prints one JSON
line per figure. All three read the same decompressed lines from memory, in one process.
pathexp's parse is measured on Arrow's default memory pool, and once more (single thread) on
the pool ``pathexp ingest`` switches to while it parses (jemalloc, see
:func:`probes.store.ingest_stream`); and on one thread with Arrow's JSON reader alone
(``native=False``: the decoder pathexp used before :mod:`probes._atlasjson`).

Then where an ingest's CPU goes: each stage of ``pathexp ingest`` run on its own, one after
the other on one thread (Arrow's JSON decoder without its thread pool), in CPU seconds
(``time.process_time``, this process): xz decompression, hashing and framing the text into
lines, JSON decoding, validation, flattening, deduplication, and writing the segments (raw
zstd text, traceroute and hop Parquet files) into a temporary folder, with Arrow allocating
from the pool the command uses (jemalloc). The command runs these stages on several threads
at once; their sum is the CPU time it cannot go below.
"""

from __future__ import annotations

import hashlib
import lzma
import sys
import tempfile
import time
from pathlib import Path

import orjson
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from probes import parse, store  # noqa: E402
from probes.parse import iter_parsed, parse_lines  # noqa: E402
from probes.store import BLOCK_LINES  # noqa: E402
from tests.bench._common import data_root, emit, peak_rss_mb  # noqa: E402


def rate(fn, lines, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(lines)
        best = min(best, time.perf_counter() - t0)
    return len(lines) / best


def orjson_floor(lines):
    loads = orjson.loads
    for ln in lines:
        loads(ln)


def pathexp(lines, use_threads=True, native=True):
    for i in range(0, len(lines), BLOCK_LINES):
        parse_lines(lines[i : i + BLOCK_LINES], use_threads=use_threads, native=native)


def pathexp_pipelined(lines):
    blocks = (lines[i : i + BLOCK_LINES] for i in range(0, len(lines), BLOCK_LINES))
    for _ in iter_parsed(blocks):
        pass


def sagan(lines):
    from ripe.atlas.sagan import TracerouteResult

    for ln in lines:
        res = TracerouteResult(orjson.loads(ln), on_error=TracerouteResult.ACTION_IGNORE)
        for hop in res.hops:
            for pkt in hop.packets:
                _ = (pkt.origin, pkt.rtt, pkt.ttl)


def stage_cpu(compressed: bytes) -> dict[str, float]:
    """CPU seconds of each ingest stage over the whole input, run one after the other."""
    cpu: dict[str, float] = {}

    def timed(stage, fn, *args):
        t0 = time.process_time()
        out = fn(*args)
        cpu[stage] = cpu.get(stage, 0.0) + time.process_time() - t0
        return out

    text = timed("xz_decompress", lzma.decompress, compressed)
    timed("sha256", lambda data: hashlib.sha256(data).digest(), text)
    lines = timed("split_lines", lambda data: [ln for ln in data.split(b"\n") if ln], text)
    text = b""
    parsed = []
    for i in range(0, len(lines), BLOCK_LINES):
        raw, kept, drops = timed("json_decode", parse._decode, lines[i : i + BLOCK_LINES], False)
        raw, kept = timed("validate", parse._validate, raw, kept, drops)
        traces, hops, hop_trace = timed("flatten", parse._flatten, raw, "atlas")
        parsed.append(parse.Parsed(hops, traces, drops, kept, hop_trace))
    index = store._KeyIndex()

    def dedup(p):
        keys = store._KeyIndex.encode(*p.keys)
        new = index.select_new(keys)
        index.add(keys[new])

    for p in parsed:
        timed("dedup", dedup, p)
    per_segment = store.SEGMENT_RESULTS // BLOCK_LINES
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        for n, start in enumerate(range(0, len(parsed), per_segment)):
            part = parsed[start : start + per_segment]
            raw_lines = [ln for p in part for ln in p.raw]
            files = {k: Path(tmp) / f"{n}.{k}" for k in ("raw", "traces", "hops")}
            traces = pa.concat_tables([p.traces for p in part])
            hops = pa.concat_tables([p.hops for p in part])
            timed("write_raw_zstd", store._write_raw, files["raw"], raw_lines)
            timed("write_traces_parquet", store.fileio.write_parquet, traces, files["traces"])
            timed("write_hops_parquet", store._write_hops, hops, files["hops"])
    return cpu


def main() -> None:
    path = data_root() / "ripe-atlas/traceroutes/menog_traceroutes_full.ndjson.xz"
    compressed = path.read_bytes()
    lines = [ln for ln in lzma.decompress(compressed).split(b"\n") if ln]
    n = len(lines)
    floor = rate(orjson_floor, lines)
    ours = rate(pathexp, lines)
    ours_1t = rate(lambda ls: pathexp(ls, use_threads=False), lines)
    arrow_1t = rate(lambda ls: pathexp(ls, use_threads=False, native=False), lines)
    ours_pipe = rate(pathexp_pipelined, lines)
    with store._ingest_memory_pool():  # the allocator `pathexp ingest` parses with
        ours_1t_pool = rate(lambda ls: pathexp(ls, use_threads=False), lines)
    theirs = rate(sagan, lines, repeat=1)  # the same 97,982 results, once (it is slow)
    ctx = {"results": n, "input": "menog_traceroutes_full (real, 2019-2020)"}
    emit("ingest", "orjson_loads_floor", floor, "results/s", **ctx)
    emit("ingest", "sagan_walk_packets", theirs, "results/s", **ctx)
    emit("ingest", "pathexp_parse_to_arrow", ours, "results/s", vs_sagan=round(ours / theirs, 2), vs_orjson_floor=round(ours / floor, 2), **ctx)
    emit("ingest", "pathexp_parse_to_arrow_1thread", ours_1t, "results/s", vs_sagan=round(ours_1t / theirs, 2), vs_orjson_floor=round(ours_1t / floor, 2), **ctx)
    emit("ingest", "pathexp_parse_to_arrow_1thread_arrow_reader", arrow_1t, "results/s", vs_sagan=round(arrow_1t / theirs, 2), vs_orjson_floor=round(arrow_1t / floor, 2), decoder="Arrow's JSON reader only (native=False), as before probes/_atlasjson.c", **ctx)
    emit("ingest", "pathexp_parse_to_arrow_1thread_ingest_pool", ours_1t_pool, "results/s", vs_sagan=round(ours_1t_pool / theirs, 2), vs_orjson_floor=round(ours_1t_pool / floor, 2), pool="Arrow jemalloc, as pathexp ingest (the others: Arrow's default pool)", **ctx)
    emit("ingest", "pathexp_parse_to_arrow_pipelined", ours_pipe, "results/s", vs_sagan=round(ours_pipe / theirs, 2), vs_orjson_floor=round(ours_pipe / floor, 2), **ctx)
    emit("ingest", "peak_rss", peak_rss_mb(), "MiB")
    with store._ingest_memory_pool():  # the allocator the command parses and stores with
        cpu = stage_cpu(compressed)
    for stage, secs in cpu.items():
        emit("ingest", "stage_cpu_s", secs, "s", stage=stage, results=n, note="one thread, one stage after the other")
    emit("ingest", "stage_cpu_s", sum(cpu.values()), "s", stage="total", results=n,
         orjson_floor_s=round(n / floor, 3), note="the CPU an ingest cannot go below (imports aside)")


if __name__ == "__main__":
    main()
