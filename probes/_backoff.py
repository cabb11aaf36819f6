"""Retry delays: exponential backoff with full jitter, floored by ``Retry-After``."""

from __future__ import annotations

import email.utils
import random
from dataclasses import dataclass
from datetime import datetime, timezone

__all__ = ["Backoff", "parse_retry_after"]


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date).

    Returns ``None`` when the header is absent or unreadable (the caller then uses its
    own backoff).

    >>> parse_retry_after("7")
    7.0
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT",
    ...                   now=datetime(2015, 10, 21, 7, 28, 0, tzinfo=timezone.utc))
    10.0
    >>> parse_retry_after("soon") is None
    True
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True)
class Backoff:
    """Delay before retry number ``attempt`` (0-based).

    ``delay = max(retry_after, U(0, min(cap, base * 2**attempt)))`` ("full jitter"), so a
    server's ``Retry-After`` is always honoured and clients spread out otherwise.

    >>> b = Backoff(base=1.0, cap=8.0)
    >>> rng = random.Random(1)
    >>> all(0 <= b.delay(a, rng=rng) <= min(8.0, 2**a) for a in range(10))
    True
    >>> b.delay(0, retry_after=30.0, rng=rng)
    30.0
    """

    base: float = 0.5
    cap: float = 60.0

    def delay(self, attempt: int, *, retry_after: float | None = None, rng: random.Random) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(attempt, 62)))
        jitter = rng.uniform(0.0, ceiling)
        return max(retry_after or 0.0, jitter)
