"""The AS-level graph of observed paths, with IXPs as their own nodes (networkx).

Nodes are the path node ids of :mod:`analysis.nodes` (``AS4134``, ``IXP:pdb:26``); a
directed edge ``u -> v`` exists when some traceroute's ``as_path`` has ``v`` right after
``u``, and carries ``traceroutes`` (how many traceroutes used it) and ``probes`` (from how
many distinct probes). Node attributes: ``kind`` (``as``/``ixp``), ``traceroutes``, and,
when known, ``asn``, ``org``, ``family``, ``country``, ``name``, ``city``, ``flagged``.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analysis._tables import NodeCodes, path_node_chunks, unique_pairs
from analysis.errors import SchemaMismatch
from analysis.nodes import parse_node
from probes.fileio import atomic_path

__all__ = ["GraphCounts", "as_names", "build_graph", "flagged_subgraph", "write_graphml"]

_NODE_ATTRS = ("asn", "org", "family", "country", "name", "city")


def build_graph(paths: pa.Table, *, nodes: pa.Table | None = None) -> nx.DiGraph:
    """Directed AS/IXP graph of the paths, with traceroute counts on edges and nodes.

    Parameters
    ----------
    paths : pyarrow.Table
        Needs ``as_path``; ``prb_id`` (optional) gives the per-edge probe count.
    nodes : pyarrow.Table, optional
        Node attributes (:func:`analysis.paths.node_attributes`): ``node`` plus any of
        ``asn, org, family, country, name, city``. Null values are left out (GraphML has no
        null).

    Returns
    -------
    networkx.DiGraph

    Examples
    --------
    >>> t = pa.table({"prb_id": [1, 2], "as_path": [["AS1", "IXP:pdb:5", "AS2"], ["AS1", "AS2"]]})
    >>> g = build_graph(t)
    >>> sorted((u, v, d["traceroutes"]) for u, v, d in g.edges(data=True))
    [('AS1', 'AS2', 1), ('AS1', 'IXP:pdb:5', 1), ('IXP:pdb:5', 'AS2', 1)]
    """
    counts = GraphCounts()
    counts.add(paths)
    return counts.graph(nodes=nodes)


class GraphCounts:
    """What :func:`build_graph` counts, summed a part of the paths at a time.

    Per node its traceroutes, per edge its traceroutes and its distinct probes. Parts are
    :meth:`add`-ed (or counted apart and :meth:`merge`-d, in order); :meth:`graph` is
    :func:`build_graph` of everything added, nodes in the order of first appearance. Memory
    grows with the distinct nodes, edges and (edge, probe) pairs, not with the paths.
    """

    _MASK = (1 << 31) - 1

    def __init__(self) -> None:
        self.nodes = NodeCodes()
        self.probes = NodeCodes()
        self.node_count = np.zeros(0, np.int64)
        self.rows = 0  # paths added (a row without prb_id is its own probe)
        # edge key (src << 31 | dst) -> traceroutes; (edge key, probe code) pairs
        none = np.zeros(0, np.int64)
        self._edges: list[tuple[np.ndarray, np.ndarray]] = [(none, none)]
        self._edge_probes: list[tuple[np.ndarray, np.ndarray]] = [(none, none)]

    def add(self, paths: pa.Table) -> None:
        """Count the paths of ``paths`` (``as_path``; ``prb_id`` when it has one)."""
        if "as_path" not in paths.column_names:
            raise SchemaMismatch("paths table lacks column as_path")
        prb = (paths.column("prb_id").combine_chunks() if "prb_id" in paths.column_names
               else pa.array(np.arange(self.rows, self.rows + paths.num_rows), pa.int64()))
        enc = prb.dictionary_encode()
        prb_code = self.probes.codes(enc.dictionary)[pc.fill_null(enc.indices, 0).to_numpy(zero_copy_only=False)]
        self.rows += paths.num_rows
        # a chunk of paths at a time, reduced to counts
        for row, code in path_node_chunks(paths.column("as_path"), self.nodes):
            # node counts: each node once per traceroute
            _, node_of = unique_pairs(row, code, len(self.nodes))
            self._add_nodes(np.arange(len(self.nodes)), np.bincount(node_of, minlength=len(self.nodes)))
            # edges: consecutive nodes of the same traceroute, counted once per traceroute
            same = row[1:] == row[:-1]
            if not same.any():
                continue
            edge = (code[:-1][same] << 31) | code[1:][same]  # (src, dst), sorted as the pair
            keys, local = np.unique(edge, return_inverse=True)
            edge_of_tr, tr_of = unique_pairs(local.ravel(), row[1:][same], paths.num_rows)
            e, p = unique_pairs(edge_of_tr, prb_code[tr_of], len(self.probes))
            self._add_edges(keys, np.bincount(edge_of_tr, minlength=len(keys)), keys[e], p)

    def merge(self, other: GraphCounts) -> None:
        """Add the counts of ``other`` (a later part of the same paths)."""
        node_map = self.nodes.codes(pa.array(other.nodes.names, pa.string()))
        probe_map = self.probes.codes(pa.array(other.probes.names))
        self.rows += other.rows
        self._add_nodes(node_map[: len(other.node_count)], other.node_count)

        def remap(key: np.ndarray) -> np.ndarray:
            return (node_map[key >> 31] << 31) | node_map[key & self._MASK]

        for keys, n in other._edges:
            self._add_edges(remap(keys), n, np.zeros(0, np.int64), np.zeros(0, np.int64))
        for keys, p in other._edge_probes:
            self._add_edges(np.zeros(0, np.int64), np.zeros(0, np.int64), remap(keys), probe_map[p])

    def _add_nodes(self, code: np.ndarray, n: np.ndarray) -> None:
        count = np.zeros(len(self.nodes), np.int64)
        count[: len(self.node_count)] = self.node_count
        np.add.at(count, code, n)
        self.node_count = count

    def _add_edges(self, keys: np.ndarray, n: np.ndarray, probe_keys: np.ndarray, probes: np.ndarray) -> None:
        self._edges.append((keys, n))
        self._edge_probes.append((probe_keys, probes))
        if len(self._edges) >= 32:
            self._edges, self._edge_probes = [self._edge_counts()], [self._probe_pairs()]

    def _edge_counts(self) -> tuple[np.ndarray, np.ndarray]:
        keys, inv = np.unique(np.concatenate([k for k, _ in self._edges]), return_inverse=True)
        n = np.bincount(inv.ravel(), weights=np.concatenate([n for _, n in self._edges]), minlength=len(keys))
        return keys, n.astype(np.int64)

    def _probe_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        keys = np.concatenate([k for k, _ in self._edge_probes])
        e_codes, inv = np.unique(keys, return_inverse=True)
        e, p = unique_pairs(inv.ravel(), np.concatenate([p for _, p in self._edge_probes]), len(self.probes))
        return e_codes[e], p

    def graph(self, *, nodes: pa.Table | None = None) -> nx.DiGraph:
        """The graph of the paths added (:func:`build_graph`)."""
        g = nx.DiGraph()
        names = self.nodes.names
        for i, name in enumerate(names):
            kind, _ = parse_node(name)
            g.add_node(name, kind=kind, traceroutes=int(self.node_count[i]))
        e_codes, e_tr = self._edge_counts()
        if len(e_codes):
            pair_keys, _ = self._probe_pairs()
            e_pb = np.bincount(np.searchsorted(e_codes, pair_keys), minlength=len(e_codes))
            for e, cnt, pb in zip(e_codes.tolist(), e_tr.tolist(), e_pb.tolist(), strict=True):
                g.add_edge(names[e >> 31], names[e & self._MASK], traceroutes=int(cnt), probes=int(pb))
        if nodes is not None:
            _attach(g, nodes)
        return g


def flagged_subgraph(g: nx.DiGraph, *, radius: int = 1) -> nx.DiGraph:
    """Subgraph of the nodes with a ``family`` attribute and everything within ``radius`` hops.

    Distance is measured ignoring edge direction, so both the networks handing traffic to a
    flagged carrier and those it hands traffic to are kept.

    Examples
    --------
    >>> g = nx.DiGraph([("AS1", "AS2"), ("AS2", "AS3"), ("AS3", "AS4")])
    >>> g.nodes["AS3"]["family"] = "china-telecom"
    >>> sorted(flagged_subgraph(g, radius=1))
    ['AS2', 'AS3', 'AS4']
    """
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    seeds = [n for n, d in g.nodes(data=True) if d.get("family")]
    und = g.to_undirected(as_view=True)
    keep: set[str] = set()
    for s in seeds:
        keep.update(nx.single_source_shortest_path_length(und, s, cutoff=radius))
    # Built in g's own node and edge order: a subgraph view iterates the ``keep`` set, whose
    # order follows the string hash seed, and the GraphML written from it would change
    # from one run to the next.
    sub = g.__class__()
    sub.graph.update(g.graph)
    sub.add_nodes_from((n, d) for n, d in g.nodes(data=True) if n in keep)
    sub.add_edges_from((u, v, d) for u, v, d in g.edges(data=True) if u in keep and v in keep)
    return sub


def as_names(g: nx.DiGraph) -> dict[int, str]:
    """AS number -> name of every AS node that has one (its ``org`` attribute: the
    annotation's as2org organisation or ``asnames`` name).

    >>> g = nx.DiGraph()
    >>> g.add_node("AS4134", asn=4134, org="China Telecom"); g.add_node("AS1", asn=1)
    >>> as_names(g)
    {4134: 'China Telecom'}
    """
    return {int(d["asn"]): str(d["org"]) for _, d in g.nodes(data=True)
            if d.get("asn") is not None and d.get("org")}


def write_graphml(g: nx.DiGraph, target: Path | str) -> Path:
    """Write ``g`` as GraphML atomically (temporary file, then rename); return the path."""
    target = Path(target)
    with atomic_path(target) as tmp:
        nx.write_graphml(g, tmp)
    return target


def _attach(g: nx.DiGraph, nodes: pa.Table) -> None:
    if "node" not in nodes.column_names:
        raise SchemaMismatch("node attribute table lacks column node")
    cols = [c for c in _NODE_ATTRS if c in nodes.column_names]
    data = nodes.select(["node", *cols]).to_pylist()
    for row in data:
        name = row.pop("node")
        if name not in g:
            continue
        attrs = g.nodes[name]
        for key, value in row.items():
            if value is not None:
                attrs[key] = value
        attrs["flagged"] = bool(attrs.get("family"))
