"""analysis.paths: AS/IXP paths, crossings, verdicts, RTT jumps, detours, node ids.

Expected values are worked out by hand from the fixtures below; distances come from
published great-circle figures, not from the code under test.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from analysis import paths as P
from analysis.campaign_io import analyze_campaign
from analysis.errors import SchemaMismatch
from analysis.geo import KM_PER_MS_RTT, haversine_km, location_verdict
from tests.analysis._snap import shared_snapshot
from tests.analysis.fixtures.annotated import build, ixp, priv, probes, pub

NYC = (40.7128, -74.0060)
FRA = (50.1109, 8.6821)
ASHBURN = ("pdb:1", "Equinix Ashburn", "Ashburn", "US", 39.0438, -77.4874)
LAX = ("pdb:2", "Any2West", "Los Angeles", "US", 34.0522, -118.2437)
SEA = ("pdb:3", "SIX Seattle", "Seattle", "US", 47.6062, -122.3321)
CT, CU = "china-telecom", "china-unicom"

PROBES = probes([(2002, 7922, "US", *NYC), (1001, 3320, "DE", *FRA)])


def _run(traces, probe_table=PROBES, **kw):
    hops, tr = build(traces)
    table, drops = P.build_paths(hops, tr, probe_table, **kw)
    rows = {(r["msm_id"], r["prb_id"]): r for r in table.to_pylist()}
    return table, rows, drops


# ------------------------------------------------------------------------- geo (oracle: atlases)
def test_haversine_matches_published_distances():
    # JFK-LAX great circle 3,983 km; London-Paris 344 km (standard published figures).
    assert haversine_km(40.6413, -73.7781, 33.9416, -118.4085) == pytest.approx(3983, rel=0.005)
    assert haversine_km(51.5074, -0.1278, 48.8566, 2.3522) == pytest.approx(344, rel=0.01)


def test_speed_of_light_bound_is_100km_per_ms():
    # (1 ms / 2) * (2/3) * 299792.458 km/s = 99.93 km
    assert KM_PER_MS_RTT == pytest.approx(99.9308, abs=1e-3)
    assert location_verdict([999.0, 1000.0], [10.0, 10.0]).tolist() == [0, 1]


# ------------------------------------------------------------------------- node ids
def test_node_ids_round_trip_and_reject_garbage():
    assert P.parse_node(P.as_node(4134)) == ("as", 4134)
    assert P.parse_node(P.ixp_node("caida:12")) == ("ixp", "caida:12")
    for bad in ("4134", "AS", "ASx1", "IXP:", "as|0"):
        with pytest.raises(ValueError):
            P.parse_node(bad)
    with pytest.raises(ValueError):
        P.ixp_node("")


# ------------------------------------------------------------------------- positive cases
def test_crossing_at_us_ixp_with_consistent_location():
    _, rows, drops = _run([
        dict(msm_id=1, prb_id=2002, dst_addr="8.8.8.8", reached=True, hops=[
            [priv("192.168.1.1", 1.0)] * 3,
            [pub("68.86.1.1", 5.0, 7922, country="US")],
            [None, None, None],                                   # timeout inside AS7922
            [pub("68.86.2.2", 8.0, 7922, country="US")],
            [ixp("206.126.236.50", 6.2, *ASHBURN, 4134, family=CT),
             ixp("206.126.236.50", 6.0, *ASHBURN, 4134, family=CT)],
            [pub("202.97.1.1", 7.0, 4134, family=CT, country="CN")],
            [pub("8.8.8.8", 9.0, 15169, country="US")],
        ]),
    ])
    r = rows[(1, 2002)]
    # private hop and timeout make no node; the AS7922 gap is bridged; IXP then member.
    assert r["as_path"] == ["AS7922", "IXP:pdb:1", "AS4134", "AS15169"]
    assert r["loop"] is False
    assert r["transits_flagged"] is True and r["flagged_families"] == [CT]
    assert r["probe_asn"] == 7922 and r["probe_country"] == "US"
    assert r["dst_asn"] == 15169 and r["dst_country"] == "US" and r["destination_reached"]
    (c,) = r["pop_crossings"]
    assert (c["family"], c["asn"], c["from_asn"], c["hop"]) == (CT, 4134, 7922, 5)
    assert (c["kind"], c["ixp_id"], c["ixp_city"], c["ixp_country"]) == ("ixp", "pdb:1", "Ashburn", "US")
    assert c["evidence"] == "ixp-lan-member-interface"
    # min RTT over the replies from that address: 6.0 ms -> at most 599.6 km.
    assert c["min_rtt"] == 6.0 and c["max_distance_km"] == pytest.approx(599.6, abs=0.1)
    # New York - Ashburn is about 350 km (< 599.6): consistent.
    assert c["distance_km"] == pytest.approx(350, abs=15)
    assert c["verdict"] == "consistent"
    assert drops["non-public-hop"] == 1


def test_crossing_too_far_for_its_rtt_is_inconsistent():
    _, rows, _ = _run([
        dict(msm_id=2, prb_id=2002, dst_addr="1.1.1.1", hops=[
            [pub("68.86.1.1", 2.0, 7922)],
            # an LA IXP address answering in 10 ms from New York: 10 ms allows 999 km,
            # New York - Los Angeles is about 3,940 km.
            [ixp("206.72.210.219", 10.0, *LAX, 58453, family="china-mobile")],
            [pub("223.120.1.1", 11.0, 58453, family="china-mobile")],
        ]),
    ])
    (c,) = rows[(2, 2002)]["pop_crossings"]
    assert c["ixp_city"] == "Los Angeles" and c["family"] == "china-mobile"
    assert c["distance_km"] == pytest.approx(3940, rel=0.01)
    assert c["verdict"] == "inconsistent"


def test_crossing_after_ixp_address_of_unknown_member():
    _, rows, _ = _run([
        dict(msm_id=3, prb_id=2002, dst_addr="1.0.0.1", hops=[
            [pub("68.86.1.1", 2.0, 7922)],
            [ixp("206.81.80.40", 75.0, *SEA, None)],          # member not known
            [pub("219.158.1.1", 80.0, 4837, family=CU, country="CN")],
        ]),
    ])
    r = rows[(3, 2002)]
    assert r["as_path"] == ["AS7922", "IXP:pdb:3", "AS4837"]
    (c,) = r["pop_crossings"]
    assert c["evidence"] == "follows-ixp-lan-address"
    assert (c["ixp_id"], c["hop"], c["asn"], c["from_asn"]) == ("pdb:3", 3, 4837, 7922)
    # the located hop is the IXP address: 75 ms, NYC-Seattle ~3,870 km < 7,495 km.
    assert c["min_rtt"] == 75.0 and c["verdict"] == "consistent"


def test_private_interconnect_and_detour_through_china():
    _, rows, _ = _run([
        dict(msm_id=4, prb_id=1001, dst_addr="8.8.4.4", reached=True, hops=[
            [pub("80.1.1.1", 2.0, 3320, country="DE")],
            [pub("202.97.2.2", 250.0, 4134, family=CT, country="CN")],
            [pub("8.8.4.4", 300.0, 15169, country="US")],
        ]),
        # same path shape but the flagged hop answers in 20 ms: 1,999 km cannot reach
        # Beijing/Shanghai/Guangzhou from Frankfurt (>= 7,700 km), so not a detour.
        dict(msm_id=5, prb_id=1001, dst_addr="8.8.4.4", reached=True, hops=[
            [pub("80.1.1.1", 2.0, 3320, country="DE")],
            [pub("202.97.3.3", 20.0, 4134, family=CT, country="CN")],
            [pub("8.8.4.4", 90.0, 15169, country="US")],
        ]),
    ])
    far, near = rows[(4, 1001)], rows[(5, 1001)]
    (c,) = far["pop_crossings"]
    assert (c["kind"], c["evidence"], c["verdict"]) == ("private interconnect", "direct-adjacency", "unknown")
    assert c["ixp_id"] is None and c["from_asn"] == 3320
    assert far["detour"] is True and far["detour_hops"] == [2]
    assert near["detour"] is False and near["detour_hops"] == []
    assert near["transits_flagged"] is True
    # RTT jumps >= 40 ms: 2 -> 250 and 250 -> 300 (50 ms); in the near trace 20 -> 90.
    assert [(j["from_hop"], j["to_hop"], j["delta_ms"]) for j in far["rtt_jumps"]] == [(1, 2, 248.0), (2, 3, 50.0)]
    assert [(j["from_hop"], j["to_hop"]) for j in near["rtt_jumps"]] == [(2, 3)]


def test_entry_after_unresponsive_hop_is_of_unknown_kind():
    _, rows, _ = _run([
        dict(msm_id=14, prb_id=1001, dst_addr="8.8.8.8", hops=[
            [pub("80.1.1.1", 2.0, 3320)], [None, None, None],      # maybe the IXP address
            [pub("202.97.2.2", 90.0, 4134, family=CT)],
        ]),
        # an IXP address two hops before the entry, with a silent hop between: not adjacent
        dict(msm_id=15, prb_id=1001, dst_addr="8.8.8.8", hops=[
            [pub("80.1.1.1", 2.0, 3320)], [ixp("206.81.80.40", 75.0, *SEA, None)], [None],
            [pub("219.158.1.1", 80.0, 4837, family=CU)],
        ]),
        # moving on to a second AS of the same family is not a second entry
        dict(msm_id=16, prb_id=1001, dst_addr="8.8.8.8", hops=[
            [pub("80.1.1.1", 2.0, 3320)], [pub("202.97.2.2", 90.0, 4134, family=CT)],
            [pub("59.43.1.1", 91.0, 4809, family=CT)],
        ]),
    ])
    (c,) = rows[(14, 1001)]["pop_crossings"]
    assert (c["kind"], c["evidence"], c["ixp_id"], c["verdict"]) == ("unknown", "after-unresponsive-hop", None, "unknown")
    (c,) = rows[(15, 1001)]["pop_crossings"]
    assert (c["kind"], c["evidence"], c["hop"]) == ("unknown", "after-unresponsive-hop", 4)
    (c,) = rows[(16, 1001)]["pop_crossings"]
    assert (c["kind"], c["asn"], c["hop"]) == ("private interconnect", 4134, 2)
    assert rows[(16, 1001)]["as_path"] == ["AS3320", "AS4134", "AS4809"]


def test_loop_endpoints_unknown_probe_and_empty_trace():
    _, rows, drops = _run([
        dict(msm_id=6, prb_id=1001, dst_addr="9.9.9.9", hops=[
            [pub("80.1.1.1", 2.0, 3320)], [pub("62.115.1.1", 5.0, 1299)], [pub("80.1.1.9", 6.0, 3320)],
        ]),
        # destination inside AS4134: reaching it is not transit
        dict(msm_id=7, prb_id=1001, dst_addr="202.97.9.9", reached=True, hops=[
            [pub("80.1.1.1", 2.0, 3320)], [pub("202.97.9.9", 200.0, 4134, family=CT, country="CN")],
        ]),
        # probe 4242 has no metadata: crossing verdict unknown, detour unknown
        dict(msm_id=8, prb_id=4242, dst_addr="8.8.8.8", hops=[
            [pub("5.5.5.5", 2.0, 6830)],
            [ixp("206.126.236.50", 6.0, *ASHBURN, 4134, family=CT)],
        ]),
        dict(msm_id=9, prb_id=1001, dst_addr="8.8.8.8", hops=[]),
    ])
    assert rows[(6, 1001)]["as_path"] == ["AS3320", "AS1299", "AS3320"] and rows[(6, 1001)]["loop"]
    assert rows[(7, 1001)]["transits_flagged"] is False and rows[(7, 1001)]["pop_crossings"] == []
    u = rows[(8, 4242)]
    assert u["probe_asn"] is None and u["pop_crossings"][0]["verdict"] == "unknown"
    assert u["detour"] is None
    assert rows[(9, 1001)]["as_path"] == [] and rows[(9, 1001)]["responsive_hops"] == 0
    hops, tr = build([dict(msm_id=7, prb_id=1001, dst_addr="202.97.9.9", hops=[
        [pub("80.1.1.1", 2.0, 3320)], [pub("202.97.9.9", 200.0, 4134, family=CT, country="CN")]])])
    with_ends, _ = P.build_paths(hops, tr, PROBES, include_endpoints=True)
    assert with_ends.column("transits_flagged").to_pylist() == [True]


def test_registry_overrides_annotation_and_unresolved_hops_make_no_node():
    traces = [dict(msm_id=10, prb_id=1001, dst_addr="8.8.8.8", hops=[
        [pub("80.1.1.1", 2.0, 3320)],
        [pub("203.0.113.77", 3.0, None)],                      # public but unresolved
        [pub("64.1.1.1", 4.0, 64500, family=None)],
    ])]
    _, rows, drops = _run(traces, registry={64500: "test-family"})
    r = rows[(10, 1001)]
    assert r["as_path"] == ["AS3320", "AS64500"]
    assert r["flagged_families"] == ["test-family"] and r["unresolved_hops"] == 1
    assert drops["unresolved-public-hop"] == 1


def test_late_and_duplicate_replies_are_ignored_and_counted():
    hops, tr = build([dict(msm_id=11, prb_id=1001, dst_addr="8.8.8.8", hops=[
        [pub("80.1.1.1", 2.0, 3320)],
        [dict(pub("202.97.1.1", 1.0, 4134, family=CT), late=True), pub("64.1.1.1", 9.0, 64500)],
    ])])
    table, drops = P.build_paths(hops, tr, PROBES)
    assert table.column("as_path").to_pylist() == [["AS3320", "AS64500"]]
    assert table.column("transits_flagged").to_pylist() == [False]
    assert drops["late-or-duplicate-reply"] == 1


def test_hops_without_traceroute_and_duplicate_traces_are_counted():
    hops, tr = build([
        dict(msm_id=12, prb_id=1001, dst_addr="8.8.8.8", hops=[[pub("80.1.1.1", 2.0, 3320)]]),
        dict(msm_id=13, prb_id=1001, dst_addr="8.8.8.8", hops=[[pub("80.1.1.1", 2.0, 3320)]] * 2),
    ])
    tr = pa.concat_tables([tr.filter(pa.array([True, False])), tr.slice(0, 1)])
    table, drops = P.build_paths(hops, tr, PROBES)
    assert table.num_rows == 1
    assert drops == {"hop-without-traceroute": 2, "duplicate-trace": 1}


def test_facility_search_locates_private_interconnects():
    # AS4134 is at New York, Ashburn, Los Angeles and Frankfurt; AS7922 (crossed from) at
    # New York and Ashburn; AS3320 at Frankfurt only.
    fac = pa.table({
        "asn": [4134, 4134, 4134, 4134, 7922, 7922, 3320],
        "city": ["New York", "Ashburn", "Los Angeles", "Frankfurt", "New York", "Ashburn", "Frankfurt"],
        "country": ["US", "US", "US", "DE", "US", "US", "DE"],
        "lat": [40.7506, 39.0438, 34.0522, 50.1109, 40.7506, 39.0438, 50.1109],
        "lon": [-73.9971, -77.4874, -118.2437, 8.6821, -73.9971, -77.4874, 8.6821],
    })

    def trace(msm, prb, first_asn, rtt, country=None):
        return dict(msm_id=msm, prb_id=prb, dst_addr="8.8.8.8", hops=[
            [pub("10.0.0.1" if prb == 2002 else "80.1.1.1", 1.0, first_asn)],
            [pub("202.97.1.1", rtt, 4134, family=CT, country=country)]])

    _, rows, _ = _run([
        trace(20, 2002, 7922, 3.0),    # <= 300 km from New York: New York only (shared)
        trace(21, 2002, 7922, 8.0),    # <= 800 km: New York and Ashburn -> US, no city
        trace(22, 2002, 7922, 100.0),  # shared facilities are all in the US whatever the RTT
        trace(23, 1001, 3320, 1.0),    # Frankfurt probe, <= 100 km: Frankfurt (shared)
        # AS6830 has no facility listed: the entered carrier's own PoPs inside the disc
        trace(24, 1001, 6830, 1.0),    # Frankfurt only
        trace(26, 2002, 6830, 8.0),    # New York and Ashburn -> US, no city
        trace(27, 2002, 6830, 100.0),  # New York to Frankfurt (6,200 km) in reach: US or DE, not located
        # registered in China: its home backbone cities (missing from its facility list) count:
        # 130 ms from New York reaches Beijing (11,000 km) as well as Los Angeles
        trace(28, 2002, 6830, 130.0, country="CN"),
        trace(29, 2002, 6830, 50.0, country="CN"),  # 5,000 km: only the US PoPs -> US
    ], facilities=fac)

    def loc(key):
        (c,) = rows[key]["pop_crossings"]
        return c["pop_city"], c["pop_country"], c["location_evidence"], c["verdict"]

    assert loc((20, 2002)) == ("New York", "US", "netfac-shared", "consistent")
    assert loc((21, 2002)) == (None, "US", "netfac-shared", "consistent")
    assert loc((22, 2002)) == (None, "US", "netfac-shared", "consistent")
    assert loc((23, 1001)) == ("Frankfurt", "DE", "netfac-shared", "consistent")
    assert loc((24, 1001)) == ("Frankfurt", "DE", "carrier-pops", "consistent")
    assert loc((26, 2002)) == (None, "US", "carrier-pops", "consistent")
    assert loc((27, 2002)) == (None, None, None, "unknown")
    assert loc((28, 2002)) == (None, None, None, "unknown")
    assert loc((29, 2002)) == (None, "US", "carrier-pops", "consistent")
    # the place's confidence: the evidence's weight, less with one probe's disc alone
    conf = {k[0]: r["pop_crossings"][0]["location_confidence"] for k, r in rows.items()}
    assert conf[20] == pytest.approx(P.LOCATION_WEIGHTS["netfac-shared"] * P.ONE_DISC_FACTOR)
    assert conf[24] == pytest.approx(P.LOCATION_WEIGHTS["carrier-pops"] * P.ONE_DISC_FACTOR)
    assert conf[24] < conf[20] and conf[27] is None and conf[28] is None  # no place, no confidence
    assert haversine_km(NYC[0], NYC[1], 39.9042, 116.4074) < 130 * KM_PER_MS_RTT  # Beijing in reach of 28
    # an IXP crossing keeps the IXP as its PoP
    _, rows, _ = _run([dict(msm_id=25, prb_id=2002, dst_addr="8.8.8.8", hops=[
        [pub("10.0.0.1", 1.0, 7922)], [ixp("206.126.236.50", 6.0, *ASHBURN, 4134, family=CT)]])],
        facilities=fac)
    (c,) = rows[(25, 2002)]["pop_crossings"]
    assert (c["pop_city"], c["pop_country"], c["location_evidence"]) == ("Ashburn", "US", "ixp")
    assert c["location_confidence"] == P.LOCATION_WEIGHTS["ixp"]


def test_facility_search_intersects_the_discs_of_every_probe_that_saw_the_router():
    """CBG-style: a far probe's disc alone leaves the US and Frankfurt; a second probe that
    saw the same router at 1 ms from Frankfurt pins it there; a disc that excludes every
    candidate (a misplaced probe) leaves the crossing unlocated, never wrongly located."""
    fac = pa.table({"asn": [4134, 4134, 7922, 7922], "city": ["New York", "Frankfurt", "New York", "Frankfurt"],
                    "country": ["US", "DE", "US", "DE"], "lat": [40.7506, 50.1109, 40.7506, 50.1109],
                    "lon": [-73.9971, 8.6821, -73.9971, 8.6821]})
    t = [dict(msm_id=30, prb_id=2002, dst_addr="8.8.8.8", hops=[
        [pub("10.0.0.1", 1.0, 7922)], [pub("202.97.1.1", 100.0, 4134, family=CT)]])]
    _, rows, _ = _run(t, facilities=fac)
    assert rows[(30, 2002)]["pop_crossings"][0]["pop_country"] is None  # New York or Frankfurt

    def discs(*rows_):
        return pa.table({"addr": [r[0] for r in rows_], "lat": [r[1] for r in rows_],
                         "lon": [r[2] for r in rows_], "rtt": [r[3] for r in rows_]})

    nyc_far = ("202.97.1.1", NYC[0], NYC[1], 100.0)
    _, rows, _ = _run(t, facilities=fac, discs=discs(nyc_far, ("202.97.1.1", FRA[0], FRA[1], 1.0)))
    c = rows[(30, 2002)]["pop_crossings"][0]
    assert (c["pop_city"], c["pop_country"], c["location_evidence"]) == ("Frankfurt", "DE", "netfac-shared+rtt-discs")
    # the far end of the private interconnect (the hop before) is in the same facility: its discs count too
    _, rows, _ = _run(t, facilities=fac, discs=discs(nyc_far, ("10.0.0.1", NYC[0], NYC[1], 2.0)))
    c = rows[(30, 2002)]["pop_crossings"][0]
    assert (c["pop_city"], c["pop_country"]) == ("New York", "US")
    # a probe whose disc contains no candidate (Tokyo, 1 ms): nothing kept, nothing located
    _, rows, _ = _run(t, facilities=fac, discs=discs(nyc_far, ("202.97.1.1", 35.68, 139.69, 1.0)))
    c = rows[(30, 2002)]["pop_crossings"][0]
    assert (c["pop_city"], c["pop_country"], c["location_evidence"]) == (None, None, None)


def test_rtt_floor_rules_out_a_place_near_probes_that_saw_the_router_late():
    """Octant's negative constraint: two probes beside Frankfurt (Amsterdam, Paris; access
    RTT 2 ms) saw the router at 75 ms. Their discs keep New York and Frankfurt, but a router
    in Frankfurt answers them within 2 + 3 x (~4-5 ms of fibre) + 15 ms: Frankfurt is out,
    New York stays. One late probe is not enough; a probe whose access RTT is unknown adds
    nothing; and a floor that would rule out every facility city in reach (a tromboned path)
    is not used at all."""
    ams, par = (52.37, 4.90), (48.86, 2.35)
    both = pa.table({"asn": [4134, 4134, 7922, 7922], "city": ["New York", "Frankfurt", "New York", "Frankfurt"],
                     "country": ["US", "DE", "US", "DE"], "lat": [40.7506, 50.1109, 40.7506, 50.1109],
                     "lon": [-73.9971, 8.6821, -73.9971, 8.6821]})
    t = [dict(msm_id=31, prb_id=2002, dst_addr="8.8.8.8", hops=[
        [pub("10.0.0.1", 1.0, 7922)], [pub("202.97.1.1", 75.0, 4134, family=CT)]])]

    def discs(*bases):
        return pa.table({"addr": ["202.97.1.1"] * 2, "lat": [ams[0], par[0]], "lon": [ams[1], par[1]],
                         "rtt": [75.0, 75.0], "base": pa.array(list(bases), pa.float64())})

    for here in (ams, par):  # both discs reach New York and Frankfurt; the floor is far below 75 ms
        assert haversine_km(*here, *NYC) < 75.0 * KM_PER_MS_RTT
        assert 2.0 + P.FLOOR_STRETCH * haversine_km(*here, *FRA) / KM_PER_MS_RTT + P.FLOOR_SLACK_MS < 40.0
        assert 2.0 + P.FLOOR_STRETCH * haversine_km(*here, *NYC) / KM_PER_MS_RTT + P.FLOOR_SLACK_MS > 75.0

    def loc(fac, d):
        _, rows, _ = _run(t, facilities=fac, discs=d)
        c = rows[(31, 2002)]["pop_crossings"][0]
        return c["pop_city"], c["pop_country"], c["location_evidence"]

    assert loc(both, discs(2.0, 2.0)) == ("New York", "US", "netfac-shared+rtt-discs+rtt-floor")
    assert loc(both, discs(2.0, None)) == (None, None, "netfac-shared+rtt-discs")  # one probe's floor
    assert loc(both, discs(2.0, 70.0)) == (None, None, "netfac-shared+rtt-discs")  # Paris is slow itself
    # Frankfurt alone is listed: the floor would leave no facility city, so it is not used
    fra_only = both.filter(pa.compute.equal(both.column("city"), "Frankfurt"))
    assert loc(fra_only, discs(2.0, 2.0)) == ("Frankfurt", "DE", "netfac-shared+rtt-discs")


def test_misplaced_probes_are_the_ones_whose_discs_miss_the_others():
    """Two probes whose discs for one address are disjoint cannot both be where they say.
    A probe published in Paris but seeing two Frankfurt routers at 1 ms, as the Frankfurt
    probes do, conflicts with each of them and goes first; the correctly placed probes then
    agree. A lone conflicting pair loses both (nothing says which is wrong); overlapping
    discs, a single disc, one probe seeing an address twice, and an address whose conflicts
    share no probe (anycast) prove nothing."""
    fra2 = (50.05, 8.6)
    paris = (48.86, 2.35)
    assert haversine_km(*paris, *FRA) > 2 * KM_PER_MS_RTT + P.MISPLACED_SLACK_KM  # disjoint at 1 ms each
    rows = [("a", 1, *FRA, 1.0), ("a", 2, *fra2, 1.0), ("a", 9, *paris, 1.0),
            ("b", 1, *FRA, 1.0), ("b", 3, *fra2, 1.5), ("b", 9, *paris, 0.9),
            ("c", 4, *NYC, 20.0), ("c", 5, *FRA, 20.0),  # 2,000 km discs 6,200 km apart
            ("d", 6, *NYC, 3.0), ("d", 7, 40.0, -75.0, 3.0),  # overlapping
            ("e", 8, *NYC, 1.0)]

    def table(rs):
        return pa.table({"addr": [r[0] for r in rs], "prb_id": [r[1] for r in rs], "lat": [r[2] for r in rs],
                         "lon": [r[3] for r in rs], "rtt": [r[4] for r in rs]})

    assert P.misplaced_probes(table(rows[:6])) == [9]
    assert P.misplaced_probes(table(rows)) == [4, 5, 9]
    assert P.misplaced_probes(table(rows[8:])) == []
    assert P.misplaced_probes(table([("f", 1, *FRA, 1.0), ("f", 1, *NYC, 1.0)])) == []
    # an anycast address: two probes in New York and two in Frankfurt, each 1 ms from it --
    # four conflicts with no probe in common prove nothing about the probes
    anycast = [("g", 11, *NYC, 1.0), ("g", 12, 40.75, -73.99, 1.0), ("g", 13, *FRA, 1.0), ("g", 14, *fra2, 1.0)]
    assert P.misplaced_probes(table(anycast)) == []
    assert P.misplaced_probes(table(anycast + rows[:6])) == [9]


def test_facility_search_falls_back_to_the_far_side_when_the_carrier_lacks_the_facility():
    """The entered AS lists only Frankfurt (its New York presence missing from PeeringDB):
    nothing of it fits a 3 ms disc around New York, so the crossing is placed where the AS
    crossed from is present inside the disc; never where the far side is not unanimous, and
    never for a lone reply the traceroute does not go on from inside the family (the shape
    of a third-party address, whose AS need not be there at all)."""
    fac = pa.table({"asn": [4134, 7922, 7922], "city": ["Frankfurt", "New York", "Ashburn"],
                    "country": ["DE", "US", "US"], "lat": [50.1109, 40.7506, 39.0438],
                    "lon": [8.6821, -73.9971, -77.4874]})

    def trace(msm, rtt, then=True):
        more = [[pub("202.97.1.2", rtt + 1, 4134, family=CT)]] if then else []
        return dict(msm_id=msm, prb_id=2002, dst_addr="8.8.8.8", hops=[
            [pub("10.0.0.1", 1.0, 7922)], [pub("202.97.1.1", rtt, 4134, family=CT)], *more])

    _, rows, _ = _run([trace(40, 3.0), trace(41, 8.0), trace(42, 100.0), trace(43, 3.0, then=False)],
                      facilities=fac)
    got = {k[0]: (r["pop_crossings"][0]["pop_city"], r["pop_crossings"][0]["pop_country"],
                  r["pop_crossings"][0]["location_evidence"]) for k, r in rows.items()}
    assert haversine_km(NYC[0], NYC[1], 39.0438, -77.4874) > 300  # Ashburn outside the 3 ms disc
    assert got[40] == ("New York", "US", "netfac-far-side")
    assert got[41] == (None, "US", "netfac-far-side")  # New York and Ashburn, both US
    # 100 ms reaches Frankfurt, the carrier's only listed PoP, but also New York and Ashburn,
    # where other networks list facilities: the carrier's list may miss its PoP there, so not
    # even the country is known
    assert got[42] == (None, None, None)
    assert got[43] == (None, None, None)  # the path ends at the entry: not placed by the far side


def test_facility_cities_locate_when_neither_as_lists_a_place_in_reach():
    """Neither the carrier nor the AS crossed from lists a facility inside the discs (both
    lists miss the interconnect), but interconnects sit in facility cities: when two
    probes' discs keep only the facility cities of other networks in one city, that is
    where the router is, a lone entry hop too (the discs place the router that answered);
    never from one disc alone."""
    fac = pa.table({"asn": [4134, 7922, 6939, 3320], "city": ["Frankfurt", "Ashburn", "New York", "Frankfurt"],
                    "country": ["DE", "US", "US", "DE"], "lat": [50.1109, 39.0438, 40.7506, 50.1109],
                    "lon": [8.6821, -77.4874, -73.9971, 8.6821]})

    def trace(msm, then=True):
        more = [[pub("202.97.1.2", 4.0, 4134, family=CT)]] if then else []
        return dict(msm_id=msm, prb_id=2002, dst_addr="8.8.8.8", hops=[
            [pub("10.0.0.1", 1.0, 7922)], [pub("202.97.1.1", 3.0, 4134, family=CT)], *more])

    # the probe's own disc (3 ms from New York) keeps New York only; a second probe 1 ms
    # from New York agrees
    assert haversine_km(NYC[0], NYC[1], 39.0438, -77.4874) > 3.0 * KM_PER_MS_RTT  # Ashburn out of reach
    near = pa.table({"addr": ["202.97.1.1"] * 2, "lat": [NYC[0], 40.73], "lon": [NYC[1], -73.93], "rtt": [3.0, 1.0]})
    got = {}
    for key, t, d in (("two-discs", trace(70), near), ("one-disc", trace(71), None),
                      ("lone-entry", trace(72, then=False), near)):
        _, rows, _ = _run([t], facilities=fac, discs=d)
        c = next(iter(rows.values()))["pop_crossings"][0]
        got[key] = (c["pop_city"], c["pop_country"], c["location_evidence"])
    assert got == {"two-discs": ("New York", "US", "facility-cities+rtt-discs"),
                   "one-disc": (None, None, None), "lone-entry": ("New York", "US", "facility-cities+rtt-discs")}


def test_entry_after_a_silent_hop_is_placed_by_every_probe_that_saw_the_router():
    """After a silent hop (kind ``unknown``) the entering router is placed as for a private
    interconnect: its own traceroute's 50 ms disc around New York keeps New York and
    Ashburn; a second probe that saw the same router at 1 ms from New York keeps New York
    only. The hop before (silent) adds nothing."""
    fac = pa.table({"asn": [4134, 4134, 7922, 7922], "city": ["New York", "Ashburn", "New York", "Ashburn"],
                    "country": ["US", "US", "US", "US"], "lat": [40.7506, 39.0438, 40.7506, 39.0438],
                    "lon": [-73.9971, -77.4874, -73.9971, -77.4874]})
    trace = dict(msm_id=90, prb_id=2002, dst_addr="8.8.8.8", hops=[
        [pub("80.1.1.1", 0.5, 7922)], [None], [pub("202.97.1.1", 5.0, 4134, family=CT)],
        [pub("202.97.1.2", 6.0, 4134, family=CT)]])
    assert haversine_km(NYC[0], NYC[1], 39.0438, -77.4874) < 5.0 * KM_PER_MS_RTT  # Ashburn in the own disc
    got = {}
    for key, d in (("own-disc", None),
                   ("two-discs", pa.table({"addr": ["202.97.1.1"] * 2, "lat": [NYC[0], 40.73],
                                           "lon": [NYC[1], -73.93], "rtt": [5.0, 1.0]}))):
        _, rows, _ = _run([trace], facilities=fac, discs=d)
        (c,) = rows[(90, 2002)]["pop_crossings"]
        got[key] = (c["kind"], c["pop_city"], c["pop_country"], c["location_evidence"])
    assert got == {"own-disc": ("unknown", None, "US", "netfac-shared"),
                   "two-discs": ("unknown", "New York", "US", "netfac-shared+rtt-discs")}
    assert c["location_confidence"] == P.LOCATION_WEIGHTS["netfac-shared"]  # two discs: the full weight


@pytest.mark.parametrize(
    ("fac_cities", "router", "want"),
    [
        # nothing listed in reach: the router's place, which the 6 ms disc keeps
        pytest.param([], ("Newark", "US", 40.7357, -74.1724), ("Newark", "US", "ipmap"), id="only-ipmap"),
        # the shared facility says New York, so does IPmap: confirmed
        pytest.param(["New York"], ("New York", "US", 40.7128, -74.0060),
                     ("New York", "US", "netfac-shared+ipmap"), id="agrees"),
        # the shared facility says New York, IPmap Newark: two places, the country only
        pytest.param(["New York"], ("Newark", "US", 40.7357, -74.1724),
                     (None, "US", "netfac-shared+ipmap-conflict"), id="conflict"),
        # the shared facility says New York (US), IPmap Montreal (CA, 530 km, inside the
        # 6 ms disc): neither country is given
        pytest.param(["New York"], ("Montreal", "CA", 45.5019, -73.5674),
                     (None, None, "netfac-shared+ipmap-conflict"), id="country-conflict"),
        # IPmap's Frankfurt is outside the 6 ms disc around New York: never given
        pytest.param([], ("Frankfurt", "DE", *FRA), (None, None, None), id="excluded-by-the-disc"),
    ],
)
def test_router_locations_place_an_entering_address(fac_cities, router, want):
    cities = {"New York": (40.7506, -73.9971)}
    fac = pa.table({"asn": [a for c in fac_cities for a in (4134, 7922)],
                    "city": [c for c in fac_cities for _ in (0, 1)], "country": ["US"] * 2 * len(fac_cities),
                    "lat": [cities[c][0] for c in fac_cities for _ in (0, 1)],
                    "lon": [cities[c][1] for c in fac_cities for _ in (0, 1)]},
                   schema=pa.schema([("asn", pa.int64()), ("city", pa.string()), ("country", pa.string()),
                                     ("lat", pa.float64()), ("lon", pa.float64())]))
    routers = pa.table({"ip": ["202.97.1.1", "202.97.9.9"], "city": [router[0], "Tokyo"],
                        "cc": [router[1], "JP"], "lat": [router[2], 35.68], "lon": [router[3], 139.69]})
    assert haversine_km(NYC[0], NYC[1], 45.5019, -73.5674) < 6.0 * KM_PER_MS_RTT
    trace = dict(msm_id=95, prb_id=2002, dst_addr="8.8.8.8", hops=[
        [pub("80.1.1.1", 0.5, 7922)], [pub("202.97.1.1", 6.0, 4134, family=CT)]])
    _, rows, _ = _run([trace], facilities=fac, routers=routers)
    (c,) = rows[(95, 2002)]["pop_crossings"]
    assert (c["pop_city"], c["pop_country"], c["location_evidence"]) == want
    if want[2] == "netfac-shared+ipmap":  # two sources agreeing are surer than either
        assert c["location_confidence"] > P.LOCATION_WEIGHTS["netfac-shared"] * P.ONE_DISC_FACTOR


HKG = (22.3193, 114.1694)


@pytest.mark.parametrize(
    ("from_country", "from_guangzhou", "want"),
    [
        pytest.param("JP", False, ("Hong Kong", "HK", "netfac-shared"), id="foreign-network-meets-it-in-hong-kong"),
        pytest.param("HK", False, (None, None, "netfac-shared"), id="sar-network-may-backhaul-to-guangzhou"),
        pytest.param("CN", False, (None, None, "netfac-shared"), id="mainland-network-too"),
        pytest.param(None, False, (None, None, "netfac-shared"), id="unknown-registration-counts-as-home"),
        pytest.param("JP", True, (None, None, "netfac-shared"), id="foreign-network-listed-in-guangzhou"),
    ],
)
def test_home_backbone_cities_against_a_shared_facility(from_country, from_guangzhou, want):
    """China Telecom and the AS crossed from both list Hong Kong; a 5 ms disc around Hong
    Kong also holds Guangzhou (130 km), one of the carrier's home backbone cities that its
    facility list misses. A network registered outside China and its SARs meets the carrier
    where both list a facility; a Chinese or SAR network (or one of unknown registration)
    may meet it across the border, and so may any network that lists Guangzhou itself."""
    gz = next(p for p in P.CHINA_REFERENCE_POINTS if p[0] == "Guangzhou")
    assert haversine_km(HKG[0], HKG[1], gz[1], gz[2]) < 5.0 * KM_PER_MS_RTT
    rows_fac = [(4134, "Hong Kong", "HK", *HKG), (64546, "Hong Kong", "HK", *HKG)]
    if from_guangzhou:
        rows_fac.append((64546, "Guangzhou", "CN", gz[1], gz[2]))
    fac = pa.table(dict(zip(("asn", "city", "country", "lat", "lon"), map(list, zip(*rows_fac, strict=True)),
                            strict=True)))
    trace = dict(msm_id=80, prb_id=3003, dst_addr="8.8.8.8", hops=[
        [pub("80.1.1.1", 0.5, 64546, country=from_country)],
        [pub("202.97.1.1", 5.0, 4134, family=CT, country="CN")]])
    _, rows, _ = _run([trace], probe_table=probes([(3003, 64546, "HK", *HKG)]), facilities=fac)
    (c,) = rows[(80, 3003)]["pop_crossings"]
    assert (c["pop_city"], c["pop_country"], c["location_evidence"]) == want


def test_carrier_pops_city_withheld_when_another_facility_city_is_in_reach():
    """No shared facility: the carrier's own PoP decides, unless another network lists a
    facility inside the same disc but not in that city -- the carrier's list may miss its
    PoP there (or the crossed-from AS's list the interconnect's facility), so only what
    every place in reach shares is given."""
    fac = pa.table({"asn": [4134, 6939, 3320], "city": ["New York", "Philadelphia", "Frankfurt"],
                    "country": ["US", "US", "DE"], "lat": [40.7506, 39.9526, 50.1109],
                    "lon": [-73.9971, -75.1652, 8.6821]})

    def trace(msm, from_asn, rtt=2.0):
        return dict(msm_id=msm, prb_id=2002, dst_addr="8.8.8.8", hops=[
            [pub("80.1.1.1", 0.5, from_asn)], [pub("202.97.1.1", rtt, 4134, family=CT)]])

    philly = haversine_km(NYC[0], NYC[1], 39.9526, -75.1652)
    assert 1.0 * KM_PER_MS_RTT < philly < 2.0 * KM_PER_MS_RTT  # in reach at 2 ms, not at 1 ms
    _, rows, _ = _run([trace(60, 6939), trace(61, 3320), trace(62, 3320, rtt=1.0)], facilities=fac)
    got = {k[0]: (r["pop_crossings"][0]["pop_city"], r["pop_crossings"][0]["pop_country"],
                  r["pop_crossings"][0]["location_evidence"]) for k, r in rows.items()}
    assert got[60] == (None, "US", "carrier-pops")  # the AS crossed from is in Philadelphia
    assert got[61] == (None, "US", "carrier-pops")  # another network is there
    assert got[62] == ("New York", "US", "carrier-pops")  # nothing but New York in reach


def test_facility_search_keeps_only_candidates_inside_the_destination_ellipse():
    """The router is on the forward path to a unicast destination of known place, so probe ->
    router -> destination -> probe fits in the destination's RTT *of the same traceroute*."""
    fac = pa.table({"asn": [4134, 4134, 7922, 7922], "city": ["New York", "Frankfurt", "New York", "Frankfurt"],
                    "country": ["US", "DE", "US", "DE"], "lat": [40.7506, 50.1109, 40.7506, 50.1109],
                    "lon": [-73.9971, 8.6821, -73.9971, 8.6821]})
    dst = pa.table({"dst_addr": ["9.9.9.9"], "dst_asn": pa.array([19281], pa.int64()), "dst_country": ["US"],
                    "dst_lat": [39.0438], "dst_lon": [-77.4874]})  # Ashburn

    def trace(msm, dst_rtt):
        last = [[pub("9.9.9.9", dst_rtt, 19281, country="US")]] if dst_rtt is not None else []
        return dict(msm_id=msm, prb_id=2002, dst_addr="9.9.9.9", hops=[
            [pub("10.0.0.1", 1.0, 7922)], [pub("202.97.1.1", 100.0, 4134, family=CT)], *last])

    ts = [trace(50, 8.0), trace(51, None), trace(52, 150.0)]
    _, rows, _ = _run(ts, facilities=fac, destinations=dst)
    got = {k[0]: (r["pop_crossings"][0]["pop_city"], r["pop_crossings"][0]["pop_country"],
                  r["pop_crossings"][0]["location_evidence"]) for k, r in rows.items()}
    ny_ash = haversine_km(NYC[0], NYC[1], 39.0438, -77.4874)
    assert 2 * ny_ash <= 2 * 8.0 * KM_PER_MS_RTT - ny_ash  # New York inside the 8 ms ellipse
    assert got[50] == ("New York", "US", "netfac-shared+dst-ellipse")
    assert got[51] == (None, None, "netfac-shared")  # destination silent here: no ellipse
    assert got[52] == (None, None, "netfac-shared+dst-ellipse")  # 150 ms reaches Frankfurt too
    # without the destination's place there is no ellipse
    _, rows, _ = _run(ts[:1], facilities=fac, destinations=dst.drop_columns(["dst_lat", "dst_lon"]))
    assert rows[(50, 2002)]["pop_crossings"][0]["pop_country"] is None


def test_destinations_table_fills_unreached_destinations():
    hops, tr = build([
        dict(msm_id=17, prb_id=1001, dst_addr="8.8.8.8", hops=[[pub("80.1.1.1", 2.0, 3320)]]),
        dict(msm_id=18, prb_id=1001, dst_addr="9.9.9.9", reached=True, hops=[
            [pub("80.1.1.1", 2.0, 3320)], [pub("9.9.9.9", 9.0, 19281, country="US")]]),
    ])
    dst = pa.table({"dst_addr": ["8.8.8.8", "9.9.9.9"], "dst_asn": pa.array([15169, None], pa.int64()),
                    "dst_country": ["US", None]})
    table, _ = P.build_paths(hops, tr, PROBES, destinations=dst)
    got = {r["msm_id"]: (r["dst_asn"], r["dst_country"]) for r in table.to_pylist()}
    # 8.8.8.8 never answered: from the table; 9.9.9.9 unknown there: from its reply
    assert got == {17: (15169, "US"), 18: (19281, "US")}
    plain, _ = P.build_paths(hops, tr, PROBES)
    assert plain.column("dst_asn").to_pylist() == [None, 19281]


def test_missing_columns_raise_schema_mismatch():
    hops, tr = build([dict(msm_id=1, prb_id=1, dst_addr="8.8.8.8", hops=[[pub("1.1.1.1", 1.0, 1)]])])
    with pytest.raises(SchemaMismatch, match="member_asn"):
        P.build_paths(hops.drop_columns(["member_asn"]), tr, PROBES)
    with pytest.raises(SchemaMismatch, match="dst_addr"):
        P.build_paths(hops, tr.drop_columns(["dst_addr"]), PROBES)


def test_output_schema_and_node_attributes():
    hops, tr = build([dict(msm_id=1, prb_id=2002, dst_addr="8.8.8.8", hops=[
        [pub("68.86.1.1", 5.0, 7922, country="US", org="Comcast")],
        [ixp("206.126.236.50", 6.0, *ASHBURN, 4134, family=CT)],
        [pub("202.97.1.1", 7.0, 4134, family=CT, country="CN", org="China Telecom")],
    ])])
    table, _ = P.build_paths(hops, tr, PROBES)
    assert table.schema == P.PATHS_SCHEMA
    nodes = {r["node"]: r for r in P.node_attributes(hops).to_pylist()}
    assert set(nodes) == {"AS7922", "AS4134", "IXP:pdb:1"}
    assert nodes["AS4134"]["family"] == CT and nodes["AS4134"]["org"] == "China Telecom"
    assert nodes["IXP:pdb:1"]["city"] == "Ashburn" and nodes["IXP:pdb:1"]["country"] == "US"


def test_node_attributes_ties_go_to_the_first_value_whatever_the_row_order():
    """The most frequent value per node; a tie (an AS seen as often in two countries) goes to the
    alphabetically first, in any row order and split into any number of parts (DuckDB's own
    mode() picks among ties by the order its threads meet the rows)."""
    import random

    rows = []
    for asn, spec in ((64500, {"DE": 3, "AT": 3, "CH": 1}), (64501, {"NL": 2, "BE": 5}), (64502, {"FR": 4})):
        for cc, k in spec.items():
            rows += [dict(asn=asn, ixp_id=None, member_asn=None, family=None, org=f"org{asn}", as_country=cc,
                          ixp_name=None, ixp_city=None, ixp_country=None, ip_class="public")] * k
    rows += [dict(asn=None, ixp_id="pdb:9", member_asn=64500, family=None, org=None, as_country=None,
                  ixp_name=name, ixp_city="Paris", ixp_country="FR", ip_class="public") for name in ("B-IX", "A-IX")]
    want = {"AS64500": "AT", "AS64501": "BE", "AS64502": "FR"}  # by hand: counts, then the first of a tie
    rng = random.Random(7)
    for _ in range(12):
        rng.shuffle(rows)
        table = pa.Table.from_pylist(rows * 5000)  # enough rows for DuckDB to use several threads
        for parts in (1, 7):
            cuts = [i * len(table) // parts for i in range(parts + 1)]
            split = pa.concat_tables(table.slice(a, b - a) for a, b in zip(cuts, cuts[1:], strict=False))
            assert split.num_rows == table.num_rows
            nodes = {r["node"]: r for r in P.node_attributes(split).to_pylist()}
            assert {n: nodes[n]["country"] for n in want} == want
            assert nodes["IXP:pdb:9"]["name"] == "A-IX" and nodes["AS64500"]["org"] == "org64500"


def test_a_reassigned_hop_takes_its_owners_family_whatever_the_row_order():
    """A hop the ownership stage gives to another AS takes the family the annotation gave that
    AS elsewhere (the alphabetically first where its rows disagree), none when the AS is seen
    only without a family, and the default registry's when the table never saw the AS."""
    import random

    def trace(msm, hop2, last="203.0.113.50"):
        return dict(msm_id=msm, prb_id=2002, dst_addr=last, reached=True, hops=[
            [pub("192.0.2.1", 1.0, 7922)], [hop2], [pub(last, 9.0, 64511)]])

    traces = [
        trace(1, pub("198.51.100.1", 5.0, 64500)),  # -> 64510: seen as zz-fam and as aa-fam
        trace(2, pub("198.51.100.2", 5.0, 64510, family="zz-fam")),
        trace(3, pub("198.51.100.3", 5.0, 64510, family="aa-fam")),
        trace(4, pub("198.51.100.4", 5.0, 64501)),  # -> 4134: not in the table, the registry's
        trace(5, pub("198.51.100.5", 5.0, 64502)),  # -> 64520: in the table without a family
        trace(6, pub("198.51.100.6", 5.0, 64520)),
        trace(7, ixp("198.51.100.7", 5.0, "pdb:1", *ASHBURN[1:], member=64503)),  # member -> 64510
    ]
    hops, tr = build(traces)
    owner = {"198.51.100.1": 64510, "198.51.100.4": 4134, "198.51.100.5": 64520, "198.51.100.7": 64510}
    addrs = hops.column("reply_from").to_pylist()
    hops = hops.append_column("owner_asn", pa.array([owner.get(a) for a in addrs], pa.int64()))
    hops = hops.append_column("owner_via", pa.array(["third-party" if a in owner else None for a in addrs]))
    want = {1: ["aa-fam"], 2: ["zz-fam"], 3: ["aa-fam"], 4: [CT], 5: [], 6: [], 7: ["aa-fam"]}
    rng = random.Random(3)
    for _ in range(6):
        order = list(range(hops.num_rows))
        rng.shuffle(order)
        table, _drops = P.build_paths(hops.take(order), tr, PROBES)
        got = {r["msm_id"]: r["flagged_families"] for r in table.to_pylist()}
        assert got == want


def test_destination_as_from_its_replies_ties_go_to_the_first_value_whatever_the_row_order():
    """A destination missing from the destinations table takes the AS and country of the hops
    replying from it: the most frequent, a tie going to the smallest AS and the alphabetically
    first country, in any row order (DuckDB's mode() picks among ties by the order its threads
    meet the rows). Two annotations of one address happen when tables of two snapshots meet."""
    import random

    dst = "203.0.113.50"
    traces = [dict(msm_id=msm, prb_id=2002, dst_addr=dst, reached=True, hops=[
        [pub("192.0.2.1", 1.0, 7922)],
        [pub(dst, 9.0, asn, country=cc)]]) for msm, (asn, cc) in enumerate([(64512, "DE"), (64511, "AT")] * 1500)]
    traces.append(dict(msm_id=9999, prb_id=2002, dst_addr="198.51.100.9", reached=True, hops=[
        [pub("198.51.100.9", 9.0, 64513, country="FR")]]))  # one annotation only: its own
    hops, tr = build(traces)
    rng = random.Random(11)
    for _ in range(6):
        order = list(range(hops.num_rows))
        rng.shuffle(order)
        table, _drops = P.build_paths(hops.take(order), tr, PROBES)
        got = {(r["dst_asn"], r["dst_country"]) for r in table.to_pylist() if r["msm_id"] != 9999}
        assert got == {(64511, "AT")}  # by hand: 1,500 rows each, then the first of the tie
        assert [(r["dst_asn"], r["dst_country"]) for r in table.to_pylist() if r["msm_id"] == 9999] == [(64513, "FR")]


# ------------------------------------------------------------------------- end to end
# Hand-written Atlas results -> probes.store ingest -> analysis.annotate with a hand-written
# reference snapshot -> analyze_campaign / `pathexp analyze`. Expected values by hand, see
# fixtures/us_ixp/README.md.
US_IXP = __import__("pathlib").Path(__file__).parent / "fixtures" / "us_ixp"


@pytest.fixture()
def us_ixp_campaign(tmp_path):
    import orjson

    from analysis.campaign_io import annotate_campaign
    from analysis.datasets import import_files
    from probes import store
    from probes.workspace import Campaign

    cache = tmp_path / "cache"
    for kind, name in (("pfx2as", "pfx2as.txt"), ("peeringdb", "peeringdb.json"), ("as2org", "as2org.txt")):
        import_files(kind, [US_IXP / name], snapshot_id="fixture-1", cache_dir=cache)
    campaign = Campaign("usixp", tmp_path / "ws")
    report = store.ingest_files(campaign, [US_IXP / "results.ndjson"])
    assert report.added == 4
    store.write_probe_meta(campaign, orjson.loads((US_IXP / "probes.json").read_bytes()))
    annotate_campaign(campaign, snapshot_id="fixture-1", cache_dir=cache)
    return campaign, cache


def test_us_ixp_fixture_through_ingest_annotate_and_analyze(us_ixp_campaign):
    import orjson
    import pyarrow.parquet as pq

    campaign, cache = us_ixp_campaign
    report = analyze_campaign(campaign, n_boot=200, seed=3, cache_dir=cache)
    paths = pq.read_table(campaign.paths_parquet)
    rows = {(r["prb_id"], r["timestamp"].day): r for r in paths.to_pylist()}
    assert len(rows) == 4

    ny1, ny2, fra1, fra2 = rows[(6001, 1)], rows[(6001, 2)], rows[(6002, 1)], rows[(6002, 2)]
    assert ny1["as_path"] == ["AS7922", "IXP:pdb:1", "AS4134", "AS15169"]
    (c,) = ny1["pop_crossings"]
    assert (c["family"], c["asn"], c["from_asn"], c["hop"], c["address"]) == (
        "china-telecom", 4134, 7922, 5, "206.126.236.50")
    assert (c["ixp_name"], c["ixp_city"], c["ixp_country"]) == ("Equinix Ashburn", "Ashburn", "US")
    # min RTT of hop 5 is 5.8 ms -> 579.6 km; New York-Ashburn ~350 km: consistent
    assert c["min_rtt"] == 5.8 and c["verdict"] == "consistent"
    assert ny1["dst_asn"] == 15169 and ny1["dst_country"] == "US" and ny1["destination_reached"]

    assert ny2["as_path"] == ["AS7922", "IXP:pdb:2", "AS58453", "AS15169"]
    (c,) = ny2["pop_crossings"]
    # 12.0 ms -> 1,199 km, but New York-Los Angeles is ~3,940 km: inconsistent
    assert (c["family"], c["ixp_city"], c["min_rtt"], c["verdict"]) == (
        "china-mobile", "Los Angeles", 12.0, "inconsistent")

    assert fra1["as_path"] == ["AS3320", "AS4134", "AS15169"]
    (c,) = fra1["pop_crossings"]
    assert (c["kind"], c["verdict"]) == ("private interconnect", "unknown")
    assert fra1["detour"] is True and fra1["detour_hops"] == [2]
    assert fra2["transits_flagged"] is False and fra2["detour"] is False

    fam = report["families"]
    assert fam["china-telecom"]["path_exposure"]["transiting"] == 2
    assert fam["china-telecom"]["path_exposure"]["estimate"] == 0.5
    assert fam["china-mobile"]["path_exposure"]["estimate"] == 0.25
    assert fam["china-unicom"]["path_exposure"]["estimate"] == 0.0
    assert fam["any"]["path_exposure"]["estimate"] == 0.75
    assert fam["china-telecom"]["pop_exposure"]["estimate"] == 0.25  # only the Ashburn crossing
    assert fam["china-mobile"]["pop_exposure"]["estimate"] == 0.0     # LA crossing inconsistent
    assert fam["any"]["path_exposure"]["method"].startswith("cluster bootstrap over prb_id")
    # two probes with two traceroutes each: per-probe weighting changes nothing here
    assert fam["china-telecom"]["path_exposure"]["probe_weighted"]["estimate"] == pytest.approx(0.5)
    # hegemony, 2 viewpoints (AS7922, AS3320), nothing trimmed: AS4134 is on 1 of 2 paths of
    # each -> (0.5 + 0.5) / 2; AS58453 on 1 of 2 of AS7922's only -> (0.5 + 0) / 2
    assert fam["china-telecom"]["hegemony"] == {"node": "AS4134", "hegemony": 0.5, "viewpoints": 2}
    assert fam["china-mobile"]["hegemony"] == {"node": "AS58453", "hegemony": 0.25, "viewpoints": 2}
    assert fam["china-unicom"]["hegemony"]["node"] is None
    assert report["snapshot"] == "fixture-1"
    assert report["destinations"] == "annotated with snapshot fixture-1, then replying hops"
    assert report["detours"] == 1 and report["ixp_crossing_traceroutes"] == 2

    on_disk = orjson.loads(campaign.exposure_json.read_bytes())
    assert on_disk["families"]["china-telecom"]["path_exposure"]["estimate"] == 0.5
    pops = {(r["family"], r["kind"], r["pop_city"]): (r["traceroutes"], r["consistent"], r["inconsistent"], r["unknown"])
            for r in pq.read_table(campaign.exposure_table("pops")).to_pylist()}
    assert pops == {
        ("china-telecom", "ixp", "Ashburn"): (1, 1, 0, 0),
        ("china-mobile", "ixp", "Los Angeles"): (1, 0, 1, 0),
        ("china-telecom", "private interconnect", None): (1, 0, 0, 1),
    }
    for name in ("path_exposure", "pop_exposure", "hegemony", "change_events", "pops"):
        assert campaign.exposure_table(name).is_file()
        assert campaign.exposure_table(name, ".csv").read_text().count("\n") >= 2
    # change events for china-telecom: prb 6001 stops (CT on day 1, not day 2), prb 6002 stops
    ev = pq.read_table(campaign.exposure_table("change_events")).to_pylist()
    assert sorted((e["prb_id"], e["event"]) for e in ev if e["family"] == "china-telecom") == [
        (6001, "stop"), (6002, "stop")]
    import networkx as nx

    g = nx.read_graphml(campaign.as_graph_graphml)
    assert g.edges["IXP:pdb:1", "AS4134"]["traceroutes"] == 1
    assert g.nodes["AS4134"]["family"] == "china-telecom"
    assert g.nodes["IXP:pdb:1"]["city"] == "Ashburn"


def test_pathexp_analyze_cli_prints_table(us_ixp_campaign, capsys):
    from analysis.cli import main

    campaign, cache = us_ixp_campaign
    rc = main(["analyze", "--campaign", campaign.name, "--workspace", str(campaign.workspace),
               "--bootstrap", "100", "--cache-dir", str(cache)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "china-telecom" in out and "50.00%" in out and "25.00%" in out
    assert "Equinix Ashburn" in out and "Los Angeles" in out
    assert campaign.exposure_json.is_file()


def test_pathexp_analyze_without_annotation_is_a_one_line_error(tmp_path, capsys):
    from analysis.cli import main

    rc = main(["analyze", "--campaign", "empty", "--workspace", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "pathexp annotate" in err and err.count("\n") == 1


# ------------------------------------------------------------------------- real negative data
@pytest.mark.slow
def test_real_atlas_data_has_no_flagged_transit_but_has_ixp_crossings(test_data, tmp_path, tmp_path_factory):
    """All real Atlas results in ../shared/data with the real 2020 CAIDA prefix table.

    The probes sit in the Middle East and Africa and an independent scan found no hop in a
    flagged prefix (SOURCES.md, check C), so nothing may be reported as transiting a flagged
    family; IXP crossings, which that scan did find, must show up as IXP nodes.
    """
    import duckdb

    from analysis.campaign_io import annotate_campaign
    from probes import store
    from probes.workspace import Campaign

    snap = shared_snapshot(test_data, tmp_path_factory)  # the real snapshot, built once per session
    campaign = Campaign("real", tmp_path / "ws")
    added = store.ingest_files(campaign, sorted((test_data / "ripe-atlas" / "traceroutes").glob("*"))).added
    assert added > 100_000
    annotate_campaign(campaign, snapshot_id=snap.id, cache_dir=snap.path.parent.parent)
    report = analyze_campaign(campaign, n_boot=100, cache_dir=snap.path.parent.parent, dst_country="any")
    assert report["destinations"].startswith("annotated with snapshot")

    assert report["traceroutes"] == added
    assert report["transiting_any"] == 0 and report["pop_crossings"] == 0 and report["detours"] == 0
    for fam, entry in report["families"].items():
        assert entry["path_exposure"]["transiting"] == 0, fam
        assert entry["path_exposure"]["estimate"] == 0.0, fam
        # 0 of n traceroutes from C probes: the percentile bootstrap collapses to [0, 0];
        # the honest upper bound is Wilson's for 0 of C independent probes, z^2 / (C + z^2)
        n_probes = len({p for p in store.read_traces(campaign, columns=["prb_id"]).column("prb_id").to_pylist()})
        z2 = 1.959963984540054 ** 2
        assert entry["path_exposure"]["ci_low"] == 0.0, fam
        assert entry["path_exposure"]["ci_high"] == pytest.approx(z2 / (n_probes + z2)), fam
    # oracle: traceroutes with any reply on an IXP LAN, straight from the annotated table
    with_ixp_reply = duckdb.sql(
        f"SELECT count(DISTINCT (msm_id, prb_id, timestamp)) FROM read_parquet('{campaign.glob('annotated')}') "
        "WHERE ixp_id IS NOT NULL"
    ).fetchall()[0][0]
    assert with_ixp_reply > 20_000
    # an IXP node is on the path unless the IXP address was not its hop's first reply
    assert 0.97 * with_ixp_reply <= report["ixp_crossing_traceroutes"] <= with_ixp_reply


# ------------------------------------------------------------------------- synthetic ground truth
FLAGGED_ASNS = (4134, 4809, 23764, 4812, 4811, 36678, 4837, 9929, 10099, 9808, 58453, 58807)


def test_synthetic_world_paths_match_ground_truth(tmp_path):
    """The synthetic world (probes.world) through ingest -> annotate -> analyze, against its
    ground truth: families per traceroute, IXP crossings, verdicts, exposure, detours."""
    import duckdb
    import orjson

    from analysis.campaign_io import annotate_campaign
    from analysis.datasets import import_files
    from probes import store
    from probes.workspace import Campaign
    from probes.world import generate_world

    out, cache = tmp_path / "world", tmp_path / "cache"
    generate_world(out, seed=0, size="small")
    for kind in ("pfx2as", "peeringdb", "caida-ixp", "as2org", "rir-delegated"):
        import_files(kind, sorted((out / "reference" / kind).glob("*")), snapshot_id="world", cache_dir=cache)
    campaign = Campaign("world", tmp_path / "ws")
    store.ingest_files(campaign, sorted((out / "atlas" / "results").glob("*.gz")))
    store.write_probe_meta(campaign, orjson.loads((out / "atlas" / "probes.json").read_bytes())["results"])
    annotate_campaign(campaign, snapshot_id="world", cache_dir=cache)
    report = analyze_campaign(campaign, n_boot=200, cache_dir=cache)

    con = duckdb.connect()
    T, paths = out / "truth", campaign.paths_parquet
    key = "t.msm_id = p.msm_id AND t.prb_id = p.prb_id AND t.timestamp = epoch(p.timestamp)"
    n, wrong = con.sql(
        f"SELECT count(*), count(*) FILTER (WHERE list_sort(t.families) <> list_sort(p.flagged_families)) "
        f"FROM '{T}/traces.parquet' t JOIN '{paths}' p ON {key}").fetchall()[0]
    assert (n, wrong) == (7200, 0)
    # every world destination is in the US: a traceroute counts toward the US exactly when its
    # probe reached that destination at least once (an RTT to test the location against)
    assert report["scope"]["country"] == "US"
    assert con.sql(f"""SELECT count(*) FILTER (WHERE p.in_scope <> e.ever)
                       FROM '{T}/traces.parquet' t JOIN '{paths}' p ON {key}
                       JOIN (SELECT prb_id, dst_addr, bool_or(reached) AS ever FROM '{T}/traces.parquet'
                             GROUP BY ALL) e ON e.prb_id = t.prb_id AND e.dst_addr = t.dst_addr""").fetchall()[0][0] == 0
    assert report["traceroutes"] == report["scope"]["traceroutes_in_scope"] < 7200

    for fam, entry in report["families"].items():
        if fam == "any":
            continue
        # the truth's share over the same (in-scope) traceroutes
        share = con.sql(f"SELECT avg(list_contains(t.families, '{fam}')::INT) FROM '{T}/traces.parquet' t "
                        f"JOIN '{paths}' p ON {key} WHERE p.in_scope").fetchall()[0][0]
        e = entry["path_exposure"]
        assert e["estimate"] == pytest.approx(share) and e["ci_low"] <= share <= e["ci_high"], fam

    # every flagged crossing at an IXP whose LAN address answered is found at the right hop,
    # IXP and city, and the world's RTTs obey the speed of light: never inconsistent
    total, found, consistent = con.sql(
        f"""SELECT count(*),
                   count(*) FILTER (WHERE len(list_filter(p.pop_crossings, lambda c:
                       c.hop = f.hop AND c.ixp_id = f.ixp_id AND c.ixp_city = f.city)) > 0),
                   count(*) FILTER (WHERE len(list_filter(p.pop_crossings, lambda c:
                       c.hop = f.hop AND c.verdict = 'consistent')) > 0)
            FROM '{T}/flagged_crossings.parquet' f
            JOIN '{T}/hops.parquet' h ON h.msm_id = f.msm_id AND h.prb_id = f.prb_id
                 AND h.timestamp = f.timestamp AND h.hop = f.hop
            JOIN '{paths}' p ON f.msm_id = p.msm_id AND f.prb_id = p.prb_id AND f.timestamp = epoch(p.timestamp)
            WHERE f.via = 'ixp' AND h.responded"""
    ).fetchall()[0]
    assert total > 300 and found == total and consistent == total

    # PoP exposure is a lower bound with no false alarms: a traceroute we place at a US PoP
    # of F really crosses F at a US PoP
    fp_pop, tp_pop = con.sql(
        f"""SELECT count(*) FILTER (WHERE NOT list_contains(t.families_us, fam) AND ours),
                   count(*) FILTER (WHERE list_contains(t.families_us, fam) AND ours)
            FROM (SELECT t.families_us, fam, len(list_filter(p.pop_crossings, lambda c: c.family = fam
                         AND c.pop_country = 'US' AND c.verdict <> 'inconsistent')) > 0 AS ours
                  FROM '{T}/traces.parquet' t JOIN '{paths}' p ON {key},
                       (SELECT unnest(['china-telecom', 'china-unicom', 'china-mobile']) AS fam)) t"""
    ).fetchall()[0]
    assert fp_pop == 0 and tp_pop > 500
    for fam in ("china-telecom", "china-unicom", "china-mobile"):
        us_pop = con.sql(f"SELECT avg(list_contains(t.families_us, '{fam}')::INT) FROM '{T}/traces.parquet' t "
                         f"JOIN '{paths}' p ON {key} WHERE p.in_scope").fetchall()[0][0]
        assert report["families"][fam]["pop_exposure"]["estimate"] <= us_pop

    # detours: traceroutes with a flagged router physically in China and both ends outside it
    flagged = ", ".join(map(str, FLAGGED_ASNS))
    tp, fp, fn = con.sql(
        f"""WITH cn AS (SELECT DISTINCT msm_id, prb_id, timestamp FROM '{T}/hops.parquet'
                        WHERE country = 'CN' AND router_asn IN ({flagged}))
            SELECT count(*) FILTER (WHERE p.detour AND cn.msm_id IS NOT NULL),
                   count(*) FILTER (WHERE p.detour AND cn.msm_id IS NULL),
                   count(*) FILTER (WHERE NOT p.detour AND cn.msm_id IS NOT NULL
                                    AND p.probe_country <> 'CN' AND p.dst_country <> 'CN')
            FROM '{paths}' p LEFT JOIN cn ON cn.msm_id = p.msm_id AND cn.prb_id = p.prb_id
                 AND cn.timestamp = epoch(p.timestamp)"""
    ).fetchall()[0]
    assert tp > 100 and fn == 0
    assert tp / (tp + fp) >= 0.85  # RTT + registry evidence is a heuristic: some false alarms


def test_analyze_campaign_rejects_annotated_parts_without_required_columns(tmp_path):
    import pyarrow.parquet as pq

    from probes.workspace import Campaign

    hops, _ = build([dict(msm_id=1, prb_id=1, dst_addr="8.8.8.8", hops=[[pub("1.1.1.1", 1.0, 1)]])])
    campaign = Campaign("bad", tmp_path)
    campaign.annotated_dir.mkdir(parents=True)
    pq.write_table(hops.drop_columns(["member_asn"]), campaign.annotated_dir / "part-000000.parquet")
    with pytest.raises(SchemaMismatch, match="member_asn"):
        analyze_campaign(campaign)


def test_pathexp_analyze_with_a_user_registry(us_ixp_campaign, tmp_path):
    from analysis.cli import main

    campaign, cache = us_ixp_campaign
    reg = tmp_path / "mine.toml"
    reg.write_text('schema = 1\n\n[[family]]\nid = "arelion"\nname = "Arelion"\n\n'
                   '  [[family.asn]]\n  asn = 1299\n  name = "Twelve99"\n  source = "https://example.org/1299"\n')
    assert main(["analyze", "--campaign", campaign.name, "--workspace", str(campaign.workspace),
                 "--cache-dir", str(cache), "--registry", str(reg), "--bootstrap", "50"]) == 0
    import orjson

    report = orjson.loads(campaign.exposure_json.read_bytes())
    # only the Frankfurt traceroute of day 2 crosses AS1299; the annotation's china-* families
    # are replaced by the user's registry
    assert sorted(report["families"]) == ["any", "arelion"]
    assert report["families"]["arelion"]["path_exposure"]["estimate"] == 0.25


# --- a hop the ownership stage moved takes its owner's attributes --------------------
_HKG = (22.3193, 114.1694)
_FRA = (50.1109, 8.6821)


def _moved(hops: pa.Table, owner: int, addr: str = "203.0.113.7") -> pa.Table:
    from analysis.ownership import apply_owners

    return apply_owners(hops, pa.table({"addr": [addr], "owner_asn": [owner], "owner_via": ["subsequent-as"]}))


@pytest.mark.parametrize("origin_country", ["SG", "CN"])
def test_a_moved_entering_hop_is_searched_as_its_owners_router(origin_country):
    """X answers from AS64500's space (registered in SG or CN) but the ownership stage gave
    it to China Telecom: the crossing into 4134 is searched as 4134's, wherever X's origin
    AS is registered (the origin's country used to decide "an entered AS registered in
    China", so SG dropped the carrier-PoP location)."""
    hops, tr = build([dict(msm_id=1, prb_id=1, dst_addr="8.8.8.8", hops=[
        [pub("192.0.2.1", 1.0, 64501, country="HK")],
        [pub("203.0.113.7", 5.0, 64500, country=origin_country)],
        [pub("202.97.1.1", 6.0, 4134, family="china-telecom", country="CN")],
        [pub("202.97.1.2", 7.0, 4134, family="china-telecom", country="CN")],
        [pub("8.8.8.8", 9.0, 15169, country="US")]])])
    fac = pa.table({"asn": [4134], "city": ["Frankfurt"], "country": ["DE"], "lat": [50.11], "lon": [8.68]})
    t, _ = P.build_paths(_moved(hops, 4134), tr, probes([(1, 64501, "HK", *_HKG)]), facilities=fac)
    c = t.column("pop_crossings")[0].as_py()[0]
    assert (c["asn"], c["hop"]) == (4134, 2)
    assert (c["pop_city"], c["pop_country"]) == ("Guangzhou", "CN")


def test_a_moved_hop_is_in_china_by_its_owners_registry_country():
    """The detour test asks whether a flagged hop's AS is registered in China: for a
    moved hop, the owner AS's country (CN, as the annotation gave it where 4134 answered
    itself), not the origin's (DE)."""
    far = dict(msm_id=1, prb_id=1, dst_addr="8.8.8.8", hops=[
        [pub("80.1.1.1", 1.0, 3320, country="DE")],
        [pub("203.0.113.7", 120.0, 64500, country="DE")],
        [pub("9.9.9.9", 125.0, 15169, country="US")],
        [pub("8.8.8.8", 130.0, 15169, country="US")]])
    own_reply = dict(msm_id=1, prb_id=2, dst_addr="8.8.4.4", hops=[
        [pub("202.97.1.1", 5.0, 4134, family="china-telecom", country="CN")],
        [pub("8.8.4.4", 9.0, 15169, country="US")]])
    pr = probes([(1, 3320, "DE", *_FRA), (2, 3320, "DE", *_FRA)])
    hops, tr = build([far, own_reply])
    t, _ = P.build_paths(_moved(hops, 4134), tr, pr)
    row = next(r for r in t.to_pylist() if r["prb_id"] == 1)
    assert row["flagged_families"] == ["china-telecom"]
    assert row["detour"] is True and row["detour_hops"] == [2]
    # the campaign-wide table gives the same, and without it (an AS the annotation never
    # met) the country is unknown: no detour claimed
    attrs = pa.table({"asn": [4134], "family": ["china-telecom"], "as_country": ["CN"]})
    alone, alone_tr = build([far])
    t2, _ = P.build_paths(_moved(alone, 4134), alone_tr, pr, owner_attributes=attrs)
    assert t2.to_pylist()[0]["detour"] is True
    t3, _ = P.build_paths(_moved(alone, 4134), alone_tr, pr)
    assert t3.to_pylist()[0]["detour"] is False


def test_a_moved_hop_takes_its_family_from_the_campaign_not_from_its_partition():
    """With the campaign-wide owner attributes the family of a moved hop's owner does not
    depend on which other traceroutes share its partition."""
    t_only = dict(msm_id=1, prb_id=1, dst_addr="8.8.8.8", hops=[
        [pub("80.1.1.1", 1.0, 3320, country="DE")],
        [pub("203.0.113.7", 5.0, 64511, country="DE")],
        [pub("8.8.8.8", 9.0, 15169, country="US")]])
    other = dict(msm_id=1, prb_id=2, dst_addr="8.8.4.4", hops=[
        [pub("198.51.100.9", 5.0, 64500, family="china-telecom", country="CN")],
        [pub("8.8.4.4", 9.0, 15169, country="US")]])
    pr = probes([(1, 3320, "DE", *_FRA), (2, 3320, "DE", *_FRA)])
    attrs = pa.table({"asn": [64500], "family": ["china-telecom"], "as_country": ["CN"]})
    seen = []
    for trs in ([t_only], [t_only, other]):
        hops, tr = build(trs)
        for table in (attrs, None):
            t, _ = P.build_paths(_moved(hops, 64500), tr, pr, owner_attributes=table)
            seen.append(next(r for r in t.to_pylist() if r["prb_id"] == 1)["flagged_families"])
    with_table_alone, rows_alone, with_table_both, rows_both = seen
    assert with_table_alone == with_table_both == rows_both == ["china-telecom"]
    assert rows_alone == []  # from its own rows only, it cannot know 64500's family


def test_the_as_crossed_from_is_the_one_before_the_entry_not_the_hop_row_before():
    """A private hop between a US-registered network and China Telecom does not make the
    AS crossed from "unknown" (which would count as home and let a mainland PoP in): the
    crossing is placed as it is without that hop."""
    fac = pa.table({"asn": [4134, 64501], "city": ["Hong Kong", "Hong Kong"], "country": ["HK", "HK"],
                    "lat": [22.32, 22.32], "lon": [114.17, 114.17]})
    got = []
    for private in (False, True):
        hs = [[pub("192.0.2.1", 1.0, 64501, country="US")], *([[priv("10.0.0.1", 2.0)]] if private else []),
              [pub("202.97.1.1", 3.0, 4134, family="china-telecom", country="CN")],
              [pub("202.97.1.2", 4.0, 4134, family="china-telecom", country="CN")],
              [pub("8.8.8.8", 9.0, 15169, country="US")]]
        hops, tr = build([dict(msm_id=1, prb_id=1, dst_addr="8.8.8.8", hops=hs)])
        t, _ = P.build_paths(hops, tr, probes([(1, 64509, "HK", *_HKG)]), facilities=fac)
        c = t.column("pop_crossings")[0].as_py()[0]
        got.append((c["from_asn"], c["pop_city"], c["pop_country"]))
    assert got[0] == got[1] == (64501, "Hong Kong", "HK")


def test_paths_do_not_depend_on_the_order_of_the_hop_rows():
    """Hop rows are joined to their traceroute by runs of equal keys and sorted only when
    out of order: rows of traceroutes interleaved, reversed or shuffled give the same paths
    and the same drop counts as rows that come traceroute by traceroute."""
    import numpy as np

    hops, tr = build([
        dict(msm_id=21, prb_id=1001, dst_addr="8.8.8.8", hops=[
            [pub("80.1.1.1", 2.0, 3320)], [pub("202.97.1.1", 9.0, 4134, family=CT)], [pub("64.1.1.1", 20.0, 64500)]]),
        dict(msm_id=22, prb_id=1001, dst_addr="8.8.8.8", hops=[
            [pub("80.1.1.1", 2.5, 3320), pub("80.1.1.2", 2.0, 3320)], [priv("10.0.0.1", 5.0)], [pub("64.1.1.1", 30.0, 64500)]]),
        dict(msm_id=23, prb_id=1001, dst_addr="8.8.8.8", hops=[
            [dict(pub("202.97.1.1", 1.0, 4134, family=CT), late=True), pub("64.1.1.1", 9.0, 64500)]]),
        dict(msm_id=24, prb_id=1001, dst_addr="8.8.8.8", hops=[[pub("80.1.1.1", 2.0, 3320)]]),
    ])
    tr = tr.filter(pa.compute.not_equal(tr.column("msm_id"), 24))  # its hops have no traceroute
    expected, expected_drops = P.build_paths(hops, tr, PROBES)
    assert expected.num_rows == 3 and expected_drops["hop-without-traceroute"] == 1
    assert expected_drops["late-or-duplicate-reply"] == 1
    n = hops.num_rows
    for order in (np.arange(n)[::-1], np.random.default_rng(3).permutation(n),
                  np.argsort(np.arange(n) % 2, kind="stable")):
        table, drops = P.build_paths(hops.take(pa.array(order)), tr, PROBES)
        assert table.equals(expected) and drops == expected_drops


def test_an_owner_as_the_annotation_never_met_takes_the_annotation_registrys_family():
    """The campaign-wide owner attributes: an owner AS met on some address keeps what the
    annotation gave it; one the annotation never met (an owner inferred from adjacency)
    takes its family from the registry annotate used, and no country."""
    import pyarrow as pa

    from analysis.campaign_io import _owner_attribute_table

    addresses = pa.table({"asn": pa.array([7922, 3356, None], pa.int64()),
                          "member_asn": pa.array([None, None, 6939], pa.int64()),
                          "family": pa.array([None, "", "he"], pa.string()),
                          "as_country": pa.array(["US", "US", "US"], pa.string())})
    owners = pa.table({"owner_asn": pa.array([7922, 4134, 6939, None, 4134, 9808], pa.int64())})
    got = _owner_attribute_table(addresses, owners, {4134: "mine-telecom", 7922: "not-used"}).to_pylist()
    assert got == [
        {"asn": 4134, "family": "mine-telecom", "as_country": None},  # never met: the registry's
        {"asn": 6939, "family": "he", "as_country": "US"},  # met as an IXP member
        {"asn": 7922, "family": None, "as_country": "US"},  # met without a family: stays without
        {"asn": 9808, "family": None, "as_country": None},  # never met, in no family
    ]


def test_campaign_attributes_from_address_rows_equal_those_from_every_hop_row(tmp_path):
    """analyze groups the campaign's replies by address and annotation once (``address_rows``)
    and answers the node attributes and the replying destinations' AS and country from those
    rows weighted by their counts. They must equal the per-row answers, also where one address
    was annotated differently in two parts (RDAP online) and where counts tie."""
    import datetime as dt
    import random

    import pyarrow.parquet as pq

    from analysis._hop_scans import address_rows
    from analysis._tables import connect, replying_attributes_sql
    from analysis.campaign_io import (
        _campaign_node_attributes,
        _with_replying_destinations,
    )

    rng = random.Random(5)
    addrs = [f"198.51.100.{i}" for i in range(1, 31)] + [f"2001:db8::{i:x}" for i in range(1, 11)]
    ts = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    parts = []
    for part in range(2):
        rows = []
        for i, addr in enumerate(addrs):
            # one annotation per address and part (as annotate gives), a random number of hop
            # rows each: the counts, not the number of distinct annotations, decide the modes
            on_ixp = i % 7 == 0
            asn = rng.choice([64500, 64501, 64502])
            note = dict(asn=None if on_ixp else asn, member_asn=asn if on_ixp else None,
                        ixp_id="pdb:9" if on_ixp else None, ip_class=rng.choice(["public", "public", "private", None]),
                        family=rng.choice([None, "fam-a", "fam-b"]), as_country=rng.choice([None, "DE", "AT"]),
                        org=rng.choice(["org-x", "org-y"]), ixp_name=rng.choice(["A-IX", "B-IX"]) if on_ixp else None,
                        ixp_city="Paris" if on_ixp else None,
                        ixp_country=rng.choice(["FR", "DE"]) if on_ixp else None)
            for _ in range(rng.choice([1, 1, 2, 9])):
                rows.append(dict(msm_id=rng.randint(1, 3), prb_id=rng.randint(1, 5), timestamp=ts,
                                 hop=rng.randint(1, 30), attempt=rng.randint(1, 3), reply_from=addr, **note))
        rows.append({**rows[0], "reply_from": None, "asn": None, "family": None})  # a timeout
        table = pa.Table.from_pylist(rows)
        pq.write_table(table, tmp_path / f"part-{part}.parquet")
        parts.append(table)
    files = sorted(tmp_path.glob("part-*.parquet"))
    every = pa.concat_tables(parts)
    grouped = address_rows(files, every.column_names)
    assert grouped.num_rows > len(addrs)  # addresses annotated differently in the two parts
    assert sum(grouped.column("n").to_pylist()) == every.num_rows - 2
    key = lambda t: sorted(t.to_pylist(), key=str)  # noqa: E731
    assert key(_campaign_node_attributes(grouped, None)) == key(P.node_attributes(every))
    dst = pa.array(addrs[::3], pa.string())
    con = connect()
    try:
        con.register("a", every)
        con.register("q", pa.table({"dst_addr": dst}))
        want = con.sql(f"SELECT q.dst_addr, h.dst_asn, h.dst_country FROM q LEFT JOIN "
                       f"({replying_attributes_sql('a', 'reply_from IN (SELECT dst_addr FROM q)')}) h "
                       "USING (dst_addr) ORDER BY q.dst_addr").to_arrow_table()
    finally:
        con.close()
    got = _with_replying_destinations(None, dst, grouped)
    assert got.to_pylist() == want.cast(got.schema).to_pylist()
    assert got.column("dst_country").null_count < got.num_rows
