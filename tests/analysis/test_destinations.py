"""Where a destination is: hand-computed discs, the US distance bound, real Atlas data."""

from __future__ import annotations

import json
import lzma
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from analysis import destinations as dst_mod
from analysis.datasets import import_files
from analysis.destinations import (
    country_distance_km,
    destination_rtts,
    load_country_geometry,
    locate_destinations,
    toward_country,
)
from analysis.errors import MissingReferenceData
from probes.parse import parse_lines

R = 6371.0088  # mean Earth radius, km (IUGG)
KM_PER_MS = 299_792.458 * (2 / 3) / 1000 / 2  # half the RTT at 2/3 c: 99.93 km per ms
ANYCAST_ADDR = "193.0.14.129"


def _rtts(rows):
    return pa.table({"msm_id": [1] * len(rows), "prb_id": [r[0] for r in rows], "timestamp": list(range(len(rows))),
                     "dst_addr": [ANYCAST_ADDR] * len(rows), "dst_rtt_ms": [r[1] for r in rows]})


def _probes(coords, anchor=None):
    ids = list(coords)
    t = {"prb_id": ids, "latitude": [coords[i][0] for i in ids], "longitude": [coords[i][1] for i in ids],
         "is_anchor": [False] * len(ids), "address_v4": [None] * len(ids), "country_code": [None] * len(ids)}
    if anchor:
        t["prb_id"].append(99)
        t["latitude"].append(anchor[0])
        t["longitude"].append(anchor[1])
        t["is_anchor"].append(True)
        t["address_v4"].append(ANYCAST_ADDR)
        t["country_code"].append("XX")
    return pa.table(t)


def test_public_api():
    assert dst_mod.__all__ == [
        "LOCATION_SOURCES", "NOT_A_COUNTRY", "UNKNOWN_REASONS", "SCOPE_REASONS", "PROBE_LOCATION_SLACK_KM", "MAX_DISCS",
        "Located", "Scope", "destination_rtts", "lookup_ip2country", "lookup_ipmap", "registry_country",
        "locate_destinations",
        "load_country_geometry", "country_distance_km", "toward_country",
    ]


def test_two_probes_5000_km_apart_at_2_ms_each_see_two_instances():
    # equator, 45 degrees apart: R * pi/4 = 5003.8 km; each disc 2 x 99.93 = 199.9 km
    apart = R * math.pi / 4
    assert apart > 2 * 2 * KM_PER_MS + 20
    loc = locate_destinations(_rtts([(1, 2.0), (2, 2.0)]), _probes({1: (0, 0), 2: (0, 45)}))
    row = loc.table.to_pylist()[0]
    assert row["dst_anycast"] is True and row["n_instances_min"] == 2
    assert row["n_probes"] == 2 and row["n_located_probes"] == 2 and row["min_rtt_ms"] == 2.0
    assert "5004 km apart" in row["anycast_evidence"]
    assert loc.counts["anycast:true"] == 1


def test_overlapping_discs_containing_the_anchor_point_are_unicast():
    # 30 ms -> 2997.9 km discs; the midpoint (0, 22.5) is R*pi/8 = 2501.9 km from each probe
    assert R * math.pi / 8 < 30 * KM_PER_MS
    loc = locate_destinations(_rtts([(1, 30.0), (2, 30.0)]), _probes({1: (0, 0), 2: (0, 45)}, anchor=(0, 22.5)))
    row = loc.table.to_pylist()[0]
    assert (row["dst_country"], row["dst_country_via"], row["dst_lat"], row["dst_lon"]) == ("XX", "anchor", 0.0, 22.5)
    assert row["dst_anycast"] is False


def test_a_disc_that_misses_the_claimed_point_and_one_probe_give_no_verdict():
    # anchor point at (0, 40): 4447.8 km from probe 1, beyond its 2997.9 km disc -> not unicast-proven
    loc = locate_destinations(_rtts([(1, 30.0), (2, 30.0)]), _probes({1: (0, 0), 2: (0, 45)}, anchor=(0, 40)))
    assert loc.table.column("dst_anycast").to_pylist() == [None]
    one = locate_destinations(_rtts([(1, 0.5)]), _probes({1: (0, 0)}))
    assert one.table.column("dst_anycast").to_pylist() == [None]
    assert one.counts["anycast:null"] == 1


def test_discs_that_just_touch_within_the_slack_are_not_anycast():
    # radii chosen so that r1 + r2 + 2 x slack equals the distance: not disjoint (strict >)
    apart = R * math.pi / 4
    rtt = (apart - 2 * dst_mod.PROBE_LOCATION_SLACK_KM) / 2 / KM_PER_MS + 1e-6
    loc = locate_destinations(_rtts([(1, rtt), (2, rtt)]), _probes({1: (0, 0), 2: (0, 45)}))
    assert loc.table.column("dst_anycast").to_pylist() == [None]


def test_unknown_destinations_are_named_by_reason():
    t = pa.table({"msm_id": [1, 1, 1], "prb_id": [1, 1, 1], "timestamp": [0, 1, 2],
                  "dst_addr": ["10.0.0.1", "not-an-ip", "8.8.8.8"], "dst_rtt_ms": [1.0, None, 5.0]})
    loc = locate_destinations(t, None)  # no reference data at all
    rows = {r["dst_addr"]: (r["dst_country"], r["dst_country_via"], r["unknown_reason"]) for r in loc.table.to_pylist()}
    assert rows == {"10.0.0.1": (None, "unknown", "not-public"), "not-an-ip": (None, "unknown", "invalid-address"),
                    "8.8.8.8": (None, "unknown", "no-source")}
    assert loc.counts["unknown:no-source"] == 1 and loc.counts["via:unknown"] == 3


# Real US places (degrees, rounded to 0.01): the distance bound must never exceed the
# distance to any of them, and must be 0 at each of them.
US_PLACES = {
    "New York": (40.71, -74.01), "Los Angeles": (34.05, -118.24), "Miami": (25.76, -80.19),
    "Seattle": (47.61, -122.33), "Key West": (24.56, -81.78), "Anchorage": (61.22, -149.90),
    "Utqiagvik": (71.29, -156.79), "Attu": (52.93, 172.93), "Honolulu": (21.31, -157.86),
    "San Juan": (18.47, -66.11), "Hagatna": (13.48, 144.75), "Pago Pago": (-14.28, -170.70),
}


def test_us_distance_bound_is_zero_at_us_places_and_never_above_the_true_distance():
    g = load_country_geometry()
    lat = np.array([p[0] for p in US_PLACES.values()])
    lon = np.array([p[1] for p in US_PLACES.values()])
    assert np.all(country_distance_km(lat, lon, g) == 0.0)
    glat, glon = np.meshgrid(np.arange(-80, 81, 5.0), np.arange(-180, 180, 5.0), indexing="ij")
    bound = country_distance_km(glat.ravel(), glon.ravel(), g)
    for la, lo in US_PLACES.values():
        true = 2 * R * np.arcsin(np.sqrt(np.sin(np.radians(la - glat.ravel()) / 2) ** 2 + np.cos(np.radians(glat.ravel()))
                                          * np.cos(np.radians(la)) * np.sin(np.radians(lo - glon.ravel()) / 2) ** 2))
        assert np.all(bound <= true + 1e-6)
    # Dubai is far from every part of the US: Guam (the nearest, ~7,900 km by hand) is > 7,000 km away
    assert country_distance_km(np.array([25.2]), np.array([55.3]), g)[0] > 7000


def test_a_country_without_geometry_is_a_clear_error():
    with pytest.raises(MissingReferenceData, match="no geometry for country 'FR'"):
        country_distance_km(np.array([0.0]), np.array([0.0]), load_country_geometry(), country="FR")


@pytest.mark.parametrize(
    "cc, anycast, probe, rtt, want",
    [
        ("US", None, (25.2, 55.3), 0.8, "faster-than-light-to-country"),  # Dubai, 80 km budget
        ("US", True, (25.2, 55.3), 0.8, "anycast-local-instance"),
        ("US", True, (25.2, 55.3), 250.0, "anycast-rtt-compatible"),  # 24,983 km: anywhere on Earth
        ("US", None, (25.2, 55.3), 250.0, "in-country"),
        ("US", False, (40.71, -74.01), 0.3, "in-country"),  # New York: distance 0
        ("DE", None, (40.71, -74.01), 90.0, "located-elsewhere"),
        (None, None, (40.71, -74.01), 90.0, "unknown-location"),
        ("US", None, None, 90.0, "probe-unlocated"),
        ("US", None, (40.71, -74.01), None, "not-reached"),
    ],
)
def test_scope_reasons(cc, anycast, probe, rtt, want):
    rtts = pa.table({"msm_id": [1], "prb_id": [5], "timestamp": [0], "dst_addr": ["192.0.2.1"],
                     "dst_rtt_ms": pa.array([rtt], pa.float64())})
    d = pa.table({"dst_addr": ["192.0.2.1"], "dst_country": pa.array([cc], pa.string()),
                  "dst_country_via": ["ip2country"], "dst_anycast": pa.array([anycast], pa.bool_())})
    probes = pa.table({"prb_id": [5], "latitude": pa.array([probe and probe[0]], pa.float64()),
                       "longitude": pa.array([probe and probe[1]], pa.float64())})
    s = toward_country(rtts, d, probes)
    assert s.table.column("scope_reason").to_pylist() == [want]
    assert s.table.column("in_scope").to_pylist() == [want in ("in-country", "anycast-rtt-compatible")]
    assert s.counts[want] == 1 and s.counts["traceroutes"] == 1


# ------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def ip2country_snapshot(test_data, tmp_path_factory):
    d = test_data / "ip2asn" / "iptoasn"
    return import_files("ip2country", [d / "2024-11-07_ip2country-v4.tsv.gz"], snapshot_id="d",
                        cache_dir=tmp_path_factory.mktemp("dst-cache"))


@pytest.fixture(scope="module")
def wikipedia_bundle(test_data):
    """87 real 2013 traceroutes to wikipedia-lb.esams (Amsterdam) with the 2016 probe listing."""
    b = json.loads((test_data / "ripe-atlas" / "pierky-ripe-atlas-monitor-fixtures" / "1033154.json").read_bytes())
    parsed = parse_lines([json.dumps(r).encode() for r in b["results"]])
    objs = b["probes"]["results"]
    probes = pa.table({
        "prb_id": [o["id"] for o in objs],
        "latitude": [o["geometry"]["coordinates"][1] for o in objs],
        "longitude": [o["geometry"]["coordinates"][0] for o in objs],
        "is_anchor": [bool(o["is_anchor"]) for o in objs],
        "address_v4": [o.get("address_v4") for o in objs],
        "address_v6": [o.get("address_v6") for o in objs],
        "country_code": [o.get("country_code") for o in objs],
    })
    return destination_rtts(parsed.hops), probes


def test_real_wikipedia_traces_stale_probe_location_is_named_as_the_anycast_evidence(wikipedia_bundle, ip2country_snapshot):
    rtts, probes = wikipedia_bundle
    # by hand from the raw JSON: probe 3161 (UvA, Amsterdam) reached 91.198.174.225 in 2.399 ms; probe 4484
    # (listed in Addis Ababa in 2016; its 2013 results come from 212.64.45.129) in 24.654 ms.
    loc = locate_destinations(rtts, probes, ip2country_snapshot)
    row = loc.table.to_pylist()[0]
    assert row["dst_addr"] == "91.198.174.225" and row["min_rtt_ms"] == 2.399
    assert (row["dst_country"], row["dst_country_via"]) == ("US", "ip2country")  # the registrant's country
    assert row["dst_anycast"] is True and "probes 3161 and 4484" in row["anycast_evidence"]
    # without the probe whose listing is three years newer than its results: no anycast proof
    fresh = probes.filter(pc.not_equal(probes["prb_id"], 4484))
    loc2 = locate_destinations(rtts, fresh, ip2country_snapshot)
    assert loc2.table.column("dst_anycast").to_pylist() != [True]
    # either way, Amsterdam at 2.4 ms is not traffic toward the US
    s = toward_country(rtts, loc2, fresh)
    r3161 = s.table.filter(pc.equal(s.table["prb_id"], 3161)).column("scope_reason").to_pylist()
    assert r3161 and set(r3161) == {"faster-than-light-to-country"}


@pytest.mark.slow
def test_real_menog_destinations_are_all_accounted_for(test_data, ip2country_snapshot):
    lines = lzma.open(test_data / "ripe-atlas" / "traceroutes" / "menog_traceroutes_full.ndjson.xz").read().splitlines()
    rtts = destination_rtts(parse_lines(lines).hops)
    assert rtts.num_rows == 97_982  # SOURCES.md
    loc = locate_destinations(rtts, None, ip2country_snapshot)
    t = loc.table
    assert t.num_rows == 167  # SOURCES.md: 167 destinations
    # no silent ZZ: every destination has a country or a named reason
    assert all((c is not None) != (r is not None)
               for c, r in zip(t.column("dst_country").to_pylist(), t.column("unknown_reason").to_pylist(), strict=True))
    assert "ZZ" not in t.column("dst_country").to_pylist()
    assert sum(v for k, v in loc.counts.items() if k.startswith("via:")) == 167
    # no probe metadata for the MENOG probes in the data set: nothing may be called anycast
    assert t.column("dst_anycast").null_count == 167
    us = t.filter(pc.equal(t["dst_country"], "US")).column("dst_addr").to_pylist()
    assert us == ["208.43.64.151"]
    s = toward_country(rtts, loc, None)
    us_rows = s.table.filter(pc.equal(s.table["dst_addr"], "208.43.64.151"))
    reached = us_rows.filter(pc.is_valid(us_rows["dst_rtt_ms"]))
    assert set(reached.column("scope_reason").to_pylist()) == {"probe-unlocated"}
    assert s.counts["in_scope"] == 0
