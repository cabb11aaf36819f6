"""Vantage points without metadata: AS and country derived from the probe's public address.

A campaign ingested from files has probe metadata only when the user adds it (``pathexp
probes fetch`` online, ``ingest --probes FILE``, or the ``probes`` part of an API bundle).
Offline, a probe still tells its public source address in every result (``from``): its
origin AS (CAIDA pfx2as) and country (iptoasn ip2country, else the RIR delegation) give a
*derived* record. It has no location (no latitude/longitude), and its ``origin`` column says
``derived``, so a verdict that rests on it can say so. Metadata the user supplied always wins.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analysis import _lpm
from analysis.targets import locate_words
from probes.store import PROBE_META_SCHEMA

__all__ = ["DERIVED", "country_basis", "derive_probe_meta", "derived_countries_line", "probe_metadata_status"]

#: ``origin`` of a probe record derived from its public source address.
DERIVED = "derived"


def derive_probe_meta(traces: pa.Table, snapshot: Any, known: pa.Table | None = None) -> pa.Table:
    """Probe records for the probes of ``traces`` that ``known`` lacks, from their ``from`` address.

    For each such probe, its most frequent public ``from_addr`` (IPv4 preferred; ties to the
    smaller address) gives ``address_v4``/``address_v6``, the origin AS of the longest
    matching pfx2as prefix (``asn_v4``/``asn_v6``; the first origin of a MOAS prefix) and the
    country (ip2country, else the RIR delegation's country). ``origin`` is :data:`DERIVED`
    followed by the sources used, e.g. ``derived:pfx2as+ip2country``. Probes with no public
    source address are left out (they stay without metadata).

    Parameters
    ----------
    traces : pyarrow.Table
        Columns ``prb_id`` and ``from_addr`` (the campaign's traceroute table), or those
        pairs with their traceroute count ``n``.
    snapshot : analysis.datasets.Snapshot
        Reference data (pfx2as; ip2country and/or rir-delegated for the country).
    known : pyarrow.Table, optional
        Stored probe metadata (:data:`probes.store.PROBE_META_SCHEMA`); its probes are skipped.

    Returns
    -------
    pyarrow.Table
        :data:`probes.store.PROBE_META_SCHEMA`, one row per derived probe, sorted by ``prb_id``.

    References
    ----------
    RIPE NCC, "RIPE Atlas raw data structure documentation": ``from``, the probe's public
    address as seen by the infrastructure.

    Examples
    --------
    >>> import tempfile, pathlib, pyarrow as pa
    >>> from analysis.datasets import import_files
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "p.pfx2as").write_text("8.8.8.0\\t24\\t15169\\n")
    >>> _ = (d / "ip2country-v4.tsv").write_text("8.8.8.0\\t8.8.8.255\\tUS\\n")
    >>> _ = import_files("pfx2as", [d / "p.pfx2as"], snapshot_id="s", cache_dir=d)
    >>> snap = import_files("ip2country", [d / "ip2country-v4.tsv"], snapshot_id="s", cache_dir=d)
    >>> t = pa.table({"prb_id": [7, 7, 9], "from_addr": ["8.8.8.1", "8.8.8.1", "10.0.0.1"]})
    >>> r = derive_probe_meta(t, snap).to_pylist()
    >>> [(x["prb_id"], x["asn_v4"], x["country_code"], x["origin"]) for x in r]
    [(7, 15169, 'US', 'derived:pfx2as+ip2country')]
    """
    skip = set() if known is None else set(known.column("prb_id").to_pylist())
    votes: dict[int, Counter] = {}
    weights = traces.column("n").to_pylist() if "n" in traces.column_names else [1] * traces.num_rows
    for pid, addr, k in zip(traces.column("prb_id").to_pylist(), traces.column("from_addr").to_pylist(),
                            weights, strict=True):
        if pid in skip or not addr:
            continue
        votes.setdefault(pid, Counter())[addr] += k
    chosen: dict[int, str] = {}
    cand = sorted({a for c in votes.values() for a in c})
    af, hi, lo, ok = _lpm.parse_addresses(pa.array(cand, pa.string()))
    public = {a for a, good, v, h, low in zip(cand, ok, af, hi, lo, strict=True)
              if good and _lpm_public(int(v), int(h), int(low))}
    for pid, c in votes.items():
        best = sorted((a for a in c if a in public), key=lambda a: (":" in a, -c[a], a))
        if best:
            chosen[pid] = best[0]
    if not chosen:
        return PROBE_META_SCHEMA.empty_table()
    pids = sorted(chosen)
    addrs = pa.array([chosen[p] for p in pids], pa.string())
    af, hi, lo, _ = _lpm.parse_addresses(addrs)
    asn: list[int | None] = [None] * len(pids)
    used = []
    if snapshot.has("pfx2as"):
        used.append("pfx2as")
        firsts = snapshot.table("pfx2as", "prefixes").column("asn").to_pylist()
        for v in (4, 6):
            sel = np.flatnonzero(af == v)
            if sel.size:
                rows = _lpm.lookup(snapshot.intervals("pfx2as", v), hi[sel], lo[sel])
                for k, r in zip(sel.tolist(), rows.tolist(), strict=True):
                    asn[k] = firsts[r] if r >= 0 else None
    cc = np.full(len(pids), "", dtype=object)
    via = np.full(len(pids), "", dtype=object)
    if snapshot.has("ip2country") or snapshot.has("rir-delegated"):
        for v in (4, 6):
            sel = np.flatnonzero(af == v)
            if sel.size:
                cc[sel], via[sel] = locate_words(snapshot, v, hi[sel], lo[sel])
    rows_out = []
    for i, pid in enumerate(pids):
        v4 = af[i] == 4
        sources = "+".join([*used, *([via[i]] if via[i] else [])]) or "address"
        rows_out.append({
            "prb_id": pid,
            "asn_v4": asn[i] if v4 else None, "asn_v6": None if v4 else asn[i],
            "country_code": cc[i] or None, "latitude": None, "longitude": None, "is_anchor": None,
            "address_v4": chosen[pid] if v4 else None, "address_v6": None if v4 else chosen[pid],
            "origin": f"{DERIVED}:{sources}",
        })
    return pa.Table.from_pylist(rows_out, schema=PROBE_META_SCHEMA)


def _lpm_public(af: int, hi: int, lo: int) -> bool:
    import ipaddress

    addr = ipaddress.IPv4Address(lo) if af == 4 else ipaddress.IPv6Address((hi << 64) | lo)
    return addr.is_global


def probe_metadata_status(traces: pa.Table, probes: pa.Table, campaign_name: str) -> str | None:
    """One line saying which probes have no metadata or only a derived one, and the remedy.

    None when every probe of ``traces`` has supplied (not derived) metadata.

    Examples
    --------
    >>> t = pa.table({"prb_id": [1, 2, 3]})
    >>> p = pa.table({"prb_id": [1, 2], "origin": ["atlas", "derived:pfx2as"]})
    >>> probe_metadata_status(t, p, "c")  # doctest: +NORMALIZE_WHITESPACE
    'probe metadata: 1 of 3 probes have none and 1 only derived from its source address (AS and
    registry country, no location); run `pathexp probes fetch --campaign c` (online) or
    `pathexp ingest --probes FILE`'
    >>> probe_metadata_status(t.slice(0, 1), p, "c") is None
    True
    """
    seen = set(pc.unique(traces.column("prb_id")).to_pylist())
    origin = dict(zip(probes.column("prb_id").to_pylist(), probes.column("origin").to_pylist(), strict=True))
    missing = sum(1 for p in seen if p not in origin)
    derived = sum(1 for p in seen if str(origin.get(p) or "").startswith(DERIVED))
    if not missing and not derived:
        return None
    parts = []
    if missing:
        parts.append(f"{missing:,} of {len(seen):,} probes have none")
    if derived:
        parts.append(f"{derived:,} only derived from its source address (AS and registry country, "
                     "no location)")
    return (f"probe metadata: {' and '.join(parts)}; run `pathexp probes fetch --campaign "
            f"{campaign_name}` (online) or `pathexp ingest --probes FILE`")


def country_basis(paths: pa.Table, probes: pa.Table) -> dict[str, str]:
    """Per source country of ``paths``, what its country rests on, for the by-country figures.

    ``"probe metadata"`` when every probe of that country has supplied metadata,
    ``"derived"`` when every one has only a country derived from its source address, and
    ``"derived for k of n probes"`` in between. Countries are those of ``probe_country``;
    traceroutes without a country are left out.

    Examples
    --------
    >>> paths = pa.table({"prb_id": [1, 2, 3, 3], "probe_country": ["EG", "EG", "JO", "JO"]})
    >>> probes = pa.table({"prb_id": [1, 2, 3], "origin": ["atlas", "derived:pfx2as", "derived:pfx2as"]})
    >>> country_basis(paths, probes)
    {'EG': 'derived for 1 of 2 probes', 'JO': 'derived'}
    """
    origin = dict(zip(probes.column("prb_id").to_pylist(), probes.column("origin").to_pylist(), strict=True))
    pairs = set(zip(paths.column("probe_country").to_pylist(), paths.column("prb_id").to_pylist(), strict=True))
    total: Counter[str] = Counter()
    derived: Counter[str] = Counter()
    for cc, prb in pairs:
        if cc is None:
            continue
        total[cc] += 1
        derived[cc] += str(origin.get(prb) or "").startswith(DERIVED)
    out = {}
    for cc in sorted(total):
        k, n = derived[cc], total[cc]
        out[cc] = "probe metadata" if not k else DERIVED if k == n else f"derived for {k} of {n} probes"
    return out


def derived_countries_line(derived: dict[str, str] | None, limit: int = 8) -> str | None:
    """One line naming the source countries whose figures rest on a derived country.

    ``derived`` is the ``probe_metadata.derived_countries`` object of ``exposure.json``
    (country -> basis from :func:`country_basis`); None when it is empty.

    >>> print(derived_countries_line({"EG": "derived", "JO": "derived for 1 of 2 probes"}))
    by-source-country figures rest on a country derived from the probe address (registry data, not the probe's own metadata) for EG, JO (1 of 2 probes)
    """
    if not derived:
        return None
    names = [cc if b == DERIVED else f"{cc} ({b.removeprefix('derived for ')})" for cc, b in derived.items()]
    more = f" and {len(names) - limit:,} more" if len(names) > limit else ""
    return ("by-source-country figures rest on a country derived from the probe address (registry "
            f"data, not the probe's own metadata) for {', '.join(names[:limit])}{more}")
