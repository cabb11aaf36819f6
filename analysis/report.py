"""The HTML report of one analysed campaign: tables, figures and the page, from its data.

:class:`CampaignData` holds what an analysed campaign's outputs say (it is read by
:func:`analysis.campaign_io.load_campaign`: ``exposure.json``, ``paths/paths.parquet``,
``exposure/*.parquet``, ``graph/as_graph.graphml``, ``annotate.json``, ``ingest.json``, the
probe metadata and the IXP hops of the annotated table). :func:`report_figures` draws the
figures of :mod:`analysis.plots` with matplotlib's Agg canvas, and :func:`render_html` makes
one self-contained page of it all: figures embedded as base64 PNG, no external resource, a
file that can be mailed to a colleague. :func:`analysis.campaign_io.write_report` writes it
to ``<workspace>/<campaign>/report/index.html``.

The table helpers (:func:`headline_table`, :func:`drop_table`, :func:`snapshot_table`) are
what the notebooks call too.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import html
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from analysis import plots
from analysis.refdates import stale_lines
from analysis.vantage import derived_countries_line

if TYPE_CHECKING:
    import networkx as nx
    from matplotlib.axes import Axes

    from probes.workspace import Campaign

__all__ = [
    "as_names",
    "control_plane_table",
    "CampaignData",
    "headline_table",
    "drop_table",
    "snapshot_table",
    "figure_png",
    "figure_files",
    "report_figures",
    "FIGURE_FORMATS",
    "MAX_CROSSING_ROWS",
    "render_html",
    "table_html",
]

#: Most rows of individual crossings written into the report (all are in paths.parquet).
MAX_CROSSING_ROWS = 200


@dataclass(frozen=True)
class CampaignData:
    """Everything the report and the notebooks chart, for one analysed campaign.

    Attributes
    ----------
    campaign : probes.workspace.Campaign
    summary : dict
        ``exposure.json`` (headline figures, method, analysis drops, snapshot id).
    annotate : dict
        ``annotate.json`` (snapshot with its kinds and dates, counts by reason); empty if absent.
    ingest : dict
        ``ingest.json`` (drops by reason and their meaning); empty if absent.
    paths : pyarrow.Table
        One row per traceroute (:data:`analysis.paths.PATHS_SCHEMA`).
    crossings : pyarrow.Table
        :func:`analysis.plots.crossing_table` of ``paths``.
    path_exposure, pop_exposure, change_events, hegemony : pyarrow.Table
        The tables in ``exposure/``.
    destinations : pyarrow.Table or None
        ``exposure/destinations``: per in-scope destination, its AS, country and evidence,
        traceroutes and exposure (:func:`analysis.scope.destination_exposure`).
    graph : networkx.DiGraph
        ``graph/as_graph.graphml``.
    probes : pyarrow.Table
        Probe metadata (:func:`probes.store.read_probe_meta`).
    pops : pyarrow.Table
        :func:`analysis.plots.pop_locations` of the annotated IXP hops.
    places : pyarrow.Table or None
        ``exposure/places``: city positions from the snapshot's PeeringDB facilities
        (:func:`analysis.plots.place_table`), for IXPs and PoPs known only by their city.
    entries : pyarrow.Table or None
        ``exposure/pops``: where the families are entered
        (:func:`analysis.metrics.crossing_locations`).
    """

    campaign: Campaign
    summary: dict[str, Any]
    annotate: dict[str, Any]
    ingest: dict[str, Any]
    paths: pa.Table
    crossings: pa.Table
    path_exposure: pa.Table
    pop_exposure: pa.Table
    change_events: pa.Table
    hegemony: pa.Table
    graph: nx.DiGraph
    probes: pa.Table
    pops: pa.Table = field(repr=False)
    destinations: pa.Table | None = field(default=None, repr=False)
    places: pa.Table | None = field(default=None, repr=False)
    entries: pa.Table | None = field(default=None, repr=False)


def headline_table(summary: dict[str, Any]) -> pa.Table:
    """Per family: path and PoP exposure with their bootstrap and Wilson intervals.

    Parameters
    ----------
    summary : dict
        ``exposure.json`` as returned by :func:`analysis.campaign_io.analyze_campaign`.

    Returns
    -------
    pyarrow.Table
        ``family, traceroutes, path_transiting, path_exposure, path_ci_low, path_ci_high,
        path_wilson_low, path_wilson_high, pop_transiting, pop_exposure, pop_ci_low,
        pop_ci_high, pop_wilson_low, pop_wilson_high``; ``any`` first.

    Examples
    --------
    >>> e = {"traceroutes": 4, "transiting": 1, "estimate": 0.25, "ci_low": 0.0, "ci_high": 0.6,
    ...      "wilson": {"ci_low": 0.05, "ci_high": 0.7}}
    >>> headline_table({"families": {"f": {"path_exposure": e, "pop_exposure": e}}}).column(
    ...     "path_exposure").to_pylist()
    [0.25]
    """
    fams = summary.get("families") or {}
    order = sorted(fams, key=lambda f: (f != "any", f))
    cols: dict[str, list[Any]] = {"family": order, "traceroutes": []}
    for kind in ("path", "pop"):
        for c in ("transiting", "exposure", "ci_low", "ci_high", "wilson_low", "wilson_high"):
            cols[f"{kind}_{c}"] = []
    for fam in order:
        entry = fams[fam]
        cols["traceroutes"].append(entry["path_exposure"]["traceroutes"])
        for kind in ("path", "pop"):
            e = entry[f"{kind}_exposure"]
            w = e.get("wilson") or {}
            cols[f"{kind}_transiting"].append(e["transiting"])
            cols[f"{kind}_exposure"].append(e["estimate"])
            cols[f"{kind}_ci_low"].append(e["ci_low"])
            cols[f"{kind}_ci_high"].append(e["ci_high"])
            cols[f"{kind}_wilson_low"].append(w.get("ci_low"))
            cols[f"{kind}_wilson_high"].append(w.get("ci_high"))
    types = {k: (pa.string() if k == "family" else pa.int64() if k.endswith(("transiting", "traceroutes"))
                 else pa.float64()) for k in cols}
    return pa.table({k: pa.array(v, types[k]) for k, v in cols.items()})


def drop_table(
    *, ingest: dict[str, Any], annotate: dict[str, Any], summary: dict[str, Any]
) -> pa.Table:
    """Every count of records set aside or left unresolved, by pipeline stage and reason.

    Stages: ``ingest`` (``ingest.json`` drops, with their meaning), ``annotate`` (the
    ``unresolved:*`` hop counts of ``annotate.json``) and ``analyze`` (the drops of
    ``exposure.json``).

    Returns
    -------
    pyarrow.Table
        ``stage, reason, count, meaning``.

    Examples
    --------
    >>> drop_table(ingest={"drops": {"invalid_json": 2}, "drop_reasons": {"invalid_json": "bad"}},
    ...            annotate={"counts": {"hops": 9, "unresolved:private": 3}},
    ...            summary={"drops": {}}).to_pylist()  # doctest: +NORMALIZE_WHITESPACE
    [{'stage': 'ingest', 'reason': 'invalid_json', 'count': 2, 'meaning': 'bad'},
     {'stage': 'annotate', 'reason': 'unresolved:private', 'count': 3,
      'meaning': 'hop replies not resolved to an AS'}]
    """
    rows: list[dict[str, Any]] = []
    meanings = ingest.get("drop_reasons") or {}
    for reason, n in sorted((ingest.get("drops") or {}).items()):
        rows.append({"stage": "ingest", "reason": reason, "count": int(n), "meaning": meanings.get(reason, "")})
    for reason, n in sorted((annotate.get("counts") or {}).items()):
        if reason.startswith("unresolved:"):
            rows.append({"stage": "annotate", "reason": reason, "count": int(n),
                         "meaning": "hop replies not resolved to an AS"})
    for reason, n in sorted((summary.get("drops") or {}).items()):
        rows.append({"stage": "analyze", "reason": reason, "count": int(n), "meaning": _analyze_meaning(reason)})
    schema = pa.schema([("stage", pa.string()), ("reason", pa.string()), ("count", pa.int64()),
                        ("meaning", pa.string())])
    return pa.Table.from_pylist(rows, schema=schema)


def _analyze_meaning(reason: str) -> str:
    """What an ``exposure.json`` drop count is: set aside, re-attributed (kept), or a loop explained.

    >>> _analyze_meaning("owner-link-mate"), _analyze_meaning("loop-artefact")
    ('hops kept, re-attributed to their router owner (rule link-mate)', 'traceroutes whose origin-AS path loops but whose owner-AS path does not')
    """
    if reason.startswith("owner-"):
        return f"hops kept, re-attributed to their router owner (rule {reason[len('owner-'):]})"
    if reason == "loop-artefact":
        return "traceroutes whose origin-AS path loops but whose owner-AS path does not"
    if reason.startswith("loop-artefact-"):
        return f"of those, traceroutes with a hop re-attributed by rule {reason[len('loop-artefact-'):]}"
    return "hop rows set aside or making no path node"


def snapshot_table(annotate: dict[str, Any]) -> pa.Table:
    """The reference-data kinds of the campaign's snapshot with their data dates and sources.

    Returns
    -------
    pyarrow.Table
        ``kind, date, sources`` (number of source files), one row per kind.
    """
    snap = annotate.get("snapshot")
    kinds = snap.get("kinds", {}) if isinstance(snap, dict) else {}
    rows = [{"kind": k, "date": v.get("date"), "sources": len(v.get("sources") or [])}
            for k, v in sorted(kinds.items())]
    schema = pa.schema([("kind", pa.string()), ("date", pa.string()), ("sources", pa.int64())])
    return pa.Table.from_pylist(rows, schema=schema)


#: The file formats :func:`report_figures` can render besides the PNG the page embeds.
FIGURE_FORMATS = ("png", "svg", "pdf")


def figure_png(draw: Callable[[Axes], Any], *, size: tuple[float, float] = (6.4, 4.2), dpi: int = 100) -> bytes:
    """PNG bytes of a figure drawn by ``draw(ax)`` on a fresh Agg canvas (no pyplot state)."""
    return figure_files(draw, size=size, dpi=dpi, formats=("png",))["png"]


def figure_files(draw: Callable[[Axes], Any], *, size: tuple[float, float] = (6.4, 4.2), dpi: int = 100,
                 formats: Sequence[str] = FIGURE_FORMATS) -> dict[str, bytes]:
    """One figure drawn by ``draw(ax)`` (fresh Agg canvas, no pyplot state), saved in ``formats``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    draw(fig.add_subplot())
    out = {}
    for fmt in formats:
        buf = io.BytesIO()
        # fixed metadata: the same figure gives the same bytes (no creation date inside)
        meta = {"Date": None} if fmt == "svg" else {"CreationDate": None} if fmt == "pdf" else None
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=meta)
        out[fmt] = buf.getvalue()
    return out


def report_figures(data: CampaignData, *, files: dict[str, dict[str, bytes]] | None = None
                   ) -> list[tuple[str, str, bytes, bool]]:
    """The report's figures: ``(id, caption, png bytes, full_width)`` each.

    With ``files`` (a dict), each figure is also rendered as SVG and PDF, stored there by id
    (``{id: {"png": ..., "svg": ..., "pdf": ...}}``) for files a paper can use.
    """
    families = [f for f in (data.summary.get("families") or {}) if f != "any"]
    freq = plots.time_bins(data.paths)
    flagged_probes = plots.flagged_probes(data.paths)
    pops = plots.pop_counts(data.crossings)
    country = data.summary.get("pop_country", "US")
    us_pops = data.pops.filter(pc.fill_null(pc.equal(data.pops.column("ixp_country"), country), False))
    us_entries = data.entries.filter(pc.fill_null(pc.equal(data.entries.column("pop_country"), country), False)) \
        if data.entries is not None else None
    figs: list[tuple[str, str, Callable[[Axes], Any], tuple[float, float], bool]] = [
        ("exposure-by-country", "Path exposure to any flagged carrier by the probe's country, "
         "with the 95% interval named in the legend (n = traceroutes; * = country derived from "
         "the probe's address).",
         lambda ax: plots.plot_exposure_by_country(data.path_exposure, family="any", ax=ax), (6.4, 4.2), False),
        ("exposure-over-time", f"Path exposure per {freq} to any flagged family (with its Wilson "
         "interval) and to each family; bins without traceroutes are gaps; transit start/stop "
         "events per (probe, destination) are marked with their counts.",
         lambda ax: plots.plot_exposure_over_time(data.paths, freq=freq, events=data.change_events,
                                                  families=families, ax=ax),
         (6.4, 4.2), False),
        ("top-pops", "Flagged PoPs (IXP, city) by traceroutes entering a flagged carrier there; "
         "hatched: location claim inconsistent with the speed of light.",
         lambda ax: plots.plot_top_pops(pops, ax=ax), (6.4, 4.2), False),
        ("rtt-vs-distance", "Minimum RTT at each crossing against the probe-to-PoP distance; "
         "points below the line are physically impossible for the claimed city.",
         lambda ax: plots.plot_rtt_vs_distance(data.crossings, ax=ax), (6.4, 4.2), False),
        ("flagged-graph", "Paths into and out of the flagged carriers: the ASes and IXPs paths enter "
         "them from (left), the flagged ASes by family (middle; arcs: paths between them) and where "
         "paths leave them (right); edge width: traceroutes, the heaviest neighbours drawn and the "
         "rest counted. The whole graph is graph/as_graph.graphml.",
         lambda ax: plots.plot_flagged_graph(data.graph, ax=ax), (12.8, 6.0), True),
        ("probe-map", "Probes (red: at least one path through a flagged carrier), IXPs seen on "
         "the paths (stars: with a flagged member) and private-interconnect PoPs of the flagged "
         "families (diamonds), on coastlines and borders; IXPs and PoPs without coordinates are "
         "placed at their city (PeeringDB facilities, else IPmap router cities), and what cannot be placed "
         "is counted on the map.",
         lambda ax: plots.plot_probe_map(data.probes, data.pops, entries=data.entries, places=data.places,
                                         flagged_probes=flagged_probes, ax=ax),
         (12.8, 5.6), True),
        ("pop-map", f"IXPs in {country} seen on the paths and the flagged families' PoPs there "
         "(stars: IXPs with a flagged member; diamonds: private interconnects).",
         lambda ax: plots.plot_probe_map(data.probes, us_pops, entries=us_entries, places=data.places,
                                         flagged_probes=flagged_probes, extent=plots.US_EXTENT,
                                         label_pops=True, ax=ax),
         (12.8, 6.4), True),
    ]
    out = []
    for fid, cap, draw, size, full in figs:
        rendered = figure_files(draw, size=size, formats=FIGURE_FORMATS if files is not None else ("png",))
        if files is not None:
            files[fid] = rendered
        out.append((fid, cap, rendered["png"], full))
    return out


def render_html(data: CampaignData, *, figures: Sequence[tuple[str, str, bytes, bool]] | None = None) -> str:
    """The report as one HTML string (figures from :func:`report_figures` unless given)."""
    from analysis.geo import KM_PER_MS_RTT

    s = data.summary
    figs = report_figures(data) if figures is None else figures
    e = html.escape
    tab = functools.partial(table_html, names=as_names(data))
    parts: list[str] = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>pathexp report: {e(str(s.get('campaign', data.campaign.name)))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Transit exposure report: campaign <code>{e(str(s.get('campaign', data.campaign.name)))}</code></h1>",
        f'<p class="meta">Generated {e(dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))} '
        f"by pathexp from <code>{e(str(data.campaign.root))}</code>. "
        f"Reference-data snapshot <code>{e(str(s.get('snapshot') or 'unknown'))}</code>.</p>",
        "<h2>Headline</h2>",
        _scope_html(s),
        _headline_html(s),
        _counts_html(data),
        "<h2>Figures</h2>", '<div class="figs">',
    ]
    for fid, caption, png, full in figs:
        b64 = base64.b64encode(png).decode("ascii")
        parts.append(
            f'<figure id="{e(fid)}" class="{"full" if full else "half"}">'
            f'<img alt="{e(caption)}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{e(caption)}</figcaption></figure>"
        )
    parts.append("</div>")
    parts += ["<h2>Method</h2>", _method_html(s, KM_PER_MS_RTT)]
    parts += ["<h2>Reference data</h2>", _snapshot_html(data.annotate, s)]
    parts += ["<h2>Records set aside and unresolved</h2>",
              "<p>Every record the pipeline set aside is counted by reason; hops whose address "
              "resolved to no AS make no path node (they are bridged, not guessed).</p>",
              tab(drop_table(ingest=data.ingest, annotate=data.annotate, summary=s),
                          empty="nothing was set aside")]
    parts += _crossing_sections(data, tab)
    parts += _control_plane_html(s, tab)
    hosted = (s.get("destination_hosted") or {})
    if hosted:
        rows = [{"family": f, "traceroutes": e["traceroutes"], "destination hosted": e["hosted"],
                 "share": e["estimate"], "ci_low": e["ci_low"], "ci_high": e["ci_high"]} for f, e in hosted.items()]
        parts += ["<h2>Destinations hosted by flagged families</h2>",
                  "<p>Beside transit: the share of the traceroutes in scope whose destination a flagged "
                  "family hosts (its registry ASN, a sibling, or its static router space), with a cluster "
                  "bootstrap interval over the destinations, each weighing its traceroutes (the Wilson "
                  "interval over the destinations where they all agree); where each such destination is "
                  "located says whether it is a US facility.</p>",
                  tab(pa.Table.from_pylist(rows), empty="none"),
                  tab(pa.Table.from_pylist(hosted.get("any", {}).get("destinations", [])),
                             empty="no destination in a flagged network")]
    if data.destinations is not None:
        parts += [f"<h2>Destinations in scope ({data.destinations.num_rows:,})</h2>",
                  "<p>Per destination: its AS, where it is and the evidence, and the share of its "
                  "traceroutes transiting any flagged family (cluster bootstrap interval over its probes; "
                  "the Wilson interval over its probes where they cannot differ).</p>",
                  tab(data.destinations.drop_columns([c for c in ("method", "dst_as_name")
                                                      if c in data.destinations.column_names]
                                                     ).slice(0, MAX_CROSSING_ROWS),
                             empty="no destination in scope")]
    parts.append("</body></html>")
    return "\n".join(parts)


def as_names(data: CampaignData) -> dict[int, str]:
    """AS number -> name (organisation, else AS name) of every AS on the campaign's paths.

    From the AS/IXP graph's ``org`` node attribute (the annotation's as2org organisation or
    ``asnames`` name), completed by the destinations table's ``dst_as_name``.
    """
    from analysis.graph import as_names as graph_names

    names = graph_names(data.graph)
    d = data.destinations
    if d is not None and {"dst_asn", "dst_as_name"} <= set(d.column_names):
        for a, n in zip(d.column("dst_asn").to_pylist(), d.column("dst_as_name").to_pylist(), strict=True):
            if a is not None and n:
                names.setdefault(int(a), str(n))
    return names


def table_html(table: pa.Table, *, empty: str = "no rows", names: Mapping[int, str] | None = None) -> str:
    """An HTML ``<table>`` of an Arrow table (values escaped, numbers right-aligned).

    With ``names`` (:func:`as_names`), every AS number (columns ending in ``asn``, and
    ``AS<n>`` nodes) is followed by its name.

    Examples
    --------
    >>> print(table_html(pa.table({"asn": [4134, 1], "node": ["AS4134", "IXP:pdb:1"]}),
    ...                  names={4134: "CHINANET-BACKBONE"}))  # doctest: +NORMALIZE_WHITESPACE
    <table><tr><th>asn</th><th>node</th></tr><tr><td class=num>4134 CHINANET-BACKBONE</td><td>AS4134
    CHINANET-BACKBONE</td></tr><tr><td class=num>1</td><td>IXP:pdb:1</td></tr></table>
    """
    if table.num_rows == 0:
        return f"<p class=meta>{html.escape(empty)}.</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.column_names)
    body = []
    for row in table.to_pylist():
        cells = []
        for col, v in row.items():
            num = isinstance(v, (int, float)) and not isinstance(v, bool)
            text = _pct(v) if col in _SHARE_COLUMNS and isinstance(v, float) else _fmt(v, ident=_is_identifier(col))
            if names:
                text = _with_as_name(col, v, text, names)
            cells.append(f"<td{' class=num' if num else ''}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


# ---------------------------------------------------------------------------- helpers
_CSS = """
body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1300px;color:#222;font-size:14px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:28px}
code{background:#f3f3f3;padding:0 3px}
table{border-collapse:collapse;margin:8px 0;font-size:12px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}
.meta{color:#555}.figs{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;border:1px solid #ddd;padding:4px;box-sizing:border-box}
figure.half{width:calc(50% - 6px)}figure.full{width:100%}
figure img{width:100%;height:auto;display:block}figcaption{font-size:12px;color:#444;margin-top:4px}
.headline td.big{font-size:15px;font-weight:bold}
"""


#: Table columns holding shares: shown as percentages, like every figure of the report.
_SHARE_COLUMNS = frozenset({"exposure", "ci_low", "ci_high", "share", "estimate", "hegemony_share"})


def _with_as_name(col: str, v: Any, text: str, names: Mapping[int, str]) -> str:
    if col.endswith("asns") and isinstance(v, list):
        return ", ".join(f"{a} {names[a]}" if a in names else str(a) for a in v)
    if col.endswith("asn") and isinstance(v, int) and not isinstance(v, bool) and v in names:
        return f"{text} {names[v]}"
    if isinstance(v, str) and v.startswith("AS") and v[2:].isdigit() and int(v[2:]) in names:
        return f"{text} {names[int(v[2:])]}"
    return text


def _pct(v: Any) -> str:
    if v is None or v != v:
        return "–"
    return f"{100.0 * float(v):.2f}%"


def _interval(lo: Any, hi: Any) -> str:
    return f"[{_pct(lo)}, {_pct(hi)}]"


def _scope_html(s: dict[str, Any]) -> str:
    """The sentence the headline opens with: which traceroutes the figures are about."""
    scope = s.get("scope")
    if not scope:
        return "<p class=meta>Scope: every traceroute (this analysis predates destination scoping).</p>"
    unknown = scope.get("unknown_destinations") or {}
    extra = ""
    if unknown.get("count"):
        listed = ", ".join(unknown.get("addresses", [])[:10])
        extra = (f" {unknown['count']:,} destinations could not be located: "
                 f"{html.escape(listed)}{', ...' if unknown['count'] > 10 else ''}.")
    meta = "; ".join(x for x in (
        (s.get("probe_metadata") or {}).get("status"),
        derived_countries_line((s.get("probe_metadata") or {}).get("derived_countries"))) if x)
    warn = f"<p class=meta><b>Vantage points:</b> {html.escape(meta)}.</p>" if meta else ""
    stale = stale_lines(((s.get("annotate") or {}).get("reference_dates")) or {}, command="pathexp annotate")
    warn += "".join(f"<p class=meta><b>Reference data:</b> {html.escape(line)}.</p>" for line in stale)
    return f"<p><b>Scope:</b> {html.escape(scope.get('sentence', ''))}.{extra}</p>{warn}"


def _headline_html(s: dict[str, Any]) -> str:
    t = headline_table(s).to_pylist()
    country = html.escape(str(s.get("pop_country", "US")))
    method = html.escape(str((s.get("method") or {}).get("ci", "")))
    rows = [
        '<table class="headline"><tr><th>family</th><th>traceroutes</th>'
        "<th>path exposure</th><th>95% interval (bootstrap)</th><th>Wilson</th><th>transiting</th>"
        f"<th>PoP exposure ({country})</th><th>95% interval (bootstrap)</th><th>Wilson</th><th>transiting</th></tr>"
    ]
    for r in t:
        rows.append(
            f"<tr><td>{html.escape(r['family'])}</td><td class=num>{r['traceroutes']:,}</td>"
            f"<td class='num big'>{_pct(r['path_exposure'])}</td>"
            f"<td class=num>{_interval(r['path_ci_low'], r['path_ci_high'])}</td>"
            f"<td class=num>{_interval(r['path_wilson_low'], r['path_wilson_high'])}</td>"
            f"<td class=num>{r['path_transiting']:,}</td>"
            f"<td class='num big'>{_pct(r['pop_exposure'])}</td>"
            f"<td class=num>{_interval(r['pop_ci_low'], r['pop_ci_high'])}</td>"
            f"<td class=num>{_interval(r['pop_wilson_low'], r['pop_wilson_high'])}</td>"
            f"<td class=num>{r['pop_transiting']:,}</td></tr>"
        )
    rows.append(f"</table><p class=meta>Intervals: {method}.</p>")
    upper = [(fam, u) for fam, e in (s.get("families") or {}).items()
             if (u := (e.get("pop_exposure") or {}).get("possibly"))
             and u.get("transiting", 0) > (e.get("pop_exposure") or {}).get("transiting", 0)]
    if upper:
        parts = "; ".join(f"{html.escape(fam)} {_pct(u['estimate'])} ({_interval(u['ci_low'], u['ci_high'])})"
                          for fam, u in upper)
        bounds = "; ".join(f"{html.escape(fam)} {_interval(b['ci_low'], b['ci_high'])}" for fam, e in
                           (s.get("families") or {}).items() if (b := (e.get("pop_exposure") or {}).get("bounds"))
                           and fam in dict(upper))
        rows.append(f"<p class=meta><b>Upper bound of PoP exposure ({country})</b>, counting also the "
                    f"crossings whose PoP could not be located but that the speed of light does not keep "
                    f"out of {country}: {parts}. The exposure lies between the located and the possible "
                    f"share; with both intervals (from the located one's low end to the possible one's "
                    f"high end): {bounds}.</p>")
    return "".join(rows)


def control_plane_table(summary: dict[str, Any]) -> pa.Table:
    """Per family: data-plane (traceroute) path exposure beside control-plane (BGP) exposure,
    the per-traceroute agreement counts and the BGP signals (``exposure.json``'s ``control_plane``)."""
    cp = summary.get("control_plane") or {}
    rows = []
    for fam, e in (cp.get("families") or {}).items():
        data = ((summary.get("families") or {}).get(fam) or {}).get("path_exposure") or {}
        c, a = e.get("control_plane_exposure") or {}, e.get("agreement") or {}
        sig = e.get("signals") or {}
        rows.append({
            "family": fam, "traceroute path exposure": _pct(data.get("estimate")),
            "interval (traceroutes)": _interval(data.get("ci_low"), data.get("ci_high")),
            "BGP path exposure": _pct(c.get("estimate")), "interval (over peers)": _interval(c.get("ci_low"),
                                                                                            c.get("ci_high")),
            **{f"traceroutes: {k}": a.get(k) for k in ("agree", "traceroute-only", "bgp-only", "no-bgp-view")},
            "BGP signals": sum(sig.values()), "signals lined up with change events": e.get("signals_lined_up"),
        })
    return pa.Table.from_pylist(rows)


def _control_plane_html(s: dict[str, Any], tab: Callable[..., str]) -> list[str]:
    """The control-plane section (nothing when the snapshot held no BGP data and no VRPs)."""
    cp = s.get("control_plane")
    if not cp:
        return []
    e = html.escape
    out = ["<h2>Control plane (BGP)</h2>"]
    if cp.get("families"):
        period = cp.get("bgp_period") or [None, None]
        when = " to ".join(dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
                           for t in period if t is not None)
        overlap = f" Routes used: {e(str(cp['bgp_view']))}." if cp.get("periods_overlap") and cp.get("bgp_view") \
            else "" if cp.get("periods_overlap") else (
            " <b>The BGP data do not overlap the measurement period</b>: the comparison is with "
            "routes of another time.")
        out += [f"<p>BGP data: {e(str(cp.get('kind')))} in snapshot <code>{e(str(cp.get('snapshot')))}</code>, "
                f"{e(when)} UTC; {cp.get('peers', 0):,} collector peers, {cp.get('paths', 0):,} distinct AS paths "
                f"toward {cp.get('prefixes', 0):,} prefixes covering {cp.get('covered', 0):,} of the "
                f"{cp.get('destinations', 0):,} destinations in scope.{overlap} BGP path exposure: "
                f"{e(str(cp.get('method', '')))}. Per traceroute, the BGP paths toward its destination's prefix "
                "from the probe's AS (and its neighbours, with AS relationships) either agree with the "
                "traceroute's flagged transit, show it only in the traceroute, only in BGP, or do not exist. "
                f"Signals (valley-free violations, more-specifics, new origins or transits) on prefixes in "
                f"{e(str(cp.get('signals_country') or 'any country'))}; one lines up with the traceroutes "
                "when a change event of the same family starts around its first announcement. "
                "Every signal and its evidence: <code>exposure/bgp_signals.csv</code>.</p>",
                tab(control_plane_table(s), empty="no BGP data")]
    if cp.get("rov"):
        out += ["<p>Route origin validation (RFC 6811) of each destination's route (its pfx2as prefix "
                "and origin) against the snapshot's VRPs: "
                + ", ".join(f"{e(k)} {v:,}" for k, v in cp["rov"].items())
                + " (per destination: the <code>rov</code> column below)."
                + _rov_date_note(cp.get("rov_data") or {}) + "</p>"]
    return out


def _rov_date_note(d: dict[str, Any]) -> str:
    """How far the VRPs are from the measurements (RPKI states change: ROAs are added and expire)."""
    if not d.get("date"):
        return " The VRP data carry no date: the states may be of another time than the measurements."
    gap = d.get("gap_days")
    where = "within the measurement period" if gap == 0 else (
        f"{abs(gap):,} days {'before' if gap < 0 else 'after'} the measurements" if gap is not None else "")
    warn = " <b>More than a year away: the states may not be those at measurement time.</b>" if d.get("stale") else ""
    return f" VRPs of {html.escape(str(d['date']))}{', ' + where if where else ''}.{warn}"


def _counts_html(data: CampaignData) -> str:
    s = data.summary
    items = [
        ("traceroutes", s.get("traceroutes")), ("probes", s.get("probes")),
        ("traceroutes through any flagged carrier", s.get("transiting_any")),
        ("traceroutes crossing an IXP", s.get("ixp_crossing_traceroutes")),
        ("flagged PoP crossings", s.get("pop_crossings")),
        ("detours through mainland China", s.get("detours")), ("paths with loops", s.get("loops")),
        ("results stored (ingest)", data.ingest.get("results_stored")),
    ]
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td class=num>{_fmt(v)}</td></tr>" for k, v in items)
    return f"<table>{cells}</table>"


def _is_identifier(column: str) -> bool:
    """Columns holding ids (probe, AS, measurement numbers, hop index): no thousands separator."""
    return column.endswith(("_id", "asn", "asns")) or column in ("hop", "node")


def _fmt(v: Any, *, ident: bool = False) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v) if ident else f"{v:,}"
    if isinstance(v, float):
        return "–" if v != v else f"{v:,.2f}"
    if isinstance(v, list):
        return ", ".join(_fmt(x, ident=ident) for x in v)
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    return str(v)


def _method_html(s: dict[str, Any], km_per_ms: float) -> str:
    m = s.get("method") or {}
    e = html.escape
    return (
        "<ul>"
        f"<li><b>Path exposure</b>: {e(str(m.get('path_exposure', '')))}.</li>"
        f"<li><b>PoP exposure</b>: {e(str(m.get('pop_exposure', '')))}.</li>"
        f"<li><b>Intervals</b>: {e(str(m.get('ci', '')))}. The bootstrap resamples whole probes, "
        "so traceroutes of one probe are not treated as independent.</li>"
        "<li><b>Paths</b>: each hop is represented by its first reply; a hop becomes a path node "
        "when its address is public and resolves to an AS (CAIDA prefix-to-AS, RIR delegations), "
        "or lies on an IXP peering LAN (PeeringDB, CAIDA, PCH), followed by the member AS holding "
        "that interface. Timeouts, private and unresolved addresses make no node.</li>"
        "<li><b>Crossings</b>: each entry into a flagged family (the registry in "
        "<code>analysis/flagged_carriers.toml</code>, with as2org siblings) is a PoP crossing; it is "
        "located at an IXP when the entering hop or the hop right before it is on the IXP's LAN, "
        "otherwise it is a private interconnect (or unknown after an unresponsive hop).</li>"
        f"<li><b>Speed of light</b>: a crossing's claimed city is consistent only if the great-circle "
        f"distance from the probe is at most {km_per_ms:.2f} km per ms of minimum RTT (2/3 c, "
        "half the round trip; Gueye et al., IEEE/ACM ToN 2006); inconsistent claims do not count "
        "towards PoP exposure. Unknown: no probe or city location.</li>"
        "<li><b>Detours</b>: a flagged hop registered in CN whose RTT is large enough to reach "
        "Beijing, Shanghai or Guangzhou from the probe, on a path between two non-Chinese endpoints.</li>"
        "</ul>"
    )


def _snapshot_html(annotate: dict[str, Any], s: dict[str, Any]) -> str:
    raw = annotate.get("snapshot")
    snap: dict[str, Any] = raw if isinstance(raw, dict) else {}
    reg = annotate.get("registry") or {}
    head = (
        f"<p>Snapshot <code>{html.escape(str(snap.get('id', s.get('snapshot') or 'unknown')))}</code>"
        f" (digest <code>{html.escape(str(snap.get('digest', '–'))[:16])}</code>); "
        f"flagged-carrier registry sha256 <code>{html.escape(str(reg.get('sha256', '–'))[:16])}</code>"
        f"{' (default)' if reg.get('default') else ''}; RDAP fallback "
        f"{'on' if annotate.get('online') else 'off'}. Dates are the data's own dates "
        "(blank when the source files carry none).</p>"
    )
    counts = annotate.get("counts") or {}
    resolved = ", ".join(f"{html.escape(k)} {v:,}" for k, v in sorted(counts.items()) if k.startswith("resolved:"))
    tail = f"<p>Hop replies resolved: {resolved or '–'}.</p>"
    return head + table_html(snapshot_table(annotate), empty="no snapshot recorded (annotate.json missing)") + tail


def _crossing_sections(data: CampaignData, tab: Callable[..., str]) -> list[str]:
    cr = data.crossings
    from analysis import metrics

    out = ["<h2>Crossings</h2>"]
    entries = data.entries  # exposure/pops, written by analyze from the same in-scope paths
    if entries is None and "pop_crossings" in data.paths.column_names:
        entries = metrics.crossing_locations(data.paths)
    if entries is not None:
        entries = entries.sort_by([("traceroutes", "descending"), ("family", "ascending")])
        out += ["<h3>Where the flagged families are entered (IXPs and private interconnects)</h3>",
                "<p>Every entry point with its place and the evidence for it (<code>ixp</code>: the IXP's "
                "city; <code>netfac-shared</code>: a facility both networks share; <code>carrier-pops</code>: "
                "the carrier's own PoPs; <code>netfac-far-side</code>: the facilities of the network crossed "
                "from; <code>facility-cities</code>: the only city (or country) with any network's facility "
                "inside the discs; <code>+rtt-discs</code>: kept inside the speed-of-light discs of "
                "every probe that saw the router), and the speed-of-light verdicts of its crossings.</p>",
                tab(entries.slice(0, MAX_CROSSING_ROWS), empty="no flagged crossing")]
    out.append("<h3>Flagged PoPs at IXPs</h3>")
    out.append(tab(plots.pop_counts(cr), empty="no flagged crossing at an IXP"))
    if cr.num_rows:
        by_kind = cr.group_by(["kind", "family"]).aggregate([("prb_id", "count"), ("prb_id", "count_distinct")])
        by_kind = by_kind.rename_columns(["kind", "family", "crossings", "probes"]).sort_by(
            [("crossings", "descending"), ("kind", "ascending"), ("family", "ascending")])
    else:
        by_kind = pa.table({"kind": pa.array([], pa.string())})
    out += ["<h3>Crossings by kind and family</h3>", tab(by_kind, empty="no crossings")]
    cols = [c for c in ("timestamp", "prb_id", "probe_country", "dst_addr", "family", "asn", "from_asn",
                        "hop", "address", "kind", "ixp_name", "pop_city", "pop_country", "location_evidence",
                        "location_confidence", "min_rtt", "distance_km", "verdict") if c in cr.column_names]
    bad = cr.filter(pc.fill_null(pc.equal(cr.column("verdict"), "inconsistent"), False)) if cr.num_rows else cr
    out += [f"<h3>Location claims inconsistent with the speed of light ({bad.num_rows:,})</h3>",
            tab(bad.select(cols).slice(0, MAX_CROSSING_ROWS), empty="none")]
    shown = cr.select(cols).slice(0, MAX_CROSSING_ROWS)
    note = (f" (first {MAX_CROSSING_ROWS:,} of {cr.num_rows:,}; all are in paths/paths.parquet)"
            if cr.num_rows > MAX_CROSSING_ROWS else f" ({cr.num_rows:,})")
    out += [f"<h3>Individual crossings{note}</h3>", tab(shown, empty="no crossings")]
    heg = data.hegemony.slice(0, 15)
    out += ["<h3>Highest AS/IXP hegemony (IHR, trimmed mean of per-viewpoint betweenness)</h3>",
            "<p>Hegemony counts every AS and IXP on a path but the probe's own AS, the "
            "destination's AS included (as IHR does), while the exposure figures above count "
            "transit only: a network that hosts many destinations scores high here even where "
            "no traceroute transits it.</p>",
            tab(heg, empty="no paths")]
    pe = data.path_exposure
    if "grouping" in pe.column_names:
        rows = pe.filter(pc.fill_null(pc.and_(pc.equal(pe.column("grouping"), "source_country"),
                                              pc.equal(pe.column("family"), "any")), False))
        keep = [c for c in ("group", "traceroutes", "probes", "transiting", "exposure", "ci_low", "ci_high",
                            "country_basis") if c in rows.column_names]
        rows = rows.select(keep).sort_by([("traceroutes", "descending"), ("group", "ascending")])
        out += ["<h2>Exposure by source country</h2>",
                "<p>Any flagged family, per country of the probes (<code>country_basis</code>: "
                "whether the country is the probes' own metadata or derived from their addresses).</p>",
                tab(rows, empty="no source country")]
    ev = data.change_events
    note = (f" (first {MAX_CROSSING_ROWS:,} of {ev.num_rows:,}; all are in exposure/change_events.csv)"
            if ev.num_rows > MAX_CROSSING_ROWS else f" ({ev.num_rows:,})")
    out += [f"<h2>Change events{note}</h2>",
            "<p>When a (probe, destination) pair started or stopped transiting a flagged family.</p>",
            tab(ev.slice(0, MAX_CROSSING_ROWS), empty="no change event")]
    return out
