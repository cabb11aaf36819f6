"""Benchmark: local traceroute throughput, pathexp vs scamper, in the netns lab.

64 destination addresses behind the lab's ECMP diamond and silent router
(:mod:`tests.probes.lab`); both tools trace all of them from the source namespace with the
same packets-per-second cap, one attempt per hop, a 1 s wait, gap limit 5 and 64 traces in
flight. Figures (one JSON line each): wall time of each tool (whole process, best of
``--repeat``), pathexp's time inside :func:`probes.local.tracer`, the throughput ratio
(pathexp traces/s over scamper traces/s; target >= 0.5), and the number of TTLs where the
two disagree on the responding address (with the same flow ports both take the same
branch, so it should be 0).

Needs root, ``ip``, ``nft`` and ``scamper``. Usage::

    .venv/bin/python tests/bench/bench_trace.py [--pps 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bench._common import emit  # noqa: E402
from tests.probes.lab import build_lab, destroy, lab_skip_reason  # noqa: E402

BENCH = "trace"
SPORT = 41000
_RUNNER = """
import json, sys, time
from probes.local import TraceOptions, tracer
spec = json.loads(sys.argv[1])
t0 = time.perf_counter()
run = tracer(spec["targets"], options=TraceOptions(**spec["options"]))
print(json.dumps({"inside_s": time.perf_counter() - t0, "stats": dict(run.stats),
                  "hops": {r["dst_addr"]: {h["hop"]: h["result"][0].get("from") for h in r["result"]}
                           for r in run.results}}))
"""


def _pathexp(lab, dsts, *, protocol: str, pps: int, py: str) -> tuple[float, dict]:
    options = {"protocol": protocol, "attempts": 1, "timeout": 1.0, "pps": pps, "concurrency": 64,
               "stop_after_silent": 5, "allow_private": True, "sport": SPORT,
               "port": 33435 if protocol == "udp" else None}
    argv = lab.exec_argv("src", [py, "-c", _RUNNER, json.dumps({"targets": dsts, "options": options})])
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, check=True)
    return time.perf_counter() - t0, json.loads(proc.stdout)


def _scamper(lab, dsts, *, protocol: str, pps: int) -> tuple[float, dict]:
    method = {"udp": "udp-paris -d 33435", "icmp": "icmp-paris"}[protocol]
    cmd = f"trace -P {method} -q 1 -w 1 -g 5 -s {SPORT}"
    argv = lab.exec_argv("src", ["scamper", "-O", "json", "-p", str(pps), "-w", "64", "-c", cmd, "-i", *dsts])
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    hops = {}
    for line in proc.stdout.splitlines():
        obj = json.loads(line)
        if obj.get("type") == "trace":
            hops[obj["dst"]] = {h["probe_ttl"]: h["addr"] for h in obj["hops"]}
    return wall, {"hops": hops}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pps", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    reason = lab_skip_reason() or (None if shutil.which("scamper") else "scamper not installed")
    if reason:
        print(json.dumps({"bench": BENCH, "skipped": reason}))
        return 0
    py = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv").is_dir() else sys.executable
    prefix = f"pxb{os.getpid()}-"
    try:
        lab = build_lab(prefix, n_dst=64)
        dsts = list(lab.dsts)
        for protocol in ("udp", "icmp"):
            best_p, best_s, inside = float("inf"), float("inf"), float("inf")
            out_p: dict = {}
            out_s: dict = {}
            for _ in range(args.repeat):
                wall, out_s = _scamper(lab, dsts, protocol=protocol, pps=args.pps)
                best_s = min(best_s, wall)
                wall, out_p = _pathexp(lab, dsts, protocol=protocol, pps=args.pps, py=py)
                best_p = min(best_p, wall)
                inside = min(inside, out_p["inside_s"])
            ours_by_dst = {d: {int(k): v for k, v in h.items()} for d, h in out_p["hops"].items()}
            mismatches = sum(
                1
                for dst, ours in ours_by_dst.items()
                for ttl in set(ours) | set(out_s["hops"].get(dst, {}))
                if ours.get(ttl) != out_s["hops"].get(dst, {}).get(ttl)
            )
            ctx = {"protocol": protocol, "pps": args.pps, "destinations": len(dsts), "attempts": 1}
            emit(BENCH, "scamper_wall", best_s, "s", **ctx)
            emit(BENCH, "pathexp_wall", best_p, "s", probes=out_p["stats"].get("probes_sent"), **ctx)
            emit(BENCH, "pathexp_in_tracer", inside, "s", **ctx)
            emit(BENCH, "throughput_ratio_vs_scamper", best_s / best_p, "x", target=0.5, **ctx)
            emit(BENCH, "responder_mismatches_vs_scamper", mismatches, "ttls", **ctx)
    finally:
        destroy(prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
