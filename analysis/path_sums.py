"""The figures of ``analyze`` from one pass over a campaign's paths, a part at a time.

Every figure ``exposure.json`` and the exposure tables hold is a sum over traceroutes: the
exposure per group and probe (what the cluster bootstrap resamples), the AS graph's and
the hegemony's counts, the crossings, the destinations. :class:`PathSums` holds those sums
for a run of paths and adds runs together, so a campaign is analysed in memory that grows
with its probes, destinations and AS graph, not with its traceroutes. The figures are
those of :mod:`analysis.metrics`, :mod:`analysis.graph` and :mod:`analysis.scope` over the
whole table (the tests compare them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from analysis import metrics
from analysis._tables import sum_by
from analysis.graph import GraphCounts
from analysis.nodes import IXP_PREFIX
from analysis.scope import in_scope

__all__ = ["GROUPINGS", "PASS_ROWS", "PathSums", "scoped_batches"]

#: The groupings of the exposure tables, beside the overall figure.
GROUPINGS = ("source_country", "source_as", "destination", "destination_as", "day")

#: Traceroutes read from ``paths.parquet`` at a time.
PASS_ROWS = 131_072

_KINDS = {"path_exposure": "path", "pop_exposure": "pop"}


def scoped_batches(path: str | Path, columns: Sequence[str], *, row_groups: Sequence[int] | None = None,
                   rows: int = PASS_ROWS) -> Iterator[tuple[pa.Table, int]]:
    """The in-scope traceroutes of a paths file, ``rows`` at a time: ``(table, row0)``.

    ``row0`` is the file row of the batch's first row (before the scope filter): a
    traceroute's number, the same however the file is split. ``row_groups`` limits the
    pass to those row groups of the file.
    """
    f = pq.ParquetFile(path)
    want = list(dict.fromkeys([*columns, *(["in_scope"] if "in_scope" in f.schema_arrow.names else [])]))
    groups = range(f.num_row_groups) if row_groups is None else row_groups
    starts = np.concatenate([[0], np.cumsum([f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)])])
    for g in groups:
        row0 = int(starts[g])
        for batch in f.iter_batches(batch_size=rows, row_groups=[g], columns=want, use_threads=False):
            t = pa.Table.from_batches([batch])
            n = t.num_rows
            scoped = in_scope(t)
            yield (scoped.drop_columns(["in_scope"]) if "in_scope" in scoped.column_names else scoped), row0
            row0 += n


class PathSums:
    """The sums of a run of paths that ``analyze``'s figures need.

    ``families``: the report's families, ``None`` (any flagged family) first. Add tables
    of in-scope traceroutes with :meth:`add` (the metric columns of ``paths.parquet``), or
    sum runs apart and :meth:`merge` them in order; then read the figures.
    """

    def __init__(self, families: Sequence[str | None], pop_country: str, geometry: pa.Table) -> None:
        self.families = list(families)
        self.pop_country = pop_country
        self.geometry = geometry
        # per grouping: per (group, prb_id) the traceroutes ``n`` and, per family i, those
        # transiting it (``path{i}``), entering it at a located PoP (``pop{i}``), and (overall
        # only) possibly so (``upper{i}``); ``flagged``: transits_flagged
        self.groups: dict[str | None, pa.Table | None] = dict.fromkeys((None, *GROUPINGS))
        # per grouping, the tables added since ``groups`` was last summed: summing at every
        # add would sum the whole of ``groups`` again each time (a campaign's hundreds of
        # parts), so they wait until they outnumber it (:meth:`_add_group`)
        self._pending: dict[str | None, list[pa.Table]] = {g: [] for g in self.groups}
        self.graph = GraphCounts()
        self.hegemony = metrics.HegemonyCounts()
        self.crossings: pa.Table | None = None  # metrics.crossing_counts: per (PoP, probe)
        self.counts: Counter[str] = Counter()

    # ------------------------------------------------------------------ summing
    def add(self, paths: pa.Table, row0: int = 0) -> None:
        """Add in-scope traceroutes; ``row0`` numbers the first (crossings count distinct ones)."""
        n = paths.num_rows
        ind: dict[str, np.ndarray] = {"n": np.ones(n, np.int64)}
        upper: dict[str, np.ndarray] = {}
        for i, fam in enumerate(self.families):
            ind[f"path{i}"] = metrics.transit_indicator(paths, family=fam)
            ind[f"pop{i}"] = metrics.pop_indicator(paths, family=fam, country=self.pop_country)
            upper[f"upper{i}"] = metrics.pop_upper_indicator(paths, family=fam, country=self.pop_country,
                                                              geometry=self.geometry)
        ind["flagged"] = pc.fill_null(paths.column("transits_flagged"), False).to_numpy(zero_copy_only=False)
        for grouping in self.groups:
            counts = {**ind, **upper} if grouping is None else ind
            t = paths.select([*_keys(grouping), "prb_id"])
            for name, v in counts.items():
                t = t.append_column(name, pa.array(np.asarray(v, np.int64)))
            self._add_group(grouping, sum_by(t, [*_keys(grouping), "prb_id"]))
        self.graph.add(paths)
        self.hegemony.add(paths)
        x = metrics.crossing_rows(paths, row0=row0)
        self._add_crossings(x)
        self.counts.update({
            "traceroutes": n,
            "pop_crossings": x.num_rows,
            "detours": int(pc.sum(pc.fill_null(paths.column("detour"), False)).as_py() or 0),
            "loops": int(pc.sum(paths.column("loop")).as_py() or 0),
            "ixp_crossing_traceroutes": _ixp_traceroutes(paths),
        })

    def merge(self, other: PathSums) -> None:
        """Add the sums of ``other``, a later run of the same campaign's paths."""
        for grouping, t in other.groups.items():
            for part in ([] if t is None else [t]) + other._pending[grouping]:
                self._add_group(grouping, part)
        self.graph.merge(other.graph)
        self.hegemony.merge(other.hegemony)
        if other.crossings is not None:
            self._add_crossings(other.crossings)
        self.counts.update(other.counts)

    def _add_crossings(self, x: pa.Table) -> None:
        self.crossings = metrics.crossing_counts(x) if self.crossings is None else metrics.crossing_counts(
            self.crossings, x)

    def _add_group(self, grouping: str | None, t: pa.Table) -> None:
        pending = self._pending[grouping]
        pending.append(t)
        prev = self.groups[grouping]
        if sum(p.num_rows for p in pending) >= max(self.SUM_ROWS, 0 if prev is None else prev.num_rows):
            self._sum(grouping)

    #: Summed rows a grouping holds pending at least (at the latest they are summed when
    #: read or sent); beyond it, as many as it has summed, so each row is summed again a
    #: bounded number of times.
    SUM_ROWS = 1 << 16

    def _sum(self, grouping: str | None) -> pa.Table | None:
        """``groups[grouping]`` with the pending tables summed in, in the order they came
        (a key's row stays where it first appeared, as if each had been summed at once)."""
        pending = self._pending[grouping]
        if pending:
            prev = self.groups[grouping]
            both = pa.concat_tables(pending if prev is None else [prev, *pending])
            self.groups[grouping] = sum_by(both, [*_keys(grouping), "prb_id"])
            pending.clear()
        return self.groups[grouping]

    def __getstate__(self) -> dict:
        """Summed before it is sent (a Dask worker's result): the pending tables would weigh
        as much as the paths' keys."""
        for grouping in self.groups:
            self._sum(grouping)
        return self.__dict__

    # ------------------------------------------------------------------ figures
    def group_sums(self, grouping: str | None) -> pa.Table:
        """Per (group, prb_id) of ``grouping``: ``n`` and the indicator counts."""
        t = self._sum(grouping)
        if t is not None:
            return t
        names = ["n", *(f"{k}{i}" for i in range(len(self.families)) for k in ("path", "pop")), "flagged",
                 *((f"upper{i}" for i in range(len(self.families))) if grouping is None else ())]
        return pa.table({**{k: pa.array([], pa.string()) for k in _keys(grouping)},
                         **{k: pa.array([], pa.int64()) for k in ["prb_id", *names]}})

    def exposure(self, family: str | None, kind: str, by: str | None, weighted: bool, *,
                 n_boot: int, seed: int, confidence: float) -> pa.Table:
        """:func:`analysis.metrics.path_exposure` or ``pop_exposure`` (``kind``) of the
        paths added, cluster bootstrap over probes; ``weighted``: every probe weighs the
        same (1 / its traceroutes; overall only)."""
        t = self.group_sums(by)
        keys = _keys(by)
        n = _col(t, "n")
        k = _col(t, f"{_KINDS[kind]}{self.families.index(family)}")
        if weighted:
            if by is not None:
                raise ValueError("probe-weighted figures are overall only")
            sw, swx, sw2 = np.ones(len(n)), k / np.maximum(n, 1), 1.0 / np.maximum(n, 1)
        else:
            sw, swx, sw2 = n.astype(float), k.astype(float), n.astype(float)
        sums = t.select(keys).append_column("cluster", t.column("prb_id"))
        for name, v in (("n", n), ("k", k), ("sw", sw), ("swx", swx), ("sw2", sw2)):
            sums = sums.append_column(name, pa.array(v))
        table = metrics.proportion_from_sums(sums, keys, ci="cluster-bootstrap", n_boot=n_boot, seed=seed,
                                             confidence=confidence, weight="probe_weight" if weighted else None)
        return metrics.exposure_labels(table, family, self.pop_country if kind == "pop_exposure" else None)

    def pop_upper(self, family: str | None, *, n_boot: int, seed: int, confidence: float
                  ) -> tuple[int, int, float | None, float | None, float | None]:
        """The upper bound of PoP exposure (:func:`analysis.metrics.pop_upper_indicator`):
        traceroutes possibly entering ``family`` in the PoP country, traceroutes, and the
        estimate with its cluster bootstrap over probes (None when there is no traceroute)."""
        t = self.group_sums(None).sort_by("prb_id")
        n, k = _col(t, "n"), _col(t, f"upper{self.families.index(family)}")
        if not n.sum():
            return int(k.sum()), 0, None, None, None
        est, lo, hi = metrics.bootstrap_sums(k.astype(float), n.astype(float), n_boot=n_boot, seed=seed,
                                             confidence=confidence)
        return int(k.sum()), int(n.sum()), est, lo, hi

    def for_exposure(self) -> PathSums:
        """These sums without the graph, hegemony and crossings: what :meth:`exposure` reads
        (small enough to send to every worker)."""
        out = PathSums(self.families, self.pop_country, self.geometry)
        out.groups = {g: self._sum(g) for g in self.groups}
        return out

    def destination_pairs(self) -> pa.Table:
        """Per (dst_addr, prb_id): traceroutes ``n`` and transiting ``k`` (:func:`analysis.scope.destination_pairs`)."""
        t = self.group_sums("destination")
        return t.select(["dst_addr", "prb_id", "n", "flagged"]).rename_columns(["dst_addr", "prb_id", "n", "k"])

    def per_destination(self) -> Counter:
        """Traceroutes per destination."""
        t = self.destination_pairs().group_by("dst_addr", use_threads=False).aggregate([("n", "sum")])
        return Counter(dict(zip(t.column("dst_addr").to_pylist(), t.column("n_sum").to_pylist(), strict=True)))

    def country_pairs(self) -> pa.Table:
        """The distinct (probe_country, prb_id) pairs (what :func:`analysis.vantage.country_basis` reads)."""
        return self.group_sums("source_country").select(["probe_country", "prb_id"])

    def probes(self) -> int:
        return self.group_sums(None).num_rows

    def transiting_any(self) -> int:
        return int(_col(self.group_sums(None), "flagged").sum())

    def crossing_locations(self) -> pa.Table:
        """:func:`analysis.metrics.crossing_locations` of the paths added."""
        return metrics.crossing_summary(self.crossings if self.crossings is not None else _no_crossings())


def _keys(grouping: str | None) -> list[str]:
    return [metrics.GROUP_ALIASES[grouping]] if grouping else []


def _col(t: pa.Table, name: str) -> np.ndarray:
    return np.asarray(t.column(name).to_numpy(zero_copy_only=False))


def _ixp_traceroutes(paths: pa.Table) -> int:
    lists = paths.column("as_path").combine_chunks()
    flat = pc.list_flatten(lists)
    parent = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    hit = pc.fill_null(pc.starts_with(flat, IXP_PREFIX), False).to_numpy(zero_copy_only=False)
    return len(np.unique(parent[hit]))


def _no_crossings() -> pa.Table:
    return pa.table({**{c: pa.array([], pa.string()) for c in metrics.CROSSING_FIELDS},
                     "__tr": pa.array([], pa.int64()), "__prb": pa.array([], pa.int64())})
