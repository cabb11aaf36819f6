"""BGP reference data: the ``mrt`` and ``bgpdump`` kinds on real RIS files and the real text format."""

from __future__ import annotations

import gzip
import ipaddress
import struct
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pytest

from analysis.datasets import import_files
from analysis.errors import DatasetFormatError
from tests.analysis._demo import demo_campaign  # noqa: F401 - session fixture

RIS = ("bgp", "ris-rrc24-updates-2020")
#: Independent figures for these 16 files, from ../shared/data/SOURCES.md (counted by the
#: data's curator with mrtparse, not by pathexp).
RECORDS, AS_PATHS, FLAGGED_PATHS = 319_138, 301_118, 1_046
PATHS_THROUGH = {4809: 871, 4837: 68, 58453: 50, 4134: 43, 9808: 17, 10099: 14}


@pytest.fixture(scope="module")
def ris_snapshot(test_data, tmp_path_factory):
    files = sorted(test_data.joinpath(*RIS).glob("updates.*.gz"))
    assert len(files) == 16
    return import_files("mrt", files, snapshot_id="bgp", cache_dir=tmp_path_factory.mktemp("bgp"))


@pytest.mark.slow
def test_real_ris_updates_match_the_curators_counts(ris_snapshot):
    routes = ris_snapshot.table("mrt", "routes")
    con = duckdb.connect()
    con.register("r", routes)

    def one(sql: str) -> int:
        return int(con.sql(sql).fetchall()[0][0])

    # one BGP message per (source, record); a message with an AS path announces something
    assert one("SELECT count(DISTINCT (source, record)) FROM r WHERE kind = 'announce'") == AS_PATHS
    for asn, n in PATHS_THROUGH.items():
        assert one(f"SELECT count(DISTINCT (source, record)) FROM r "
                   f"WHERE kind = 'announce' AND list_contains(as_path, {asn})") == n, asn
    assert one("SELECT count(DISTINCT (source, record)) FROM r WHERE kind = 'announce' AND "
               f"list_has_any(as_path, {list(PATHS_THROUGH)})") == FLAGGED_PATHS
    # every MRT record is a row's message or counted as set aside, none twice
    manifest = orjson.loads((ris_snapshot.path / "mrt" / "manifest.json").read_bytes())
    dropped = manifest["dropped"]
    assert set(dropped) <= {"state-change", "not-update", "bad-record", "unsupported-record"}
    assert one("SELECT count(DISTINCT (source, record)) FROM r") + sum(dropped.values()) == RECORDS
    # the peer is the first AS of every announced path (RIS peers do not strip themselves)
    assert one("SELECT count(*) FROM r WHERE kind = 'announce' AND as_path[1] <> peer_asn") == 0
    assert one("SELECT count(*) FROM r WHERE kind = 'withdraw' AND (len(as_path) > 0 OR origin_asn IS NOT NULL)") == 0
    assert manifest["date"].startswith("2020-09-07")


# Lines in the real `bgpdump -m` layout (fields as bgpdump 1.6 prints them).
BGPDUMP = """\
BGP4MP|1596943200|A|185.166.144.249|47787|162.253.16.0/24|47787 174 45352|IGP|185.166.144.249|0|0|174:21201|NAG||
BGP4MP|1596943201|W|185.166.144.249|47787|205.86.32.0/20
BGP4MP|1596943202|STATE|2001:db8::1|64500|3|1
TABLE_DUMP2|1596943203|B|2001:db8::1|64500|2001:db8:100::/40|64500 3356 {4134,4809}|IGP|2001:db8::1|0|0||NAG||
BGP4MP|1596943204|A|2001:db8::1|64500|2001:db8:200::/40|64500 3356 4134|IGP|2001:db8::1|0|0||NAG||
garbage line
"""


def test_bgpdump_text_rows_sets_and_drops(tmp_path):
    f = tmp_path / "updates.20200809.0320.txt.gz"
    f.write_bytes(gzip.compress(BGPDUMP.encode()))
    snap = import_files("bgpdump", [f], snapshot_id="t", cache_dir=tmp_path / "cache")
    rows = snap.table("bgpdump", "routes").to_pylist()
    got = [(r["kind"], r["peer_asn"], r["prefix"], r["as_path"], r["origin_asn"], r["as_set"], r["record"])
           for r in rows]
    assert got == [
        ("announce", 47787, "162.253.16.0/24", [47787, 174, 45352], 45352, False, 1),
        ("withdraw", 47787, "205.86.32.0/20", [], None, False, 2),
        ("rib", 64500, "2001:db8:100::/40", [64500, 3356, 4134, 4809], None, True, 4),  # ends in a set
        ("announce", 64500, "2001:db8:200::/40", [64500, 3356, 4134], 4134, False, 5),
    ]
    manifest = orjson.loads((snap.path / "bgpdump" / "manifest.json").read_bytes())
    assert manifest["dropped"] == {"state-change": 1, "bad-line": 1}


def test_wrong_files_are_one_clear_error(tmp_path, test_data):
    text = tmp_path / "routes.txt"
    text.write_text("this is not MRT\n" * 50)
    with pytest.raises(DatasetFormatError, match="routes.txt: not an MRT file"):
        import_files("mrt", [text], snapshot_id="t", cache_dir=tmp_path / "c1")
    mrt = next(test_data.joinpath(*RIS).glob("updates.*.gz"))
    with pytest.raises(DatasetFormatError, match="not bgpdump -m output"):
        import_files("bgpdump", [mrt], snapshot_id="t", cache_dir=tmp_path / "c2")
    assert not any(Path(tmp_path / "c1").rglob("routes.parquet"))


@pytest.mark.slow
def test_bgp_summary_on_real_ris_data_against_a_plain_python_count(ris_snapshot, test_data, capsys):
    """`pathexp bgp summary --json` against sets built in plain Python from the same rows."""
    from analysis.cli import main
    from analysis.destinations import lookup_ip2country
    from analysis.registry import load_registry

    d = test_data / "ip2asn" / "iptoasn"
    snap = import_files("ip2country", sorted(d.glob("2024-11-07_ip2country-v*.tsv.gz")), snapshot_id="bgp",
                        cache_dir=ris_snapshot.path.parents[1])
    assert main(["bgp", "--cache-dir", str(snap.path.parents[1]), "summary", "--snapshot", "bgp", "--json"]) == 0
    got = orjson.loads(capsys.readouterr().out)
    reg = load_registry()
    family = {e.asn: e.family for e in reg.asns}
    want: dict[str, set] = {f: set() for f in reg.families}
    origin: dict[str, set] = {f: set() for f in reg.families}
    everything = set()
    for r in ris_snapshot.table("mrt", "routes").select(["peer_asn", "prefix", "kind", "as_path",
                                                         "origin_asn"]).to_pylist():
        if r["kind"] == "withdraw":
            continue
        key = (r["peer_asn"], r["prefix"], tuple(r["as_path"]))
        everything.add(key)
        for f in {family[a] for a in r["as_path"] if a in family}:
            want[f].add(key)
            if family.get(r["origin_asn"]) == f:
                origin[f].add(key)
    assert got["snapshot"] == "bgp" and got["kind"] == "mrt" and got["announcements"] == len(everything)
    assert got["location_source"] == "ip2country"
    for f, keys in want.items():
        g = got["families"][f]
        assert g["announcements"] == len(keys) and g["originated"] == len(origin[f]), f
        prefixes = sorted({k[1] for k in keys})
        assert g["prefixes"] == len(prefixes) and g["peers"] == len({k[0] for k in keys}), f
        cc = lookup_ip2country(snap, pa.array([p.split("/")[0] for p in prefixes], pa.string())).to_pylist()
        assert g["prefixes_by_country"] == {"US": cc.count("US"), "unknown": cc.count(None),
                                            "other": len(cc) - cc.count("US") - cc.count(None)}, f
    # the curator's figure: paths through China Telecom's 4809 are the most common flagged ones
    assert max(got["families"]["china-telecom"]["through_asns"].items(), key=lambda kv: kv[1])[0] == "4809"


def _mrt(ts: int, mtype: int, sub: int, body: bytes) -> bytes:
    return struct.pack("!IHHI", ts, mtype, sub, len(body)) + body


def _rib_dump() -> bytes:
    """A TABLE_DUMP_V2 RIB dump written by hand after RFC 6396: a peer index table with two
    peers (IPv4 AS4, IPv6 AS4) and one RIB_IPV4_UNICAST record with an entry from each."""
    peers = [(0x02, "192.0.2.1", 64500), (0x03, "2001:db8::1", 64501)]
    body = ipaddress.ip_address("192.0.2.254").packed + struct.pack("!H", 0) + struct.pack("!H", len(peers))
    for ptype, addr, asn in peers:
        body += bytes([ptype]) + ipaddress.ip_address("192.0.2.9").packed + ipaddress.ip_address(addr).packed
        body += struct.pack("!I", asn)

    def attrs(segments: list[tuple[int, list[int]]]) -> bytes:
        path = b"".join(struct.pack("!BB", k, len(a)) + b"".join(struct.pack("!I", x) for x in a)
                        for k, a in segments)
        return bytes([0x40, 1, 1, 0]) + bytes([0x40, 2, len(path)]) + path

    rib = struct.pack("!I", 7) + bytes([24]) + bytes([198, 51, 100]) + struct.pack("!H", 2)
    for idx, segs in ((0, [(2, [64500, 3356, 4134])]), (1, [(2, [64501, 3356]), (1, [4809, 4134])])):
        a = attrs(segs)
        rib += struct.pack("!HIH", idx, 1_600_000_000, len(a)) + a
    return _mrt(1_600_000_100, 13, 1, body) + _mrt(1_600_000_100, 13, 2, rib)


def test_a_rib_dump_gives_one_rib_row_per_entry_with_its_peer(tmp_path):
    f = tmp_path / "bview.20200913.1600.gz"
    f.write_bytes(gzip.compress(_rib_dump()))
    snap = import_files("mrt", [f], snapshot_id="t", cache_dir=tmp_path / "cache")
    rows = [(r["kind"], r["peer_asn"], r["peer_addr"], r["prefix"], r["as_path"], r["origin_asn"], r["as_set"],
             r["record"]) for r in snap.table("mrt", "routes").to_pylist()]
    assert rows == [
        ("rib", 64500, "192.0.2.1", "198.51.100.0/24", [64500, 3356, 4134], 4134, False, 2),
        ("rib", 64501, "2001:db8::1", "198.51.100.0/24", [64501, 3356, 4809, 4134], None, True, 2),
    ]
    manifest = orjson.loads((snap.path / "mrt" / "manifest.json").read_bytes())
    assert manifest["dropped"] == {"peer-index": 1}


@pytest.mark.slow
def test_valley_signals_on_real_ris_data_against_the_raw_relationship_file(ris_snapshot, test_data, capsys):
    """Route-leak signals of `bgp summary` against a plain reading of the CAIDA serial-2 file."""
    import bz2

    from analysis.cli import main
    from analysis.registry import load_registry

    rel_file = test_data / "caida" / "as-rel2-2019-12" / "20191201.as-rel2.txt.bz2"
    import_files("as-rel", [rel_file], snapshot_id="bgp", cache_dir=ris_snapshot.path.parents[1])
    assert main(["bgp", "--cache-dir", str(ris_snapshot.path.parents[1]), "summary", "--snapshot", "bgp",
                 "--json"]) == 0
    got = orjson.loads(capsys.readouterr().out)
    what: dict[tuple[int, int], str] = {}  # (x, y): what y is to x
    for line in bz2.open(rel_file, "rt"):
        if line.startswith("#"):
            continue
        a, b, r = line.split("|")[:3]
        if r.strip() == "0":
            what[(int(a), int(b))] = what[(int(b), int(a))] = "peer"
        else:
            what[(int(b), int(a))], what[(int(a), int(b))] = "provider", "customer"
    family = {e.asn: e.family for e in load_registry().asns}
    want: dict[str, set] = {}
    for r in ris_snapshot.table("mrt", "routes").select(["peer_asn", "prefix", "kind", "as_path"]).to_pylist():
        if r["kind"] == "withdraw":
            continue
        p = [a for i, a in enumerate(r["as_path"]) if i == 0 or a != r["as_path"][i - 1]]
        for i in range(1, len(p) - 1):
            if p[i] in family and what.get((p[i], p[i + 1])) in ("provider", "peer") \
                    and what.get((p[i], p[i - 1])) in ("provider", "peer"):
                want.setdefault(family[p[i]], set()).add((r["peer_asn"], r["prefix"], tuple(r["as_path"]), p[i]))
    assert want, "the real files hold at least one valley through a flagged AS"
    for fid, fam in got["families"].items():
        assert fam["valleys"] == len(want.get(fid, ())), fid
        for e in fam["valley_examples"]:
            assert (e["peer_asn"], e["prefix"], tuple(e["as_path"]), e["asn"]) in want[fid]
            assert e["source"].startswith("updates.") and e["record"] >= 1


@pytest.mark.slow
def test_path_change_signals_on_real_ris_data_checked_record_by_record(ris_snapshot):
    """Each new-origin / new-transit signal on the real rrc24 updates, checked at its evidence:
    the named record announces the prefix with the flagged AS on the path, and the same
    peer's latest earlier message for that prefix (read here with DuckDB from the routes
    table, ordered by time, file and record) was an announcement without that family."""
    from analysis.bgp import path_change_signals
    from analysis.registry import load_registry

    reg = load_registry()
    family = {e.asn: e.family for e in reg.asns}
    routes = ris_snapshot.table("mrt", "routes")
    sig = path_change_signals(routes, reg)
    assert sig.num_rows > 0, "the real updates move some paths onto a flagged AS"
    con = duckdb.connect()
    con.register("r", routes.select(["timestamp", "peer_asn", "prefix", "kind", "as_path", "source", "record"]))
    for x in sig.to_pylist():
        (ts, peer, path) = con.execute("SELECT timestamp, peer_asn, as_path FROM r WHERE source = ? AND record = ? "
                                       "AND prefix = ? AND kind = 'announce'",
                                       [x["source"], x["record"], x["prefix"]]).fetchall()[0]
        assert x["asn"] in path and path == x["as_path"] and ts == x["first_seen"]
        prev = con.execute("SELECT kind, as_path FROM r WHERE peer_asn = ? AND prefix = ? AND "
                           "(timestamp, source, record) < (?, ?, ?) ORDER BY timestamp DESC, source DESC, "
                           "record DESC LIMIT 1", [peer, x["prefix"], ts, x["source"], x["record"]]).fetchall()
        assert prev and prev[0][0] == "announce" and prev[0][1] == x["previous_path"]
        assert x["family"] not in {family.get(a) for a in prev[0][1]}
        assert (x["signal"] == "new-origin") == (path[-1] == x["asn"])


def test_bgp_agreement_verdicts_views_from_the_probe_as_and_its_neighbours():
    from analysis.bgp import bgp_agreement
    from analysis.registry import load_registry

    key = {"msm_id": [1] * 5, "timestamp": [0] * 5}
    paths = pa.table({**key, "prb_id": [1, 2, 3, 4, 5],
                      "probe_asn": [64500, 64500, 64501, 64502, 64503],
                      "dst_addr": ["192.0.2.7", "192.0.2.200", "192.0.2.7", "192.0.2.7", "203.0.113.9"],
                      "flagged_families": [["china-telecom"], [], [], ["china-telecom"], []]})
    routes = pa.table({
        "peer_asn": [64500, 64500, 64510, 64999],
        "prefix": ["192.0.2.0/24", "192.0.2.128/25", "192.0.2.0/24", "192.0.2.0/24"],
        "kind": ["announce", "rib", "announce", "withdraw"],
        "as_path": [[64500, 4134, 64520], [64500, 3356, 64520], [64510, 4809, 64520], []]})
    rel = pa.table({"provider": [64510], "customer": [64501]})  # 64501's neighbour 64510 peers with the collector
    t, counts = bgp_agreement(paths, routes, load_registry(), rel)
    ct = {r["prb_id"]: (r["verdict"], r["bgp_prefix"]) for r in t.to_pylist() if r["family"] == "china-telecom"}
    assert ct == {
        1: ("agree", "192.0.2.0/24"),           # both show China Telecom (AS4134)
        2: ("agree", "192.0.2.128/25"),         # the more specific prefix: neither shows it
        3: ("bgp-only", "192.0.2.0/24"),        # through neighbour 64510: CN2 (AS4809) on the path
        4: ("no-bgp-view", None),               # no peer is 64502 or a neighbour of it
        5: ("no-bgp-view", None),               # no announced prefix covers the destination
    }
    assert counts["china-telecom"] == {"agree": 2, "traceroute-only": 0, "bgp-only": 1, "no-bgp-view": 2}
    assert counts["china-unicom"]["agree"] == 3
    # the origin is not transit: a family that only originates the prefix is not on the path
    only_origin = pa.table({"peer_asn": [64500], "prefix": ["192.0.2.0/24"], "kind": ["announce"],
                            "as_path": [[64500, 3356, 4134]]})
    _, c = bgp_agreement(paths.slice(0, 1), only_origin, load_registry())
    assert c["china-telecom"]["traceroute-only"] == 1
    # nor is the probe's own AS when it is the peer (a probe inside China Telecom)
    inside = paths.slice(1, 1).set_column(3, "probe_asn", pa.array([4134], pa.int64()))
    own = pa.table({"peer_asn": [4134], "prefix": ["192.0.2.0/24"], "kind": ["announce"],
                    "as_path": [[4134, 3356, 64520]]})
    _, c = bgp_agreement(inside, own, load_registry())
    assert c["china-telecom"]["agree"] == 1


def test_bgp_compare_on_the_demo_campaign(demo_campaign, tmp_path, capsys):  # noqa: F811
    """`pathexp bgp compare` end to end: a bgpdump file announcing the demo destinations' /24s
    from the demo's probe ASes; every in-scope traceroute gets one verdict per family."""
    import pyarrow.parquet as pq

    from analysis.cli import main
    from analysis.scope import in_scope

    paths = in_scope(pq.read_table(demo_campaign.paths_parquet))
    pairs = sorted({(r["probe_asn"], r["dst_addr"], r["dst_asn"]) for r in
                    paths.select(["probe_asn", "dst_addr", "dst_asn"]).to_pylist()})[:40]
    lines = [f"BGP4MP|1600000000|A|192.0.2.1|{p}|{'.'.join(d.split('.')[:3])}.0/24|{p} 3356 4134 {o}|IGP|"
             f"192.0.2.1|0|0||NAG||" for p, d, o in pairs]
    f = tmp_path / "demo.bgpdump.txt"
    f.write_text("\n".join(lines) + "\n")
    cache = tmp_path / "cache"
    import_files("bgpdump", [f], snapshot_id="b", cache_dir=cache)
    assert main(["bgp", "--cache-dir", str(cache), "compare", "--campaign", demo_campaign.name,
                 "--workspace", str(demo_campaign.workspace), "--snapshot", "b", "--json"]) == 0
    got = orjson.loads(capsys.readouterr().out)
    assert got["traceroutes"] == paths.num_rows > 0
    for fam, c in got["families"].items():
        assert sum(c.values()) == paths.num_rows, fam
    viewed = {(p, d) for p, d, _ in pairs}
    n_view = sum((r["probe_asn"], r["dst_addr"]) in viewed for r in paths.select(["probe_asn", "dst_addr"]).to_pylist())
    ct = got["families"]["china-telecom"]
    # every BGP path of these views crosses AS4134: a viewed traceroute agrees iff it transits China Telecom
    assert ct["agree"] + ct["bgp-only"] == n_view and ct["traceroute-only"] == 0
    assert ct["no-bgp-view"] == paths.num_rows - n_view


# VRPs in the formats relying-party software exports (layouts as rpki-client 9, Routinator
# 0.14 and Cloudflare's rpki.json print them; the ROAs are made up, in documentation space).
VRP_CSV = """ASN,IP Prefix,Max Length,Trust Anchor,Expires
AS64500,192.0.2.0/24,24,ripe,1767225600
AS64501,198.51.100.0/22,23,arin,1767225600
AS64501,198.51.100.0/22,23,arin,1767225600
ASx,203.0.113.0/24,24,apnic,1767225600
AS64502,203.0.113.0/24,16,apnic,1767225600
AS64503,2001:db8::/32,48,ripe,1767225600
"""
VRP_JSON_RPKI_CLIENT = {"metadata": {"buildmachine": "rp.example", "vrps": 2},
                        "roas": [{"asn": 64504, "prefix": "192.0.2.0/25", "maxLength": 25, "ta": "ripe",
                                  "expires": 1767225600},
                                 {"asn": 64505, "prefix": "192.0.2.128/25", "maxLength": 24, "ta": "ripe"}]}
VRP_JSON_CLOUDFLARE = {"metadata": {"counts": 1, "generated": 1764547200},
                       "roas": [{"prefix": "203.0.113.0/24", "maxLength": 24, "asn": "AS64506",
                                 "ta": "Cloudflare - APNIC"}, "not an object"]}


def test_vrp_formats_import_and_validate_destinations(tmp_path):
    from analysis.bgp import rov_status

    (tmp_path / "vrps.csv").write_text(VRP_CSV)
    (tmp_path / "rpki-client.json").write_bytes(orjson.dumps(VRP_JSON_RPKI_CLIENT))
    (tmp_path / "rpki.json").write_bytes(gzip.compress(orjson.dumps(VRP_JSON_CLOUDFLARE)))
    snap = import_files("vrp", [tmp_path / "vrps.csv", tmp_path / "rpki-client.json", tmp_path / "rpki.json"],
                        snapshot_id="v", cache_dir=tmp_path / "cache")
    vrps = snap.table("vrp", "vrps")
    assert sorted(zip(vrps["asn"].to_pylist(), vrps["prefix"].to_pylist(), vrps["max_length"].to_pylist(),
                      strict=True)) == [
        (64500, "192.0.2.0/24", 24), (64501, "198.51.100.0/22", 23), (64503, "2001:db8::/32", 48),
        (64504, "192.0.2.0/25", 25), (64506, "203.0.113.0/24", 24)]
    manifest = orjson.loads((snap.path / "vrp" / "manifest.json").read_bytes())
    assert manifest["dropped"] == {"duplicate": 1, "bad-asn": 1, "bad-max-length": 2, "bad-line": 1}
    got = rov_status(["192.0.2.0/24", "192.0.2.0/25", "192.0.2.0/25", "198.51.100.0/24", "198.51.100.0/23",
                      "2001:db8:1::/48", "2001:db8:1::/49", "192.0.0.0/24", None],
                     [64500, 64504, 64500, 64501, 64501, 64503, 64503, 64500, 64500], vrps)
    assert got == ["valid", "valid", "invalid", "invalid", "valid", "valid", "invalid", "not-found", "unknown"]
    bad = tmp_path / "roas.txt"
    bad.write_text("prefix asn\n192.0.2.0/24 64500\n")
    with pytest.raises(DatasetFormatError, match="not a VRP CSV"):
        import_files("vrp", [bad], snapshot_id="v2", cache_dir=tmp_path / "cache2")


def test_bgp_rov_of_the_demo_destinations(demo_campaign, tmp_path, capsys):  # noqa: F811
    """`pathexp bgp rov`: prefixes and origins of the demo destinations checked against VRPs
    written from the world's ground truth (which AS announces which prefix)."""
    import json

    import pyarrow.parquet as pq

    from analysis.cli import main

    world = demo_campaign.root / "world"
    dsts = sorted(pq.read_table(demo_campaign.exposure_table("destinations")).column("dst_addr").to_pylist())
    truth = json.loads((world / "truth" / "ases.json").read_text())
    owner = {}  # destination -> (AS, its announced prefix), from the world's truth
    for d in dsts:
        for a in truth:
            for p in a["prefixes"]:
                if ipaddress.ip_address(d) in ipaddress.ip_network(p):
                    owner[d] = (a["asn"], p)
    (a0, p0), (a1, p1) = owner[dsts[0]], owner[dsts[-1]]
    assert p0 != p1
    vrp = tmp_path / "vrps.csv"
    vrp.write_text(f"ASN,IP Prefix,Max Length,Trust Anchor\nAS{a0},{p0},{ipaddress.ip_network(p0).prefixlen},t\n"
                   f"AS{a1 + 1},{p1},{ipaddress.ip_network(p1).prefixlen},t\n")
    cache = tmp_path / "cache"
    import_files("pfx2as", sorted((world / "reference" / "pfx2as").iterdir()), snapshot_id="r", cache_dir=cache)
    import_files("vrp", [vrp], snapshot_id="r", cache_dir=cache)
    assert main(["bgp", "--cache-dir", str(cache), "rov", "--campaign", demo_campaign.name,
                 "--workspace", str(demo_campaign.workspace), "--snapshot", "r", "--json"]) == 0
    rows = {r["dst_addr"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(rows) == set(dsts)
    for d, r in rows.items():
        want = "valid" if owner[d][1] == p0 else "invalid" if owner[d][1] == p1 else "not-found"
        assert (r["rov"], r["origin_asn"]) == (want, owner[d][0]), d


def test_analyze_puts_rpki_states_in_the_destination_table(demo_campaign, tmp_path):  # noqa: F811
    """With VRPs in the campaign's snapshot, `pathexp analyze` writes each destination's
    RPKI state into exposure/destinations and the counts into exposure.json; the states are
    those the world's truth gives (one prefix signed by its owner, one by another AS)."""
    import json
    import shutil

    import pyarrow.parquet as pq

    from analysis.cli import main
    from probes.workspace import Campaign

    shutil.copytree(demo_campaign.root, tmp_path / "ws" / "demo", symlinks=True)
    camp = Campaign("demo", tmp_path / "ws")
    truth = json.loads((camp.root / "world" / "truth" / "ases.json").read_text())
    dsts = sorted(pq.read_table(camp.exposure_table("destinations")).column("dst_addr").to_pylist())
    owner = {d: (a["asn"], p) for d in dsts for a in truth for p in a["prefixes"]
             if ipaddress.ip_address(d) in ipaddress.ip_network(p)}
    (a0, p0), (a1, p1) = owner[dsts[0]], owner[dsts[-1]]
    vrp = tmp_path / "vrps.json"  # rpki-client JSON
    vrp.write_text(json.dumps({"metadata": {"buildtime": "2026-03-03T00:00:00Z"}, "roas": [
        {"asn": a0, "prefix": p0, "maxLength": ipaddress.ip_network(p0).prefixlen, "ta": "ripe"},
        {"asn": a1 + 1, "prefix": p1, "maxLength": ipaddress.ip_network(p1).prefixlen, "ta": "arin"}]}))
    cache = camp.root / "cache"
    (snap_id,) = [d.name for d in (cache / "snapshots").iterdir()]
    import_files("vrp", [vrp], snapshot_id=snap_id, cache_dir=cache)
    assert main(["analyze", "--campaign", "demo", "--workspace", str(camp.workspace), "--cache-dir", str(cache),
                 "--force"]) == 0
    got = {r["dst_addr"]: (r["rov"], r["rov_origin_asn"])
           for r in pq.read_table(camp.exposure_table("destinations")).to_pylist()}
    want = {d: ("valid" if p == p0 else "invalid" if p == p1 else "not-found", a) for d, (a, p) in owner.items()}
    assert got == want
    cp = orjson.loads(camp.exposure_json.read_bytes())["control_plane"]
    assert cp["rov"]["valid"] >= 1 and cp["rov"]["invalid"] >= 1 and sum(cp["rov"].values()) >= len(dsts)
    # the VRPs' own date (rpki-client buildtime) lies inside the world's measurement days
    assert cp["rov_data"] == {"date": "2026-03-03", "gap_days": 0, "stale": False}


def test_campaign_control_plane_uses_the_routes_of_the_measurement_period(tmp_path):
    """BGP path exposure and agreement of a campaign from a real bgpdump-format snapshot: the
    RIB dumped before the traceroutes and the messages from a day before the first to the
    last count; an announcement from weeks earlier and one after the last do not."""
    import datetime as dt

    from analysis.bgp import campaign_bgp, campaign_bgp_inputs
    from analysis.registry import load_registry

    start, end, day = 1_600_000_000, 1_600_050_000, 86_400
    lines = [f"TABLE_DUMP2|{start - 3 * day}|B|192.0.2.250|64500|192.0.2.0/24|64500 3356 64510|IGP|x|0|0||NAG||",
             f"BGP4MP|{start - 30 * day}|A|192.0.2.251|64501|192.0.2.0/24|64501 4134 64510|IGP|x|0|0||NAG||",
             f"BGP4MP|{start - day // 2}|A|192.0.2.252|64502|192.0.2.0/24|64502 4809 64510|IGP|x|0|0||NAG||",
             f"BGP4MP|{end + 1}|A|192.0.2.253|64503|192.0.2.0/24|64503 4837 64510|IGP|x|0|0||NAG||"]
    f = tmp_path / "updates.20200913.0000.txt"
    f.write_text("\n".join(lines) + "\n")
    snap = import_files("bgpdump", [f], snapshot_id="t", cache_dir=tmp_path / "cache")
    reg = load_registry()
    inputs = campaign_bgp_inputs(snap, reg, pa.table({"dst_addr": ["192.0.2.7"], "dst_country": ["US"]}))
    ts = pa.array([start, end], pa.int64()).cast(pa.timestamp("s", tz="UTC"))
    paths = pa.table({"msm_id": [1, 1], "prb_id": [1, 1], "timestamp": ts, "probe_asn": [64500, 64500],
                      "dst_addr": ["192.0.2.7"] * 2, "flagged_families": [[], ["china-telecom"]]})
    events = pa.table({"family": pa.array([], pa.string()), "event": pa.array([], pa.string()),
                       "previous_timestamp": pa.array([], ts.type), "timestamp": pa.array([], ts.type)})
    cp, tables = campaign_bgp(inputs, paths, events, reg, n_boot=200)
    assert cp["periods_overlap"] and cp["peers"] == 2 and cp["paths"] == 2  # AS64500's RIB entry, AS64502's update
    fam = cp["families"]
    assert fam["china-telecom"]["control_plane_exposure"]["estimate"] == 0.5  # (0 + 1) / 2 peers
    assert fam["china-unicom"]["control_plane_exposure"]["estimate"] == 0.0  # AS4837 only after the end
    # the probe's AS is a collector peer: its own path shows no flagged transit
    assert fam["china-telecom"]["agreement"] == {"agree": 1, "traceroute-only": 1, "bgp-only": 0, "no-bgp-view": 0}
    assert tables["bgp_agreement"].num_rows == 2 * len(reg.families)
    assert dt.datetime.fromtimestamp(cp["bgp_period"][0], dt.timezone.utc).year == 2020


def test_reading_mrt_does_not_make_a_closed_socket_kill_the_process(tmp_path):
    """mrtparse sets SIGPIPE to its default action on import (a write to a closed socket then
    kills the process: this once killed the test run); the reader keeps Python's handler."""
    import subprocess
    import sys

    f = tmp_path / "bview.gz"
    f.write_bytes(gzip.compress(_rib_dump()))
    code = f"""
import socket
from collections import Counter
from analysis._readers_bgp import read_mrt
read_mrt([("bview.gz", open({str(f)!r}, "rb").read())], Counter())
a, b = socket.socketpair()
b.close()
try:
    a.sendall(b"x" * 100000)
except BrokenPipeError:
    print("BrokenPipeError raised, process alive")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    assert "process alive" in proc.stdout


def test_fetch_mrt_from_a_ris_archive_on_localhost(test_data, tmp_path, caplog):
    """`datasets fetch --kind mrt` against a stand-in RIS archive on 127.0.0.1 serving the real
    rrc24 files in the archive's layout (rrcNN/YYYY.MM/updates.YYYYMMDD.HHMM.gz); a file the
    archive lacks is skipped and logged."""
    import http.server
    import threading

    from analysis.cli import main

    real = test_data.joinpath(*RIS)
    served = {"0320", "0325", "0335"}  # 0330 is missing from this archive
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            asked.append(self.path)
            name = self.path.rsplit("/", 1)[-1]
            f = real / name
            ok = self.path.startswith("/rrc24/2020.08/") and name[-7:-3] in served and f.is_file()
            if not ok:
                self.send_error(404)
                return
            body = f.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        from analysis._download import fetch

        snap = fetch("mrt", snapshot_id="f", cache_dir=tmp_path / "c", date="2020-08-09", collector="rrc24",
                     window=("03:20", "03:40"), sources={"ris": f"http://127.0.0.1:{server.server_address[1]}/"})
    finally:
        server.shutdown()
        server.server_close()
    assert [p.rsplit("/", 1)[1] for p in asked] == [f"updates.20200809.{t}.gz" for t in ("0320", "0325", "0330", "0335")]
    assert "1 of 4 rrc24 files are not in the archive: updates.20200809.0330.gz" in caplog.text
    manifest = orjson.loads((snap.path / "mrt" / "manifest.json").read_bytes())
    assert sorted(s["name"] for s in manifest["sources"]) == [f"updates.20200809.{t}.gz" for t in sorted(served)]
    # the same rows as importing those three files from disk
    direct = import_files("mrt", [real / f"updates.20200809.{t}.gz" for t in sorted(served)], snapshot_id="d",
                          cache_dir=tmp_path / "d")
    assert snap.table("mrt", "routes").equals(direct.table("mrt", "routes"))
    # the command line refuses an unknown collector in one line
    assert main(["datasets", "--cache-dir", str(tmp_path / "c"), "fetch", "--kind", "mrt", "--collector", "rrc99x",
                 "--date", "2020-08-09"]) == 2
