"""Readers for BGP reference kinds: MRT files (``mrt``) and ``bgpdump -m`` text (``bgpdump``).

Same contract as :mod:`analysis._readers`: ``reader(files, counts) -> {table: Table}``,
``files`` are ``(name, bytes)`` pairs (compressed or not), every record set aside is
counted in ``counts`` by reason, and a file that is not of the declared kind raises
:class:`~analysis.errors.DatasetFormatError` naming the file.

Both kinds give table ``routes``, one row per (record, prefix), in file order:

==============  =====================  ================================================
column          type                   meaning
==============  =====================  ================================================
timestamp       timestamp[s, UTC]      record time (RIB entries: the dump's time)
peer_asn        int64                  the collector's BGP peer
peer_addr       string                 its address
prefix          string                 announced or withdrawn prefix (CIDR)
kind            string                 ``announce``, ``withdraw`` or ``rib``
as_path         list<int64>            AS path as announced (AS_SET members in order,
                                       flagged by ``as_set``); empty for withdrawals
origin_asn      int64                  last AS of the path (null: withdrawal, empty path,
                                       or a path ending in an AS_SET)
as_set          bool                   the path holds an AS_SET
source          string                 the imported file the row comes from
record          int64                  its record (MRT) or line (text) number there, from 1:
                                       the evidence for a row, and one BGP message per
                                       (source, record)
==============  =====================  ================================================

``mrt`` reads RIB dumps (TABLE_DUMP_V2, RouteViews and RIS ``bview``/``rib`` files) and
update files (BGP4MP / BGP4MP_ET, 2- and 4-byte AS, with AS4_PATH merged into a 2-byte
AS_PATH as RFC 6793 says, and MP_REACH / MP_UNREACH for IPv6) through ``mrtparse``, a
maintained MRT library, never a hand-written MRT parser. Set aside, by reason:
``state-change`` (BGP4MP session state records), ``not-update`` (OPEN, KEEPALIVE,
NOTIFICATION messages), ``unsupported-record`` (other MRT types, e.g. TABLE_DUMP v1),
``bad-record`` (a record mrtparse cannot decode; the rest of the file is still read),
``peer-index`` (TABLE_DUMP_V2 peer tables, used, not rows).

``bgpdump`` reads the one-line format of ``bgpdump -m`` / ``bgpscanner``:
``BGP4MP|ts|A|peer|peer_as|prefix|path|...``, ``BGP4MP|ts|W|peer|peer_as|prefix``,
``TABLE_DUMP2|ts|B|peer|peer_as|prefix|path|...`` (AS_SETs as ``{a,b}``). Set aside:
``state-change`` (``STATE`` lines), ``bad-line``.

``vrp`` reads RPKI validated ROA payloads as relying-party software exports them: CSV
(rpki-client ``-c``, Routinator ``vrps -f csv``: ``ASN,IP Prefix,Max Length,Trust Anchor``
with optional further columns) or JSON with a ``roas`` list (rpki-client ``-j``,
Routinator ``-f json``, Cloudflare's ``rpki.json``; ``asn`` as a number or ``"AS13335"``).
Table ``vrps``: ``asn, prefix, max_length, ta``. Set aside: ``bad-line``, ``bad-asn``,
``bad-prefix``, ``bad-max-length`` (shorter than the prefix or longer than the family
allows), ``duplicate`` (the same (asn, prefix, max length) again).
"""

from __future__ import annotations

import io
import ipaddress
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from analysis._readers import decompress
from analysis.errors import DatasetFormatError

__all__ = ["READERS_BGP", "ROUTES_SCHEMA", "VRPS_SCHEMA", "read_mrt", "read_bgpdump", "read_vrp"]

ROUTES_SCHEMA = pa.schema([
    ("timestamp", pa.timestamp("s", tz="UTC")),
    ("peer_asn", pa.int64()),
    ("peer_addr", pa.string()),
    ("prefix", pa.string()),
    ("kind", pa.string()),
    ("as_path", pa.list_(pa.int64())),
    ("origin_asn", pa.int64()),
    ("as_set", pa.bool_()),
    ("source", pa.string()),
    ("record", pa.int64()),
])
_MRT_MAGIC_TYPES = {11, 12, 13, 16, 17, 32, 33, 48, 49}  # MRT type codes (RFC 6396)
_AS_SET, _AS_SEQUENCE = 1, 2


class _Rows:
    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {f.name: [] for f in ROUTES_SCHEMA}
        self.source = ""
        self.record = 0

    def add(self, ts: int, peer_asn: int | None, peer_addr: str | None, prefix: str, kind: str,
            route: _Route) -> None:
        c = self.cols
        c["timestamp"].append(ts)
        c["peer_asn"].append(peer_asn)
        c["peer_addr"].append(peer_addr)
        c["prefix"].append(prefix)
        c["kind"].append(kind)
        c["as_path"].append(route[0])
        c["origin_asn"].append(route[2])
        c["as_set"].append(route[1])
        c["source"].append(self.source)
        c["record"].append(self.record)

    def table(self) -> pa.Table:
        cols = dict(self.cols)
        cols["timestamp"] = pa.array(cols["timestamp"], pa.int64()).cast(pa.timestamp("s", tz="UTC"))
        return pa.table({f.name: pa.array(cols[f.name], f.type) if f.name != "timestamp" else cols[f.name]
                         for f in ROUTES_SCHEMA}, schema=ROUTES_SCHEMA)


#: An AS path as stored: its ASNs in order (AS_SET members included), whether it holds an
#: AS_SET, and its origin AS (None when it ends in an AS_SET or is empty).
_Route = tuple[list[int], bool, "int | None"]
_NO_ROUTE: _Route = ([], False, None)


def _route(segments: list[tuple[int, list[int]]]) -> _Route:
    """The stored form of AS path segments ``[(segment type, ASNs), ...]``."""
    flat = [x for _, seg in segments for x in seg]
    origin = flat[-1] if flat and segments[-1][0] != _AS_SET else None
    return flat, any(k == _AS_SET for k, _ in segments), origin


# ---------------------------------------------------------------------------- MRT
def _mrtparse() -> Any:
    """``mrtparse``, imported without its side effect: on import it sets SIGPIPE to the
    default action, after which a write to a socket the other side closed kills the whole
    process instead of raising BrokenPipeError (and, outside the main thread, the import
    fails). Its SIGPIPE change is skipped; every other signal call goes through."""
    import signal
    import sys

    if "mrtparse" in sys.modules:
        return sys.modules["mrtparse"]
    real = signal.signal

    def keep_sigpipe(sig: Any, handler: Any) -> Any:
        return signal.getsignal(sig) if sig == signal.SIGPIPE else real(sig, handler)

    signal.signal = keep_sigpipe  # type: ignore[assignment]
    try:
        import mrtparse
    finally:
        signal.signal = real
    return mrtparse


def read_mrt(files: Sequence[tuple[str, bytes]], counts: Counter) -> dict[str, pa.Table]:
    """MRT RIB dumps and update files (see the module notes) -> table ``routes``."""
    mrtparse = _mrtparse()

    rows = _Rows()
    for name, data in files:
        raw = decompress(data)
        if len(raw) < 12 or int.from_bytes(raw[4:6], "big") not in _MRT_MAGIC_TYPES:
            raise DatasetFormatError(f"{name}: not an MRT file (no MRT record header at the start)")
        peers: list[tuple[str | None, int | None]] = []
        rows.source = name
        for n, rec in _records(mrtparse.Reader(io.BytesIO(raw)), counts):
            rows.record = n
            _mrt_record(rec, rows, peers, counts)
    return {"routes": rows.table()}


def _records(reader: Any, counts: Counter) -> Iterator[tuple[int, dict[str, Any]]]:
    for n, entry in enumerate(reader, 1):
        if entry.err:
            counts["bad-record"] += 1
            entry.err = 0
            continue
        yield n, entry.data


def _code(field: Any) -> int:
    """mrtparse's ``{code: name}`` fields -> code."""
    return int(next(iter(field))) if isinstance(field, dict) else int(field)


def _mrt_record(d: dict[str, Any], rows: _Rows, peers: list[tuple[str | None, int | None]],
                counts: Counter) -> None:
    mtype, sub = _code(d["type"]), _code(d["subtype"])
    ts = int(next(iter(d["timestamp"]))) if isinstance(d["timestamp"], dict) else int(d["timestamp"])
    if mtype == 13:  # TABLE_DUMP_V2
        if sub == 1:  # PEER_INDEX_TABLE
            peers[:] = [(p.get("peer_ip"), _int(p.get("peer_as"))) for p in d.get("peer_entries", [])]
            counts["peer-index"] += 1
            return
        if "rib_entries" not in d:
            counts["unsupported-record"] += 1
            return
        prefix = f"{d['prefix']}/{d['length']}"
        for e in d["rib_entries"]:
            idx = int(e.get("peer_index", -1))
            addr, asn = peers[idx] if 0 <= idx < len(peers) else (None, None)
            rows.add(ts, asn, addr, prefix, "rib", _path_of(e.get("path_attributes", [])))
        return
    if mtype in (16, 17):  # BGP4MP, BGP4MP_ET
        if sub in (0, 5):  # STATE_CHANGE, STATE_CHANGE_AS4
            counts["state-change"] += 1
            return
        msg = d.get("bgp_message")
        if msg is None:
            counts["unsupported-record"] += 1
            return
        if _code(msg.get("type", {0: ""})) != 2:  # UPDATE
            counts["not-update"] += 1
            return
        peer_asn, peer_addr = _int(d.get("peer_as")), d.get("peer_ip")
        attrs = msg.get("path_attributes", [])
        withdrawn = [f"{p['prefix']}/{p['length']}" for p in msg.get("withdrawn_routes", [])]
        announced = [f"{p['prefix']}/{p['length']}" for p in msg.get("nlri", [])]
        for a in attrs:
            t = _code(a["type"])
            if t == 14:  # MP_REACH_NLRI
                announced += [f"{p['prefix']}/{p['length']}" for p in a["value"].get("nlri", [])]
            elif t == 15:  # MP_UNREACH_NLRI
                withdrawn += [f"{p['prefix']}/{p['length']}" for p in a["value"].get("withdrawn_routes", [])]
        for p in withdrawn:
            rows.add(ts, peer_asn, peer_addr, p, "withdraw", _NO_ROUTE)
        if announced:
            route = _path_of(attrs)
            for p in announced:
                rows.add(ts, peer_asn, peer_addr, p, "announce", route)
        return
    counts["unsupported-record"] += 1


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _segments(value: Any) -> list[tuple[int, list[int]]]:
    return [(_code(seg["type"]), [int(x) for x in seg["value"]]) for seg in value or []]


def _path_of(attrs: Sequence[dict[str, Any]]) -> _Route:
    """The AS path of an attribute list, AS4_PATH merged into AS_PATH (RFC 6793 4.2.3)."""
    as_path: list[tuple[int, list[int]]] = []
    as4: list[tuple[int, list[int]]] | None = None
    for a in attrs:
        t = _code(a["type"])
        if t == 2:
            as_path = _segments(a["value"])
        elif t == 17:
            as4 = _segments(a["value"])
    segs = as_path
    if as4:
        n4 = sum(len(s) if k == _AS_SEQUENCE else 1 for k, s in as4)
        n2 = sum(len(s) if k == _AS_SEQUENCE else 1 for k, s in as_path)
        if n4 <= n2:  # else AS4_PATH is ignored
            keep, out = n2 - n4, []
            for k, s in as_path:
                if keep <= 0:
                    break
                take = s[:keep] if k == _AS_SEQUENCE else s
                out.append((k, take))
                keep -= len(take) if k == _AS_SEQUENCE else 1
            segs = out + as4
    return _route(segs)


# ---------------------------------------------------------------------------- bgpdump -m
def read_bgpdump(files: Sequence[tuple[str, bytes]], counts: Counter) -> dict[str, pa.Table]:
    """``bgpdump -m`` one-line records (see the module notes) -> table ``routes``."""
    rows = _Rows()
    for name, data in files:
        text = decompress(data).decode("utf-8", "replace").splitlines()
        good = 0
        rows.source = name
        for n, line in enumerate(text, 1):
            if not line.strip():
                continue
            f = line.split("|")
            if len(f) >= 3 and f[2] == "STATE":
                counts["state-change"] += 1
                continue
            try:
                rec = _bgpdump_line(f)
            except (ValueError, IndexError):
                rec = None
            if rec is None:
                counts["bad-line"] += 1
                if good == 0 and n >= 20:
                    raise DatasetFormatError(f"{name}:{n}: not bgpdump -m output (got {line[:80]!r})")
                continue
            good += 1
            rows.record = n
            rows.add(*rec)
        if good == 0:
            raise DatasetFormatError(f"{name}: no bgpdump -m record (BGP4MP|ts|A|... or TABLE_DUMP2|ts|B|...)")
    return {"routes": rows.table()}


def _bgpdump_line(f: list[str]) -> tuple[int, int, str, str, str, _Route] | None:
    if f[0] not in ("BGP4MP", "BGP4MP_ET", "TABLE_DUMP2", "TABLE_DUMP") or len(f) < 6:
        return None
    ts = int(float(f[1]))
    kind = {"A": "announce", "W": "withdraw", "B": "rib"}.get(f[2])
    if kind is None:
        return None
    ipaddress.ip_address(f[3])
    prefix = str(ipaddress.ip_network(f[5], strict=False))
    route = _NO_ROUTE if kind == "withdraw" else _route(
        [(_AS_SET, [int(x) for x in tok.strip("{}").split(",") if x]) if tok.startswith("{")
         else (_AS_SEQUENCE, [int(tok)]) for tok in f[6].split()])
    return ts, int(f[4]), f[3], prefix, kind, route


VRPS_SCHEMA = pa.schema([("asn", pa.int64()), ("prefix", pa.string()), ("max_length", pa.int16()),
                         ("ta", pa.string())])


def read_vrp(files: Sequence[tuple[str, bytes]], counts: Counter) -> dict[str, pa.Table]:
    """RPKI VRPs, CSV or JSON (see the module notes) -> table ``vrps``."""
    import csv

    import orjson

    out: dict[tuple[int, str, int], str | None] = {}
    for name, data in files:
        raw = decompress(data).strip()
        if raw.startswith(b"{"):
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise DatasetFormatError(f"{name}: not JSON ({exc})") from None
            roas = doc.get("roas") if isinstance(doc, dict) else None
            if not isinstance(roas, list):
                raise DatasetFormatError(f"{name}: a VRP JSON file has a 'roas' list (rpki-client, Routinator, "
                                         "Cloudflare rpki.json)")
            recs = [(r.get("asn"), r.get("prefix"), r.get("maxLength", r.get("max_length")), r.get("ta"))
                    if isinstance(r, dict) else None for r in roas]
        else:
            rows = list(csv.reader(raw.decode("utf-8", "replace").splitlines()))
            if not rows or [h.strip().lower() for h in rows[0][:3]] != ["asn", "ip prefix", "max length"]:
                raise DatasetFormatError(f"{name}:1: not a VRP CSV (header 'ASN,IP Prefix,Max Length,Trust Anchor' "
                                         f"expected, got {','.join(rows[0][:4]) if rows else 'nothing'!r})")
            recs = [(r[0], r[1], r[2], r[3] if len(r) > 3 else None) if len(r) >= 3 else None for r in rows[1:]]
        for rec in recs:
            if rec is None:
                counts["bad-line"] += 1
                continue
            vrp = _vrp(*rec, counts)
            if vrp is None:
                continue
            if vrp[:3] in out:
                counts["duplicate"] += 1
                continue
            out[vrp[:3]] = vrp[3]
    keys = sorted(out)
    return {"vrps": pa.table({"asn": [k[0] for k in keys], "prefix": [k[1] for k in keys],
                              "max_length": [k[2] for k in keys], "ta": [out[k] for k in keys]},
                             schema=VRPS_SCHEMA)}


def _vrp(asn: Any, prefix: Any, max_length: Any, ta: Any,
         counts: Counter) -> tuple[int, str, int, str | None] | None:
    try:
        a = int(str(asn).strip().upper().removeprefix("AS"))
        if not 0 <= a < 2**32:
            raise ValueError
    except ValueError:
        counts["bad-asn"] += 1
        return None
    try:
        net = ipaddress.ip_network(str(prefix).strip(), strict=True)
    except ValueError:
        counts["bad-prefix"] += 1
        return None
    try:
        m = int(max_length) if max_length not in (None, "") else net.prefixlen
    except (TypeError, ValueError):
        m = -1
    if not net.prefixlen <= m <= net.max_prefixlen:
        counts["bad-max-length"] += 1
        return None
    return a, str(net), m, None if ta in (None, "") else str(ta).strip()


READERS_BGP = {"mrt": read_mrt, "bgpdump": read_bgpdump, "vrp": read_vrp}

