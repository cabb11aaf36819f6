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

from analysis._tables import NodeCodes, path_node_chunks, unique_pairs
from analysis.errors import SchemaMismatch
from analysis.nodes import parse_node
from probes.fileio import atomic_path

__all__ = ["as_names", "build_graph", "flagged_subgraph", "write_graphml"]

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
    if "as_path" not in paths.column_names:
        raise SchemaMismatch("paths table lacks column as_path")
    g = nx.DiGraph()
    prb = (
        paths.column("prb_id").to_numpy(zero_copy_only=False).astype(np.int64)
        if "prb_id" in paths.column_names
        else np.arange(paths.num_rows, dtype=np.int64)
    )
    _, prb_code = np.unique(prb, return_inverse=True)
    n_prb = int(prb_code.max()) + 1 if len(prb_code) else 1
    codes = NodeCodes()
    node_counts: list[np.ndarray] = []
    edges: list[np.ndarray] = []
    edge_counts: list[np.ndarray] = []
    edge_probes: list[tuple[np.ndarray, np.ndarray]] = []
    # a chunk of paths at a time, reduced to counts: memory does not grow with the campaign
    for row, code in path_node_chunks(paths.column("as_path"), codes):
        # node counts: each node once per traceroute
        _, node_of = unique_pairs(row, code, len(codes))
        node_counts.append(np.bincount(node_of, minlength=len(codes)))
        # edges: consecutive nodes of the same traceroute, counted once per traceroute
        same = row[1:] == row[:-1]
        if not same.any():
            continue
        edge = (code[:-1][same] << 31) | code[1:][same]  # (src, dst), sorted as the pair
        keys, local = np.unique(edge, return_inverse=True)
        edge_of_tr, tr_of = unique_pairs(local.ravel(), row[1:][same], paths.num_rows)
        edges.append(keys)
        edge_counts.append(np.bincount(edge_of_tr, minlength=len(keys)))
        e, p = unique_pairs(edge_of_tr, prb_code[tr_of], n_prb)
        edge_probes.append((keys[e], p))
    names = codes.names
    node_count = np.zeros(len(names), np.int64)
    for c in node_counts:
        node_count[: len(c)] += c
    for i, name in enumerate(names):
        kind, _ = parse_node(name)
        g.add_node(name, kind=kind, traceroutes=int(node_count[i]))
    if edges:
        keys = np.concatenate(edges)
        e_codes, inv = np.unique(keys, return_inverse=True)
        e_tr = np.bincount(inv.ravel(), weights=np.concatenate(edge_counts), minlength=len(e_codes)).astype(np.int64)
        e_of_pb, _ = unique_pairs(np.searchsorted(e_codes, np.concatenate([k for k, _ in edge_probes])),
                                   np.concatenate([p for _, p in edge_probes]), n_prb)
        e_pb = np.bincount(e_of_pb, minlength=len(e_codes))
        mask = (1 << 31) - 1
        for e, cnt, pb in zip(e_codes.tolist(), e_tr.tolist(), e_pb.tolist(), strict=True):
            g.add_edge(names[e >> 31], names[e & mask], traceroutes=int(cnt), probes=int(pb))
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
