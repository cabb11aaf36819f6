# ruff: noqa: F811 - pytest fixtures imported from other test modules
"""The scope of the figures: traceroutes toward the study's destination country (US by default).

Real parts: real MENOG Atlas results (an intra-Middle-East study: none of its destinations is
in the US), the real reference snapshot, the CLI; the demo world (every destination in the
US, so a traceroute counts toward the US exactly when an RTT to its destination exists).
"""

from __future__ import annotations

import lzma
from collections import Counter

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.campaign_io import annotate_campaign
from analysis.cli import main
from analysis.errors import AnalysisError
from analysis.scope import scope_traceroutes, with_scope
from probes import store
from probes.workspace import Campaign
from tests.analysis._demo import demo_campaign  # noqa: F401 - fixture
from tests.analysis.test_paths import us_ixp_campaign  # noqa: F401 - fixture

MENOG = "ripe-atlas/traceroutes/menog_traceroutes_full.ndjson.xz"


@pytest.fixture(scope="module")
def lines(test_data) -> list[bytes]:
    data = lzma.decompress((test_data / MENOG).read_bytes())
    return [ln for ln in data.split(b"\n") if ln.strip()][:3000]


@pytest.fixture()
def menog(lines, real_snapshot, tmp_path) -> tuple[Campaign, str]:
    src = tmp_path / "menog.ndjson"
    src.write_bytes(b"\n".join(lines[:2000]) + b"\n")
    c = Campaign("menog", tmp_path / "ws")
    store.ingest_files(c, [src])
    cache = real_snapshot.path.parents[1]
    annotate_campaign(c, snapshot_id=real_snapshot.id, cache_dir=cache)
    return c, str(cache)


def _analyze(c: Campaign, cache: str, *extra: str) -> int:
    return main(["analyze", "--campaign", c.name, "--workspace", str(c.workspace), "--cache-dir", cache,
                 "--bootstrap", "20", *extra])


def test_no_menog_traceroute_goes_toward_the_us_and_the_console_says_how_to_widen(menog, capsys, tmp_path):
    c, cache = menog
    assert _analyze(c, cache, "--config", str(tmp_path / "none.toml")) == 2  # a named settings file must exist
    capsys.readouterr()
    assert _analyze(c, cache) == 0
    out = " ".join(capsys.readouterr().out.split())
    n = store.read_traces(c).num_rows
    rep = orjson.loads(c.exposure_json.read_bytes())
    scope = rep["scope"]
    assert scope["country"] == "US" and scope["traceroutes"] == n and scope["traceroutes_in_scope"] == 0
    assert sum(scope["left_out"].values()) == n
    assert f"toward 0 US destinations, 0 traceroutes; {n:,} traceroutes to other or unknown countries left out" in out
    assert "widen the scope with --dst-country any" in out
    paths = pq.read_table(c.paths_parquet).to_pylist()
    assert Counter(p["scope_reason"] for p in paths) == Counter(scope["left_out"])
    # never a silent ZZ: a destination is located in a country, or counted and named as unknown
    assert not any(p["dst_country"] in ("ZZ", "EU", "AP") for p in paths)
    unknown = {p["dst_addr"] for p in paths if p["dst_country"] is None}
    assert scope["unknown_destinations"]["count"] == len(unknown)
    assert set(scope["unknown_destinations"]["addresses"]) == unknown
    assert rep["generation"]["options"]["dst_country"] == "US"
    # MENOG results come without probe metadata: derived from each probe's public address, said
    probes = {t["prb_id"] for t in store.read_traces(c).to_pylist()}
    meta = rep["probe_metadata"]
    assert meta["probes"] == len(probes) and meta["stored"] == 0
    assert meta["derived"] + meta["missing"] == len(probes) and meta["derived"] > 0
    assert meta["status"].endswith("run `pathexp probes fetch --campaign menog` (online) or `pathexp ingest --probes FILE`")
    assert " ".join(meta["status"].split()) in out


def test_any_scope_keeps_every_traceroute_and_the_destination_table_counts_them(menog, capsys):
    c, cache = menog
    assert _analyze(c, cache, "--dst-country", "any") == 0
    traces = store.read_traces(c).to_pylist()
    rep = orjson.loads(c.exposure_json.read_bytes())
    assert rep["traceroutes"] == rep["scope"]["traceroutes_in_scope"] == len(traces)
    dest = pq.read_table(c.exposure_table("destinations")).to_pylist()
    assert {d["dst_addr"]: d["traceroutes"] for d in dest} == dict(Counter(t["dst_addr"] for t in traces))
    probes: dict = {}
    for t in traces:
        probes.setdefault(t["dst_addr"], set()).add(t["prb_id"])
    assert all(d["probes"] == len(probes[d["dst_addr"]]) and d["ci_low"] <= d["exposure"] <= d["ci_high"]
               for d in dest)
    assert (c.exposure_dir / "destinations.csv").is_file()
    # no probe has metadata of its own: every source country rests on a derived country, said so
    countries = {p["probe_country"] for p in pq.read_table(c.paths_parquet).to_pylist()} - {None}
    assert countries and rep["probe_metadata"]["derived_countries"] == dict.fromkeys(sorted(countries), "derived")
    rows = pq.read_table(c.exposure_table("path_exposure")).to_pylist()
    by_country = [r for r in rows if r["grouping"] == "source_country" and r["group"] is not None]
    assert by_country and all(r["country_basis"] == "derived" for r in by_country)
    assert all(r["country_basis"] is None for r in rows if r["grouping"] != "source_country")
    out = " ".join(capsys.readouterr().out.split())
    assert "by-source-country figures rest on a country derived from the probe address" in out
    assert ", ".join(sorted(countries)[:8]) in out


def test_the_settings_file_sets_the_scope_and_refresh_keeps_it(menog, lines, tmp_path, capsys):
    c, cache = menog
    cfg = tmp_path / "config.toml"
    cfg.write_text('[analyze]\ndst_country = "USA"\n')
    assert _analyze(c, cache, "--config", str(cfg)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dst_country must be a two-letter country code" in err
    cfg.write_text('[analyze]\ndst_country = "any"\n')
    assert _analyze(c, cache, "--config", str(cfg)) == 0
    assert orjson.loads(c.exposure_json.read_bytes())["generation"]["options"]["dst_country"] == "any"
    more = tmp_path / "more.ndjson"
    more.write_bytes(b"\n".join(lines[2000:]) + b"\n")
    store.ingest_files(c, [more])
    assert main(["report", "--force", "--campaign", c.name, "--workspace", str(c.workspace)]) == 0
    rep = orjson.loads(c.exposure_json.read_bytes())
    assert rep["generation"]["options"]["dst_country"] == "any"
    assert rep["traceroutes"] == store.read_traces(c).num_rows == len(lines)


def test_with_scope_keeps_the_rows_order_and_marks_missing_traceroutes_out():
    from analysis.paths import PATHS_SCHEMA

    ts = pa.array([0, 0, 0], pa.timestamp("s", tz="UTC"))
    paths = PATHS_SCHEMA.empty_table()
    rows = {f.name: pa.nulls(3, f.type) for f in PATHS_SCHEMA}
    rows.update(msm_id=pa.array([3, 1, 2], pa.int64()), prb_id=pa.array([1, 1, 1], pa.int64()), timestamp=ts,
                dst_country=pa.array(["DE", "DE", None]), as_path=pa.array([["AS1"], ["AS2", "AS3"], []]))
    paths = pa.table(rows, schema=PATHS_SCHEMA)
    rtts = pa.table({"msm_id": [1, 3], "prb_id": [1, 1], "timestamp": ts.slice(0, 2),
                     "dst_addr": ["192.0.2.1", "192.0.2.1"], "dst_rtt_ms": [80.0, 5.0]})
    dst = pa.table({"dst_addr": ["192.0.2.1"], "dst_country": ["US"], "dst_country_via": ["ip2country"],
                    "dst_anycast": pa.array([None], pa.bool_())})
    probes = pa.table({"prb_id": [1], "latitude": [52.4], "longitude": [4.9]})  # Amsterdam
    out = with_scope(paths, scope_traceroutes(rtts, dst, probes, "US").table)
    # 80 ms reach the US coast from Amsterdam (~5,900 km), 5 ms do not
    assert out.column("msm_id").to_pylist() == [3, 1, 2]
    assert out.column("as_path").to_pylist() == [["AS1"], ["AS2", "AS3"], []]
    assert out.column("scope_reason").to_pylist() == ["faster-than-light-to-country", "in-country", "unknown-location"]
    assert out.column("in_scope").to_pylist() == [False, True, False]
    assert out.column("dst_country").to_pylist() == ["US", "US", None]
    with pytest.raises(AnalysisError, match="two-letter"):
        scope_traceroutes(rtts, dst, probes, "USA")


def test_demo_world_scope_is_the_reached_destinations(demo_campaign):  # noqa: F811
    """The demo world: every destination is in the US (the generator places them there), so a
    traceroute counts toward the US exactly when its probe ever reached that destination (an
    RTT to test the location against); the truth says which traceroutes reached."""
    from probes.world import read_truth

    truth = read_truth(demo_campaign.root / "world")
    reached = {(t["msm_id"], t["prb_id"], t["timestamp"]): t["reached"] for t in truth.table("traces").to_pylist()}
    paths = pq.read_table(demo_campaign.paths_parquet).to_pylist()
    key = [(p["msm_id"], p["prb_id"], int(p["timestamp"].timestamp())) for p in paths]
    ever = {(p["prb_id"], p["dst_addr"]) for p, k in zip(paths, key, strict=True) if reached[k]}
    assert all(p["in_scope"] == ((p["prb_id"], p["dst_addr"]) in ever) for p in paths)
    rep = orjson.loads(demo_campaign.exposure_json.read_bytes())
    assert 0 < rep["scope"]["traceroutes_in_scope"] == sum(p["in_scope"] for p in paths) < len(paths)


def test_a_destination_inside_a_flagged_network_counts_as_destination_hosted_not_transit(  # noqa: F811
        us_ixp_campaign, tmp_path, capsys):
    """The us_ixp fixture's traceroutes all go to 8.8.8.8 (AS15169 in its pfx2as); with a registry
    flagging AS15169, every one is destination-hosted and none transits the family."""
    campaign, cache = us_ixp_campaign
    reg = tmp_path / "mine.toml"
    reg.write_text('schema = 1\n\n[[family]]\nid = "goog"\nname = "Google"\n\n'
                   '  [[family.asn]]\n  asn = 15169\n  name = "Google"\n  source = "https://example.org/15169"\n')
    assert main(["analyze", "--campaign", campaign.name, "--workspace", str(campaign.workspace),
                 "--cache-dir", str(cache), "--registry", str(reg), "--bootstrap", "20", "--dst-country", "any"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    rep = orjson.loads(campaign.exposure_json.read_bytes())
    traces = store.read_traces(campaign).to_pylist()
    to_goog = sum(t["dst_addr"] == "8.8.8.8" for t in traces)
    hosted = rep["destination_hosted"]["goog"]
    assert hosted["hosted"] == to_goog == len(traces) and hosted["estimate"] == 1.0
    assert hosted["destinations"][0]["dst_addr"] == "8.8.8.8" and hosted["destinations"][0]["evidence"] == "registry-asn"
    assert rep["families"]["goog"]["path_exposure"]["transiting"] == 0  # an endpoint AS is not transit
    paths = pq.read_table(campaign.paths_parquet).to_pylist()
    assert {(p["dst_family"], p["dst_family_via"]) for p in paths} == {("goog", "registry-asn")}
    assert "destination hosted by a flagged family (not transit): any 100.00%" in out


def test_scope_tallies_of_parts_sum_to_the_summary_of_the_whole():
    """analyze scopes one partition at a time; the summary of the summed tallies is the one
    of every traceroute at once."""
    from analysis.destinations import Located
    from analysis.scope import ScopeTally, scope_summary

    ts = pa.array([0] * 6, pa.timestamp("s", tz="UTC"))
    rtts = pa.table({"msm_id": [1, 2, 3, 4, 5, 6], "prb_id": [1, 1, 2, 2, 1, 2], "timestamp": ts,
                     "dst_addr": ["192.0.2.1", "192.0.2.2", "192.0.2.1", "192.0.2.3", "192.0.2.2", "192.0.2.1"],
                     "dst_rtt_ms": [80.0, 5.0, None, 90.0, 85.0, 3.0]})
    dst = pa.table({"dst_addr": ["192.0.2.1", "192.0.2.2", "192.0.2.3"], "dst_country": ["US", "US", "DE"],
                    "dst_country_via": ["ip2country"] * 3, "dst_anycast": pa.array([None, None, None], pa.bool_()),
                    "unknown_reason": pa.array([None] * 3, pa.string())})
    probes = pa.table({"prb_id": [1, 2], "latitude": [52.4, 40.7], "longitude": [4.9, -74.0]})
    located = Located(dst, Counter())
    for country in ("US", "any"):
        whole = scope_traceroutes(rtts, dst, probes, country)
        parts = [scope_traceroutes(rtts.slice(a, b - a), dst, probes, country) for a, b in ((0, 1), (1, 4), (4, 6))]
        tally = ScopeTally.empty(country.lower())
        for part in parts:
            tally += ScopeTally.of(part)
        assert scope_summary(tally, located) == scope_summary(whole, located)
        assert tally.traceroutes == 6 and tally.reasons == Counter(whole.table.column("scope_reason").to_pylist())
    # a US reason count that is not all in scope: the test above is not trivially "all kept"
    assert 0 < ScopeTally.of(scope_traceroutes(rtts, dst, probes, "US")).in_scope < 6
    with pytest.raises(AnalysisError, match="different countries"):
        ScopeTally.empty("US") + ScopeTally.empty("any")
