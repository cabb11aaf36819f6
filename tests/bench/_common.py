"""Shared helpers for the benchmarks: one JSON line per figure, peak RSS, data root."""

from __future__ import annotations

import gzip
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson


def data_root() -> Path:
    root = Path(os.environ.get("PATHEXP_TEST_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    if not (root / "ripe-atlas").is_dir():
        sys.exit(f"benchmark: real data not found at {root}; set PATHEXP_TEST_DATA")
    return root


def emit(bench: str, figure: str, value: float, unit: str, **extra: Any) -> None:
    """Print one JSON line: the benchmark, the figure, its value and unit, and context."""
    line = {"bench": bench, "figure": figure, "value": round(value, 4), "unit": unit, **extra}
    print(orjson.dumps(line).decode(), flush=True)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_of(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """Run ``fn`` ``repeat`` times; return the best wall time in seconds and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def pyasn_table(root: Path, out: Path) -> Path:
    """pyasn's ipasn format from the CAIDA prefix2as files the benchmarks import (first origin)."""
    with open(out, "w") as fh:
        for name in ("routeviews-rv2.pfx2as.ipv4.2020-02.gz", "routeviews-rv6.pfx2as.ipv6.2020-02.gz"):
            with gzip.open(root / "ip2asn" / "caida-pfx2as-mlab" / name, "rt") as src:
                for line in src:
                    net, plen, origins = line.rstrip("\n").split("\t")
                    fh.write(f"{net}/{plen}\t{origins.replace(',', '_').split('_')[0]}\n")
    return out
