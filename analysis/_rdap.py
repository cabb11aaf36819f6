"""The RDAP fallback (ipwhois), used only when annotation runs with ``online=True``.

Results are cached on disk (one JSON file per address under ``<cache>/rdap/``) and calls
are spaced by ``min_interval`` seconds. ipwhois errors are translated here, at one
boundary: a failed lookup returns None (counted by the annotator as ``rdap-failed``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from analysis.datasets import cache_root
from probes.fileio import write_json

__all__ = ["RdapClient"]


class RdapClient:
    """Rate-limited, disk-cached RDAP lookups of single addresses.

    Parameters
    ----------
    cache_dir : path, optional
        Cache root (``<cache>/rdap/`` holds the answers).
    min_interval : float
        Seconds between two network lookups.
    proxy_opener : urllib.request.OpenerDirector, optional
        Passed to ipwhois (e.g. to go through a proxy).
    """

    def __init__(
        self,
        *,
        cache_dir: str | Path | None = None,
        min_interval: float = 1.0,
        timeout: int = 10,
        proxy_opener: Any = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.dir = cache_root(cache_dir) / "rdap"
        self.min_interval = min_interval
        self.timeout = timeout
        self.proxy_opener = proxy_opener
        self._clock = clock
        self._sleep = sleep
        self._last = float("-inf")

    def _path(self, address: str) -> Path:
        return self.dir / (address.replace(":", "_") + ".json")

    def lookup(self, address: str) -> dict | None:
        """``{"asn": int | None, "country": str | None, "cidr": str | None}`` or None on failure."""
        p = self._path(address)
        if p.is_file():
            return orjson.loads(p.read_bytes())
        wait = self._last + self.min_interval - self._clock()
        if wait > 0:
            self._sleep(wait)
        self._last = self._clock()
        from ipwhois import IPWhois
        from ipwhois.exceptions import BaseIpwhoisException, IPDefinedError

        try:
            res = IPWhois(address, timeout=self.timeout, proxy_opener=self.proxy_opener).lookup_rdap(depth=0)
        except IPDefinedError:
            out: dict = {"asn": None, "country": None, "cidr": None}
            write_json(p, out)
            return out
        except (BaseIpwhoisException, OSError, ValueError):
            return None
        asn_field = str(res.get("asn") or "").split()
        asn = int(asn_field[0]) if asn_field and asn_field[0].isdigit() else None
        out = {"asn": asn, "country": res.get("asn_country_code"), "cidr": res.get("asn_cidr")}
        write_json(p, out)
        return out
