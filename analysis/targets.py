"""Choosing traceroute destinations from reference data: a seeded sample of located prefixes.

A campaign toward "US destinations" needs destinations that are in the US, spread over many
networks, without a hand-made list. :func:`sample_targets` draws them from a snapshot: every
announced prefix (CAIDA pfx2as) of one address family whose sampled address is located in the
wanted country (iptoasn ip2country, else the RIR delegation's registry country), at most
``max_per_asn`` per origin AS, weighted by address space or uniformly over prefixes. The same
snapshot, arguments and seed give the same targets; each comes with the reason it was chosen,
its origin AS and its location evidence, so ``campaign plan`` can show them and the campaign
state records them.

The address inside a prefix is drawn with the same seed (never the network or broadcast
address of a prefix shorter than /31). A traceroute toward it crosses the networks on the way
to the prefix's origin even when the address itself does not answer.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analysis import _lpm
from analysis.destinations import NOT_A_COUNTRY
from analysis.errors import AnalysisError

__all__ = ["SAMPLE_SCHEMA", "WEIGHTS", "locate_words", "planned_sample", "sample_targets"]

#: How prefixes are weighted: by the addresses they cover, or each the same.
WEIGHTS = ("space", "uniform")

#: One row per sampled destination, in draw order.
SAMPLE_SCHEMA = pa.schema([
    ("address", pa.string()),
    ("prefix", pa.string()),
    ("asn", pa.int64()),
    ("country", pa.string()),
    ("country_via", pa.string()),
    ("why", pa.string()),
])

#: Origin ASes that never mean a network to measure toward (RFC 7607, 6793, 5398, 6996, 7300).
_NOT_AN_ORIGIN = ((0, 0), (23456, 23456), (64496, 65551), (4200000000, 4294967295))
#: Prefix lengths considered: shorter ones are aggregates or errors, longer ones are not
#: globally routed (v4 /24, v6 /48 are the usual filters of transit networks).
_PLEN = {4: (8, 24), 6: (19, 48)}


def _bogon_asn(asn: int) -> bool:
    return any(a <= asn <= b for a, b in _NOT_AN_ORIGIN)


def sample_targets(
    snapshot: Any,
    *,
    count: int,
    country: str = "US",
    af: int = 4,
    max_per_asn: int = 1,
    weight: str = "space",
    seed: int = 0,
    asns: tuple[int, ...] = (),
    counts: Counter | None = None,
) -> pa.Table:
    """Draw ``count`` destinations located in ``country`` from the snapshot's announced prefixes.

    Candidates are the pfx2as prefixes of family ``af`` with a single, public origin AS
    (MOAS and AS-set prefixes, private or reserved ASNs and prefixes outside /8-/24 for IPv4,
    /19-/48 for IPv6 are left out), restricted to ``asns`` when given. One address is drawn
    in each candidate; it is kept when its country is ``country``: from iptoasn ip2country
    when the snapshot has it, else the RIR delegation's country (named ``rir-delegated``, the
    weaker evidence). The draw is a weighted sample without replacement in the order of
    Efraimidis and Spirakis' keys ``u ** (1 / w)`` (``w`` = addresses covered for
    ``weight="space"``, 1 for ``"uniform"``), taking at most ``max_per_asn`` prefixes per
    origin AS.

    Parameters
    ----------
    snapshot : analysis.datasets.Snapshot
        Holds ``pfx2as`` and ``ip2country`` and/or ``rir-delegated``.
    count : int
        Destinations wanted (fewer are returned when fewer qualify; see ``counts``).
    country : str
        ISO 3166 alpha-2 code of the country the destinations must be in.
    af : int
        4 or 6.
    max_per_asn : int
        At most this many destinations per origin AS.
    weight : {"space", "uniform"}
        Prefix weights.
    seed : int
        Seed of the draw (addresses inside prefixes and the sample).
    asns : tuple of int, optional
        Only prefixes originated by these ASes.
    counts : collections.Counter, optional
        Receives the number of prefixes left out, by reason.

    Returns
    -------
    pyarrow.Table
        :data:`SAMPLE_SCHEMA`, in draw order.

    Raises
    ------
    analysis.errors.AnalysisError
        Bad arguments, or a snapshot without pfx2as or without any location source.

    References
    ----------
    P. S. Efraimidis, P. G. Spirakis, "Weighted random sampling with a reservoir",
    Information Processing Letters 97(5), 2006.
    CAIDA, "RouteViews Prefix to AS mappings Dataset (pfx2as)".

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from analysis.datasets import import_files
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "p.pfx2as").write_text("8.8.8.0\\t24\\t15169\\n1.1.1.0\\t24\\t13335\\n8.8.4.0\\t24\\t15169\\n"
    ...                                 "5.5.0.0\\t16\\t3320\\n")
    >>> _ = (d / "ip2country-v4.tsv").write_text("8.8.0.0\\t8.8.255.255\\tUS\\n1.1.1.0\\t1.1.1.255\\tUS\\n"
    ...                                          "5.5.0.0\\t5.5.255.255\\tDE\\n")
    >>> _ = import_files("pfx2as", [d / "p.pfx2as"], snapshot_id="s", cache_dir=d)
    >>> snap = import_files("ip2country", [d / "ip2country-v4.tsv"], snapshot_id="s", cache_dir=d)
    >>> t = sample_targets(snap, count=5, country="US", seed=1)
    >>> sorted(t.column("asn").to_pylist())   # one per AS; the German /16 is not a candidate
    [13335, 15169]
    >>> t.column("country_via").to_pylist()
    ['ip2country', 'ip2country']
    """
    if weight not in WEIGHTS:
        raise AnalysisError(f"weight must be one of {', '.join(WEIGHTS)}, got {weight!r}")
    if af not in (4, 6) or count < 1 or max_per_asn < 1:
        raise AnalysisError("sample_targets: af must be 4 or 6, count and max_per_asn at least 1")
    if not (len(country) == 2 and country.isalpha() and country.isupper()):
        raise AnalysisError(f"country must be an ISO 3166 alpha-2 code like US, got {country!r}")
    counts = Counter() if counts is None else counts
    t = snapshot.table("pfx2as", "prefixes")
    t = t.filter(pc.equal(t.column("af"), af)).sort_by([("hi", "ascending"), ("lo", "ascending"),
                                                        ("plen", "ascending")])
    lo_len, hi_len = _PLEN[af]
    asn = t.column("asn").fill_null(0).to_numpy().astype(np.int64)
    plen = t.column("plen").to_numpy().astype(np.int64)
    moas = (t.column("moas").to_numpy(zero_copy_only=False)
            | t.column("as_set").to_numpy(zero_copy_only=False))
    bogon = np.zeros(len(asn), bool)
    for a, b in _NOT_AN_ORIGIN:
        bogon |= (asn >= a) & (asn <= b)
    reasons = [("moas", moas), ("bogon_asn", bogon), ("prefix_length", (plen < lo_len) | (plen > hi_len))]
    if asns:
        reasons.append(("not_in_asns", ~np.isin(asn, np.array(sorted(set(asns)), np.int64))))
    out_mask = np.zeros(len(asn), bool)
    for reason, mask in reasons:
        counts[reason] += int((mask & ~out_mask).sum())
        out_mask |= mask
    cand = np.flatnonzero(~out_mask)
    rng = np.random.default_rng(seed)
    bits = 32 if af == 4 else 128
    # one address inside each prefix, never its first or last (network / broadcast); for
    # IPv6 the offset stays in the low 62 bits (the prefix's interface-identifier half)
    host_bits = np.minimum(bits - plen[cand], 62)
    span = np.left_shift(np.ones(len(cand), np.uint64), host_bits.astype(np.uint64))
    offset = np.where(span > 2, 1 + np.floor(rng.random(len(cand)) * (span - 2).astype(np.float64)), 0)
    offset = np.minimum(offset.astype(np.uint64), np.maximum(span, 2) - np.uint64(2) + (span <= 2))
    hi = t.column("hi").to_numpy()[cand].astype(np.uint64)
    lo = t.column("lo").to_numpy()[cand].astype(np.uint64) + offset
    where, via = locate_words(snapshot, af, hi, lo)
    keep = np.flatnonzero(where == country)
    counts["other_country"] += int(((where != country) & (where != "")).sum())
    counts["unlocated"] += int((where == "").sum())
    prefixes = t.column("prefix").to_numpy(zero_copy_only=False)[cand]
    w = (np.ldexp(1.0, (bits - plen[cand][keep]).astype(np.int32)) if weight == "space"
         else np.ones(len(keep)))
    u = rng.random(len(keep))
    keys = np.log(u) / w  # log of Efraimidis-Spirakis' u ** (1/w): the same order
    per_asn: Counter = Counter()
    out: list[dict] = []
    for j in np.argsort(-keys, kind="stable"):
        i = int(keep[j])
        a = int(asn[cand][i])
        if per_asn[a] >= max_per_asn:
            continue
        per_asn[a] += 1
        out.append({
            "address": _address(af, int(hi[i]), int(lo[i])), "prefix": str(prefixes[i]), "asn": a,
            "country": country, "country_via": str(via[i]),
            "why": (f"sampled {len(out) + 1} of {count}: {len(keep):,} {country}-located announced "
                    f"prefixes, {weight}-weighted, at most {max_per_asn} per AS, seed {seed}, "
                    f"snapshot {snapshot.id}"),
        })
        if len(out) == count:
            break
    counts["eligible"] = len(keep)
    return pa.Table.from_pylist(out, schema=SAMPLE_SCHEMA)


def _address(af: int, hi: int, lo: int) -> str:
    return str(ipaddress.IPv4Address(lo) if af == 4 else ipaddress.IPv6Address((hi << 64) | lo))


def locate_words(snapshot: Any, af: int, hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Country of each address given as two 64-bit words, and the source that says so.

    iptoasn ip2country first, else the RIR delegation's country (an IANA block, ``ZZ`` or a
    region code like ``EU`` or ``AP``, or a code that is not two letters says nothing).
    Addresses of one family ``af``.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Object arrays: the country ("" when unknown) and ``"ip2country"`` /
        ``"rir-delegated"`` ("" when unknown).

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> from analysis.datasets import import_files
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "ip2country-v4.tsv").write_text("8.8.8.0\\t8.8.8.255\\tUS\\n")
    >>> snap = import_files("ip2country", [d / "ip2country-v4.tsv"], snapshot_id="s", cache_dir=d)
    >>> cc, via = locate_words(snap, 4, np.zeros(2, np.uint64), np.array([0x08080808, 0x01010101], np.uint64))
    >>> cc.tolist(), via.tolist()
    (['US', ''], ['ip2country', ''])
    """
    if not (snapshot.has("ip2country") or snapshot.has("rir-delegated")):
        raise AnalysisError(f"snapshot {snapshot.id!r} locates nothing: import ip2country "
                            "(`pathexp datasets import --kind ip2country ...`) or rir-delegated")
    cc = np.full(len(hi), "", dtype=object)
    via = np.full(len(hi), "", dtype=object)
    for kind, table in (("ip2country", "ranges"), ("rir-delegated", "prefixes")):
        todo = np.flatnonzero(cc == "")
        if not snapshot.has(kind) or not todo.size:
            continue
        t = snapshot.table(kind, table)
        row = _lpm.lookup(snapshot.intervals(kind, af), hi[todo], lo[todo])
        found = row >= 0
        codes = t.column("cc").to_numpy(zero_copy_only=False)[row[found]]
        if kind == "rir-delegated":  # an IANA block says nothing about a country
            codes = np.where(t.column("registry").to_numpy(zero_copy_only=False)[row[found]] == "iana",
                             "", codes)
        codes = np.array([c if isinstance(c, str) and len(c) == 2 and c not in NOT_A_COUNTRY else ""
                          for c in codes], dtype=object)
        cc[todo[found]] = codes
        via[todo[found]] = np.where(codes != "", kind, "")
    return cc, via


def planned_sample(*, cache_dir: str | None = None) -> Callable[[Any, int], list]:
    """The campaign planner's sampler: ``[targets.sample]`` drawn from the cached snapshot.

    Returns a function ``(SampleSpec, af) -> [PlannedTarget]`` for
    :func:`probes.campaign.plan` and :func:`probes.campaign.submit`; the snapshot is the
    spec's ``snapshot`` id, or the latest one in the reference-data cache.
    """
    from analysis.datasets import load_snapshot
    from probes.campaign.planner import PlannedTarget

    def sampler(spec: Any, af: int) -> list:
        snap = load_snapshot(spec.snapshot or None, cache_dir=cache_dir)
        t = sample_targets(snap, count=spec.count, country=spec.country, af=af,
                           max_per_asn=spec.max_per_asn, weight=spec.weight, seed=spec.seed,
                           asns=spec.asns)
        return [PlannedTarget(r["address"], (r["address"],), "sample", why=r["why"], asn=r["asn"],
                              evidence=f"{r['country_via']} ({r['country']}, prefix {r['prefix']})")
                for r in t.to_pylist()]

    return sampler
