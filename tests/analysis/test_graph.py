"""analysis.graph: edge/node counts by hand, attributes, flagged subgraph, GraphML round trip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import networkx as nx
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import graph as G
from analysis.errors import SchemaMismatch


def _paths() -> pa.Table:
    return pa.table({
        "prb_id": [1, 1, 2, 3],
        "as_path": [
            ["AS7922", "IXP:pdb:1", "AS4134", "AS15169"],
            ["AS7922", "IXP:pdb:1", "AS4134", "AS15169"],
            ["AS3320", "AS4134", "AS3320"],           # loop: AS4134->AS3320 edge, AS3320 counted once
            ["AS3320", "AS1299", "AS15169"],
        ],
    })


def _nodes() -> pa.Table:
    return pa.table({
        "node": ["AS4134", "AS7922", "IXP:pdb:1", "AS999"],
        "asn": pa.array([4134, 7922, None, 999], pa.int64()),
        "org": ["China Telecom", "Comcast", None, "unused"],
        "family": ["china-telecom", None, None, None],
        "country": ["CN", "US", "US", None],
        "city": [None, None, "Ashburn", None],
    })


def test_edges_and_nodes_counted_per_traceroute_and_probe():
    g = G.build_graph(_paths(), nodes=_nodes())
    edges = {(u, v): (d["traceroutes"], d["probes"]) for u, v, d in g.edges(data=True)}
    assert edges == {
        ("AS7922", "IXP:pdb:1"): (2, 1),
        ("IXP:pdb:1", "AS4134"): (2, 1),
        ("AS4134", "AS15169"): (2, 1),
        ("AS3320", "AS4134"): (1, 1),
        ("AS4134", "AS3320"): (1, 1),
        ("AS3320", "AS1299"): (1, 1),
        ("AS1299", "AS15169"): (1, 1),
    }
    assert g.nodes["AS4134"]["traceroutes"] == 3
    assert g.nodes["AS3320"]["traceroutes"] == 2
    assert g.nodes["IXP:pdb:1"]["kind"] == "ixp" and g.nodes["IXP:pdb:1"]["city"] == "Ashburn"
    assert g.nodes["AS4134"]["family"] == "china-telecom" and g.nodes["AS4134"]["flagged"] is True
    assert g.nodes["AS7922"]["flagged"] is False and "family" not in g.nodes["AS7922"]
    assert "AS999" not in g


def test_flagged_subgraph_radius():
    g = G.build_graph(_paths(), nodes=_nodes())
    assert sorted(G.flagged_subgraph(g, radius=0)) == ["AS4134"]
    assert sorted(G.flagged_subgraph(g, radius=1)) == ["AS15169", "AS3320", "AS4134", "IXP:pdb:1"]
    with pytest.raises(ValueError):
        G.flagged_subgraph(g, radius=-1)


def test_graphml_round_trip(tmp_path):
    g = G.build_graph(_paths(), nodes=_nodes())
    out = G.write_graphml(g, tmp_path / "graph" / "g.graphml")
    back = nx.read_graphml(out)
    assert isinstance(back, nx.DiGraph)
    assert set(back.edges) == set(g.edges)
    assert back.edges["AS7922", "IXP:pdb:1"]["traceroutes"] == 2
    assert back.nodes["AS4134"]["org"] == "China Telecom"
    assert not list(tmp_path.glob("graph/*.part"))


def test_empty_and_bad_input():
    g = G.build_graph(pa.table({"as_path": pa.array([[], []], pa.list_(pa.string()))}))
    assert g.number_of_nodes() == 0
    with pytest.raises(SchemaMismatch):
        G.build_graph(pa.table({"x": [1]}))


def test_unique_pairs_matches_rowwise_unique_and_survives_huge_keys():
    import numpy as np

    from analysis._tables import unique_pairs

    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 5000, 50_000), rng.integers(0, 300, 50_000)
    ref = np.unique(np.stack([a, b], axis=1), axis=0)
    x, y = unique_pairs(a, b, 300)
    assert np.array_equal(x, ref[:, 0]) and np.array_equal(y, ref[:, 1])
    x, y = unique_pairs(np.array([2**61, 3, 3]), np.array([5, 7, 7]), 10)  # a * nb would overflow
    assert x.tolist() == [3, 2**61] and y.tolist() == [7, 5]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_lex_order_is_numpys_lexsort(data):
    """The packed-key sort against ``np.lexsort`` (stable, last key primary): columns of any
    count and range, negative values, ties, and ranges whose product overflows int64."""
    import numpy as np

    from analysis._tables import lex_order

    n = data.draw(st.integers(0, 40))
    lo, hi = -(2**63), 2**63 - 1
    bounds = st.sampled_from([(0, 0), (0, 3), (-5, 5), (0, 2**31), (-(2**40), 2**40), (lo, hi)])
    cols = [np.array(data.draw(st.lists(st.integers(*b), min_size=n, max_size=n)), np.int64)
            for b in data.draw(st.lists(bounds, min_size=1, max_size=6))]
    assert lex_order(*cols).tolist() == np.lexsort(cols[::-1]).tolist()


_SUBGRAPH_SCRIPT = """
import sys
import networkx as nx
from analysis.graph import flagged_subgraph
g = nx.DiGraph()
for i in range(40):
    g.add_edge(f"AS{i}", f"AS{i + 1}", traceroutes=i)
    g.nodes[f"AS{i}"].update({"name": f"n{i}", "country": "US"} if i % 2 else {"org": "o", "asn": i})
g.add_edge("AS20", "IXP:pdb:7")
g.nodes["AS20"]["family"] = "china-telecom"
g.nodes["AS5"]["family"] = "china-unicom"
nx.write_graphml(flagged_subgraph(g, radius=3), sys.stdout.buffer)
"""


def test_flagged_subgraph_graphml_does_not_depend_on_the_hash_seed():
    """Regression: the subgraph was a view over a set, so its GraphML changed between runs."""
    outs = {
        subprocess.run([sys.executable, "-c", _SUBGRAPH_SCRIPT], check=True, capture_output=True,
                       env={"PYTHONHASHSEED": str(seed)}, cwd=Path(__file__).parents[2]).stdout
        for seed in (0, 1, 2, 3, 4, 5)
    }
    assert len(outs) == 1
    assert b'<node id="IXP:pdb:7"' in outs.pop()


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_graph_by_chunks_of_paths_counts_each_traceroute_and_probe_once(monkeypatch, chunk):
    from analysis import _tables
    from tests.analysis.test_metrics import _random_paths

    t = _random_paths(100 + chunk)
    monkeypatch.setattr(_tables, "PATH_CHUNK_ROWS", chunk)
    g = G.build_graph(t)
    # oracle: plain Python sets over every traceroute
    node_tr: dict[str, int] = {}
    edge_tr: dict[tuple[str, str], int] = {}
    edge_pb: dict[tuple[str, str], set] = {}
    for prb, path in zip(t["prb_id"].to_pylist(), t["as_path"].to_pylist(), strict=True):
        path = path or []
        for n in set(path):
            node_tr[n] = node_tr.get(n, 0) + 1
        for e in set(zip(path[:-1], path[1:], strict=True)):
            edge_tr[e] = edge_tr.get(e, 0) + 1
            edge_pb.setdefault(e, set()).add(prb)
    assert {n: d["traceroutes"] for n, d in g.nodes(data=True)} == node_tr
    assert {(u, v): d["traceroutes"] for u, v, d in g.edges(data=True)} == edge_tr
    assert {(u, v): d["probes"] for u, v, d in g.edges(data=True)} == {e: len(p) for e, p in edge_pb.items()}
    # the order of first appearance (GraphML files do not depend on the chunking)
    first = list(dict.fromkeys(n for p in t["as_path"].to_pylist() for n in (p or [])))
    assert list(g.nodes) == first
