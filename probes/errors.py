"""Exceptions raised by :mod:`probes`.

One tree, rooted at :class:`ProbeError`; the CLI catches the root once and prints a
one-line message::

    ProbeError
    ├── ConfigError            bad campaign spec, settings file or argument
    ├── AtlasAPIError          the Atlas API answered with an error (status kept)
    │   ├── AuthenticationError    401/403: key missing, invalid or lacking permission
    │   └── NetworkUnavailable     the server's name does not resolve (offline, DNS, proxy)
    ├── BudgetExceeded         a plan or submission would spend more credits than allowed
    │   └── InsufficientCredits    the Atlas account balance cannot pay for the plan
    ├── RawSocketPermission    raw sockets are not permitted (not root, no CAP_NET_RAW)
    ├── TargetRefused          a target is private/reserved/multicast or does not resolve
    ├── StoreError             the campaign store is unreadable or inconsistent
    └── InputFormatError       input that is not a supported traceroute format (line named)

Foreign errors (cousteau/requests, scapy, OS errors) are translated into these at one
boundary each, with ``raise ... from exc``. Messages never contain the Atlas API key.
"""

from __future__ import annotations

__all__ = [
    "ProbeError",
    "ConfigError",
    "AtlasAPIError",
    "AuthenticationError",
    "NetworkUnavailable",
    "BudgetExceeded",
    "InsufficientCredits",
    "RawSocketPermission",
    "TargetRefused",
    "StoreError",
    "InputFormatError",
]


class ProbeError(Exception):
    """Root of every error raised by :mod:`probes`."""


class ConfigError(ProbeError):
    """A campaign spec, settings file or argument is invalid."""


class AtlasAPIError(ProbeError):
    """The RIPE Atlas API answered with an error."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthenticationError(AtlasAPIError):
    """The API key is missing, invalid, or not allowed to do this (HTTP 401/403)."""


class NetworkUnavailable(AtlasAPIError):
    """The server's host name does not resolve: no request was sent (offline, DNS or proxy).

    Not retried (a resolver failure does not heal in seconds); the CLI exits with
    :data:`EXIT_NETWORK`.
    """


#: Exit code of ``pathexp`` when the network is unavailable (2: any other error).
EXIT_NETWORK = 3


class BudgetExceeded(ProbeError):
    """A plan or submission would spend more credits than the budget allows."""


class InsufficientCredits(BudgetExceeded):
    """The Atlas account does not hold enough credits for the requested measurements."""


class RawSocketPermission(ProbeError):
    """Raw sockets are not permitted for this process."""


class TargetRefused(ProbeError):
    """A traceroute target is refused: private/reserved/multicast, or unresolvable."""


class StoreError(ProbeError):
    """The campaign store is unreadable or inconsistent."""


class InputFormatError(ProbeError):
    """Input is not a supported traceroute format; the message names the line."""
