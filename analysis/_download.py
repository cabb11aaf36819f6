"""Download reference data from the public sources (online users only; never at import).

Every download goes to a temporary folder under the cache root and is then imported with
:func:`analysis.datasets.import_files`, so fetched and hand-imported data are stored alike.
The base URLs and the HTTP session are parameters (tests or mirrors can point elsewhere).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from analysis.datasets import Snapshot, cache_root, import_files
from analysis.errors import DatasetFormatError, MissingReferenceData

__all__ = ["fetch", "FETCH_KINDS", "SOURCES", "RIR_URLS", "PEERINGDB_TYPES"]

#: The kinds :func:`fetch` downloads (the others are imported from files a user has).
FETCH_KINDS = ("pfx2as", "peeringdb", "caida-ixp", "as2org", "rir-delegated")

SOURCES = {
    "pfx2as-v4": "https://publicdata.caida.org/datasets/routing/routeviews-prefix2as/",
    "pfx2as-v6": "https://publicdata.caida.org/datasets/routing/routeviews6-prefix2as/",
    "as2org": "https://publicdata.caida.org/datasets/as-organizations/",
    "caida-ixp": "https://publicdata.caida.org/datasets/ixps/",
    "peeringdb": "https://www.peeringdb.com/api/",
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


def _session(session: Any) -> Any:
    if session is not None:
        return session
    import requests

    s = requests.Session()
    s.headers["User-Agent"] = "pathexp (+https://github.com/; reference-data fetch)"
    return s


def _get(session: Any, url: str, **kw: Any) -> Any:
    import requests

    try:
        r = session.get(url, timeout=120, **kw)
    except requests.RequestException as exc:
        raise MissingReferenceData(f"could not download {url}: {exc}") from exc
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


def _download(session: Any, url: str, dest: Path) -> Path:
    r = _get(session, url)
    dest.write_bytes(r.content)
    return dest


def fetch(
    kind: str,
    *,
    snapshot_id: str | None = None,
    cache_dir: str | Path | None = None,
    date: str | None = None,
    rirs: Sequence[str] | None = None,
    session: Any = None,
    api_key: str | None = None,
    sources: dict[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Snapshot:
    """Download one source kind and import it into a snapshot.

    Parameters
    ----------
    kind : str
        ``pfx2as`` (v4 + v6), ``as2org``, ``caida-ixp``, ``rir-delegated``, ``peeringdb``.
    date : str, optional
        ``YYYY-MM-DD`` / ``YYYYMM`` to pick a dated CAIDA file; default the newest.
    rirs : sequence of str, optional
        Registries for ``rir-delegated`` (default all five).
    api_key : str, optional
        PeeringDB API key (default env ``PEERINGDB_API_KEY``); raises the rate limit.
    sources : dict, optional
        Base URLs overriding :data:`SOURCES` / :data:`RIR_URLS` (mirrors, tests).
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
                log = _get(s, base + "pfx2as-creation.log").text
                rel = _newest(log, r"\S+\.pfx2as\.gz", date)
                paths.append(_download(s, base + rel, tmp / f"{fam}-{Path(rel).name}"))
            url = src["pfx2as-v4"]
        elif kind == "as2org":
            listing = _get(s, src["as2org"]).text
            name = _newest(listing, r"\d{8}\.as-org2info\.(?:txt|jsonl)\.gz", date)
            paths.append(_download(s, src["as2org"] + name, tmp / name))
            url = src["as2org"] + name
        elif kind == "caida-ixp":
            listing = _get(s, src["caida-ixp"]).text
            name = _newest(listing, r"ixs_\d{6}\.jsonl", date)
            paths.append(_download(s, src["caida-ixp"] + name, tmp / name))
            url = src["caida-ixp"] + name
        elif kind == "rir-delegated":
            for rir in rirs or sorted(RIR_URLS):
                if rir not in RIR_URLS and rir not in src:
                    raise DatasetFormatError(f"unknown RIR {rir!r}; known: {', '.join(RIR_URLS)}")
                u = src[rir]
                paths.append(_download(s, u, tmp / Path(u).name))
            url = ", ".join(src[r] for r in (rirs or sorted(RIR_URLS)))
        elif kind == "peeringdb":
            paths = _fetch_peeringdb(s, src["peeringdb"], tmp, api_key=api_key, sleep=sleep)
            url = src["peeringdb"]
        else:
            raise DatasetFormatError(f"kind {kind!r} cannot be fetched; import the files with `pathexp datasets import`")
        return import_files(kind, paths, snapshot_id=snapshot_id, cache_dir=cache_dir, replace=True, source_url=url)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fetch_peeringdb(
    s: Any, base: str, tmp: Path, *, api_key: str | None, sleep: Callable[[float], None]
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
                r = s.get(url, headers=headers, timeout=120)
                if r.status_code != 429:
                    break
                sleep(float(r.headers.get("Retry-After", 60)))
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
