"""Whole-process command times on the real MENOG results, each against a reference process.

Run: ``.venv/bin/python tests/bench/bench_commands.py [--n N] [--repeat R]`` (or ``make bench``).
Prints one JSON line per figure. Every figure is the wall time a user waits for: a child
process started with ``subprocess``, timed with ``time.perf_counter`` from spawn to exit
(interpreter start and imports included), best of R. Each command is compared with a
reference script run as its own process in the same run, on the same input:

* ``pathexp ingest`` of the MENOG results into a fresh workspace, vs a script that reads
  the same file with ripe.atlas.sagan and walks every hop and packet of every result
  (it stores nothing; pathexp also writes the raw segments and the Parquet tables);
* the same ``pathexp ingest`` of the same results compressed with bzip2 (``-9``, as RIPE's
  daily dumps are; compressed once, untimed), vs the sagan script reading that file through
  the standard library's ``bz2``; the standard library's decompression of the file alone,
  in this process, is reported beside it (what a single-threaded reader cannot go below);
* ``pathexp annotate`` (17 columns per hop row) vs a script that reads the campaign's hop
  Parquet, looks up every hop's origin AS and prefix with pyasn in a Python loop and writes
  the table back with those two columns. The reference data are imported first with
  ``pathexp datasets import`` (the same real files as the other benchmarks) and the pyasn
  table is built from the same CAIDA prefix2as files, both untimed;
* ``pathexp analyze --dst-country any`` (every traceroute in scope; MENOG has no US
  destination, so the default scope would skip the exposure work) vs a script that reads
  the annotated hops and builds per-traceroute AS paths in a plain Python loop plus a
  networkx AS graph, writing both. The command reports no timings itself, so one extra,
  untimed-for-the-ratio run records when each of its progress steps starts (a handler on
  the ``pathexp.progress`` logger) to show where its time goes.

Ratios are reference_seconds / pathexp_seconds (higher is better). Peak RSS and CPU seconds
(user + system) of each command come from ``/usr/bin/time -f %M`` wrapped around it: a
child forked straight from this process would count this process's pages in its
``ru_maxrss``, and RUSAGE_CHILDREN keeps only the maximum over all children so far.
Without /usr/bin/time the figures fall back to ``os.wait4`` (an upper bound, said so).
"""

from __future__ import annotations

import argparse
import bz2
import json
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.bench._common import data_root, emit, pyasn_table  # noqa: E402

BENCH = "commands"
CAMPAIGN = "menog"
SNAPSHOT = "bench"
MENOG = "ripe-atlas/traceroutes/menog_traceroutes_full.ndjson.xz"
TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
RSS_SOURCE = ("GNU time %M (max RSS of the command's own process)" if TIME else
              "os.wait4 ru_maxrss (upper bound: includes this parent's resident pages at fork)")

REF_INGEST = textwrap.dedent('''
    import bz2, json, lzma, sys
    import orjson
    from ripe.atlas.sagan import TracerouteResult

    path = sys.argv[1]
    opener = lzma.open if path.endswith(".xz") else bz2.open if path.endswith(".bz2") else open
    results = hops = packets = 0
    with opener(path, "rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            res = TracerouteResult(orjson.loads(line), on_error=TracerouteResult.ACTION_IGNORE)
            results += 1
            for hop in res.hops:
                hops += 1
                for pkt in hop.packets:
                    _ = (pkt.origin, pkt.rtt, pkt.ttl)
                    packets += 1
    print(json.dumps({"results": results, "hops": hops, "packets": packets}))
''')

REF_ANNOTATE = textwrap.dedent('''
    import json, sys
    import pyarrow as pa
    import pyarrow.parquet as pq
    import pyasn

    hops_dir, dat, out = sys.argv[1:4]
    table = pq.read_table(hops_dir)
    db = pyasn.pyasn(dat)
    asns, prefixes = [], []
    replies = resolved = 0
    for addr in table.column("reply_from").to_pylist():
        if addr is None:
            asns.append(None)
            prefixes.append(None)
            continue
        replies += 1
        asn, prefix = db.lookup(addr)
        resolved += asn is not None
        asns.append(asn)
        prefixes.append(prefix)
    table = table.append_column("asn", pa.array(asns, pa.int64())).append_column("prefix", pa.array(prefixes, pa.string()))
    pq.write_table(table, out)
    print(json.dumps({"rows": table.num_rows, "replies": replies, "resolved": resolved}))
''')

REF_ANALYZE = textwrap.dedent('''
    import json, sys
    import networkx as nx
    import pyarrow.parquet as pq

    annotated_dir, out_dir = sys.argv[1:3]
    cols = ["msm_id", "prb_id", "timestamp", "hop", "reply_from", "asn", "ixp_id"]
    t = pq.read_table(annotated_dir, columns=cols)
    columns = [t.column(c).to_pylist() for c in cols]
    traces = {}
    for msm, prb, ts, hop, addr, asn, ixp in zip(*columns):
        hops = traces.setdefault((msm, prb, ts), {})
        if addr is None or asn is None or hop in hops:
            hops.setdefault(hop, None)
            continue
        hops[hop] = asn
    graph = nx.Graph()
    paths = []
    for (msm, prb, ts), hops in traces.items():
        path = []
        for hop in sorted(hops):
            asn = hops[hop]
            if asn is not None and (not path or path[-1] != asn):
                path.append(asn)
        for a, b in zip(path, path[1:]):
            if graph.has_edge(a, b):
                graph[a][b]["traceroutes"] += 1
            else:
                graph.add_edge(a, b, traceroutes=1)
        paths.append({"msm_id": msm, "prb_id": prb, "timestamp": ts, "as_path": " ".join(map(str, path))})
    import pyarrow as pa
    pq.write_table(pa.Table.from_pylist(paths), out_dir + "/paths.parquet")
    nx.write_graphml(graph, out_dir + "/as_graph.graphml")
    print(json.dumps({"traceroutes": len(paths), "as_nodes": graph.number_of_nodes(), "as_edges": graph.number_of_edges()}))
''')

# Runs `pathexp` in-process (the console script's own entry point and exit) with a handler on the
# progress logger that records when each step starts, on the system-wide monotonic clock.
STEP_TIMER = textwrap.dedent('''
    import json, logging, sys, time
    steps = [("start", time.monotonic())]

    class Mark(logging.Handler):
        def emit(self, record):
            steps.append((record.getMessage(), time.monotonic()))

    from probes.progress import PROGRESS
    PROGRESS.addHandler(Mark(logging.INFO))
    from analysis.cli import exit_quickly, main
    code = main(sys.argv[2:])
    steps.append(("end", time.monotonic()))
    with open(sys.argv[1], "w") as fh:
        json.dump(steps, fh)
    exit_quickly(code)
''')


class Child:
    """A finished child process: wall seconds, peak RSS (MiB), CPU seconds, its stdout."""

    def __init__(self, wall: float, rss_mb: float, cpu_s: float, out: str) -> None:
        self.wall, self.rss_mb, self.cpu_s, self.out = wall, rss_mb, cpu_s, out

    def last_json(self) -> dict[str, Any]:
        return json.loads(self.out.strip().splitlines()[-1])


def run(cmd: list[str], env: dict[str, str], log_dir: Path) -> Child:
    """Run ``cmd`` to its end; wall time from spawn to reaped exit, peak RSS and CPU of the child.

    A child forked from this process starts with this process's resident pages counted in
    its ``ru_maxrss`` (Linux keeps the high-water mark across exec), so the command is
    started by GNU time, itself a small process, which reports its own child's rusage.
    """
    out_path, err_path, usage_path = log_dir / "child.out", log_dir / "child.err", log_dir / "child.usage"
    wrapped = [TIME, "-f", "%M %U %S", "-o", str(usage_path), *cmd] if TIME else cmd
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(wrapped, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=log_dir)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = out_path.read_text(errors="replace")
    if proc.returncode != 0:
        sys.exit(f"benchmark: {' '.join(cmd)} exited {proc.returncode}:\n{text[-2000:]}\n"
                 f"{err_path.read_text(errors='replace')[-4000:]}")
    if TIME:
        rss_kib, utime, stime = usage_path.read_text().split()[-3:]
        return Child(wall, int(rss_kib) / 1024, float(utime) + float(stime), text)
    return Child(wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, text)


def best(runs: list[Child]) -> Child:
    """The fastest run, with the highest peak RSS of all runs."""
    b = min(runs, key=lambda c: c.wall)
    return Child(b.wall, max(c.rss_mb for c in runs), b.cpu_s, b.out)


def pair(stage: str, ours: Child, ref: Child, count: int, per: str, ref_name: str, **ctx: Any) -> None:
    """The figures of one command: both walls, rates, peak RSS, CPU and the ratio."""
    emit(BENCH, f"{stage}_pathexp_wall_s", ours.wall, "s", cpu_s=round(ours.cpu_s, 2), **ctx)
    emit(BENCH, f"{stage}_reference_wall_s", ref.wall, "s", cpu_s=round(ref.cpu_s, 2), reference=ref_name, **ctx)
    emit(BENCH, f"{stage}_speedup_vs_reference", ref.wall / ours.wall, "x", **ctx)
    emit(BENCH, f"{stage}_pathexp_{per}_per_s", count / ours.wall, f"{per}/s", **ctx)
    emit(BENCH, f"{stage}_reference_{per}_per_s", count / ref.wall, f"{per}/s", **ctx)
    emit(BENCH, f"{stage}_pathexp_peak_rss", ours.rss_mb, "MiB", rss=RSS_SOURCE, **ctx)
    emit(BENCH, f"{stage}_reference_peak_rss", ref.rss_mb, "MiB", rss=RSS_SOURCE, **ctx)


def subset(src: Path, n: int | None, tmp: Path) -> tuple[Path, int]:
    """The input file: the MENOG file itself, or its first ``n`` results as plain NDJSON in ``tmp``."""
    lines = [ln for ln in lzma.decompress(src.read_bytes()).split(b"\n") if ln.strip()]
    if n is None or n >= len(lines):
        return src, len(lines)
    path = tmp / f"menog_first_{n}.ndjson"
    path.write_bytes(b"\n".join(lines[:n]) + b"\n")
    return path, n


def step_spans(steps: list[list], spawn: float, exit_: float) -> list[tuple[str, float]]:
    """Seconds between the marks of the step timer: startup, imports, each step, exit.

    ``steps`` is ``[("start", t), (message, t)..., ("end", t)]`` on the monotonic clock
    (system-wide on Linux, so comparable with ``spawn`` and ``exit_`` of the parent). A
    step's span runs from its message to the next one (the last includes printing the
    summary), so "paths: 0 of 3 partitions" is the time the first partition took.
    """
    (_, start), *marks, (_, end) = steps
    spans = [("python startup", start - spawn)]
    first = marks[0][1] if marks else end
    spans.append(("imports, arguments, up to the first step", first - start))
    for (msg, t), nxt in zip(marks, [*(t for _, t in marks[1:]), end], strict=True):
        spans.append((msg, nxt - t))
    spans.append(("interpreter exit", exit_ - end))
    return spans


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=None, help="number of MENOG results (default: all)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per command; the best is reported (default 1)")
    args = ap.parse_args()
    if (args.n is not None and args.n < 1) or args.repeat < 1:
        ap.error("--n and --repeat must be positive")

    from tests.analysis._snap import real_sources

    root = data_root()
    py = sys.executable
    pathexp = str(Path(py).parent / "pathexp")
    if not os.access(pathexp, os.X_OK):
        pathexp = shutil.which("pathexp") or sys.exit("benchmark: no pathexp executable next to the interpreter")

    with tempfile.TemporaryDirectory(prefix="bench-commands-") as tmp_name:
        tmp = Path(tmp_name)
        logs = tmp / "logs"
        logs.mkdir()
        env = {**os.environ, "PATHEXP_CACHE_DIR": str(tmp / "cache"), "XDG_CONFIG_HOME": str(tmp / "config")}
        scripts = {}
        for name, body in (("ref_ingest", REF_INGEST), ("ref_annotate", REF_ANNOTATE),
                           ("ref_analyze", REF_ANALYZE), ("step_timer", STEP_TIMER)):
            scripts[name] = tmp / f"{name}.py"
            scripts[name].write_text(body)

        src, n = subset(root / MENOG, args.n, tmp)
        label = "menog_traceroutes_full (real, 2019-2020)" + ("" if src == root / MENOG else f", first {n}")
        ctx = {"n": n, "repeat": args.repeat}

        # untimed preparation: reference data for annotate, and the same table for pyasn
        t0 = time.perf_counter()
        for kind, paths in real_sources(root):
            run([pathexp, "datasets", "import", "--kind", kind, "--snapshot", SNAPSHOT, *map(str, paths)], env, logs)
        emit(BENCH, "datasets_import_s", time.perf_counter() - t0, "s", note="untimed preparation, not in any ratio")
        dat = pyasn_table(root, tmp / "ipasn.dat")

        # 1. ingest: a fresh workspace per run
        ours, ref = [], []
        ws = tmp / "ws-0"
        for i in range(args.repeat):
            ws = tmp / f"ws-{i}"
            ours.append(run([pathexp, "ingest", str(src), "--campaign", CAMPAIGN, "--workspace", str(ws)], env, logs))
            ref.append(run([py, str(scripts["ref_ingest"]), str(src)], env, logs))
        camp = ws / CAMPAIGN
        stored = json.loads((camp / "ingest.json").read_text())["results_stored"]
        walked = ref[-1].last_json()
        if stored != n or walked["results"] != n:
            sys.exit(f"benchmark: ingest stored {stored}, reference walked {walked['results']}, input has {n}")
        pair("ingest", best(ours), best(ref), n, "results", "sagan TracerouteResult, every hop and packet",
             input=label, **ctx)
        for i in range(args.repeat - 1):
            shutil.rmtree(tmp / f"ws-{i}")

        # 1b. ingest of the same results as bzip2 (decompressed on several threads)
        plain = lzma.decompress(src.read_bytes()) if src.suffix == ".xz" else src.read_bytes()
        bz = tmp / "menog.ndjson.bz2"
        bz.write_bytes(bz2.compress(plain, 9))
        del plain
        t0 = time.perf_counter()
        bz2.decompress(bz.read_bytes())
        emit(BENCH, "bz2_stdlib_decompress_s", time.perf_counter() - t0, "s", bytes=bz.stat().st_size,
             note="the standard library's bz2 alone, in this process: a single-threaded reader's floor", **ctx)
        ours, ref = [], []
        for i in range(args.repeat):
            ours.append(run([pathexp, "ingest", str(bz), "--campaign", CAMPAIGN, "--workspace", str(tmp / f"bz-{i}")],
                            env, logs))
            ref.append(run([py, str(scripts["ref_ingest"]), str(bz)], env, logs))
            stored = json.loads((tmp / f"bz-{i}" / CAMPAIGN / "ingest.json").read_text())["results_stored"]
            if stored != n:
                sys.exit(f"benchmark: ingest of the bzip2 file stored {stored} of {n} results")
            shutil.rmtree(tmp / f"bz-{i}")
        if ref[-1].last_json()["results"] != n:
            sys.exit(f"benchmark: the bzip2 reference walked {ref[-1].last_json()['results']} of {n} results")
        pair("ingest_bz2", best(ours), best(ref), n, "results", "sagan TracerouteResult over bz2.open",
             input=label + ", bzip2 -9", **ctx)

        # 2. annotate
        ours, ref = [], []
        for _ in range(args.repeat):
            ours.append(run([pathexp, "annotate", "--campaign", CAMPAIGN, "--workspace", str(ws),
                             "--snapshot", SNAPSHOT], env, logs))
            ref.append(run([py, str(scripts["ref_annotate"]), str(camp / "hops"), str(dat),
                            str(tmp / "ref_annotated.parquet")], env, logs))
        counts = json.loads((camp / "annotate.json").read_text())
        looked = ref[-1].last_json()
        if counts["rows"] != looked["rows"] or counts["counts"]["replies"] != looked["replies"]:
            sys.exit(f"benchmark: annotate rows/replies {counts['rows']}/{counts['counts']['replies']}, "
                     f"reference {looked['rows']}/{looked['replies']}")
        pair("annotate", best(ours), best(ref), counts["rows"], "rows", "pyasn lookup per hop, asn + prefix",
             hop_rows=counts["rows"], replies=looked["replies"], **ctx)

        # 3. analyze
        analyze = ["analyze", "--campaign", CAMPAIGN, "--workspace", str(ws), "--dst-country", "any"]
        ours, ref = [], []
        (tmp / "ref_paths").mkdir()
        for _ in range(args.repeat):
            ours.append(run([pathexp, *analyze], env, logs))
            ref.append(run([py, str(scripts["ref_analyze"]), str(camp / "annotated"), str(tmp / "ref_paths")], env, logs))
        exposure = json.loads((camp / "exposure.json").read_text())
        built = ref[-1].last_json()
        if exposure["traceroutes"] != built["traceroutes"]:
            sys.exit(f"benchmark: analyze {exposure['traceroutes']} traceroutes, reference {built['traceroutes']}")
        pair("analyze", best(ours), best(ref), built["traceroutes"], "traceroutes",
             "Python loop AS paths + networkx graph", dst_country="any", bootstrap=1000,
             as_nodes=built["as_nodes"], as_edges=built["as_edges"], **ctx)

        # where analyze spends its time: one more run, steps marked by the progress logger
        steps_file = tmp / "steps.json"
        t_spawn = time.monotonic()
        timed = run([py, str(scripts["step_timer"]), str(steps_file), *analyze], env, logs)
        steps = json.loads(steps_file.read_text())
        emit(BENCH, "analyze_steps_run_wall_s", timed.wall, "s", note="the extra run the steps below come from", **ctx)
        for name, secs in step_spans(steps, t_spawn, t_spawn + timed.wall):
            emit(BENCH, "analyze_step_s", secs, "s", step=name, **ctx)

if __name__ == "__main__":
    main()
