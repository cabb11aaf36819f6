"""``pathexp show``: real traceroutes hop by hop, checked against the raw JSON and pyasn."""

from __future__ import annotations

import orjson
import pytest

from analysis.cli import main
from probes import store
from probes.workspace import Campaign
from tests.analysis.test_annotate import pyasn_db  # noqa: F401 - fixture
from tests.analysis.test_paths import US_IXP, us_ixp_campaign  # noqa: F401 - fixture

BUNDLE = "ripe-atlas/pierky-ripe-atlas-monitor-fixtures/1033154.json"


@pytest.fixture()
def real_campaign(test_data, tmp_path, real_snapshot):
    camp = Campaign("wiki", tmp_path / "ws")
    store.ingest_files(camp, [test_data / BUNDLE])
    return camp


def _show(camp: Campaign, capsys, *extra: str) -> tuple[int, str, str]:
    rc = main(["show", "--campaign", camp.name, "--workspace", str(camp.workspace), *extra])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_show_real_traceroute_matches_the_raw_result_and_pyasn(real_campaign, real_snapshot, test_data,
                                                              pyasn_db, capsys):  # noqa: F811
    from analysis.campaign_io import annotate_campaign

    raw = orjson.loads((test_data / BUNDLE).read_bytes())["results"]
    first = min(raw, key=lambda r: (r["timestamp"], r["msm_id"], r["prb_id"]))
    rc, out, _ = _show(real_campaign, capsys, "--probe", str(first["prb_id"]), "--limit", "1")
    assert rc == 0 and "not shown yet: run pathexp annotate" in out
    annotate_campaign(real_campaign, snapshot_id=real_snapshot.id, cache_dir=real_snapshot.path.parents[1])
    rc, out, _ = _show(real_campaign, capsys, "--probe", str(first["prb_id"]), "--limit", "1", "--format", "json")
    (rec,) = [orjson.loads(line) for line in out.splitlines()]
    assert (rec["msm_id"], rec["prb_id"], rec["to"]) == (first["msm_id"], first["prb_id"], first["dst_addr"])
    # every hop, address and RTT of the raw result, in order
    want = []
    for h in first["result"]:
        replies: dict = {}
        for r in h.get("result", []):
            if "from" in r:
                replies.setdefault(r["from"], []).append(round(r["rtt"], 3) if "rtt" in r else None)
        want.append((h["hop"], {a: [x for x in rtts if x is not None] for a, rtts in replies.items()}))
    got = [(h["hop"], {a["address"]: a["rtts"] for a in h["replies"]}) for h in rec["hops"]]
    assert got == want
    checked = 0
    for h in rec["hops"]:
        for a in h["replies"]:
            if a["ip_class"] == "public" and a["ixp"] is None:
                assert a["asn"] == pyasn_db.lookup(a["address"])[0]
                checked += 1
    assert checked >= 5


def test_show_prints_the_paths_verdicts_after_analyze(us_ixp_campaign, capsys):  # noqa: F811
    import pyarrow.parquet as pq

    from analysis.campaign_io import analyze_campaign

    campaign, cache = us_ixp_campaign
    analyze_campaign(campaign, n_boot=50, seed=0, cache_dir=cache)
    rows = pq.read_table(campaign.paths_parquet).to_pylist()
    rc, out, _ = _show(campaign, capsys, "--limit", "10")
    assert rc == 0 and "not shown yet" not in out
    for r in rows:
        assert f"AS path {' '.join(r['as_path'])}" in out
    crossing = [c for r in rows for c in r["pop_crossings"]]
    assert crossing and all(f"enters {c['family']} AS{c['asn']} from AS{c['from_asn']} at hop {c['hop']}" in out
                            for c in crossing)


def test_show_errors_are_one_line(real_campaign, tmp_path, capsys):
    rc, _, err = _show(real_campaign, capsys, "--probe", "1")
    assert rc == 2 and err.strip() == "pathexp show: error: campaign 'wiki': no traceroute matches probe 1"
    rc, _, err = _show(Campaign("nothing", tmp_path / "ws"), capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "run `pathexp ingest` first" in err


def test_show_piped_into_a_reader_that_stops_exits_quietly(real_campaign):
    """`pathexp show ... | head -1`: the reader goes away, pathexp stops without an error line
    (exit 141 = 128 + SIGPIPE, like a Unix tool killed by SIGPIPE)."""
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).parent / "pathexp"
    cmd = [str(exe), "show", "--campaign", real_campaign.name, "--workspace", str(real_campaign.workspace),
           "--limit", "500"]  # about 56 KiB of text
    # a one-page pipe: the output cannot all fit before the reader closes its end
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pipesize=4096)
    assert p.stdout is not None and p.stderr is not None
    first = p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read()
    code = p.wait(timeout=120)
    assert (code, err) == (141, b""), err.decode()
    assert first.startswith(b"Probe #")


def test_a_result_without_hops_shows_the_error_the_probe_reported():
    from analysis.show import render_trace, trace_record

    t = {"msm_id": 1033154, "prb_id": 3564, "timestamp": 1381825021, "src_addr": None, "dst_addr": None,
         "dst_name": "wikipedia-lb.esams.wikimedia.org", "proto": "UDP", "paris_id": 0}
    hops = [{"hop": None, "attempt": None, "reply_from": None,
             "hop_error": "name resolution failed: non-recoverable failure in name resolution"}]
    rec = trace_record(t, hops)
    assert rec["hops"] == [] and rec["errors"] == [hops[0]["hop_error"]]
    text = render_trace(rec)
    assert "error: name resolution failed" in text and "? (wikipedia-lb.esams.wikimedia.org)" in text
