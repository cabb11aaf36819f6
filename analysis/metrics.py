"""Exposure metrics over path tables, with honest uncertainty.

Every function takes the paths table of :func:`analysis.paths.build_paths` (or any table
with the columns it names) first, options keyword-only, and returns numbers or an Arrow
table. Nothing here reads or writes files.

* :func:`path_exposure` -- share of traceroutes transiting a flagged family, E(F).
* :func:`pop_exposure` -- share transiting F at a PoP located in a given country.
* :func:`wilson_interval`, :func:`cluster_bootstrap` -- confidence intervals.
* :func:`hegemony` -- AS/IXP hegemony (IHR): trimmed mean of per-viewpoint betweenness.
* :func:`change_events` -- per (probe, destination): when transit through F starts/stops.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from analysis._tables import NodeCodes, connect, path_node_chunks, sum_by, unique_pairs
from analysis.errors import SchemaMismatch

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "ANY_FAMILY",
    "GROUP_ALIASES",
    "wilson_interval",
    "cluster_bootstrap",
    "transit_indicator",
    "pop_indicator",
    "pop_upper_indicator",
    "proportion_table",
    "SUM_COLUMNS",
    "cluster_sums",
    "proportion_from_sums",
    "bootstrap_sums",
    "bootstrap_groups",
    "segment_starts",
    "exposure_labels",
    "path_exposure",
    "pop_exposure",
    "trimmed_mean",
    "hegemony",
    "HegemonyCounts",
    "change_events",
    "change_events_file",
    "crossing_locations",
    "crossing_rows",
    "CROSSING_FIELDS",
    "crossing_summary",
    "crossing_counts",
]

#: ``family=None`` means "any flagged family"; this is how it is labelled in output tables.
ANY_FAMILY = "any"

#: Friendly grouping names -> path-table columns.
GROUP_ALIASES = {
    "source_country": "probe_country",
    "source_as": "probe_asn",
    "destination": "dst_addr",
    "destination_as": "dst_asn",
    "day": "day",
}


# ---------------------------------------------------------------------------- intervals
def wilson_interval(
    k: npt.ArrayLike, n: npt.ArrayLike, *, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    r"""Wilson score interval for a binomial proportion (vectorised).

    .. math::

        \frac{\hat p + \frac{z^2}{2n} \pm z\sqrt{\frac{\hat p(1-\hat p)}{n} + \frac{z^2}{4n^2}}}
             {1 + \frac{z^2}{n}}, \qquad \hat p = k/n

    with :math:`z` the standard-normal quantile at ``1 - (1 - confidence) / 2``. ``n`` may be
    fractional (a Kish effective sample size). Where ``n == 0`` both bounds are NaN.

    Parameters
    ----------
    k, n : array_like
        Successes and trials.
    confidence : float
        Two-sided coverage, in (0, 1).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Lower and upper bounds.

    References
    ----------
    E. B. Wilson, "Probable inference, the law of succession, and statistical inference",
    JASA 22(158), 1927. L. D. Brown, T. T. Cai, A. DasGupta, "Interval estimation for a
    binomial proportion", Statistical Science 16(2), 2001.

    Examples
    --------
    >>> lo, hi = wilson_interval(5, 10)
    >>> round(float(lo), 4), round(float(hi), 4)
    (0.2366, 0.7634)
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    k = np.asarray(k, float)
    n = np.asarray(n, float)
    z = NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2.0 * n)) / denom
        half = z * np.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
        lo = np.where(k <= 0, 0.0, np.clip(centre - half, 0.0, 1.0))  # exact at the edges
        hi = np.where(k >= n, 1.0, np.clip(centre + half, 0.0, 1.0))
        lo = np.where(n > 0, lo, np.nan)
        hi = np.where(n > 0, hi, np.nan)
    return lo, hi


def cluster_bootstrap(
    values: npt.ArrayLike,
    clusters: npt.ArrayLike,
    *,
    weights: npt.ArrayLike | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    r"""Percentile cluster bootstrap of a (weighted) mean, resampling whole clusters.

    Traceroutes from one probe share its access network and upstreams, so they are not
    independent; resampling probes (clusters) with replacement keeps that correlation in
    every replicate. Replicate ``b`` draws cluster multiplicities :math:`m_{bc}` from a
    multinomial over the :math:`C` clusters and computes

    .. math:: \hat\theta_b = \frac{\sum_c m_{bc} S_c}{\sum_c m_{bc} W_c},
              \quad S_c = \sum_{i \in c} w_i x_i,\ W_c = \sum_{i \in c} w_i

    The interval is the ``(1-confidence)/2`` and ``1-(1-confidence)/2`` quantiles of the
    replicates. When no cluster differs from another — a single probe, or every probe saw
    0 (or only 1) — every replicate equals the estimate and the percentile interval
    collapses to a point, which would claim certainty that :math:`C` probes cannot give.
    The interval is then the Wilson interval of :math:`\hat\theta C` successes in
    :math:`C` independent clusters (for zero: upper bound :math:`z^2 / (C + z^2)`).

    Parameters
    ----------
    values : array_like
        Per-observation values (0/1 indicators for a proportion).
    clusters : array_like
        Cluster label per observation (the probe id).
    weights : array_like, optional
        Per-observation weights (default 1).
    n_boot : int
        Number of replicates.
    confidence : float
        Two-sided coverage.
    seed : int
        Seed of the numpy Generator; equal inputs and seed give equal output.

    Returns
    -------
    (float, float, float)
        Point estimate, lower and upper bound (NaN for no observations).

    References
    ----------
    A. C. Davison, D. V. Hinkley, *Bootstrap Methods and their Application*, CUP 1997,
    sec. 3.8 (the cluster bootstrap). A. C. Cameron, J. B. Gelbach, D. L. Miller,
    "Bootstrap-based improvements for inference with clustered errors", REStat 90(3), 2008.

    Examples
    --------
    >>> est, lo, hi = cluster_bootstrap([1, 1, 0, 0], [1, 1, 2, 2], n_boot=200, seed=1)
    >>> est, lo <= est <= hi
    (0.5, True)
    >>> est, lo, hi = cluster_bootstrap([1, 0, 0], [7, 7, 7])  # one probe: never a zero-width interval
    >>> round(est, 3), round(lo, 3), round(hi, 3)
    (0.333, 0.025, 0.906)
    """
    x = np.asarray(values, float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, float)
    if x.shape != w.shape or x.shape != np.shape(clusters):
        raise ValueError("values, clusters and weights must have the same length")
    if x.size == 0:
        return bootstrap_sums(np.zeros(0), np.zeros(0), n_boot=n_boot, confidence=confidence, seed=seed)
    _, inv = np.unique(np.asarray(clusters), return_inverse=True)
    return bootstrap_sums(np.bincount(inv, weights=w * x), np.bincount(inv, weights=w),
                          n_boot=n_boot, confidence=confidence, seed=seed)


def bootstrap_sums(
    s: npt.ArrayLike, wc: npt.ArrayLike, *, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    r""":func:`cluster_bootstrap` from the clusters' sums: :math:`S_c = \sum_{i \in c} w_i x_i`
    and :math:`W_c = \sum_{i \in c} w_i`, one value per cluster in ascending cluster order
    (:func:`bootstrap_groups` of one group).

    What a pass over a campaign too large to hold keeps per (group, probe); equal sums and
    seed give the same interval as :func:`cluster_bootstrap` over the rows.

    Examples
    --------
    >>> bootstrap_sums([2, 0], [2, 2], n_boot=200, seed=1) == cluster_bootstrap([1, 1, 0, 0], [1, 1, 2, 2],
    ...                                                                        n_boot=200, seed=1)
    True
    """
    est, lo, hi = bootstrap_groups(s, wc, [0], n_boot=n_boot, confidence=confidence, seed=seed)
    return float(est[0]), float(lo[0]), float(hi[0])


def bootstrap_groups(
    s: npt.ArrayLike,
    wc: npt.ArrayLike,
    starts: npt.ArrayLike,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""The percentile cluster bootstrap of :func:`cluster_bootstrap`, from the clusters' sums,
    for many groups at once (thousands in one call; :func:`bootstrap_sums` is one group).

    The clusters' sums :math:`S_c, W_c` of every group lie one after the other in ``s`` and
    ``wc``; group :math:`g` holds those from ``starts[g]`` to ``starts[g + 1]`` (the last to
    the end), each group's clusters in ascending cluster order (:func:`segment_starts` of
    the sums sorted by group and cluster gives ``starts``). Each group gets the interval it
    would get alone, fallback included (the Wilson interval over its :math:`C_g` clusters
    where they cannot differ): the multiplicities are drawn from a generator seeded anew
    with ``seed``, so the groups of :math:`C` clusters share one draw, made once per
    distinct :math:`C` and applied to all of them as one matrix product.

    Parameters
    ----------
    s, wc : array_like
        :math:`S_c` and :math:`W_c` per cluster, grouped.
    starts : array_like of int
        Where each group begins in ``s``: non-decreasing, the first 0. A group with no
        cluster (``starts[g] == starts[g + 1]``) gets NaN.
    n_boot, confidence, seed
        As in :func:`bootstrap_sums`.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        Point estimates, lower and upper bounds, one per group.

    Examples
    --------
    >>> est, lo, hi = bootstrap_groups([2, 0, 1, 0, 0, 3], [2, 2, 1, 4, 2, 3], [0, 2, 3], n_boot=200, seed=1)
    >>> [tuple(map(float, g)) for g in zip(est, lo, hi)] == [
    ...     bootstrap_sums([2, 0], [2, 2], n_boot=200, seed=1), bootstrap_sums([1], [1], n_boot=200, seed=1),
    ...     bootstrap_sums([0, 0, 3], [4, 2, 3], n_boot=200, seed=1)]
    True
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    s = np.asarray(s, float)
    wc = np.asarray(wc, float)
    starts = np.asarray(starts, np.int64)
    if s.ndim != 1 or s.shape != wc.shape or starts.ndim != 1:
        raise ValueError("s and wc must be one-dimensional and of the same length, starts one-dimensional")
    if len(starts) and (starts[0] != 0 or (np.diff(starts) < 0).any() or starts[-1] > s.size):
        raise ValueError("starts must be non-decreasing, begin at 0 and lie within s")
    ends = np.append(starts[1:], s.size)
    sizes = ends - starts
    est, lo, hi = (np.full(len(starts), np.nan) for _ in range(3))
    alpha = (1.0 - confidence) / 2.0
    block = max(1, _BOOT_BLOCK // n_boot)  # groups per replicate matrix: memory stays bounded
    for c in np.unique(sizes[sizes > 0]).tolist():
        at = np.flatnonzero(sizes == c)
        m = _multiplicities(c, n_boot, seed)
        for i in range(0, len(at), block):
            g = at[i:i + block]
            cols = starts[g][:, None] + np.arange(c)
            sg, wg = s[cols], wc[cols]
            with np.errstate(divide="ignore", invalid="ignore"):
                est[g] = sg.sum(axis=1) / wg.sum(axis=1)
                reps = (sg @ m.T) / (wg @ m.T)  # one row of n_boot replicates per group
            nan = np.isnan(reps)
            if not nan.any():
                lo[g], hi[g] = np.quantile(reps, [alpha, 1.0 - alpha], axis=1)
                continue
            # replicates of clusters without weight only: left out, as bootstrap_sums does
            some = ~nan.all(axis=1)
            if some.any():
                lo[g[some]], hi[g[some]] = np.nanquantile(reps[some], [alpha, 1.0 - alpha], axis=1)
    flat = hi - lo <= 1e-12
    if flat.any():
        # as in bootstrap_sums: no spread among the clusters, Wilson over the C clusters
        w_lo, w_hi = wilson_interval(est[flat] * sizes[flat], sizes[flat], confidence=confidence)
        lo[flat] = np.minimum(lo[flat], w_lo)
        hi[flat] = np.maximum(hi[flat], w_hi)
    return est, lo, hi


#: Replicates (groups x ``n_boot``) :func:`bootstrap_groups` holds at a time.
_BOOT_BLOCK = 1 << 21


def _draw_multiplicities(c: int, n_boot: int, seed: int) -> np.ndarray:
    m = np.random.default_rng(seed).multinomial(c, np.full(c, 1.0 / c), size=n_boot).astype(float)
    m.flags.writeable = False  # a cached one is shared by every caller
    return m


_cached_multiplicities = functools.lru_cache(maxsize=64)(_draw_multiplicities)


def _multiplicities(c: int, n_boot: int, seed: int) -> np.ndarray:
    """The ``n_boot x c`` cluster multiplicities of :func:`bootstrap_groups` for ``c`` clusters.

    A fresh generator seeded with ``seed`` draws them, so equal arguments give equal
    draws; matrices of up to 2**18 entries (2 MB, at most 64 of them) are kept and reused:
    an analysis asks for the same few cluster counts thousands of times (one draw per
    exposure table and distinct count: 3 of the 29 s analyze took at 1M results).
    """
    if c * n_boot <= 1 << 18:
        return _cached_multiplicities(c, n_boot, seed)
    return _draw_multiplicities(c, n_boot, seed)


# ---------------------------------------------------------------------------- indicators
def transit_indicator(paths: pa.Table, *, family: str | None = None) -> np.ndarray:
    """Boolean per traceroute: does it transit ``family`` (any flagged family if None)?

    Examples
    --------
    >>> t = pa.table({"flagged_families": [["china-telecom"], [], ["china-mobile"]]})
    >>> transit_indicator(t, family="china-telecom").tolist()
    [True, False, False]
    """
    _require(paths, ("flagged_families",))
    lists = paths.column("flagged_families").combine_chunks()
    n = len(lists)
    if family is None:
        return pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False) > 0
    flat = pc.list_flatten(lists)
    parent = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    hit = pc.fill_null(pc.equal(flat, family), False).to_numpy(zero_copy_only=False)
    out = np.zeros(n, bool)
    out[parent[hit]] = True
    return out


def pop_indicator(
    paths: pa.Table,
    *,
    family: str | None = None,
    country: str = "US",
    allow_unknown: bool = True,
) -> np.ndarray:
    """Boolean per traceroute: does it enter ``family`` at a PoP located in ``country``?

    A crossing counts when its PoP country (``pop_country``: the IXP's, or the facility
    search's; ``ixp_country`` for tables without it) is ``country`` and its speed-of-light
    verdict is ``consistent`` (or ``unknown`` if ``allow_unknown``), i.e. never
    ``inconsistent``. Crossings with no located PoP never count.

    Examples
    --------
    >>> c = pa.struct([("family", pa.string()), ("pop_country", pa.string()), ("verdict", pa.string())])
    >>> t = pa.table({"pop_crossings": pa.array([[{"family": "f", "pop_country": "US", "verdict": "consistent"}],
    ...     [{"family": "f", "pop_country": "US", "verdict": "inconsistent"}], []], pa.list_(c))})
    >>> pop_indicator(t).tolist()
    [True, False, False]
    """
    _require(paths, ("pop_crossings",))
    lists = paths.column("pop_crossings").combine_chunks()
    flat = pc.list_flatten(lists)
    parent = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    names = {f.name for f in flat.type}
    where = flat.field("pop_country" if "pop_country" in names else "ixp_country")
    ok = pc.equal(where, country)
    verdict = flat.field("verdict")
    good = pc.equal(verdict, "consistent")
    if allow_unknown:
        good = pc.or_(good, pc.equal(verdict, "unknown"))
    ok = pc.and_(ok, good)
    if family is not None:
        ok = pc.and_(ok, pc.equal(flat.field("family"), family))
    hit = pc.fill_null(ok, False).to_numpy(zero_copy_only=False)
    out = np.zeros(len(lists), bool)
    out[parent[hit]] = True
    return out


def pop_upper_indicator(
    paths: pa.Table,
    *,
    family: str | None = None,
    country: str = "US",
    geometry: pa.Table | None = None,
) -> np.ndarray:
    """Boolean per traceroute: may it enter ``family`` at a PoP in ``country``? (upper bound)

    True where :func:`pop_indicator` is, and also where a crossing into ``family`` has no
    located PoP (``pop_country`` null) and the speed of light does not rule ``country``
    out: the probe lies within the crossing's ``max_distance_km`` (min RTT x 99.93 km) of
    the country (:func:`analysis.destinations.country_distance_km`), or the probe's
    location, the RTT or the country's geometry is unknown. Together with
    :func:`pop_indicator` it brackets PoP exposure where locations stay open.

    Examples
    --------
    >>> c = pa.struct([("family", pa.string()), ("pop_country", pa.string()), ("verdict", pa.string()),
    ...                ("max_distance_km", pa.float64())])
    >>> t = pa.table({"probe_lat": [40.7, 25.2, 25.2], "probe_lon": [-74.0, 55.3, 55.3], "pop_crossings": pa.array(
    ...     [[{"family": "f", "pop_country": None, "verdict": "unknown", "max_distance_km": 500.0}],
    ...      [{"family": "f", "pop_country": None, "verdict": "unknown", "max_distance_km": 500.0}],
    ...      [{"family": "f", "pop_country": "US", "verdict": "consistent", "max_distance_km": 9e3}]], pa.list_(c))})
    >>> pop_upper_indicator(t).tolist()  # New York 500 km: possible; Dubai 500 km: not
    [True, False, True]
    """
    from analysis.destinations import country_distance_km, load_country_geometry

    out = pop_indicator(paths, family=family, country=country)
    lists = paths.column("pop_crossings").combine_chunks()
    flat = pc.list_flatten(lists)
    if not len(flat):
        return out
    parent = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    open_ = pc.is_null(flat.field("pop_country"))
    if family is not None:
        open_ = pc.and_(open_, pc.equal(flat.field("family"), family))
    rows = np.flatnonzero(pc.fill_null(open_, False).to_numpy(zero_copy_only=False))
    if not len(rows):
        return out
    geometry = load_country_geometry() if geometry is None else geometry
    reach = np.asarray(flat.field("max_distance_km").to_numpy(zero_copy_only=False), float)[rows]
    if country in set(geometry.column("country").to_pylist()) and "probe_lat" in paths.column_names:
        lat = np.asarray(paths.column("probe_lat").to_numpy(), float)[parent[rows]]
        lon = np.asarray(paths.column("probe_lon").to_numpy(), float)[parent[rows]]
        dist = country_distance_km(lat, lon, geometry, country=country)
        possible = np.isnan(dist) | np.isnan(reach) | (dist <= reach)
    else:  # no geometry for the country: nothing can be ruled out
        possible = np.ones(len(rows), bool)
    out[parent[rows[possible]]] = True
    return out


# ---------------------------------------------------------------------------- proportions
def proportion_table(
    paths: pa.Table,
    indicator: npt.ArrayLike,
    *,
    by: str | Sequence[str] | None = None,
    weight: str | None = None,
    ci: str = "wilson",
    cluster: str = "prb_id",
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pa.Table:
    r"""Share of rows where ``indicator`` holds, overall or per group, with an interval.

    Unweighted: :math:`\hat p = k/n`. Weighted by column ``weight``:
    :math:`\hat p = \sum w_i x_i / \sum w_i`, and the Wilson interval uses Kish's effective
    sample size :math:`n_\text{eff} = (\sum w_i)^2 / \sum w_i^2`.

    Parameters
    ----------
    paths : pyarrow.Table
        Rows to summarise (one per traceroute).
    indicator : array_like of bool
        One value per row.
    by : str or sequence of str, optional
        Group columns, or aliases from :data:`GROUP_ALIASES` (``source_country``,
        ``source_as``, ``destination``, ``destination_as``, ``day``).
    weight : str, optional
        Column of non-negative row weights.
    ci : {"wilson", "cluster-bootstrap", "none"}
        Interval method; the output's ``method`` column names it fully.
    cluster : str
        Cluster column for the bootstrap (the probe).
    n_boot, confidence, seed
        Bootstrap replicates, coverage, seed.

    Returns
    -------
    pyarrow.Table
        Group columns, then ``traceroutes``, ``transiting``, ``probes``, ``exposure``,
        ``ci_low``, ``ci_high``, ``method`` (the interval asked for), and ``wilson_low``,
        ``wilson_high`` (always, for comparison); sorted by the group columns. A group
        whose probes cannot differ (a single probe, or none or every one transiting) gets,
        under the bootstrap, the Wilson interval over its probes (see
        :func:`bootstrap_sums`), never a zero-width one: read ``probes``.

    References
    ----------
    L. Kish, *Survey Sampling*, Wiley 1965 (effective sample size).

    Examples
    --------
    >>> t = pa.table({"prb_id": [1, 1, 2, 2], "probe_country": ["DE", "DE", "FR", "FR"]})
    >>> out = proportion_table(t, [True, False, False, False], by="source_country")
    >>> out.column("exposure").to_pylist()
    [0.5, 0.0]
    """
    x = np.asarray(indicator, bool)
    if x.shape != (paths.num_rows,):
        raise ValueError(f"indicator has {x.size} values for {paths.num_rows} rows")
    if ci not in ("wilson", "cluster-bootstrap", "none"):
        raise ValueError(f"unknown ci method {ci!r}: use wilson, cluster-bootstrap or none")
    cols = _group_columns(paths, by)
    need = list(cols) + ([weight] if weight else []) + ([cluster] if cluster in paths.column_names else [])
    _require(paths, tuple(need))
    w = (
        pc.fill_null(paths.column(weight).cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False)
        if weight
        else np.ones(paths.num_rows)
    )
    if (w < 0).any():
        raise ValueError(f"weight column {weight!r} has negative values")
    clus = (
        paths.column(cluster).to_numpy(zero_copy_only=False)
        if cluster in paths.column_names
        else np.arange(paths.num_rows)
    )
    if ci == "cluster-bootstrap" and cluster not in paths.column_names:
        raise SchemaMismatch(f"paths lack the cluster column {cluster!r} for the bootstrap")

    sums = cluster_sums(paths.select(cols), clus, x, w)
    return proportion_from_sums(sums, cols, ci=ci, weight=weight, cluster=cluster, n_boot=n_boot,
                                confidence=confidence, seed=seed)


#: The sums :func:`proportion_from_sums` reads per (group, cluster), after the group columns.
SUM_COLUMNS = ("cluster", "n", "k", "sw", "swx", "sw2")


def cluster_sums(keys: pa.Table, clusters: npt.ArrayLike, indicator: npt.ArrayLike,
                 weights: npt.ArrayLike | None = None) -> pa.Table:
    """Per (group of ``keys``' columns, cluster): the sums of :data:`SUM_COLUMNS`.

    ``n`` rows, ``k`` rows where ``indicator`` holds, and the weights' ``sw`` (sum),
    ``swx`` (sum where the indicator holds) and ``sw2`` (sum of squares). Sums of parts of
    a table add up to the sums of the whole (group them again and add), so a campaign too
    large to hold is summed a part at a time.

    Examples
    --------
    >>> t = cluster_sums(pa.table({"cc": ["DE", "DE", "FR"]}), [1, 1, 2], [True, False, True])
    >>> t.sort_by("cc").select(["cc", "cluster", "n", "k"]).to_pylist()[0]
    {'cc': 'DE', 'cluster': 1, 'n': 2, 'k': 1}
    """
    x = np.asarray(indicator, bool)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, float)
    cols = keys.column_names
    t = keys.append_column("cluster", pa.array(np.asarray(clusters)))
    t = t.append_column("n", pa.array(np.ones(len(x), np.int64)))
    t = t.append_column("k", pa.array(x.astype(np.int64)))
    t = t.append_column("sw", pa.array(w)).append_column("swx", pa.array(w * x)).append_column("sw2", pa.array(w * w))
    return sum_by(t, [*cols, "cluster"])


def proportion_from_sums(
    sums: pa.Table,
    by: Sequence[str],
    *,
    ci: str = "wilson",
    weight: str | None = None,
    cluster: str = "prb_id",
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pa.Table:
    """:func:`proportion_table` from :func:`cluster_sums` (group columns ``by``).

    ``sums`` may hold a (group, cluster) more than once, as sums of parts do: they are
    added first. The output is :func:`proportion_table`'s, and equal to it for the rows
    the sums were taken of (the same bootstrap replicates: clusters in ascending order);
    ``weight`` and ``cluster`` only name the weight and the clusters in ``method``.
    """
    cols = list(by)
    method = _method_name(ci, weight, n_boot, seed, confidence, cluster)
    sums = sum_by(sums.select([*cols, *SUM_COLUMNS]), [*cols, "cluster"])
    sums = sums.sort_by([(c, "ascending") for c in [*cols, "cluster"]])
    n_all, k_all = (sums.column(c).to_numpy(zero_copy_only=False) for c in ("n", "k"))
    sw_all, swx_all, sw2_all = (sums.column(c).to_numpy(zero_copy_only=False).astype(float)
                                for c in ("sw", "swx", "sw2"))
    starts = segment_starts(sums, cols) if cols else np.zeros(1, np.int64)
    ends = np.append(starts[1:], sums.num_rows)[: len(starts)]
    # per group: its clusters' sums added up (each group's slice, as the rows were before)
    bounds = list(zip(starts.tolist(), ends.tolist(), strict=True))
    n, k = (np.array([col[a:b].sum() for a, b in bounds], np.int64) for col in (n_all, k_all))
    sw, swx, sw2 = (np.array([col[a:b].sum() for a, b in bounds], float) for col in (sw_all, swx_all, sw2_all))
    nprobes = ends - starts
    with np.errstate(divide="ignore", invalid="ignore"):
        est = np.where(sw > 0, swx / sw, np.nan)
        neff = np.where(sw2 > 0, sw * sw / sw2, 0.0)
    wlo, whi = wilson_interval(np.where(neff > 0, est * neff, 0.0), neff, confidence=confidence)
    if ci == "wilson":
        lo, hi = wlo, whi
    elif ci == "cluster-bootstrap":  # every group at once, each as it would be alone
        _, lo, hi = bootstrap_groups(swx_all, sw_all, starts, n_boot=n_boot, confidence=confidence, seed=seed)
    else:
        lo = hi = np.full(len(starts), np.nan)
    table = pa.table({
        "traceroutes": pa.array(n, pa.int64()),
        "transiting": pa.array(k, pa.int64()),
        "probes": pa.array(nprobes, pa.int64()),
        "exposure": pa.array(est, pa.float64(), from_pandas=True),
        "ci_low": pa.array(lo, pa.float64(), from_pandas=True),
        "ci_high": pa.array(hi, pa.float64(), from_pandas=True),
        "method": pa.array([method] * len(starts), pa.string()),
        "wilson_low": pa.array(wlo, pa.float64(), from_pandas=True),
        "wilson_high": pa.array(whi, pa.float64(), from_pandas=True),
    })
    for i, c in enumerate(cols):
        table = table.add_column(i, c, sums.column(c).take(pa.array(starts)))
    return table


def segment_starts(table: pa.Table, cols: Sequence[str]) -> np.ndarray:
    """Row indices where a run of equal ``cols`` values begins in a sorted ``table`` (nulls
    equal nulls); none for an empty table.

    >>> segment_starts(pa.table({"a": [1, 1, None, None, 2]}), ["a"]).tolist()
    [0, 2, 4]
    """
    n = table.num_rows
    if not n:
        return np.zeros(0, np.int64)
    new = np.zeros(n, bool)
    new[0] = True
    for c in cols:
        col = table.column(c).combine_chunks()
        if n > 1 and not col.null_count and (pa.types.is_integer(col.type) or pa.types.is_timestamp(col.type)):
            values = col.to_numpy()  # no nulls: compare in NumPy, without copies
            new[1:] |= values[1:] != values[:-1]
        elif n > 1:
            prev, cur = col.slice(0, n - 1), col.slice(1)
            same = pc.or_(pc.fill_null(pc.equal(cur, prev), False), pc.and_(pc.is_null(cur), pc.is_null(prev)))
            new[1:] |= ~same.to_numpy(zero_copy_only=False)
    return np.flatnonzero(new)


def path_exposure(
    paths: pa.Table,
    *,
    family: str | None = None,
    by: str | Sequence[str] | None = None,
    weight: str | None = None,
    ci: str = "wilson",
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pa.Table:
    r"""Path exposure :math:`E(F)`: the share of traceroutes whose path transits family F.

    .. math:: E(F) = \frac{\sum_i w_i\,[F \in \text{flagged\_families}_i]}{\sum_i w_i}

    with :math:`w_i = 1` unless ``weight`` names a column. Grouping and intervals as in
    :func:`proportion_table`; the output gains a ``family`` column.

    References
    ----------
    A. Edmundson, R. Ensafi, N. Feamster, J. Rexford, "Nation-state hegemony in Internet
    routing", ACM COMPASS 2018 (path exposure to a country's networks).

    Examples
    --------
    >>> t = pa.table({"prb_id": [1, 2, 3, 4],
    ...               "flagged_families": [["china-telecom"], [], [], ["china-unicom"]]})
    >>> path_exposure(t, family="china-telecom").column("exposure").to_pylist()
    [0.25]
    """
    table = proportion_table(
        paths,
        transit_indicator(paths, family=family),
        by=by,
        weight=weight,
        ci=ci,
        n_boot=n_boot,
        confidence=confidence,
        seed=seed,
    )
    return exposure_labels(table, family)


def exposure_labels(table: pa.Table, family: str | None, country: str | None = None) -> pa.Table:
    """A proportion table labelled as an exposure table: ``family`` first (``any`` for
    None), then ``pop_country`` when ``country`` is given (PoP exposure)."""
    if country is not None:
        table = table.add_column(0, "pop_country", pa.array([country] * table.num_rows, pa.string()))
    return table.add_column(0, "family", pa.array([family or ANY_FAMILY] * table.num_rows, pa.string()))


def pop_exposure(
    paths: pa.Table,
    *,
    family: str | None = None,
    country: str = "US",
    allow_unknown: bool = True,
    by: str | Sequence[str] | None = None,
    weight: str | None = None,
    ci: str = "wilson",
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pa.Table:
    r"""PoP exposure: the share of traceroutes entering F at a PoP located in ``country``.

    .. math:: E_\text{PoP}(F, c) = \frac{\sum_i w_i\,[\exists \text{ crossing into } F
              \text{ at a PoP in } c,\ \text{verdict} \ne \text{inconsistent}]}{\sum_i w_i}

    See :func:`pop_indicator` for which crossings count.

    References
    ----------
    G. Nomikos, X. Dimitropoulos, "traIXroute: Detecting IXPs in traceroute paths", PAM
    2016 (IXP crossings). V. Giotsas et al., "Mapping peering interconnections to a
    facility", CoNEXT 2015 (constrained facility search). B. Gueye et al., "Constraint-based geolocation of Internet hosts",
    IEEE/ACM ToN 14(6), 2006 (the speed-of-light bound).

    Examples
    --------
    >>> c = pa.struct([("family", pa.string()), ("ixp_country", pa.string()), ("verdict", pa.string())])
    >>> t = pa.table({"prb_id": [1, 2], "pop_crossings": pa.array(
    ...     [[{"family": "f", "ixp_country": "US", "verdict": "unknown"}], []], pa.list_(c))})
    >>> pop_exposure(t).column("exposure").to_pylist()
    [0.5]
    """
    ind = pop_indicator(paths, family=family, country=country, allow_unknown=allow_unknown)
    table = proportion_table(
        paths, ind, by=by, weight=weight, ci=ci, n_boot=n_boot, confidence=confidence, seed=seed
    )
    return exposure_labels(table, family, country)


# ---------------------------------------------------------------------------- hegemony
def trimmed_mean(values: npt.ArrayLike, *, trim: float = 0.1, axis: int = -1) -> np.ndarray:
    r"""Mean after dropping the :math:`\lfloor \alpha n \rfloor` lowest and highest values.

    Ties are harmless: values are sorted and exactly :math:`\lfloor \alpha n\rfloor` are
    removed from each end whatever their multiplicity. With fewer than :math:`1/\alpha`
    values nothing is removed and the result is the plain mean.

    Examples
    --------
    >>> float(trimmed_mean([0, 0, 0, 0, 0, 1, 1, 1, 1, 10], trim=0.1))
    0.5
    >>> float(trimmed_mean([0.0, 1.0, 5.0], trim=0.1))
    2.0
    """
    if not 0.0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim}")
    a = np.sort(np.asarray(values, float), axis=axis)
    n = a.shape[axis]
    if n == 0:
        raise ValueError("trimmed mean of no values")
    cut = int(math.floor(trim * n + 1e-9))
    return np.take(a, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def hegemony(
    paths: pa.Table,
    *,
    viewpoint: str = "probe_asn",
    trim: float = 0.1,
    exclude_viewpoint: bool = True,
    exclude_loops: bool = False,
) -> pa.Table:
    r"""AS and IXP hegemony (IHR): trimmed mean over viewpoints of path betweenness.

    For each viewpoint :math:`v` (by default the probe's AS) with path set :math:`P_v`, the
    betweenness of node :math:`x` is the share of its paths through :math:`x`:

    .. math:: b_v(x) = \frac{|\{p \in P_v : x \in p\}|}{|P_v|}

    and the hegemony is the :math:`\alpha`-trimmed mean of :math:`b_v(x)` over *all*
    :math:`V` viewpoints (zeros included), removing :math:`\lfloor\alpha V\rfloor` values
    at each end (see :func:`trimmed_mean`; with :math:`V < 1/\alpha` nothing is trimmed).
    Where viewpoints are ASes, the viewpoint's own AS is left out of its paths
    (``exclude_viewpoint``), as IHR does, so a network is not its own transit.

    Parameters
    ----------
    paths : pyarrow.Table
        Needs ``as_path`` and the viewpoint column; rows with a null viewpoint are skipped.
    viewpoint : str
        Column identifying the viewpoint.
    trim : float
        :math:`\alpha`, 0.1 in IHR.
    exclude_viewpoint : bool
        Drop node ``AS<v>`` from viewpoint ``v``'s paths when the viewpoint column holds AS
        numbers: it is named ``asn`` or ends in ``_asn`` (``probe_asn``, ``dst_asn``).
        Ignored for any other column: probe 4134 (``prb_id``) is not AS4134.
    exclude_loops : bool
        Skip paths flagged ``loop``.

    Returns
    -------
    pyarrow.Table
        ``node, hegemony, viewpoints_seen, n_viewpoints, trimmed_each_side`` sorted by
        hegemony (descending), then node.

    References
    ----------
    R. Fontugne, A. Shah, E. Aben, "The (thin) bridges of AS connectivity: measuring
    dependency using AS hegemony", PAM 2018. Internet Health Report, IIJ.

    Examples
    --------
    >>> t = pa.table({"probe_asn": [1, 2], "as_path": [["AS1", "AS3", "AS9"], ["AS2", "AS9"]]})
    >>> h = hegemony(t)
    >>> dict(zip(h.column("node").to_pylist(), h.column("hegemony").to_pylist()))
    {'AS9': 1.0, 'AS3': 0.5}
    """
    counts = HegemonyCounts(viewpoint=viewpoint, exclude_viewpoint=exclude_viewpoint, exclude_loops=exclude_loops)
    counts.add(paths)
    return counts.table(trim=trim)


class HegemonyCounts:
    """What :func:`hegemony` counts, summed a part of the paths at a time.

    Per viewpoint its paths, per (node, viewpoint) the paths through the node. Parts are
    :meth:`add`-ed (or summed apart and :meth:`merge`-d, in order); :meth:`table` gives
    :func:`hegemony`'s table of everything added. Memory grows with the distinct nodes and
    viewpoints, not with the paths.
    """

    def __init__(self, *, viewpoint: str = "probe_asn", exclude_viewpoint: bool = True,
                 exclude_loops: bool = False) -> None:
        self.viewpoint, self.exclude_viewpoint, self.exclude_loops = viewpoint, exclude_viewpoint, exclude_loops
        self.nodes = NodeCodes()
        self.viewpoints = NodeCodes()
        self.per_vp = np.zeros(0, np.int64)
        # (node code, viewpoint code) -> paths, as parallel arrays; reduced when they grow
        self._pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, paths: pa.Table) -> None:
        """Count the paths of ``paths`` (``as_path`` and the viewpoint column)."""
        _require(paths, ("as_path", self.viewpoint))
        if self.exclude_loops and "loop" in paths.column_names:
            paths = paths.filter(pc.invert(pc.fill_null(paths.column("loop"), False)))
        vp_enc = paths.column(self.viewpoint).combine_chunks().dictionary_encode()
        # rows with a null viewpoint are skipped (code -1), not filtered out: no copy of the table
        local = pc.fill_null(vp_enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        if not len(vp_enc.dictionary):
            return
        vp_code = self.viewpoints.codes(vp_enc.dictionary)
        vcode = np.where(local >= 0, vp_code[np.maximum(local, 0)], -1)
        per_vp = np.bincount(vcode[vcode >= 0], minlength=len(self.viewpoints))
        per_vp[: len(self.per_vp)] += self.per_vp
        self.per_vp = per_vp
        own_names = ["AS" + str(v) for v in vp_enc.dictionary.to_pylist()]
        exclude_own = self.exclude_viewpoint and _holds_asns(self.viewpoint)
        # a chunk of paths at a time, reduced to (node, viewpoint) counts
        for row, code in path_node_chunks(paths.column("as_path"), self.nodes):
            keep = local[row] >= 0
            if exclude_own:  # the viewpoint's own node (-1: not met yet)
                own_code = np.array([self.nodes.code_of(name) for name in own_names], np.int64)
                keep &= code != own_code[local[row]]
            r, node = unique_pairs(row[keep], code[keep], len(self.nodes))  # each node once per path
            self._add_pairs(node, vcode[r], np.ones(len(r), np.int64))

    def merge(self, other: HegemonyCounts) -> None:
        """Add the counts of ``other`` (a later part of the same paths)."""
        node_map = self.nodes.codes(pa.array(other.nodes.names, pa.string()))
        vp_map = self.viewpoints.codes(pa.array(other.viewpoints.names))
        per_vp = np.zeros(len(self.viewpoints), np.int64)
        per_vp[: len(self.per_vp)] += self.per_vp
        np.add.at(per_vp, vp_map[: len(other.per_vp)], other.per_vp)
        self.per_vp = per_vp
        for node, vp, n in other._pairs:
            self._add_pairs(node_map[node], vp_map[vp], n)

    def __getstate__(self) -> dict[str, Any]:
        # sent reduced: a part's pairs are one per (path, node) until 32 chunks have come,
        # a hundred times their distinct (node, viewpoint) pairs on real paths
        return {**self.__dict__, "_pairs": [self._reduced()] if self._pairs else []}

    def _add_pairs(self, node: np.ndarray, vp: np.ndarray, n: np.ndarray) -> None:
        self._pairs.append((node, vp, n))
        if len(self._pairs) >= 32:
            self._pairs = [self._reduced()]

    def _reduced(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self._pairs:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        nv = max(len(self.viewpoints), 1)
        key = np.concatenate([node * nv + vp for node, vp, _ in self._pairs])
        keys, inv = np.unique(key, return_inverse=True)
        n = np.bincount(inv.ravel(), weights=np.concatenate([n for _, _, n in self._pairs]), minlength=len(keys))
        return keys // nv, keys % nv, n.astype(np.int64)

    def table(self, *, trim: float = 0.1) -> pa.Table:
        """:func:`hegemony`'s table of the paths added."""
        nv = len(self.viewpoints)
        if not nv or not len(self.nodes):
            return pa.table({
                "node": pa.array([], pa.string()), "hegemony": pa.array([], pa.float64()),
                "viewpoints_seen": pa.array([], pa.int64()), "n_viewpoints": pa.array([], pa.int64()),
                "trimmed_each_side": pa.array([], pa.int64()),
            })
        names = np.asarray(self.nodes.names, dtype=object)
        counts = np.zeros((len(names), nv))
        node, vp, n = self._reduced()
        counts[node, vp] = n
        b = counts / self.per_vp[None, :].astype(float)
        h = trimmed_mean(b, trim=trim, axis=1)
        seen = (counts > 0).sum(axis=1)
        present = seen > 0
        cut = int(math.floor(trim * nv + 1e-9))
        order = np.lexsort((names[present].astype(str), -h[present]))
        return pa.table({
            "node": pa.array(names[present][order].tolist(), pa.string()),
            "hegemony": pa.array(h[present][order], pa.float64()),
            "viewpoints_seen": pa.array(seen[present][order], pa.int64()),
            "n_viewpoints": pa.array(np.full(int(present.sum()), nv), pa.int64()),
            "trimmed_each_side": pa.array(np.full(int(present.sum()), cut), pa.int64()),
        })


# ---------------------------------------------------------------------------- change events
def change_events(
    paths: pa.Table,
    *,
    family: str | None = None,
    pair: Sequence[str] = ("prb_id", "dst_addr"),
) -> pa.Table:
    r"""Times at which transit through F starts or stops, per (probe, destination).

    Within each pair, traceroutes are ordered by ``timestamp``; with :math:`x_t` the transit
    indicator, an event is emitted at every :math:`t` where :math:`x_t \ne x_{t^-}`
    (:math:`t^-` the previous traceroute of the pair): ``start`` for 0 -> 1, ``stop`` for
    1 -> 0. The first traceroute of a pair never makes an event.

    Returns
    -------
    pyarrow.Table
        pair columns, ``family``, ``event``, ``timestamp``, ``previous_timestamp``.

    References
    ----------
    The change-point view of IHR's AS-dependency alarms (Fontugne et al., PAM 2018).

    Examples
    --------
    >>> import datetime as dt
    >>> ts = [dt.datetime(2026, 1, d, tzinfo=dt.timezone.utc) for d in (1, 2, 3)]
    >>> t = pa.table({"prb_id": [1, 1, 1], "dst_addr": ["a"] * 3, "timestamp": ts,
    ...               "flagged_families": [[], ["f"], []]})
    >>> change_events(t).column("event").to_pylist()
    ['start', 'stop']
    """
    _require(paths, tuple(pair) + ("timestamp", "flagged_families"))
    t = paths.select([*pair, "timestamp", "flagged_families"])
    t = t.append_column("__row", pa.array(np.arange(t.num_rows, dtype=np.int64)))
    con = connect()
    try:
        con.register("__paths", t)
        return _change_query(con, "__paths", t.schema, [family], pair)
    finally:
        con.close()


def change_events_file(path: str | Path, families: Sequence[str | None], *,
                       pair: Sequence[str] = ("prb_id", "dst_addr"), memory_limit: str = "512MB") -> pa.Table:
    """:func:`change_events` of every family in ``families`` (None: any), concatenated in
    that order, over the traceroutes of a paths Parquet file (those ``in_scope`` when it
    has that column), computed out of core: DuckDB reads the file and sorts it within
    ``memory_limit``, spilling to a temporary directory beyond it.

    Examples
    --------
    >>> import datetime as dt, tempfile, pyarrow.parquet as pq
    >>> ts = [dt.datetime(2026, 1, d, tzinfo=dt.timezone.utc) for d in (1, 2, 3)]
    >>> t = pa.table({"prb_id": [1, 1, 1], "dst_addr": ["a"] * 3, "timestamp": ts,
    ...               "flagged_families": [[], ["f"], []], "in_scope": [True, True, False]})
    >>> with tempfile.TemporaryDirectory() as d:
    ...     pq.write_table(t, f"{d}/p.parquet")
    ...     change_events_file(f"{d}/p.parquet", [None, "f"]).select(["family", "event"]).to_pylist()
    [{'family': 'any', 'event': 'start'}, {'family': 'f', 'event': 'start'}]
    """
    import tempfile

    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    _require_names(schema.names, (*pair, "timestamp", "flagged_families"))
    scope = "WHERE in_scope" if "in_scope" in schema.names else ""
    with tempfile.TemporaryDirectory(prefix="pathexp-events-") as tmp:
        con = connect(private=True)  # its own memory limit and spill directory
        try:
            con.execute(f"SET memory_limit = '{memory_limit}'")
            con.execute(f"SET temp_directory = '{tmp}'")
            cols = ", ".join(f'"{c}"' for c in [*pair, "timestamp", "flagged_families"])
            quoted = str(path).replace("'", "''")
            con.execute(f"CREATE TEMP VIEW __paths AS SELECT {cols}, file_row_number AS __row "
                        f"FROM read_parquet('{quoted}', file_row_number = true) {scope}")
            return _change_query(con, "__paths", schema, list(families), pair)
        finally:
            con.close()


def _change_query(con: duckdb.DuckDBPyConnection, rel: str, schema: pa.Schema, families: Sequence[str | None],
                  pair: Sequence[str]) -> pa.Table:
    """The change events of relation ``rel`` (pair columns, timestamp, flagged_families and
    ``__row``, the input order that breaks ties) per family, as :func:`change_events` gives
    them: within a pair in (timestamp, row) order, every row whose transit differs from the
    previous one's."""
    keys = ", ".join(f'"{c}"' for c in pair)
    order = ", ".join(f'"{c}" ASC NULLS LAST' for c in pair)
    out_schema = pa.schema([*(schema.field(c) for c in pair), ("family", pa.string()), ("event", pa.string()),
                            ("timestamp", schema.field("timestamp").type),
                            ("previous_timestamp", schema.field("timestamp").type)])
    if not families:
        return out_schema.empty_table()
    # one window pass for every family: each family's transit now (__x{i}) and at the
    # pair's previous traceroute (__p{i}, null at its first); the rows where any of them
    # changed, in (pair, timestamp, row) order, then split per family below
    xs = [("coalesce(len(flagged_families), 0) > 0" if family is None
           else f"coalesce(list_contains(flagged_families, $f{i}), false)") for i, family in enumerate(families)]
    now = ", ".join(f"{x} AS __x{i}, lag({x}) OVER win AS __p{i}" for i, x in enumerate(xs))
    changed = " OR ".join(f"__x{i} <> __p{i}" for i in range(len(xs)))
    sql = f"""
        WITH w AS (
          SELECT {keys}, timestamp, __row, lag(timestamp) OVER win AS previous_timestamp, {now}
          FROM {rel}
          WINDOW win AS (PARTITION BY {keys} ORDER BY timestamp ASC NULLS LAST, __row)
        )
        SELECT * EXCLUDE (__row) FROM w WHERE {changed}
        ORDER BY {order}, timestamp ASC NULLS LAST, __row
    """
    params = {f"f{i}": family for i, family in enumerate(families) if family is not None}
    got = con.sql(sql, params=params or None).to_arrow_table()
    parts = []
    for i, family in enumerate(families):
        x, prev = got.column(f"__x{i}"), got.column(f"__p{i}")
        rows = got.filter(pc.fill_null(pc.not_equal(x, prev), False))
        cols = {c: rows.column(c) for c in (*pair, "timestamp", "previous_timestamp")}
        cols["family"] = pa.array([family or ANY_FAMILY] * rows.num_rows, pa.string())
        cols["event"] = pc.if_else(rows.column(f"__x{i}"), "start", "stop")
        parts.append(pa.table([cols[f.name].cast(f.type) for f in out_schema], schema=out_schema))
    return pa.concat_tables(parts)


# ---------------------------------------------------------------------------- locations
def crossing_locations(paths: pa.Table, *, family: str | None = None) -> pa.Table:
    """Where traceroutes enter flagged families: one row per (family, PoP).

    A PoP is an IXP (``kind="ixp"``) or a located facility city, or ``unlocated`` for
    crossings nothing places. Counts are of distinct traceroutes and probes; the verdict
    columns count traceroutes with a crossing of that verdict there.

    Returns
    -------
    pyarrow.Table
        ``family, kind, ixp_id, ixp_name, pop_city, pop_country, location_evidence,
        traceroutes, probes, consistent, inconsistent, unknown``, most traceroutes first.

    Examples
    --------
    >>> c = pa.struct([("family", pa.string()), ("kind", pa.string()), ("ixp_id", pa.string()),
    ...     ("ixp_name", pa.string()), ("pop_city", pa.string()), ("pop_country", pa.string()),
    ...     ("location_evidence", pa.string()), ("verdict", pa.string())])
    >>> x = {"family": "f", "kind": "ixp", "ixp_id": "pdb:1", "ixp_name": "X", "pop_city": "Ashburn",
    ...      "pop_country": "US", "location_evidence": "ixp", "verdict": "consistent"}
    >>> t = pa.table({"msm_id": [1, 1], "prb_id": [1, 2], "timestamp": [0, 0],
    ...               "pop_crossings": pa.array([[x], [x]], pa.list_(c))})
    >>> crossing_locations(t).select(["pop_city", "traceroutes", "probes"]).to_pylist()
    [{'pop_city': 'Ashburn', 'traceroutes': 2, 'probes': 2}]
    """
    return crossing_summary(crossing_rows(paths), family=family)


def crossing_rows(paths: pa.Table, *, row0: int = 0) -> pa.Table:
    """The crossings of ``paths``, one row each: what :func:`crossing_summary` counts.

    ``__tr`` is the traceroute's row (plus ``row0``: parts of one table numbered apart),
    ``__prb`` its probe. The rows of parts of a table, concatenated, are the whole's.
    """
    _require(paths, ("msm_id", "prb_id", "timestamp", "pop_crossings"))
    lists = paths.column("pop_crossings").combine_chunks()
    flat = pc.list_flatten(lists)
    parent = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    cols = {f.name: flat.field(f.name) for f in flat.type}
    missing = [c for c in CROSSING_FIELDS if c not in cols]
    if missing:
        raise SchemaMismatch(f"pop_crossings lack field(s) {', '.join(missing)}")
    return pa.table({**{c: cols[c] for c in CROSSING_FIELDS}, "__tr": pa.array(parent + row0),
                     "__prb": paths.column("prb_id").combine_chunks().take(pa.array(parent))})


#: The fields of a crossing that :func:`crossing_rows` keeps.
CROSSING_FIELDS = ("family", "kind", "ixp_id", "ixp_name", "pop_city", "pop_country", "location_evidence", "verdict")


_POP = "family, kind, ixp_id, pop_city, pop_country"
_VERDICTS = ("consistent", "inconsistent", "unknown")


def crossing_counts(x: pa.Table, *more: pa.Table) -> pa.Table:
    """:func:`crossing_rows` (or earlier counts, or both, concatenated) reduced to counts
    per (PoP, probe): what :func:`crossing_summary` needs, whatever the campaign's size.

    A traceroute has one probe, so its distinct traceroutes per (PoP, probe) add up over
    probes and over parts of a table. Where a PoP's crossings differ in ``ixp_name`` or
    ``location_evidence``, the first in alphabetical order stands for them (the same
    whatever the order or the split of the rows).
    """
    parts = [t if "traceroutes" in t.column_names else _crossing_count_rows(t) for t in (x, *more)]
    con = connect()
    try:
        con.register("x", pa.concat_tables(parts))
        sums = ", ".join(f"sum({c})::BIGINT AS {c}" for c in ("traceroutes", *_VERDICTS))
        return con.sql(
            f"SELECT {_POP}, __prb, min(ixp_name) AS ixp_name, min(location_evidence) AS "
            f"location_evidence, {sums} FROM x GROUP BY {_POP}, __prb"
        ).to_arrow_table()
    finally:
        con.close()


def _crossing_count_rows(x: pa.Table) -> pa.Table:
    con = connect()
    try:
        con.register("x", x)
        verdicts = ", ".join(f"count(DISTINCT __tr) FILTER (WHERE verdict = '{v}') AS {v}" for v in _VERDICTS)
        return con.sql(
            f"SELECT {_POP}, __prb, min(ixp_name) AS ixp_name, min(location_evidence) AS "
            f"location_evidence, count(DISTINCT __tr) AS traceroutes, {verdicts} FROM x GROUP BY {_POP}, __prb"
        ).to_arrow_table()
    finally:
        con.close()


def crossing_summary(x: pa.Table, *, family: str | None = None) -> pa.Table:
    """:func:`crossing_locations` from :func:`crossing_rows` or :func:`crossing_counts`."""
    counts = crossing_counts(x)
    if family is not None:
        counts = counts.filter(pc.fill_null(pc.equal(counts.column("family"), family), False))
    con = connect()
    try:
        con.register("x", counts)
        sums = ", ".join(f"sum({c})::BIGINT AS {c}" for c in _VERDICTS)
        return con.sql(
            f"""
            SELECT family, kind, ixp_id, min(ixp_name) AS ixp_name, pop_city, pop_country,
                   min(location_evidence) AS location_evidence,
                   sum(traceroutes)::BIGINT AS traceroutes, count(__prb) AS probes, {sums}
            FROM x GROUP BY {_POP}
            ORDER BY traceroutes DESC, family, kind, ixp_id NULLS LAST, pop_city NULLS LAST, pop_country NULLS LAST
            """
        ).to_arrow_table()
    finally:
        con.close()


# ---------------------------------------------------------------------------- helpers
def _require(table: pa.Table, cols: Sequence[str]) -> None:
    _require_names(table.column_names, cols)


def _require_names(names: Sequence[str], cols: Sequence[str]) -> None:
    missing = [c for c in cols if c not in names]
    if missing:
        raise SchemaMismatch(f"paths table lacks column(s) {', '.join(missing)}")


def _holds_asns(column: str) -> bool:
    """Whether a viewpoint column holds AS numbers (``asn``, ``probe_asn``, ``dst_asn``, ...).

    >>> _holds_asns("probe_asn"), _holds_asns("prb_id")
    (True, False)
    """
    return column == "asn" or column.endswith("_asn")


def _group_columns(paths: pa.Table, by: str | Sequence[str] | None) -> list[str]:
    if by is None:
        return []
    names = [by] if isinstance(by, str) else list(by)
    return [GROUP_ALIASES.get(b, b) for b in names]


def _method_name(
    ci: str, weight: str | None, n_boot: int, seed: int, confidence: float, cluster: str
) -> str:
    level = f"{confidence:.0%}"
    if ci == "wilson":
        return f"wilson {level}" + (f" (weighted by {weight}, Kish effective n)" if weight else "")
    if ci == "cluster-bootstrap":
        return (
            f"cluster bootstrap over {cluster}, percentile {level}, B={n_boot}, seed={seed}"
            + (f", weighted by {weight}" if weight else "")
        )
    return "none"
