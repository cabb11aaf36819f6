"""Benchmark: annotating the real MENOG hop table vs a per-hop pyasn loop.

Both sides work on the same hop rows (3.7M, 2.7M replies) and the same 2020 CAIDA
prefix2as table; pyasn gets the table converted to its ipasn format. The pyasn side only
does the origin-AS lookup per hop (what a typical measurement script does); ours also does
ip_class, IXP LAN + member, RIR fallback, as2org and family. The ratio is
pyasn_seconds / ours_seconds (higher is better; target >= 10). Peak RSS is reported.

Run: ``.venv/bin/python tests/bench/bench_annotate.py``
"""

from __future__ import annotations

import lzma
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench._common import best_of, data_root, emit, peak_rss_mb, pyasn_table  # noqa: E402

BENCH = "annotate"


def main() -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyasn

    from analysis.annotate import annotate
    from analysis.datasets import load_snapshot
    from probes.parse import parse_results
    from tests.analysis._snap import build

    root = data_root()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        build(root, tmp / "cache", "bench")
        emit(BENCH, "import_all_kinds_s", time.perf_counter() - t0, "s")
        t0 = time.perf_counter()
        snap = load_snapshot("bench", cache_dir=tmp / "cache")
        snap.table("pfx2as", "prefixes"), snap.intervals("pfx2as", 4), snap.intervals("pfx2as", 6)
        emit(BENCH, "snapshot_load_s", time.perf_counter() - t0, "s")
        rss_before = peak_rss_mb()
        raw = lzma.decompress((root / "ripe-atlas" / "traceroutes" / "menog_traceroutes_full.ndjson.xz").read_bytes())
        hops = parse_results(raw.splitlines()).hops  # the project's own parser: the real hop table
        del raw
        emit(BENCH, "peak_rss_before_hops", rss_before, "MiB")
        replies = hops["reply_from"].drop_null().to_pylist()
        # pyasn DB from the same CAIDA table (first origin)
        db = pyasn.pyasn(str(pyasn_table(root, tmp / "ipasn.dat")))

        def ref() -> list:
            return [db.lookup(a)[0] for a in replies]

        def ours_asn_only() -> pa.Array:
            # the same output as the pyasn loop: the origin AS of every hop row
            t, _ = annotate(hops.select(["reply_from"]), snap, dictionary=True)
            return t["asn"].combine_chunks().cast(pa.int64())

        rss_hops = peak_rss_mb()
        ours_s, (table, counts) = best_of(lambda: annotate(hops, snap), repeat=3)
        emit(BENCH, "peak_rss_after_plain_annotate", peak_rss_mb(), "MiB", before=rss_hops)
        dict_s, _ = best_of(lambda: annotate(hops, snap, dictionary=True), repeat=3)
        asn_s, asn_col = best_of(ours_asn_only, repeat=3)
        ref_s, ref_asn = best_of(ref, repeat=1)
        # the asn column equals pyasn wherever the table has a route (CN2 static aside)
        ours_asn = asn_col.to_pylist()
        rf = hops["reply_from"].to_pylist()
        by = table["resolved_by"].to_pylist()
        k = 0
        for a, asn, b in zip(rf, ours_asn, by, strict=True):
            if a is None:
                continue
            if b != "rir":
                assert asn == ref_asn[k], (a, asn, ref_asn[k])
            k += 1
        # sanity: the same origin AS for every pfx2as-resolved reply
        sel = table.filter(pc.equal(table["resolved_by"], "pfx2as"))
        assert sel.num_rows == counts["resolved:pfx2as"]
        emit(BENCH, "hop_rows", hops.num_rows, "rows", replies=len(replies), unique=counts["unique_addresses"])
        emit(BENCH, "ours_full_plain_s", ours_s, "s", note="17 columns materialized per hop row")
        emit(BENCH, "ours_full_dictionary_s", dict_s, "s", note="17 columns, dictionary-encoded")
        emit(BENCH, "ours_asn_column_s", asn_s, "s", note="same output as the pyasn loop")
        emit(BENCH, "pyasn_per_hop_loop_s", ref_s, "s")
        emit(BENCH, "speedup_asn_column_vs_pyasn_loop", ref_s / asn_s, "x", target=">=10")
        emit(BENCH, "speedup_full_dictionary_vs_pyasn_loop", ref_s / dict_s, "x", target=">=10")
        emit(BENCH, "speedup_full_plain_vs_pyasn_loop", ref_s / ours_s, "x")
        emit(BENCH, "ours_rows_per_s", hops.num_rows / ours_s, "rows/s")
        emit(BENCH, "peak_rss", peak_rss_mb(), "MiB")


if __name__ == "__main__":
    main()
