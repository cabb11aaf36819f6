"""The campaign store: formats, deduplication, crash recovery, DuckDB read-back, the CLI."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import signal
import subprocess
import sys
import time

import duckdb
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probes import store
from probes.errors import InputFormatError
from probes.parse import DROP_REASONS
from probes.workspace import Campaign
from tests.probes.test_parse import real_lines

AFRINREN = "ripe-atlas/traceroutes/afrinren_traceroutes.ndjson.xz"
SAGAN = "ripe-atlas/traceroutes/sagan_test_traceroutes.ndjson"


def _sql(query: str) -> list[tuple]:
    return duckdb.connect().execute(query).fetchall()


def _count(campaign: Campaign, table: str) -> int:
    return _sql(f"SELECT count(*) FROM read_parquet('{campaign.glob(table)}')")[0][0]


def _keys(campaign: Campaign) -> list[tuple]:
    return _sql(
        f"SELECT msm_id, prb_id, epoch(timestamp)::BIGINT FROM read_parquet('{campaign.glob('traces')}') ORDER BY ALL"
    )


def test_formats_all_give_the_same_store(test_data, tmp_path):
    lines = real_lines(test_data, SAGAN)
    ndjson = b"\n".join(lines) + b"\n"
    array = orjson.dumps([orjson.loads(x) for x in lines], option=orjson.OPT_INDENT_2)
    variants = {
        "plain.ndjson": ndjson,
        "dump.ndjson.gz": gzip.compress(ndjson),
        "dump.ndjson.bz2": bz2.compress(ndjson),
        "dump.ndjson.xz": lzma.compress(ndjson),
        "api.json": array,
    }
    expected = sorted((o["msm_id"], o["prb_id"], o["timestamp"]) for o in map(orjson.loads, lines))
    for name, data in variants.items():
        f = tmp_path / name
        f.write_bytes(data)
        c = Campaign(name.replace(".", "-"), tmp_path / "ws")
        rep = store.ingest_files(c, [f])
        assert (rep.seen, rep.added, rep.drops) == (len(lines), len(lines), {}), name
        assert _keys(c) == expected, name
    # one pretty-printed object
    single = tmp_path / "one.json"
    single.write_bytes(orjson.dumps(orjson.loads(lines[0]), option=orjson.OPT_INDENT_2))
    c = Campaign("single", tmp_path / "ws")
    assert store.ingest_files(c, [single]).added == 1


def test_same_file_twice_adds_nothing_and_counts_are_not_doubled(test_data, tmp_path):
    src = test_data / SAGAN
    bad = tmp_path / "with-bad.ndjson"
    bad.write_bytes(src.read_bytes() + b'{"truncated": \n{"type":"ping","msm_id":1,"prb_id":1,"timestamp":1}\n')
    c = Campaign("twice", tmp_path)
    first = store.ingest_files(c, [bad])
    second = store.ingest_files(c, [bad])
    assert (first.added, first.duplicates) == (19, 0)
    assert (second.added, second.duplicates) == (0, 19)
    assert first.drops == second.drops == {"invalid_json": 1, "not_traceroute": 1}
    report = orjson.loads(c.ingest_report.read_bytes())
    assert report["drops"] == {"invalid_json": 1, "not_traceroute": 1}
    assert report["results_stored"] == 19 == _count(c, "traces")
    assert len(report["runs"]) == 2


def test_duplicates_within_one_input_and_across_formats(test_data, tmp_path):
    lines = real_lines(test_data, SAGAN)
    f = tmp_path / "dup.ndjson"
    f.write_bytes(b"\n".join(lines + lines[:5]) + b"\n")
    c = Campaign("dup", tmp_path)
    rep = store.ingest_files(c, [f])
    assert (rep.added, rep.duplicates) == (19, 5)
    rep = store.ingest_results(c, [orjson.loads(x) for x in lines[3:8]])
    assert (rep.added, rep.duplicates) == (0, 5)
    hop_rows = sum(max(len(h.get("result") or []), 1) for x in lines for h in orjson.loads(x)["result"])
    assert _count(c, "hops") == hop_rows


@settings(max_examples=60, deadline=None)
@given(blocks=st.lists(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3), st.integers(0, 2**32 - 1)),
                                max_size=40), max_size=30),
       stored=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3), st.integers(0, 2**32 - 1)), max_size=30))
def test_key_index_keeps_the_first_of_each_key_like_a_set(blocks, stored):
    """The store's dedup index over blocks whose keys interleave with the stored ones: a set oracle."""
    import numpy as np

    def encode(keys):
        arr = np.array(keys, dtype=np.int64).reshape(-1, 3)
        return store._KeyIndex.encode(arr[:, 0], arr[:, 1], arr[:, 2])

    index = store._KeyIndex(encode(sorted(set(stored))) if stored else None)
    seen = set(stored)
    for block in blocks:
        want = []
        for i, key in enumerate(block):
            if key not in seen:
                seen.add(key)
                want.append(i)
        got = index.select_new(encode(block)) if block else np.empty(0, np.int64)
        assert got.tolist() == want
        if want:
            index.add(encode(block)[got])
        assert len(index) == len(seen)


def test_stdin_and_raw_round_trip(test_data, tmp_path):
    lines = real_lines(test_data, SAGAN)
    ws = tmp_path / "ws"
    proc = subprocess.run(
        [sys.executable, "-m", "analysis.cli", "ingest", "-", "--campaign", "stdin", "--workspace", str(ws)],
        input=b"\n".join(lines), capture_output=True, check=True,
    )
    assert b"added 19" in proc.stdout
    raw = list(store.iter_raw(Campaign("stdin", ws)))
    assert raw == [orjson.loads(x) for x in lines]


def test_hop_table_reads_back_with_duckdb_and_matches_independent_count(test_data, tmp_path):
    lines = real_lines(test_data, AFRINREN)
    c = Campaign("afrinren", tmp_path)
    store.ingest_results(c, lines)
    timeouts = replies = 0
    for line in lines:
        for hop in orjson.loads(line)["result"]:
            for r in hop.get("result") or []:
                if "from" in r:
                    replies += 1
                elif r.get("x") == "*" or r == {}:  # real quirk: empty reply objects {}
                    timeouts += 1
    got = _sql(
        f"SELECT count(reply_from), count(*) FILTER (WHERE reply_from IS NULL AND attempt IS NOT NULL) "
        f"FROM read_parquet('{c.glob('hops')}')"
    )[0]
    assert got == (replies, timeouts)
    # afrinren carries the real quirk of probe 14712's 2031 timestamps: kept, not dropped
    n2031 = _sql(
        f"SELECT count(*) FROM read_parquet('{c.glob('traces')}') WHERE year(timestamp) = 2031"
    )[0][0]
    assert n2031 == sum(1 for x in lines if orjson.loads(x)["timestamp"] > 1.9e9)
    assert store.read_hops(c, columns=["msm_id", "rtt"]).num_rows == _count(c, "hops")


def test_interrupted_ingest_resumes_without_loss_or_duplicates(test_data, tmp_path, monkeypatch):
    """SIGKILL a real ingest process at several points; re-running completes the store."""
    src = test_data / AFRINREN
    objs = list(map(orjson.loads, real_lines(test_data, AFRINREN)))
    expected = sorted({(o["msm_id"], o["prb_id"], o["timestamp"]) for o in objs})
    # hop rows of the distinct results, counted from the JSON (one per reply, one per empty hop)
    first: dict[tuple, dict] = {}
    for o in objs:
        first.setdefault((o["msm_id"], o["prb_id"], o["timestamp"]), o)
    expected_hops = sum(max(len(h.get("result") or []), 1) for o in first.values() for h in o["result"])
    interrupted = 0
    # killed at points in the ingest's own progress, not after fixed delays (a fast machine
    # finishes before them): at once, then once 1, 2 and 4 segments are in place
    for i, segments in enumerate([0, 1, 2, 4]):
        ws = tmp_path / f"ws{i}"
        c = Campaign("crash", ws)
        cmd = [sys.executable, "-m", "analysis.cli", "ingest", str(src), "--campaign", "crash", "--workspace", str(ws),
               "--segment-results", "700"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while (segments and proc.poll() is None and time.monotonic() < deadline
               and len(list(c.traces_dir.glob("*.parquet")) if c.traces_dir.is_dir() else []) < segments):
            time.sleep(0.005)
        interrupted += proc.poll() is None  # still running: the kill lands mid-ingest
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if any(c.traces_dir.glob("*.parquet")):
            # readable while interrupted: whatever is there parses
            _sql(f"SELECT count(*) FROM read_parquet('{c.glob('traces')}')")
        subprocess.run(cmd, check=True, capture_output=True)
        assert _keys(c) == expected
        assert _count(c, "hops") == expected_hops
        assert not list(ws.rglob("*.part"))
    assert interrupted >= 2, "the kills came after the ingest had finished: the test proved nothing"


def _segment_files(c: Campaign) -> dict[str, list[str]]:
    return {t: sorted(p.name for p in d.iterdir()) for t, d in
            (("raw", c.raw_dir), ("traces", c.traces_dir), ("hops", c.hops_dir))}


def test_a_write_error_mid_segment_is_raised_and_leaves_nothing_of_that_segment(test_data, tmp_path, monkeypatch):
    """The disk fails while the store's thread writes the last block of a segment, after
    the segment was ended: the error reaches the caller, the segments before stay whole,
    nothing of that segment (nor of the one begun after it) is renamed into place or left
    as a temporary, and a rerun completes the store."""
    import threading

    import pyarrow.parquet as pq

    from probes.engine import spare_threads

    lines = real_lines(test_data, AFRINREN)[:1000]
    src = tmp_path / "in.ndjson"
    src.write_bytes(b"\n".join(lines) + b"\n")
    keys = sorted({(o["msm_id"], o["prb_id"], o["timestamp"]) for o in map(orjson.loads, lines)})
    monkeypatch.setattr(store, "BLOCK_LINES", 100)  # 3 blocks a segment of 300 results
    real_write = pq.ParquetWriter.write_table
    threads: list[str] = []

    def disk_full_at_segment_2_block_3(self, table, *args, **kwargs):
        threads.append(threading.current_thread().name)
        if len(threads) == 2 * 5 + 2:  # two tables a block: the hops of block 6
            raise OSError(28, "No space left on device")
        return real_write(self, table, *args, **kwargs)

    c = Campaign("disk", tmp_path / "ws")
    with monkeypatch.context() as m:
        m.setattr(pq.ParquetWriter, "write_table", disk_full_at_segment_2_block_3)
        with pytest.raises(OSError, match="No space left"):
            store.ingest_files(c, [src], segment_results=300)
    # written on the store's own thread (on the caller's without a core to spare)
    assert set(threads) == {"pathexp-store_0" if spare_threads() else threading.main_thread().name}
    assert _segment_files(c) == {"raw": ["seg-000001.ndjson.zst"], "traces": ["seg-000001.parquet"],
                                 "hops": ["seg-000001.parquet"]}
    assert store.read_traces(c).num_rows == 300
    assert not list(c.root.rglob("*.part"))
    again = store.ingest_files(c, [src], segment_results=300)
    assert again.duplicates == 300 + len(lines) - len(keys)
    assert _keys(c) == keys


def test_an_input_failing_mid_segment_leaves_only_whole_segments(test_data, tmp_path, monkeypatch):
    """An input that breaks off with an error between blocks: the segment being filled is
    deleted (never renamed), the whole ones before it stay, and a rerun adds the rest."""
    lines = real_lines(test_data, SAGAN)
    monkeypatch.setattr(store, "BLOCK_LINES", 4)

    def breaking(n: int):
        yield from lines[:n]
        raise ConnectionError("input went away")

    c = Campaign("cut", tmp_path)
    st = store._Store(c, segment_results=8)
    try:
        with pytest.raises(ConnectionError):
            store.ingest_stream(c, breaking(13), _store=st)
    finally:
        st.close()
    assert store.segment_names(c, "raw") == store.segment_names(c, "hops") == ["seg-000001"]
    assert store.read_traces(c).num_rows == 8
    assert not list(c.root.rglob("*.part"))
    rep = store.ingest_results(c, lines)
    assert (rep.added, rep.duplicates) == (len(lines) - 8, 8)
    assert _keys(c) == sorted({(o["msm_id"], o["prb_id"], o["timestamp"]) for o in map(orjson.loads, lines)})


def test_recover_rebuilds_tables_from_raw(test_data, tmp_path):
    c = Campaign("rec", tmp_path)
    store.ingest_files(c, [test_data / SAGAN])
    before = store.read_hops(c)
    for p in c.hops_dir.glob("*.parquet"):
        p.unlink()
    assert store.recover(c) == ["seg-000001"]
    assert store.read_hops(c).equals(before)


def test_probe_meta_from_real_api_objects(test_data, tmp_path):
    objs = orjson.loads((test_data / "ripe-atlas/api-metadata/probes_v2_sample_starlink_2025-05-05.json").read_bytes())
    objs = objs if isinstance(objs, list) else objs.get("results", [])
    c = Campaign("meta", tmp_path)
    assert store.write_probe_meta(c, objs) == len(objs)
    t = store.read_probe_meta(c).to_pylist()
    first = next(o for o in objs if o["id"] == t[0]["prb_id"])
    assert (t[0]["longitude"], t[0]["latitude"]) == tuple(first["geometry"]["coordinates"])
    assert t[0]["asn_v4"] == first["asn_v4"]
    # newest object wins on re-write
    changed = [{**first, "country_code": "ZZ"}]
    store.write_probe_meta(c, changed)
    again = {r["prb_id"]: r for r in store.read_probe_meta(c).to_pylist()}
    assert again[first["id"]]["country_code"] == "ZZ" and len(again) == len(objs)


def test_cli_missing_file_is_one_line_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "analysis.cli", "ingest", str(tmp_path / "nope.json"), "--campaign", "x", "--workspace", str(tmp_path)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "cannot read" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("name", ["../evil", "", "a/b"])
def test_bad_campaign_names_refused(name, tmp_path):
    from probes.errors import ConfigError

    with pytest.raises(ConfigError):
        Campaign(name, tmp_path)


@pytest.mark.parametrize(("suffix", "tool"), [(".xz", "xz"), (".gz", "gzip"), (".bz2", "bzip2")])
def test_cut_off_compressed_dump_keeps_every_complete_result(test_data, tmp_path, suffix, tool):
    """A half-downloaded dump: every complete line is ingested and the input is counted as truncated.

    Oracle: the system's own decompressor (``xz``/``gzip``/``bzip2 -dc``) on the same bytes.
    """
    import shutil as _sh

    if not _sh.which(tool):
        pytest.skip(f"{tool} not installed")
    lines = real_lines(test_data, AFRINREN)[:3000]
    full = tmp_path / f"full{suffix}"
    plain = b"\n".join(lines) + b"\n"
    full.write_bytes(subprocess.run([tool, "-c"], input=plain, capture_output=True, check=True).stdout)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    readable = subprocess.run([tool, "-dc", str(cut)], capture_output=True).stdout  # exits non-zero: cut off
    complete = readable.count(b"\n")
    assert 0 < complete < len(lines)
    c = Campaign("cut", tmp_path / "ws")
    rep = store.ingest_files(c, [cut])
    if tool == "bzip2":  # the bzip2 tool withholds the last partly read block; we keep all of it
        assert complete <= rep.added < len(lines)
    else:
        assert rep.added == complete
    # what was kept is exactly the beginning of the original, in order, nothing invented
    # (afrinren repeats a few results: the store keeps each key's first occurrence)
    read = rep.seen - rep.drops.get("invalid_json", 0)
    expected, keys = [], set()
    for obj in map(orjson.loads, lines[:read]):
        key = (obj["msm_id"], obj["prb_id"], obj["timestamp"])
        if key not in keys:
            keys.add(key)
            expected.append(obj)
    assert list(store.iter_raw(c)) == expected
    assert rep.drops["truncated_input"] == 1
    assert orjson.loads(c.ingest_report.read_bytes())["drops"]["truncated_input"] == 1
    # concatenated members are read on (cat a.gz b.gz is a valid gzip stream)
    both = tmp_path / f"both{suffix}"
    half = len(lines) // 2
    both.write_bytes(
        subprocess.run([tool, "-c"], input=b"\n".join(lines[:half]) + b"\n", capture_output=True, check=True).stdout
        + subprocess.run([tool, "-c"], input=b"\n".join(lines[half:]) + b"\n", capture_output=True, check=True).stdout
    )
    rep = store.ingest_files(Campaign("both", tmp_path / "ws"), [both])
    assert (rep.added, rep.drops) == (len(lines), {})


def test_unknown_text_is_refused_with_its_line(tmp_path):
    from probes.errors import InputFormatError

    f = tmp_path / "notes.txt"
    f.write_text("\n\nhello\nworld\n")
    with pytest.raises(InputFormatError, match=r"notes.txt:3: neither RIPE Atlas JSON"):
        store.ingest_files(Campaign("txt", tmp_path), [f])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_ingest_files_any_framing_and_compression(data, tmp_path_factory):
    """Generated valid and damaged records, as NDJSON or a JSON array, plain or compressed:
    ingest never crashes, and seen = added + duplicates + set aside, by reason."""
    from tests.probes.test_parse import _damage, _valid

    records = data.draw(st.lists(_valid, min_size=1, max_size=40))
    lines = [_damage(data, orjson.dumps(r)) for r in records]
    framing = data.draw(st.sampled_from(["ndjson", "array"]))
    if framing == "array":  # an API download: only whole objects can be framed this way
        lines = [ln for ln in lines if _is_object(ln)] or [orjson.dumps(records[0])]
        payload = b"[" + b",".join(lines) + b"]"
    else:
        payload = b"\n".join(lines) + b"\n"
    comp = data.draw(st.sampled_from(["none", "gz", "bz2", "xz"]))
    payload = {"none": lambda b: b, "gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}[comp](payload)
    tmp = tmp_path_factory.mktemp("fuzz")
    f = tmp / f"in.{comp}"
    f.write_bytes(payload)
    c = Campaign("fuzz", tmp / "ws")
    if not any(ln.lstrip().startswith(b"{") for ln in lines) and framing == "ndjson":
        with pytest.raises(InputFormatError):
            store.ingest_files(c, [f])
        return
    rep = store.ingest_files(c, [f])
    assert rep.seen == rep.added + rep.duplicates + sum(rep.drops.values())
    assert set(rep.drops) <= set(DROP_REASONS)
    stored = _count(c, "traces") if rep.added else 0
    assert stored == rep.added
    again = store.ingest_files(c, [f])
    assert again.added == 0 and again.duplicates == rep.added + rep.duplicates


def _is_object(line: bytes) -> bool:
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


PIERKY = "ripe-atlas/pierky-ripe-atlas-monitor-fixtures/1033154.json"


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_api_bundle_stores_its_results_and_its_probes(test_data, tmp_path, engine):
    """A real API bundle: results into the store, its probe page into the probe table."""
    bundle = orjson.loads((test_data / PIERKY).read_bytes())
    listed = {p["id"] for p in bundle["probes"]["results"]}
    bad = {"id": -1, "country_code": "NL"}
    doc = {**bundle, "probes": {**bundle["probes"], "results": [*bundle["probes"]["results"], bad]}}
    src = tmp_path / "bundle.json"
    src.write_bytes(orjson.dumps(doc))
    c = Campaign("bundle", tmp_path / "ws")
    kwargs = {"engine": "dask", "workers": 1} if engine == "dask" else {}
    report = store.ingest_files(c, [src], **kwargs)
    assert report.added == len({(r["prb_id"], r["timestamp"]) for r in bundle["results"]})
    assert set(store.read_probe_meta(c).column("prb_id").to_pylist()) == listed
    entry = orjson.loads(c.ingest_report.read_bytes())["inputs"]
    (probes,) = [e["probes"] for e in entry.values()]
    assert probes == {"found": len(listed) + 1, "stored": len(listed), "drops": {"bad_id": 1}}
    n, missing = store.probes_without_meta(c)
    assert n == len({r["prb_id"] for r in bundle["results"]})
    assert missing == sorted({r["prb_id"] for r in bundle["results"]} - listed)


def test_a_failing_input_still_leaves_the_record_of_what_was_done(test_data, tmp_path):
    good = test_data / SAGAN
    bad = tmp_path / "notes.txt"
    bad.write_text("these are not traceroutes\n")
    c = Campaign("half", tmp_path / "ws")
    with pytest.raises(InputFormatError):
        store.ingest_files(c, [good, bad])
    state = orjson.loads(c.ingest_report.read_bytes())
    assert [e["name"] for e in state["inputs"].values()] == [str(good)]
    (run,) = state["runs"]
    assert run["failed"].startswith("InputFormatError") and run["added"] == state["results_stored"] > 0


def test_cli_ingest_says_which_probes_have_no_metadata(test_data, tmp_path):
    ids = {orjson.loads(line)["prb_id"] for line in real_lines(test_data, SAGAN)}
    out = subprocess.run(
        [sys.executable, "-m", "analysis.cli", "ingest", str(test_data / SAGAN), "--campaign", "nometa",
         "--workspace", str(tmp_path)], capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "200"},
    ).stdout
    assert f"warning: {len(ids):,} of {len(ids):,} probes have no metadata" in " ".join(out.split())
    assert "pathexp probes fetch --campaign NAME" in " ".join(out.split())
