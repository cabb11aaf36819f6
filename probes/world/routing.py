"""Valley-free (Gao-Rexford) route computation over the synthetic AS graph.

Preferences, in order: customer route > peer route > provider route, then the shortest AS
path, then a stable per-(AS, neighbour, destination) hash as the tie-break. Exports: routes
learned from customers (and one's own prefixes) go to everyone; routes learned from peers
or providers go to customers only. Loops are rejected (an AS never accepts a path that
contains itself).

The diversion scenario is a more-specific route leak: the leaker announces a prefix it
learned (with its own AS path, so ASes on that path reject it by loop detection) to all its
neighbours as if it were its own. ASes that filter leaks drop it; the others propagate it
under the normal export rules, and longest-prefix match makes it win over the covering route.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from probes.world.topology import Topology, stable_hash

__all__ = ["compute_routes", "compute_leak_routes"]

_ORIGIN, _CUSTOMER, _PEER, _PROVIDER = 0, 1, 2, 3


def _gao_rexford(
    topo: Topology,
    seeds: dict[int, tuple[int, ...]],
    *,
    dest: int,
    accept: Callable[[int], bool],
) -> dict[int, tuple[int, ...]]:
    cls: dict[int, int] = {}
    route: dict[int, tuple[int, ...]] = {}
    for asn, path in seeds.items():
        cls[asn] = _ORIGIN
        route[asn] = path

    def tie(x: int, nh: int) -> int:
        return stable_hash("tie", x, nh, dest)

    def spread(starts: list[int], edges: dict[int, list[int]], label: int) -> None:
        """Shortest-first expansion along one kind of edge (Dijkstra on hop count + tie)."""
        heap: list[tuple[int, int, tuple[int, ...]]] = []
        for u in starts:
            for v in edges[u]:
                if v not in cls and v not in route[u] and accept(v):
                    heapq.heappush(heap, (len(route[u]) + 1, tie(v, u), (v, *route[u])))
        while heap:
            _, _, path = heapq.heappop(heap)
            x = path[0]
            if x in cls:
                continue
            cls[x] = label
            route[x] = path
            for v in edges[x]:
                if v not in cls and v not in path and accept(v):
                    heapq.heappush(heap, (len(path) + 1, tie(v, x), (v, *path)))

    # phase 1: customer routes, climbing provider edges, shortest first
    spread(sorted(seeds), topo.providers, _CUSTOMER)

    # phase 2: peer routes, one peer edge on top of a customer (or origin) route
    exportable = [a for a in sorted(cls) if cls[a] in (_ORIGIN, _CUSTOMER)]
    best: dict[int, tuple[int, int, tuple[int, ...]]] = {}
    for q in exportable:
        for x in topo.peers[q]:
            if x in cls or x in route[q] or not accept(x):
                continue
            cand = (len(route[q]) + 1, tie(x, q), (x, *route[q]))
            if x not in best or cand < best[x]:
                best[x] = cand
    for x in sorted(best):
        cls[x] = _PEER
        route[x] = best[x][2]

    # phase 3: provider routes, descending customer edges, shortest first
    spread(sorted(cls), topo.customers, _PROVIDER)
    return route


def compute_routes(topo: Topology, dest: int) -> dict[int, tuple[int, ...]]:
    """Best AS path from every AS to ``dest`` (``path[0]`` is the AS, ``path[-1]`` dest)."""
    return _gao_rexford(topo, {dest: (dest,)}, dest=dest, accept=lambda _a: True)


def compute_leak_routes(
    topo: Topology, dest: int, baseline: dict[int, tuple[int, ...]]
) -> dict[int, tuple[int, ...]]:
    """Paths of the ASes that use the leaked more-specific toward ``dest``.

    Only ASes whose forwarding differs from ``baseline`` are returned; each path runs from
    the AS to the leaker and then along the leaker's own baseline path to ``dest``.
    """
    leaker = topo.leaker
    if leaker not in baseline or leaker == dest:
        return {}
    seed_path = baseline[leaker]
    routes = _gao_rexford(
        topo,
        {leaker: seed_path},
        dest=dest,
        accept=lambda a: not topo.ases[a].filters_leaks,
    )
    return {a: p for a, p in routes.items() if a != leaker and p != baseline.get(a)}
