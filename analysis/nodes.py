"""Path node ids, shared by the paths and the graph: ``AS<asn>`` and ``IXP:<ixp_id>``.

A path (:func:`analysis.paths.build_paths`) is a list of node ids, and the nodes of the
graph (:func:`analysis.graph.build_graph`) are the same ids. They are made by
:func:`as_node` and :func:`ixp_node` only, and read by :func:`parse_node`; hop identifiers
are never ad-hoc strings.
"""

from __future__ import annotations

__all__ = ["AS_PREFIX", "IXP_PREFIX", "as_node", "ixp_node", "parse_node"]

#: Prefix of an AS node id (``AS4134``).
AS_PREFIX = "AS"
#: Prefix of an IXP node id (``IXP:pdb:26``).
IXP_PREFIX = "IXP:"


def as_node(asn: int) -> str:
    """Node id of an AS.

    >>> as_node(4134)
    'AS4134'
    """
    return f"{AS_PREFIX}{int(asn)}"


def ixp_node(ixp_id: str) -> str:
    """Node id of an IXP, from its annotation id (``pdb:<id>``, ``caida:<id>``, ``pch:<name>``).

    >>> ixp_node("pdb:26")
    'IXP:pdb:26'
    """
    if not ixp_id:
        raise ValueError("empty IXP id")
    return f"{IXP_PREFIX}{ixp_id}"


def parse_node(node: str) -> tuple[str, int | str]:
    """Split a node id into ``("as", asn)`` or ``("ixp", ixp_id)``.

    >>> parse_node("AS4134"), parse_node("IXP:pdb:26")
    (('as', 4134), ('ixp', 'pdb:26'))
    """
    if node.startswith(IXP_PREFIX) and len(node) > len(IXP_PREFIX):
        return "ixp", node[len(IXP_PREFIX) :]
    if node.startswith(AS_PREFIX) and node[len(AS_PREFIX) :].isdigit():
        return "as", int(node[len(AS_PREFIX) :])
    raise ValueError(f"not a path node id: {node!r}")
