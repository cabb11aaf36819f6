"""Probes without metadata: AS and country derived from the real ``from`` addresses of results."""

from __future__ import annotations

import ipaddress

import orjson
import pyarrow as pa
import pytest

from analysis.vantage import DERIVED, derive_probe_meta, probe_metadata_status

BUNDLES = ["1033154.json", "3082698.json"]


@pytest.fixture(scope="module")
def bundles(test_data):
    base = test_data / "ripe-atlas" / "pierky-ripe-atlas-monitor-fixtures"
    return [orjson.loads((base / n).read_bytes()) for n in BUNDLES]


def test_derived_country_matches_the_atlas_probe_listing(bundles, real_snapshot):
    """The bundles carry Atlas' own probe objects: an independent truth for the derivation."""
    agree = total = 0
    for b in bundles:
        results = b["results"]
        t = pa.table({"prb_id": [r["prb_id"] for r in results], "from_addr": [r.get("from") for r in results]})
        derived = {r["prb_id"]: r for r in derive_probe_meta(t, real_snapshot).to_pylist()}
        public = {r["prb_id"] for r in results if r.get("from") and ipaddress.ip_address(r["from"]).is_global}
        assert set(derived) == public
        truth = {p["id"]: p for p in b["probes"]["results"]}
        for pid, r in derived.items():
            assert r["origin"].startswith(f"{DERIVED}:pfx2as") and r["latitude"] is None
            assert r["address_v4"] in {x.get("from") for x in results if x["prb_id"] == pid}
            total += 1
            agree += r["country_code"] == truth[pid]["country_code"]
    # measured: 91 of 94 (the results are from 2013-2016, the delegation files newer)
    assert total == 94 and agree >= 0.9 * total


def test_counted_source_addresses_derive_what_every_row_derives(bundles, real_snapshot):
    """analyze hands over (probe, source address, traceroutes) counts, not every traceroute;
    a probe seen from several addresses keeps the most frequent one."""
    results = [r for b in bundles for r in b["results"]]
    rows = pa.table({"prb_id": [r["prb_id"] for r in results], "from_addr": [r.get("from") for r in results]})
    # one probe also seen once from another public address (a lower one: it would win a tie):
    # the vote decides
    pid, addr = results[0]["prb_id"], results[0]["from"]
    rows = pa.concat_tables([rows, pa.table({"prb_id": [pid, pid, pid], "from_addr": ["193.0.0.1", addr, addr]})])
    counted = rows.group_by(["prb_id", "from_addr"]).aggregate([("prb_id", "count")]).rename_columns(
        ["prb_id", "from_addr", "n"])
    whole, agg = derive_probe_meta(rows, real_snapshot), derive_probe_meta(counted, real_snapshot)
    assert agg.equals(whole) and whole.num_rows == 94
    assert {r["prb_id"]: r["address_v4"] for r in agg.to_pylist()}[pid] == addr


def test_supplied_metadata_wins_and_the_status_line_names_the_remedy(bundles, real_snapshot):
    from probes.store import PROBE_META_SCHEMA

    results = bundles[1]["results"]
    t = pa.table({"prb_id": [r["prb_id"] for r in results], "from_addr": [r.get("from") for r in results]})
    first = results[0]["prb_id"]
    known = pa.Table.from_pylist([{"prb_id": first, "country_code": "NL", "origin": "atlas"}],
                                 schema=PROBE_META_SCHEMA)
    derived = derive_probe_meta(t, real_snapshot, known)
    assert first not in derived.column("prb_id").to_pylist()
    n = len({r["prb_id"] for r in results})
    line = probe_metadata_status(t, pa.concat_tables([known, derived]), "imp")
    assert line == (f"probe metadata: {n - 1} only derived from its source address (AS and registry "
                    "country, no location); run `pathexp probes fetch --campaign imp` (online) or "
                    "`pathexp ingest --probes FILE`")
    assert probe_metadata_status(t, known, "imp").startswith(f"probe metadata: {n - 1:,} of {n:,} probes have none")
