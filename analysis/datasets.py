"""Versioned reference datasets: import public files into pinned, fast-loading snapshots.

A *snapshot* is a folder in the cache directory holding one sub-folder per source kind::

    <cache>/snapshots/<snapshot id>/
        snapshot.json                  id, created, updated, digest, kinds
        pfx2as/manifest.json           source files (name, sha256, bytes), data date, rows, drops
        pfx2as/source/<file>           the imported files, byte for byte
        pfx2as/prefixes.parquet        parsed rows, canonical order
        pfx2as/intervals_v4.parquet    disjoint LPM intervals (start words -> owner row)
        pfx2as/intervals_v6.parquet
        peeringdb/...  caida-ixp/...  as2org/...  rir-delegated/...  pch-subnets/...  pch-membership/...
        ip2country/ranges.parquet      inclusive ranges -> country, + intervals_v4/v6.parquet
        ipmap/addresses.parquet        one geolocated router address per row (exact match)

The cache directory is, in order: the ``cache_dir=`` argument, the ``PATHEXP_CACHE_DIR``
environment variable, ``platformdirs.user_cache_dir("pathexp")``. Several imports build one
snapshot (the default snapshot id is today's UTC date); :func:`latest_snapshot` is the one
updated last. The ``digest`` of a snapshot is the sha256 over its manifests' source hashes,
so an annotation that records ``(id, digest)`` is reproducible.

Kinds (:data:`KINDS`): ``pfx2as`` (CAIDA RouteViews prefix2as, v4 and v6), ``peeringdb``
(API v2 JSON, one object type per file, or a dump), ``caida-ixp`` (ixs jsonl),
``pch-subnets``, ``pch-membership``, ``as2org`` (CAIDA as-org2info, pipe or JSONL),
``rir-delegated`` (delegated / delegated-extended), ``ip2country`` (iptoasn.com
``ip2country-v4.tsv`` / ``-v6.tsv``: range start, range end, country; the source of
US-registered space, since no ARIN delegation file is at hand), ``ipmap`` (RIPE IPmap
router geolocations CSV: ip, city, country code, lat, lon, score), ``as-rel`` (CAIDA AS
relationships, serial-1 ``a|b|rel`` or serial-2 ``a|b|rel|source``: table ``links``),
``as-siblings`` (sibling groups, one organisation per line: table ``groups``), ``asnames``
(AS names: table ``names``, shown where no as2org organisation is known), ``mrt`` (BGP
RIB dumps and update files, MRT, read with mrtparse) and ``bgpdump`` (``bgpdump -m`` text):
table ``routes``, one row per announced, withdrawn or RIB prefix with its peer and AS path;
``vrp`` (RPKI validated ROA payloads, rpki-client / Routinator CSV or JSON, Cloudflare
``rpki.json``): table ``vrps``. Every reader sets
aside and counts, by reason, each record it cannot use (``manifest.json`` ``dropped``).
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from analysis import _lpm
from analysis._readers import READERS as _READERS_ADDR
from analysis._readers import decompress
from analysis._readers_bgp import READERS_BGP
from analysis._readers_rel import READERS_REL
from analysis.errors import DatasetFormatError, MissingReferenceData
from probes.fileio import write_json, write_parquet

#: kind -> reader: the address-level kinds and the AS-level ones (relationships, siblings).
READERS = {**_READERS_ADDR, **READERS_REL, **READERS_BGP}
KINDS = tuple(READERS)

__all__ = [
    "KINDS",
    "Snapshot",
    "compose_snapshot",
    "cache_root",
    "import_files",
    "list_snapshots",
    "latest_snapshot",
    "load_snapshot",
]

#: Bumped when the stored layout of a kind changes (old snapshots must be re-imported).
FORMAT_VERSION = 1

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The reference-data cache directory (argument, then ``PATHEXP_CACHE_DIR``, then platformdirs)."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("PATHEXP_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("pathexp"))


def _snapshots_dir(cache_dir: str | Path | None) -> Path:
    return cache_root(cache_dir) / "snapshots"


def _data_date(names: Sequence[str]) -> str | None:
    """The data's own date when the file names carry one (``2020-02``, ``20231101``, ``202310``)."""
    dates = []
    for n in names:
        m = re.search(r"(?<!\d)(19|20)(\d{2})-?(\d{2})(?:-?(\d{2}))?(?!\d)", Path(n).name)
        if m:
            y, mo, d = m.group(1) + m.group(2), m.group(3), m.group(4)
            if 1 <= int(mo) <= 12 and (d is None or 1 <= int(d) <= 31):
                dates.append(f"{y}-{mo}" + (f"-{d}" if d else ""))
    return max(dates) if dates else None


_CONTENT_DATES = {
    # CAIDA AS relationships: one "# source:topology|BGP|YYYYMMDD|..." line per day of input
    "as-rel": re.compile(rb"^# source:[^|\n]*\|[^|\n]*\|((?:19|20)\d{6})\|", re.M),
    # CAIDA IXP dataset: a "# {"date": "YYYY.MM.DD hh:mm:ss", ...}" header
    "caida-ixp": re.compile(rb'^#.*"date":\s*"((?:19|20)\d\d[.-]\d\d[.-]\d\d)', re.M),
    # RIR delegation stats: the version line "version|registry|serial|records|startdate|enddate|..."
    "rir-delegated": re.compile(rb"^\d+(?:\.\d+)?\|[a-z]+\|[^|\n]*\|[^|\n]*\|[^|\n]*\|((?:19|20)\d{6})\|", re.M),
    # PeeringDB API objects: the newest "updated" time
    "peeringdb": re.compile(rb'"updated"\s*:\s*"((?:19|20)\d\d-\d\d-\d\d)'),
    # VRP exports: rpki-client's "buildtime", Routinator's "generatedTime", or a "generated"
    # Unix time (Routinator, the Cloudflare rpki.json shape)
    "vrp": re.compile(rb'"(?:buildtime|generatedTime)"\s*:\s*"((?:19|20)\d\d-\d\d-\d\d)'
                      rb'|"generated"\s*:\s*(\d{9,10})\b'),
}


def _content_date(kind: str, files: Sequence[tuple[str, bytes]]) -> str | None:
    r"""The data's own date written in the files (``YYYY-MM-DD``), where the format has one.

    The newest date found: the last day of input of an AS-relationships file, the build
    date of a CAIDA IXP file, the end date of a delegation file's version line, the newest
    ``updated`` of PeeringDB objects, the build or generation time of a VRP export. None for formats without one (the file name is used then).

    >>> _content_date("rir-delegated", [("x", b"# c\n2|apnic|20260618|85300|19830613|20260617|+1000\n")])
    '2026-06-17'
    >>> _content_date("peeringdb", [("p", b'[{"updated": "2020-03-06T19:27:03Z"}, {"updated": "2022-10-05T01:00:00Z"}]')])
    '2022-10-05'
    >>> _content_date("vrp", [("c", b'{"metadata": {"generated": 1583020800}, "roas": []}')])
    '2020-03-01'
    """
    rx = _CONTENT_DATES.get(kind)
    if rx is None:
        return None
    found = [m.group(1).decode().replace(".", "-") if m.group(1) else
             _dt.datetime.fromtimestamp(int(m.group(2)), _dt.timezone.utc).strftime("%Y-%m-%d")
             for _, data in files for m in rx.finditer(data)]
    dates = [f"{d[:4]}-{d[4:6]}-{d[6:8]}" if "-" not in d else d for d in found]
    ok = [d for d in dates if 1 <= int(d[5:7]) <= 12 and 1 <= int(d[8:10]) <= 31]
    return max(ok) if ok else None


@dataclass
class Snapshot:
    """A pinned set of reference data. Tables load lazily and are cached on the object.

    Attributes
    ----------
    id : str
        The snapshot id (folder name).
    path : pathlib.Path
        The snapshot folder.
    info : dict
        The parsed ``snapshot.json``.
    """

    id: str
    path: Path
    info: dict
    _tables: dict = field(default_factory=dict, repr=False)

    @property
    def kinds(self) -> list[str]:
        return sorted(k for k in KINDS if (self.path / k / "manifest.json").is_file())

    @property
    def digest(self) -> str:
        return str(self.info.get("digest", ""))

    def manifest(self, kind: str) -> dict:
        p = self.path / kind / "manifest.json"
        if not p.is_file():
            raise MissingReferenceData(
                f"snapshot {self.id!r} has no {kind!r} data; run `pathexp datasets import --kind {kind} ...`"
            )
        return orjson.loads(p.read_bytes())

    def has(self, kind: str) -> bool:
        return (self.path / kind / "manifest.json").is_file()

    def table(self, kind: str, name: str) -> pa.Table:
        """One stored table of a kind (e.g. ``("pfx2as", "prefixes")``)."""
        key = (kind, name)
        if key not in self._tables:
            self.manifest(kind)
            p = self.path / kind / f"{name}.parquet"
            if not p.is_file():
                raise MissingReferenceData(f"snapshot {self.id!r}: {kind}/{name}.parquet is missing")
            self._tables[key] = pq.read_table(p)
        return self._tables[key]

    def intervals(self, kind: str, af: int) -> _lpm.Intervals:
        """The disjoint LPM intervals of a prefix kind for one address family."""
        return _lpm.Intervals.from_table(self.table(kind, f"intervals_v{af}"))


def _read_snapshot(path: Path) -> Snapshot:
    info_path = path / "snapshot.json"
    if not info_path.is_file():
        raise MissingReferenceData(f"{path} is not a snapshot (no snapshot.json)")
    return Snapshot(path.name, path, orjson.loads(info_path.read_bytes()))


def list_snapshots(*, cache_dir: str | Path | None = None) -> list[Snapshot]:
    """All snapshots in the cache, oldest update first."""
    root = _snapshots_dir(cache_dir)
    if not root.is_dir():
        return []
    snaps = [_read_snapshot(p) for p in sorted(root.iterdir()) if (p / "snapshot.json").is_file()]
    return sorted(snaps, key=lambda s: (s.info.get("updated", ""), s.id))


def latest_snapshot(*, cache_dir: str | Path | None = None) -> Snapshot:
    """The snapshot updated last (composed ones left out: :func:`compose_snapshot`).

    Raises :class:`MissingReferenceData` if there is none.
    """
    snaps = [s for s in list_snapshots(cache_dir=cache_dir) if not s.info.get("composed_from")]
    if not snaps:
        raise MissingReferenceData(
            f"no reference-data snapshot in {_snapshots_dir(cache_dir)}; "
            "run `pathexp datasets import --kind KIND PATH...` first"
        )
    return snaps[-1]


def load_snapshot(snapshot_id: str | None = None, *, cache_dir: str | Path | None = None) -> Snapshot:
    """A snapshot by id, or the latest one when ``snapshot_id`` is None."""
    if snapshot_id is None:
        return latest_snapshot(cache_dir=cache_dir)
    path = _snapshots_dir(cache_dir) / snapshot_id
    if not (path / "snapshot.json").is_file():
        known = [s.id for s in list_snapshots(cache_dir=cache_dir)]
        raise MissingReferenceData(f"no snapshot {snapshot_id!r} in {path.parent} (known: {known})")
    return _read_snapshot(path)


def compose_snapshot(choices: dict[str, str], *, cache_dir: str | Path | None = None) -> Snapshot:
    """A snapshot made of kinds taken from other snapshots (``kind -> snapshot id``).

    Its id is ``composed-`` and a digest of the choices, so the same choices give the same
    snapshot; the kinds' folders are hard-linked (copied where links are impossible) and
    ``snapshot.json`` records ``composed_from``. Composed snapshots are never the default
    (:func:`latest_snapshot`).
    """
    if not choices:
        raise MissingReferenceData("nothing to compose: no snapshot holds any reference-data kind")
    key = hashlib.sha256(orjson.dumps(dict(sorted(choices.items())))).hexdigest()[:12]
    root = _snapshots_dir(cache_dir)
    dst = root / f"composed-{key}"
    if (dst / "snapshot.json").is_file():
        return _read_snapshot(dst)
    tmp = root / f".composed-{key}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    for kind, snap_id in sorted(choices.items()):
        src = load_snapshot(snap_id, cache_dir=cache_dir).path / kind
        if not (src / "manifest.json").is_file():
            raise MissingReferenceData(f"snapshot {snap_id!r} has no {kind} data")

        def link(a: str, b: str) -> object:
            try:
                os.link(a, b)
            except OSError:
                shutil.copy2(a, b)
            return b

        shutil.copytree(src, tmp / kind, copy_function=link)
    write_json(tmp / "snapshot.json", {"created": _now(), "composed_from": dict(sorted(choices.items()))})
    try:
        os.replace(tmp, dst)
    except OSError:  # composed by another process meanwhile: theirs is the same
        shutil.rmtree(tmp, ignore_errors=True)
        return _read_snapshot(dst)
    return _write_snapshot_info(dst)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def import_files(
    kind: str,
    paths: Sequence[str | Path],
    *,
    snapshot_id: str | None = None,
    cache_dir: str | Path | None = None,
    replace: bool = False,
    source_url: str | None = None,
) -> Snapshot:
    """Import local files of one kind into a snapshot (created if needed).

    Parameters
    ----------
    kind : str
        One of :data:`KINDS`.
    paths : sequence of path
        The files (gzip / bz2 / xz compressed or plain); a folder stands for its files. For ``pfx2as`` pass the v4 and the
        v6 file together, or import them one after the other: files already in the
        snapshot's kind are kept unless ``replace``.
    snapshot_id : str, optional
        Target snapshot; default: today's UTC date (``YYYY-MM-DD``).
    cache_dir : path, optional
        Cache root (see :func:`cache_root`).
    replace : bool
        Drop the files previously imported for this kind in this snapshot.
    source_url : str, optional
        Where the files were downloaded from (recorded in the manifest).

    Returns
    -------
    Snapshot

    Raises
    ------
    DatasetFormatError
        A file does not parse as ``kind`` (the message names the file and line).
    """
    if kind not in READERS:
        raise DatasetFormatError(f"unknown dataset kind {kind!r}; known: {', '.join(KINDS)}")
    if not paths:
        raise DatasetFormatError(f"no files given for kind {kind!r}")
    snapshot_id = snapshot_id or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    if not _ID.fullmatch(snapshot_id):  # fullmatch: "$" would accept a trailing newline
        raise DatasetFormatError(f"invalid snapshot id {snapshot_id!r}")
    snap_dir = _snapshots_dir(cache_dir) / snapshot_id
    snap_dir.mkdir(parents=True, exist_ok=True)
    try:
        with _locked(snap_dir):  # concurrent imports into one snapshot take turns
            return _import_locked(kind, paths, snap_dir, replace=replace, source_url=source_url)
    except BaseException:
        # a failed first import leaves no empty snapshot behind (only its lock file and
        # the work folder are there: nothing another import has written)
        if not (snap_dir / "snapshot.json").exists() and all(
                p.name == ".lock" or p.name.endswith(".tmp") for p in snap_dir.iterdir()):
            shutil.rmtree(snap_dir, ignore_errors=True)
        raise


@contextmanager
def _locked(snap_dir: Path) -> Iterator[None]:
    import fcntl

    with open(snap_dir / ".lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _import_locked(
    kind: str, paths: Sequence[str | Path], snap_dir: Path, *, replace: bool, source_url: str | None
) -> Snapshot:
    kind_dir = snap_dir / kind
    old_sources: list[dict] = []
    if kind_dir.joinpath("manifest.json").is_file() and not replace:
        old_sources = orjson.loads(kind_dir.joinpath("manifest.json").read_bytes())["sources"]
    # read every input (old sources from the snapshot, new ones from the given paths)
    inputs: list[tuple[str, bytes, dict]] = []
    for src in old_sources:
        raw = (kind_dir / "source" / src["file"]).read_bytes()
        inputs.append((src["name"], raw, src))
    known = {s["sha256"] for s in old_sources}
    files_in: list[Path] = []
    for p in map(Path, paths):  # a folder stands for the files in it (e.g. PeeringDB pages)
        files_in.extend(sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")) if p.is_dir() else [p])
    for p in files_in:
        if not p.is_file():
            raise DatasetFormatError(f"{kind}: {p} is not a regular file (a device, pipe or socket)" if p.exists()
                                     else f"{kind}: no such file {p}")
        raw = p.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        if digest in known:
            continue
        known.add(digest)
        src = {"name": p.name, "sha256": digest, "bytes": len(raw), "file": f"{digest[:16]}-{p.name}"}
        if source_url:
            src["url"] = source_url
        inputs.append((p.name, raw, src))
    counts: Counter = Counter()
    files = []
    for name, raw, _ in inputs:
        try:
            files.append((name, decompress(raw)))
        except (OSError, EOFError, ValueError) as exc:
            raise DatasetFormatError(f"{name}: cannot decompress: {exc}") from exc
    try:
        tables = READERS[kind](files, counts)
    except DatasetFormatError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, csv.Error, pa.ArrowException) as exc:
        # the readers' foreign errors (csv, json, Arrow) become ours here, at one boundary
        names = ", ".join(n for n, _ in files)
        raise DatasetFormatError(f"{names}: not a valid {kind} file ({type(exc).__name__}: {exc})") from exc
    extra = _derived_tables(kind, tables)
    # write into a fresh folder, then swap it in
    tmp_dir = snap_dir / f".{kind}.tmp"
    if tmp_dir.exists():
        shutil.rmtree(tmp_dir)
    (tmp_dir / "source").mkdir(parents=True)
    for _name, raw, src in inputs:
        (tmp_dir / "source" / src["file"]).write_bytes(raw)
    rows = {}
    for tname, t in {**tables, **extra}.items():
        write_parquet(t, tmp_dir / f"{tname}.parquet")
        rows[tname] = t.num_rows
    content_date = _content_date(kind, files)
    name_date = _data_date([n for n, _, _ in inputs])
    manifest = {
        "kind": kind,
        "format_version": FORMAT_VERSION,
        "sources": sorted((s for _, _, s in inputs), key=lambda s: s["sha256"]),
        "date": content_date or name_date,
        "date_from": "content" if content_date else "file name" if name_date else None,
        "imported": _now(),
        "rows": rows,
        "dropped": dict(sorted((k, v) for k, v in counts.items() if v)),
    }
    write_json(tmp_dir / "manifest.json", manifest)
    if kind_dir.exists():
        shutil.rmtree(kind_dir)
    os.replace(tmp_dir, kind_dir)
    return _write_snapshot_info(snap_dir)


def _write_snapshot_info(snap_dir: Path) -> Snapshot:
    info_path = snap_dir / "snapshot.json"
    info = orjson.loads(info_path.read_bytes()) if info_path.is_file() else {"created": _now()}
    h = hashlib.sha256()
    kinds = {}
    for k in KINDS:
        mp = snap_dir / k / "manifest.json"
        if mp.is_file():
            m = orjson.loads(mp.read_bytes())
            kinds[k] = {"date": m["date"], "rows": m["rows"], "sources": [s["sha256"] for s in m["sources"]]}
            h.update(k.encode())
            for s in m["sources"]:
                h.update(s["sha256"].encode())
            h.update(str(m["format_version"]).encode())
    info.update({"id": snap_dir.name, "updated": _now(), "digest": h.hexdigest(), "kinds": kinds})
    write_json(info_path, info)
    return Snapshot(snap_dir.name, snap_dir, info)


def _derived_tables(kind: str, tables: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """The LPM interval tables of the prefix kinds, computed once at import."""
    out = {}
    if kind in ("pfx2as", "rir-delegated"):
        t = tables["prefixes"]
        af = t["af"].to_numpy()
        hi, lo, plen = t["hi"].to_numpy(), t["lo"].to_numpy(), t["plen"].to_numpy()
        for v, width in ((4, 32), (6, 128)):
            rows = np.flatnonzero(af == v)
            iv = _lpm.flatten(hi[rows], lo[rows], plen[rows], width=width)
            owner = np.where(iv.owner >= 0, rows[np.maximum(iv.owner, 0)], -1) if rows.size else iv.owner
            out[f"intervals_v{v}"] = _lpm.Intervals(iv.start_hi, iv.start_lo, owner).as_table()
    elif kind == "ip2country":
        t = tables["ranges"]
        af = t["af"].to_numpy()
        cols = [t[c].to_numpy() for c in ("start_hi", "start_lo", "end_hi", "end_lo")]
        for v, width in ((4, 32), (6, 128)):
            rows = np.flatnonzero(af == v)
            iv = _lpm.flatten_ranges(*(c[rows] for c in cols), width=width)
            owner = np.where(iv.owner >= 0, rows[np.maximum(iv.owner, 0)], -1) if rows.size else iv.owner
            out[f"intervals_v{v}"] = _lpm.Intervals(iv.start_hi, iv.start_lo, owner).as_table()
    return out
