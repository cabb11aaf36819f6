"""Ingest speed on the real MENOG results: pathexp parse-to-Arrow vs sagan vs bare orjson.

Run: ``.venv/bin/python tests/bench/bench_ingest.py`` (or ``make bench``). Prints one JSON
line per figure. All three read the same decompressed lines from memory, in one process.
"""

from __future__ import annotations

import lzma
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
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


def pathexp(lines, use_threads=True):
    for i in range(0, len(lines), BLOCK_LINES):
        parse_lines(lines[i : i + BLOCK_LINES], use_threads=use_threads)


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


def main() -> None:
    path = data_root() / "ripe-atlas/traceroutes/menog_traceroutes_full.ndjson.xz"
    lines = [ln for ln in lzma.decompress(path.read_bytes()).split(b"\n") if ln]
    n = len(lines)
    floor = rate(orjson_floor, lines)
    ours = rate(pathexp, lines)
    ours_1t = rate(lambda ls: pathexp(ls, use_threads=False), lines)
    ours_pipe = rate(pathexp_pipelined, lines)
    theirs = rate(sagan, lines, repeat=1)  # the same 97,982 results, once (it is slow)
    ctx = {"results": n, "input": "menog_traceroutes_full (real, 2019-2020)"}
    emit("ingest", "orjson_loads_floor", floor, "results/s", **ctx)
    emit("ingest", "sagan_walk_packets", theirs, "results/s", **ctx)
    emit("ingest", "pathexp_parse_to_arrow", ours, "results/s", vs_sagan=round(ours / theirs, 2), vs_orjson_floor=round(ours / floor, 2), **ctx)
    emit("ingest", "pathexp_parse_to_arrow_1thread", ours_1t, "results/s", vs_sagan=round(ours_1t / theirs, 2), vs_orjson_floor=round(ours_1t / floor, 2), **ctx)
    emit("ingest", "pathexp_parse_to_arrow_pipelined", ours_pipe, "results/s", vs_sagan=round(ours_pipe / theirs, 2), vs_orjson_floor=round(ours_pipe / floor, 2), **ctx)
    emit("ingest", "peak_rss", peak_rss_mb(), "MiB")


if __name__ == "__main__":
    main()
