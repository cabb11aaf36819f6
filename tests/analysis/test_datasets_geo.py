"""The ip2country and ipmap kinds: real files against independent plain-Python oracles."""

from __future__ import annotations

import bisect
import csv
import gzip
import io
import ipaddress
import lzma
import random
from pathlib import Path

import pyarrow as pa
import pytest

from analysis.datasets import KINDS, import_files
from analysis.destinations import lookup_ip2country, lookup_ipmap
from analysis.errors import DatasetFormatError

IPTOASN = ("ip2asn", "iptoasn")
V4 = "2024-11-07_ip2country-v4.tsv.gz"
V6 = "2024-11-07_ip2country-v6.tsv.gz"
IPMAP = ("other", "ripe-ipmap", "geolocations_ipmap_2019-12.csv.xz")


@pytest.fixture(scope="module")
def geo_snapshot(test_data, tmp_path_factory):
    cache = tmp_path_factory.mktemp("geo-cache")
    d = test_data.joinpath(*IPTOASN)
    import_files("ip2country", [d / V4, d / V6], snapshot_id="geo", cache_dir=cache)
    return import_files("ipmap", [test_data.joinpath(*IPMAP)], snapshot_id="geo", cache_dir=cache)


class _BisectOracle:
    """The raw file, sorted by (start, -end): the covering range that starts last wins."""

    def __init__(self, path: Path):
        rows = []
        with gzip.open(path, "rt") as fh:
            for line in fh:
                a, b, cc = line.rstrip("\n").split("\t")
                if cc in ("None", "Unknown", "", "ZZ"):  # iptoasn: no country
                    continue
                rows.append((int(ipaddress.ip_address(a)), -int(ipaddress.ip_address(b)), cc))
        rows.sort()
        self.starts = [r[0] for r in rows]
        self.ends = [-r[1] for r in rows]
        self.cc = [r[2] for r in rows]
        self.maxend = []
        m = -1
        for e in self.ends:
            m = max(m, e)
            self.maxend.append(m)

    def __call__(self, x: int) -> str | None:
        i = bisect.bisect_right(self.starts, x) - 1
        while i >= 0 and self.maxend[i] >= x:
            if self.ends[i] >= x:
                return self.cc[i]
            i -= 1
        return None


@pytest.mark.parametrize("fname, bits", [(V4, 32), (V6, 128)])
def test_ip2country_lookup_equals_bisect_over_the_raw_file(geo_snapshot, test_data, fname, bits):
    oracle = _BisectOracle(test_data.joinpath(*IPTOASN, fname))
    rng = random.Random(13)
    xs = []
    for _ in range(50_000):  # half uniform over the family (v6: over the used 2000::/3 too)
        xs.append(rng.getrandbits(bits) if bits == 32 else (0x2 << 125) | rng.getrandbits(125))
    for _ in range(50_000):  # half at and around range boundaries, where off-by-ones live
        i = rng.randrange(len(oracle.starts))
        xs.append(max(0, min((1 << bits) - 1, rng.choice([oracle.starts[i], oracle.ends[i]]) + rng.choice([-1, 0, 1]))))
    mk = ipaddress.IPv4Address if bits == 32 else ipaddress.IPv6Address
    got = lookup_ip2country(geo_snapshot, pa.array([str(mk(x)) for x in xs])).to_pylist()
    want = [oracle(x) for x in xs]
    assert got == want
    assert sum(w is not None for w in want) > 40_000  # the sample really exercises hits


def test_ip2country_manifest_counts_no_country_rows(geo_snapshot, test_data):
    m = geo_snapshot.manifest("ip2country")
    none = 0
    total = 0
    for f in (V4, V6):
        with gzip.open(test_data.joinpath(*IPTOASN, f), "rt") as fh:
            for line in fh:
                total += 1
                none += line.rstrip("\n").split("\t")[2] in ("None", "Unknown", "", "ZZ")
    assert m["dropped"] == {"no-country": none}
    assert m["rows"]["ranges"] == total - none
    assert m["date"] == "2024-11-07"


def test_ipmap_lookup_equals_a_dict_of_the_raw_csv(geo_snapshot, test_data):
    raw = {}
    with lzma.open(test_data.joinpath(*IPMAP), "rt", encoding="utf-8") as fh:
        for r in csv.reader(fh):
            ip = str(ipaddress.ip_address(r[0].split("/")[0]))
            if (r[7] == "") != (r[8] == ""):
                continue
            raw[ip] = (r[5], r[2] or None, float(r[7]) if r[7] else None, float(r[8]) if r[8] else None)
    addrs = sorted(raw)
    rng = random.Random(7)
    absent = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(5000)]
    absent = [a for a in absent if a not in raw]
    t = lookup_ipmap(geo_snapshot, pa.array(addrs + absent))
    got = list(zip(t.column("cc").to_pylist(), t.column("city").to_pylist(),
                   t.column("lat").to_pylist(), t.column("lon").to_pylist(), strict=True))
    assert got[: len(addrs)] == [raw[a] for a in addrs]
    assert all(g == (None, None, None, None) for g in got[len(addrs):])
    assert geo_snapshot.manifest("ipmap")["rows"]["addresses"] == len(raw)


def test_bad_lines_are_set_aside_and_counted_not_fatal(tmp_path):
    f = tmp_path / "ip2country-v4.tsv"
    f.write_text(
        "1.0.0.0\t1.0.0.255\tAU\n"
        "1.0.1.0\t1.0.1.255\n"  # a field missing
        "1.0.2.0\t1.0.3.255\tNone\n"  # iptoasn: not routed
        "1.0.5.0\t1.0.4.0\tCN\n"  # end before start
        "1.0.6.0\tbanana\tCN\n"
        "1.0.7.0\t1.0.7.255\tcountry\n"
        "1.0.8.0\t1.0.8.255\tJP\n"
    )
    snap = import_files("ip2country", [f], snapshot_id="bad", cache_dir=tmp_path)
    m = snap.manifest("ip2country")
    assert m["dropped"] == {"bad-line": 1, "no-country": 1, "bad-range": 1, "bad-address": 1, "bad-country": 1}
    assert m["rows"]["ranges"] == 2
    got = lookup_ip2country(snap, pa.array(["1.0.0.9", "1.0.1.9", "1.0.8.255", "1.0.9.0"])).to_pylist()
    assert got == ["AU", None, "JP", None]
    g = tmp_path / "ipmap.csv"
    g.write_text(
        "192.0.2.1/32,X,Paris,IDF,France,FR,FRA,48.85,2.35,60\n"
        "192.0.2.2/32,X,Paris\n"  # short line
        "192.0.2.0/24,X,Paris,IDF,France,FR,FRA,48.85,2.35,60\n"  # a prefix, not a host
        "192.0.2.3/32,X,Nowhere,,,FR,FRA,95.0,2.35,60\n"  # latitude out of range
        "192.0.2.1/32,X,Lyon,ARA,France,FR,FRA,45.76,4.83,10\n"  # duplicate, lower score
        "192.0.2.4/32,USA,,,United States,US,USA,,,60\n"  # a country without a point: kept
    )
    snap = import_files("ipmap", [g], snapshot_id="bad", cache_dir=tmp_path)
    m = snap.manifest("ipmap")
    assert m["dropped"] == {"bad-coordinates": 1, "bad-line": 1, "duplicate-address": 1,
                            "not-a-host": 1}
    t = lookup_ipmap(snap, pa.array(["192.0.2.1", "192.0.2.4"]))
    assert t.column("city").to_pylist() == ["Paris", None]
    assert t.column("cc").to_pylist() == ["FR", "US"]
    assert t.column("lat").to_pylist() == [48.85, None]


def test_nested_ranges_resolve_to_the_narrowest(tmp_path):
    f = tmp_path / "ip2country-v4.tsv"
    # the real quirk: a wide range with narrower ones inside (1.51.56.0-1.51.255.255 CN holds 1.51.113.0-...)
    f.write_text("10.0.0.0\t10.255.255.255\tAA\n10.1.0.0\t10.1.255.255\tBB\n10.1.2.0\t10.1.2.255\tCC\n"
                 "10.1.0.0\t10.1.0.255\tDD\n")
    snap = import_files("ip2country", [f], snapshot_id="n", cache_dir=tmp_path)
    q = ["9.255.255.255", "10.0.0.0", "10.1.0.0", "10.1.1.0", "10.1.2.7", "10.1.3.0", "10.2.0.0", "11.0.0.0"]
    assert lookup_ip2country(snap, pa.array(q)).to_pylist() == [None, "AA", "DD", "BB", "CC", "BB", "AA", None]


def test_wrong_file_kind_is_one_clear_error(tmp_path, test_data):
    with pytest.raises(DatasetFormatError, match=r"not an iptoasn ip2country file"):
        import_files("ip2country", [test_data / "other" / "pch-ix-networks" / "ix_ip4.csv"], snapshot_id="x",
                     cache_dir=tmp_path)
    with pytest.raises(DatasetFormatError, match=r"not a RIPE IPmap CSV"):
        import_files("ipmap", [test_data.joinpath(*IPTOASN, V4)], snapshot_id="x", cache_dir=tmp_path)


def test_snapshot_id_with_a_trailing_newline_is_refused(tmp_path):
    f = tmp_path / "ip2country-v4.tsv"
    f.write_text("1.0.0.0\t1.0.0.255\tAU\n")
    with pytest.raises(DatasetFormatError, match="invalid snapshot id"):
        import_files("ip2country", [f], snapshot_id="2026-01-01\n", cache_dir=tmp_path)
    assert not (tmp_path / "snapshots" / "2026-01-01\n").exists()


def test_new_kinds_are_listed():
    assert {"ip2country", "ipmap"} <= set(KINDS)


def test_ipmap_with_a_header_line(tmp_path):
    g = tmp_path / "ipmap-api.csv"
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["ip", "city", "country_code", "latitude", "longitude", "score"])
    w.writerow(["2001:db8::1", "Amsterdam", "NL", "52.37", "4.89", "80"])
    g.write_text(buf.getvalue())
    snap = import_files("ipmap", [g], snapshot_id="h", cache_dir=tmp_path)
    t = lookup_ipmap(snap, pa.array(["2001:DB8::1"]))
    assert t.to_pylist() == [{"cc": "NL", "city": "Amsterdam", "lat": 52.37, "lon": 4.89, "score": 80.0}]


def test_real_reference_data_place_the_menog_ixps_that_lack_coordinates(real_snapshot, geo_snapshot):
    """UAE-IX, the most crossed IXP of the MENOG traceroutes, has no coordinates in PeeringDB;
    the real facilities and IPmap router cities place it (and two more) at its city."""
    from analysis import plots
    from analysis.campaign_io import _facility_table
    from analysis.geo import haversine_km

    fac, _ = _facility_table(real_snapshot, "real")
    places = plots.place_table(fac, geo_snapshot.table("ipmap", "addresses"))
    none = pa.array([None] * 3, pa.float64())
    pops = pa.table({"ixp_name": ["UAE-IX", "Kuwait Internet Exchange", "CAIX"],
                     "ixp_city": ["Dubai", "Kuwait City", "Cairo"], "ixp_country": ["AE", "KW", "EG"],
                     "latitude": none, "longitude": none, "flagged": [False] * 3})
    no_probes = pa.table({"prb_id": pa.array([], pa.int64()), "latitude": pa.array([], pa.float64()),
                          "longitude": pa.array([], pa.float64())})
    pts, unplaced = plots.map_points(no_probes, pops, places=places)
    got = {r["label"]: r for r in pts.to_pylist()}
    # independent positions of the city centres (atlas coordinates)
    for name, (lat, lon) in {"UAE-IX": (25.20, 55.27), "Kuwait Internet Exchange": (29.37, 47.98),
                             "CAIX": (30.04, 31.24)}.items():
        r = got[name]
        assert r["placed_by"] == "city", name
        assert haversine_km(lat, lon, r["latitude"], r["longitude"]) < 60, name
    assert unplaced == {}
