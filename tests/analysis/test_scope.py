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
import pyarrow.compute as pc
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


def test_a_traceroute_without_hop_rows_is_scoped_by_its_destination_and_counted(lines, real_snapshot, tmp_path,
                                                                              capsys):
    """Real results with an empty ``result`` or only an ``error`` give a traceroute row and no
    hop rows. Such a traceroute still went toward its destination: it takes the scope verdict
    its destination gives (not ``unknown-location``), and the scope tally counts it, so the
    summary's traceroutes are the paths table's rows."""
    originals = [orjson.loads(ln) for ln in lines[:300]]
    hopless = []
    for i, obj in enumerate(originals[:40:10]):  # new keys: one second later
        copy = {**obj, "timestamp": obj["timestamp"] + 1}
        if i % 2:
            copy["result"] = []
        else:
            copy.pop("result")
            copy["error"] = "connect failed: Network is unreachable"
        hopless.append(copy)
    src = tmp_path / "in.ndjson"
    src.write_bytes(b"\n".join([*lines[:300], *map(orjson.dumps, hopless)]) + b"\n")
    c = Campaign("hopless", tmp_path / "ws")
    store.ingest_files(c, [src])
    cache = str(real_snapshot.path.parents[1])
    annotate_campaign(c, snapshot_id=real_snapshot.id, cache_dir=cache)
    key = ("msm_id", "prb_id", "timestamp")
    added = {(o["msm_id"], o["prb_id"], o["timestamp"]) for o in hopless}
    traces = store.read_traces(c)
    epoch = pc.cast(pc.cast(traces["timestamp"], pa.int64()), pa.int64()).to_pylist()
    stored = set(zip(traces["msm_id"].to_pylist(), traces["prb_id"].to_pylist(), epoch, strict=True))
    assert added <= stored  # ingested as traceroutes ...
    hops = pq.read_table(c.hops_dir).select(list(key))
    hop_keys = set(zip(hops["msm_id"].to_pylist(), hops["prb_id"].to_pylist(),
                       pc.cast(hops["timestamp"], pa.int64()).to_pylist(), strict=True))
    assert not added & hop_keys  # ... without a hop row
    n = traces.num_rows
    for extra in ((), ("--dst-country", "any")):
        assert _analyze(c, cache, *extra) == 0
        capsys.readouterr()
        scope = orjson.loads(c.exposure_json.read_bytes())["scope"]
        paths = pq.read_table(c.paths_parquet).to_pylist()
        assert len(paths) == scope["traceroutes"] == n
        assert scope["traceroutes_in_scope"] + sum(scope["left_out"].values()) == n
        assert Counter(p["scope_reason"] for p in paths if not p["in_scope"]) == Counter(scope["left_out"])
        row = {(p["msm_id"], p["prb_id"], int(p["timestamp"].timestamp())): p for p in paths}
        for o in hopless:  # the verdict of the original traceroute to the same destination
            mine, orig = row[(o["msm_id"], o["prb_id"], o["timestamp"])], row[(o["msm_id"], o["prb_id"], o["timestamp"] - 1)]
            assert (mine["in_scope"], mine["scope_reason"]) == (orig["in_scope"], orig["scope_reason"])
            assert mine["scope_reason"] != "unknown-location"


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


def test_analyze_without_a_registry_keeps_the_one_annotate_used(us_ixp_campaign, tmp_path, capsys):  # noqa: F811
    """Annotated with a user's registry (one family, AS15169 only; the shipped families not in
    it), analyzed without ``--registry``: the figures are those of the annotation's registry,
    as with ``--registry`` naming it, not the shipped registry's families."""
    campaign, cache = us_ixp_campaign
    reg = tmp_path / "mine.toml"
    reg.write_text('schema = 1\n\n[[family]]\nid = "goog"\nname = "Google"\n\n'
                   '  [[family.asn]]\n  asn = 15169\n  name = "Google"\n  source = "https://example.org/15169"\n')
    annotate_campaign(campaign, snapshot_id="fixture-1", cache_dir=cache, registry_path=reg)
    runs = {}
    for extra in (("--registry", str(reg)), ()):
        assert main(["analyze", "--campaign", campaign.name, "--workspace", str(campaign.workspace),
                     "--cache-dir", str(cache), "--bootstrap", "20", "--dst-country", "any", *extra]) == 0
        capsys.readouterr()
        rep = orjson.loads(campaign.exposure_json.read_bytes())
        runs[extra != ()] = rep
        assert set(rep["families"]) == {"any", "goog"}  # "any": every flagged family together
        assert rep["destination_hosted"]["goog"]["hosted"] == store.read_traces(campaign).num_rows
        paths = pq.read_table(campaign.paths_parquet).to_pylist()
        assert {(p["dst_family"], p["dst_family_via"]) for p in paths} == {("goog", "registry-asn")}
        assert all(p["flagged_families"] == [] for p in paths)  # AS4134 is no family of this registry
    assert runs[True]["families"] == runs[False]["families"]
    assert runs[True]["destination_hosted"] == runs[False]["destination_hosted"]


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


# ------------------------------------------------------------------ per-destination intervals
def _hosted_info(hosted: dict[str, str | None]) -> pa.Table:
    addrs = list(hosted)
    return pa.table({"dst_addr": addrs, "dst_asn": [4134 if hosted[a] else 15169 for a in addrs],
                     "dst_country": ["US"] * len(addrs), "dst_country_via": ["ip2country"] * len(addrs),
                     "dst_family": pa.array([hosted[a] for a in addrs], pa.string()),
                     "dst_family_via": pa.array(["registry-asn" if hosted[a] else None for a in addrs], pa.string())})


def test_destination_hosted_interval_resamples_destinations_not_traceroutes():
    """Whether a destination is hosted is the same for all its traceroutes: two destinations
    of 1,000 traceroutes each, one hosted, say little about the share (was [0.478, 0.522])."""
    from analysis.scope import destination_hosted_of

    info = _hosted_info({"a": "china-telecom", "b": None})
    h = destination_hosted_of({"a": 1000, "b": 1000}, info, ["china-telecom"], n_boot=200, seed=3)
    for fam in ("any", "china-telecom"):
        e = h[fam]
        assert (e["traceroutes"], e["hosted"], e["estimate"]) == (2000, 1000, 0.5)
        assert e["ci_low"] < 0.2 and e["ci_high"] > 0.8 and e["ci_low"] <= 0.5 <= e["ci_high"]
        assert "bootstrap over destinations" in e["method"] and "B=200, seed=3" in e["method"]


def test_destination_hosted_estimate_stays_traceroute_weighted_and_ignores_input_order():
    import random

    from analysis.scope import destination_hosted_of

    fams = {"a": "china-telecom", "b": None, "c": "china-mobile", "d": None, "e": "china-telecom"}
    per = {"a": 3, "b": 1, "c": 6, "d": 10, "e": 5}
    want = destination_hosted_of(per, _hosted_info(fams), ["china-telecom", "china-mobile"])
    assert (want["any"]["hosted"], want["any"]["estimate"]) == (14, 14 / 25)
    assert (want["china-telecom"]["hosted"], want["china-telecom"]["estimate"]) == (8, 8 / 25)
    assert (want["china-mobile"]["hosted"], want["china-mobile"]["estimate"]) == (6, 6 / 25)
    assert all(e["ci_low"] <= e["estimate"] <= e["ci_high"] for e in want.values())
    rng = random.Random(7)
    for _ in range(5):
        keys, rows = list(per), list(fams)
        rng.shuffle(keys)
        rng.shuffle(rows)
        got = destination_hosted_of({k: per[k] for k in keys}, _hosted_info({r: fams[r] for r in rows}),
                                    ["china-telecom", "china-mobile"])
        assert got == want


def test_destination_hosted_where_destinations_agree_is_the_wilson_interval_over_destinations():
    """One destination (or all hosted, or none): no spread to resample; the interval is what
    that many destinations can say, however many traceroutes they have (was [0.996, 1])."""
    from analysis.metrics import wilson_interval
    from analysis.scope import destination_hosted_of

    one = destination_hosted_of({"a": 1000}, _hosted_info({"a": "china-telecom"}), ["china-telecom"])["any"]
    assert one["estimate"] == 1.0 and one["ci_high"] == 1.0 and one["ci_low"] < 0.5
    assert one["ci_low"] == pytest.approx(float(wilson_interval(1, 1)[0]))
    none = destination_hosted_of({f"x{i}": 100 for i in range(20)}, _hosted_info({"a": "china-telecom"}),
                                 ["china-telecom"])["any"]
    assert none["estimate"] == 0.0 and none["ci_low"] == 0.0
    assert none["ci_high"] == pytest.approx(float(wilson_interval(0, 20)[1]))
    empty = destination_hosted_of({}, _hosted_info({"a": "china-telecom"}), ["china-telecom"])["any"]
    assert empty["estimate"] is None and empty["ci_low"] is None and empty["ci_high"] is None


def _pairs(spec: dict[str, list[tuple[int, int, int]]]) -> pa.Table:
    """Pairs from ``{dst: [(prb_id, traceroutes, transiting), ...]}``."""
    rows = [{"dst_addr": d, "prb_id": p, "n": n, "k": k} for d, probes in spec.items() for p, n, k in probes]
    return pa.Table.from_pylist(rows, schema=pa.schema([("dst_addr", pa.string()), ("prb_id", pa.int64()),
                                                        ("n", pa.int64()), ("k", pa.int64())]))


_DESTS = pa.table({"dst_addr": ["a", "b", "c"], "dst_asn": [15169, 4134, 13335], "dst_country": ["US"] * 3,
                   "dst_country_via": ["ip2country"] * 3, "dst_anycast": pa.array([None] * 3, pa.bool_())})


def test_destination_exposure_interval_resamples_probes_not_traceroutes():
    """Destination a: 10 probes x 100 traceroutes, one probe always transits. The traceroutes
    of one probe are not independent: was [0.083, 0.120] (Wilson over 1,000 traceroutes)."""
    from analysis.scope import destination_exposure_of

    spec = {"a": [(1, 100, 100), *((p, 100, 0) for p in range(2, 11))]}
    row = destination_exposure_of(_pairs(spec), _DESTS, n_boot=500, seed=1).to_pylist()[0]
    assert (row["traceroutes"], row["transiting"], row["probes"], row["exposure"]) == (1000, 100, 10, 0.1)
    assert row["ci_low"] <= row["exposure"] <= row["ci_high"]
    assert row["ci_low"] <= 0.01 and row["ci_high"] >= 0.2
    assert "bootstrap over probes" in row["method"] and "B=500, seed=1" in row["method"]


def test_destination_exposure_interval_is_the_destination_rows_bootstrap():
    """Per destination, the interval is bootstrap_sums over its probes (in probe order), as
    path_exposure's by-destination rows have it: the two tables agree."""
    from analysis.metrics import bootstrap_sums, path_exposure
    from analysis.scope import destination_exposure

    spec = {"a": [(1, 30, 30), (2, 10, 0), (5, 20, 4), (9, 7, 1)], "b": [(3, 12, 0), (1, 8, 8)],
            "c": [(2, 40, 10), (4, 40, 0), (6, 5, 5), (8, 1, 0), (11, 9, 2)]}
    rows = []
    for d, probes in spec.items():
        for p, n, k in probes:
            rows += [{"dst_addr": d, "prb_id": p, "flagged_families": ["f"] if i < k else []} for i in range(n)]
    paths = pa.Table.from_pylist(rows)
    paths = paths.append_column("transits_flagged", pc.greater(pc.list_value_length(paths["flagged_families"]), 0))
    got = {r["dst_addr"]: r for r in destination_exposure(paths, _DESTS, n_boot=300, seed=4).to_pylist()}
    for d, probes in spec.items():
        probes = sorted(probes)
        want = bootstrap_sums([k for _, _, k in probes], [n for _, n, _ in probes], n_boot=300, seed=4)
        assert (got[d]["exposure"], got[d]["ci_low"], got[d]["ci_high"]) == want
    by_dst = path_exposure(paths, by="destination", ci="cluster-bootstrap", n_boot=300, seed=4).to_pylist()
    assert {r["dst_addr"]: (r["ci_low"], r["ci_high"]) for r in by_dst} == {
        d: (r["ci_low"], r["ci_high"]) for d, r in got.items()}


def test_destination_exposure_ignores_the_order_and_the_split_of_the_pairs():
    import random

    from analysis.scope import destination_exposure_of, destination_pairs

    rng = random.Random(11)
    rows = [{"dst_addr": rng.choice("abc"), "prb_id": rng.randrange(1, 15), "transits_flagged": rng.random() < 0.3}
            for _ in range(600)]
    paths = pa.Table.from_pylist(rows)
    want = destination_exposure_of(destination_pairs(paths), _DESTS, n_boot=200, seed=2)
    assert want.num_rows == 3 and all(r["ci_low"] < r["ci_high"] for r in want.to_pylist())
    for _ in range(3):
        shuffled = paths.take(pa.array(rng.sample(range(paths.num_rows), paths.num_rows)))
        cuts = sorted(rng.sample(range(1, paths.num_rows), 4))
        parts = [shuffled.slice(a, b - a) for a, b in zip([0, *cuts], [*cuts, paths.num_rows], strict=True)]
        pairs = pa.concat_tables([destination_pairs(p) for p in parts])
        assert pairs.num_rows > want.column("probes").to_numpy().sum()  # a (destination, probe) in several parts
        pairs = pairs.take(pa.array(rng.sample(range(pairs.num_rows), pairs.num_rows)))
        assert destination_exposure_of(pairs, _DESTS, n_boot=200, seed=2).equals(want)


def test_destination_exposure_where_probes_agree_is_the_wilson_interval_over_probes():
    """A single probe, or probes that all transit or all do not: the interval is what that
    many probes can say (was [0.996, 1] for one probe of 1,000 transiting traceroutes)."""
    from analysis.metrics import wilson_interval
    from analysis.scope import destination_exposure_of

    spec = {"a": [(7, 1000, 1000)], "b": [(p, 100, 0) for p in range(1, 21)], "c": [(1, 50, 50), (2, 30, 30)]}
    got = {r["dst_addr"]: r for r in destination_exposure_of(_pairs(spec), _DESTS).to_pylist()}
    a, b, c = got["a"], got["b"], got["c"]
    assert (a["probes"], a["exposure"], a["ci_high"]) == (1, 1.0, 1.0) and 0 < a["ci_low"] < 0.5
    assert a["ci_low"] == pytest.approx(float(wilson_interval(1, 1)[0]))
    assert (b["exposure"], b["ci_low"]) == (0.0, 0.0) and b["ci_high"] == pytest.approx(float(wilson_interval(0, 20)[1]))
    assert c["ci_high"] == 1.0 and c["ci_low"] == pytest.approx(float(wilson_interval(2, 2)[0]))


def test_hegemony_keeps_a_node_whose_number_is_a_probe_id():
    """exclude_viewpoint drops the viewpoint's own AS only when the viewpoint is an AS number:
    probe 4134's paths through AS4134 still count AS4134."""
    from analysis.metrics import hegemony

    t = pa.table({"prb_id": [4134, 7], "probe_asn": [4134, 7],
                  "as_path": [["AS4134", "AS9"], ["AS7", "AS4134", "AS9"]]})
    by_probe = dict(zip(*hegemony(t, viewpoint="prb_id").select(["node", "hegemony"]).to_pydict().values(),
                        strict=True))
    assert by_probe["AS4134"] == 1.0 and by_probe["AS7"] == 0.5 and by_probe["AS9"] == 1.0
    by_as = dict(zip(*hegemony(t).select(["node", "hegemony"]).to_pydict().values(), strict=True))
    assert by_as["AS4134"] == 0.5 and "AS7" not in by_as  # the probe's own AS still left out


def test_bootstrap_groups_is_bootstrap_sums_group_by_group():
    """The per-destination intervals rest on it: every group as bootstrap_sums gives it alone
    (whole-number sums: exactly), groups without clusters NaN."""
    import math

    import numpy as np

    from analysis.metrics import bootstrap_groups, bootstrap_sums

    rng = np.random.default_rng(5)
    sizes = rng.integers(0, 9, 200)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    wc = rng.integers(0, 30, sizes.sum()).astype(float)  # some clusters without weight
    s = np.floor(wc * rng.random(sizes.sum())) * (rng.random(sizes.sum()) < 0.5)
    est, lo, hi = bootstrap_groups(s, wc, starts, n_boot=150, seed=9)
    for g, (a, c) in enumerate(zip(starts.tolist(), sizes.tolist(), strict=True)):
        if c == 0 or not wc[a:a + c].sum():
            assert math.isnan(lo[g]) and math.isnan(hi[g])
            continue
        assert (float(est[g]), float(lo[g]), float(hi[g])) == bootstrap_sums(s[a:a + c], wc[a:a + c], n_boot=150,
                                                                             seed=9)
    with pytest.raises(ValueError, match="starts"):
        bootstrap_groups([1, 2], [1, 2], [1])
