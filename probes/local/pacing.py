"""A token bucket: the one global packets-per-second cap of a local traceroute run."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """Allow at most ``rate`` sends per second on average, bursts of at most ``burst``.

    The clock is injected (``clock() -> seconds``) so tests can drive it.

    >>> t = [0.0]
    >>> b = TokenBucket(10.0, burst=2, clock=lambda: t[0])
    >>> [b.take() for _ in range(3)]
    [True, True, False]
    >>> t[0] = 0.1
    >>> b.take(), round(b.wait_time(), 3)
    (True, 0.1)
    """

    def __init__(self, rate: float, *, burst: int = 1, clock: Callable[[], float]) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = max(1, int(burst))
        self._clock = clock
        self._tokens = float(self.burst)
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def take(self) -> bool:
        """Spend one token if one is available; True when the caller may send now."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait_time(self) -> float:
        """Seconds until the next token is available (0 if one is available now)."""
        self._refill()
        return max(0.0, (1.0 - self._tokens) / self.rate)
