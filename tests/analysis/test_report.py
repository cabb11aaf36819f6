"""The HTML report of the demo campaign: content checked against independent counts from the
campaign's tables, and rendering checked in headless Chromium from screenshots."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from analysis import campaign_io, report
from analysis.cli import main
from probes.workspace import Campaign
from tests.analysis._demo import demo_campaign  # noqa: F401 - session fixture

_IMG = re.compile(r"<img\b[^>]*>", re.S)
_SRC = re.compile(r'src="([^"]*)"')
_WINDOW_W = 1280


@pytest.fixture(scope="module")
def written(demo_campaign: Campaign) -> Path:  # noqa: F811
    """The report written by ``pathexp report`` (the demo's own copy removed first)."""
    shutil.rmtree(demo_campaign.report_dir, ignore_errors=True)
    rc = main(["report", "--campaign", demo_campaign.name, "--workspace", str(demo_campaign.workspace)])
    assert rc == 0
    path = demo_campaign.report_html
    assert path.is_file()
    return path


# ------------------------------------------------------------------------------ content
def test_report_is_self_contained_and_every_image_is_a_png(written: Path):
    text = written.read_text(encoding="utf-8")
    imgs = _IMG.findall(text)
    assert len(imgs) == 7
    for tag in imgs:
        (src,) = _SRC.findall(tag)
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        im = Image.open(io.BytesIO(data))
        im.load()
        assert im.width >= 600 and im.height >= 400
        assert np.asarray(im.convert("L"), float).std() > 10  # not a blank picture
    # nothing fetched from elsewhere: no remote or relative resources, no scripts
    assert not re.search(r'(src|href)="(?!data:)', text)
    assert "<script" not in text and "<link" not in text and "@import" not in text


def test_every_figure_is_also_a_png_svg_and_pdf_file_beside_the_report(written: Path):
    """Files a paper can use: the page's own PNG bytes, a vector SVG, a PDF, per figure."""
    import xml.etree.ElementTree as ET

    text = written.read_text(encoding="utf-8")
    ids = re.findall(r'<figure id="([^"]+)"', text)
    embedded = {fid: base64.b64decode(_SRC.findall(tag)[0].split(",", 1)[1])
                for fid, tag in zip(ids, _IMG.findall(text), strict=True)}
    folder = written.parent / "figures"
    assert len(ids) == 7 and sorted(p.name for p in folder.iterdir()) == sorted(
        f"{fid}.{fmt}" for fid in ids for fmt in ("png", "svg", "pdf"))
    for fid in ids:
        assert (folder / f"{fid}.png").read_bytes() == embedded[fid]
        root = ET.fromstring((folder / f"{fid}.svg").read_bytes())
        assert root.tag.endswith("svg") and len(list(root.iter())) > 50  # drawn, not empty
        pdf = (folder / f"{fid}.pdf").read_bytes()
        assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")


def test_headline_numbers_match_the_paths_table(written: Path, demo_campaign: Campaign):  # noqa: F811
    text = html.unescape(written.read_text(encoding="utf-8"))
    paths = [p for p in pq.read_table(demo_campaign.paths_parquet).to_pylist() if p["in_scope"]]
    n = len(paths)
    for family in ("china-telecom", "china-unicom", "china-mobile"):
        k = sum(1 for p in paths if family in p["flagged_families"])
        row = re.search(rf"<tr><td>{family}</td><td class=num>{n:,}</td><td class='num big'>([0-9.]+)%</td>", text)
        assert row, family
        assert float(row.group(1)) == pytest.approx(100.0 * k / n, abs=0.005)
    k_any = sum(1 for p in paths if p["flagged_families"])
    assert re.search(rf"<tr><td>any</td><td class=num>{n:,}</td><td class='num big'>{100 * k_any / n:.2f}%", text)
    summary = json.loads(demo_campaign.exposure_json.read_text())
    ci = summary["families"]["any"]["path_exposure"]
    assert f"[{100 * ci['ci_low']:.2f}%, {100 * ci['ci_high']:.2f}%]" in text
    assert "cluster bootstrap over probes" in text  # the method is stated


def test_reference_snapshot_drops_and_unresolved_counts_are_reported(written: Path, demo_campaign: Campaign):  # noqa: F811
    text = html.unescape(written.read_text(encoding="utf-8"))
    ann = json.loads(demo_campaign.annotate_json.read_text())
    assert ann["snapshot"]["id"] in text
    for kind, info in ann["snapshot"]["kinds"].items():
        date = info["date"] or "–"
        assert re.search(rf"<tr><td>{re.escape(kind)}</td><td>{re.escape(date)}</td>", text), kind
    unresolved = {k: v for k, v in ann["counts"].items() if k.startswith("unresolved:")}
    assert unresolved  # the synthetic world has private and unrouted hops
    for reason, count in unresolved.items():
        assert f"<td>annotate</td><td>{reason}</td><td class=num>{count:,}</td>" in text
    analysis_drops = json.loads(demo_campaign.exposure_json.read_text())["drops"]
    for reason, count in analysis_drops.items():
        assert f"<td>analyze</td><td>{reason}</td><td class=num>{count:,}</td>" in text


def test_entry_points_change_events_and_source_countries_are_in_the_report(written: Path,
                                                                          demo_campaign: Campaign):  # noqa: F811
    text = html.unescape(written.read_text(encoding="utf-8"))
    paths = [p for p in pq.read_table(demo_campaign.paths_parquet).to_pylist() if p["in_scope"]]
    # private interconnects are entry points too: the largest located one, counted here
    per_place: Counter = Counter()
    for p in paths:
        for c in p["pop_crossings"]:
            if c["kind"] == "private interconnect" and c["pop_city"]:
                per_place[(c["family"], c["pop_city"], c["location_evidence"])] += 1
    (fam, city, evidence), n = per_place.most_common(1)[0]
    assert "Where the flagged families are entered (IXPs and private interconnects)" in text
    assert (f"<td>{fam}</td><td>private interconnect</td><td>–</td><td>–</td><td>{city}</td>" in text
            and evidence in text and f"{n:,}" in text)
    events = pq.read_table(demo_campaign.exposure_table("change_events"))
    assert events.num_rows and re.search(rf"<h2>Change events \((first \d+ of )?{events.num_rows:,}[);]", text)
    countries = {p["probe_country"] for p in paths if p["probe_country"]}
    assert "<h2>Exposure by source country</h2>" in text
    assert all(f"<tr><td>{cc}</td>" in text for cc in countries)
    # hegemony counts destination ASes, transit exposure does not: the report says so by the table
    heg = text[text.index("Highest AS/IXP hegemony"):]
    assert "the destination's AS included" in heg[: heg.index("<table")]


def test_pop_table_counts_match_an_independent_count(written: Path, demo_campaign: Campaign):  # noqa: F811
    text = html.unescape(written.read_text(encoding="utf-8"))
    paths = [p for p in pq.read_table(demo_campaign.paths_parquet).to_pylist() if p["in_scope"]]
    per_pop: dict[tuple[str, str], set] = {}
    bad: Counter = Counter()
    for p in paths:
        key = (p["msm_id"], p["prb_id"], p["timestamp"])
        for c in p["pop_crossings"]:
            if c["kind"] == "ixp":
                per_pop.setdefault((c["ixp_id"], c["ixp_name"]), set()).add(key)
            if c["verdict"] == "inconsistent":
                bad[key] += 1
    assert per_pop, "the demo has flagged crossings at IXPs"
    section = text.split("<h3>Flagged PoPs at IXPs</h3>", 1)[1].split("<h3>", 1)[0]
    rows = re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td>.*?</tr>", section)
    assert len(rows) == len({k for k in per_pop})
    for (ixp_id, name), trs in per_pop.items():
        m = re.search(rf"<tr><td>{re.escape(ixp_id)}</td><td>{re.escape(name)}</td>(.*?)</tr>", section)
        assert m, ixp_id
        nums = re.findall(r"<td class=num>([0-9,]+)</td>", m.group(1))
        assert int(nums[0].replace(",", "")) == len(trs)  # traceroutes column
    n_bad = sum(bad.values())
    assert f"Location claims inconsistent with the speed of light ({n_bad:,})" in text


def test_report_of_an_unanalysed_campaign_is_a_one_line_error(tmp_path: Path, capsys):
    rc = main(["report", "--campaign", "nothing", "--workspace", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "has not been analysed" in err and "pathexp analyze" in err and err.count("\n") == 1


def test_write_report_to_another_file(demo_campaign: Campaign, tmp_path: Path):  # noqa: F811
    out = campaign_io.write_report(demo_campaign, out=tmp_path / "r.html")
    assert out == tmp_path / "r.html"
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_table_helpers():
    summary = {"families": {
        "china-telecom": {"path_exposure": {"traceroutes": 10, "transiting": 2, "estimate": 0.2, "ci_low": 0.1,
                                            "ci_high": 0.3, "wilson": {"ci_low": 0.05, "ci_high": 0.5}},
                          "pop_exposure": {"traceroutes": 10, "transiting": 1, "estimate": 0.1, "ci_low": 0.0,
                                           "ci_high": 0.2, "wilson": {"ci_low": 0.02, "ci_high": 0.4}}},
        "any": {"path_exposure": {"traceroutes": 10, "transiting": 3, "estimate": 0.3, "ci_low": 0.2,
                                  "ci_high": 0.4, "wilson": {}},
                "pop_exposure": {"traceroutes": 10, "transiting": 1, "estimate": 0.1, "ci_low": 0.0,
                                 "ci_high": 0.2, "wilson": {}}},
    }}
    t = report.headline_table(summary)
    assert t.column("family").to_pylist() == ["any", "china-telecom"]
    assert t.column("path_transiting").to_pylist() == [3, 2]
    assert t.column("pop_wilson_high").to_pylist() == [None, 0.4]
    snap = report.snapshot_table({"snapshot": {"kinds": {"pfx2as": {"date": "2026-03-02", "sources": ["a", "b"]}}}})
    assert snap.to_pylist() == [{"kind": "pfx2as", "date": "2026-03-02", "sources": 2}]
    assert report.snapshot_table({}).num_rows == 0
    assert "<td>a &lt;b&gt;</td>" in report.table_html(snap.set_column(0, "kind", [["a <b>"]]).select([0]))
    import pyarrow as pa

    ids = report.table_html(pa.table({"prb_id": [1000798], "asn": [4134], "traceroutes": [12345]}))
    assert "<td class=num>1000798</td><td class=num>4134</td><td class=num>12,345</td>" in ids


# ------------------------------------------------------------------------------ browser
def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium not installed (tests/install-system-deps.sh installs it)")
    return exe


def _run_chromium(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--hide-scrollbars", "--force-device-scale-factor=1", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


_PROBE_JS = """<script>window.addEventListener('load', function () {
  var r = [];
  document.querySelectorAll('img').forEach(function (i) {
    var b = i.getBoundingClientRect();
    r.push({x: b.left + scrollX, y: b.top + scrollY, w: b.width, h: b.height,
            nw: i.naturalWidth, nh: i.naturalHeight, complete: i.complete});
  });
  var p = document.createElement('pre'); p.id = 'probe-rects';
  p.textContent = JSON.stringify({imgs: r, height: document.documentElement.scrollHeight});
  document.body.appendChild(p);
});</script>"""


@pytest.mark.browser
def test_report_renders_in_headless_chromium(written: Path, tmp_path: Path):
    exe = _chromium()
    text = written.read_text(encoding="utf-8")
    # 1. where the figures are and whether they decoded (naturalWidth 0 = broken image)
    probe = tmp_path / "probe.html"
    probe.write_text(text.replace("</body>", _PROBE_JS + "</body>"), encoding="utf-8")
    dom = _run_chromium(exe, tmp_path / "p1", "--window-size=1280,4000", "--dump-dom", probe.as_uri()).stdout
    m = re.search(r'<pre id="probe-rects">(.*?)</pre>', dom, re.S)
    assert m, "the page did not finish loading"
    info = json.loads(html.unescape(m.group(1)))
    imgs = info["imgs"]
    assert len(imgs) == 7
    for im in imgs:
        assert im["complete"] and im["nw"] > 0 and im["nh"] > 0, "broken image"
        assert im["w"] > 300 and im["h"] > 200
    height = max(4000, int(max(i["y"] + i["h"] for i in imgs)) + 50)

    # 2. screenshots of the page and of the same page with the images hidden (same layout)
    shot = tmp_path / "report.png"
    blank_html = tmp_path / "blank.html"
    blank_html.write_text(text.replace("</head>", "<style>img{visibility:hidden}</style></head>"), encoding="utf-8")
    blank = tmp_path / "blank.png"
    _run_chromium(exe, tmp_path / "p2", f"--window-size={_WINDOW_W},{height}", f"--screenshot={shot}", written.as_uri())
    _run_chromium(exe, tmp_path / "p3", f"--window-size={_WINDOW_W},{height}", f"--screenshot={blank}",
                  blank_html.as_uri())
    a = np.asarray(Image.open(shot).convert("L"), float)
    b = np.asarray(Image.open(blank).convert("L"), float)
    assert a.shape == b.shape == (height, _WINDOW_W)
    for im in imgs:
        x0, y0 = int(im["x"]) + 2, int(im["y"]) + 2
        x1, y1 = int(im["x"] + im["w"]) - 2, int(im["y"] + im["h"]) - 2
        ra, rb = a[y0:y1, x0:x1], b[y0:y1, x0:x1]
        assert ra.std() > 15, f"figure at y={y0} looks blank"
        assert rb.std() < 1.0, "the images-hidden rendering should be empty there"
        assert (np.abs(ra - rb) > 30).mean() > 0.02, f"figure at y={y0} did not paint"


def test_public_api():
    import inspect

    defined = {n for n, v in vars(report).items() if not n.startswith("_")
               and (inspect.isfunction(v) or inspect.isclass(v)) and v.__module__ == report.__name__}
    # load_campaign and write_report live in analysis.campaign_io (reachable here lazily)
    assert defined == set(report.__all__) - {"MAX_CROSSING_ROWS", "FIGURE_FORMATS"}
    assert all(hasattr(report, n) for n in report.__all__)
