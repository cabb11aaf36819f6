"""Charts draw real artists holding the input data; expected values are worked out by hand."""

from __future__ import annotations

import datetime as dt

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyArrowPatch, Rectangle  # noqa: E402

from analysis import metrics, plots  # noqa: E402
from analysis.errors import SchemaMismatch  # noqa: E402
from analysis.paths import CROSSING_TYPE  # noqa: E402

UTC = dt.timezone.utc


def _ax():
    return Figure(figsize=(6, 4)).add_subplot()


def _crossing(**kw):
    base = {f.name: None for f in CROSSING_TYPE}
    base.update(kw)
    return base


def _paths():
    """Six traceroutes from three probes on two days (hand-built paths table)."""
    d1, d2 = dt.datetime(2026, 3, 1, 6, tzinfo=UTC), dt.datetime(2026, 3, 2, 6, tzinfo=UTC)
    ash = dict(kind="ixp", ixp_id="pdb:1", ixp_name="Equinix Ashburn", ixp_city="Ashburn", ixp_country="US")
    la = dict(kind="ixp", ixp_id="pdb:2", ixp_name="Equinix Los Angeles", ixp_city="Los Angeles",
              ixp_country="US")
    rows = [
        # prb, ts, country, families, crossings
        (1, d1, "DE", ["china-telecom"], [_crossing(family="china-telecom", asn=4134, verdict="consistent",
                                                    min_rtt=5.8, distance_km=350.0, **ash)]),
        (1, d2, "DE", [], []),
        (2, d1, "DE", ["china-mobile"], [_crossing(family="china-mobile", asn=58453, verdict="inconsistent",
                                                   min_rtt=12.0, distance_km=3940.0, **la)]),
        (2, d2, "DE", ["china-telecom"], [
            _crossing(family="china-telecom", asn=4134, verdict="consistent", min_rtt=7.0,
                      distance_km=500.0, **ash),
            _crossing(family="china-telecom", asn=4809, verdict="unknown", **ash),
        ]),
        (3, d1, "US", [], []),
        (3, d2, "US", ["china-telecom"], [_crossing(family="china-telecom", asn=4134, kind="private interconnect",
                                                    verdict="unknown")]),
    ]
    return pa.table({
        "msm_id": pa.array([100] * 6, pa.int64()),
        "prb_id": pa.array([r[0] for r in rows], pa.int64()),
        "timestamp": pa.array([r[1] for r in rows], pa.timestamp("s", tz="UTC")),
        "probe_country": pa.array([r[2] for r in rows], pa.string()),
        "dst_addr": pa.array(["192.0.2.1"] * 6, pa.string()),
        "flagged_families": pa.array([r[3] for r in rows], pa.list_(pa.string())),
        "pop_crossings": pa.array([r[4] for r in rows], pa.list_(CROSSING_TYPE)),
    })


# ------------------------------------------------------------------------------ tables
def test_crossing_table_has_one_row_per_crossing_with_its_traceroute():
    t = plots.crossing_table(_paths())
    assert t.num_rows == 5
    assert t.column("prb_id").to_pylist() == [1, 2, 2, 2, 3]
    assert t.column("asn").to_pylist() == [4134, 58453, 4134, 4809, 4134]
    assert t.column("probe_country").to_pylist() == ["DE", "DE", "DE", "DE", "US"]
    assert {f.name for f in CROSSING_TYPE} <= set(t.column_names)


def test_pop_counts_counts_distinct_traceroutes_per_pop_and_verdict():
    pops = plots.pop_counts(plots.crossing_table(_paths()))
    rows = {r["ixp_id"]: r for r in pops.to_pylist()}
    assert list(rows) == ["pdb:1", "pdb:2"]  # Ashburn first: 2 traceroutes, LA: 1
    ash, la = rows["pdb:1"], rows["pdb:2"]
    # Ashburn: prb 1 day 1, prb 2 day 2 (twice: AS4134 consistent + AS4809 unknown)
    assert (ash["traceroutes"], ash["probes"], ash["crossings"]) == (2, 2, 3)
    assert (ash["consistent"], ash["inconsistent"], ash["unknown"]) == (2, 0, 1)
    assert ash["asns"] == [4134, 4809] and ash["families"] == ["china-telecom"]
    assert (la["traceroutes"], la["inconsistent"], la["ixp_city"]) == (1, 1, "Los Angeles")
    only_mobile = plots.pop_counts(plots.crossing_table(_paths()), family="china-mobile")
    assert only_mobile.column("ixp_id").to_pylist() == ["pdb:2"]
    assert plots.pop_counts(plots.crossing_table(_paths()), country="CN").num_rows == 0


def test_select_crossings_and_flagged_probes():
    cr = plots.crossing_table(_paths())
    assert plots.select_crossings(cr, ixp_id="pdb:1").column("prb_id").to_pylist() == [1, 2, 2]
    assert plots.select_crossings(cr, ixp_id="pdb:1", verdict="unknown").num_rows == 1
    assert plots.flagged_probes(_paths()) == [1, 2, 3]
    assert plots.flagged_probes(_paths(), family="china-mobile") == [2]


def test_pop_locations_marks_ixps_with_flagged_members():
    hops = pa.table({
        "ixp_id": ["pdb:1", "pdb:1", "pdb:9", None],
        "ixp_name": ["Equinix Ashburn", "Equinix Ashburn", "Other IX", None],
        "ixp_city": ["Ashburn", "Ashburn", "Denver", None],
        "ixp_country": ["US", "US", "US", None],
        "ixp_lat": [39.04, 39.04, 39.74, None],
        "ixp_lon": [-77.49, -77.49, -104.99, None],
        "family": ["china-telecom", None, None, "china-telecom"],
    })
    locs = plots.pop_locations(hops).to_pylist()
    assert [(r["ixp_id"], r["flagged"], r["replies"], r["families"]) for r in locs] == [
        ("pdb:1", True, 2, ["china-telecom"]), ("pdb:9", False, 1, [])]
    assert locs[0]["latitude"] == 39.04 and locs[1]["longitude"] == -104.99


def test_missing_columns_raise_schema_mismatch():
    with pytest.raises(SchemaMismatch, match="pop_crossings"):
        plots.crossing_table(pa.table({"prb_id": [1]}))
    with pytest.raises(SchemaMismatch, match="verdict"):
        plots.pop_counts(pa.table({"msm_id": [1]}))
    with pytest.raises(SchemaMismatch, match="latitude"):
        plots.plot_probe_map(pa.table({"prb_id": [1]}), ax=_ax())
    with pytest.raises(ValueError, match="freq"):
        plots.plot_exposure_over_time(_paths(), freq="fortnight", ax=_ax())


# ------------------------------------------------------------------------------ charts
def _bars(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


@pytest.mark.parametrize("long_form", [False, True])
def test_exposure_by_country_bars_and_interval_bars(long_form):
    paths = _paths()
    table = metrics.path_exposure(paths, by="source_country")
    if long_form:  # the shape analyze_campaign writes to exposure/path_exposure.parquet
        table = table.rename_columns(["family", "group", *table.column_names[2:]])
        table = table.add_column(1, "grouping", pa.array(["source_country"] * table.num_rows))
    ax = plots.plot_exposure_by_country(table, family="any", ax=_ax())
    bars = _bars(ax)
    # DE: 3 of 4 traceroutes transit (prb 1 d1, prb 2 d1, prb 2 d2); US: 1 of 2
    assert [round(b.get_height(), 6) for b in bars] == [0.75, 0.5]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["DE", "US"]
    lo, hi = metrics.wilson_interval([3, 1], [4, 2])
    (segments,) = [c for c in ax.collections if c.get_segments() and len(c.get_segments()) == 2]
    ends = sorted((round(s[0][1], 6), round(s[1][1], 6)) for s in segments.get_segments())
    assert ends == sorted(zip(np.round(lo, 6), np.round(hi, 6), strict=True))
    assert ax.get_xlabel() == "source country (probe)"
    assert ax.get_ylabel() == "traceroutes transiting any (%)"
    ax.figure.canvas.draw()  # the shares read as percentages, as in every table
    assert all(t.get_text().endswith("%") for t in ax.get_yticklabels() if t.get_text())


def test_exposure_by_country_respects_top_and_min_traceroutes():
    table = metrics.path_exposure(_paths(), by="source_country")
    assert len(_bars(plots.plot_exposure_by_country(table, top=1, ax=_ax()))) == 1
    assert [t.get_text() for t in plots.plot_exposure_by_country(
        table, min_traceroutes=3, ax=_ax()).get_xticklabels()] == ["DE"]


def test_exposure_over_time_line_band_and_change_events():
    paths = _paths()
    ax = plots.plot_exposure_over_time(paths, freq="day", ax=_ax())
    (line,) = ax.get_lines()
    # day 1: prb 1 and 2 transit, prb 3 not -> 2/3; day 2: prb 2 and 3 -> 2/3
    assert np.allclose(line.get_ydata(), [2 / 3, 2 / 3])
    days = np.asarray(line.get_xdata()).astype("datetime64[D]")
    assert days.tolist() == [dt.date(2026, 3, 1), dt.date(2026, 3, 2)]
    # events per (prb, dst): prb 1 stops, prb 2 none, prb 3 starts, both on day 2
    marks = {c.get_label(): c for c in ax.collections if isinstance(c, PathCollection)}
    assert set(marks) == {"transit starts (1 events)", "transit stops (1 events)"}
    for c in marks.values():
        assert len(c.get_offsets()) == 1
    assert ax.get_xlabel() == "time (UTC, day bins; gaps: no traceroute)"
    assert ax.get_ylabel() == "traceroutes transiting any (%)"


def test_exposure_over_time_shows_a_gap_as_a_gap_and_one_line_per_family():
    """Two days of data nine days apart: the line and band break in between (a NaN point),
    never a straight segment across days without traceroutes."""
    import pyarrow.compute as pc

    paths = _paths()
    shifted = pc.add(paths.column("timestamp"), pa.scalar(dt.timedelta(days=9))).cast(paths.schema.field("timestamp").type)
    late = paths.set_column(paths.column_names.index("timestamp"), paths.schema.field("timestamp"), shifted)
    both = pa.concat_tables([paths, late])
    ax = plots.plot_exposure_over_time(both, freq="day", ax=_ax())
    (line,) = ax.get_lines()
    y = np.asarray(line.get_ydata(), float)
    assert len(y) == 5 and np.isnan(y[2]) and not np.isnan(np.delete(y, 2)).any()
    days = np.asarray(line.get_xdata()).astype("datetime64[D]")
    assert days[[0, 1, 3, 4]].tolist() == [dt.date(2026, 3, 1), dt.date(2026, 3, 2),
                                          dt.date(2026, 3, 10), dt.date(2026, 3, 11)]
    # one series per family beside "any"
    fams = ["china-mobile", "china-telecom"]
    ax = plots.plot_exposure_over_time(both, freq="day", families=fams, ax=_ax())
    assert [ln.get_label() for ln in ax.get_lines()] == ["exposure (any)", *(f"exposure ({f})" for f in fams)]


def test_exposure_over_time_per_family_and_given_events():
    paths = _paths()
    events = metrics.change_events(paths, family="china-telecom")
    ax = plots.plot_exposure_over_time(paths, family="china-telecom", events=events, freq="hour", ax=_ax())
    (line,) = ax.get_lines()
    # hourly bins: the 23 empty hours between the two days are a gap (NaN), not a segment
    assert np.allclose(line.get_ydata(), [1 / 3, np.nan, 2 / 3], equal_nan=True)
    labels = sorted(c.get_label() for c in ax.collections if isinstance(c, PathCollection))
    # china-telecom: prb 1 stops, prb 2 starts, prb 3 starts
    assert labels == ["transit starts (2 events)", "transit stops (1 events)"]


def test_top_pops_bar_lengths_are_traceroutes_and_hatched_inconsistent():
    pops = plots.pop_counts(plots.crossing_table(_paths()))
    ax = plots.plot_top_pops(pops, ax=_ax())
    bars = _bars(ax)
    full = [b for b in bars if not b.get_hatch()]
    hatched = [b for b in bars if b.get_hatch()]
    assert [b.get_width() for b in full] == [2, 1]
    assert [b.get_width() for b in hatched] == [0, 1]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["Equinix Ashburn (Ashburn) [china-telecom]",
                      "Equinix Los Angeles (Los Angeles) [china-mobile]"]
    assert full[0].get_y() > full[1].get_y()  # most crossed on top
    assert ax.get_xlabel() == "traceroutes crossing"
    assert ax.get_ylabel() == "PoP (IXP, city)"


def _graph():
    g = nx.DiGraph()
    g.add_node("AS1", kind="as", traceroutes=10)
    g.add_node("IXP:pdb:1", kind="ixp", name="Equinix Ashburn", traceroutes=4)
    g.add_node("AS4134", kind="as", family="china-telecom", traceroutes=6)
    g.add_node("AS15169", kind="as", traceroutes=10)
    g.add_node("AS99", kind="as", traceroutes=3)  # two hops away from the flagged node
    g.add_edge("AS1", "IXP:pdb:1", traceroutes=4)
    g.add_edge("IXP:pdb:1", "AS4134", traceroutes=4)
    g.add_edge("AS1", "AS4134", traceroutes=2)
    g.add_edge("AS4134", "AS15169", traceroutes=6)
    g.add_edge("AS15169", "AS99", traceroutes=3)
    return g


def test_flagged_graph_draws_entries_and_exits_with_edge_width_by_traceroutes():
    g = _graph()
    g.add_node("AS4809", kind="as", family="china-telecom", org="China Telecom CN2", traceroutes=1)
    g.add_edge("AS4134", "AS4809", traceroutes=1)  # between flagged ASes: an arc
    ax = plots.plot_flagged_graph(g, ax=_ax())
    pts = {c.get_label(): c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)}
    # entering AS4134: AS1 and the IXP (left); leaving: AS15169 (right); AS99 is not adjacent
    assert {k: len(v) for k, v in pts.items()} == {"china-telecom": 2, "IXP": 1, "other AS": 2}
    assert sorted(x for x, _ in pts["other AS"]) == [0.0, 2.0] and pts["IXP"][0][0] == 0.0
    assert {x for x, _ in pts["china-telecom"]} == {1.0}
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    drawn = [("IXP:pdb:1", "AS4134"), ("AS1", "AS4134"), ("AS4134", "AS15169"), ("AS4134", "AS4809")]
    assert len(arrows) == len(drawn)  # AS1 -> IXP and AS15169 -> AS99 touch no flagged AS
    expected = sorted(0.5 + 5.0 * g.edges[e]["traceroutes"] / 6 for e in drawn)
    assert sorted(round(a.get_linewidth(), 6) for a in arrows) == [round(w, 6) for w in expected]
    texts = {t.get_text() for t in ax.texts}
    assert {"AS4134", "Equinix Ashburn", "AS1", "AS15169", "AS4809 China Telecom CN2"} <= texts
    assert "AS99" not in texts


def test_flagged_graph_keeps_the_heaviest_neighbours_and_counts_the_rest():
    g = nx.DiGraph()
    g.add_node("AS4134", kind="as", family="china-telecom")
    for i in range(1, 21):
        g.add_edge(f"AS{i}", "AS4134", traceroutes=i)
    ax = plots.plot_flagged_graph(g, top=5, ax=_ax())
    texts = {t.get_text() for t in ax.texts}
    assert {f"AS{i}" for i in range(16, 21)} <= texts and "AS15" not in texts
    assert any(t == f"15 more entry neighbours ({sum(range(1, 16)):,} traceroute-edges) not drawn"
               for t in texts)


def test_flagged_graph_without_flagged_nodes_says_so():
    g = nx.DiGraph([("AS1", "AS2")])
    ax = plots.plot_flagged_graph(g, ax=_ax())
    assert any("no flagged carrier" in t.get_text() for t in ax.texts)
    assert not [p for p in ax.patches if isinstance(p, FancyArrowPatch)]


def test_rtt_vs_distance_points_bound_and_inconsistent_highlight():
    cr = plots.crossing_table(_paths())
    ax = plots.plot_rtt_vs_distance(cr, ax=_ax())
    pts = {c.get_label(): c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)}
    assert np.allclose(sorted(map(tuple, pts["consistent (2)"])), [(350.0, 5.8), (500.0, 7.0)])
    assert np.allclose(pts["inconsistent (1)"], [(3940.0, 12.0)])
    bound = [ln for ln in ax.get_lines() if ln.get_label().startswith("speed-of-light bound")][0]
    x, y = np.asarray(bound.get_xdata()), np.asarray(bound.get_ydata())
    km_per_ms = 299_792.458 * 2 / 3 / 2 / 1000  # light in fibre, half the round trip
    assert np.allclose(y, x / km_per_ms)
    assert x.max() >= 3940.0
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "no distance or RTT, not shown (2)" in legend
    assert "distance" in ax.get_xlabel() and "RTT" in ax.get_ylabel()


def test_probe_map_plots_located_probes_flagged_ones_and_pops():
    probes = pa.table({
        "prb_id": pa.array([1, 2, 3, 4], pa.int64()),
        "latitude": [52.5, 40.7, None, -33.9],
        "longitude": [13.4, -74.0, None, 151.2],
    })
    pops = pa.table({"ixp_name": ["Equinix Ashburn", "Other IX"], "latitude": [39.04, 39.74],
                     "longitude": [-77.49, -104.99], "flagged": [True, False]})
    ax = plots.plot_probe_map(probes, pops, flagged_probes=[2, 3], label_pops=True, ax=_ax())
    pts = {c.get_label(): c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)}
    assert np.allclose(sorted(map(tuple, pts["probes"])), [(13.4, 52.5), (151.2, -33.9)])
    assert np.allclose(pts["probes with flagged transit"], [(-74.0, 40.7)])  # prb 3 has no location
    assert np.allclose(pts["flagged PoPs"], [(-77.49, 39.04)])
    assert np.allclose(pts["other IXPs"], [(-104.99, 39.74)])
    assert ax.get_xlim() == plots.WORLD_EXTENT[:2] and ax.get_ylim() == plots.WORLD_EXTENT[2:]
    texts = {t.get_text() for t in ax.texts}
    assert {"Equinix Ashburn", "New York", "Sydney"} <= texts
    assert ax.get_xlabel() == "longitude (°)" and ax.get_ylabel() == "latitude (°)"
    us = plots.plot_probe_map(probes, pops, extent=plots.US_EXTENT, ax=_ax())
    assert "Sydney" not in {t.get_text() for t in us.texts}


def test_plots_draw_on_the_current_axes_when_none_is_given():
    fig = plt.figure()
    try:
        current = plt.gca()
        assert plots.plot_top_pops(plots.pop_counts(plots.crossing_table(_paths()))) is current
        assert plots.plot_rtt_vs_distance(plots.crossing_table(_paths())) is current
    finally:
        plt.close(fig)


def test_every_chart_returns_the_axes_it_was_given():
    paths, cr = _paths(), plots.crossing_table(_paths())
    probes = pa.table({"prb_id": [1], "latitude": [1.0], "longitude": [2.0]})
    calls = [
        lambda ax: plots.plot_exposure_by_country(metrics.path_exposure(paths, by="source_country"), ax=ax),
        lambda ax: plots.plot_exposure_over_time(paths, ax=ax),
        lambda ax: plots.plot_top_pops(plots.pop_counts(cr), ax=ax),
        lambda ax: plots.plot_flagged_graph(_graph(), ax=ax),
        lambda ax: plots.plot_rtt_vs_distance(cr, ax=ax),
        lambda ax: plots.plot_probe_map(probes, ax=ax),
    ]
    for call in calls:
        ax = _ax()
        assert call(ax) is ax
        assert ax.has_data() or ax.texts


def test_public_api():
    import inspect

    defined = {n for n, v in vars(plots).items()
               if not n.startswith("_") and inspect.isfunction(v) and v.__module__ == plots.__name__}
    assert defined == {n for n in plots.__all__ if inspect.isfunction(getattr(plots, n))}
    assert {"REFERENCE_CITIES", "WORLD_EXTENT", "US_EXTENT", "VERDICT_COLORS"} <= set(plots.__all__)
    assert all(hasattr(plots, n) for n in plots.__all__)


def test_charts_of_a_campaign_without_flagged_transit_say_so_instead_of_failing():
    paths = _paths()
    none = paths.set_column(paths.column_names.index("flagged_families"), "flagged_families",
                            pa.array([[]] * paths.num_rows, pa.list_(pa.string())))
    none = none.set_column(none.column_names.index("pop_crossings"), "pop_crossings",
                           pa.array([[]] * paths.num_rows, pa.list_(CROSSING_TYPE)))
    cr = plots.crossing_table(none)
    assert cr.num_rows == 0
    pops = plots.pop_counts(cr)
    assert pops.num_rows == 0
    ax = plots.plot_top_pops(pops, ax=_ax())
    assert not _bars(ax) and any("no flagged crossing" in t.get_text() for t in ax.texts)
    assert len(ax.get_xticks()) == 0  # no count axis around nothing (not -0.04..0.04)
    ax = plots.plot_rtt_vs_distance(cr, ax=_ax())
    assert not [c for c in ax.collections if isinstance(c, PathCollection)]
    ax = plots.plot_exposure_over_time(none, ax=_ax())
    assert np.allclose(ax.get_lines()[0].get_ydata(), [0.0, 0.0])
    assert not [c for c in ax.collections if isinstance(c, PathCollection)]  # no change events
    empty = metrics.path_exposure(none.slice(0, 0), by="source_country")
    ax = plots.plot_exposure_by_country(empty, ax=_ax())
    assert not _bars(ax) and any("no source country" in t.get_text() for t in ax.texts)
    fig = Figure()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    for draw in (lambda a: plots.plot_top_pops(pops, ax=a), lambda a: plots.plot_rtt_vs_distance(cr, ax=a)):
        draw(fig.add_subplot())
    fig.canvas.draw()  # renders without error


def test_map_places_ixps_without_coordinates_by_city_and_counts_the_rest():
    probes = pa.table({"prb_id": pa.array([1, 2], pa.int64()), "latitude": [52.5, None],
                       "longitude": [13.4, None]})
    pops = pa.table({"ixp_name": ["UAE-IX", "Nowhere-IX", "Equinix Ashburn"],
                     "ixp_city": ["Dubai", "Atlantis", "Ashburn"], "ixp_country": ["AE", "XX", "US"],
                     "latitude": pa.array([None, None, 39.02], pa.float64()),
                     "longitude": pa.array([None, None, -77.46], pa.float64()),
                     "flagged": [False, False, True]})
    places = pa.table({"city": ["Dubai"], "country": ["AE"], "latitude": [25.1], "longitude": [55.2],
                       "facilities": [12]})
    entries = pa.table({"family": ["f", "f", "f", "f"], "kind": ["private interconnect"] * 3 + ["ixp"],
                        "pop_city": ["Guangzhou", None, "Atlantis", "Ashburn"],
                        "pop_country": ["CN", None, "XX", "US"], "traceroutes": [5, 4, 3, 2]})
    pts, unplaced = plots.map_points(probes, pops, entries=entries, places=places, flagged_probes=[1])
    got = {(r["kind"], r["label"]): (r["latitude"], r["longitude"], r["placed_by"]) for r in pts.to_pylist()}
    assert got[("IXP", "UAE-IX")] == (25.1, 55.2, "city")  # the snapshot's facilities
    assert got[("flagged IXP", "Equinix Ashburn")] == (39.02, -77.46, "coordinates")
    assert got[("flagged probe", "1")] == (52.5, 13.4, "coordinates")
    assert got[("PoP", "Guangzhou (f)")][2] == "reference city"
    assert unplaced == {"probes without a location": 1, "IXPs without coordinates or a known city": 1,
                        "private-interconnect PoPs not located in a city": 1,
                        "private-interconnect PoPs in a city of unknown position": 1}
    ax = plots.plot_probe_map(probes, pops, entries=entries, places=places, ax=_ax())
    note = " ".join(t.get_text() for t in ax.texts)
    assert "2 placed by city" in note and "IXPs without coordinates or a known city 1" in note
    pts_drawn = {c.get_label(): c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)}
    assert np.allclose(pts_drawn["other IXPs"], [(55.2, 25.1)])
    assert len(pts_drawn["private-interconnect PoPs"]) == 1
    # coastlines and borders are drawn (basemap's bundled shapes): line collections with many vertices
    lines = [c for c in ax.collections if not isinstance(c, PathCollection)]
    assert sum(len(p.vertices) for c in lines for p in c.get_paths()) > 1000



def test_by_country_panels_line_up_in_one_order():
    path = pa.table({"probe_country": ["DE", "US", "FR"], "exposure": [0.1, 0.3, 0.2],
                     "traceroutes": [5, 9, 7], "ci_low": [0.0] * 3, "ci_high": [0.5] * 3})
    pop = path.set_column(1, "exposure", pa.array([0.3, 0.0, 0.1]))  # another ranking on its own
    order = plots.country_order(path)
    assert order == ["US", "FR", "DE"]
    ticks = []
    for table in (path, pop):
        ax = plots.plot_exposure_by_country(table, order=order, ax=_ax())
        ticks.append([t.get_text() for t in ax.get_xticklabels()])
    assert ticks == [order, order]
    alone = plots.plot_exposure_by_country(pop, ax=_ax())
    assert [t.get_text() for t in alone.get_xticklabels()] == ["DE", "FR", "US"]
