"""analysis.metrics: hand-computed exposure, intervals, hegemony and change events, and
interval coverage by simulation."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from analysis import metrics as M
from analysis.errors import SchemaMismatch
from analysis.paths import CROSSING_TYPE

CT, CU = "china-telecom", "china-unicom"
D1, D2 = dt.date(2026, 3, 1), dt.date(2026, 3, 2)


def _paths() -> pa.Table:
    # prb 1 (DE): [CT], [], [CT]; prb 2 (FR): [], [CU]; prb 3 (DE): [CT, CU]
    return pa.table({
        "prb_id": [1, 1, 1, 2, 2, 3],
        "probe_country": ["DE", "DE", "DE", "FR", "FR", "DE"],
        "probe_asn": [3320, 3320, 3320, 3215, 3215, 3320],
        "dst_addr": ["a", "b", "a", "a", "b", "b"],
        "day": pa.array([D1, D1, D2, D1, D2, D2], pa.date32()),
        "w": [1.0, 1.0, 1.0, 1.0, 1.0, 3.0],
        "flagged_families": [[CT], [], [CT], [], [CU], [CT, CU]],
    })


# ------------------------------------------------------------------------- exposure
def test_path_exposure_overall_and_per_family():
    t = _paths()
    assert M.path_exposure(t, family=CT, ci="none").column("exposure").to_pylist() == [0.5]
    assert M.path_exposure(t, family=CU, ci="none").column("exposure").to_pylist() == [pytest.approx(2 / 6)]
    row = M.path_exposure(t, ci="none").to_pylist()[0]
    assert (row["family"], row["traceroutes"], row["transiting"], row["probes"]) == ("any", 6, 4, 3)


def test_path_exposure_grouped():
    t = _paths()
    by_c = M.path_exposure(t, family=CT, by="source_country", ci="none").to_pylist()
    assert [(r["probe_country"], r["traceroutes"], r["transiting"], r["exposure"]) for r in by_c] == [
        ("DE", 4, 3, 0.75), ("FR", 2, 0, 0.0)]
    by_day = M.path_exposure(t, family=CT, by="day", ci="none").to_pylist()
    assert [(r["day"], r["exposure"]) for r in by_day] == [(D1, pytest.approx(1 / 3)), (D2, pytest.approx(2 / 3))]
    by_two = M.path_exposure(t, family=CT, by=["source_as", "destination"], ci="none")
    assert by_two.column_names[:3] == ["family", "probe_asn", "dst_addr"]
    assert by_two.num_rows == 4  # (3215,a) (3215,b) (3320,a) (3320,b)
    assert by_two.column("exposure").to_pylist() == [0.0, 0.0, 1.0, 0.5]


def test_weighted_exposure_uses_kish_effective_n():
    t = _paths()
    row = M.path_exposure(t, family=CT, weight="w").to_pylist()[0]
    assert row["exposure"] == pytest.approx(5 / 8)  # (1 + 1 + 3) / 8
    n_eff = 8.0 ** 2 / (5 * 1 + 9)  # 4.571
    lo, hi = M.wilson_interval(5 / 8 * n_eff, n_eff)
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(float(lo)), pytest.approx(float(hi)))
    assert "Kish" in row["method"]
    with pytest.raises(ValueError, match="negative"):
        M.path_exposure(t.set_column(5, "w", pa.array([-1.0] * 6)), family=CT, weight="w")


def test_pop_exposure_counts_only_located_not_inconsistent_crossings():
    def c(fam, cc, verdict):
        return {"family": fam, "ixp_country": cc, "verdict": verdict}

    t = pa.table({
        "prb_id": [1, 2, 3, 4, 5, 6],
        "pop_crossings": pa.array([
            [c(CT, "US", "consistent")],
            [c(CT, "US", "inconsistent")],
            [c(CT, "US", "unknown")],
            [c(CT, "DE", "consistent")],
            [c(CT, None, "unknown")],                 # private interconnect
            [c(CU, "US", "consistent")],
        ], pa.list_(pa.struct([(f.name, f.type) for f in CROSSING_TYPE if f.name in ("family", "ixp_country", "verdict")]))),
    })
    assert M.pop_indicator(t, family=CT).tolist() == [True, False, True, False, False, False]
    assert M.pop_indicator(t, family=CT, allow_unknown=False).tolist() == [True, False, False, False, False, False]
    assert M.pop_indicator(t).tolist() == [True, False, True, False, False, True]
    row = M.pop_exposure(t, family=CT, ci="none").to_pylist()[0]
    assert (row["pop_country"], row["transiting"], row["exposure"]) == ("US", 2, pytest.approx(2 / 6))


def test_missing_column_is_schema_mismatch():
    with pytest.raises(SchemaMismatch, match="flagged_families"):
        M.path_exposure(pa.table({"prb_id": [1]}))
    with pytest.raises(SchemaMismatch, match="probe_country"):
        M.path_exposure(_paths().drop_columns(["probe_country"]), by="source_country")


# ------------------------------------------------------------------------- intervals
def test_wilson_hand_values():
    lo, hi = M.wilson_interval(0, 10)
    z2 = 1.959963984540054 ** 2
    assert float(lo) == 0.0 and float(hi) == pytest.approx(z2 / (10 + z2))  # 0.2775
    lo, hi = M.wilson_interval(10, 10)
    assert float(lo) == pytest.approx(10 / (10 + z2)) and float(hi) == 1.0
    lo, hi = M.wilson_interval(0, 0)
    assert np.isnan(lo) and np.isnan(hi)


def test_wilson_coverage_by_simulation():
    rng = np.random.default_rng(20261121)
    for p, n in ((0.3, 200), (0.05, 400)):
        k = rng.binomial(n, p, size=1000)
        lo, hi = M.wilson_interval(k, n)
        coverage = float(np.mean((lo <= p) & (p <= hi)))
        assert 0.93 <= coverage <= 0.97, (p, n, coverage)


def test_cluster_bootstrap_is_seeded_and_names_its_method():
    t = _paths()
    a = M.path_exposure(t, family=CT, ci="cluster-bootstrap", n_boot=300, seed=7).to_pylist()[0]
    b = M.path_exposure(t, family=CT, ci="cluster-bootstrap", n_boot=300, seed=7).to_pylist()[0]
    assert a == b
    assert a["method"] == "cluster bootstrap over prb_id, percentile 95%, B=300, seed=7"
    assert a["ci_low"] <= a["exposure"] <= a["ci_high"]
    # one cluster: every replicate equals the estimate, yet one probe is no certainty: the
    # interval is Wilson's for 2/3 of one independent cluster (score formula, z = 1.96)
    est, lo, hi = M.cluster_bootstrap([1, 0, 1], [5, 5, 5], n_boot=50)
    z, p, n = 1.959963984540054, 2 / 3, 1
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert est == pytest.approx(2 / 3) and (lo, hi) == pytest.approx((centre - half, centre + half))


def test_cluster_bootstrap_without_any_event_keeps_an_honest_upper_bound():
    """0 transits among 3 probes x 100 traceroutes: not [0, 0] but Wilson's 0-of-3 bound."""
    z2 = 1.959963984540054 ** 2
    est, lo, hi = M.cluster_bootstrap(np.zeros(300), np.repeat([1, 2, 3], 100), n_boot=200)
    assert (est, lo) == (0.0, 0.0) and hi == pytest.approx(z2 / (3 + z2))
    est, lo, hi = M.cluster_bootstrap(np.ones(40), np.repeat([1, 2, 3, 4], 10), n_boot=200)
    assert (est, hi) == (1.0, 1.0) and lo == pytest.approx(4 / (4 + z2))


def test_cluster_bootstrap_coverage_on_clustered_data():
    """Probes differ (p_c ~ Beta(2, 6), mean 0.25, ICC 1/9); 20 traceroutes per probe.

    The cluster bootstrap keeps near-nominal coverage, while Wilson intervals that treat
    traceroutes as independent undercover badly (design effect 1 + 19/9 = 3.1).
    """
    rng = np.random.default_rng(4)
    n_sim, clusters, per = 1000, 60, 20
    truth = 2 / 8
    boot_hits = wilson_hits = 0
    for i in range(n_sim):
        pc_ = rng.beta(2, 6, size=clusters)
        x = (rng.random((clusters, per)) < pc_[:, None]).ravel()
        cl = np.repeat(np.arange(clusters), per)
        _, lo, hi = M.cluster_bootstrap(x, cl, n_boot=400, seed=i)
        boot_hits += lo <= truth <= hi
        wlo, whi = M.wilson_interval(x.sum(), x.size)
        wilson_hits += wlo <= truth <= whi
    assert 0.93 <= boot_hits / n_sim <= 0.97, boot_hits / n_sim
    assert wilson_hits / n_sim < 0.85, wilson_hits / n_sim


def test_proportion_from_sums_gives_each_group_what_its_rows_alone_give():
    """All groups' intervals come from one batched bootstrap; each must equal
    :func:`cluster_bootstrap` over that group's own rows, and the Wilson columns the
    Kish-weighted Wilson interval of those rows, whichever other groups share the call."""
    rng = np.random.default_rng(11)
    n = 2000
    group = rng.integers(0, 40, n)
    cluster = rng.integers(0, rng.integers(1, 30, 40)[group] + 1)  # 1 to 30 probes per group
    x = rng.random(n) < rng.beta(1, 4, 40)[group]
    w = rng.gamma(2.0, 1.0, n)
    sums = M.cluster_sums(pa.table({"g": group}), cluster, x, weights=w)
    table = M.proportion_from_sums(sums, ["g"], ci="cluster-bootstrap", n_boot=300, seed=5)
    assert table.column("g").to_pylist() == sorted(set(group.tolist()))
    for row in table.to_pylist():
        mine = group == row["g"]
        est, lo, hi = M.cluster_bootstrap(x[mine], cluster[mine], weights=w[mine], n_boot=300, seed=5)
        assert (row["exposure"], row["ci_low"], row["ci_high"]) == pytest.approx((est, lo, hi), rel=1e-12)
        neff = w[mine].sum() ** 2 / (w[mine] ** 2).sum()
        wlo, whi = M.wilson_interval(est * neff, neff)
        assert (row["wilson_low"], row["wilson_high"]) == pytest.approx((float(wlo), float(whi)), rel=1e-12)
        assert row["probes"] == len(set(cluster[mine].tolist())) and row["traceroutes"] == mine.sum()
        assert row["transiting"] == x[mine].sum()
    # a second call draws the same replicates (the multiplicities are reused, never altered)
    assert M.proportion_from_sums(sums, ["g"], ci="cluster-bootstrap", n_boot=300, seed=5) == table


# ------------------------------------------------------------------------- hegemony
def test_hegemony_hand_computed_without_trimming():
    t = pa.table({
        "probe_asn": [1, 1, 2, 3],
        "as_path": [["AS1", "AS10", "AS20"], ["AS1", "AS30", "AS20"], ["AS2", "AS10", "AS20"], ["AS3", "AS20"]],
    })
    h = {r["node"]: r for r in M.hegemony(t).to_pylist()}
    # 3 viewpoints < 1/0.1: nothing trimmed, plain mean of b_v (zeros included)
    assert h["AS20"]["hegemony"] == 1.0
    assert h["AS10"]["hegemony"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert h["AS30"]["hegemony"] == pytest.approx(0.5 / 3)
    assert "AS1" not in h  # a viewpoint's own AS is not its transit
    assert h["AS10"]["n_viewpoints"] == 3 and h["AS10"]["trimmed_each_side"] == 0
    assert h["AS10"]["viewpoints_seen"] == 2


def test_hegemony_trimming_with_ties():
    # 10 viewpoints (ASes 101..110). AS500 on all paths of 101..104 -> b = [1]*4 + [0]*6.
    # AS600: viewpoint 110 has two paths, one through it (b = 0.5); the others all (b = 1).
    rows = []
    for v in range(101, 111):
        path = [f"AS{v}"] + (["AS500"] if v <= 104 else []) + ["AS600", "AS9"]
        rows.append((v, path))
    rows.append((110, ["AS110", "AS9"]))
    t = pa.table({"probe_asn": [r[0] for r in rows], "as_path": [r[1] for r in rows]})
    h = {r["node"]: r["hegemony"] for r in M.hegemony(t, trim=0.1).to_pylist()}
    assert h["AS500"] == pytest.approx(3 / 8)  # drop one 0 and one 1: [0]*5 + [1]*3
    assert h["AS600"] == pytest.approx(1.0)    # drop 0.5 and one 1: [1]*8
    assert h["AS9"] == 1.0
    h2 = {r["node"]: r["hegemony"] for r in M.hegemony(t, trim=0.2).to_pylist()}
    assert h2["AS500"] == pytest.approx(2 / 6)  # drop two each side: [0]*4 + [1]*2


def test_trimmed_mean_edge_cases():
    assert float(M.trimmed_mean([1.0, 2.0, 3.0, 100.0], trim=0.3)) == 2.5   # floor(1.2) = 1
    assert float(M.trimmed_mean([1.0, 2.0, 100.0], trim=0.3)) == pytest.approx(103 / 3)  # floor(0.9) = 0
    assert float(M.trimmed_mean([7.0], trim=0.1)) == 7.0
    with pytest.raises(ValueError):
        M.trimmed_mean([1.0, 2.0], trim=0.5)
    with pytest.raises(ValueError):
        M.trimmed_mean([], trim=0.1)


# ------------------------------------------------------------------------- change events
def test_change_events_per_pair_in_time_order():
    ts = [dt.datetime(2026, 3, d, tzinfo=dt.timezone.utc) for d in range(1, 6)]
    # pair (1, a) in shuffled order: x by time = 0, 1, 1, 0, 1
    t = pa.table({
        "prb_id": [1, 1, 1, 1, 1, 2, 2],
        "dst_addr": ["a"] * 5 + ["a", "a"],
        "timestamp": pa.array([ts[3], ts[0], ts[4], ts[1], ts[2], ts[0], ts[1]], pa.timestamp("s", tz="UTC")),
        "flagged_families": [[], [], [CT], [CT], [CT, CU], [CT], [CT]],
    })
    ev = M.change_events(t, family=CT).to_pylist()
    assert [(e["prb_id"], e["event"], e["timestamp"].day, e["previous_timestamp"].day) for e in ev] == [
        (1, "start", 2, 1), (1, "stop", 4, 3), (1, "start", 5, 4)]
    assert [e["event"] for e in M.change_events(t, family=CU).to_pylist()] == ["start", "stop"]


# ------------------------------------------------------------------------- public API
@pytest.mark.parametrize("modname", ["analysis.paths", "analysis.metrics", "analysis.graph", "analysis.geo"])
def test_public_api_is_what_all_says(modname):
    import importlib
    import inspect

    mod = importlib.import_module(modname)
    public = {n for n, v in vars(mod).items()
              if not n.startswith("_") and inspect.isfunction(v) and v.__module__ == modname}
    assert public <= set(mod.__all__), public - set(mod.__all__)
    for name in mod.__all__:
        assert hasattr(mod, name), name


@pytest.mark.parametrize("name", ["wilson_interval", "cluster_bootstrap", "path_exposure", "pop_exposure",
                                  "hegemony", "change_events", "proportion_table"])
def test_metric_docstrings_state_formula_paper_and_example(name):
    doc = getattr(M, name).__doc__
    assert "References" in doc and "Examples" in doc and (".. math::" in doc or "math:" in doc), name


def _random_paths(seed: int, n: int = 400) -> pa.Table:
    """AS paths with what real ones have: repeated nodes (loops), empty and null paths, the
    probe's own AS first, IXP nodes, null viewpoints."""
    rng = np.random.default_rng(seed)
    vps, paths = [], []
    for _ in range(n):
        vp = int(rng.integers(1, 15))
        path = [f"AS{vp}"] if rng.random() < 0.7 else []
        path += [f"AS{int(a)}" if a < 40 else f"IXP:pdb:{int(a)}" for a in rng.integers(10, 45, rng.integers(0, 7))]
        vps.append(None if rng.random() < 0.05 else vp)
        paths.append(None if rng.random() < 0.03 else path)
    return pa.table({"prb_id": rng.integers(1, 30, n), "probe_asn": pa.array(vps, pa.int64()),
                     "as_path": pa.array(paths, pa.list_(pa.string()))})


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_hegemony_by_chunks_of_paths_is_the_set_count_over_every_path(monkeypatch, chunk):
    from analysis import _tables

    t = _random_paths(chunk)
    monkeypatch.setattr(_tables, "PATH_CHUNK_ROWS", chunk)
    got = {r["node"]: r for r in M.hegemony(t).to_pylist()}
    # oracle: per viewpoint, the share of its paths through each node (once per path, its own
    # AS left out), the trimmed mean over every viewpoint, zeros included
    by_vp: dict[int, list[set]] = {}
    for vp, path in zip(t["probe_asn"].to_pylist(), t["as_path"].to_pylist(), strict=True):
        if vp is not None:
            by_vp.setdefault(vp, []).append(set(path or []) - {f"AS{vp}"})
    nodes = set().union(*(s for sets in by_vp.values() for s in sets))
    assert set(got) == nodes
    for node in nodes:
        b = [sum(node in s for s in sets) / len(sets) for sets in by_vp.values()]
        assert got[node]["hegemony"] == pytest.approx(float(M.trimmed_mean(b, trim=0.1)))
        assert got[node]["viewpoints_seen"] == sum(x > 0 for x in b)
        assert got[node]["n_viewpoints"] == len(by_vp)


def _events_oracle(rows, family):
    """Change events by plain loops: per pair, in (timestamp, input row) order, nulls last."""
    by_pair = {}
    for i, r in enumerate(rows):
        fams = r["flagged_families"] or []
        x = bool(fams) if family is None else family in fams
        by_pair.setdefault((r["prb_id"], r["dst_addr"]), []).append((r["timestamp"], i, x))

    def last(v):  # ascending, nulls last
        return (v is None, v if v is not None else 0)

    out = []
    for (prb, dst) in sorted(by_pair, key=lambda k: (last(k[0]), (k[1] is None, k[1] or ""))):
        seq = sorted(by_pair[(prb, dst)], key=lambda e: (last(e[0]), e[1]))
        for (t0, _, x0), (t1, _, x1) in zip(seq[:-1], seq[1:], strict=True):
            if x1 != x0:
                out.append({"prb_id": prb, "dst_addr": dst, "family": family or "any",
                            "event": "start" if x1 else "stop", "timestamp": t1, "previous_timestamp": t0})
    return out


def _event_paths(seed: int, n: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    fams = [None, [], [CT], [CU], [CT, CU], ["china-mobile"]]
    t0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    return pa.table({
        "prb_id": pa.array(rng.integers(1, 6, n), pa.int64()),
        "dst_addr": pa.array([None if v == 0 else f"192.0.2.{v}" for v in rng.integers(0, 4, n)], pa.string()),
        # few distinct times: many ties within a pair, which keep the input order
        "timestamp": pa.array([t0 + dt.timedelta(minutes=int(m)) for m in rng.integers(0, 6, n)],
                              pa.timestamp("ms", tz="UTC")),
        "flagged_families": pa.array([fams[i] for i in rng.integers(0, len(fams), n)], pa.list_(pa.string())),
        "in_scope": pa.array(rng.random(n) < 0.8),
    })


@pytest.mark.parametrize("family", [None, CT, CU])
def test_change_events_match_a_loop_over_pairs_with_ties_and_nulls(family):
    t = _event_paths(11, 400)
    got = M.change_events(t, family=family)
    want = _events_oracle(t.to_pylist(), family)
    assert len(want) > 20
    assert got.to_pylist() == want
    assert got.schema == pa.schema([("prb_id", pa.int64()), ("dst_addr", pa.string()), ("family", pa.string()),
                                    ("event", pa.string()), ("timestamp", pa.timestamp("ms", tz="UTC")),
                                    ("previous_timestamp", pa.timestamp("ms", tz="UTC"))])


def test_change_events_file_is_the_in_scope_tables_events(tmp_path):
    import pyarrow.parquet as pq

    t = _event_paths(12, 500)
    pq.write_table(t, tmp_path / "p.parquet", row_group_size=97)
    families = [None, CT, CU]
    scoped = t.filter(t.column("in_scope"))
    want = pa.concat_tables([M.change_events(scoped, family=f) for f in families])
    got = M.change_events_file(tmp_path / "p.parquet", families, memory_limit="64MB")
    assert got.num_rows > 20 and got.equals(want)
    # every family from one pass, each family's events those of a loop over its pairs alone
    assert got.to_pylist() == [e for f in families for e in _events_oracle(scoped.to_pylist(), f)]
    # without an in_scope column every traceroute counts
    pq.write_table(t.drop_columns(["in_scope"]), tmp_path / "all.parquet")
    assert M.change_events_file(tmp_path / "all.parquet", [CT]).to_pylist() == _events_oracle(t.to_pylist(), CT)
    pq.write_table(t.slice(0, 0), tmp_path / "empty.parquet")
    empty = M.change_events_file(tmp_path / "empty.parquet", families)
    assert empty.num_rows == 0 and empty.schema == want.schema
    with pytest.raises(SchemaMismatch, match="flagged_families"):
        pq.write_table(t.drop_columns(["flagged_families"]), tmp_path / "bad.parquet")
        M.change_events_file(tmp_path / "bad.parquet", families)


def test_crossing_locations_are_the_same_whatever_the_row_order_or_split():
    rng = np.random.default_rng(5)
    n = 300
    fields = [f.name for f in CROSSING_TYPE]

    def crossing(i):
        c = dict.fromkeys(fields)
        city = ["Ashburn", "Chicago", None][i % 3]
        c.update(family=[CT, CU][i % 2], kind="ixp" if city == "Chicago" else "private interconnect",
                 ixp_id="pdb:1" if city == "Chicago" else None, pop_city=city, pop_country="US",
                 # one PoP, crossings with two evidences: the summary must not pick one by chance
                 location_evidence=["rtt-discs", "netfac-shared"][int(rng.integers(0, 2))],
                 verdict=["consistent", "unknown", "inconsistent"][int(rng.integers(0, 3))])
        return c

    lists = [[crossing(int(k)) for k in rng.integers(0, 6, int(rng.integers(0, 3)))] for _ in range(n)]
    t = pa.table({"msm_id": np.full(n, 1), "prb_id": rng.integers(1, 9, n), "timestamp": np.arange(n),
                  "pop_crossings": pa.array(lists, pa.list_(CROSSING_TYPE))})
    whole = M.crossing_locations(t)
    assert whole.num_rows == 6
    assert set(whole.column("location_evidence").to_pylist()) == {"netfac-shared"}  # alphabetically first
    assert M.crossing_locations(t.take(pa.array(np.arange(n)[::-1]))).equals(whole)
    parts = [M.crossing_rows(t.slice(lo, 70), row0=lo) for lo in range(0, n, 70)]
    assert M.crossing_summary(M.crossing_counts(*parts)).equals(whole)
    # traceroutes and probes per PoP, by a loop over the rows
    for row in whole.to_pylist():
        hits = [(i, p) for i, (p, cs) in enumerate(zip(t.column("prb_id").to_pylist(), lists, strict=True))
                if any(c["family"] == row["family"] and c["pop_city"] == row["pop_city"] for c in cs)]
        assert (row["traceroutes"], row["probes"]) == (len(hits), len({p for _, p in hits}))


#: Real RIPE Atlas results (SOURCES.md); a part is enough for the change-event test.
MENOG = "ripe-atlas/traceroutes/menog_traceroutes_full.ndjson.xz"
#: /16s that real MENOG routes enter and leave over time: stand-ins for flagged families.
MENOG_NETS = ("2.51", "185.92", "184.105", "88.201")


def _menog_paths(test_data, size: int = 30_000_000) -> pa.Table:
    """The real MENOG results in the first ``size`` decompressed bytes as a paths table whose
    ``flagged_families`` are the :data:`MENOG_NETS` /16s each traceroute has replies from."""
    import lzma

    import orjson

    raw = lzma.LZMADecompressor().decompress((test_data / MENOG).read_bytes(), max_length=size)
    rows = []
    for line in raw.split(b"\n")[:-1]:  # the last line is cut
        o = orjson.loads(line)
        nets = {".".join(r["from"].split(".")[:2]) for h in o.get("result", []) for r in h.get("result", [])
                if "from" in r}
        rows.append({"prb_id": o["prb_id"], "dst_addr": o.get("dst_addr"),
                     "timestamp": dt.datetime.fromtimestamp(o["timestamp"], dt.timezone.utc),
                     "flagged_families": [f"net-{n}" for n in MENOG_NETS if n in nets]})
    return pa.Table.from_pylist(rows, schema=pa.schema([
        ("prb_id", pa.int64()), ("dst_addr", pa.string()), ("timestamp", pa.timestamp("ms", tz="UTC")),
        ("flagged_families", pa.list_(pa.string()))]))


def test_change_events_on_real_atlas_routes_repeated_and_shuffled(test_data, tmp_path):
    """Real MENOG traceroutes twice over (every timestamp tied), rows shuffled, some out of scope."""
    import pyarrow.parquet as pq

    real = _menog_paths(test_data)
    assert real.num_rows > 10_000
    rng = np.random.default_rng(17)
    t = pa.concat_tables([real, real])
    t = t.take(rng.permutation(t.num_rows)).append_column("in_scope", pa.array(rng.random(t.num_rows) < 0.9))
    pq.write_table(t, tmp_path / "paths.parquet", row_group_size=10_000)
    rows = t.filter(t.column("in_scope"))
    families = [None, "net-2.51", "net-185.92"]
    got = M.change_events_file(tmp_path / "paths.parquet", families)
    assert got.to_pylist() == [e for f in families for e in _events_oracle(rows.to_pylist(), f)]
    assert got.equals(pa.concat_tables([M.change_events(rows, family=f) for f in families]))
    events = Counter(zip(got["family"].to_pylist(), got["event"].to_pylist(), strict=True))
    assert events[("net-2.51", "start")] > 100 and events[("net-185.92", "stop")] > 20, events
