"""Bounded HTTP bodies: an overall deadline and a size cap on every streamed answer.

A per-read timeout alone lets a server that drips one byte every few seconds, or sends a
body that never ends, hold a call forever. :func:`read_body` reads a ``stream=True``
response with ``read1`` (one socket read at a time, so a drip never waits to fill a
buffer), sets the socket timeout to what is left of the deadline before every read, and
stops at the size cap. Both limits raise :class:`BodyLimit`, a
:class:`requests.RequestException` whose message names the setting that bounded it.
Used by the Atlas client (:mod:`probes.atlas`) and the reference-data downloads
(:mod:`analysis._download`).
"""

from __future__ import annotations

import socket
import time

import requests
import urllib3

from probes._backoff import parse_retry_after  # re-exported: the Retry-After of any HTTP client

__all__ = ["READ_CHUNK", "BodyLimit", "name_unresolved", "parse_retry_after", "read_body"]

READ_CHUNK = 65_536


class BodyLimit(requests.exceptions.RequestException):
    """The answer passed the request deadline (``too_big`` False) or the body-size cap."""

    def __init__(self, message: str, *, too_big: bool) -> None:
        super().__init__(message)
        self.too_big = too_big


def read_body(resp: requests.Response, *, started: float, deadline: float, timeout: float,
              max_bytes: int, settings: str = "atlas") -> None:
    """Read a streamed body into ``resp`` within ``deadline`` seconds of ``started``.

    ``timeout`` bounds one socket read; ``settings`` names the settings section in the
    messages (``atlas.deadline``, ``atlas.max_body_bytes``). The response is closed on any
    failure; a connection broken midway is a :class:`requests.ConnectionError`.
    """
    raw = resp.raw
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    parts: list[bytes] = []
    size = 0

    def late() -> BodyLimit:
        return BodyLimit(f"no complete answer within the {deadline:g} s deadline "
                         f"({settings}.deadline; {size} bytes received)", too_big=False)

    try:
        while True:
            left = started + deadline - time.monotonic()
            if left <= 0:
                raise late()
            if sock is not None:
                sock.settimeout(max(0.01, min(timeout, left)))
            data = raw.read1(READ_CHUNK)
            if not data:
                break
            size += len(data)
            if size > max_bytes:
                raise BodyLimit(f"answer larger than {max_bytes} bytes ({settings}.max_body_bytes)",
                                too_big=True)
            parts.append(data)
    except BodyLimit:
        resp.close()
        raise
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        resp.close()
        if "timed out" in str(exc).lower() and started + deadline - time.monotonic() <= 0.05:
            raise late() from exc
        raise requests.exceptions.ConnectionError(
            f"connection broken after {size} bytes: {type(exc).__name__}") from exc
    resp._content = b"".join(parts)
    resp._content_consumed = True


def name_unresolved(exc: BaseException) -> bool:
    """Whether a requests failure is a name-resolution failure (anywhere in its chain).

    Nothing was sent when the server's name does not resolve, so retrying within seconds
    does not help: callers say "offline?" in one line instead.

    >>> import socket
    >>> name_unresolved(OSError("wrapped", socket.gaierror(-2, "Name or service not known")))
    True
    >>> name_unresolved(TimeoutError("read timed out"))
    False
    """
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        e = stack.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, socket.gaierror) or type(e).__name__ == "NameResolutionError":
            return True
        stack.extend([e.__cause__, e.__context__, getattr(e, "reason", None), *e.args])
    return False
