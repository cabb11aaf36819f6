"""The synthetic world: determinism, routing validity, physics, formats, truth consistency.

Every check reads the generated files with independent readers (ripe.atlas.sagan, pyasn,
plain json / csv parsing, a valley-free checker and a haversine written here) rather
than re-using the generator's own helpers.
"""

from __future__ import annotations

import gzip
import hashlib
import ipaddress
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import probes.world as world_mod
from analysis.cli import main as cli_main
from probes.errors import ConfigError
from probes.world import World, generate_world

FLAGGED = {
    "china-telecom": {4134, 4809, 23764},
    "china-unicom": {4837, 9929, 10099},
    "china-mobile": {9808, 58453, 58807},
}
ALL_FLAGGED = set().union(*FLAGGED.values())


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world") / "w"
    generate_world(out, seed=7, size="small")
    return out


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _results(root: Path) -> list[dict]:
    out = []
    for f in sorted((root / "atlas" / "results").glob("*.ndjson.gz")):
        with gzip.open(f, "rt") as fh:
            out.extend(json.loads(line) for line in fh)
    return out


def _as_rel(root: Path) -> dict[tuple[int, int], str]:
    """Independent parse of the CAIDA as-rel file: rel[(a, b)] = what b is to a."""
    (path,) = (root / "reference" / "as-rel").glob("*.as-rel.txt")
    rel: dict[tuple[int, int], str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        a, b, r = line.split("|")
        x, y = int(a), int(b)
        if r == "-1":
            rel[(x, y)] = "customer"
            rel[(y, x)] = "provider"
        elif r == "0":
            rel[(x, y)] = rel[(y, x)] = "peer"
        else:
            raise AssertionError(f"bad as-rel line {line!r}")
    return rel


def _valley_free(path: list[int], rel: dict[tuple[int, int], str]) -> bool:
    """Uphill (to providers)*, at most one peer edge, then downhill (to customers)*."""
    phase = 0  # 0 climbing, 1 after the peak
    for a, b in zip(path, path[1:], strict=False):
        r = rel[(a, b)]
        if r == "provider":
            if phase:
                return False
        elif r == "peer":
            if phase:
                return False
            phase = 1
        else:
            phase = 1
    return True


def _haversine_km(lat1, lon1, lat2, lon2):
    lat1, lon1, lat2, lon2 = (
        np.radians(np.asarray(v, dtype=float)) for v in (lat1, lon1, lat2, lon2)
    )
    a = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


# ----------------------------------------------------------------------------- tests


def test_public_api():
    assert set(world_mod.__all__) >= {"World", "WorldManifest", "generate_world"}
    for name in world_mod.__all__:
        assert hasattr(world_mod, name), name


def test_same_seed_gives_identical_bytes_and_other_seed_differs(world_dir, tmp_path):
    again = tmp_path / "again"
    generate_world(again, seed=7, size="small")
    first, second = _digests(world_dir), _digests(again)
    assert first == second
    assert len(first) > 40  # atlas results, reference data, truth
    other = World.build(seed=8).probes()
    assert other != json.loads((world_dir / "atlas" / "probes.json").read_text())["results"]
    # the manifest lists every file with its sha256
    manifest = json.loads((world_dir / "world.json").read_text())
    assert {k: v for k, v in first.items() if k != "world.json"} == manifest["files"]
    assert set(manifest["reference"]) == {
        "pfx2as",
        "peeringdb",
        "caida-ixp",
        "as2org",
        "rir-delegated",
        "as-rel",
        "bgpdump",
    }
    assert len(manifest["reference"]["peeringdb"]) == 9


def test_small_world_has_the_promised_shape(world_dir):
    truth = json.loads((world_dir / "truth" / "world.json").read_text())
    ases = json.loads((world_dir / "truth" / "ases.json").read_text())
    assert 200 <= len(ases) <= 400
    kinds = Counter(a["kind"] for a in ases)
    assert kinds["tier1"] >= 5 and kinds["content"] >= 30 and kinds["flagged"] == 9
    assert {a["asn"] for a in ases if a["family"]} == ALL_FLAGGED
    continents = {a["continent"] for a in ases if a["kind"] == "access"}
    assert continents >= {"NA", "SA", "EU", "AF", "AS", "OC"}
    assert 2000 <= truth["counts"]["traces"] <= 20000
    assert truth["counts"]["loops"] >= 1
    for f in (world_dir / "truth").glob("*.parquet"):
        assert pq.read_schema(f).metadata[b"pathexp.synthetic"] == b"true"
    readme = (world_dir / "README.md").read_text()
    assert "SYNTHETIC" in readme and "atlas/results/" in readme


def test_every_result_parses_with_sagan(world_dir):
    from ripe.atlas.sagan import TracerouteResult

    results = _results(world_dir)
    assert results
    reached = 0
    for raw in results:
        r = TracerouteResult(raw, on_error=TracerouteResult.ACTION_FAIL)
        assert not r.is_error
        assert r.probe_id == raw["prb_id"] and r.measurement_id == raw["msm_id"]
        reached += bool(r.destination_ip_responded)
    # most traceroutes reach their destination, not all (silent hosts, loops)
    assert 0.7 * len(results) < reached < len(results)
    keys = {(r["msm_id"], r["prb_id"], r["timestamp"]) for r in results}
    assert len(keys) == len(results)
    assert {r["type"] for r in results} == {"traceroute"}
    assert all(
        {"fw", "lts", "msm_name", "paris_id", "from", "endtime"} <= r.keys() for r in results
    )


def test_format_matches_real_atlas_results(world_dir, test_data):
    real = json.loads(
        (test_data / "ripe-atlas" / "traceroutes" / "sagan_test_traceroutes.ndjson")
        .read_text()
        .splitlines()[0]
    )
    ours = _results(world_dir)[0]
    # every top-level field of a real (recent firmware) result exists with the same type
    for k in (
        "af",
        "dst_addr",
        "dst_name",
        "endtime",
        "from",
        "fw",
        "msm_id",
        "paris_id",
        "prb_id",
        "proto",
        "result",
        "size",
        "src_addr",
        "timestamp",
        "type",
    ):
        assert k in ours and type(ours[k]) is type(real[k]), k
    reply = next(x for h in ours["result"] for x in h["result"] if "from" in x)
    assert set(reply) == {"from", "rtt", "size", "ttl"}


def test_true_as_paths_are_valley_free_except_the_leak(world_dir):
    rel = _as_rel(world_dir)
    traces = pq.read_table(world_dir / "truth" / "traces.parquet").to_pylist()
    truth = json.loads((world_dir / "truth" / "world.json").read_text())
    leaker = truth["diversion"]["leaker_asn"]
    checked = leaked = 0
    valleys = 0
    for t in traces:
        path = t["as_path"]
        for a, b in zip(path, path[1:], strict=False):
            assert (a, b) in rel, f"AS{a}-AS{b} is not a link of the as-rel file"
        assert len(set(path)) == len(path), "AS-level loop"
        if not t["leak"]:
            assert _valley_free(path, rel), path
            checked += 1
        else:
            assert t["in_window"]
            i = path.index(leaker)
            assert _valley_free(path[: i + 1], rel) and _valley_free(path[i:], rel)
            valleys += not _valley_free(path, rel)
            leaked += 1
    assert checked > 1000 and leaked > 20
    assert valleys > 0  # the leak really makes valleys


def test_rtt_never_beats_light_in_fibre(world_dir):
    probes = {
        p["id"]: p for p in json.loads((world_dir / "atlas" / "probes.json").read_text())["results"]
    }
    hops = pq.read_table(world_dir / "truth" / "hops.parquet").to_pydict()
    loc = {
        (m, p, t, h): (a, lat, lon)
        for m, p, t, h, a, lat, lon in zip(
            hops["msm_id"],
            hops["prb_id"],
            hops["timestamp"],
            hops["hop"],
            hops["addr"],
            hops["lat"],
            hops["lon"],
            strict=True,
        )
    }
    plat, plon, rlat, rlon, rtts = [], [], [], [], []
    for r in _results(world_dir):
        lon0, lat0 = probes[r["prb_id"]]["geometry"]["coordinates"]
        for h in r["result"]:
            for x in h["result"]:
                if "rtt" not in x:
                    continue
                addr, lat, lon = loc[(r["msm_id"], r["prb_id"], r["timestamp"], h["hop"])]
                assert x["from"] == addr
                plat.append(lat0)
                plon.append(lon0)
                rlat.append(lat)
                rlon.append(lon)
                rtts.append(x["rtt"])
    rtt = np.asarray(rtts)
    bound = 2 * _haversine_km(plat, plon, rlat, rlon) / 200.0
    assert len(rtt) > 50_000
    assert np.all(rtt >= bound), float((bound - rtt).max())
    # and the bound is not vacuous: many replies come from thousands of km away
    assert np.sum(bound > 50) > 1000


def test_pfx2as_loads_in_pyasn_and_matches_router_owners(world_dir):
    import pyasn

    (pfx_file,) = (world_dir / "reference" / "pfx2as").glob("*.pfx2as.gz")
    origins: dict[str, set[int]] = {}
    lines = ["; converted from CAIDA pfx2as for the test"]
    for line in gzip.open(pfx_file, "rt"):
        net, plen, asns = line.rstrip("\n").split("\t")
        ases = {int(a) for a in asns.replace(",", "_").split("_")}
        origins[f"{net}/{plen}"] = ases
        lines.append(f"{net}/{plen}\t{min(ases)}")
    db = pyasn.pyasn(None, ipasn_string="\n".join(lines) + "\n")
    assert db.lookup("202.97.1.1") == (4134, "202.97.0.0/19")
    assert db.lookup("219.158.3.1") == (4837, "219.158.0.0/17")
    assert db.lookup("223.120.128.5")[1] == "223.120.128.0/17"
    assert origins["223.120.128.0/17"] == {9808, 58807}
    assert db.lookup("59.43.0.1") == (None, None)  # CN2 router space: RIR file only
    hops = pq.read_table(world_dir / "truth" / "hops.parquet").to_pylist()
    seen = Counter()
    for h in hops:
        if h["kind"] not in ("router", "host"):
            continue
        asn, pfx = db.lookup(h["addr"])
        if h["router_asn"] == 4809:
            assert asn is None
            seen["cn2"] += 1
            continue
        assert pfx is not None and h["router_asn"] in origins[pfx], h
        seen["ok"] += 1
    assert seen["ok"] > 10_000 and seen["cn2"] > 0


def test_rir_file_covers_cn2(world_dir):
    (path,) = (world_dir / "reference" / "rir-delegated").glob("delegated-apnic-extended-*")
    lines = path.read_text().splitlines()
    assert lines[0].startswith("2|apnic|")
    recs = [ln.split("|") for ln in lines[1:] if not ln.startswith("#") and "summary" not in ln]
    assert ["apnic", "CN", "ipv4", "59.43.0.0", "65536"] in [r[:5] for r in recs]
    assert int(lines[0].split("|")[3]) == len(recs)
    assert any(ln.startswith("#") and "SYNTHETIC" in ln for ln in lines)


def test_peeringdb_json_has_the_real_fields(world_dir, test_data):
    real_dir = test_data / "peeringdb" / "api-samples-beta-2026-04"
    for kind in ("ix", "ixlan", "ixpfx", "netixlan", "fac", "ixfac", "net", "org", "netfac"):
        ours = json.loads((world_dir / "reference" / "peeringdb" / f"{kind}.json").read_text())
        real = json.loads((real_dir / f"{kind}-page-1.json").read_text())
        assert set(ours) == {"data", "meta"} and ours["data"], kind
        need = set(real["data"][0])
        for row in ours["data"]:
            assert need <= set(row), (kind, need - set(row))
    ix = json.loads((world_dir / "reference" / "peeringdb" / "ix.json").read_text())["data"]
    us_cities = {r["city"] for r in ix if r["country"] == "US"}
    assert us_cities >= {
        "Ashburn",
        "New York",
        "Chicago",
        "Dallas",
        "Los Angeles",
        "San Jose",
        "Seattle",
        "Miami",
    }
    assert all("SYNTHETIC" in r["notes"] for r in ix)


def test_probe_objects_have_the_api_v2_shape(world_dir, test_data):
    real = json.loads(
        (
            test_data / "ripe-atlas" / "api-metadata" / "probes_v2_sample_starlink_2025-05-05.json"
        ).read_text()
    )
    ours = json.loads((world_dir / "atlas" / "probes.json").read_text())
    assert ours["count"] == len(ours["results"])
    for p in ours["results"]:
        assert set(p) == set(real[0])
        assert p["geometry"]["type"] == "Point" and len(p["geometry"]["coordinates"]) == 2
    countries = {p["country_code"] for p in ours["results"]}
    assert len(countries) >= 20 and "CN" in countries and "US" in countries
    assert any(p["is_anchor"] for p in ours["results"])


def test_caida_ixp_and_as2org_parse(world_dir):
    (ixs,) = (world_dir / "reference" / "caida-ixp").glob("ixs_*.jsonl")
    lines = ixs.read_text().splitlines()
    assert lines[0].startswith("# ") and json.loads(lines[0][2:])["synthetic"] is True
    rows = [json.loads(x) for x in lines[1:]]
    for r in rows:
        for pfx in r["prefixes"]["ipv4"]:
            ipaddress.IPv4Network(pfx)
    (a2o,) = (world_dir / "reference" / "as2org").glob("*.as-org2info.txt")
    section = None
    orgs, auts = {}, {}
    for line in a2o.read_text().splitlines():
        if line.startswith("# format:"):
            section = line.split(":", 1)[1].split("|")[0]
            continue
        if line.startswith("#"):
            continue
        f = line.split("|")
        if section == "org_id":
            orgs[f[0]] = f[2]
        else:
            auts[int(f[0])] = f[3]
    assert orgs[auts[4134]] == "China Telecom" and auts[4134] == auts[4809]
    assert auts[23764] != auts[4134]  # siblings in a different org, as in reality
    assert set(auts) >= ALL_FLAGGED


def test_crossings_sit_on_the_written_peering_lans(world_dir):
    pdb = world_dir / "reference" / "peeringdb"
    ixpfx = json.loads((pdb / "ixpfx.json").read_text())["data"]
    ixlan = json.loads((pdb / "ixlan.json").read_text())["data"]
    netixlan = json.loads((pdb / "netixlan.json").read_text())["data"]
    lan_of_ix = {}
    for lan in ixlan:
        nets = [ipaddress.IPv4Network(p["prefix"]) for p in ixpfx if p["ixlan_id"] == lan["id"]]
        lan_of_ix[f"pdb:{lan['ix_id']}"] = nets
    members = {(f"pdb:{m['ix_id']}", m["asn"], m["ipaddr4"]) for m in netixlan}
    flagged = pq.read_table(world_dir / "truth" / "flagged_crossings.parquet").to_pylist()
    via = Counter(x["via"] for x in flagged)
    assert via["ixp"] > 20 and via["private"] > 20
    us_ixp = 0
    for x in flagged:
        assert x["asn"] in FLAGGED[x["family"]]
        if x["via"] == "ixp":
            addr = ipaddress.IPv4Address(x["addr"])
            assert any(addr in n for n in lan_of_ix[x["ixp_id"]])
            assert (x["ixp_id"], x["asn"], x["addr"]) in members
            us_ixp += x["country"] == "US"
    assert us_ixp > 10
    # the PoPs of each crossing are where that AS's routers on the path are
    hops = pq.read_table(world_dir / "truth" / "hops.parquet").to_pylist()
    where: dict[tuple, list[tuple[str, str]]] = {}
    for h in hops:
        where.setdefault((h["msm_id"], h["prb_id"], h["timestamp"], h["router_asn"]), []).append(
            (h["city"], h["country"])
        )
    us_exit_only = exits_ixp = 0
    for x in flagged:
        seen = where[(x["msm_id"], x["prb_id"], x["timestamp"], x["asn"])]
        assert x["us_pop"] == any(c == "US" for _, c in seen)
        assert x["pop_cities"] == list(dict.fromkeys(city for city, _ in seen))
        assert (x["city"], x["country"]) == seen[0]
        us_exit_only += x["us_pop"] and x["country"] != "US"
        if x["exit_via"] == "ixp":
            assert x["exit_ixp_id"] in lan_of_ix
            exits_ixp += 1
    assert us_exit_only > 0  # e.g. a probe in China entering in Shanghai, leaving in LA
    assert exits_ixp > 0
    for x in pq.read_table(world_dir / "truth" / "ixp_crossings.parquet").to_pylist():
        addr = ipaddress.IPv4Address(x["addr"])
        assert any(addr in n for n in lan_of_ix[x["ixp_id"]])
        assert (x["ixp_id"], x["far_asn"], x["addr"]) in members


def test_diversion_raises_the_flagged_share_in_its_window(world_dir):
    truth = json.loads((world_dir / "truth" / "world.json").read_text())
    start, end = truth["diversion"]["start"], truth["diversion"]["end"]
    traces = pq.read_table(world_dir / "truth" / "traces.parquet").to_pylist()
    inside = [t for t in traces if start <= t["timestamp"] < end]
    outside = [t for t in traces if not start <= t["timestamp"] < end]
    assert inside and outside
    assert all(t["in_window"] == (start <= t["timestamp"] < end) for t in traces)

    def share(rows):
        return sum(1 for t in rows if FLAGGED["china-telecom"] & set(t["as_path"])) / len(rows)

    assert share(inside) > share(outside) + 0.03
    # outside the window the world is the baseline: no leaked path at all
    assert not any(t["leak"] for t in outside)
    pairs = {(p["prb_id"], p["dst_addr"]) for p in truth["diversion"]["affected_pairs"]}
    leaked = {(t["prb_id"], t["dst_addr"]) for t in inside if t["leak"]}
    assert leaked and leaked <= pairs
    # the true exposure in world.json is what the per-trace truth says
    fam = truth["exposure"]["china-telecom"]["window"]["transit"]
    assert fam["k"] == sum(1 for t in inside if "china-telecom" in t["families"])


def test_world_reproduces_stored_results_on_demand(world_dir):
    w = World.load(world_dir)
    stored = _results(world_dir)[::500]
    for r in stored:
        again = w.traceroute(
            r["prb_id"],
            r["dst_addr"],
            r["timestamp"],
            msm_id=r["msm_id"],
            proto=r["proto"],
            paris_id=r["paris_id"],
        )
        assert json.dumps(again, sort_keys=True) == json.dumps(r, sort_keys=True)
    one = stored[0]
    same = w.measurement_results(one["msm_id"], start=one["timestamp"], stop=one["timestamp"])
    assert one in same
    probes = w.probes()
    assert len(probes) == json.loads((world_dir / "atlas" / "probes.json").read_text())["count"]
    assert all(a["type"] == "Anchor" for a in w.anchors())
    assert {m["id"] for m in w.measurements()} == {r["msm_id"] for r in _results(world_dir)}


def test_on_demand_edge_cases(world_dir):
    w = World.load(world_dir)
    prb = w.probes()[0]["id"]
    r = w.traceroute(prb, "192.0.2.1", 1772500000, msm_id=5, proto="ICMP", paris_id=3)
    assert r["result"][-1]["hop"] == 255  # no route: gives up
    # per-flow load balancing: the router sequence depends on the flow (paris id) only
    dst = w.measurements()[0]["target"]

    def routers(prb: int, ts: int, paris: int) -> tuple:
        o = w.trace_output(prb, dst, ts, msm_id=5, paris_id=paris)
        return tuple(h["addr"] for h in o.hops), o.trace["loop"]

    balanced = 0
    for p in w.probes()[:40]:
        seqs = {routers(p["id"], 1772420000, k) for k in range(1, 9)}
        balanced += len({s for s, _ in seqs}) > 1
        for k in (1, 5):
            a, loop_a = routers(p["id"], 1772420000, k)
            b, loop_b = routers(p["id"], 1772430000, k)
            assert a == b or loop_a or loop_b, "same flow, same routers (outside the window)"
    assert balanced >= 3
    with pytest.raises(ConfigError, match="probe 1"):
        w.traceroute(1, dst, 1772500000, msm_id=5)
    with pytest.raises(ConfigError, match="measurement 5"):
        w.measurement_results(5)
    with pytest.raises(ConfigError, match="IPv4"):
        w.traceroute(prb, "not-an-ip", 1772500000, msm_id=5)
    with pytest.raises(ConfigError, match="size"):
        World.build(seed=0, size="huge")
    with pytest.raises(ConfigError, match="world.json"):
        World.load(world_dir / "atlas")


def test_load_refuses_a_folder_from_another_generator_version(world_dir, tmp_path):
    info = json.loads((world_dir / "world.json").read_text())
    info["files"]["atlas/probes.json"] = "0" * 64
    (tmp_path / "world.json").write_text(json.dumps(info))
    with pytest.raises(ConfigError, match="another version"):
        World.load(tmp_path)


def test_large_size_schedules_about_100k_traceroutes():
    w = World.build(seed=0, size="large")
    n = sum(1 for _ in w.schedule())
    assert 80_000 <= n <= 150_000
    assert len(w.topo.ases) > 500 and len(w.probes()) >= 500
    start, end = w.window
    assert w.end - 86400 > end > start + 86400 > 1772409600 + 86400


def test_read_truth(world_dir, tmp_path):
    t = world_mod.read_truth(world_dir)
    assert t.names == ("traces", "hops", "ixp_crossings", "flagged_crossings")
    assert t.table("traces").num_rows == t.world["counts"]["traces"]
    assert t.table("flagged_crossings").num_rows == t.world["counts"]["flagged_crossings"] > 0
    hops = t.table("hops", columns=["msm_id", "responded"])
    assert hops.column_names == ["msm_id", "responded"]
    assert hops.num_rows == t.world["counts"]["hops"]
    # every table the generator writes is one the reader knows, and the other way round
    written = {f.stem for f in (world_dir / "truth").glob("*.parquet")}
    assert written == set(t.names)
    with pytest.raises(ConfigError, match="ground truth"):
        world_mod.read_truth(tmp_path)
    with pytest.raises(ConfigError, match="the world writes traces, hops"):
        t.table("paths")
    with pytest.raises(ConfigError, match="no column 'nope'"):
        t.table("traces", columns=["nope"])


def test_cli_generate_refuses_a_file_as_output(tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("x")
    assert cli_main(["world", "generate", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_cli_generate(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli_main(["world", "generate", str(out), "--seed", "3"]) == 0
    text = capsys.readouterr().out
    assert "traceroutes" in text and "china-telecom" in text
    assert json.loads((out / "world.json").read_text())["seed"] == 3
    assert "SYNTHETIC" in (out / "README.md").read_text()


def _offered(routes: dict, d: int, rel, x: int, y: int) -> bool:
    """Whether y offers its route toward d to its neighbour x (export rules, loop check)."""
    p = routes[y]
    if x in p:
        return False
    if y == d or rel(y, p[1]) == "customer":
        return True
    return rel(y, x) == "customer"  # peer/provider routes go to customers only


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_routing_follows_gao_rexford_preferences(seed):
    """Every AS's route: valley-free, consistent with its next hop, and of the best class."""
    w = World.build(seed=seed, size="small")
    topo = w.topo

    def rel(a: int, b: int) -> str:
        if b in topo.customers[a]:
            return "customer"
        if b in topo.peers[a]:
            return "peer"
        assert b in topo.providers[a], (a, b)
        return "provider"

    rank = {"customer": 0, "peer": 1, "provider": 2}
    rel_table = {
        (a, b): rel(a, b)
        for a in topo.ases
        for b in (*topo.customers[a], *topo.peers[a], *topo.providers[a])
    }
    dests = sorted({d.asn for d in topo.destinations})
    for d in dests:
        routes = w.routes(d)
        assert set(routes) == set(topo.ases), "every AS reaches every destination"

        for x, path in routes.items():
            assert path[0] == x and path[-1] == d
            if x == d:
                continue
            assert path[1:] == routes[path[1]], "forwarding consistency"
            assert _valley_free(list(path), rel_table)
            offers = [
                (rank[rel(x, y)], len(routes[y]) + 1)
                for y in (*topo.customers[x], *topo.peers[x], *topo.providers[x])
                if _offered(routes, d, rel, x, y)
            ]
            assert (rank[rel(x, path[1])], len(path)) == min(offers), (x, path)
        leaks = w.leak_routes(d)
        if d in topo.leaked_asns:
            tail = routes[topo.leaker]
            for x, path in leaks.items():
                assert path[-len(tail) :] == tail and x not in tail
                assert not any(topo.ases[a].filters_leaks for a in path[: -len(tail)])
    assert any(w.leak_routes(d) for d in topo.leaked_asns)


# ----------------------------------------------------------------------------- artefacts


@pytest.fixture(scope="module")
def art_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed-7 world with the default artefacts, written through the CLI."""
    out = tmp_path_factory.mktemp("artworld") / "w"
    assert cli_main(["world", "generate", str(out), "--seed", "7", "--artefacts"]) == 0
    return out


def _art(root: Path) -> dict:
    return json.loads((root / "truth" / "world.json").read_text())["world_artefacts"]


def _binomial_ok(k: int, n: int, p: float) -> bool:
    """``k`` successes of ``n`` within 4 standard deviations (+1) of a Binomial(n, p)."""
    return abs(k - n * p) <= 4.0 * (n * p * (1.0 - p)) ** 0.5 + 1.0


def test_artefact_world_is_byte_identical_per_seed(art_dir, tmp_path):
    again = tmp_path / "again"
    generate_world(again, seed=7, size="small", artefacts=world_mod.Artefacts())
    assert _digests(again) == _digests(art_dir)


def test_artefacts_leave_the_clean_worlds_random_stream_alone(world_dir, art_dir):
    # same probes, measurements and true AS paths: artefact decisions are stable hashes
    for rel in ("atlas/measurements.json", "atlas/anchors.json"):
        assert (art_dir / rel).read_bytes() == (world_dir / rel).read_bytes()
    clean = pq.read_table(world_dir / "truth" / "traces.parquet", columns=["as_path"])
    art = pq.read_table(art_dir / "truth" / "traces.parquet", columns=["as_path"])
    assert clean.equals(art)
    c = _art(world_dir)
    assert c["enabled"] is False and c["rates"] is None
    labels = Counter(pq.read_table(world_dir / "truth" / "hops.parquet").column("artefact").to_pylist())
    assert labels["third-party"] == labels["mpls-hidden-before"] == labels["rate-limited"] == 0
    # provider-numbered links exist in the clean world too: the origin AS is not the owner there
    assert labels["neighbour-numbered"] == c["realised"]["hops:neighbour-numbered"] > 0


def test_realised_artefact_rates_match_the_configured_ones(art_dir):
    wa = _art(art_dir)
    rates, r = wa["rates"], wa["realised"]
    assert rates == world_mod.Artefacts().as_dict()
    ases = json.loads((art_dir / "truth" / "ases.json").read_text())
    pairs = sum(len(a["cities"]) for a in ases)
    checks = [
        ("customer_numbered_links", "private_c2p_interconnects", "customer_numbered"),
        ("mpls_invisible_asns", "transit_asns", "mpls_invisible"),
        ("ixp_ports_moved", "ixp_ports", "ixp_port_moved"),
        ("probes_misplaced", "probes", "probe_misplaced"),
    ]
    for k_key, n_key, rate in checks:
        k, n = r[k_key], r[n_key]
        assert _binomial_ok(k, n, rates[rate]), (k_key, k, n, rates[rate])
    assert _binomial_ok(r["facilities_omitted"], pairs, rates["facility_omitted"])
    # third-party: per router hop, at most the rate (a router needs another interface)
    n = r["router_hops"]
    assert 0 < r["hops:third-party"] <= n * rates["third_party"] + 4.0 * (n * rates["third_party"]) ** 0.5
    assert r["hops:mpls-hidden-before"] > 0 and r["hops:rate-limited"] > 0


def _origin_table(root: Path):
    ases = json.loads((root / "truth" / "ases.json").read_text())
    rows = sorted(
        ((ipaddress.IPv4Network(p), a["asn"]) for a in ases for p in a["prefixes"]),
        key=lambda x: -x[0].prefixlen,
    )

    # router space outside BGP (CN2's 59.43/16): the /21 holding an AS's infra and link blocks
    infra = [(ipaddress.IPv4Network(a["infra"]).supernet(new_prefix=21), a["asn"]) for a in ases]

    def origin(addr: str) -> int | None:
        ip = ipaddress.IPv4Address(addr)
        found = next((asn for net, asn in rows if ip in net), None)
        return found if found is not None else next((asn for net, asn in infra if ip in net), None)

    return origin


def test_truth_owner_is_consistent_with_each_artefact(art_dir):
    origin = _origin_table(art_dir)
    rel = _as_rel(art_dir)
    wa = _art(art_dir)
    mpls = set(wa["hit"]["mpls_invisible_asns"])
    hops = pq.read_table(art_dir / "truth" / "hops.parquet").to_pylist()
    traces = pq.read_table(art_dir / "truth" / "traces.parquet", columns=["msm_id", "prb_id", "timestamp", "loop"])
    loops = {(t["msm_id"], t["prb_id"], t["timestamp"]) for t in traces.to_pylist() if t["loop"]}  # a loop repeats hops
    seen = Counter()
    prev = None
    for h in hops:
        lab = h["artefact"]
        if lab == "neighbour-numbered":
            o = origin(h["addr"])
            # the address is in the neighbour's space; the router is the other AS's
            assert o is not None and o != h["owner_asn"], h
            assert (o, h["owner_asn"]) in rel or (h["owner_asn"], o) in rel, h
        elif lab == "third-party":
            o = origin(h["addr"])
            assert o == h["owner_asn"] or (o, h["owner_asn"]) in rel or (h["owner_asn"], o) in rel, h
        elif lab == "mpls-hidden-before" and (h["msm_id"], h["prb_id"], h["timestamp"]) not in loops:
            assert prev is not None and prev["owner_asn"] == h["owner_asn"] in mpls, h
        if lab:
            seen[lab] += 1
        assert h["owner_asn"] == h["router_asn"] and h["router_city"] == h["city"]
        prev = h
    assert all(seen[k] > 0 for k in ("neighbour-numbered", "third-party", "mpls-hidden-before"))


def test_reference_data_is_stale_where_the_world_says(world_dir, art_dir):
    wa = _art(art_dir)
    pdb = art_dir / "reference" / "peeringdb"
    netixlan = {r["ipaddr4"]: r["asn"] for r in json.loads((pdb / "netixlan.json").read_text())["data"]}
    hops = pq.read_table(art_dir / "truth" / "hops.parquet", columns=["addr", "owner_asn", "kind"])
    owner_at = {a: o for a, o, k in zip(*(hops.column(c).to_pylist() for c in ("addr", "owner_asn", "kind")),
                                          strict=True) if k == "ixp"}
    moved = wa["hit"]["ixp_ports_moved"]
    assert moved
    lans = {r["ixlan_id"]: r["prefix"] for r in json.loads((pdb / "ixpfx.json").read_text())["data"]}
    for m in moved:
        ix = int(m["ixp_id"].split(":")[1])
        addrs = [a for a, asn in netixlan.items() if asn == m["peeringdb_asn"]
                 and ipaddress.IPv4Address(a) in ipaddress.IPv4Network(lans[ix])]
        assert len(addrs) == 1 and m["peeringdb_asn"] != m["member_asn"]
        assert owner_at.get(addrs[0], m["member_asn"]) == m["member_asn"]  # truth: the new holder
    def netfac(root: Path) -> set:
        rows = json.loads((root / "reference" / "peeringdb" / "netfac.json").read_text())["data"]
        return {(r["local_asn"], r["fac_id"]) for r in rows}
    clean, art = netfac(world_dir), netfac(art_dir)
    assert art < clean  # same seed: only omissions


def test_published_probe_locations_are_imprecise_or_wrong(art_dir):
    w = World.load(art_dir)
    pub = {p["id"]: p["geometry"]["coordinates"] for p in json.loads((art_dir / "atlas" / "probes.json").read_text())["results"]}
    misplaced = set(_art(art_dir)["hit"]["probes_misplaced"])
    km = world_mod.Artefacts().probe_obfuscation_km
    for p in w.topo.probes:
        lon, lat = pub[p.prb_id]
        d = _haversine_km(p.lat, p.lon, lat, lon)
        if p.prb_id in misplaced:
            assert d > 50.0
        else:
            assert d <= km + 0.02  # + rounding to 4 decimals


def test_artefact_world_reproduces_stored_results_on_demand(art_dir):
    w = World.load(art_dir)
    assert w.artefacts == world_mod.Artefacts()
    stored = _results(art_dir)[::400]
    for r in stored:
        again = w.traceroute(r["prb_id"], r["dst_addr"], r["timestamp"], msm_id=r["msm_id"],
                             proto=r["proto"], paris_id=r["paris_id"])
        assert again == r


@pytest.mark.parametrize("bad", [{"third_party": 1.5}, {"siblings": -0.1}, {"probe_obfuscation_km": "1"}])
def test_bad_artefact_rates_are_refused(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        world_mod.Artefacts(**bad)


def test_cli_generate_says_clean_or_artefacts(art_dir, tmp_path, capsys):
    assert cli_main(["world", "generate", str(tmp_path / "c"), "--seed", "1", "--clean"]) == 0
    assert "clean world" in capsys.readouterr().out
