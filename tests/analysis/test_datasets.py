"""Reference-data snapshots: real files of every kind, manifests, LPM, errors."""

from __future__ import annotations

import gzip
import hashlib
import ipaddress
import time
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import _lpm
from analysis.datasets import (
    cache_root,
    import_files,
    latest_snapshot,
    list_snapshots,
    load_snapshot,
)
from analysis.errors import DatasetFormatError, MissingReferenceData
from tests.analysis._snap import real_sources


def test_manifest_records_sources_rows_and_dates(real_snapshot, test_data):
    for kind, paths in real_sources(test_data):
        m = real_snapshot.manifest(kind)
        want = {hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
        assert {s["sha256"] for s in m["sources"]} == want, kind
        for s in m["sources"]:  # the imported bytes are kept in the snapshot
            assert hashlib.sha256((real_snapshot.path / kind / "source" / s["file"]).read_bytes()).hexdigest() == s["sha256"]
    m = real_snapshot.manifest("pfx2as")
    # line counts of the two CAIDA files (SOURCES.md: 845,161 v4 + 83,125 v6)
    assert m["rows"]["prefixes"] == 845_161 + 83_125
    assert m["date"] == "2020-02" and m["date_from"] == "file name"  # pfx2as files carry no date inside
    assert real_snapshot.manifest("caida-ixp")["rows"]["ixs"] == 1452
    # the data's own dates, read here with plain string splitting: the newest end date of the
    # delegation files' version lines (the 2014 RIPE file and 2019 others: 2019-09-11), ...
    ends = []
    for p in dict(real_sources(test_data))["rir-delegated"]:
        version = next(ln for ln in gzip.decompress(p.read_bytes()).decode().splitlines()
                       if ln and not ln.startswith("#"))
        ends.append(version.split("|")[5])
    want = max(ends)
    assert real_snapshot.manifest("rir-delegated")["date"] == f"{want[:4]}-{want[4:6]}-{want[6:]}" == "2019-09-11"
    assert real_snapshot.manifest("rir-delegated")["date_from"] == "content"
    # ... and the build date in the CAIDA IXP file's header (2023-11-01, not the 202310 of its name)
    assert real_snapshot.manifest("caida-ixp")["date"] == "2023-11-01"


def test_pfx2as_rows_against_the_raw_file(real_snapshot, test_data):
    p = real_snapshot.table("pfx2as", "prefixes")
    f = test_data / "ip2asn" / "caida-pfx2as-mlab" / "routeviews-rv6.pfx2as.ipv6.2020-02.gz"
    raw = {}
    with gzip.open(f, "rt") as fh:
        for line in fh:
            net, plen, origins = line.rstrip("\n").split("\t")
            raw[f"{net}/{plen}"] = [int(x) for x in origins.replace(",", "_").split("_")]
    rows = {r["prefix"]: r for r in p.filter(pa.compute.equal(p["af"], 6)).select(["prefix", "asns", "as_set"]).to_pylist()}
    assert rows.keys() == raw.keys()
    assert rows["2001:410::/32"]["asns"] == [271, 7860, 8111] and rows["2001:410::/32"]["as_set"]
    assert all(rows[k]["asns"] == v for k, v in raw.items())


def test_rir_delegation_holds_cn2_space(real_snapshot):
    t = real_snapshot.table("rir-delegated", "prefixes").to_pylist()
    cn2 = [r for r in t if r["prefix"] == "59.43.0.0/16"]
    assert cn2 and cn2[0]["registry"] == "apnic" and cn2[0]["cc"] == "CN"


def test_lacnic_non_power_of_two_ranges_are_split_into_cidrs(tmp_path):
    f = tmp_path / "delegated-test-extended"
    f.write_text("2.3|lacnic|20190910|3|19870101|20190910|-0300\n"
                 "lacnic|*|ipv4|*|2|summary\n"
                 "lacnic|BR|ipv4|45.4.0.0|768|20170224|allocated|272078\n"
                 "lacnic|AR|asn|1000|10|19970602|allocated|20118\n"
                 "lacnic||ipv4|24.152.0.0|32768||reserved|\n")
    snap = import_files("rir-delegated", [f], cache_dir=tmp_path)
    pf = snap.table("rir-delegated", "prefixes")["prefix"].to_pylist()
    assert pf == ["45.4.0.0/23", "45.4.2.0/24"]  # 768 = 512 + 256
    assert snap.table("rir-delegated", "asns").to_pylist()[0]["asn_count"] == 10
    assert snap.manifest("rir-delegated")["dropped"] == {"status-reserved": 1}


def test_as2org_pipe_and_jsonl_formats(tmp_path):
    pipe = tmp_path / "20240101.as-org2info.txt"
    pipe.write_text(
        "# name: AS Org\n"
        "# format:org_id|changed|org_name|country|source\n"
        "CHINANET-ARIN|20200101|China Telecom Americas|US|ARIN\n"
        "@aut-4134-APNIC|20200101|CHINANET|CN|APNIC\n"
        "# format:aut|changed|aut_name|org_id|opaque_id|source\n"
        "4134|20200101|CHINANET-BACKBONE|@aut-4134-APNIC|x|APNIC\n"
        "36678|20200101|CTA|CHINANET-ARIN|x|ARIN\n"
        "bad|line\n"
    )
    jsonl = tmp_path / "20240201.as-org2info.jsonl"
    jsonl.write_text(
        '{"type": "Organization", "organizationId": "O1", "name": "Org One", "country": "DE"}\n'
        '{"type": "ASN", "asn": "64500", "name": "ONE", "organizationId": "O1"}\n'
    )
    snap = import_files("as2org", [pipe, jsonl], cache_dir=tmp_path)
    asns = {r["asn"]: r["org_id"] for r in snap.table("as2org", "asns").to_pylist()}
    assert asns == {4134: "@aut-4134-APNIC", 36678: "CHINANET-ARIN", 64500: "O1"}
    orgs = {r["org_id"]: (r["org_name"], r["country"]) for r in snap.table("as2org", "orgs").to_pylist()}
    assert orgs["CHINANET-ARIN"] == ("China Telecom Americas", "US")
    assert snap.manifest("as2org")["dropped"] == {"bad-asn-record": 1}
    assert snap.manifest("as2org")["date"] == "2024-02-01"


def test_peeringdb_dump_form_and_type_from_fields(tmp_path):
    dump = tmp_path / "peeringdb_2_dump_2024_01_01.json"
    dump.write_text('{"ix": {"data": [{"id": 7, "name": "X-IX", "city": "Paris", "country": "FR", "status": "ok"},'
                    ' {"id": 8, "name": "gone", "status": "deleted"}]},'
                    ' "ixlan": {"data": [{"id": 70, "ix_id": 7, "status": "ok"}]}}')
    anon = tmp_path / "response.json"  # no type in the name: recognised from the fields
    anon.write_text('{"data": [{"id": 1, "ixlan_id": 70, "protocol": "IPv4", "prefix": "192.0.2.0/24", "status": "ok"}]}')
    folder = tmp_path / "pdb"
    folder.mkdir()
    dump.rename(folder / dump.name)
    snap = import_files("peeringdb", [folder, anon], cache_dir=tmp_path)  # a folder = its files
    assert snap.table("peeringdb", "ix")["name"].to_pylist() == ["X-IX"]
    assert snap.table("peeringdb", "ixpfx")["prefix"].to_pylist() == ["192.0.2.0/24"]
    assert snap.manifest("peeringdb")["dropped"] == {"ix-status-deleted": 1}


@pytest.mark.parametrize(
    "kind, content, message",
    [
        ("pfx2as", "1.0.0.0 24 13335\n", r"bad\.gz:1: not a prefix-to-AS file"),
        ("rir-delegated", "hello|world\n", r"bad\.gz:1: not an RIR delegated file"),
        ("as2org", "4134|x|y|z\n", r"bad\.gz:1: not a CAIDA as2org file"),
        ("peeringdb", "[1, 2]", r"bad\.gz: not a PeeringDB API response"),
        ("caida-ixp", '{"name": "x"}\n', r"bad\.gz:1: not a CAIDA IXP record"),
        ("pch-subnets", "a,b,c\n1,2,3\n", r"bad\.gz:1: not a PCH subnet file"),
        ("pch-membership", "a,b\n", r"bad\.gz:1: not a PCH membership file"),
    ],
)
def test_wrong_format_names_file_and_line(tmp_path, kind, content, message):
    p = tmp_path / "bad.gz"
    p.write_bytes(gzip.compress(content.encode()))
    with pytest.raises(DatasetFormatError, match=message):
        import_files(kind, [p], cache_dir=tmp_path)
    assert not (tmp_path / "snapshots").exists() or not list((tmp_path / "snapshots").glob(f"*/{kind}/manifest.json"))


def test_unknown_kind_and_missing_file(tmp_path):
    with pytest.raises(DatasetFormatError, match="unknown dataset kind"):
        import_files("nope", [tmp_path], cache_dir=tmp_path)
    with pytest.raises(DatasetFormatError, match="no such file"):
        import_files("pfx2as", [tmp_path / "missing.gz"], cache_dir=tmp_path)


def test_snapshots_accumulate_and_latest_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("PATHEXP_CACHE_DIR", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    with pytest.raises(MissingReferenceData, match="no reference-data snapshot"):
        latest_snapshot()
    v4 = tmp_path / "a.pfx2as"
    v4.write_text("1.0.0.0\t24\t13335\n")
    v6 = tmp_path / "b.pfx2as"
    v6.write_text("2001:db8::\t32\t64500\n")
    import_files("pfx2as", [v4], snapshot_id="s1")
    s = import_files("pfx2as", [v6], snapshot_id="s1")  # adds to the kind in s1
    assert s.manifest("pfx2as")["rows"]["prefixes"] == 2
    d1 = s.digest
    again = import_files("pfx2as", [v6], snapshot_id="s1")  # same bytes: no change
    assert again.digest == d1
    import_files("pfx2as", [v4], snapshot_id="s2", replace=True)
    assert latest_snapshot().id == "s2"
    assert [x.id for x in list_snapshots()] == ["s1", "s2"]
    assert load_snapshot("s1").digest == d1
    with pytest.raises(MissingReferenceData, match="no snapshot 'zz'"):
        load_snapshot("zz")
    with pytest.raises(MissingReferenceData, match="has no 'as2org' data"):
        load_snapshot("s1").manifest("as2org")


# ------------------------------------------------------------------ LPM property test


def _brute(prefixes: list[ipaddress._BaseNetwork], addr: ipaddress._BaseAddress) -> int:
    best, blen = -1, -1
    for i, n in enumerate(prefixes):
        if addr in n and n.prefixlen > blen:
            best, blen = i, n.prefixlen
    return best


@settings(max_examples=60, deadline=None)
@given(
    version=st.sampled_from([4, 6]),
    seeds=st.lists(st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128)), min_size=1, max_size=40),
    queries=st.lists(st.integers(0, 2**128 - 1), min_size=1, max_size=40),
)
def test_lpm_equals_brute_force(version, seeds, queries):
    width = 32 if version == 4 else 128
    nets = []
    for v, L in seeds:
        L = L % (width + 1)
        # cluster prefixes in a small region so they nest
        base = (v >> (128 - width)) & ~((1 << (width - 8)) - 1) if version == 6 else v % (1 << 32) & 0xFF000000 | (v % (1 << 24))
        cls = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
        nets.append(cls((base % (1 << width), L), strict=False))
    af, hi, lo, plen = _lpm.parse_prefixes([str(n) for n in nets], where="t")
    iv = _lpm.flatten(hi, lo, plen, width=width)
    qs = [q % (1 << width) for q in queries] + [int(n.network_address) for n in nets] + \
         [int(n.broadcast_address) for n in nets]
    addrs = [ipaddress.IPv4Address(q) if version == 4 else ipaddress.IPv6Address(q) for q in qs]
    qaf, qhi, qlo, ok = _lpm.parse_addresses(pa.array([str(a) for a in addrs]))
    assert ok.all()
    got = _lpm.lookup(iv, qhi, qlo)
    for a, g in zip(addrs, got, strict=True):
        want = _brute(nets, a)
        assert (g == -1) == (want == -1), a
        if want >= 0:
            assert nets[g] == nets[want], (a, nets[g], nets[want])


def test_parse_addresses_rejects_junk():
    af, hi, lo, ok = _lpm.parse_addresses(pa.array(["1.2.3.4", None, "1.2.3.256", "01.2.3.4", "x", "::ffff:1.2.3.4", "fe80::1%eth0"]))
    assert ok.tolist() == [True, False, False, False, False, True, True]
    assert lo[0] == 0x01020304 and af[5] == 6 and lo[5] == 0xFFFF01020304


# ------------------------------------------------------------------ fetch (local server)


class _Site:
    """A real HTTP server on 127.0.0.1 serving a folder, plus a PeeringDB-like paged API."""

    def __init__(self, root: Path, pdb_pages: dict[str, list[bytes]]):
        import http.server
        import threading
        import urllib.parse

        site = self
        self.requests: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                site.requests.append(self.path)
                if url.path.startswith("/api/"):
                    obj = url.path[len("/api/"):]
                    q = urllib.parse.parse_qs(url.query)
                    page = int(q["skip"][0]) // int(q["limit"][0])
                    pages = pdb_pages.get(obj, [])
                    body = pages[page] if page < len(pages) else b'{"data": [], "meta": {}}'
                else:
                    f = root / url.path.lstrip("/")
                    if f.is_dir():
                        f = f / "index.html"
                    if not f.is_file():
                        self.send_error(404)
                        return
                    body = f.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_fetch_downloads_from_the_sources_and_imports(test_data, tmp_path):
    from analysis._download import fetch

    web = tmp_path / "web"
    caida = test_data / "ip2asn" / "caida-pfx2as-mlab"
    for sub, name in (("v4", "routeviews-rv2.pfx2as.ipv4.2020-02.gz"), ("v6", "routeviews-rv6.pfx2as.ipv6.2020-02.gz")):
        d = web / sub / "2020" / "02"
        d.mkdir(parents=True)
        (d / f"routeviews-{sub}-20200201-1200.pfx2as.gz").write_bytes((caida / name).read_bytes())
        (web / sub / "pfx2as-creation.log").write_text(
            f"# seq\ttimestamp\tpath\n1\t1580000000\t2020/01/routeviews-{sub}-20200101-1200.pfx2as.gz\n"
            f"2\t1580600000\t2020/02/routeviews-{sub}-20200201-1200.pfx2as.gz\n")
    (web / "ixps").mkdir()
    (web / "ixps" / "ixs_202310.jsonl").write_bytes((test_data / "caida" / "ixp-dataset" / "ixs_202310.jsonl").read_bytes())
    (web / "ixps" / "index.html").write_text('<a href="ixs_202307.jsonl">x</a> <a href="ixs_202310.jsonl">y</a>')
    (web / "apnic").write_bytes(gzip.decompress((test_data / "other" / "rir-delegated" / "2019-09-12_delegated-apnic-latest.gz").read_bytes()))
    pdb_dir = test_data / "peeringdb" / "api-samples-beta-2026-04"
    pages = {"ixpfx": [(pdb_dir / "ixpfx-page-1.json").read_bytes(), (pdb_dir / "ixpfx-page-2.json").read_bytes()]}
    site = _Site(web, pages)
    sleeps: list[float] = []
    try:
        src = {"pfx2as-v4": site.url + "v4/", "pfx2as-v6": site.url + "v6/", "caida-ixp": site.url + "ixps/",
               "apnic": site.url + "apnic", "peeringdb": site.url + "api/"}
        cache = tmp_path / "cache"
        snap = fetch("pfx2as", snapshot_id="web", cache_dir=cache, sources=src)
        assert snap.manifest("pfx2as")["rows"]["prefixes"] == 845_161 + 83_125
        assert snap.manifest("pfx2as")["sources"][0]["url"] == src["pfx2as-v4"]
        fetch("caida-ixp", snapshot_id="web", cache_dir=cache, sources=src)
        fetch("rir-delegated", snapshot_id="web", cache_dir=cache, sources=src, rirs=["apnic"])
        snap = fetch("peeringdb", snapshot_id="web", cache_dir=cache, sources=src, sleep=sleeps.append)
    finally:
        site.close()
    assert snap.manifest("caida-ixp")["rows"]["ixs"] == 1452
    assert snap.manifest("caida-ixp")["date"] == "2023-11-01"  # the newest listed file was taken (its header)
    assert snap.manifest("rir-delegated")["rows"]["prefixes"] > 40_000
    assert snap.manifest("peeringdb")["rows"]["ixpfx"] == 500
    # paging: ixpfx pages 1, 2, then an empty page 3; every other type one empty page
    api = [r for r in site.requests if r.startswith("/api/")]
    assert [r for r in api if "ixpfx" in r] == [f"/api/ixpfx?limit=250&skip={s}&depth=0" for s in (0, 250, 500)]
    assert len(api) == 3 + 8
    # anonymous rate limit respected: one pause before every request but the first
    assert sleeps == [3.1] * (len(api) - 1)
    assert not list(cache.glob(".fetch-*"))  # temporary downloads removed


class _FaultySite:
    """A real HTTP server on 127.0.0.1 that misbehaves: ``mode`` says how (see the tests)."""

    def __init__(self, mode: str):
        import http.server
        import threading

        site = self
        self.hits = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                site.hits += 1
                try:
                    if mode == "drip":  # headers at once, then one byte every 0.2 s
                        self.send_response(200)
                        self.send_header("Content-Length", "100000")
                        self.end_headers()
                        for _ in range(100000):
                            self.wfile.write(b"x")
                            self.wfile.flush()
                            time.sleep(0.2)
                    elif mode == "endless":  # a chunked body that never ends
                        self.send_response(200)
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        chunk = b"0" * 65536
                        while True:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    elif mode.startswith("retry") and site.hits == 1:
                        self.send_response(429)
                        self.send_header("Retry-After", mode.removeprefix("retry"))
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                    else:
                        body = b'{"data": [], "meta": {}}'
                        self.send_response(200)
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                except OSError:  # the client gave up: what is being tested
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(("mode", "message"), [
    ("drip", r"no complete answer within the 1\.5 s deadline \(download\.deadline"),
    ("endless", r"answer larger than 1048576 bytes \(download\.max_body_bytes\)"),
])
def test_fetch_from_a_server_that_drips_or_never_ends_stops_at_its_limit(tmp_path, mode, message):
    from analysis._download import Limits, fetch
    from analysis.errors import MissingReferenceData

    site = _FaultySite(mode)
    started = time.monotonic()
    try:
        with pytest.raises(MissingReferenceData, match=message):
            fetch("rir-delegated", cache_dir=tmp_path, rirs=["apnic"], sources={"apnic": site.url + "apnic"},
                  limits=Limits(deadline=1.5, read_timeout=1.0, max_bytes=1024 * 1024))
    finally:
        site.close()
    assert time.monotonic() - started < 60  # bounded (1.5 s plus one read), not forever
    assert not list(tmp_path.glob(".fetch-*")) and not list(tmp_path.glob("*/*/manifest*"))


def test_a_long_retry_after_ends_the_fetch_and_a_short_one_is_logged_then_honoured(tmp_path, caplog):
    from analysis._download import fetch
    from analysis.errors import MissingReferenceData

    site = _FaultySite("retry590")
    sleeps: list[float] = []
    try:
        with pytest.raises(MissingReferenceData, match=r"asks to wait 590 s \(HTTP 429, Retry-After\), longer "
                                                       r"than the 120 s pathexp waits; retry after \d\d:\d\d"):
            fetch("peeringdb", cache_dir=tmp_path, sources={"peeringdb": site.url + "api/"}, sleep=sleeps.append)
    finally:
        site.close()
    assert sleeps == [] and site.hits == 1  # refused at once, not slept on

    site = _FaultySite("retry7")
    try:
        with caplog.at_level("WARNING", logger="analysis._download"):
            with pytest.raises(MissingReferenceData, match="returned no objects of any type"):  # all pages empty
                fetch("peeringdb", cache_dir=tmp_path, sources={"peeringdb": site.url + "api/"}, sleep=sleeps.append)
    finally:
        site.close()
    assert sleeps[0] == 7.0
    assert "rate-limited (HTTP 429); waiting 7 s as the server asks (Retry-After)" in caplog.text


def test_pyasn_dat_and_prefix_asn_tables_import_as_pfx2as(test_data, tmp_path):
    """The formats users have: a real pyasn IPASN .dat file and the AS-Prefix TSV, counted
    here line by line (comment lines are headers, every other line one prefix)."""
    dat = test_data / "ip2asn" / "pyasn" / "ipasn_20140513.dat.gz"
    lines = [ln for ln in gzip.decompress(dat.read_bytes()).decode().splitlines() if ln and not ln.startswith(";")]
    snap = import_files("pfx2as", [dat], snapshot_id="pyasn", cache_dir=tmp_path)
    m = snap.manifest("pfx2as")
    assert len(lines) == 512_621  # SOURCES.md
    assert m["rows"]["prefixes"] + sum(m["dropped"].values()) == len(lines)
    assert m["date"] == "2014-05-13"
    # the AS-Prefix TSV ("#prefix<TAB>origin_asn" header), its first 2,000 rows
    tsv = test_data / "ip2asn" / "as-prefix-2026-06" / "prefix2asn_2026-06-19.tsv.gz"
    head = gzip.decompress(tsv.read_bytes()).split(b"\n")[:2001]
    small = tmp_path / "prefix2asn_2026-06-19.tsv"
    small.write_bytes(b"\n".join(head) + b"\n")
    snap = import_files("pfx2as", [small], snapshot_id="asprefix", cache_dir=tmp_path)
    rows = snap.table("pfx2as", "prefixes").to_pylist()
    want: dict[str, list[int]] = {}  # a prefix on several lines has several origins (MOAS)
    for ln in head[1:]:
        p, a = ln.decode().split("\t")
        want.setdefault(p, []).append(int(a))
    assert len(rows) == len(want) < 2000
    assert {r["prefix"]: r["asns"] for r in rows} == want
    assert {r["prefix"]: r["asn"] for r in rows} == {p: a[0] for p, a in want.items()}
    assert snap.manifest("pfx2as")["dropped"] == {"moas-lines-merged": 2000 - len(want)}


def test_a_failed_first_import_leaves_no_snapshot_behind(test_data, tmp_path):
    names = test_data / "ip2asn" / "pyasn" / "asnames.json.gz"  # not a prefix table
    with pytest.raises(DatasetFormatError, match="not a prefix-to-AS file"):
        import_files("pfx2as", [names], snapshot_id="bad", cache_dir=tmp_path)
    assert not (tmp_path / "snapshots" / "bad").exists()
    # a failed import into an existing snapshot leaves that snapshot as it was
    import_files("caida-ixp", [test_data / "caida/ixp-dataset/ixs_202310.jsonl"], snapshot_id="ok", cache_dir=tmp_path)
    before = sorted(p.name for p in (tmp_path / "snapshots" / "ok").iterdir())
    with pytest.raises(DatasetFormatError):
        import_files("pfx2as", [names], snapshot_id="ok", cache_dir=tmp_path)
    assert sorted(p.name for p in (tmp_path / "snapshots" / "ok").iterdir()) == before


def test_as_names_from_pyasn_and_as_prefix_files_name_the_ases_of_real_hops(test_data, tmp_path):
    """``asnames``: real name tables (pyasn JSON, AS-Prefix TSV) pinned in the snapshot; the
    annotator names every hop's AS with them where no as2org organisation is known."""
    import lzma

    from analysis.annotate import annotate
    from probes.parse import parse_lines

    js = test_data / "ip2asn" / "pyasn" / "asnames.json.gz"
    raw = orjson.loads(gzip.decompress(js.read_bytes()))
    # a name written "AS23 - NASA" is kept as "NASA" (the AS number is shown beside it anyway)
    names = {int(k): (v[len(f"AS{k} - "):] if v.startswith(f"AS{k} - ") else v).strip()
             for k, v in raw.items() if k.isdigit()}
    snap = import_files("asnames", [js], snapshot_id="n", cache_dir=tmp_path)
    t = snap.table("asnames", "names")
    assert t.num_rows + sum(snap.manifest("asnames")["dropped"].values()) == len(raw)
    got = dict(zip(t.column("asn").to_pylist(), t.column("name").to_pylist(), strict=True))
    assert got == {a: n for a, n in names.items() if n and 0 < a < 2**32}
    tsv = test_data / "ip2asn" / "as-prefix-2026-06" / "asn_names_2026-06-19.tsv.gz"
    rows = [ln.split("\t", 1) for ln in gzip.decompress(tsv.read_bytes()).decode().splitlines()[1:] if ln]
    snap2 = import_files("asnames", [tsv], snapshot_id="n2", cache_dir=tmp_path)
    t2 = dict(zip(*(snap2.table("asnames", "names").column(c).to_pylist() for c in ("asn", "name")), strict=True))
    assert t2[4134] == dict((int(a), n) for a, n in rows)[4134].split(" - ", 1)[1]
    assert len(t2) + sum(snap2.manifest("asnames")["dropped"].values()) == len(rows)
    # annotate real MENOG hops with CAIDA pfx2as and the pyasn names
    caida = test_data / "ip2asn" / "caida-pfx2as-mlab"
    import_files("pfx2as", sorted(caida.glob("*.pfx2as.*.gz")), snapshot_id="n", cache_dir=tmp_path)
    with lzma.open(test_data / "ripe-atlas/traceroutes/menog_traceroutes_full.ndjson.xz") as fh:
        lines = [ln for _, ln in zip(range(200), fh, strict=False)]
    hops = parse_lines([ln.rstrip(b"\n") for ln in lines]).hops
    ann, _ = annotate(hops, load_snapshot("n", cache_dir=tmp_path))
    pairs = {(a, o) for a, o in zip(ann.column("asn").to_pylist(), ann.column("org").to_pylist(), strict=True)
             if a is not None}
    assert pairs and all(o == names[a] for a, o in pairs if a in names)
    assert any(o is not None for _, o in pairs)


def test_fetch_offline_is_one_line_at_once_and_exit_3(tmp_path, monkeypatch, capsys):
    """The resolver fails (faked at the socket API: no packet leaves the machine): one line
    naming the host and the remedies, no retry, exit code 3, and no snapshot left behind."""
    import socket

    from analysis.cli import main
    from probes.errors import EXIT_NETWORK

    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    asked = []

    def no_dns(host, *a, **kw):
        asked.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    code = main(["datasets", "--cache-dir", str(tmp_path), "fetch", "--kind", "pfx2as"])
    err = capsys.readouterr().err
    assert code == EXIT_NETWORK == 3
    assert err.count("\n") == 1 and "does not resolve" in err and "offline?" in err, err
    assert "Traceback" not in err and "NameResolutionError" not in err
    assert len(asked) == 1  # asked once, not retried
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
