"""Every reference-file reader against garbage mixed into real files: no traceback, every good
line kept, every bad one counted by reason (issue 14: one bad line is never fatal)."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
from pathlib import Path

import orjson
import pytest

from analysis.datasets import import_files

#: (kind, file under ../shared/data, lines of it used)
LINE_KINDS = [
    ("pfx2as", "ip2asn/caida-pfx2as-mlab/routeviews-rv2.pfx2as.ipv4.2020-02.gz", 3000),
    ("rir-delegated", "other/rir-delegated/2019-09-12_delegated-apnic-latest.gz", 3000),
    ("ip2country", "ip2asn/iptoasn/2024-11-07_ip2country-v4.tsv.gz", 3000),
    ("ipmap", "other/ripe-ipmap/geolocations_ipmap_2019-12.csv.xz", 3000),
    ("as-rel", "caida/as-rel2-2019-12/20191201.as-rel2.txt.bz2", 3000),
    ("as-siblings", "other/as-siblings-whois-2020-01/SiblingASNs_20200111.txt.xz", 3000),
    ("pch-membership", "other/traixroute-pch-2017/ixp_membership.csv", 3000),
]

#: Lines no reader may take: text, control bytes, wrong field counts, numbers beyond any
#: integer width, out-of-range values in each format's own shape.
GARBAGE = [
    b"this is not reference data",
    b"\x00\xff\xfe\x01",
    b"|||||||",
    b"\t\t\t\t",
    b"99999999999999999999999|1|-1|bgp",
    b"1|99999999999999999999999|0",
    b"0.0.0.0\t0\t3356",  # a default route as an origin
    b"1.2.3.0\t24\t0",  # AS0
    b"1.2.4.0\t24\t4294967296",  # beyond 32 bits
    b"1.2.5.0\t24\t99999999999999999999999",
    b"300.1.2.3\t24\t3356",
    b"apnic|CN|ipv4|1.2.3.0|notanumber|20100101|allocated",
    b"1.2.3.4\t1.2.3.0\tUS",  # range end before its start
    b"1.2.3.9/32,X,Nowhere,,,FR,FRA,500.0,2.35,60",  # latitude 500
    b"1.2.3.8/32,X,Nowhere,,,FR,FRA,abc,def,60",
]


#: Lines at the top of each file left as they are: formats are recognised from them.
HEAD = 60


def _lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    for magic, opener in ((b"\x1f\x8b", gzip.decompress), (b"BZh", bz2.decompress), (b"\xfd7zXZ", lzma.decompress)):
        if data.startswith(magic):
            data = opener(data)
    return data.split(b"\n")


def _manifest(kind: str, name: str, lines: list[bytes], cache: Path, sid: str) -> dict:
    f = cache / sid / name
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_bytes(b"\n".join(lines) + b"\n")
    return import_files(kind, [f], snapshot_id=sid, cache_dir=cache).manifest(kind)


@pytest.mark.parametrize(("kind", "rel", "n"), LINE_KINDS, ids=[k for k, _, _ in LINE_KINDS])
def test_garbage_lines_are_counted_and_good_lines_all_kept(kind, rel, n, test_data, tmp_path):
    src = test_data / rel
    name = src.name.removesuffix(".gz").removesuffix(".bz2").removesuffix(".xz")
    real = [ln for ln in _lines(src)[:n] if ln.strip()]
    clean = _manifest(kind, name, real, tmp_path, "clean")
    mixed = list(real[:HEAD])  # the header region (format detection, version line) stays first
    for i, ln in enumerate(real[HEAD:]):
        mixed.append(ln)
        if i % 97 == 0:
            mixed.append(GARBAGE[(i // 97) % len(GARBAGE)])
    mixed += GARBAGE
    dirty = _manifest(kind, name, mixed, tmp_path, "dirty")
    assert dirty["rows"] == clean["rows"], "a good line was lost or a bad one taken"
    assert sum(dirty["dropped"].values()) > sum(clean["dropped"].values())
    assert all(v > 0 for v in dirty["dropped"].values())


def test_peeringdb_and_caida_ixp_objects_with_bad_values_are_cleaned(test_data, tmp_path):
    """Out-of-range coordinates, booleans and 2^64 numbers as ids or ASNs: the value is
    dropped and counted, the object kept (its other fields are good)."""
    ix = orjson.loads((test_data / "peeringdb" / "traixroute-2017" / "ix.json").read_bytes())
    good = len(ix["data"])
    fac = {"data": [
        {"id": 1, "org_id": 1, "name": "Ok", "city": "Paris", "country": "FR", "latitude": 48.8, "longitude": 2.3},
        {"id": 2, "org_id": 1, "name": "Mars", "city": "X", "country": "FR", "latitude": 500, "longitude": "east"},
        {"id": 3, "org_id": True, "name": "Bool", "city": "X", "country": "FR", "latitude": None, "longitude": None},
        {"id": 2**64, "name": "Huge"},
    ]}
    net = {"data": [{"id": 1, "org_id": 1, "asn": 2**32, "name": "Too big", "info_type": ""},
                    {"id": 2, "org_id": 1, "asn": 3356, "name": "Ok", "info_type": ""}]}
    d = tmp_path / "pdb"
    d.mkdir()
    (d / "ix.json").write_bytes(orjson.dumps(ix))
    (d / "fac.json").write_text(json.dumps(fac))  # orjson refuses 2**64
    (d / "net.json").write_bytes(orjson.dumps(net))
    snap = import_files("peeringdb", sorted(d.iterdir()), snapshot_id="pdb", cache_dir=tmp_path)
    m = snap.manifest("peeringdb")
    assert m["rows"]["ix"] == good
    facs = {r["id"]: r for r in snap.table("peeringdb", "fac").to_pylist()}
    assert facs[1]["latitude"] == 48.8 and facs[2]["latitude"] is None and facs[2]["longitude"] is None
    assert facs[3]["org_id"] is None and 2**64 not in facs
    nets = {r["id"]: r["asn"] for r in snap.table("peeringdb", "net").to_pylist()}
    assert nets == {1: None, 2: 3356}
    assert m["dropped"]["fac-bad-coordinates"] == 2 and m["dropped"]["net-bad-asn"] == 1
    assert m["dropped"]["fac-bad-org_id"] == 1 and m["dropped"]["fac-bad-row"] == 1

    lines = _lines(test_data / "caida" / "ixp-dataset" / "ixs_202310.jsonl")
    recs = [orjson.loads(ln) for ln in lines if ln.strip() and ln.lstrip().startswith(b"{")]
    recs = [r for r in recs if "ix_id" in r][:200]
    bad = {**recs[0], "ix_id": 999_999_001, "latitude": 500.0, "longitude": "west"}
    f = tmp_path / "ixs_bad.jsonl"
    f.write_bytes(b"\n".join(orjson.dumps(r) for r in [*recs, bad]) + b"\n")
    snap = import_files("caida-ixp", [f], snapshot_id="ixp", cache_dir=tmp_path)
    ixs = {r["ix_id"]: r for r in snap.table("caida-ixp", "ixs").to_pylist()}
    assert len(ixs) == len(recs) + 1 and ixs[999_999_001]["latitude"] is None
    assert snap.manifest("caida-ixp")["dropped"]["bad-coordinates"] == 2
