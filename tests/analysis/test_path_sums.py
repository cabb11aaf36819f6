"""PathSums: analyze's figures summed a part of the paths at a time equal the whole table's."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import metrics
from analysis.destinations import load_country_geometry
from analysis.graph import build_graph
from analysis.path_sums import GROUPINGS, PathSums, scoped_batches
from analysis.scope import (
    destination_exposure,
    destination_exposure_of,
    destination_hosted,
    destination_hosted_of,
)
from analysis.vantage import country_basis
from tests.analysis._demo import demo_campaign  # noqa: F401  (fixture)

COLUMNS = ("msm_id", "prb_id", "timestamp", "day", "probe_asn", "probe_country", "dst_addr", "dst_asn", "as_path",
           "loop", "transits_flagged", "flagged_families", "pop_crossings", "detour", "probe_lat", "probe_lon")
OPTS = {"n_boot": 200, "seed": 3, "confidence": 0.9}


@pytest.fixture(scope="module")
def scoped(demo_campaign):  # noqa: F811
    """The demo campaign's paths file and its in-scope traceroutes, read whole."""
    path = demo_campaign.paths_parquet
    t = pq.read_table(path)
    keep = np.asarray(t.column("in_scope").to_pylist(), dtype=bool)
    assert 0 < keep.sum() < t.num_rows  # some traceroutes out of scope: the pass must skip them
    return path, t.filter(pa.array(keep)).select(list(COLUMNS))


def _families(table: pa.Table) -> list[str | None]:
    found = sorted({f for fams in table.column("flagged_families").to_pylist() for f in fams or []})
    assert len(found) >= 2
    return [None, *found]


def _summed(path, families, *, rows: int, runs: int, sent: bool = False) -> PathSums:
    """Sums of ``path`` in ``rows``-row batches, split into ``runs`` runs summed apart and merged;
    ``sent``: each run pickled and read back first, as a Dask worker sends it."""
    geometry = load_country_geometry()
    parts = [PathSums(families, "US", geometry) for _ in range(runs)]
    batches = list(scoped_batches(path, COLUMNS, rows=rows))
    assert len(batches) >= runs
    for i, (table, row0) in enumerate(batches):
        parts[i * runs // len(batches)].add(table, row0)
    if sent:
        parts = [pickle.loads(pickle.dumps(p)) for p in parts]
    whole = parts[0]
    for p in parts[1:]:
        whole.merge(p)
    return whole


def test_scoped_batches_number_rows_as_the_file(scoped):
    path, table = scoped
    full = pq.read_table(path, columns=["msm_id", "prb_id", "timestamp", "in_scope"])
    got = list(scoped_batches(path, ["msm_id", "prb_id", "timestamp"], rows=333))
    assert sum(t.num_rows for t, _ in got) == table.num_rows
    assert "in_scope" not in got[0][0].column_names
    # row0 is the file row of the batch's first row, before the scope filter; batches do
    # not span row groups
    meta = pq.ParquetFile(path).metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    want = [int(start) + k for start, size in zip(np.cumsum([0, *sizes[:-1]]), sizes, strict=True)
            for k in range(0, size, 333)]
    assert [row0 for _, row0 in got] == want
    assert sum(sizes) == full.num_rows
    assert pa.concat_tables([t for t, _ in got]).equals(table.select(["msm_id", "prb_id", "timestamp"]))


@pytest.mark.parametrize(("rows", "runs", "sent", "sum_rows"), [
    (100_000, 1, False, None), (997, 3, False, None), (997, 3, True, None),
    # every add summed at once (SUM_ROWS 1: each part outnumbers nothing summed yet, then
    # waits until it outnumbers what is), or nothing summed until read or sent
    (211, 4, False, 1), (211, 4, True, 1), (211, 4, False, 10**9), (211, 4, True, 10**9),
])
def test_sums_of_parts_give_the_whole_tables_figures(scoped, rows, runs, sent, sum_rows, monkeypatch):
    path, table = scoped
    if sum_rows is not None:
        monkeypatch.setattr(PathSums, "SUM_ROWS", sum_rows)
    families = _families(table)
    sums = _summed(path, families, rows=rows, runs=runs, sent=sent)
    counts = Counter(table.column("prb_id").to_pylist())
    weighted = table.append_column("w", pa.array([1.0 / counts[p] for p in table.column("prb_id").to_pylist()]))
    for fam in families:
        for kind, fn in (("path_exposure", metrics.path_exposure), ("pop_exposure", metrics.pop_exposure)):
            for by in (None, *GROUPINGS):
                want = fn(table, family=fam, by=by, ci="cluster-bootstrap", **OPTS)
                assert sums.exposure(fam, kind, by, False, **OPTS).equals(want), (fam, kind, by)
            want = fn(weighted, family=fam, weight="w", ci="cluster-bootstrap", **OPTS).to_pylist()[0]
            got = sums.exposure(fam, kind, None, True, **OPTS).to_pylist()[0]
            for key in ("exposure", "ci_low", "ci_high", "wilson_low", "wilson_high"):
                assert got[key] == pytest.approx(want[key], rel=1e-12, abs=1e-15), (fam, kind, key)
            assert (got["traceroutes"], got["transiting"], got["probes"]) == (
                want["traceroutes"], want["transiting"], want["probes"])
        ind = metrics.pop_upper_indicator(table, family=fam, country="US")
        est, lo, hi = metrics.cluster_bootstrap(ind.astype(float), table.column("prb_id").to_numpy(),
                                                n_boot=OPTS["n_boot"], seed=OPTS["seed"])
        assert sums.pop_upper(fam, n_boot=OPTS["n_boot"], seed=OPTS["seed"], confidence=0.95) == (
            int(ind.sum()), table.num_rows, est, lo, hi)

    assert sums.hegemony.table().equals(metrics.hegemony(table))
    g, want_g = sums.graph.graph(), build_graph(table)
    assert list(g.nodes(data=True)) == list(want_g.nodes(data=True))
    assert list(g.edges(data=True)) == list(want_g.edges(data=True))
    assert sums.crossing_locations().equals(metrics.crossing_locations(table))
    d = pa.table({"dst_addr": sorted({a for a in table.column("dst_addr").to_pylist() if a})})
    assert destination_exposure_of(sums.destination_pairs(), d).equals(destination_exposure(table, d))
    assert destination_hosted_of(sums.per_destination(), d, families[1:]) == destination_hosted(table, d, families[1:])
    probes = pa.table({"prb_id": sorted(counts), "origin": ["atlas", "derived:x"] * (len(counts) // 2)
                       + ["atlas"] * (len(counts) % 2)})
    assert country_basis(sums.country_pairs(), probes) == country_basis(table, probes)
    flat_nodes = [n for p in table.column("as_path").to_pylist() for n in set(p or [])]
    assert sums.counts == {
        "traceroutes": table.num_rows,
        "pop_crossings": sum(len(c or []) for c in table.column("pop_crossings").to_pylist()),
        "detours": sum(bool(x) for x in table.column("detour").to_pylist()),
        "loops": sum(bool(x) for x in table.column("loop").to_pylist()),
        "ixp_crossing_traceroutes": sum(any(n.startswith("IXP:") for n in p or [])
                                        for p in table.column("as_path").to_pylist()),
    }
    assert len(flat_nodes) > 0
    assert sums.probes() == len(counts)
    assert sums.transiting_any() == sum(bool(x) for x in table.column("transits_flagged").to_pylist())


def test_no_traceroute_in_scope_gives_empty_figures():
    sums = PathSums([None, "china-telecom"], "US", load_country_geometry())
    row = sums.exposure(None, "path_exposure", None, False, **OPTS).to_pylist()[0]
    assert (row["traceroutes"], row["transiting"], row["probes"]) == (0, 0, 0)
    assert sums.exposure("china-telecom", "pop_exposure", "destination", False, **OPTS).num_rows == 0
    assert sums.pop_upper(None, n_boot=10, seed=0, confidence=0.95) == (0, 0, None, None, None)
    assert sums.crossing_locations().num_rows == 0
    assert sums.probes() == 0 and sums.transiting_any() == 0


def test_grouped_bootstrap_is_the_row_bootstrap_of_each_group():
    rng = np.random.default_rng(7)
    n = 600
    t = pa.table({"prb_id": rng.integers(1, 40, n), "probe_country": rng.choice(["DE", "FR", "JO"], n)})
    x = rng.random(n) < 0.2
    out = metrics.proportion_table(t, x, by="source_country", ci="cluster-bootstrap", n_boot=300, seed=5)
    cc = np.asarray(t.column("probe_country").to_pylist())
    prb = t.column("prb_id").to_numpy()
    for row in out.to_pylist():
        rows = cc == row["probe_country"]
        est, lo, hi = metrics.cluster_bootstrap(x[rows].astype(float), prb[rows], n_boot=300, seed=5)
        assert (row["exposure"], row["ci_low"], row["ci_high"]) == (est, lo, hi)


def test_group_sums_wait_and_are_sent_summed(scoped, monkeypatch):
    """Added group tables wait unsummed below SUM_ROWS; a pickled PathSums (a Dask
    worker's result) carries them summed, and reads the same figures back."""
    path, table = scoped
    monkeypatch.setattr(PathSums, "SUM_ROWS", 10**9)
    sums = PathSums(_families(table), "US", load_country_geometry())
    for t, row0 in scoped_batches(path, COLUMNS, rows=97):
        sums.add(t, row0)
    assert all(len(p) > 1 for p in sums._pending.values())
    back = pickle.loads(pickle.dumps(sums))
    assert all(not p for p in back._pending.values())
    assert all(not p for p in sums._pending.values())  # summed in place, not only in the copy
    for grouping in (None, *GROUPINGS):
        assert back.group_sums(grouping).equals(sums.group_sums(grouping))
        assert back.group_sums(grouping).num_rows == len(set(zip(
            *(table.column(c).to_pylist() for c in (["prb_id"] if grouping is None
                                                    else [metrics.GROUP_ALIASES[grouping], "prb_id"])),
            strict=True)))


def test_hegemony_counts_are_sent_reduced(scoped):
    """A part's (node, viewpoint) pairs, one per path and node until they are reduced, are
    sent reduced: one set of distinct pairs, and the same hegemony read back."""
    path, table = scoped
    counts = metrics.HegemonyCounts()
    for t, _ in scoped_batches(path, COLUMNS, rows=50):
        counts.add(t)
    held = sum(len(node) for node, _, _ in counts._pairs)
    paths_through = sum(int(n.sum()) for _, _, n in counts._pairs)
    back = pickle.loads(pickle.dumps(counts))
    assert len(back._pairs) == 1
    node, vp, n = back._pairs[0]
    assert len(node) < held and len(set(zip(node.tolist(), vp.tolist(), strict=True))) == len(node)
    assert int(n.sum()) == paths_through
    assert back.table().equals(counts.table()) and back.table().equals(metrics.hegemony(table))
