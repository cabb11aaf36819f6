"""Charts of transit exposure, drawn on a matplotlib Axes (networkx-drawing style).

Every ``plot_*`` function takes its table (or graph) first, options keyword-only, draws on
``ax`` (the current Axes when ``ax`` is None) and returns that Axes. None of them saves or
shows a figure: saving belongs to :mod:`analysis.report`, the CLI and notebooks.

* :func:`plot_exposure_by_country` -- path exposure per source country, with interval bars.
* :func:`plot_exposure_over_time` -- exposure per day (or hour) with its interval band and
  the transit start/stop change events marked.
* :func:`plot_top_pops` -- flagged PoPs (IXP, city) by traceroutes crossing into a flagged
  carrier there, with the speed-of-light-inconsistent share hatched.
* :func:`plot_flagged_graph` -- the AS/IXP graph around flagged nodes, edge width by
  traceroutes.
* :func:`plot_rtt_vs_distance` -- minimum RTT against probe-to-PoP distance per crossing,
  with the speed-of-light bound; inconsistent location claims highlighted.
* :func:`plot_probe_map` -- probes, IXPs and PoPs on a map with coastlines and borders
  (basemap's bundled shapes: offline, no tile server), placed by coordinates or city.

The tables behind the charts come from :func:`crossing_table`, :func:`pop_counts` and
:func:`pop_locations`, pure functions over the paths / annotated-hop tables.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analysis._tables import connect, float_np
from analysis.errors import SchemaMismatch
from analysis.geo import KM_PER_MS_RTT
from analysis.paths import CHINA_REFERENCE_POINTS

if TYPE_CHECKING:
    import networkx as nx
    from matplotlib.axes import Axes

__all__ = [
    "REFERENCE_CITIES",
    "WORLD_EXTENT",
    "US_EXTENT",
    "VERDICT_COLORS",
    "crossing_table",
    "select_crossings",
    "flagged_probes",
    "pop_counts",
    "pop_locations",
    "plot_exposure_by_country",
    "country_order",
    "plot_exposure_over_time",
    "time_bins",
    "plot_top_pops",
    "plot_flagged_graph",
    "plot_rtt_vs_distance",
    "plot_probe_map",
    "map_points",
    "place_table",
]

#: (name, latitude, longitude) of cities drawn as landmarks on :func:`plot_probe_map`.
REFERENCE_CITIES = (
    ("New York", 40.71, -74.01),
    ("Ashburn", 39.04, -77.49),
    ("Chicago", 41.88, -87.63),
    ("Atlanta", 33.75, -84.39),
    ("Miami", 25.76, -80.19),
    ("Dallas", 32.78, -96.80),
    ("Denver", 39.74, -104.99),
    ("Seattle", 47.61, -122.33),
    ("San Jose", 37.34, -121.89),
    ("Los Angeles", 34.05, -118.24),
    ("Toronto", 43.65, -79.38),
    ("Mexico City", 19.43, -99.13),
    ("São Paulo", -23.55, -46.63),
    ("London", 51.51, -0.13),
    ("Amsterdam", 52.37, 4.90),
    ("Frankfurt", 50.11, 8.68),
    ("Moscow", 55.76, 37.62),
    ("Johannesburg", -26.20, 28.05),
    ("Lagos", 6.52, 3.38),
    ("Dubai", 25.20, 55.27),
    ("Mumbai", 19.08, 72.88),
    ("Singapore", 1.35, 103.82),
    ("Hong Kong", 22.32, 114.17),
    ("Beijing", 39.90, 116.41),
    ("Shanghai", 31.23, 121.47),
    ("Tokyo", 35.68, 139.69),
    ("Sydney", -33.87, 151.21),
)

#: (lon_min, lon_max, lat_min, lat_max) of the whole map and of the contiguous US.
WORLD_EXTENT = (-180.0, 180.0, -60.0, 80.0)
US_EXTENT = (-128.0, -64.0, 22.0, 52.0)

#: Colours of the speed-of-light verdicts.
VERDICT_COLORS = {"consistent": "#1f77b4", "inconsistent": "#d62728", "unknown": "#7f7f7f"}

_FLAGGED = "#d62728"
_IXP = "#ff7f0e"
_OTHER = "#9aa5b1"
_CONTEXT = ("msm_id", "prb_id", "timestamp", "probe_asn", "probe_country", "probe_lat",
            "probe_lon", "dst_addr", "dst_asn", "dst_country")  # fmt: skip
_BIN_SECONDS = {"hour": 3600, "day": 86400}


# ---------------------------------------------------------------------------- tables
def crossing_table(paths: pa.Table) -> pa.Table:
    """One row per flagged PoP crossing, with the traceroute it belongs to.

    Parameters
    ----------
    paths : pyarrow.Table
        Paths table (:data:`analysis.paths.PATHS_SCHEMA`); needs ``pop_crossings``; the
        traceroute context columns (``msm_id``, ``prb_id``, ``timestamp``, ``probe_*``,
        ``dst_*``) are copied when present.

    Returns
    -------
    pyarrow.Table
        The context columns, then every field of the crossing struct (``family``, ``asn``,
        ``from_asn``, ``hop``, ``address``, ``kind``, ``ixp_*``, ``evidence``, ``min_rtt``,
        ``distance_km``, ``max_distance_km``, ``verdict``), in path order.

    Examples
    --------
    >>> c = pa.struct([("family", pa.string()), ("verdict", pa.string())])
    >>> t = pa.table({"prb_id": [1, 2], "pop_crossings": pa.array(
    ...     [[{"family": "f", "verdict": "unknown"}, {"family": "g", "verdict": "consistent"}], []],
    ...     pa.list_(c))})
    >>> crossing_table(t).to_pylist()  # doctest: +NORMALIZE_WHITESPACE
    [{'prb_id': 1, 'family': 'f', 'verdict': 'unknown'},
     {'prb_id': 1, 'family': 'g', 'verdict': 'consistent'}]
    """
    if "pop_crossings" not in paths.column_names:
        raise SchemaMismatch("paths table lacks column pop_crossings")
    lists = paths.column("pop_crossings").combine_chunks()
    flat = pc.list_flatten(lists)
    parent = pc.list_parent_indices(lists)
    ctx = [c for c in _CONTEXT if c in paths.column_names]
    out = paths.select(ctx).take(parent) if ctx else pa.table({})
    for i, field in enumerate(flat.type):
        out = out.append_column(field.name, flat.field(i))
    return out


def _legend(ax: Any, **kwargs: Any) -> None:
    """A legend when something on ``ax`` has a label (matplotlib warns about an empty one)."""
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(**kwargs)


def select_crossings(
    crossings: pa.Table,
    *,
    ixp_id: str | None = None,
    family: str | None = None,
    kind: str | None = None,
    verdict: str | None = None,
) -> pa.Table:
    """The rows of a :func:`crossing_table` matching every given field value.

    Examples
    --------
    >>> t = pa.table({"ixp_id": ["pdb:1", "pdb:2", None], "family": ["f", "f", "g"]})
    >>> select_crossings(t, ixp_id="pdb:1").num_rows, select_crossings(t, family="f").num_rows
    (1, 2)
    """
    mask = pa.array(np.ones(crossings.num_rows, bool))
    for name, value in (("ixp_id", ixp_id), ("family", family), ("kind", kind), ("verdict", verdict)):
        if value is None:
            continue
        if name not in crossings.column_names:
            raise SchemaMismatch(f"crossing table lacks column {name}")
        mask = pc.and_(mask, pc.fill_null(pc.equal(crossings.column(name), value), False))
    return crossings.filter(mask)


def flagged_probes(paths: pa.Table, *, family: str | None = None) -> list[int]:
    """Sorted ids of the probes with at least one traceroute transiting ``family`` (any if None).

    Examples
    --------
    >>> t = pa.table({"prb_id": [3, 1, 3], "flagged_families": [["f"], [], ["g"]]})
    >>> flagged_probes(t), flagged_probes(t, family="x")
    ([3], [])
    """
    from analysis.metrics import transit_indicator

    if "prb_id" not in paths.column_names:
        raise SchemaMismatch("paths table lacks column prb_id")
    hit = transit_indicator(paths, family=family)
    ids = paths.column("prb_id").to_numpy(zero_copy_only=False)[hit]
    return sorted(int(i) for i in np.unique(ids))


def pop_counts(
    crossings: pa.Table, *, family: str | None = None, country: str | None = None
) -> pa.Table:
    """Flagged crossings at IXPs, per PoP (IXP, city): traceroutes, probes, verdicts.

    Parameters
    ----------
    crossings : pyarrow.Table
        :func:`crossing_table` output (needs ``msm_id``, ``prb_id``, ``timestamp``,
        ``kind``, ``ixp_id``, ``ixp_name``, ``ixp_city``, ``ixp_country``, ``family``,
        ``asn``, ``verdict``).
    family : str, optional
        Only crossings into this family (default: any flagged family).
    country : str, optional
        Only PoPs whose IXP is in this country.

    Returns
    -------
    pyarrow.Table
        ``ixp_id, ixp_name, ixp_city, ixp_country, families, asns, traceroutes, probes,
        crossings, consistent, inconsistent, unknown`` -- ``traceroutes`` counts distinct
        traceroutes crossing there, the verdict columns count distinct traceroutes with a
        crossing of that verdict there. Sorted by traceroutes (descending), then name.
        Private-interconnect crossings (no located PoP) are left out.
    """
    need = ("msm_id", "prb_id", "timestamp", "kind", "ixp_id", "ixp_name", "ixp_city",
            "ixp_country", "family", "asn", "verdict")  # fmt: skip
    missing = [c for c in need if c not in crossings.column_names]
    if missing:
        raise SchemaMismatch(f"crossing table lacks column(s) {', '.join(missing)}")
    mask = pc.fill_null(pc.equal(crossings.column("kind"), "ixp"), False)
    if family is not None:
        mask = pc.and_(mask, pc.fill_null(pc.equal(crossings.column("family"), family), False))
    if country is not None:
        mask = pc.and_(mask, pc.fill_null(pc.equal(crossings.column("ixp_country"), country), False))
    sel = crossings.select(list(need)).filter(mask)
    con = connect()
    try:
        con.register("x", sel)
        tr = "(msm_id, prb_id, timestamp)"
        out = con.sql(
            f"""SELECT ixp_id, min(ixp_name) AS ixp_name, ixp_city,
                       min(ixp_country) AS ixp_country,
                       list_sort(list(DISTINCT family)) AS families,
                       list_sort(list(DISTINCT asn)) AS asns,
                       count(DISTINCT {tr}) AS traceroutes, count(DISTINCT prb_id) AS probes,
                       count(*) AS crossings,
                       count(DISTINCT {tr}) FILTER (WHERE verdict = 'consistent') AS consistent,
                       count(DISTINCT {tr}) FILTER (WHERE verdict = 'inconsistent') AS inconsistent,
                       count(DISTINCT {tr}) FILTER (WHERE verdict = 'unknown') AS unknown
                FROM x GROUP BY ixp_id, ixp_city
                ORDER BY traceroutes DESC, ixp_name, ixp_city"""
        ).to_arrow_table()
    finally:
        con.close()
    return out


def pop_locations(annotated: pa.Table) -> pa.Table:
    """IXPs seen on the paths with their location, and whether a flagged member was there.

    Parameters
    ----------
    annotated : pyarrow.Table
        Annotated hops (or any subset of them) with ``ixp_id``, ``ixp_name``, ``ixp_city``,
        ``ixp_country``, ``ixp_lat``, ``ixp_lon``, ``family``.

    Returns
    -------
    pyarrow.Table
        ``ixp_id, ixp_name, ixp_city, ixp_country, latitude, longitude, families, flagged,
        replies`` per IXP, flagged ones first, then by replies (descending).
    """
    need = ("ixp_id", "ixp_name", "ixp_city", "ixp_country", "ixp_lat", "ixp_lon", "family")
    missing = [c for c in need if c not in annotated.column_names]
    if missing:
        raise SchemaMismatch(f"annotated hops lack column(s) {', '.join(missing)}")
    sel = annotated.select(list(need)).filter(pc.is_valid(annotated.column("ixp_id")))
    con = connect()
    try:
        con.register("a", sel)
        out = con.sql(
            """SELECT ixp_id, min(ixp_name) AS ixp_name, min(ixp_city) AS ixp_city,
                      min(ixp_country) AS ixp_country, min(ixp_lat) AS latitude,
                      min(ixp_lon) AS longitude,
                      coalesce(list_sort(list(DISTINCT family) FILTER (WHERE family IS NOT NULL)), []::VARCHAR[]) AS families,
                      bool_or(family IS NOT NULL) AS flagged, count(*) AS replies
               FROM a GROUP BY ixp_id ORDER BY flagged DESC, replies DESC, ixp_id"""
        ).to_arrow_table()
    finally:
        con.close()
    return out


# ---------------------------------------------------------------------------- charts
def plot_exposure_by_country(
    exposure: pa.Table,
    *,
    family: str = "any",
    top: int = 20,
    min_traceroutes: int = 1,
    order: Sequence[str | None] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Path (or PoP) exposure per source country as bars with their interval.

    Parameters
    ----------
    exposure : pyarrow.Table
        Exposure by source country: the output of
        ``metrics.path_exposure(paths, by="source_country")`` (column ``probe_country``) or
        the long-form ``exposure/path_exposure.parquet`` written by
        :func:`analysis.campaign_io.analyze_campaign` (rows with ``grouping == "source_country"``
        are used). Needs ``exposure``, ``ci_low``, ``ci_high``, ``traceroutes``.
    family : str
        Family to show when the table has a ``family`` column (``"any"``: any flagged).
    top : int
        Show the ``top`` countries with the highest exposure.
    min_traceroutes : int
        Leave out countries with fewer traceroutes.
    order : sequence of str, optional
        The countries to show, in this order (e.g. :func:`country_order` of the path
        exposure, so that a PoP-exposure panel beside it lines up); ``top`` is then ignored.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        One bar per country (height = exposure), error bars from ``ci_low`` to ``ci_high``.
    """
    ax = _axes(ax)
    t = _by_group(exposure, "source_country", "probe_country", family)
    t = t.filter(pc.greater_equal(t.column("traceroutes"), min_traceroutes))
    wanted = list(order) if order is not None else _ranked_groups(t, top)
    rank = {g: i for i, g in enumerate(wanted)}
    groups = t.column("group").to_pylist()
    keep = [i for i in sorted(range(len(groups)), key=lambda i: rank.get(groups[i], len(rank))) if groups[i] in rank]
    t = t.take(pa.array(keep, pa.int64()))
    basis = (t.column("country_basis").to_pylist() if "country_basis" in t.column_names
             else [None] * t.num_rows)
    derived = [b is not None and b != "probe metadata" for b in basis]
    labels = [(g if g else "unknown") + ("*" if d else "")
              for g, d in zip(t.column("group").to_pylist(), derived, strict=True)]
    est = float_np(t.column("exposure"))
    lo, hi = float_np(t.column("ci_low")), float_np(t.column("ci_high"))
    x = np.arange(len(labels))
    yerr = np.vstack([np.clip(est - lo, 0, None), np.clip(hi - est, 0, None)])
    ax.bar(x, est, color="#4c72b0", label="exposure")
    ax.errorbar(x, est, yerr=yerr, fmt="none", ecolor="black", capsize=3, lw=1, label=_ci_label(t))
    ymax = float(max(1e-3, float(np.nanmax(hi)) if len(hi) else 0.0) * 1.1 or 1.0)
    for xi, n, e in zip(x, t.column("traceroutes").to_pylist(), est, strict=True):
        # inside a tall bar in white; beside a short (or zero) bar in dark grey, so it never vanishes
        short = not e > 0.15 * ymax
        ax.annotate(f"n={n:,}", (float(xi), 0.0), xytext=(7 if short else 0, 2), textcoords="offset points",
                    ha="center", va="bottom", fontsize=7, rotation=90, color="#333333" if short else "white")
    ax.set_xticks(x, labels, rotation=60 if len(labels) > 12 else 0)
    ax.set_xlabel("source country (probe)")
    ax.set_ylabel(f"traceroutes transiting {family} (%)")
    ax.set_ylim(0, ymax)
    _percent_axis(ax)
    ax.set_title(f"Exposure by source country ({family})")
    if any(derived):
        ax.text(0.0, -0.22, "* country derived from the probes' source addresses (no probe metadata)",
                transform=ax.transAxes, fontsize=7, va="top")
    if len(labels):
        _legend(ax, loc="upper right", fontsize=8)
    else:
        _empty(ax, "no source country with traceroutes")
    return ax


def country_order(exposure: pa.Table, *, family: str = "any", top: int = 20) -> list[str | None]:
    """The source countries a by-country chart shows, in its order: highest exposure first
    (then most traceroutes, then the code); pass it as ``order`` to line panels up.

    >>> t = pa.table({"probe_country": ["DE", "US", "FR"], "exposure": [0.1, 0.3, 0.1],
    ...               "traceroutes": [5, 9, 7], "ci_low": [0.0] * 3, "ci_high": [0.5] * 3})
    >>> country_order(t)
    ['US', 'FR', 'DE']
    """
    return _ranked_groups(_by_group(exposure, "source_country", "probe_country", family), top)


def _ranked_groups(t: pa.Table, top: int) -> list[str | None]:
    t = t.sort_by([("exposure", "descending"), ("traceroutes", "descending"), ("group", "ascending")])
    return t.column("group").to_pylist()[:top]


def plot_exposure_over_time(
    paths: pa.Table,
    *,
    family: str | None = None,
    freq: str = "day",
    events: pa.Table | None = None,
    confidence: float = 0.95,
    families: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Path exposure per time bin with its Wilson interval, and change events marked.

    Bins without traceroutes break the line and the band (a gap is shown as a gap, never
    bridged). With ``families``, each of them gets its own line beside ``family``'s.

    The per-bin exposure is :func:`analysis.metrics.path_exposure` grouped by the
    timestamp floored to ``freq``; the events are :func:`analysis.metrics.change_events`
    (unless given), counted per bin: starts as upward triangles at the top of the Axes,
    stops as downward triangles at the bottom, each labelled with its count.

    Parameters
    ----------
    paths : pyarrow.Table
        Paths table (``timestamp``, ``prb_id``, ``dst_addr``, ``flagged_families``).
    family : str, optional
        Flagged family (default: any).
    freq : {"day", "hour"}
        Bin width (UTC).
    events : pyarrow.Table, optional
        Change events (``family``, ``event``, ``timestamp``); rows of other families are
        ignored. Default: computed from ``paths``.
    confidence : float
        Interval coverage.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    from analysis import metrics

    if freq not in _BIN_SECONDS:
        raise ValueError(f"freq must be one of {sorted(_BIN_SECONDS)}, got {freq!r}")
    for col in ("timestamp", "prb_id", "flagged_families"):
        if col not in paths.column_names:
            raise SchemaMismatch(f"paths table lacks column {col}")
    ax = _axes(ax)
    label = family or metrics.ANY_FAMILY
    width = _BIN_SECONDS[freq]
    t = paths.select(["prb_id", "flagged_families"]).append_column(
        "bin", _floor(paths.column("timestamp"), width)
    )
    tab = metrics.path_exposure(t, family=family, by="bin", ci="wilson", confidence=confidence)
    tab = tab.sort_by("bin")
    x = tab.column("bin").to_numpy(zero_copy_only=False).astype("datetime64[s]")
    est, lo, hi = float_np(tab.column("exposure")), float_np(tab.column("ci_low")), float_np(tab.column("ci_high"))
    gx, (gest, glo, ghi) = _with_gaps(x, width, est, lo, hi)
    ax.fill_between(gx, glo, ghi, color="#4c72b0", alpha=0.25, label=f"{confidence:.0%} Wilson interval")
    ax.plot(gx, gest, marker="o", ms=3, color="#4c72b0", label=f"exposure ({label})")
    palette = _family_colors(sorted(f for f in (families or ()) if f != label))
    for fam in (f for f in (families or ()) if f != label):
        ft = metrics.path_exposure(t, family=fam, by="bin", ci="wilson", confidence=confidence).sort_by("bin")
        fx = ft.column("bin").to_numpy(zero_copy_only=False).astype("datetime64[s]")
        fgx, (fest,) = _with_gaps(fx, width, float_np(ft.column("exposure")))
        ax.plot(fgx, fest, marker=".", ms=3, lw=1, color=palette[fam],
                label=f"exposure ({fam})")

    if events is None:
        events = metrics.change_events(paths, family=family)
    if events.num_rows and "family" in events.column_names:
        events = events.filter(pc.fill_null(pc.equal(events.column("family"), label), False))
    import matplotlib.dates as mdates
    import matplotlib.transforms as mtransforms

    blend = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
    for kind, y, marker, color in (("start", 0.97, "^", "#2ca02c"), ("stop", 0.03, "v", _FLAGGED)):
        if not events.num_rows:
            break
        ev = events.filter(pc.fill_null(pc.equal(events.column("event"), kind), False))
        if not ev.num_rows:
            continue
        bins = _floor(ev.column("timestamp"), width).to_numpy(zero_copy_only=False).astype("datetime64[s]")
        ub, cnt = np.unique(bins, return_counts=True)
        ax.scatter(ub, np.full(len(ub), y), marker=marker, s=36, color=color, transform=blend,
                   clip_on=False, zorder=3, label=f"transit {kind}s ({int(cnt.sum()):,} events)")
        for xb, c in zip(mdates.date2num(ub), cnt, strict=True):
            ax.annotate(str(int(c)), (xb, y), xycoords=blend, xytext=(5, -3), textcoords="offset points",
                        fontsize=7, color=color)
        ax.vlines(ub, 0, 1, transform=blend, colors=color, alpha=0.2, lw=1)
    ax.set_ylim(0, max(0.05, float(np.nanmax(hi)) * 1.15 if len(hi) else 0.05))
    _percent_axis(ax)
    ax.set_xlabel(f"time (UTC, {freq} bins; gaps: no traceroute)")
    ax.set_ylabel(f"traceroutes transiting {label if not families else 'a flagged family'} (%)")
    ax.set_title(f"Exposure over time ({label})")
    _legend(ax, loc="upper left", fontsize=8)
    ax.tick_params(axis="x", labelrotation=30)
    if not len(x):
        _empty(ax, "no traceroutes")
    return ax


def plot_top_pops(pops: pa.Table, *, top: int = 15, ax: Axes | None = None) -> Axes:
    """Flagged PoPs (IXP, city) by traceroutes crossing into a flagged carrier there.

    Parameters
    ----------
    pops : pyarrow.Table
        :func:`pop_counts` output (``ixp_name``, ``ixp_city``, ``traceroutes``,
        ``inconsistent``; ``ixp_country`` and ``families`` are used in labels).
    top : int
        Number of PoPs shown (the first rows of ``pops``).
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        Horizontal bars of length ``traceroutes`` (largest on top), overlaid with hatched
        bars of length ``inconsistent`` (speed-of-light inconsistent location claims).
    """
    for col in ("ixp_name", "ixp_city", "traceroutes", "inconsistent"):
        if col not in pops.column_names:
            raise SchemaMismatch(f"PoP table lacks column {col}")
    ax = _axes(ax)
    t = pops.slice(0, top)
    rows = t.to_pylist()
    labels = [_pop_label(r) for r in rows]
    y = np.arange(len(rows))[::-1]
    n = np.array([r["traceroutes"] for r in rows], float)
    bad = np.array([r["inconsistent"] for r in rows], float)
    ax.barh(y, n, color=_FLAGGED, alpha=0.8, label="traceroutes crossing")
    ax.barh(y, bad, color="none", edgecolor="black", hatch="///", lw=0.5,
            label="of which speed-of-light inconsistent")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("traceroutes crossing")
    ax.set_ylabel("PoP (IXP, city)")
    ax.set_title("Top flagged PoPs")
    if rows:
        _legend(ax, loc="lower right", fontsize=8)
    else:  # no counts to scale: no ticks (matplotlib's default axis would show -0.04..0.04)
        ax.set_xticks([])
        _empty(ax, "no flagged crossing at an IXP")
    return ax


def plot_flagged_graph(
    g: nx.DiGraph,
    *,
    top: int = 12,
    ax: Axes | None = None,
) -> Axes:
    """Where paths enter and leave the flagged families: a three-column drawing.

    Left, the ASes and IXPs from which paths enter a flagged AS; middle, the flagged ASes
    grouped by family; right, where paths leave them. Edge width is proportional to
    traceroutes, its colour is the flagged family's; edges between flagged ASes are arcs in
    the middle column. Only the ``top`` heaviest neighbours on each side are drawn, the rest
    are counted in a note: the drawing stays readable on any campaign.

    Parameters
    ----------
    g : networkx.DiGraph
        :func:`analysis.graph.build_graph` output (or the GraphML written by
        ``analyze_campaign``): node ``kind``, ``family``, ``org``, ``name``; edge
        ``traceroutes``.
    top : int
        Most neighbours drawn on each side.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        Nodes as scatter collections labelled by flagged family, ``"IXP"`` and ``"other AS"``;
        one arrow per drawn edge, line width ``0.5 + 5 * traceroutes / max(traceroutes)``
        over the drawn edges.
    """
    import networkx as nx

    ax = _axes(ax)
    ax.set_axis_off()
    ax.set_title("Paths into and out of the flagged carriers (edge width: traceroutes)")
    fam = {v: d.get("family") for v, d in g.nodes(data=True) if d.get("family") and d.get("kind") != "ixp"}
    if not fam:
        return _empty(ax, "no flagged carrier on any path")

    def weight(u: str, v: str) -> int:
        return int(g.edges[u, v].get("traceroutes", 1) or 1)

    into: dict[str, int] = {}
    out_of: dict[str, int] = {}
    for f in fam:
        for u in g.predecessors(f):
            if u not in fam:
                into[u] = into.get(u, 0) + weight(u, f)
        for v in g.successors(f):
            if v not in fam:
                out_of[v] = out_of.get(v, 0) + weight(f, v)

    def ranked(side: dict[str, int]) -> list[str]:
        return sorted(side, key=lambda v: (-side[v], v))[:top]

    left, exits = ranked(into), ranked(out_of)
    right = [v for v in exits if v not in set(left)]  # a node on both sides: drawn left
    flagged = sorted(fam, key=lambda v: (str(fam[v]), -int(g.nodes[v].get("traceroutes", 0) or 0), v))
    pos: dict[str, tuple[float, float]] = {}
    for x, column in ((0.0, left), (1.0, flagged), (2.0, right)):
        n = len(column)
        for i, v in enumerate(column):
            pos[v] = (x, 1.0 - (i + 0.5) / max(n, 1))
    shown = set(pos)
    edges = [(u, v) for u, v in g.edges() if u in shown and v in shown and (u in fam or v in fam)]
    wmax = max((weight(u, v) for u, v in edges), default=1) or 1
    palette = _family_colors(sorted(set(fam.values())))
    sub = g.subgraph(shown)
    for arc in (False, True):
        sel = [(u, v) for u, v in edges if (u in fam and v in fam) == arc]
        if not sel:
            continue
        nx.draw_networkx_edges(
            sub, pos, edgelist=sel, width=[0.5 + 5.0 * weight(u, v) / wmax for u, v in sel],
            edge_color=[palette[fam[v] if v in fam else fam[u]] for u, v in sel], alpha=0.6, arrows=True,
            arrowsize=8, node_size=200, connectionstyle="arc3,rad=0.4" if arc else "arc3", ax=ax)
    groups: list[tuple[str, str, str, Callable[[str], bool]]] = [
        (f, palette[f], "o", lambda v, f=f: fam.get(v) == f) for f in palette]  # type: ignore[misc]
    groups += [
        ("IXP", _IXP, "s", lambda v: v not in fam and g.nodes[v].get("kind") == "ixp"),
        ("other AS", _OTHER, "o", lambda v: v not in fam and g.nodes[v].get("kind") != "ixp"),
    ]
    for name, color, shape, pred in groups:
        nodes = [v for v in pos if pred(v)]
        if nodes:
            nx.draw_networkx_nodes(sub, pos, nodelist=nodes, node_color=color, node_shape=shape,
                                   node_size=200, label=name, ax=ax)
    for v, (x, y) in pos.items():
        ha, dx = ("right", -0.06) if x == 0.0 else ("left", 0.06) if x == 2.0 else ("center", 0.0)
        ax.text(x + dx, y if x != 1.0 else y + 0.035, _node_label(v, g.nodes[v]), ha=ha, va="center",
                fontsize=7, color=palette.get(fam.get(v, ""), "#222222") if v in fam else "#222222")
    for x, head in ((0.0, "enter from"), (1.0, "flagged ASes"), (2.0, "leave to")):
        ax.text(x, 1.04, head, ha="center", va="bottom", fontsize=8, fontweight="bold")
    hidden = [(len(side) - len(drawn), sum(side.values()) - sum(side[v] for v in drawn))
              for side, drawn in ((into, left), (out_of, exits))]
    notes = [f"{n} more {side} ({w:,} traceroute-edges) not drawn"
             for (n, w), side in zip(hidden, ("entry neighbours", "exit neighbours"), strict=True) if n]
    if notes:
        ax.text(0.5, -0.1, "; ".join(notes), transform=ax.transAxes, ha="center", va="top", fontsize=7,
                color="#555555")
    ax.set_xlim(-0.9, 2.9)
    ax.set_ylim(-0.05, 1.1)
    _legend(ax, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(groups), fontsize=7, markerscale=0.5,
            frameon=False)
    return ax


def plot_rtt_vs_distance(crossings: pa.Table, *, ax: Axes | None = None) -> Axes:
    """Minimum RTT against probe-to-PoP distance per crossing, with the speed-of-light bound.

    A reply cannot come from farther than light in fibre travels in half its RTT
    (:data:`analysis.geo.KM_PER_MS_RTT` km per ms), so a claimed PoP location is possible
    only on or above the line ``rtt = distance / KM_PER_MS_RTT``. Points are coloured by the
    crossing's stored ``verdict``; inconsistent claims are drawn as large red crosses.
    Crossings without a distance or RTT (verdict unknown) cannot be placed; their number is
    given in the legend.

    Parameters
    ----------
    crossings : pyarrow.Table
        :func:`crossing_table` output (``distance_km``, ``min_rtt``, ``verdict``).
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        One scatter collection per verdict present (consistent, inconsistent) and the bound
        line (label starting with ``"speed-of-light bound"``).
    """
    for col in ("distance_km", "min_rtt", "verdict"):
        if col not in crossings.column_names:
            raise SchemaMismatch(f"crossing table lacks column {col}")
    ax = _axes(ax)
    d, r = float_np(crossings.column("distance_km")), float_np(crossings.column("min_rtt"))
    v = np.asarray(pc.fill_null(crossings.column("verdict"), "unknown").to_pylist(), dtype=object)
    placed = ~(np.isnan(d) | np.isnan(r))
    dmax = float(np.nanmax(d[placed])) if placed.any() else 1000.0
    xs = np.linspace(0.0, dmax * 1.05, 50)
    ax.fill_between(xs, 0, xs / KM_PER_MS_RTT, color=VERDICT_COLORS["inconsistent"], alpha=0.07,
                    label="impossible at 2/3 c")
    ax.plot(xs, xs / KM_PER_MS_RTT, color="black", lw=1,
            label=f"speed-of-light bound ({KM_PER_MS_RTT:.1f} km per ms RTT)")
    styles: tuple[tuple[str, dict[str, Any]], ...] = (
        ("consistent", {"marker": "o", "s": 14, "alpha": 0.6}),
        ("inconsistent", {"marker": "X", "s": 50, "edgecolors": "black", "linewidths": 0.5, "zorder": 3}),
    )
    for verdict, style in styles:
        m = placed & (v == verdict)
        if m.any():
            ax.scatter(d[m], r[m], color=VERDICT_COLORS[verdict], label=f"{verdict} ({int(m.sum()):,})",
                       **style)
    unplaced = int((~placed).sum())
    if unplaced:
        ax.plot([], [], " ", label=f"no distance or RTT, not shown ({unplaced:,})")
    ax.set_xlim(0, dmax * 1.05)
    ax.set_ylim(0, max(float(np.nanmax(r[placed])) * 1.1 if placed.any() else 1.0, dmax / KM_PER_MS_RTT * 1.1))
    ax.set_xlabel("great-circle distance, probe to claimed PoP city (km)")
    ax.set_ylabel("minimum RTT at the crossing (ms)")
    ax.set_title("Speed-of-light check of PoP locations")
    _legend(ax, loc="upper left", fontsize=8)
    return ax


def place_table(facilities: pa.Table | None, routers: pa.Table | None = None) -> pa.Table:
    """Where each city is: the mean position of its PeeringDB facilities, else of its routers.

    Parameters
    ----------
    facilities : pyarrow.Table or None
        ``city, country, lat, lon`` per (network, facility) row (the analyze stage's
        PeeringDB ``netfac`` + ``fac`` table).
    routers : pyarrow.Table, optional
        ``city, cc, lat, lon`` per geolocated router address (the ``ipmap`` kind's
        ``addresses`` table): cities no facility names.

    Returns
    -------
    pyarrow.Table
        ``city, country, latitude, longitude, points`` (distinct positions averaged),
        ``source`` ("PeeringDB facilities" or "IPmap routers"), sorted by country and city.

    Examples
    --------
    >>> f = pa.table({"city": ["Dubai", "Dubai", "Dubai"], "country": ["AE"] * 3,
    ...               "lat": [25.0, 25.2, 25.2], "lon": [55.0, 55.4, 55.4]})
    >>> r = pa.table({"city": ["Cairo", "Dubai"], "cc": ["EG", "AE"], "lat": [30.04, 0.0], "lon": [31.24, 0.0]})
    >>> [(p["city"], p["latitude"], p["longitude"], p["source"]) for p in place_table(f, r).to_pylist()]
    [('Dubai', 25.1, 55.2, 'PeeringDB facilities'), ('Cairo', 30.04, 31.24, 'IPmap routers')]
    """
    empty = pa.table({"city": pa.array([], pa.string()), "country": pa.array([], pa.string()),
                      "lat": pa.array([], pa.float64()), "lon": pa.array([], pa.float64())})
    fac = facilities.select(["city", "country", "lat", "lon"]) if facilities is not None else empty
    rtr = routers.select(["city", "cc", "lat", "lon"]).rename_columns(["city", "country", "lat", "lon"]) \
        if routers is not None else empty
    con = connect()
    try:
        con.register("f", fac)
        con.register("r", rtr)
        return con.sql(
            """WITH pts AS (
                 SELECT DISTINCT trim(city) AS city, upper(country) AS country,
                        CAST(lat AS DOUBLE) AS lat, CAST(lon AS DOUBLE) AS lon, 0 AS rank FROM f
                 UNION
                 SELECT DISTINCT trim(city), upper(country), CAST(lat AS DOUBLE), CAST(lon AS DOUBLE), 1 FROM r
               ), ok AS (
                 SELECT * FROM pts WHERE city IS NOT NULL AND city <> '' AND country IS NOT NULL
                   AND lat IS NOT NULL AND lon IS NOT NULL
               ), best AS (SELECT city, country, min(rank) AS rank FROM ok GROUP BY city, country)
               SELECT city, country, round(avg(lat), 4) AS latitude, round(avg(lon), 4) AS longitude,
                      count(*) AS points,
                      CASE min(rank) WHEN 0 THEN 'PeeringDB facilities' ELSE 'IPmap routers' END AS source
               FROM ok JOIN best USING (city, country, rank)
               GROUP BY city, country ORDER BY min(rank), country, city"""
        ).to_arrow_table()
    finally:
        con.close()


def map_points(
    probes: pa.Table,
    pops: pa.Table | None = None,
    *,
    entries: pa.Table | None = None,
    places: pa.Table | None = None,
    flagged_probes: Iterable[int] | None = None,
) -> tuple[pa.Table, dict[str, int]]:
    """Everything a map shows, with its position, and what could not be placed.

    Probes are placed by their coordinates; IXPs by their coordinates, else by their city
    (``places``, then :data:`REFERENCE_CITIES` by name); the private-interconnect PoPs of
    ``entries`` (kind other than ``ixp``) by their located city.

    Parameters
    ----------
    probes : pyarrow.Table
        ``prb_id, latitude, longitude``.
    pops : pyarrow.Table, optional
        :func:`pop_locations` (``ixp_name``, ``latitude``, ``longitude``, ``flagged``, and
        ``ixp_city``, ``ixp_country`` for placing by city).
    entries : pyarrow.Table, optional
        :func:`analysis.metrics.crossing_locations` (``family, kind, pop_city,
        pop_country, traceroutes``).
    places : pyarrow.Table, optional
        :func:`place_table`.
    flagged_probes : iterable of int, optional
        Probes with a path through a flagged carrier.

    Returns
    -------
    (pyarrow.Table, dict)
        ``kind`` (``probe``, ``flagged probe``, ``IXP``, ``flagged IXP``, ``PoP``),
        ``label``, ``latitude``, ``longitude``, ``placed_by`` (``coordinates``, ``city``,
        ``reference city``); and the number of items not placed, by reason.

    Examples
    --------
    >>> probes = pa.table({"prb_id": [1, 2], "latitude": [52.5, None], "longitude": [13.4, None]})
    >>> pops = pa.table({"ixp_name": ["UAE-IX"], "ixp_city": ["Dubai"], "ixp_country": ["AE"],
    ...                  "latitude": pa.array([None], pa.float64()),
    ...                  "longitude": pa.array([None], pa.float64()), "flagged": [False]})
    >>> pts, unplaced = map_points(probes, pops)
    >>> [(r["kind"], r["label"], r["placed_by"]) for r in pts.to_pylist()]
    [('probe', '1', 'coordinates'), ('IXP', 'UAE-IX', 'reference city')]
    >>> unplaced
    {'probes without a location': 1}
    """
    for col in ("prb_id", "latitude", "longitude"):
        if col not in probes.column_names:
            raise SchemaMismatch(f"probe table lacks column {col}")
    where: dict[tuple[str, str | None], tuple[float, float, str]] = {}
    for name, la, lo in (*REFERENCE_CITIES, *CHINA_REFERENCE_POINTS):
        where[(name.casefold(), None)] = (la, lo, "reference city")
    if places is not None:
        for r in places.select(["city", "country", "latitude", "longitude"]).to_pylist():
            where[(str(r["city"]).casefold(), r["country"])] = (r["latitude"], r["longitude"], "city")

    def by_city(city: Any, country: Any) -> tuple[float, float, str] | None:
        if not city:
            return None
        key = str(city).strip().casefold()
        return where.get((key, country)) or where.get((key, None))

    rows: list[dict[str, Any]] = []
    unplaced: dict[str, int] = {}

    def miss(reason: str) -> None:
        unplaced[reason] = unplaced.get(reason, 0) + 1

    hot = {int(x) for x in flagged_probes} if flagged_probes is not None else set()
    lat, lon = float_np(probes.column("latitude")), float_np(probes.column("longitude"))
    for pid, la, lo in zip(probes.column("prb_id").to_pylist(), lat.tolist(), lon.tolist(), strict=True):
        if np.isnan(la) or np.isnan(lo):
            miss("probes without a location")
            continue
        rows.append({"kind": "flagged probe" if pid in hot else "probe", "label": str(pid),
                     "latitude": la, "longitude": lo, "placed_by": "coordinates"})
    if pops is not None and pops.num_rows:
        d = pops.to_pydict()
        n = pops.num_rows
        for i in range(n):
            flag = bool(d["flagged"][i]) if "flagged" in d and d["flagged"][i] is not None else "flagged" not in d
            la, lo = d["latitude"][i], d["longitude"][i]
            got = (la, lo, "coordinates") if la is not None and lo is not None and not (
                np.isnan(la) or np.isnan(lo)) else by_city(d.get("ixp_city", [None] * n)[i],
                                                           d.get("ixp_country", [None] * n)[i])
            if got is None:
                miss("IXPs without coordinates or a known city")
                continue
            rows.append({"kind": "flagged IXP" if flag else "IXP", "label": str(d.get("ixp_name", [""] * n)[i] or ""),
                         "latitude": got[0], "longitude": got[1], "placed_by": got[2]})
    if entries is not None and entries.num_rows:
        seen: set[tuple[Any, Any, Any]] = set()
        for r in entries.to_pylist():
            if r.get("kind") == "ixp":
                continue
            key = (r.get("family"), r.get("pop_city"), r.get("pop_country"))
            if key in seen:
                continue
            seen.add(key)
            got = by_city(r.get("pop_city"), r.get("pop_country"))
            if got is None:
                miss("private-interconnect PoPs not located in a city" if not r.get("pop_city")
                     else "private-interconnect PoPs in a city of unknown position")
                continue
            rows.append({"kind": "PoP", "label": f"{r.get('pop_city')} ({r.get('family')})",
                         "latitude": got[0], "longitude": got[1], "placed_by": got[2]})
    schema = pa.schema([("kind", pa.string()), ("label", pa.string()), ("latitude", pa.float64()),
                        ("longitude", pa.float64()), ("placed_by", pa.string())])
    return pa.Table.from_pylist(rows, schema=schema), unplaced


_MAP_STYLE: dict[str, dict[str, Any]] = {
    "probe": {"s": 10, "color": "#4c72b0", "alpha": 0.7, "zorder": 3, "marker": "o"},
    "flagged probe": {"s": 14, "color": _FLAGGED, "alpha": 0.8, "zorder": 3, "marker": "o"},
    "IXP": {"s": 16, "color": _IXP, "zorder": 4, "marker": "s"},
    "flagged IXP": {"s": 130, "color": _FLAGGED, "edgecolors": "black", "linewidths": 0.5, "zorder": 5,
                    "marker": "*"},
    "PoP": {"s": 60, "color": "#8c1c13", "edgecolors": "black", "linewidths": 0.5, "zorder": 5, "marker": "D"},
}


@functools.lru_cache(maxsize=8)
def _basemap(extent: tuple[float, float, float, float]) -> Any:
    from mpl_toolkits.basemap import Basemap

    x0, x1, y0, y1 = extent
    return Basemap(projection="cyl", llcrnrlon=x0, urcrnrlon=x1, llcrnrlat=y0, urcrnrlat=y1,
                   resolution="c" if (x1 - x0) > 90 else "l", fix_aspect=True)


def plot_probe_map(
    probes: pa.Table,
    pops: pa.Table | None = None,
    *,
    entries: pa.Table | None = None,
    places: pa.Table | None = None,
    flagged_probes: Iterable[int] | None = None,
    extent: tuple[float, float, float, float] = WORLD_EXTENT,
    cities: Iterable[tuple[str, float, float]] = REFERENCE_CITIES,
    label_pops: bool = False,
    highlight_label: str = "probes with flagged transit",
    ax: Axes | None = None,
) -> Axes:
    """Probes, IXPs and flagged PoPs on a map with coastlines and borders (offline).

    The shapes come from basemap's bundled data (GSHHS coastlines, country borders), on a
    plate carrée projection, so the axes are longitude and latitude in degrees. Points are
    placed as :func:`map_points` says; what cannot be placed is counted in a note at the
    bottom of the map, never silently dropped.

    Parameters
    ----------
    probes : pyarrow.Table
        Probe metadata with ``prb_id``, ``latitude``, ``longitude`` (e.g.
        :func:`probes.store.read_probe_meta`).
    pops : pyarrow.Table, optional
        :func:`pop_locations` output; IXPs with a flagged member are red stars, others small
        orange squares.
    entries : pyarrow.Table, optional
        :func:`analysis.metrics.crossing_locations`: private-interconnect PoPs located in a
        city are drawn as dark red diamonds.
    places : pyarrow.Table, optional
        :func:`place_table`, for IXPs and PoPs known only by their city.
    flagged_probes : iterable of int, optional
        Probe ids drawn in red (e.g. those with a path through a flagged carrier).
    extent : (lon_min, lon_max, lat_min, lat_max)
        Visible region (:data:`WORLD_EXTENT`, :data:`US_EXTENT`).
    cities : iterable of (name, lat, lon)
        Landmark cities drawn as open circles with their name, when inside ``extent``.
    label_pops : bool
        Write the name of each flagged IXP and PoP inside ``extent``.
    highlight_label : str
        Legend entry of the ``flagged_probes``.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
        Scatter collections labelled ``"probes"``, ``highlight_label``, ``"flagged PoPs"``
        (flagged IXPs), ``"other IXPs"`` and ``"private-interconnect PoPs"`` (only those
        with points).
    """
    pts, unplaced = map_points(probes, pops, entries=entries, places=places, flagged_probes=flagged_probes)
    ax = _axes(ax)
    x0, x1, y0, y1 = extent
    bm = _basemap(tuple(float(v) for v in extent))
    bm.fillcontinents(color="#f1f1ec", lake_color="white", ax=ax, zorder=0)
    bm.drawcoastlines(linewidth=0.4, color="#8a8a8a", ax=ax, zorder=1)
    bm.drawcountries(linewidth=0.3, color="#b0b0b0", ax=ax, zorder=1)
    if (x1 - x0) <= 90:
        bm.drawstates(linewidth=0.2, color="#cccccc", ax=ax, zorder=1)
    for name, lat, lon in cities:
        if x0 <= lon <= x1 and y0 <= lat <= y1:
            ax.plot(lon, lat, "o", mfc="none", mec="#888888", ms=4, zorder=2)
            ax.annotate(name, (lon, lat), xytext=(3, 2), textcoords="offset points", fontsize=6,
                        color="#666666")
    names = {"probe": "probes", "flagged probe": highlight_label, "IXP": "other IXPs",
             "flagged IXP": "flagged PoPs", "PoP": "private-interconnect PoPs"}
    kind = np.asarray(pts.column("kind").to_pylist(), dtype=object)
    plat, plon = float_np(pts.column("latitude")), float_np(pts.column("longitude"))
    labels = pts.column("label").to_pylist()
    for k, style in _MAP_STYLE.items():
        sel = kind == k
        if sel.any():
            ax.scatter(plon[sel], plat[sel], label=names[k], **style)
    if label_pops:  # one label per place: an IXP and a PoP in one city share it
        at: dict[tuple[float, float], list[str]] = {}
        for i in np.flatnonzero(np.isin(kind, ["flagged IXP", "PoP"])):
            if x0 <= plon[i] <= x1 and y0 <= plat[i] <= y1:
                at.setdefault((round(float(plon[i]), 1), round(float(plat[i]), 1)), []).append(labels[i])
        for (lo, la), texts in at.items():
            ax.annotate("\n".join(sorted(set(texts))), (lo, la), xytext=(5, -4), textcoords="offset points",
                        fontsize=7, color=_FLAGGED, va="top")
    by_city = int(np.count_nonzero(np.isin(np.asarray(pts.column("placed_by").to_pylist(), dtype=object),
                                           ["city", "reference city"]))) if pts.num_rows else 0
    note = []
    if by_city:
        note.append(f"{by_city} placed by city")
    if unplaced:
        note.append("not placed: " + ", ".join(f"{why} {n}" for why, n in sorted(unplaced.items())))
    if note:
        ax.text(0.99, 0.01, "; ".join(note), transform=ax.transAxes, ha="right", va="bottom", fontsize=7,
                color="#444444", bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1.5})
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.set_title("Probes and PoPs")
    _legend(ax, loc="lower left", fontsize=7)
    return ax


# ---------------------------------------------------------------------------- helpers
def _axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.gca()


def _empty(ax: Axes, text: str) -> Axes:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#666666")
    return ax


def _floor(ts: pa.Array | pa.ChunkedArray, seconds: int) -> pa.Array:
    """Timestamps floored to multiples of ``seconds`` since the epoch (UTC)."""
    sec = pc.cast(pc.cast(ts, pa.timestamp("s", tz="UTC")), pa.int64())
    sec = sec.combine_chunks() if isinstance(sec, pa.ChunkedArray) else sec
    arr = sec.to_numpy(zero_copy_only=False)
    return pa.array((arr // seconds) * seconds, pa.int64()).cast(pa.timestamp("s", tz="UTC"))


def _by_group(table: pa.Table, grouping: str, column: str, family: str) -> pa.Table:
    """Rows of one grouping with the group key as a ``group`` string column."""
    for col in ("exposure", "ci_low", "ci_high", "traceroutes"):
        if col not in table.column_names:
            raise SchemaMismatch(f"exposure table lacks column {col}")
    if "family" in table.column_names:
        table = table.filter(pc.fill_null(pc.equal(table.column("family"), family), False))
    if "grouping" in table.column_names:
        table = table.filter(pc.fill_null(pc.equal(table.column("grouping"), grouping), False))
        return table.set_column(table.column_names.index("group"), "group",
                                pc.cast(table.column("group"), pa.string()))
    if column not in table.column_names:
        raise SchemaMismatch(f"exposure table has neither {column} nor grouping/group columns")
    return table.append_column("group", pc.cast(table.column(column), pa.string()))


#: Line colours of per-family series (the "any" series keeps the default blue).
#: Orange is left out: it marks IXPs on the graph and the maps.
_FAMILY_COLOURS = ("#d62728", "#9467bd", "#2ca02c", "#8c564b", "#e377c2", "#17becf")


def _percent_axis(ax: Axes) -> None:
    """Show a share (0..1) on the y axis as a percentage, as every table does."""
    from matplotlib.ticker import PercentFormatter

    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=None))


def _with_gaps(x: np.ndarray, width: int, *ys: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """``x`` (sorted bin starts) and series with a NaN point inside every run of empty bins.

    Matplotlib breaks lines and filled bands at NaN, so a stretch without data is drawn as
    a gap instead of a straight segment across it.
    """
    if len(x) < 2:
        return x, [np.asarray(y, float) for y in ys]
    gap = np.flatnonzero(np.diff(x.astype("int64")) > width)
    mids = x[gap] + np.timedelta64(width, "s")
    xs = np.insert(x, gap + 1, mids)
    return xs, [np.insert(np.asarray(y, float), gap + 1, np.nan) for y in ys]


def _cadence_seconds(paths: pa.Table) -> float:
    """Median time between consecutive traceroutes of one (probe, destination); inf if none repeat."""
    if paths.num_rows < 2 or "dst_addr" not in paths.column_names:
        return float("inf")
    t = paths.select(["prb_id", "dst_addr", "timestamp"])
    ts = pc.cast(pc.cast(t.column("timestamp"), pa.timestamp("s", tz="UTC")), pa.int64())
    t = t.set_column(2, "ts", ts).sort_by([("prb_id", "ascending"), ("dst_addr", "ascending"), ("ts", "ascending")])
    p = t.column("prb_id").to_numpy(zero_copy_only=False)
    d = pc.fill_null(pc.dictionary_encode(t.column("dst_addr")).combine_chunks().indices, -1).to_numpy(
        zero_copy_only=False)
    v = t.column("ts").to_numpy(zero_copy_only=False)
    same = (p[1:] == p[:-1]) & (d[1:] == d[:-1])
    gaps = np.diff(v)[same]
    gaps = gaps[gaps > 0]
    return float(np.median(gaps)) if len(gaps) else float("inf")


def time_bins(paths: pa.Table) -> str:
    """The bins for :func:`plot_exposure_over_time`: ``"hour"`` for a campaign of at most 8
    days measured at least hourly (per probe and destination), else ``"day"`` -- a bin never
    shorter than the measurement cadence, so the series is not all gaps.

    Examples
    --------
    >>> import datetime as dt
    >>> t0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    >>> every = lambda h: pa.table({"prb_id": [1] * 4, "dst_addr": ["a"] * 4,
    ...                             "timestamp": [t0 + dt.timedelta(hours=h * i) for i in range(4)]})
    >>> time_bins(every(1)), time_bins(every(6))
    ('hour', 'day')
    """
    if not paths.num_rows:
        return "day"
    ts = pc.cast(pc.cast(paths.column("timestamp"), pa.timestamp("s", tz="UTC")), pa.int64())
    mm = pc.min_max(ts).as_py()
    span_days = (mm["max"] - mm["min"]) / 86400.0
    return "hour" if span_days <= 8 and _cadence_seconds(paths) <= 3600 else "day"


def _ci_label(t: pa.Table) -> str:
    if "method" in t.column_names and t.num_rows:
        return f"interval ({t.column('method')[0].as_py()})"
    return "interval"


def _pop_label(row: dict[str, Any]) -> str:
    name = row.get("ixp_name") or row.get("ixp_id") or "?"
    city = row.get("ixp_city") or "?"
    fams = row.get("families")
    tail = f" [{', '.join(fams)}]" if fams else ""
    return f"{name} ({city}){tail}"


def _node_label(node: str, data: dict[str, Any]) -> str:
    if data.get("kind") == "ixp":
        name = str(data.get("name") or node.removeprefix("IXP:"))
        return name if len(name) <= 24 else name[:23] + "…"
    org = str(data.get("org") or data.get("name") or "")
    if not org:
        return node
    return f"{node} {org if len(org) <= 24 else org[:23] + '…'}"


def _family_colors(families: Sequence[str]) -> dict[str, str]:
    """A colour per flagged family, by its place in ``families`` (pass them sorted: the same
    family gets the same colour on every chart)."""
    return {f: _FAMILY_COLOURS[i % len(_FAMILY_COLOURS)] for i, f in enumerate(families)}
