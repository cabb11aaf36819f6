"""Validity of the whole pipeline on the synthetic world: ``pathexp demo`` against ground truth.

One demo run (small world, seed 0) is shared by the module; its numbers are checked against
the world's truth files, which the generator writes independently of the pipeline. A second
run through the CLI checks determinism and the printed output.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.demo import accuracy as acc
from analysis.demo import run_demo
from probes.errors import ConfigError
from probes.world import read_truth

TARGET = 0.99


@pytest.fixture(scope="module")
def user_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in for the user's cache: the demo must never write there."""
    return tmp_path_factory.mktemp("user-cache")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, user_cache: Path):
    ws = tmp_path_factory.mktemp("ws")
    old = os.environ.get("PATHEXP_CACHE_DIR")
    os.environ["PATHEXP_CACHE_DIR"] = str(user_cache)
    try:
        result = run_demo(workspace=ws, seed=0, size="small", artefacts=None)  # the clean world
    finally:
        if old is None:
            os.environ.pop("PATHEXP_CACHE_DIR", None)
        else:
            os.environ["PATHEXP_CACHE_DIR"] = old
    saved = {name: (ws / "demo" / rel).read_bytes() for name, rel in (
        ("exposure", "exposure.json"), ("paths", "paths/paths.parquet"), ("accuracy", "accuracy.json"))}
    return result, ws, saved


@pytest.fixture(scope="module")
def truth(demo) -> dict:
    result, _ws, _saved = demo
    return read_truth(result.files["world"]).world


def test_demo_writes_everything_inside_its_folder(demo, user_cache: Path) -> None:
    result, ws, _ = demo
    root = ws / "demo"
    for rel in ("world/world.json", "world/truth/traces.parquet", "cache/snapshots/demo-small-seed0/snapshot.json",
                "exposure.json", "paths/paths.parquet", "exposure/change_events.csv", "accuracy.json",
                "annotate.json", "probes.parquet", "demo.json"):
        assert (root / rel).is_file(), rel
    assert list(user_cache.iterdir()) == []  # the user's reference-data cache is untouched
    assert set(os.listdir(ws)) == {"demo"}


def test_flagged_crossing_detection(demo) -> None:
    s = demo[0].accuracy["flagged_crossings"]
    assert s["truth"] > 1000  # the small world has ~1,600 family entries
    assert s["precision"] >= TARGET, s["false_examples"]
    assert s["recall"] >= TARGET, s["missed_examples"]


def test_flagged_crossings_hand_count(demo, truth) -> None:
    """The truth side of the comparison, recounted here from the truth tables alone."""
    world = read_truth(demo[0].files["world"])
    flagged = world.table("flagged_crossings").to_pylist()
    paths = {(r["msm_id"], r["prb_id"], r["timestamp"]): r["as_path"]
             for r in world.table("traces").to_pylist()}
    fam = {a: f for f, asns in truth["families"].items() for a in asns}
    entries = set()
    us_entry: dict[str, set] = {"any": set()}
    for r in flagged:
        path = paths[(r["msm_id"], r["prb_id"], r["timestamp"])]
        i = path.index(r["asn"])
        if i == 0 or fam.get(path[i - 1]) != r["family"]:
            entries.add((r["msm_id"], r["prb_id"], r["timestamp"], r["family"], r["asn"]))
            if r["country"] == "US":
                for f in ("any", r["family"]):
                    us_entry.setdefault(f, set()).add((r["msm_id"], r["prb_id"], r["timestamp"]))
    assert demo[0].accuracy["flagged_crossings"]["truth"] == len(entries)
    # every truth crossing is either an entry or a hand-over between ASes of one family
    assert len(flagged) > len(entries)
    # the true PoP exposure the interval check uses: in-scope traceroutes entering a family in the US
    scoped = _in_scope_keys(demo[0])
    for r in demo[0].accuracy["exposure"]:
        if r["kind"] == "pop_exposure":
            assert r["true"] == pytest.approx(len(us_entry.get(r["family"], set()) & scoped) / len(scoped)), r


def _in_scope_keys(result) -> set:
    """Keys (msm, probe, epoch seconds) of the traceroutes the analysis kept in scope."""
    rows = pq.read_table(result.campaign.paths_parquet, columns=["msm_id", "prb_id", "timestamp", "in_scope"])
    return {(r["msm_id"], r["prb_id"], int(r["timestamp"].timestamp())) for r in rows.to_pylist() if r["in_scope"]}


def test_crossing_location_recall(demo) -> None:
    s = demo[0].accuracy["crossing_locations"]
    assert s["recall"] >= TARGET, s["missed_examples"]


def test_crossing_location_precision(demo) -> None:
    s = demo[0].accuracy["crossing_locations"]
    assert s["precision"] >= TARGET, s["false_examples"]


def test_us_pop_claims_are_right(demo) -> None:
    """PoP exposure counts crossings located in the US: such a claim must be true."""
    s = demo[0].accuracy["crossing_pop_country"]
    assert s["country"] == "US" and s["detected"] > 0
    assert s["precision"] >= TARGET, s["false_examples"]


def test_ixp_crossing_detection(demo) -> None:
    s = demo[0].accuracy["ixp_crossings"]
    ixp = read_truth(demo[0].files["world"]).table("ixp_crossings")
    observable = sum(ixp.column("observable").to_pylist())
    assert s["truth"] == ixp.num_rows
    assert s["truth_observable"] == observable
    assert s["precision"] >= TARGET, s["false_examples"]
    assert s["recall"] >= TARGET, s["missed_examples"]


def test_true_exposure_inside_interval(demo, truth) -> None:
    checks = demo[0].accuracy["exposure"]
    families = sorted(truth["families"])
    assert {(r["family"], r["kind"]) for r in checks} == {
        (f, k) for f in ["any", *families] for k in ("path_exposure", "pop_exposure")
    }
    # the truth the checks use: the generator's true families, over the in-scope traceroutes
    scoped = _in_scope_keys(demo[0])
    traces = [t for t in read_truth(demo[0].files["world"]).table("traces").to_pylist()
              if (t["msm_id"], t["prb_id"], t["timestamp"]) in scoped]
    assert 0 < len(traces) == len(scoped) == demo[0].exposure["traceroutes"]
    for r in checks:
        if r["kind"] == "path_exposure" and r["family"] != "any":
            share = sum(r["family"] in t["families"] for t in traces) / len(traces)
            assert r["true"] == pytest.approx(share)
    bad = [r for r in checks if not r["inside"]]
    assert not bad


def test_diversion_detected_within_true_window(demo, truth) -> None:
    result = demo[0]
    div = truth["diversion"]
    start, end = div["start"], div["end"]
    check = result.accuracy["diversion"]
    assert check["family"] == "china-telecom"
    assert check["detected"], check
    # independently: the detected start events that bracket the true onset belong to the
    # pairs the generator says the leak diverts through AS4134
    events = pq.read_table(result.campaign.exposure_table("change_events"))
    ev = [r for r in events.to_pylist() if r["family"] == "china-telecom" and r["event"] == "start"]
    bracket = {(r["prb_id"], r["dst_addr"]) for r in ev
               if r["previous_timestamp"].timestamp() < start <= r["timestamp"].timestamp()}
    telecom = set(truth["families"]["china-telecom"])
    paths = pq.read_table(result.campaign.paths_parquet, columns=["prb_id", "dst_addr", "in_scope"]).to_pylist()
    in_scope = {(r["prb_id"], r["dst_addr"]) for r in paths if r["in_scope"]}  # the figures' traceroutes
    diverted = {(p["prb_id"], p["dst_addr"]) for p in div["affected_pairs"]
                if not telecom & set(p["baseline_as_path"][1:-1]) and telecom & set(p["diverted_as_path"][1:-1])
                and (p["prb_id"], p["dst_addr"]) in in_scope}
    assert bracket <= {(p["prb_id"], p["dst_addr"]) for p in div["affected_pairs"]}
    assert len(bracket & diverted) >= TARGET * len(diverted) > 0
    stops = {(r["prb_id"], r["dst_addr"]) for r in events.to_pylist()
             if r["family"] == "china-telecom" and r["event"] == "stop"
             and r["previous_timestamp"].timestamp() < end <= r["timestamp"].timestamp()}
    assert stops == bracket


def test_the_leak_is_seen_in_the_world_bgp_data_too(demo, truth) -> None:
    """The control plane: the world's route collector sees the leaked more-specifics, and
    the route-leak signals name exactly those prefixes, from the leak's first moment."""
    div = truth["diversion"]
    bl = demo[0].accuracy["bgp_leak"]
    assert bl["true"] == len(div["leaked_prefixes"]) > 0
    assert bl["precision"] >= 0.99 and bl["recall"] >= 0.99, bl
    assert bl["onset_ok"] and bl["first_signal"] == div["start"]
    # independently of the signals: the collector file announces each leaked /24 through the
    # leaker at the window's start and withdraws it at its end
    import gzip

    world = demo[0].campaign.root / "world"
    (f,) = (world / "reference" / "bgpdump").iterdir()
    lines = [x.split("|") for x in gzip.decompress(f.read_bytes()).decode().splitlines()]
    ann = {x[5] for x in lines if x[2] == "A" and int(x[1]) == div["start"]
           and str(div["leaker_asn"]) in x[6].split()}
    wd = {x[5] for x in lines if x[2] == "W" and int(x[1]) == div["end"]}
    assert ann == wd == set(div["leaked_prefixes"])


def test_control_plane_beside_the_traceroutes(demo, truth) -> None:
    """exposure.json's control plane: BGP path exposure recomputed by hand from the collector
    file, agreement counted once per traceroute in scope, and each leaked prefix's signal
    from the leaker lined up with the traceroutes that started crossing China Telecom."""
    import gzip
    import ipaddress

    import pyarrow.parquet as pq

    from analysis.scope import in_scope

    result, ws, _ = demo
    s = orjson.loads((ws / "demo" / "exposure.json").read_bytes())
    cp = s["control_plane"]
    assert cp["kind"] == "bgpdump" and cp["periods_overlap"] and cp["relationships"]
    paths = in_scope(pq.read_table(ws / "demo" / "paths" / "paths.parquet"))
    n = paths.num_rows
    for fam in ("china-telecom", "china-unicom", "china-mobile"):
        assert sum(cp["families"][fam]["agreement"].values()) == n
    # by hand: per peer, the distinct (prefix, path) toward the destinations' most specific
    # covering prefixes; China Telecom strictly between peer and origin; mean over peers
    (f,) = (ws / "demo" / "world" / "reference" / "bgpdump").iterdir()
    rows = [x.split("|") for x in gzip.decompress(f.read_bytes()).decode().splitlines()]
    prefixes = {x[5] for x in rows if x[2] in ("A", "B")}
    nets = sorted((ipaddress.ip_network(p) for p in prefixes), key=lambda q: -q.prefixlen)
    dsts = set(paths.column("dst_addr").to_pylist())
    want = {str(next(q for q in nets if ipaddress.ip_address(d) in q)) for d in dsts
            if any(ipaddress.ip_address(d) in q for q in nets)}
    ct = {4134, 4809, 23764, 36678, 4812, 4811}
    per: dict[str, set] = {}
    for x in rows:
        if x[2] in ("A", "B") and x[5] in want:
            per.setdefault(x[4], set()).add((x[5], x[6]))
    shares = [sum(1 for _, p in v if ct & set(map(int, p.split()[1:-1]))) / len(v) for v in per.values()]
    c = cp["families"]["china-telecom"]["control_plane_exposure"]
    assert cp["peers"] == len(per) and cp["covered"] == len(dsts)
    assert c["estimate"] == pytest.approx(sum(shares) / len(shares))
    assert c["ci_low"] <= c["estimate"] <= c["ci_high"] and c["estimate"] > 0
    # the leak, in both planes: every leaked prefix has a signal from the leaker that lines
    # up with traceroute change events of China Telecom
    sig = pq.read_table(ws / "demo" / "exposure" / "bgp_signals.parquet").to_pylist()
    div = truth["diversion"]
    lined = {r["prefix"] for r in sig if r["asn"] == div["leaker_asn"] and r["change_starts"] > 0}
    assert lined >= set(div["leaked_prefixes"])
    assert cp["families"]["china-telecom"]["signals_lined_up"] >= len(div["leaked_prefixes"])
    html = (ws / "demo" / "report" / "index.html").read_text()
    assert "Control plane (BGP)" in html and "BGP path exposure" in html


def test_change_events_against_truth(demo) -> None:
    for fam, s in demo[0].accuracy["change_events"].items():
        if s["truth"]:
            assert s["precision"] >= TARGET and s["recall"] >= TARGET, (fam, s)


def test_cli_rerun_is_deterministic_and_readable(demo, capsys: pytest.CaptureFixture[str]) -> None:
    from analysis.cli import main

    result, ws, saved = demo
    assert main(["demo", "--clean-world", "--workspace", str(ws)]) in (0, 1)  # 1 only if the report step failed
    out = capsys.readouterr().out
    for rel, name in (("exposure.json", "exposure"), ("paths/paths.parquet", "paths"),
                      ("accuracy.json", "accuracy")):
        assert (ws / "demo" / rel).read_bytes() == saved[name], rel
    for section in ("1. Exposure", "2. Where paths enter", "3. Change events", "4. Accuracy", "5. Files"):
        assert section in out
    assert str(ws / "demo" / "accuracy.json") in out.replace("\n", "")
    assert "China Telecom" in out and "AS4134 route leak" in out


def test_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    mine = tmp_path / "demo" / "precious.txt"
    mine.parent.mkdir()
    mine.write_text("keep me")
    with pytest.raises(ConfigError, match="not created by `pathexp demo`"):
        run_demo(workspace=tmp_path)
    assert mine.read_text() == "keep me"


@pytest.mark.parametrize(("kw", "match"), [({"size": "huge"}, "unknown world size"),
                                           ({"seed": -1}, "non-negative integer")])
def test_bad_options_are_refused_before_touching_anything(tmp_path: Path, kw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        run_demo(workspace=tmp_path, **kw)
    assert not (tmp_path / "demo").exists()


def test_public_api() -> None:
    import analysis.demo as demo_mod

    assert demo_mod.__all__ == ["CAMPAIGN", "REFERENCE_KINDS", "DemoResult", "run_demo"]
    assert all(hasattr(demo_mod, n) for n in demo_mod.__all__)
    assert all(hasattr(acc, n) for n in acc.__all__)


# ---------------------------------------------------------------------------- accuracy units
def test_location_calibration_counts_right_places_by_evidence() -> None:
    key = {"msm_id": [1, 1, 2], "prb_id": [1, 1, 1], "timestamp": [10, 10, 20]}
    entries = pa.table({**key, "family": ["ct", "cu", "ct"], "asn": [4134, 4837, 4134],
                        "city": ["New York", "Ashburn", "Tokyo"], "country": ["US", "US", "JP"]})
    found = pa.table({
        "msm_id": [1, 1, 2, 3, 4], "prb_id": [1, 1, 1, 1, 1], "timestamp": [10, 10, 20, 30, 40],
        "family": ["ct", "cu", "ct", "ct", "ct"], "asn": [4134, 4837, 4134, 4134, 4134],
        # right city; right country, wrong city; country only (right); a false crossing's
        # place; not located (left out)
        "city": ["New York", "New York", None, "Chicago", None], "country": ["US", "US", "JP", "US", None],
        "evidence": ["netfac-shared+rtt-discs", "netfac-shared", "carrier-pops", "netfac-shared", None],
        "confidence": [0.9, 0.81, 0.765, 0.81, None],
    })
    got = acc.location_calibration(entries, found)
    assert got == {
        "carrier-pops": {"crossings": 1, "cities": 0, "city_precision": None, "country_precision": 1.0,
                         "mean_confidence": 0.765},
        "netfac-shared": {"crossings": 3, "cities": 3, "city_precision": pytest.approx(1 / 3),
                          "country_precision": pytest.approx(2 / 3), "mean_confidence": 0.84},
    }


def test_score_counts_unobservable_and_causes() -> None:
    truth = pa.table({
        "msm_id": [1, 1, 1, 2], "prb_id": [1, 1, 1, 1], "timestamp": [10, 10, 10, 20],
        "via": ["ixp", "private", "ixp", "ixp"], "observable": [True, True, False, True],
        "cause": [None, None, "ixp-lan-hop-unresponsive", None],
    })
    truth = truth.append_column("k", pa.array([1, 2, 3, 4]))
    detected = pa.table({"msm_id": [1, 1, 1, 2], "prb_id": [1, 1, 1, 1], "timestamp": [10, 10, 10, 20],
                         "k": [1, 1, 9, 4]})
    s = acc.score(truth, detected, keys=["msm_id", "prb_id", "timestamp", "k"], observable="observable",
                  cause="cause")
    # truth {1,2,3,4} (3 unobservable); detected {1,9,4}: tp 2, false 1 (explained by trace 1's cause)
    assert (s.truth, s.truth_observable, s.detected, s.true_positives) == (4, 3, 3, 2)
    assert (s.missed, s.false) == (1, 1)  # item 2 missed; item 3 unobservable, not counted
    assert s.precision == pytest.approx(2 / 3)
    assert s.recall == pytest.approx(2 / 3)
    assert s.recall_all == pytest.approx(2 / 4)
    assert s.false_by_cause == {"ixp-lan-hop-unresponsive": 1}


def test_detected_ixp_crossings_in_a_loop_count_once() -> None:
    import datetime as dt

    ts = dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc)
    paths = pa.table({
        "msm_id": [1, 2], "prb_id": [7, 7], "timestamp": pa.array([ts, ts], pa.timestamp("s", tz="UTC")),
        "as_path": [["AS1", "IXP:pdb:5", "AS2", "IXP:pdb:5", "AS2"], ["AS1", "AS3", "IXP:pdb:6"]],
    })
    d = acc.detected_ixp_crossings(paths)
    assert d.to_pylist() == [
        {"msm_id": 1, "prb_id": 7, "timestamp": 1772409600, "ixp_id": "pdb:5", "member_asn": 2},
        {"msm_id": 1, "prb_id": 7, "timestamp": 1772409600, "ixp_id": "pdb:5", "member_asn": 2},
        {"msm_id": 2, "prb_id": 7, "timestamp": 1772409600, "ixp_id": "pdb:6", "member_asn": None},
    ]
    truth = pa.table({"msm_id": [1], "prb_id": [7], "timestamp": [1772409600], "ixp_id": ["pdb:5"],
                      "member_asn": [2]})
    s = acc.score(truth, d, keys=["msm_id", "prb_id", "timestamp", "ixp_id", "member_asn"])
    assert (s.true_positives, s.false, s.missed) == (1, 1, 0)


def test_true_entries_skip_hand_overs_and_mark_silent_hops() -> None:
    key = {"msm_id": [1, 1, 2, 3], "prb_id": [1, 1, 1, 1], "timestamp": [5, 5, 6, 7]}
    flagged = pa.table({
        **key, "family": ["ct", "ct", "cu", "cu"], "asn": [4134, 23764, 10099, 4837],
        "via": ["ixp", "private", "ixp", "private"], "ixp_id": ["pdb:1", None, "pdb:2", None],
        "city": ["Ashburn", "New York", "London", "Shanghai"], "country": ["US", "US", "GB", "CN"],
        "hop": pa.array([3, 6, 6, 4], pa.int16()), "addr": ["a", "b", "c", "d"],
        "observable": [True, True, True, True],
    })
    traces = pa.table({"msm_id": [1, 2, 3], "prb_id": [1, 1, 1], "timestamp": [5, 6, 7],
                       "as_path": [[64500, 4134, 23764, 64501], [64502, 64503, 10099, 64504],
                                   [64505, 4837, 64506]], "loop": [True, False, False]})
    # trace 1: hops 2-3 answer (LAN hop 3); trace 2: LAN hop 6 silent; trace 3: hop 3 silent
    hops = pa.table({"msm_id": [1, 1, 2, 2, 3, 3], "prb_id": [1] * 6, "timestamp": [5, 5, 6, 6, 7, 7],
                     "hop": pa.array([2, 3, 5, 6, 3, 4], pa.int16()),
                     "responded": [True, True, True, False, False, True]})
    e = acc.true_entries(flagged, traces, {"ct": [4134, 23764], "cu": [10099, 4837]}, hops)
    rows = [(r["asn"], r["location_observable"], r["cause"]) for r in e.to_pylist()]
    assert rows == [(4134, True, "forwarding-loop"), (10099, False, "ixp-lan-hop-unresponsive"),
                    (4837, False, "hop-at-boundary-silent")]


def test_diversion_check_brackets() -> None:
    eps = [{"family": "f", "pairs": 3, "onset_after": 90, "onset_by": 110, "last_seen": 190,
            "cleared_by": 210, "pairs_cleared": 3}]
    assert acc.diversion_check(eps, family="f", start=100, end=200)["detected"]
    assert not acc.diversion_check(eps, family="f", start=120, end=200)["detected"]  # onset late
    assert not acc.diversion_check(eps, family="f", start=100, end=185)["detected"]  # end early
    assert not acc.diversion_check(eps, family="g", start=100, end=200)["detected"]


def _truth_router_owner(root: Path) -> tuple[int, int]:
    """Hand count from the truth and the world's own pfx2as (not the pipeline's tables).

    Responding public router hops, and how many of them the origin AS of their address
    (longest match in the world's written pfx2as file) attributes to the true operator.
    """
    import gzip
    import ipaddress

    rows = []
    with gzip.open(next((root / "reference" / "pfx2as").glob("*.gz")), "rt") as fh:
        for line in fh:
            net, plen, origin = line.split()
            if "_" not in origin and "," not in origin:
                rows.append((ipaddress.IPv4Network(f"{net}/{plen}"), int(origin)))
    rows.sort(key=lambda r: -r[0].prefixlen)
    hops = pq.read_table(root / "truth" / "hops.parquet",
                         columns=["addr", "responded", "kind", "owner_asn"]).to_pylist()
    n = k = 0
    cache: dict[str, int | None] = {}
    for h in hops:
        if not h["responded"] or h["kind"] not in acc.PUBLIC_ROUTER_KINDS:
            continue
        n += 1
        if h["addr"] not in cache:
            ip = ipaddress.IPv4Address(h["addr"])
            cache[h["addr"]] = next((o for net, o in rows if ip in net), None)
        k += cache[h["addr"]] == h["owner_asn"]
    return n, k


def test_router_owner_scores_the_ownership_stage_against_the_truth(demo) -> None:
    result = demo[0]
    ro = result.accuracy["router_owner"]
    assert ro["scored"] == "owner_asn"  # analyze ran the ownership stage (paths/owners.parquet)
    n, k = _truth_router_owner(result.files["world"])
    assert ro["hops"] + ro["unmatched"] == n
    assert ro["unmatched"] == 0
    # the owner AS is right at least as often as the origin AS alone (the hand count k,
    # which cannot attribute IXP LAN hops to members)
    assert ro["correct"] >= k
    assert ro["by_artefact"]["none"]["accuracy"] > 0.95


def test_pop_location_and_world_artefacts_are_reported(demo) -> None:
    a = demo[0].accuracy
    assert a["pop_city"]["precision"] == a["crossing_cities"]["precision"]
    assert a["pop_us"]["recall"] == a["crossing_pop_country"]["recall"]
    assert a["world_artefacts"]["enabled"] is False and a["world_artefacts"]["rates"] is None


@pytest.mark.slow
def test_demo_on_the_artefact_world(tmp_path: Path, demo) -> None:
    from probes.world import Artefacts

    result = run_demo(workspace=tmp_path, seed=0, size="small", artefacts=Artefacts())
    a = result.accuracy
    assert a["world_artefacts"]["enabled"] and a["world_artefacts"]["rates"] == Artefacts().as_dict()
    clean = demo[0].accuracy
    # the artefacts make origin-AS ownership worse, and third-party hops mostly wrong
    assert a["router_owner"]["accuracy"] < clean["router_owner"]["accuracy"]
    assert a["router_owner"]["by_artefact"]["third-party"]["hops"] > 0
    assert (tmp_path / "demo" / "world" / "truth" / "hops.parquet").is_file()
    # ownership with every artefact on (issue target 0.95; the seed-0 world is deterministic
    # at 0.952), neighbour-numbered borders taken by run-end, and flagged crossings (issue
    # target: precision and recall >= 0.97)
    assert a["router_owner"]["accuracy"] >= 0.95, a["router_owner"]
    assert a["router_owner"]["by_artefact"]["neighbour-numbered"]["accuracy"] >= 0.8, a["router_owner"]
    fc = a["flagged_crossings"]
    assert fc["precision"] >= 0.97 and fc["recall"] >= 0.97, fc
    # PoP location with every artefact on (issue targets: city recall >= 0.85 at precision
    # >= 0.97; US recall >= 0.95 at precision >= 0.99; seed 0 gives 0.903 / 1.0 and 0.998 /
    # 1.0), the located PoP exposure's interval holds the truth, and the upper bound is
    # never below it
    assert a["pop_city"]["precision"] >= 0.97 and a["pop_city"]["recall"] >= 0.85, a["pop_city"]
    assert a["pop_us"]["precision"] >= 0.99, a["crossing_pop_country"]["false_examples"]
    assert a["pop_us"]["recall"] >= 0.95, a["crossing_pop_country"]["missed_examples"]
    # every located crossing is in the calibration table once, with its evidence's confidence
    from analysis.paths import LOCATION_WEIGHTS

    lbe = a["location_by_evidence"]
    found = acc.detected_crossings(pq.read_table(result.files["paths"]))
    assert sum(e["crossings"] for e in lbe.values()) == found.num_rows - found.column("country").null_count
    assert set(lbe) <= set(LOCATION_WEIGHTS) and lbe["ixp"]["mean_confidence"] == LOCATION_WEIGHTS["ixp"]
    assert all(0 < e["mean_confidence"] <= LOCATION_WEIGHTS[ev] for ev, e in lbe.items())
    upper = [r for r in a["exposure"] if r["kind"] == "pop_exposure"]
    assert all(r["inside"] for r in upper), upper
    assert upper and all(r["below_upper"] and r["upper_estimate"] >= r["estimate"] for r in upper), upper
    # the partly identified exposure: the truth inside [located low end, possible high end]
    assert all(r["bounds_inside"] for r in upper), upper
    fams = orjson.loads(result.files["exposure"].read_bytes())["families"]
    for e in fams.values():
        b, lo, up = e["pop_exposure"]["bounds"], e["pop_exposure"], e["pop_exposure"]["possibly"]
        assert (b["ci_low"], b["ci_high"], b["low"], b["high"]) == (lo["ci_low"], up["ci_high"], lo["estimate"],
                                                                     up["estimate"])
        assert up["ci_low"] <= up["estimate"] <= up["ci_high"] and "cluster bootstrap" in up["method"]
