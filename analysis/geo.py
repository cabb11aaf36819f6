"""Great-circle distances and the speed-of-light check on traceroute hops.

A reply that took ``rtt`` milliseconds for the round trip cannot have come from farther
away than the distance light travels in fibre during half that time. Light in fibre moves at
about two thirds of its speed in vacuum, so a hop claimed to be in a city is *consistent*
with the probe's location only if::

    distance(probe, city) <= (rtt / 2) * (2/3) * c   ~=   99.93 km per ms of RTT

This is the constraint-based geolocation bound of Gueye et al. (CBG, IEEE/ACM ToN 2006)
used by every IXP-crossing and PoP-location study since; it can only ever *refute* a
location, never confirm it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "EARTH_RADIUS_KM",
    "SPEED_OF_LIGHT_KM_S",
    "KM_PER_MS_RTT",
    "haversine_km",
    "max_distance_km",
    "location_verdict",
    "VERDICTS",
]

#: Mean Earth radius (IUGG), km.
EARTH_RADIUS_KM = 6371.0088

#: Speed of light in vacuum, km/s.
SPEED_OF_LIGHT_KM_S = 299_792.458

#: Farthest one-way distance per millisecond of round-trip time at 2/3 c: (1 ms / 2) x 2/3 c.
KM_PER_MS_RTT = SPEED_OF_LIGHT_KM_S * (2.0 / 3.0) / 1000.0 / 2.0

#: The three location verdicts, in the order their codes (0, 1, 2) use.
VERDICTS = ("consistent", "inconsistent", "unknown")


def haversine_km(
    lat1: npt.ArrayLike, lon1: npt.ArrayLike, lat2: npt.ArrayLike, lon2: npt.ArrayLike
) -> np.ndarray:
    """Great-circle distance in km between points given in degrees (vectorised).

    NaN in any coordinate gives NaN.

    Examples
    --------
    >>> round(float(haversine_km(0.0, 0.0, 0.0, 1.0)), 2)  # one degree of the equator
    111.2
    """
    p1, p2 = np.radians(np.asarray(lat1, float)), np.radians(np.asarray(lat2, float))
    dphi = p2 - p1
    dlmb = np.radians(np.asarray(lon2, float) - np.asarray(lon1, float))
    a = np.sin(dphi / 2.0) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2.0) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def max_distance_km(rtt_ms: npt.ArrayLike) -> np.ndarray:
    """Farthest distance a reply with this round-trip time can have come from, in km.

    ``(rtt / 2) * (2/3) * c``; NaN stays NaN.

    Examples
    --------
    >>> round(float(max_distance_km(10.0)), 1)
    999.3
    """
    return np.asarray(rtt_ms, float) * KM_PER_MS_RTT


def location_verdict(distance_km: npt.ArrayLike, rtt_ms: npt.ArrayLike) -> np.ndarray:
    """Speed-of-light verdict codes: 0 consistent, 1 inconsistent, 2 unknown (see :data:`VERDICTS`).

    Unknown when the distance or the RTT is NaN (probe or city location unknown, no RTT).

    Examples
    --------
    >>> [VERDICTS[c] for c in location_verdict([500.0, 5000.0, float("nan")], [10.0, 10.0, 10.0])]
    ['consistent', 'inconsistent', 'unknown']
    """
    dist = np.asarray(distance_km, float)
    limit = max_distance_km(rtt_ms)
    dist, limit = np.broadcast_arrays(dist, limit)
    out = np.full(dist.shape, 2, dtype=np.int8)
    known = ~(np.isnan(dist) | np.isnan(limit))
    out[known & (dist <= limit)] = 0
    out[known & (dist > limit)] = 1
    return out
