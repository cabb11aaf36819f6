"""Special-purpose address blocks (IANA IPv4/IPv6 special-purpose registries, RFC 6890)."""

from __future__ import annotations

import numpy as np

from analysis import _lpm

__all__ = ["CLASSES", "classify"]

#: (prefix, class). Longest match wins; the /0 and 2000::/3 rows give the defaults.
SPECIAL_V4 = [
    ("0.0.0.0/0", "public"),
    ("0.0.0.0/8", "bogon"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "bogon"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "bogon"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "bogon"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "bogon"),
]
SPECIAL_V6 = [
    ("::/0", "bogon"),
    ("2000::/3", "public"),
    ("::1/128", "loopback"),
    ("::ffff:0:0/96", "bogon"),
    ("64:ff9b::/96", "bogon"),
    ("100::/64", "bogon"),
    ("2001::/23", "bogon"),
    ("2001::/32", "public"),  # Teredo: globally routed
    ("2001:db8::/32", "documentation"),
    ("2002::/16", "public"),  # 6to4
    ("3fff::/20", "documentation"),
    ("fc00::/7", "private"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
]

CLASSES = ("public", "private", "shared", "loopback", "link-local", "documentation", "multicast", "bogon")


def classify(af: np.ndarray, hi: np.ndarray, lo: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Class index into :data:`CLASSES` per address (-1 where ``ok`` is false)."""
    out = np.full(af.size, -1, dtype=np.int64)
    for v, width, table in ((4, 32, SPECIAL_V4), (6, 128, SPECIAL_V6)):
        sel = np.flatnonzero(ok & (af == v))
        if not sel.size:
            continue
        _, phi, plo, plen = _lpm.parse_prefixes([p for p, _ in table], where="special-purpose table")
        iv = _lpm.flatten(phi, plo, plen, width=width)
        row = _lpm.lookup(iv, hi[sel], lo[sel])
        cls = np.array([CLASSES.index(c) for _, c in table], dtype=np.int64)
        out[sel] = cls[row]
    return out
