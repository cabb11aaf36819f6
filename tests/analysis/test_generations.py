"""Never a figure from stale or mixed inputs: stage generations, the campaign lock, ``--force``.

Real parts throughout: real RIPE Atlas results (MENOG) and the real reference snapshot,
the real ``pathexp`` command in subprocesses killed with SIGKILL, two real annotate
processes competing for the campaign lock.
"""

from __future__ import annotations

import lzma
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from analysis import lineage
from analysis.campaign_io import analyze_campaign, annotate_campaign, load_campaign
from analysis.cli import main
from analysis.errors import MissingInput
from probes import store
from probes.errors import ConfigError, StoreError
from probes.workspace import Campaign

MENOG = "ripe-atlas/traceroutes/menog_traceroutes_full.ndjson.xz"
SEGMENT = 500
N_BOOT = 50
ROOT = Path(__file__).resolve().parents[2]
#: The real MENOG paths transit no flagged family; the report's legend is then empty
#: (a matplotlib warning raised by analysis.plots, not by what is tested here).
no_legend = pytest.mark.filterwarnings("ignore:No artists with labels found:UserWarning")


@pytest.fixture(scope="module")
def lines(test_data) -> list[bytes]:
    data = lzma.decompress((test_data / MENOG).read_bytes())
    return [ln for ln in data.split(b"\n") if ln.strip()][:2500]


@pytest.fixture(scope="module")
def base(lines, real_snapshot, tmp_path_factory) -> tuple[Campaign, Path]:
    """1,500 real results ingested (3 segments), annotated and analysed; copied by each test."""
    d = tmp_path_factory.mktemp("gen-base")
    (d / "first.ndjson").write_bytes(b"\n".join(lines[:1500]) + b"\n")
    c = Campaign("gen", d / "ws")
    store.ingest_files(c, [d / "first.ndjson"], segment_results=SEGMENT)
    cache = real_snapshot.path.parent.parent
    annotate_campaign(c, snapshot_id=real_snapshot.id, cache_dir=cache)
    analyze_campaign(c, cache_dir=cache, n_boot=N_BOOT)
    return c, cache


def _copy(base: tuple[Campaign, Path], tmp_path: Path) -> Campaign:
    c = Campaign("gen", tmp_path / "ws")
    shutil.copytree(base[0].root, c.root, symlinks=True)
    return c


def _where(c: Campaign) -> list[str]:
    return ["--campaign", c.name, "--workspace", str(c.workspace)]


def _one_line_error(capsys, rc: int) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _pathexp(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "analysis.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _consistent(c: Campaign) -> None:
    """The outputs are one analyze run on the current store: the oracle is the store itself."""
    assert lineage.analyze_verdict(c).current
    data = load_campaign(c)
    n = store.read_traces(c).num_rows
    assert data.summary["scope"]["traceroutes"] == pq.read_metadata(c.paths_parquet).num_rows == n
    assert data.summary["traceroutes"] == data.paths.num_rows  # the figures' (in-scope) traceroutes
    gen = data.summary["generation"]
    for folder in (c.paths_dir, c.exposure_dir, c.graph_dir):
        assert lineage.read_marker(folder) == gen["id"]
    ann = orjson.loads(c.annotate_json.read_bytes())
    assert ann["generation"]["store"]["number"] == store.generation(c).number
    assert ann["rows"] == store.read_hops(c).num_rows


# ------------------------------------------------------------------------ generations
def test_store_generation_goes_up_with_every_ingest_that_adds_results(lines, tmp_path):
    c = Campaign("g", tmp_path)
    assert store.generation(c).number == 0
    f = tmp_path / "a.ndjson"
    f.write_bytes(b"\n".join(lines[:600]) + b"\n")
    store.ingest_files(c, [f], segment_results=SEGMENT)
    one = store.generation(c)
    assert one.number == one.segments == len(store.segment_names(c, "raw")) >= 2
    store.ingest_files(c, [f], segment_results=SEGMENT)  # duplicates only: nothing added
    assert store.generation(c) == one
    g = tmp_path / "b.ndjson"
    g.write_bytes(b"\n".join(lines[600:700]) + b"\n")
    assert store.ingest_files(c, [g], segment_results=SEGMENT).added > 0
    two = store.generation(c)
    assert two.number == one.number + 1 and two.fingerprint != one.fingerprint


def test_every_stage_records_what_it_was_computed_from(base):
    c, _ = base
    ann = orjson.loads(c.annotate_json.read_bytes())["generation"]
    assert ann["store"] == store.generation(c).as_dict()
    assert ann["snapshot"]["id"] == "real" and len(ann["registry"]["sha256"]) == 64
    assert lineage.read_marker(c.annotated_dir) == ann["id"]
    exp = orjson.loads(c.exposure_json.read_bytes())["generation"]
    assert exp["annotate"] == ann["id"] and exp["options"]["n_boot"] == N_BOOT
    assert {lineage.read_marker(f) for f in (c.paths_dir, c.exposure_dir, c.graph_dir)} == {exp["id"]}


# ------------------------------------------------------------------ stale: refuse or --force
@no_legend
def test_ingest_after_annotate_makes_analyze_and_report_refuse_until_forced(base, lines, tmp_path, capsys):
    c = _copy(base, tmp_path)
    cache = str(base[1])
    before = store.generation(c).number
    exposure = c.exposure_json.read_bytes()
    more = tmp_path / "more.ndjson"
    more.write_bytes(b"\n".join(lines[1500:]) + b"\n")
    assert main(["ingest", str(more), "--segment-results", str(SEGMENT), *_where(c)]) == 0
    after = store.generation(c).number
    assert after > before
    capsys.readouterr()

    err = _one_line_error(capsys, main(["analyze", "--cache-dir", cache, "--bootstrap", "50", *_where(c)]))
    assert f"annotated/ is from store generation {before}, the store is at {after}" in err
    assert f"run `pathexp annotate --campaign gen --workspace {c.workspace}`" in err and "--force" in err
    assert c.exposure_json.read_bytes() == exposure  # nothing written

    err = _one_line_error(capsys, main(["report", *_where(c)]))
    assert f"store generation {before}, the store is at {after}" in err and "pathexp annotate" in err
    with pytest.raises(MissingInput, match="store generation"):
        load_campaign(c)  # the notebooks' entry point

    assert main(["analyze", "--force", "--cache-dir", cache, "--bootstrap", "50", *_where(c)]) == 0
    _consistent(c)
    assert store.read_traces(c).num_rows > orjson.loads(exposure)["scope"]["traceroutes"]
    assert main(["report", *_where(c)]) == 0


@no_legend
def test_report_force_recomputes_with_the_recorded_options(base, lines, tmp_path, capsys):
    c = _copy(base, tmp_path)
    more = tmp_path / "more.ndjson"
    more.write_bytes(b"\n".join(lines[1500:1800]) + b"\n")
    store.ingest_files(c, [more], segment_results=SEGMENT)
    assert main(["report", "--force", *_where(c)]) == 0
    _consistent(c)
    assert orjson.loads(c.exposure_json.read_bytes())["generation"]["options"]["n_boot"] == N_BOOT


def test_a_changed_registry_makes_analyze_refuse(base, real_snapshot, tmp_path, capsys):
    from analysis.registry import default_registry_path

    c = _copy(base, tmp_path)
    reg = tmp_path / "mine.toml"
    reg.write_bytes(default_registry_path().read_bytes())
    annotate_campaign(c, snapshot_id=real_snapshot.id, cache_dir=base[1], registry_path=reg)
    analyze_campaign(c, cache_dir=base[1], n_boot=N_BOOT)
    reg.write_bytes(reg.read_bytes() + b"\n# edited\n")
    err = _one_line_error(capsys, main(["analyze", "--cache-dir", str(base[1]), *_where(c)]))
    assert f"registry {reg.resolve()} changed since annotate" in err
    with pytest.raises(MissingInput, match="changed since annotate"):
        load_campaign(c)


# ------------------------------------------------------------------------- kill -9
def _wait_for(cond, proc: subprocess.Popen, timeout: float = 120.0) -> bool:
    """Poll ``cond`` until true (True) or the process ended (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        if proc.poll() is not None:
            return bool(cond())
        time.sleep(0.005)
    raise AssertionError("timed out")


def test_analyze_killed_after_writing_paths_report_refuses_then_analyze_again(base, tmp_path, capsys):
    c = _copy(base, tmp_path)
    old = orjson.loads(c.exposure_json.read_bytes())
    # other options -> another generation; many bootstrap replicates -> seconds between
    # paths/ and exposure.json
    proc = _pathexp("analyze", "--cache-dir", str(base[1]), "--bootstrap", "4000", "--seed", "7", *_where(c))
    try:
        _wait_for(lambda: lineage.read_marker(c.paths_dir) not in (None, old["generation"]["id"]), proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    now = orjson.loads(c.exposure_json.read_bytes())
    if now["generation"]["id"] == old["generation"]["id"]:  # killed between paths/ and exposure.json
        assert proc.returncode == -signal.SIGKILL
        err = _one_line_error(capsys, main(["report", *_where(c)]))
        assert "paths/ is from another analyze run than exposure.json" in err
        assert f"run `pathexp analyze --campaign gen --workspace {c.workspace}`" in err
        with pytest.raises(MissingInput, match="interrupted"):
            load_campaign(c)
    else:  # the machine was slow to deliver the kill: the run completed, and is consistent
        _consistent(c)
    assert main(["analyze", "--cache-dir", str(base[1]), "--bootstrap", str(N_BOOT), *_where(c)]) == 0
    _consistent(c)
    # the same inputs and options as the base run: the same generation and figures
    again = orjson.loads(c.exposure_json.read_bytes())
    assert again["generation"]["id"] == old["generation"]["id"]
    assert again["families"] == old["families"]
    assert pq.read_table(c.paths_parquet).equals(pq.read_table(base[0].paths_parquet))


@no_legend
@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.3, 1.0, 2.0, 3.5, 5.0])
def test_analyze_or_annotate_killed_at_any_point_is_refused_or_consistent(base, lines, tmp_path, delay, capsys):
    """Ingest more, then ``analyze --force`` (annotate + analyze) killed after ``delay`` s:
    the report refuses (one line naming a command) or shows a consistent analysis; a
    second ``analyze --force`` always leaves a consistent campaign."""
    c = _copy(base, tmp_path)
    more = tmp_path / "more.ndjson"
    more.write_bytes(b"\n".join(lines[1500:]) + b"\n")
    store.ingest_files(c, [more], segment_results=SEGMENT)
    proc = _pathexp("analyze", "--force", "--cache-dir", str(base[1]), "--bootstrap", "300", *_where(c))
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    capsys.readouterr()
    rc = main(["report", *_where(c)])
    if rc == 0:
        _consistent(c)
    else:
        err = _one_line_error(capsys, rc)
        assert "run `pathexp a" in err
    assert main(["analyze", "--force", "--cache-dir", str(base[1]), "--bootstrap", "300", *_where(c)]) == 0
    _consistent(c)
    assert not any(p.name.endswith((".tmp", ".old")) for p in c.root.iterdir())


def _segments(c: Campaign) -> int:
    return len(list(c.traces_dir.glob("seg-*.parquet")))


def _marker_moved(folder: Path, old: str | None):
    return lambda: lineage.read_marker(folder) not in (None, old)


#: Where a run is killed: (the command, a condition that is true once the run is past the point).
BOUNDARIES = ("ingest: a segment committed", "annotate: annotated/ swapped in",
              "analyze: paths/ swapped in", "analyze: exposure/ swapped in", "report: running")


@no_legend
@pytest.mark.slow
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_killed_at_each_stage_boundary_the_next_stages_refuse_or_agree_and_a_rerun_is_exact(
        base, lines, tmp_path, boundary, capsys):
    """SIGKILL between every pair of stages (ingest | annotate | analyze | report), each at a
    point observed on disk, never by a timer alone: ``report`` then refuses with one line
    naming a command, or shows a consistent analysis; re-running the commands it names
    leaves the campaign consistent, with every result stored once."""
    c = _copy(base, tmp_path)
    cache = str(base[1])
    more = tmp_path / "more.ndjson"
    more.write_bytes(b"\n".join(lines[1500:]) + b"\n")
    stage = boundary.split(":")[0]
    store_changed = stage in ("ingest", "annotate")
    if stage == "ingest":
        n0 = _segments(c)
        proc = _pathexp("ingest", str(more), "--segment-results", "50", *_where(c))
        cond = lambda: _segments(c) > n0  # noqa: E731
    elif stage == "annotate":
        store.ingest_files(c, [more], segment_results=SEGMENT)
        proc = _pathexp("annotate", "--cache-dir", cache, *_where(c))
        cond = _marker_moved(c.annotated_dir, lineage.read_marker(c.annotated_dir))
    elif stage == "analyze":
        folder = c.paths_dir if "paths" in boundary else c.exposure_dir
        old = orjson.loads(c.exposure_json.read_bytes())["generation"]["id"]
        proc = _pathexp("analyze", "--cache-dir", cache, "--bootstrap", "3000", "--seed", "3", *_where(c))
        cond = _marker_moved(folder, old)
    else:
        proc = _pathexp("report", *_where(c))
        cond = lambda: c.report_dir.exists()  # noqa: E731 - the base campaign has no report yet
    try:
        _wait_for(cond, proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    capsys.readouterr()
    rc = main(["report", *_where(c)])
    if store_changed:  # the analysis is older than the store: always refused
        err = _one_line_error(capsys, rc)
        assert "run `pathexp a" in err or "run `pathexp ingest" in err, err
    elif rc:
        assert "run `pathexp a" in _one_line_error(capsys, rc)
    else:
        _consistent(c)
    if stage == "ingest":  # the interrupted ingest, run again: nothing lost, nothing twice
        assert main(["ingest", str(more), "--segment-results", "50", *_where(c)]) == 0
    assert main(["analyze", "--force", "--cache-dir", cache, "--bootstrap", str(N_BOOT), *_where(c)]) == 0
    _consistent(c)
    traces = store.read_traces(c)
    keys = {(m, p, int(t.timestamp())) for m, p, t in zip(
        *(traces.column(k).to_pylist() for k in ("msm_id", "prb_id", "timestamp")), strict=True)}
    want = lines if store_changed else lines[:1500]
    expect = {(r["msm_id"], r["prb_id"], r["timestamp"]) for r in map(orjson.loads, want)}
    assert traces.num_rows == len(keys) == len(expect) and keys == expect
    assert main(["report", *_where(c)]) == 0
    assert c.report_html.read_text().rstrip().endswith("</html>")
    assert not any(p.name.endswith((".tmp", ".old")) for p in c.root.iterdir())


# ---------------------------------------------------------------------------- the lock
def _stderr_line(proc: subprocess.Popen, timeout: float = 120.0) -> str:
    assert proc.stderr is not None
    ready, _, _ = select.select([proc.stderr], [], [], timeout)
    assert ready, "no line on stderr"
    return proc.stderr.readline().decode()


def test_two_concurrent_annotates_wait_for_each_other_and_annotated_stays_complete(base, tmp_path):
    c = _copy(base, tmp_path)
    cmd = ("annotate", "--snapshot", "real", "--cache-dir", str(base[1]), *_where(c))
    with store.campaign_lock(c, holder="test"):
        procs = []
        for _ in range(2):  # both start while the campaign is busy: both must wait
            procs.append(_pathexp(*cmd))
            line = _stderr_line(procs[-1])
            assert "campaign 'gen' is busy: pathexp test (pid" in line and "waiting" in line
        assert lineage.annotate_verdict(c, cache_dir=base[1]).current
    # one of them now holds the lock; kill it once it is writing (or has written) its folder
    holder = None
    _wait_for(lambda: "annotate (pid" in c.lock_file.read_text() or all(p.poll() is not None for p in procs),
              procs[0])
    text = c.lock_file.read_text()
    for p in procs:
        if f"(pid {p.pid})" in text and p.poll() is None:
            holder = p
            _wait_for(lambda: c.stage_dir(c.annotated_dir).exists(), p)
            p.send_signal(signal.SIGKILL)
    other = [p for p in procs if p is not holder]
    for p in procs:
        p.wait(timeout=300)
    assert all(p.returncode == 0 for p in other), [p.stderr.read() for p in other if p.stderr]
    assert c.annotated_dir.is_dir()
    assert sorted(f.name for f in c.annotated_dir.glob("*.parquet")) == \
        [f"{n}.parquet" for n in store.segment_names(c, "hops")]
    assert lineage.annotate_verdict(c, cache_dir=base[1]).current
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in c.annotated_dir.glob("*.parquet")) == \
        store.read_hops(c).num_rows
    assert not c.stage_dir(c.annotated_dir).exists() and not c.previous_dir(c.annotated_dir).exists()
    analyze_campaign(c, cache_dir=base[1], n_boot=N_BOOT)
    _consistent(c)


def test_a_busy_campaign_without_waiting_is_a_one_line_error(tmp_path):
    c = Campaign("busy", tmp_path)
    with store.campaign_lock(c, holder="analyze"):
        with pytest.raises(StoreError, match=r"campaign 'busy' is busy: pathexp analyze \(pid \d+\)"):
            with store.campaign_lock(c, wait=False):
                pass
    with store.campaign_lock(c, wait=False):  # free again
        assert c.lock_file.read_text().startswith("pathexp ingest")


# ---------------------------------------------------------------------- refused inputs
def test_symlinked_table_folders_are_refused(base, lines, tmp_path, capsys):
    victim = base[0]
    before = sorted((p.relative_to(victim.root), p.stat().st_size) for p in victim.root.rglob("*") if p.is_file())
    c = Campaign("intruder", tmp_path / "ws")
    c.root.mkdir(parents=True)
    (c.root / "hops").symlink_to(victim.hops_dir)
    (c.root / "traces").symlink_to(victim.traces_dir)
    f = tmp_path / "a.ndjson"
    f.write_bytes(b"\n".join(lines[:10]) + b"\n")
    err = _one_line_error(capsys, main(["ingest", str(f), *_where(c)]))
    assert "hops is a symbolic link" in err or "traces is a symbolic link" in err
    with pytest.raises(StoreError, match="symbolic link"):
        store.recover(c)
    with pytest.raises(StoreError, match="symbolic link"):
        annotate_campaign(c, snapshot_id="real", cache_dir=base[1])
    after = sorted((p.relative_to(victim.root), p.stat().st_size) for p in victim.root.rglob("*") if p.is_file())
    assert after == before


@pytest.mark.parametrize("name", ["x\n", "x\r", "", "../x", "x/y", ".x"])
def test_bad_campaign_names_are_refused(name, tmp_path, capsys):
    with pytest.raises(ConfigError, match="invalid campaign name"):
        Campaign(name, tmp_path)
    if name:
        _one_line_error(capsys, main(["report", "--campaign", name, "--workspace", str(tmp_path)]))
        assert list(tmp_path.iterdir()) == []


def test_a_marker_or_manifest_gone_between_look_and_read_reads_as_absent(tmp_path, monkeypatch):
    # a stage swapping its folder in (rename) while another process reads it: the file is
    # there when looked at and gone when read; the readers say "absent", as for no file
    folder = tmp_path / "annotated"
    folder.mkdir()
    marker = Campaign.generation_marker(folder)
    marker.write_bytes(orjson.dumps({"id": "abc"}))
    assert lineage.read_marker(folder) == "abc"
    marker.unlink()
    monkeypatch.setattr(Path, "is_file", lambda self: True)  # the look saw it
    assert lineage.read_marker(folder) is None
    assert lineage.read_manifest(tmp_path / "annotate.json") is None
    assert lineage.file_sha256(tmp_path / "registry.toml") is None
