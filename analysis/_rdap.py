"""The RDAP fallback (ipwhois), used only when annotation runs with ``online=True``.

Results are cached on disk (one JSON file per address under ``<cache>/rdap/``) and calls
are spaced by ``min_interval`` seconds. ipwhois errors are translated here, at one
boundary: a failed lookup returns None (counted by the annotator as ``rdap-failed``).

Every lookup is bounded: ipwhois has only a per-read timeout (a server that drips bytes
holds it forever) and waits up to its ``rate_limit_timeout`` on HTTP 429, so the lookup
runs in a daemon thread that is abandoned after ``deadline`` seconds (the lookup then
failed, and a warning says so), with ipwhois's own rate-limit wait capped below it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from analysis.datasets import cache_root
from probes.fileio import write_json

__all__ = ["RdapClient"]

log = logging.getLogger(__name__)


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
    deadline : float
        Longest time one lookup may take, retries and rate-limit waits included.
    asn_methods : list of str, optional
        ipwhois's ASN look-up methods (default: its own, DNS first).
    """

    def __init__(
        self,
        *,
        cache_dir: str | Path | None = None,
        min_interval: float = 1.0,
        timeout: int = 10,
        proxy_opener: Any = None,
        deadline: float = 60.0,
        asn_methods: list[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.dir = cache_root(cache_dir) / "rdap"
        self.min_interval = min_interval
        self.timeout = timeout
        self.proxy_opener = proxy_opener
        self.deadline = deadline
        self.asn_methods = asn_methods
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
        from ipwhois.exceptions import BaseIpwhoisException, IPDefinedError

        box: dict[str, Any] = {}
        worker = threading.Thread(target=self._query, args=(address, box), daemon=True,
                                  name=f"rdap-{address}")
        worker.start()
        worker.join(self.deadline)
        if worker.is_alive():  # abandoned: a daemon thread, it cannot hold the process
            log.warning("RDAP lookup of %s gave no answer within %g s; counted as failed", address, self.deadline)
            return None
        exc = box.get("error")
        if isinstance(exc, IPDefinedError):
            out: dict = {"asn": None, "country": None, "cidr": None}
            write_json(p, out)
            return out
        if isinstance(exc, (BaseIpwhoisException, OSError, ValueError)):
            return None
        if exc is not None:
            raise exc
        res = box["result"]
        asn_field = str(res.get("asn") or "").split()
        asn = int(asn_field[0]) if asn_field and asn_field[0].isdigit() else None
        out = {"asn": asn, "country": res.get("asn_country_code"), "cidr": res.get("asn_cidr")}
        write_json(p, out)
        return out

    def _query(self, address: str, box: dict[str, Any]) -> None:
        """The ipwhois call, in the worker thread: its answer or its exception into ``box``."""
        from ipwhois import IPWhois

        try:
            box["result"] = IPWhois(address, timeout=self.timeout, proxy_opener=self.proxy_opener).lookup_rdap(
                depth=0, retry_count=1, rate_limit_timeout=int(max(1, min(30, self.deadline / 2))),
                asn_methods=self.asn_methods)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc
