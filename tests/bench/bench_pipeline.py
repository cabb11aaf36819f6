"""End to end at scale: ingest -> annotate -> analyze on a corpus replayed from real results.

Run: ``.venv/bin/python tests/bench/bench_pipeline.py [--sizes 100000 1000000] [--engine dask --workers 2]``.
Each size runs in a fresh process (peak RSS is per run) on the local engine (or on a
LocalCluster: then the RSS is the client's only); the parent
prints one JSON line per figure, including peak RSS at the largest size relative to the
smallest (memory flat in input size: target <= 1.3, under 4 GB) and the throughput
against 10M results in 10 minutes. analyze runs with every traceroute in scope
(:data:`DST_COUNTRY`). The reference data is the real 2020 CAIDA prefix table and the real
IXP files of ../shared/data, imported once into the bench work folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench._common import data_root, emit, peak_rss_mb  # noqa: E402
from tests.bench._corpus import build_corpus, work_dir  # noqa: E402


def snapshot_cache() -> Path:
    from analysis.datasets import load_snapshot
    from analysis.errors import MissingReferenceData
    from tests.analysis._snap import build

    cache = work_dir() / "refcache"
    try:
        load_snapshot("bench-real", cache_dir=cache)
    except MissingReferenceData:
        build(data_root(), cache, snapshot_id="bench-real")
    return cache


#: analyze's destination country here: every traceroute in scope, so that the exposure
#: stage (bootstrap, graph, hegemony) works on all of them (the replayed MENOG
#: destinations are mostly outside the US: with "US" it would have almost nothing to do).
DST_COUNTRY = "any"


def run_stages(c, inputs: list, cache: Path, **engine) -> tuple:
    """ingest -> annotate -> analyze on ``c``; returns the ingest report and wall times per stage."""
    from analysis.campaign_io import analyze_campaign, annotate_campaign
    from probes import store

    times = {}
    t0 = time.perf_counter()
    rep = store.ingest_files(c, inputs, **engine)
    times["ingest"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    annotate_campaign(c, snapshot_id="bench-real", cache_dir=cache, **engine)
    times["annotate"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    analyze_campaign(c, cache_dir=cache, dst_country=DST_COUNTRY, **engine)
    times["analyze"] = time.perf_counter() - t2
    times["total"] = time.perf_counter() - t0
    return rep, times


def child(n: int, engine: str, workers: int) -> None:
    """One full pipeline run; prints a JSON object of stage times and peak RSS."""
    from probes.workspace import Campaign

    cache = snapshot_cache()
    corpus = build_corpus(data_root(), n)
    ws = work_dir() / f"ws-{n}-{engine}-{workers}"
    shutil.rmtree(ws, ignore_errors=True)
    c = Campaign("bench", ws)
    kw = {} if engine == "local" else {"engine": engine, "workers": workers}
    rep, times = run_stages(c, [corpus], cache, **kw)
    if rep.added != n:  # a figure over fewer results than it says is no figure
        raise SystemExit(f"ingest stored {rep.added:,} of {n:,} results (drops {rep.drops})")
    print(json.dumps({"n": n, "added": rep.added, "hop_rows": rep.hop_rows, "times": times, "peak_rss_mb": peak_rss_mb()}))
    shutil.rmtree(ws, ignore_errors=True)


def run_child(n: int, engine: str = "local", workers: int = 1) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(n), "--engine", engine, "--workers", str(workers)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--child", type=int)
    ap.add_argument("--engine", default="local")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.engine, args.workers)
        return
    snapshot_cache()
    runs = {}
    where = {"engine": args.engine} if args.engine == "local" else {"engine": args.engine, "workers": args.workers}
    for n in args.sizes:
        build_corpus(data_root(), n)
        r = run_child(n, args.engine, args.workers)
        runs[n] = r
        for stage, secs in r["times"].items():
            emit("pipeline", f"{stage}_wall", secs, "s", n=n, **where, results_per_s=round(n / secs))
        note = {} if args.engine == "local" else {"note": "this process only, not the workers"}
        emit("pipeline", "peak_rss", r["peak_rss_mb"], "MiB", n=n, **where, **note)
    small, large = min(runs), max(runs)
    if small != large:
        emit("pipeline", "peak_rss_ratio", runs[large]["peak_rss_mb"] / runs[small]["peak_rss_mb"], "x",
             sizes=[small, large], target="<= 1.3")
    # issue 17: 10M results end to end within 10 minutes, i.e. 16,667 results/s
    rate = large / runs[large]["times"]["total"]
    emit("pipeline", "throughput_vs_target", rate / (10_000_000 / 600), "x of 10M in 600 s", n=large,
         results_per_s=round(rate), target=">= 1")


if __name__ == "__main__":
    main()
