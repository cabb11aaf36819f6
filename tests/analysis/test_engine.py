"""The Dask engine gives the local engine's outputs, on real Atlas results and real reference data.

One real ``distributed.LocalCluster`` (2 single-threaded worker processes) serves the whole
module through its scheduler address; one ingest starts its own LocalCluster (``workers=2``)
to cover that path too.
"""

from __future__ import annotations

import lzma
import shutil
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from analysis.campaign_io import analyze_campaign, annotate_campaign
from analysis.cli import add_engine_args, engine_options
from probes import store
from probes.engine import ENGINES, open_runner
from probes.errors import ConfigError
from probes.workspace import Campaign

MENOG = "ripe-atlas/traceroutes/menog_traceroutes_full.ndjson.xz"
SEGMENT = 700  # results per segment: several segments from a few thousand results
OVERLAP = 1750  # where input b starts: inside a's fourth segment, not at its edge


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, scheduler_kwargs={"dashboard": False, "dashboard_address": ":0"}) as c:
        yield c


@pytest.fixture(scope="module")
def inputs(test_data, tmp_path_factory):
    """Three input files cut from the real MENOG results; b overlaps a (its first staged part
    holds stored and new results), a is given twice."""
    lines = [ln for ln in lzma.decompress((test_data / MENOG).read_bytes()).split(b"\n") if ln.strip()][:4000]
    d = tmp_path_factory.mktemp("inputs")
    (d / "a.ndjson").write_bytes(b"\n".join(lines[:2500]) + b"\n")
    (d / "b.ndjson.xz").write_bytes(lzma.compress(b"\n".join(lines[OVERLAP:]) + b"\n"))
    keys = {(o["msm_id"], o["prb_id"], o["timestamp"]) for o in map(orjson.loads, lines)}
    return [d / "a.ndjson", d / "b.ndjson.xz", d / "a.ndjson"], len(keys), len(lines)


def _pipeline(root: Path, files: list[Path], snap, **engine) -> Campaign:
    c = Campaign("engine", root)
    store.ingest_files(c, files, segment_results=SEGMENT, **engine)
    annotate_campaign(c, snapshot_id=snap.id, cache_dir=snap.path.parent.parent, **engine)
    analyze_campaign(c, cache_dir=snap.path.parent.parent, n_boot=50, dst_country="any", **engine)
    return c


def _annotated(c: Campaign) -> pa.Table:
    return pa.concat_tables(pq.read_table(f) for f in sorted(c.annotated_dir.glob("*.parquet")))


def _report(c: Campaign) -> dict:
    rep = orjson.loads(c.exposure_json.read_bytes())
    rep["outputs"] = {k: str(Path(v).relative_to(c.root)) for k, v in rep["outputs"].items()}
    return rep


def _cli_pipeline(root: Path, files: list[Path], snap, scheduler: str) -> Campaign:
    """The same pipeline through ``pathexp ... --engine dask --scheduler ADDRESS``."""
    from analysis.cli import main

    where = ["--campaign", "engine", "--workspace", str(root), "--engine", "dask", "--scheduler", scheduler]
    cache = str(snap.path.parent.parent)
    assert main(["ingest", *map(str, files), "--segment-results", str(SEGMENT), *where]) == 0
    assert main(["annotate", "--snapshot", snap.id, "--cache-dir", cache, *where]) == 0
    assert main(["analyze", "--cache-dir", cache, "--bootstrap", "50", "--dst-country", "any", *where]) == 0
    return Campaign("engine", root)


@pytest.fixture(scope="module")
def both(inputs, real_snapshot, cluster, tmp_path_factory):
    files, _, _ = inputs
    local = _pipeline(tmp_path_factory.mktemp("local"), files, real_snapshot)
    dask = _cli_pipeline(tmp_path_factory.mktemp("dask"), files, real_snapshot, cluster.scheduler_address)
    return local, dask


def test_store_is_identical_and_deduplicated(both, inputs):
    local, dask = both
    _, n_unique, n_lines = inputs
    # oracle: the distinct (msm_id, prb_id, timestamp) keys of the input lines
    assert store.read_traces(local).num_rows == n_unique
    assert store.segment_names(local) == store.segment_names(dask)
    assert len(store.segment_names(local)) >= 4
    assert store.read_hops(dask).equals(store.read_hops(local))
    assert store.read_traces(dask).equals(store.read_traces(local))
    assert list(store.iter_raw(dask)) == list(store.iter_raw(local))
    # byte for byte: both engines write each segment block by block with the same options,
    # whether a staged part was renamed into it or replayed against the stored results
    for name in store.segment_names(local):
        for table in ("raw", "traces", "hops"):
            same = store.segment_path(dask, name, table).read_bytes() == store.segment_path(local, name, table).read_bytes()
            assert same, (name, table)
    ing = [orjson.loads((c.ingest_report).read_bytes()) for c in (local, dask)]
    assert ing[0]["inputs"] == ing[1]["inputs"]
    run = ing[1]["runs"][0]
    assert run == {**ing[0]["runs"][0], "at": run["at"]}
    assert run["seen"] == 2500 + (n_lines - OVERLAP) + 2500
    assert run["duplicates"] == run["seen"] - n_unique - sum(run["drops"].values())


def test_annotated_paths_and_exposure_are_identical(both):
    local, dask = both
    assert sorted(p.name for p in dask.annotated_dir.glob("*.parquet")) == [f"{n}.parquet" for n in store.segment_names(local)]
    from analysis.campaign_io import _partitions

    # one unit of work per segment: a segment at a time in memory
    assert len(_partitions(local, sorted(local.annotated_dir.glob("*.parquet")))) == len(store.segment_names(local))
    ann = _annotated(local)
    assert ann.num_rows == store.read_hops(local).num_rows
    assert _annotated(dask).equals(ann)
    a_local, a_dask = (orjson.loads(c.annotate_json.read_bytes()) for c in both)
    assert a_local == a_dask
    p_local = pq.read_table(local.paths_parquet)
    assert p_local.num_rows == store.read_traces(local).num_rows
    assert pq.read_table(dask.paths_parquet).equals(p_local)
    # router owners: the segments reduced on the workers, merged in the client
    owners = pq.read_table(local.owners_parquet)
    assert owners.num_rows == pa.compute.count_distinct(ann["reply_from"]).as_py()
    assert pq.read_table(dask.owners_parquet).equals(owners)
    assert _report(dask) == _report(local)
    for name in ("path_exposure", "pop_exposure", "hegemony", "pops", "change_events"):
        assert pq.read_table(dask.exposure_table(name)).equals(
            pq.read_table(local.exposure_table(name))), name
    assert dask.as_graph_graphml.read_bytes() == local.as_graph_graphml.read_bytes()


def test_owners_from_the_hop_rows_destination_equal_those_joined_from_the_traceroutes(both):
    """The ownership chunks take each traceroute's destination from the hop rows (no
    join); annotated parts without that column take it from the traceroute segments.
    Both give the same owners, destination ASes (rule 7d) included."""
    import duckdb

    from analysis.campaign_io import _annotated_columns, _owner_table

    local, _ = both
    ann = sorted(local.annotated_dir.glob("*.parquet"))
    traces = [str(store.segment_path(local, n, "traces")) for n in store.segment_names(local)]
    files = [str(f) for f in ann]
    dests = duckdb.sql("SELECT dst_addr, min(asn) AS dst_asn FROM read_parquet($f) WHERE reply_from = dst_addr "
                       "GROUP BY dst_addr", params={"f": files}).to_arrow_table()
    assert dests.num_rows >= 5
    cols = _annotated_columns(ann)
    assert "dst_addr" in cols
    with_dst, _, owner_attrs = _owner_table(ann, cols, traces, None, "test", dests)
    joined, _, _ = _owner_table(ann, [c for c in cols if c != "dst_addr"], traces, None, "test", dests)
    assert with_dst is not None and with_dst.num_rows > 100
    assert with_dst.equals(joined)
    assert pc.sum(pc.equal(with_dst["owner_via"], "destination")).as_py() > 0  # rule 7d met
    # the owner ASes' family and country, taken from one row per address, are those of
    # every hop row of the AS (the first non-empty value in alphabetical order)
    duckdb.register("wanted", with_dst.select(["owner_asn"]))
    every_row = duckdb.sql(
        "SELECT a AS asn, min(f) FILTER (WHERE f <> '') AS family, min(c) FILTER (WHERE c <> '') AS as_country "
        "FROM (SELECT coalesce(member_asn, asn)::BIGINT a, family::VARCHAR f, as_country::VARCHAR c "
        "FROM read_parquet($f)) WHERE a IN (SELECT owner_asn FROM wanted) GROUP BY a ORDER BY a",
        params={"f": files}).to_arrow_table()
    assert owner_attrs is not None and owner_attrs.num_rows > 10
    assert owner_attrs.to_pylist() == every_row.to_pylist()
    assert pc.count(owner_attrs["as_country"]).as_py() > 10  # (no flagged family among these owners)


def test_streamed_analysis_equals_the_whole_table_analysis(both, real_snapshot, tmp_path):
    """Per-segment paths (campaign-wide destination lookup) == build_paths on everything at once."""
    local, _ = both
    whole = Campaign("whole", tmp_path)
    shutil.copytree(local.root, whole.root)
    # annotated parts not named after segments: analyze falls back to one partition
    files = sorted(whole.annotated_dir.glob("*.parquet"))
    pq.write_table(pa.concat_tables(pq.read_table(f) for f in files), whole.annotated_dir / "all.parquet")
    for f in files:
        f.unlink()
    analyze_campaign(whole, cache_dir=real_snapshot.path.parent.parent, n_boot=50, dst_country="any")
    streamed = pq.read_table(local.paths_parquet)
    keys = [("msm_id", "ascending"), ("prb_id", "ascending"), ("timestamp", "ascending")]
    assert pq.read_table(whole.paths_parquet).equals(streamed.sort_by(keys))
    rep_w, rep_s = _report(whole), _report(local)
    for rep, c in ((rep_w, whole), (rep_s, local)):
        rep["campaign"] = None
        rep["probe_metadata"]["status"] = rep["probe_metadata"]["status"].replace(f"--campaign {c.name}", "")
        for fam in rep["families"].values():  # weighted sums depend on row order in the last bits
            for kind in ("path_exposure", "pop_exposure"):
                fam[kind]["probe_weighted"] = round(fam[kind]["probe_weighted"]["estimate"], 12)
    assert rep_w == rep_s


def _whole_campaign(sql: str, files: list[str], **tables: pa.Table) -> pa.Table:
    """``sql`` over every annotated file at once (``h``: read the union-by-name way)."""
    import duckdb

    con = duckdb.connect()
    try:
        for name, table in tables.items():
            con.register(name, table)
        con.execute("CREATE TEMP VIEW h AS SELECT * FROM read_parquet("
                    + "[" + ", ".join(f"'{f}'" for f in files) + "], union_by_name=true)")
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()


def test_per_file_scans_equal_the_campaign_wide_queries(both, cluster, tmp_path):
    """analyze reduces each annotated file on its own (on the runner's threads or Dask
    workers) and merges the reductions: the merged answers equal the same questions asked
    of every hop row at once, also where one file lacks columns the others have (read as
    nulls, as DuckDB's union_by_name gives) and whatever the order the files finish in."""
    from analysis import _hop_scans as hs
    from analysis.campaign_io import _annotated_columns

    local, _ = both
    src = sorted(local.annotated_dir.glob("*.parquet"))
    assert len(src) >= 4
    ann = []
    for i, f in enumerate(src):
        table = pq.read_table(f)
        if i == 1:  # an older part: no destination on its hop rows, no late flag
            table = table.drop_columns([c for c in ("dst_addr", "late") if c in table.column_names])
        ann.append(tmp_path / f.name)
        pq.write_table(table, ann[-1], row_group_size=1000)
    files = [str(f) for f in ann]
    cols = _annotated_columns(ann)
    assert {"dst_addr", "late", "dup", "ip_class", "family"} <= set(cols)
    # the probes' places (these real results come without probe metadata): any place will
    # do for comparing the two ways of asking, one probe without
    ids = sorted(set(store.read_traces(local)["prb_id"].to_pylist()))
    probes = pa.table({"prb_id": pa.array(ids, pa.int64()),
                       "latitude": [None, *(40.0 + i for i in range(1, len(ids)))],
                       "longitude": [None, *(10.0 - i for i in range(1, len(ids)))]})
    owners = pq.read_table(local.owners_parquet)
    stale = "coalesce(late, false) OR coalesce(dup, false)"
    reply = f"rtt IS NOT NULL AND rtt >= 0 AND reply_from IS NOT NULL AND NOT ({stale})"
    key = lambda t: sorted(t.to_pylist(), key=str)  # noqa: E731

    # the questions over every hop row at once
    sel = ", ".join(hs.ADDRESS_COLUMNS)
    want_addresses = _whole_campaign(
        f"SELECT reply_from, {sel}, count(*) AS n, min(struct_pack(m := msm_id, p := prb_id, t := timestamp, "
        "h := hop, n := attempt)) AS k FROM h WHERE reply_from IS NOT NULL GROUP BY ALL", files)
    want_pairs = _whole_campaign(
        "SELECT prb_id, dst_addr, min(rtt) FILTER (WHERE reply_from = dst_addr AND rtt IS NOT NULL) AS dst_rtt_ms "
        "FROM h GROUP BY prb_id, dst_addr ORDER BY prb_id, dst_addr", files)
    want_near = _whole_campaign(
        f"""WITH m AS (SELECT reply_from AS addr, prb_id, min(rtt) AS rtt FROM h WHERE {reply} AND rtt <= 20
                       AND ip_class = 'public' AND reply_from IS DISTINCT FROM dst_addr GROUP BY ALL),
            r AS (SELECT m.*, q.latitude AS lat, q.longitude AS lon,
                         row_number() OVER (PARTITION BY addr ORDER BY rtt, prb_id) AS k,
                         count(*) OVER (PARTITION BY addr) AS n
                  FROM m JOIN q USING (prb_id) WHERE q.latitude IS NOT NULL AND q.longitude IS NOT NULL)
            SELECT addr, prb_id, lat, lon, rtt FROM r WHERE n >= 2 AND k <= 16 ORDER BY addr, prb_id""",
        files, q=probes)
    # the flagged routers' discs: with no family among these real hops, the owners a
    # family AS is made of flag nothing, so a family given to two owner ASes stands in
    fam_asns = pc.unique(owners["owner_asn"].drop_null()).to_pylist()[:2]
    flagged = owners.filter(pc.is_in(owners["owner_asn"], value_set=pa.array(fam_asns, owners["owner_asn"].type)))
    assert flagged.num_rows >= 2
    want_discs = _whole_campaign(
        f"""WITH r AS (SELECT * FROM h WHERE {reply}),
            f AS (SELECT * FROM r WHERE family IS NOT NULL OR reply_from IN (SELECT addr FROM x)),
            w AS (SELECT reply_from AS addr FROM f UNION SELECT r.reply_from FROM r SEMI JOIN f
                  ON f.msm_id = r.msm_id AND f.prb_id = r.prb_id AND f.timestamp = r.timestamp AND f.hop = r.hop + 1),
            a AS (SELECT prb_id, min(rtt) AS base FROM r WHERE ip_class = 'public' GROUP BY prb_id),
            m AS (SELECT reply_from AS addr, prb_id, min(rtt) AS rtt FROM r
                  WHERE reply_from IN (SELECT addr FROM w) GROUP BY ALL)
            SELECT m.addr, m.prb_id, q.latitude AS lat, q.longitude AS lon, m.rtt, a.base
            FROM m JOIN q USING (prb_id) LEFT JOIN a USING (prb_id)
            WHERE q.latitude IS NOT NULL AND q.longitude IS NOT NULL ORDER BY ALL""",
        files, q=probes, x=pa.table({"addr": flagged["addr"].cast(pa.string())}))
    assert want_addresses.num_rows >= 250 and want_pairs.num_rows >= 30
    assert want_near.num_rows >= 10 and want_discs.num_rows >= 10
    assert pc.count(want_discs["base"]).as_py() > 0
    assert pc.count(want_pairs["dst_rtt_ms"]).as_py() > 0 and want_pairs["dst_addr"].null_count > 0

    with open_runner("dask", scheduler=cluster.scheduler_address) as dask_runner:
        for runner in (None, dask_runner):
            scans = hs.scan_files(ann, cols, runner)
            assert key(scans.addresses) == key(want_addresses.cast(scans.addresses.schema))
            assert scans.pair_rtts.to_pylist() == want_pairs.cast(scans.pair_rtts.schema).to_pylist()
            near = hs.near_discs(scans.near, probes)
            assert near.to_pylist() == want_near.cast(near.schema).to_pylist()
            discs = hs.rtt_discs(ann, cols, scans, owners, dict.fromkeys(fam_asns, "fam"), probes, runner)
            assert discs is not None
            assert discs.to_pylist() == want_discs.cast(discs.schema).to_pylist()


def test_local_cluster_started_for_the_run_and_crash_recovery(inputs, tmp_path):
    """A Dask ingest killed after staging (and between the renames of a commit) is completed
    by the next run without duplicates, equal to a local ingest."""
    files, n_unique, _ = inputs
    ref = Campaign("ref", tmp_path / "ref")
    store.ingest_files(ref, files, segment_results=SEGMENT)

    c = Campaign("crash", tmp_path / "crash")
    st = store._Store(c, segment_results=SEGMENT)
    staging = c.staging_dir
    staging.mkdir()
    manifest = store._stage_file((0, str(files[0]), str(staging), "atlas", SEGMENT), None)
    assert len(manifest["parts"]) >= 3
    rep = store.IngestReport()
    first = manifest["parts"][0]
    t = pq.read_table(first["stem"] + ".traces.parquet")
    st.commit_staged(first, store._KeyIndex.encode(t["msm_id"].to_numpy(), t["prb_id"].to_numpy(),
                                                     store.epoch_seconds(t["timestamp"])), rep)
    # "killed" while committing the second part: only its raw file was renamed
    (Path(manifest["parts"][1]["stem"] + ".ndjson.zst")).rename(c.raw_dir / "seg-000002.ndjson.zst")
    st._writer.shutdown()
    st._locked.close()  # the lock goes with the "killed" process
    assert staging.is_dir() and store.read_traces(c).num_rows == first["results"]

    again = store.ingest_files(c, files, segment_results=SEGMENT, engine="dask", workers=2)
    assert not staging.exists()
    assert store.read_traces(c).num_rows == n_unique
    assert again.added == n_unique - first["results"] - manifest["parts"][1]["results"]
    assert store.read_hops(c).equals(store.read_hops(ref))
    assert list(store.iter_raw(c)) == list(store.iter_raw(ref))
    # nothing new the third time
    assert store.ingest_files(c, files[:2], segment_results=SEGMENT, engine="dask", workers=2).added == 0


def test_engine_options_and_errors():
    import argparse

    p = argparse.ArgumentParser()
    add_engine_args(p)
    args = p.parse_args(["--engine", "dask", "--scheduler", "tcp://127.0.0.1:1", "--workers", "3"])
    assert engine_options(args) == {"engine": "dask", "scheduler": "tcp://127.0.0.1:1", "workers": 3}
    assert engine_options(p.parse_args([]))["engine"] == "local" and ENGINES == ("local", "dask")
    with pytest.raises(ConfigError, match="unknown engine 'spark'"):
        with open_runner("spark"):
            pass
    with pytest.raises(ConfigError, match="--scheduler and --workers need --engine dask"):
        with open_runner("local", scheduler="tcp://127.0.0.1:1"):
            pass
    with pytest.raises(ConfigError, match="give one of them"):
        with open_runner("dask", scheduler="tcp://127.0.0.1:1", workers=2):
            pass
    with pytest.raises(ConfigError, match="--workers must be at least 1"):
        with open_runner("dask", workers=0):
            pass
    with open_runner() as r:
        assert list(r.map(lambda item, ctx: item * ctx, [1, 2, 3], setup=lambda s: s + 1, shared=1)) == [2, 4, 6]
    with open_runner(local_threads=3) as r:
        assert r.slots == 3


def test_worker_file_errors_name_the_worker(cluster, tmp_path):
    from probes.errors import StoreError

    missing = tmp_path / "not-there.parquet"
    with open_runner("dask", scheduler=cluster.scheduler_address) as r:
        with pytest.raises(StoreError, match=r"Dask worker tcp://127\.0\.0\.1:\d+: .*not-there.*same path"):
            list(r.map(lambda item, ctx: open(item, "rb").read(), [str(missing)]))
    with pytest.raises(StoreError, match="cannot read"):
        store.ingest_files(Campaign("x", tmp_path), [missing], engine="dask", scheduler=cluster.scheduler_address)


def _pools(_item, _ctx):
    import pyarrow as pa

    from analysis._tables import connect

    con = connect()
    try:
        return pa.cpu_count(), con.execute("SELECT current_setting('threads')").fetchone()[0]
    finally:
        con.close()


def test_a_one_thread_worker_sizes_arrow_and_duckdb_to_its_thread(cluster):
    """Each single-threaded worker computes with one thread, in Arrow and in DuckDB: two
    workers on a two-core machine would otherwise each run queries on both cores."""
    with open_runner("dask", scheduler=cluster.scheduler_address) as r:
        assert set(r.map(_pools, range(4))) == {(1, 1)}
        assert r.slots == 2  # the module's cluster: two workers of one thread


def _with_shared(item: int, shared: dict) -> tuple[int, int]:
    return item, shared["x"]


def test_maps_one_after_another_each_get_their_own_shared_values(cluster):
    """Two maps in a row whose shared dicts have the same keys (analyze's passes do): each
    task sees its own map's values. Scattered as a dict, the values were stored under the
    dict's keys, so the second map reused keys the scheduler was releasing ("lost
    dependencies") or could be handed the first map's value."""
    with open_runner("dask", scheduler=cluster.scheduler_address) as r:
        for x in range(6):
            assert list(r.map(_with_shared, range(4), shared={"x": x})) == [(i, x) for i in range(4)]


def _stage_counting_threads(job: tuple, _shared: object) -> tuple[list[str], int]:
    """Stage an input file as a Dask ingest does; the pathexp threads started meanwhile."""
    import threading

    started: list[str] = []
    start = threading.Thread.start

    def counting(self: threading.Thread) -> None:
        if self.name.startswith("pathexp"):
            started.append(self.name)
        start(self)

    threading.Thread.start = counting  # type: ignore[method-assign]
    try:
        manifest = store._stage_file(job, None)
    finally:
        threading.Thread.start = start  # type: ignore[method-assign]
    return started, sum(p["results"] for p in manifest["parts"])


def test_a_one_thread_worker_stages_an_input_on_its_one_thread(cluster, inputs, tmp_path):
    """Ingest's helper threads (decompressing ahead, writing the blocks) follow the worker's
    thread budget: a one-thread worker does that work on its one thread, where this process,
    with cores to spare, starts them; the staged results are the same."""
    files, _, _ = inputs
    jobs = [(i, str(files[1]), str(tmp_path / f"staging-{i}"), "atlas", 500) for i in range(2)]
    with open_runner("dask", scheduler=cluster.scheduler_address) as r:
        on_workers = list(r.map(_stage_counting_threads, jobs[:1]))
    here = _stage_counting_threads(jobs[1], None)
    assert on_workers[0][0] == []
    assert on_workers[0][1] == here[1] > 500  # more than one part
    if pa.cpu_count() > 1:
        assert {name.rsplit("_", 1)[0] for name in here[0]} == {"pathexp-read", "pathexp-stage"}


_SCRIPT = """\
import sys
from probes.engine import open_runner
from probes.store import campaign_lock
from probes.workspace import Campaign

def double(x, shared):
    return 2 * x

def run():
    with campaign_lock(Campaign("guard", sys.argv[1]), holder="analyze"):
        with open_runner("dask", workers=1) as runner:
            print("sum", sum(runner.map(double, [1, 2])))
"""


@pytest.mark.parametrize("guarded", [False, True])
def test_a_script_without_a_main_guard_fails_with_the_fix_instead_of_hanging(tmp_path, guarded):
    """Dask starts each worker by importing the main script again: unguarded, the worker's
    copy of the call waited for the campaign lock its parent held, for good. Now the
    worker refuses and the parent says what to change; guarded, the same code runs."""
    import subprocess
    import sys

    script = tmp_path / "job.py"
    script.write_text(_SCRIPT + ('if __name__ == "__main__":\n    run()\n' if guarded else "run()\n"))
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "ws")], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[2])
    if guarded:
        assert done.returncode == 0, done.stderr
        assert "sum 6" in done.stdout
    else:
        assert done.returncode != 0
        assert "ConfigError: pathexp analyze of campaign 'guard' was called while a worker process" in done.stderr
        assert 'ConfigError: the Dask workers did not start' in done.stderr
        assert 'if __name__ == "__main__":' in done.stderr
