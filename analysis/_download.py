"""Download reference data from the public sources (online users only; never at import).

Every download goes to a temporary folder under the cache root and is then imported with
:func:`analysis.datasets.import_files`, so fetched and hand-imported data are stored alike.
The base URLs and the HTTP session are parameters (tests or mirrors can point elsewhere).

Every request is bounded (:class:`Limits`): an overall deadline from connect to the last
body byte and a body-size cap (:func:`probes.bounded_http.read_body`; a server that drips bytes
or never ends its body cannot hold a fetch), and PeeringDB's ``Retry-After`` waits are
logged when long and capped (a longer one ends the fetch with a message saying when to
retry).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.datasets import Snapshot, cache_root, import_files
from analysis.errors import DatasetFormatError, MissingReferenceData

__all__ = ["fetch", "FETCH_KINDS", "Limits", "SOURCES", "RIR_URLS", "PEERINGDB_TYPES", "mrt_urls"]

log = logging.getLogger(__name__)

#: The kinds :func:`fetch` downloads (the others are imported from files a user has).
FETCH_KINDS = ("pfx2as", "peeringdb", "caida-ixp", "as2org", "rir-delegated", "mrt")

SOURCES = {
    "pfx2as-v4": "https://publicdata.caida.org/datasets/routing/routeviews-prefix2as/",
    "pfx2as-v6": "https://publicdata.caida.org/datasets/routing/routeviews6-prefix2as/",
    "as2org": "https://publicdata.caida.org/datasets/as-organizations/",
    "caida-ixp": "https://publicdata.caida.org/datasets/ixps/",
    "peeringdb": "https://www.peeringdb.com/api/",
    "ris": "https://data.ris.ripe.net/",
    "routeviews": "https://archive.routeviews.org/",
}
RIR_URLS = {
    "afrinic": "https://ftp.afrinic.net/pub/stats/afrinic/delegated-afrinic-extended-latest",
    "apnic": "https://ftp.apnic.net/stats/apnic/delegated-apnic-extended-latest",
    "arin": "https://ftp.arin.net/pub/stats/arin/delegated-arin-extended-latest",
    "lacnic": "https://ftp.lacnic.net/pub/stats/lacnic/delegated-lacnic-extended-latest",
    "ripencc": "https://ftp.ripe.net/pub/stats/ripencc/delegated-ripencc-extended-latest",
}
PEERINGDB_TYPES = ("ix", "ixlan", "ixpfx", "netixlan", "fac", "ixfac", "netfac", "net", "org")

#: Anonymous PeeringDB API limit is 20 requests/minute; stay under it.
PEERINGDB_ANON_INTERVAL = 3.1
PEERINGDB_KEY_INTERVAL = 1.0
PEERINGDB_PAGE = 250


@dataclass(frozen=True)
class Limits:
    """Bounds on every download request.

    ``deadline``: seconds from connect to the last body byte of one request;
    ``read_timeout``: seconds one socket read may wait; ``max_bytes``: largest body read;
    ``max_retry_after``: longest ``Retry-After`` honoured (longer ends the fetch);
    ``loud_wait``: waits this long or longer are logged before they start.
    """

    deadline: float = 600.0
    read_timeout: float = 60.0
    max_bytes: int = 1024 * 1024 * 1024
    max_retry_after: float = 120.0
    loud_wait: float = 5.0


def _session(session: Any) -> Any:
    if session is not None:
        return session
    import requests

    s = requests.Session()
    s.headers["User-Agent"] = "pathexp (+https://github.com/; reference-data fetch)"
    return s


def _request(session: Any, url: str, limits: Limits, **kw: Any) -> Any:
    """GET ``url`` within ``limits`` (the whole body read); any status is returned."""
    import requests

    from probes.bounded_http import name_unresolved, read_body
    from probes.errors import NetworkUnavailable

    started = time.monotonic()
    per_read = min(limits.read_timeout, limits.deadline)
    try:
        r = session.get(url, timeout=(per_read, per_read), stream=True, **kw)
        read_body(r, started=started, deadline=limits.deadline, timeout=per_read,
                  max_bytes=limits.max_bytes, settings="download")
    except requests.RequestException as exc:
        if name_unresolved(exc):
            host = urllib.parse.urlsplit(url).hostname
            raise NetworkUnavailable(
                f"could not download {url}: the name {host} does not resolve (no DNS answer); offline? "
                "Check the network or DNS, set HTTPS_PROXY if you need a proxy, or import local files "
                "with `pathexp datasets import`") from None
        raise MissingReferenceData(f"could not download {url}: {type(exc).__name__}: {exc}") from exc
    return r


def _get(session: Any, url: str, limits: Limits, **kw: Any) -> Any:
    r = _request(session, url, limits, **kw)
    if r.status_code != 200:
        raise MissingReferenceData(f"could not download {url}: HTTP {r.status_code}")
    return r


def _newest(listing: str, pattern: str, date: str | None) -> str:
    names = sorted(set(re.findall(pattern, listing)))
    if date:
        want = date.replace("-", "")
        names = [n for n in names if want in n.replace("-", "")]
    if not names:
        raise MissingReferenceData(f"no file matching {pattern!r}" + (f" for {date}" if date else ""))
    return names[-1]


def mrt_urls(collector: str, day: str, start: str, end: str, *, rib: bool = False,
             sources: dict[str, str] | None = None) -> list[str]:
    """The archive files of one BGP collector between ``start`` and ``end`` (``HH:MM``, UTC) of ``day``.

    RIPE RIS collectors (``rrc00`` ... ``rrc26``): updates every 5 minutes
    (``<base>rrcNN/YYYY.MM/updates.YYYYMMDD.HHMM.gz``), RIB dumps (``bview``) every 8 hours.
    RouteViews collectors (``route-views2``, ``route-views.linx``, ...): updates every 15
    minutes (``<base>[<collector>/]bgpdata/YYYY.MM/UPDATES/updates.YYYYMMDD.HHMM.bz2``), RIBs
    every 2 hours (``RIBS/rib.…``). A file is named by the start of the interval it covers;
    those starting in ``[start, end)`` are listed.

    >>> mrt_urls("rrc24", "2020-08-09", "03:20", "03:35")  # doctest: +NORMALIZE_WHITESPACE
    ['https://data.ris.ripe.net/rrc24/2020.08/updates.20200809.0320.gz',
     'https://data.ris.ripe.net/rrc24/2020.08/updates.20200809.0325.gz',
     'https://data.ris.ripe.net/rrc24/2020.08/updates.20200809.0330.gz']
    >>> mrt_urls("route-views2", "2020-08-09", "00:00", "04:00", rib=True)  # doctest: +NORMALIZE_WHITESPACE
    ['https://archive.routeviews.org/bgpdata/2020.08/RIBS/rib.20200809.0000.bz2',
     'https://archive.routeviews.org/bgpdata/2020.08/RIBS/rib.20200809.0200.bz2']
    """
    import datetime as dt

    src = {**SOURCES, **(sources or {})}
    try:
        d = dt.date.fromisoformat(day)
        t0, t1 = (dt.datetime.combine(d, dt.time.fromisoformat(x), dt.timezone.utc) for x in (start, end))
    except ValueError as exc:
        raise DatasetFormatError(f"BGP archive window: {exc} (date YYYY-MM-DD, times HH:MM)") from None
    if t1 <= t0:
        raise DatasetFormatError(f"BGP archive window: {end} is not after {start}")
    ris = re.fullmatch(r"rrc\d\d", collector) is not None
    if not ris and not collector.startswith("route-views"):
        raise DatasetFormatError(f"unknown BGP collector {collector!r}: RIS rrcNN or RouteViews route-views*")
    step = (8 * 3600 if rib else 300) if ris else (2 * 3600 if rib else 900)
    first = int(t0.timestamp()) + (-int(t0.timestamp())) % step
    out = []
    for ts in range(first, int(t1.timestamp()), step):
        t = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
        stamp, month = t.strftime("%Y%m%d.%H%M"), t.strftime("%Y.%m")
        if ris:
            out.append(f"{src['ris']}{collector}/{month}/{'bview' if rib else 'updates'}.{stamp}.gz")
        else:
            where = "" if collector == "route-views2" else f"{collector}/"
            kind = f"RIBS/rib.{stamp}" if rib else f"UPDATES/updates.{stamp}"
            out.append(f"{src['routeviews']}{where}bgpdata/{month}/{kind}.bz2")
    return out


def _download(session: Any, url: str, dest: Path, limits: Limits) -> Path:
    r = _get(session, url, limits)
    dest.write_bytes(r.content)
    return dest


def fetch(
    kind: str,
    *,
    snapshot_id: str | None = None,
    cache_dir: str | Path | None = None,
    date: str | None = None,
    rirs: Sequence[str] | None = None,
    collector: str | None = None,
    window: tuple[str, str] = ("00:00", "00:15"),
    rib: bool = False,
    session: Any = None,
    api_key: str | None = None,
    sources: dict[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    limits: Limits = Limits(),
) -> Snapshot:
    """Download one source kind and import it into a snapshot.

    Parameters
    ----------
    kind : str
        ``pfx2as`` (v4 + v6), ``as2org``, ``caida-ixp``, ``rir-delegated``, ``peeringdb``, ``mrt``.
    date : str, optional
        ``YYYY-MM-DD`` / ``YYYYMM`` to pick a dated CAIDA file; default the newest.
    rirs : sequence of str, optional
        Registries for ``rir-delegated`` (default all five).
    collector, window, rib
        ``mrt``: the BGP collector (RIS ``rrcNN`` or RouteViews ``route-views*``), the
        ``(HH:MM, HH:MM)`` window of ``date`` (UTC) and whether to take RIB dumps instead of
        updates (:func:`mrt_urls`). Files the archive does not have (404) are skipped and
        logged; none at all is an error.
    api_key : str, optional
        PeeringDB API key (default env ``PEERINGDB_API_KEY``); raises the rate limit.
    sources : dict, optional
        Base URLs overriding :data:`SOURCES` / :data:`RIR_URLS` (mirrors, tests).
    limits : Limits
        Deadline, body cap and longest ``Retry-After`` of every request.
    """
    src = {**SOURCES, **RIR_URLS, **(sources or {})}
    s = _session(session)
    root = cache_root(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=root))
    try:
        paths: list[Path] = []
        if kind == "pfx2as":
            for fam, base in (("v4", src["pfx2as-v4"]), ("v6", src["pfx2as-v6"])):
                creation = _get(s, base + "pfx2as-creation.log", limits).text
                rel = _newest(creation, r"\S+\.pfx2as\.gz", date)
                paths.append(_download(s, base + rel, tmp / f"{fam}-{Path(rel).name}", limits))
            url = src["pfx2as-v4"]
        elif kind == "as2org":
            listing = _get(s, src["as2org"], limits).text
            name = _newest(listing, r"\d{8}\.as-org2info\.(?:txt|jsonl)\.gz", date)
            paths.append(_download(s, src["as2org"] + name, tmp / name, limits))
            url = src["as2org"] + name
        elif kind == "caida-ixp":
            listing = _get(s, src["caida-ixp"], limits).text
            name = _newest(listing, r"ixs_\d{6}\.jsonl", date)
            paths.append(_download(s, src["caida-ixp"] + name, tmp / name, limits))
            url = src["caida-ixp"] + name
        elif kind == "rir-delegated":
            for rir in rirs or sorted(RIR_URLS):
                if rir not in RIR_URLS and rir not in src:
                    raise DatasetFormatError(f"unknown RIR {rir!r}; known: {', '.join(RIR_URLS)}")
                u = src[rir]
                paths.append(_download(s, u, tmp / Path(u).name, limits))
            url = ", ".join(src[r] for r in (rirs or sorted(RIR_URLS)))
        elif kind == "mrt":
            if not collector or not date:
                raise DatasetFormatError("fetching BGP data needs a collector (--collector rrc24) and a date")
            urls = mrt_urls(collector, date, *window, rib=rib, sources=src)
            missing = []
            for u in urls:
                r = _request(s, u, limits)
                if r.status_code == 404:
                    missing.append(u)
                    continue
                if r.status_code != 200:
                    raise MissingReferenceData(f"could not download {u}: HTTP {r.status_code}")
                p = tmp / u.rsplit("/", 1)[1]
                p.write_bytes(r.content)
                paths.append(p)
            if missing:
                log.warning("%d of %d %s files are not in the archive: %s", len(missing), len(urls), collector,
                            ", ".join(m.rsplit("/", 1)[1] for m in missing))
            if not paths:
                raise MissingReferenceData(f"none of the {len(urls)} {collector} files of {date} "
                                           f"{window[0]}-{window[1]} is in the archive (first: {urls[0] if urls else '-'})")
            url = urls[0].rsplit("/", 1)[0] + "/"
        elif kind == "peeringdb":
            paths = _fetch_peeringdb(s, src["peeringdb"], tmp, api_key=api_key, sleep=sleep, limits=limits)
            if not paths:
                raise MissingReferenceData(f"PeeringDB at {src['peeringdb']} returned no objects of any type "
                                           f"({', '.join(PEERINGDB_TYPES)})")
            url = src["peeringdb"]
        else:
            raise DatasetFormatError(f"kind {kind!r} cannot be fetched; import the files with `pathexp datasets import`")
        return import_files(kind, paths, snapshot_id=snapshot_id, cache_dir=cache_dir, replace=True, source_url=url)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fetch_peeringdb(
    s: Any, base: str, tmp: Path, *, api_key: str | None, sleep: Callable[[float], None], limits: Limits
) -> list[Path]:
    """Page through each object type (``limit``/``skip``), respecting the rate limit and 429s."""
    key = api_key or os.environ.get("PEERINGDB_API_KEY")
    headers = {"Authorization": f"Api-Key {key}"} if key else {}
    interval = PEERINGDB_KEY_INTERVAL if key else PEERINGDB_ANON_INTERVAL
    out = []
    first = True
    for obj in PEERINGDB_TYPES:
        skip, page = 0, 1
        while True:
            if not first:
                sleep(interval)
            first = False
            url = f"{base}{obj}?limit={PEERINGDB_PAGE}&skip={skip}&depth=0"
            for _attempt in range(5):
                r = _request(s, url, limits, headers=headers)
                if r.status_code != 429:
                    break
                sleep(_retry_wait(url, r.headers.get("Retry-After"), limits))
            if r.status_code != 200:
                raise MissingReferenceData(f"could not download {url}: HTTP {r.status_code}")
            rows = r.json().get("data", [])
            if not rows:
                break
            p = tmp / f"{obj}-page-{page}.json"
            p.write_bytes(r.content)
            out.append(p)
            if len(rows) < PEERINGDB_PAGE:
                break
            skip += PEERINGDB_PAGE
            page += 1
    return out


def _retry_wait(url: str, header: str | None, limits: Limits) -> float:
    """Seconds to wait after a 429: its ``Retry-After`` (60 s without one), logged when long.

    A wait above ``limits.max_retry_after`` ends the fetch with one line saying when to retry.
    """
    from probes.bounded_http import parse_retry_after

    wait = parse_retry_after(header)
    wait = 60.0 if wait is None else max(0.0, wait)
    if wait > limits.max_retry_after:
        raise MissingReferenceData(
            f"could not download {url}: the server asks to wait {wait:g} s (HTTP 429, Retry-After), "
            f"longer than the {limits.max_retry_after:g} s pathexp waits; retry after "
            f"{time.strftime('%H:%M:%S', time.localtime(time.time() + wait))}")
    if wait >= limits.loud_wait:
        log.warning("%s: rate-limited (HTTP 429); waiting %g s as the server asks (Retry-After)", url, wait)
    return wait
