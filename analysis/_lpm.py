"""Vectorized address parsing and longest-prefix match over sorted integer ranges.

Every address is held as two ``uint64`` words ``(hi, lo)``: an IPv6 address is its 128-bit
value split in halves, an IPv4 address has ``hi == 0`` and its 32-bit value in ``lo``.
IPv4 and IPv6 are always kept in separate tables, so the two never mix.

Nested prefixes are flattened once into *disjoint* intervals (:func:`flatten`): the
address space is cut at every prefix start and end, each elementary interval gets the
longest prefix covering it, and neighbours with the same owner are merged. A lookup is
then one binary search (:func:`lookup`) over the sorted interval starts.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "parse_addresses",
    "parse_prefixes",
    "flatten",
    "flatten_ranges",
    "lookup",
    "lookup_addresses",
    "exact_lookup",
    "Intervals",
    "format_prefix",
]

_U64 = np.uint64
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_V4_RE = r"^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$"


def parse_addresses(addrs: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse an array of address strings.

    Returns ``(af, hi, lo, ok)``: ``af`` int8 (4, 6, or 0 where ``ok`` is false), the two
    words, and a validity mask (false for nulls and strings that are not an address).
    Dotted-quad IPv4 is parsed with Arrow kernels; the rest (IPv6, rare) one string at a
    time with :func:`socket.inet_pton`. Callers pass *unique* addresses.
    """
    addrs = pa.array(addrs, type=pa.string()) if not isinstance(addrs, pa.Array) else addrs
    if isinstance(addrs, pa.ChunkedArray):  # pragma: no cover - defensive
        addrs = addrs.combine_chunks()
    n = len(addrs)
    af = np.zeros(n, dtype=np.int8)
    hi = np.zeros(n, dtype=_U64)
    lo = np.zeros(n, dtype=_U64)
    ok = np.zeros(n, dtype=bool)
    if n == 0:
        return af, hi, lo, ok
    is_v4 = pc.fill_null(pc.match_substring_regex(addrs, _V4_RE), False).to_numpy(
        zero_copy_only=False
    )
    idx4 = np.flatnonzero(is_v4)
    if idx4.size:
        parts = pc.split_pattern(addrs.take(pa.array(idx4)), ".")
        octets = pc.cast(parts.flatten(), pa.uint64()).to_numpy().reshape(-1, 4)
        lo[idx4] = (octets[:, 0] << 24) | (octets[:, 1] << 16) | (octets[:, 2] << 8) | octets[:, 3]
        af[idx4] = 4
        ok[idx4] = True
    rest = np.flatnonzero(~is_v4)
    if rest.size:
        strings = addrs.take(pa.array(rest)).to_pylist()
        for j, s in zip(rest.tolist(), strings, strict=True):
            if s is None or ":" not in s:
                continue
            try:
                packed = socket.inet_pton(socket.AF_INET6, s.split("%", 1)[0])
            except OSError:
                continue
            v = int.from_bytes(packed, "big")
            hi[j] = v >> 64
            lo[j] = v & 0xFFFFFFFFFFFFFFFF
            af[j] = 6
            ok[j] = True
    return af, hi, lo, ok


def parse_prefixes(prefixes: list[str], *, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse CIDR strings (host bits must be zero after masking; they are masked).

    Returns ``(af, hi, lo, plen)``. Raises :class:`ValueError` naming ``where`` and the
    offending prefix.
    """
    n = len(prefixes)
    af = np.zeros(n, dtype=np.int8)
    hi = np.zeros(n, dtype=_U64)
    lo = np.zeros(n, dtype=_U64)
    plen = np.zeros(n, dtype=np.int16)
    for i, p in enumerate(prefixes):
        try:
            net = ipaddress.ip_network(p.strip(), strict=False)
        except ValueError as exc:
            raise ValueError(f"{where}: invalid prefix {p!r}: {exc}") from exc
        v = int(net.network_address)
        af[i] = net.version
        hi[i] = v >> 64
        lo[i] = v & 0xFFFFFFFFFFFFFFFF
        plen[i] = net.prefixlen
    return af, hi, lo, plen


def format_prefix(af: int, hi: int, lo: int, plen: int) -> str:
    """The CIDR string of a prefix held as words."""
    if af == 4:
        return f"{ipaddress.IPv4Address(int(lo))}/{int(plen)}"
    return f"{ipaddress.IPv6Address((int(hi) << 64) | int(lo))}/{int(plen)}"


def _mask(hi: np.ndarray, lo: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the top ``bits`` of a 128-bit value (for IPv4 pass ``bits + 96``)."""
    if bits >= 128:
        return hi.copy(), lo.copy()
    if bits <= 0:
        return np.zeros_like(hi), np.zeros_like(lo)
    if bits <= 64:
        mhi = _ALL << _U64(64 - bits) if bits < 64 else _ALL
        return hi & mhi, np.zeros_like(lo)
    mlo = _ALL << _U64(128 - bits)
    return hi.copy(), lo & mlo


def _end(hi: np.ndarray, lo: np.ndarray, bits: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One past the last address of each prefix, as (hi, lo, overflow) in 128-bit space."""
    bits = bits.astype(np.int64)
    size_lo = np.zeros(hi.shape, dtype=_U64)
    size_hi = np.zeros(hi.shape, dtype=_U64)
    small = bits > 64  # size fits in lo
    size_lo[small] = _U64(1) << (128 - bits[small]).astype(_U64)
    big = ~small
    # bits in [0, 64]: size = 2**(128-bits) = 2**(64-bits) in the hi word (bits==0: overflow)
    shift = (64 - bits[big]).astype(_U64)
    with np.errstate(over="ignore"):
        size_hi[big] = np.where(shift < 64, _U64(1) << np.minimum(shift, _U64(63)), _U64(0))
        new_lo = lo + size_lo
        carry = (new_lo < lo).astype(_U64)
        new_hi = hi + size_hi + carry
    overflow = (new_hi < hi) | (bits == 0)
    return new_hi, new_lo, overflow


def _rank(bhi: np.ndarray, blo: np.ndarray, qhi: np.ndarray, qlo: np.ndarray) -> np.ndarray:
    """For each query, the number of boundaries ``<=`` it (boundaries sorted, 128-bit)."""
    if not bhi.any() and not qhi.any():
        return np.searchsorted(blo, qlo, side="right")
    if not blo.any():
        # every boundary is (h, 0) <= (h, q_lo): comparing the high word suffices
        return np.searchsorted(bhi, qhi, side="right")
    n = bhi.size
    allhi = np.concatenate([bhi, qhi])
    alllo = np.concatenate([blo, qlo])
    tag = np.concatenate([np.zeros(n, np.int8), np.ones(qhi.size, np.int8)])
    order = np.lexsort((tag, alllo, allhi))
    isb = order < n
    cnt = np.cumsum(isb)
    out = np.empty(qhi.size, dtype=np.int64)
    qsel = ~isb
    out[order[qsel] - n] = cnt[qsel]
    return out


@dataclass(frozen=True)
class Intervals:
    """Disjoint, sorted intervals ``[start_i, start_{i+1})`` each owned by a row or -1."""

    start_hi: np.ndarray
    start_lo: np.ndarray
    owner: np.ndarray  # int64 row index into the prefix table, -1 = not covered

    def as_table(self) -> pa.Table:
        return pa.table(
            {
                "start_hi": pa.array(self.start_hi, pa.uint64()),
                "start_lo": pa.array(self.start_lo, pa.uint64()),
                "owner": pa.array(self.owner, pa.int64()),
            }
        )

    @classmethod
    def from_table(cls, table: pa.Table) -> Intervals:
        return cls(
            table.column("start_hi").to_numpy(),
            table.column("start_lo").to_numpy(),
            table.column("owner").to_numpy(),
        )


def _exact_lpm(
    hi: np.ndarray, lo: np.ndarray, plen: np.ndarray, qhi: np.ndarray, qlo: np.ndarray, width: int
) -> np.ndarray:
    """Longest-prefix match by exact lookup per prefix length (used to build intervals)."""
    best = np.full(qhi.size, -1, dtype=np.int64)
    best_len = np.full(qhi.size, -1, dtype=np.int64)
    order = np.lexsort((lo, hi, plen))
    s_hi, s_lo, s_len = hi[order], lo[order], plen[order]
    for L in np.unique(s_len).tolist():
        a, b = np.searchsorted(s_len, [L, L + 1], side="left")
        mhi, mlo = _mask(qhi, qlo, int(L) + (128 - width))
        pos = _rank(s_hi[a:b], s_lo[a:b], mhi, mlo) - 1
        valid = pos >= 0
        posc = np.where(valid, pos, 0) + a
        hit = valid & (s_hi[posc] == mhi) & (s_lo[posc] == mlo)
        upd = hit & (L > best_len)
        best[upd] = order[posc[upd]]
        best_len[upd] = L
    return best


def flatten(hi: np.ndarray, lo: np.ndarray, plen: np.ndarray, *, width: int) -> Intervals:
    """Flatten possibly nested prefixes of one family into disjoint owned intervals.

    Parameters
    ----------
    hi, lo : numpy.ndarray of uint64
        Network addresses (masked), IPv4 in ``lo`` with ``hi == 0``.
    plen : numpy.ndarray
        Prefix lengths.
    width : int
        32 for IPv4, 128 for IPv6.

    Returns
    -------
    Intervals
        ``owner`` is the row of the longest prefix covering each interval (ties between
        identical prefixes go to the first row), -1 for gaps.
    """
    hi = np.asarray(hi, dtype=_U64)
    lo = np.asarray(lo, dtype=_U64)
    plen = np.asarray(plen, dtype=np.int64)
    if hi.size == 0:
        return Intervals(np.zeros(1, _U64), np.zeros(1, _U64), np.full(1, -1, np.int64))
    rows = np.arange(hi.size, dtype=np.int64)
    order = np.lexsort((rows, lo, hi, plen))
    first = np.ones(order.size, dtype=bool)
    first[1:] = (
        (plen[order][1:] != plen[order][:-1])
        | (hi[order][1:] != hi[order][:-1])
        | (lo[order][1:] != lo[order][:-1])
    )
    rows = np.sort(order[first])  # identical prefixes: the first row wins
    hi, lo, plen = hi[rows], lo[rows], plen[rows]
    ehi, elo, over = _end(hi, lo, plen + (128 - width))
    if width == 32:
        over = over | (ehi > 0) | (elo > _U64(0xFFFFFFFF))
    keep = ~over
    bhi = np.concatenate([[_U64(0)], hi, ehi[keep]]).astype(_U64)
    blo = np.concatenate([[_U64(0)], lo, elo[keep]]).astype(_U64)
    order = np.lexsort((blo, bhi))
    bhi, blo = bhi[order], blo[order]
    distinct = np.ones(bhi.size, dtype=bool)
    distinct[1:] = (bhi[1:] != bhi[:-1]) | (blo[1:] != blo[:-1])
    bhi, blo = bhi[distinct], blo[distinct]
    owner = _exact_lpm(hi, lo, plen, bhi, blo, width)
    owner = np.where(owner >= 0, rows[np.maximum(owner, 0)], -1)
    merge = np.ones(owner.size, dtype=bool)
    merge[1:] = owner[1:] != owner[:-1]
    return Intervals(bhi[merge], blo[merge], owner[merge])


def flatten_ranges(
    start_hi: np.ndarray, start_lo: np.ndarray, end_hi: np.ndarray, end_lo: np.ndarray, *, width: int
) -> Intervals:
    """Disjoint intervals of inclusive address ranges ``[start, end]`` of one family.

    Ranges may nest or overlap (iptoasn's ip2country nests narrower ranges inside wider
    ones): each address is owned by the covering range that starts last, and among
    those by the one that ends first -- for nested ranges, the narrowest, as in a
    longest-prefix match. Gaps are owned by -1. ``width`` is 32 for IPv4, 128 for IPv6.
    Owners are row indices into the given arrays.
    """
    shi = np.asarray(start_hi, _U64)
    slo = np.asarray(start_lo, _U64)
    ehi = np.asarray(end_hi, _U64)
    elo = np.asarray(end_lo, _U64)
    n = shi.size
    if n == 0:
        return Intervals(np.zeros(1, _U64), np.zeros(1, _U64), np.full(1, -1, np.int64))
    order = np.lexsort((~elo, ~ehi, slo, shi))  # by start, then the widest first
    shi, slo, ehi, elo = shi[order], slo[order], ehi[order], elo[order]
    disjoint = bool(np.all((shi[1:] > ehi[:-1]) | ((shi[1:] == ehi[:-1]) & (slo[1:] > elo[:-1]))))
    if not disjoint:
        return _sweep_ranges(shi, slo, ehi, elo, order, width)
    with np.errstate(over="ignore"):
        nlo = elo + _U64(1)  # one past the end, with carry
        nhi = ehi + (nlo == 0).astype(_U64)
    top = (ehi == _U64(0)) & (elo == _U64(0xFFFFFFFF)) if width == 32 else (ehi == _ALL) & (elo == _ALL)
    # a gap follows range i when its end + 1 is not the next start (and is not past the top)
    nxt_hi = np.concatenate([shi[1:], [_U64(0)]])
    nxt_lo = np.concatenate([slo[1:], [_U64(0)]])
    last = np.zeros(n, bool)
    last[-1] = True
    gap = ~top & (last | (nhi != nxt_hi) | (nlo != nxt_lo))
    bhi = np.concatenate([shi, nhi[gap]])
    blo = np.concatenate([slo, nlo[gap]])
    own = np.concatenate([order.astype(np.int64), np.full(int(gap.sum()), -1, np.int64)])
    if shi[0] != 0 or slo[0] != 0:
        bhi = np.concatenate([[_U64(0)], bhi])
        blo = np.concatenate([[_U64(0)], blo])
        own = np.concatenate([[-1], own])
    pos = np.lexsort((blo, bhi))
    return Intervals(bhi[pos].astype(_U64), blo[pos].astype(_U64), own[pos])


def _sweep_ranges(
    shi: np.ndarray, slo: np.ndarray, ehi: np.ndarray, elo: np.ndarray, rows: np.ndarray, width: int
) -> Intervals:
    """:func:`flatten_ranges` for overlapping ranges (sorted by start, widest first): one sweep."""
    import heapq

    starts = [(int(h) << 64) | int(lw) for h, lw in zip(shi.tolist(), slo.tolist(), strict=True)]
    ends = [(int(h) << 64) | int(lw) for h, lw in zip(ehi.tolist(), elo.tolist(), strict=True)]
    limit = (1 << width) - 1
    bounds = sorted({0, *starts, *(e + 1 for e in ends if e < limit)})
    heap: list[tuple[int, int, int]] = []  # (-start, end, position): the top owns the address
    out_b: list[int] = []
    out_o: list[int] = []
    i = 0
    for b in bounds:
        while i < len(starts) and starts[i] <= b:
            heapq.heappush(heap, (-starts[i], ends[i], i))
            i += 1
        while heap and heap[0][1] < b:  # lazily drop ranges that ended before b
            heapq.heappop(heap)
        owner = int(rows[heap[0][2]]) if heap else -1
        if not out_o or out_o[-1] != owner:
            out_b.append(b)
            out_o.append(owner)
    return Intervals(
        np.array([v >> 64 for v in out_b], dtype=_U64),
        np.array([v & 0xFFFFFFFFFFFFFFFF for v in out_b], dtype=_U64),
        np.array(out_o, dtype=np.int64),
    )


def lookup_addresses(snapshot: Any, kind: str, addrs: pa.Array) -> np.ndarray:
    """Row of ``kind``'s table owning each address string (-1: none, or not an address),
    through the snapshot's stored v4/v6 intervals of that kind."""
    af, hi, lo, ok = parse_addresses(addrs)
    row = np.full(len(addrs), -1, np.int64)
    for v in (4, 6):
        sel = np.flatnonzero(ok & (af == v))
        if sel.size:
            row[sel] = lookup(snapshot.intervals(kind, v), hi[sel], lo[sel])
    return row


def lookup(iv: Intervals, qhi: np.ndarray, qlo: np.ndarray) -> np.ndarray:
    """Owner row of each query address (-1 when no prefix covers it): one binary search."""
    if qhi.size == 0:
        return np.zeros(0, dtype=np.int64)
    pos = _rank(iv.start_hi, iv.start_lo, np.asarray(qhi, _U64), np.asarray(qlo, _U64)) - 1
    return np.where(pos >= 0, iv.owner[np.maximum(pos, 0)], -1)


def exact_lookup(
    key_hi: np.ndarray, key_lo: np.ndarray, qhi: np.ndarray, qlo: np.ndarray
) -> np.ndarray:
    """Index of each query in the sorted, unique keys, or -1 when absent."""
    if qhi.size == 0 or key_hi.size == 0:
        return np.full(qhi.size, -1, dtype=np.int64)
    pos = _rank(key_hi, key_lo, qhi, qlo) - 1
    posc = np.maximum(pos, 0)
    hit = (pos >= 0) & (key_hi[posc] == qhi) & (key_lo[posc] == qlo)
    return np.where(hit, posc, -1)
