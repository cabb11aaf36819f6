"""Reference data against the time of the measurements (issue 15 part 4).

Real parts: real MENOG Atlas results (2019-05 to 2020-02), real reference files of
different years (APNIC delegations of 2019 and 2026, the CAIDA IXP file of 2023, PeeringDB
objects up to 2026), the real ``pathexp annotate`` command. The oracle for every date is
the files themselves, read here with plain string operations.
"""

from __future__ import annotations

import datetime as dt
import gzip
import lzma
from pathlib import Path

import orjson
import pytest

from analysis.cli import main
from analysis.datasets import import_files, latest_snapshot, list_snapshots
from analysis.refdates import STALE_DAYS
from probes import store
from probes.workspace import Campaign

MENOG = "ripe-atlas/traceroutes/menog_traceroutes_full.ndjson.xz"
RIR = "other/rir-delegated"


@pytest.fixture(scope="module")
def menog_lines(test_data) -> list[bytes]:
    with lzma.open(test_data / MENOG) as fh:
        return [ln.rstrip(b"\n") for _, ln in zip(range(300), fh, strict=False)]


def _period(lines: list[bytes]) -> tuple[dt.date, dt.date]:
    ts = [orjson.loads(ln)["timestamp"] for ln in lines]
    return (dt.datetime.fromtimestamp(min(ts), dt.UTC).date(), dt.datetime.fromtimestamp(max(ts), dt.UTC).date())


def _end_date(data: bytes) -> dt.date:
    """The end date of a delegation file's version line (the first line not a comment)."""
    version = next(ln for ln in data.decode().splitlines() if ln and not ln.startswith("#"))
    d = version.split("|")[5]
    return dt.date(int(d[:4]), int(d[4:6]), int(d[6:]))


@pytest.fixture()
def campaign(menog_lines, tmp_path) -> Campaign:
    src = tmp_path / "m.ndjson"
    src.write_bytes(b"\n".join(menog_lines) + b"\n")
    c = Campaign("menog", tmp_path / "ws")
    store.ingest_files(c, [src])
    return c


def _annotate(c: Campaign, cache: Path, *extra: str) -> int:
    return main(["annotate", "--campaign", c.name, "--workspace", str(c.workspace), "--cache-dir", str(cache), *extra])


def test_annotate_warns_about_reference_data_far_from_the_measurements(campaign, menog_lines, test_data,
                                                                        tmp_path, capsys):
    cache = tmp_path / "cache"
    new_apnic = test_data / RIR / "2026-06-18_delegated-apnic-latest.xz"
    old_apnic = test_data / RIR / "2019-09-12_delegated-apnic-latest.gz"
    import_files("rir-delegated", [new_apnic], snapshot_id="s2026", cache_dir=cache)
    import_files("caida-ixp", [test_data / "caida/ixp-dataset/ixs_202310.jsonl"], snapshot_id="s2026", cache_dir=cache)
    assert _annotate(campaign, cache) == 0
    err = capsys.readouterr().err
    first, last = _period(menog_lines)
    rep = orjson.loads(campaign.annotate_json.read_bytes())["reference_dates"]
    assert rep["measurements"] == {"first": first.isoformat(), "last": last.isoformat()}
    end = _end_date(lzma.decompress(new_apnic.read_bytes()))
    assert rep["kinds"]["rir-delegated"] == {"date": end.isoformat(), "gap_days": (end - last).days, "stale": True,
                                             "closer": None}
    assert f"reference data rir-delegated of {end.isoformat()} is {(end - last).days:,} days after the last " \
           f"measurement ({last.isoformat()})" in err
    # no other snapshot: --closest could not help, so it is not suggested
    assert "no local snapshot has closer data" in err and "--closest" not in err
    assert rep["kinds"]["caida-ixp"]["stale"] == ((dt.date(2023, 11, 1) - last).days >= STALE_DAYS)
    # analyze and the report say it too
    assert main(["analyze", "--campaign", campaign.name, "--workspace", str(campaign.workspace),
                 "--cache-dir", str(cache), "--bootstrap", "10", "--dst-country", "any"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"reference data rir-delegated of {end.isoformat()} is {(end - last).days:,} days after" in out
    assert main(["report", "--campaign", campaign.name, "--workspace", str(campaign.workspace)]) == 0
    html = campaign.report_html.read_text()
    assert f"<b>Reference data:</b> reference data rir-delegated of {end.isoformat()}" in html

    # a 2019 delegation file in another snapshot: --closest takes it, and CAIDA IXP from the only one
    import_files("rir-delegated", [old_apnic], snapshot_id="s2019", cache_dir=cache)
    latest = latest_snapshot(cache_dir=cache).id
    # annotated with the 2026 snapshot again, the warning now names the closer one
    assert _annotate(campaign, cache, "--snapshot", "s2026") == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "`pathexp annotate --closest` (snapshot s2019 has closer rir-delegated data)" in err
    assert orjson.loads(campaign.annotate_json.read_bytes())["reference_dates"]["kinds"]["rir-delegated"][
        "closer"] == "s2019"
    assert _annotate(campaign, cache, "--closest") == 0
    out, err = capsys.readouterr()
    ann = orjson.loads(campaign.annotate_json.read_bytes())
    assert ann["snapshot"]["composed_from"] == {"caida-ixp": "s2026", "rir-delegated": "s2019"}
    assert ann["snapshot"]["id"].startswith("composed-") and "kinds taken from" in out
    old_end = _end_date(gzip.decompress(old_apnic.read_bytes()))
    assert ann["reference_dates"]["kinds"]["rir-delegated"]["date"] == old_end.isoformat()
    assert not ann["reference_dates"]["kinds"]["rir-delegated"]["stale"]
    assert "rir-delegated" not in err
    # the composed snapshot is never the default, and the same choice composes the same snapshot
    assert latest_snapshot(cache_dir=cache).id == latest
    n = len(list_snapshots(cache_dir=cache))
    assert _annotate(campaign, cache, "--closest") == 0
    assert len(list_snapshots(cache_dir=cache)) == n
    assert orjson.loads(campaign.annotate_json.read_bytes())["snapshot"]["id"] == ann["snapshot"]["id"]


def test_closest_and_snapshot_are_exclusive_and_an_empty_campaign_is_a_one_line_error(tmp_path, capsys):
    c = Campaign("empty", tmp_path / "ws")
    with pytest.raises(SystemExit):
        _annotate(c, tmp_path / "cache", "--closest", "--snapshot", "x")
    assert "not allowed with argument" in capsys.readouterr().err
    assert _annotate(c, tmp_path / "cache", "--closest") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
