"""Dask scaling: the same partitions on 1 and on 2 workers (target: 2 workers >= 1.7x faster).

Run: ``.venv/bin/python tests/bench/bench_dask.py [--n 200000] [--files 8] [--repeat 1]``.
The corpus replayed from the real MENOG results (tests/bench/_corpus.py) is cut into
``--files`` input files; for 1 and then 2 workers a ``distributed.LocalCluster`` (one
thread per worker, Arrow's pool sized to it) is started *before* the clock starts and
the whole pipeline runs on it through its scheduler address: ``ingest`` (workers parse
the files, this process commits the staged parts), ``annotate`` (one task per segment),
``analyze`` (the campaign-wide scans of the annotated hops one file per task and
``build_paths`` per segment on the workers; their merges, the lookups and the metrics
here). Besides each stage's wall time it times the bare map of the per-segment
functions over the same segments (``*_map``), the part that Dask parallelizes. One JSON
line per figure; ratios are 1-worker time / 2-worker time.

One run of each configuration cannot resolve a ratio near the target on a machine whose
run-to-run times vary by 10%: ``--repeat R`` runs R rounds of both configurations, in
alternating order, and each figure is the best round's time of each configuration (what
timeit reports: the noise of a shared machine only adds time), with every round's time
and ratio beside it.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench._common import data_root, emit  # noqa: E402
from tests.bench._corpus import build_corpus, split_corpus, work_dir  # noqa: E402
from tests.bench.bench_pipeline import run_stages, snapshot_cache  # noqa: E402


def run(files: list[Path], cache: Path, workers: int) -> dict[str, float]:
    import pyarrow as pa
    from distributed import LocalCluster

    from analysis import campaign_io as cio
    from analysis._hop_scans import destination_pair_rtts
    from probes import store
    from probes.engine import open_runner
    from probes.workspace import Campaign

    ws = work_dir() / f"dask-ws-{workers}"
    shutil.rmtree(ws, ignore_errors=True)
    c = Campaign("bench", ws)
    times: dict[str, float] = {}
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=logging.ERROR,
                      scheduler_kwargs={"dashboard": False, "dashboard_address": ":0"}) as cluster:
        kw = {"engine": "dask", "scheduler": cluster.scheduler_address}
        _, stage_times = run_stages(c, files, cache, **kw)
        times.update(stage_times)
        # the bare per-segment maps over the same segments
        names = store.segment_names(c)
        out = ws / "map-out"
        out.mkdir()
        shared = {"campaign": c, "snapshot_id": "bench-real", "cache_dir": cache, "registry_path": None,
                  "online": False, "out": out}
        with open_runner(**kw) as runner:
            t = time.perf_counter()
            for _ in runner.map(cio._annotate_segment, names, setup=cio._segment_context, shared=shared):
                pass
            times["annotate_map"] = time.perf_counter() - t
        parts = cio._partitions(c, sorted(c.annotated_dir.glob("*.parquet")))
        ann = sorted(c.annotated_dir.glob("*.parquet"))
        # no located destination: every traceroute in scope ("any"; the map's cost is the same)
        dst = pa.table({"dst_addr": pa.array([], pa.string()), "dst_country": pa.array([], pa.string()),
                        "dst_country_via": pa.array([], pa.string()), "dst_anycast": pa.array([], pa.bool_()),
                        "dst_family": pa.array([], pa.string()), "dst_family_via": pa.array([], pa.string())})
        cols = cio._annotated_columns(ann)
        ctx = {"probes": store.read_probe_meta(c), "registry": None, "destinations": dst, "facilities": None,
               "owners": None, "include_endpoints": False, "rtt_jump_ms": 40.0,
               "pair_rtts": destination_pair_rtts(ann, cols), "dst_info": dst, "dst_country": "any",
               "columns": cols, "out": str(out)}
        with open_runner(**kw) as runner:
            t = time.perf_counter()
            for _ in runner.map(cio._paths_partition, parts, shared=ctx):
                pass
            times["paths_map"] = time.perf_counter() - t
    shutil.rmtree(ws, ignore_errors=True)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1,
                    help="rounds of both configurations, their order alternating; each figure is the best round's")
    args = ap.parse_args()
    cache = snapshot_cache()
    files = split_corpus(build_corpus(data_root(), args.n), args.files)
    rounds: list[dict[int, dict[str, float]]] = []
    for i in range(args.repeat):
        order = (1, 2) if i % 2 == 0 else (2, 1)  # a drift of the machine weighs on both alike
        rounds.append({w: run(files, cache, w) for w in order})
    for stage in rounds[0][1]:
        best = {w: min(r[w][stage] for r in rounds) for w in (1, 2)}
        for w in (1, 2):
            emit("dask", f"{stage}_wall", best[w], "s", n=args.n, files=args.files, workers=w,
                 rounds=[round(r[w][stage], 2) for r in rounds])
        emit("dask", f"{stage}_speedup_2v1", best[1] / best[2], "x", n=args.n, target=">= 1.7",
             rounds=[round(r[1][stage] / r[2][stage], 3) for r in rounds])


if __name__ == "__main__":
    main()
