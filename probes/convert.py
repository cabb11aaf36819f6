"""Other traceroute tools' output -> RIPE Atlas traceroute results.

:func:`convert_foreign` recognises, from the content alone:

- Linux/BSD ``traceroute -n`` text (``traceroute to X (A), N hops max, ...`` then one line
  per hop; several traces may follow each other);
- ``mtr --report`` text (``Start:`` / ``HOST: ... Loss% Snt ...`` then ``N.|-- addr``
  lines), one or more reports;
- ``mtr --json`` (``{"report": {"mtr": {...}, "hubs": [...]}}``);
- scamper JSON (``scamper -O json`` or ``sc_warts2json``: one object per line, ``"type":
  "trace"`` records; ``cycle-start``/``cycle-stop``/``list`` records are skipped).

Fields the tool's output cannot tell are left empty (null) and named in the result's
``"pathexp_unknown"`` list; fields that had to be derived are named in
``"pathexp_inferred"``. Keys the store needs but cannot know are fixed, documented values:

- ``prb_id`` = :data:`UNKNOWN_PRB_ID` (0) when the output names no probe;
- ``timestamp`` = 0 when the output carries no time (``traceroute``, ``mtr --json``);
- ``msm_id`` = :data:`probes.schema.LOCAL_MSM_ID_MIN` + a hash of the converted trace, so
  ingesting the same file twice adds nothing, and different traces do not collide.

Every converted result has ``"origin": "converted:<tool>"``. mtr reports aggregate many
probes per hop: a hop becomes one reply whose ``rtt`` is mtr's *Best* (the minimum, what
hop-level RTT analyses use) with the whole row kept under ``"pathexp_mtr"``; a hop mtr
shows as ``???`` becomes a timeout.
"""

from __future__ import annotations

import calendar
import hashlib
import ipaddress
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson

from probes.errors import InputFormatError
from probes.schema import LOCAL_MSM_ID_MIN

__all__ = ["convert_foreign", "UNKNOWN_PRB_ID", "TOOLS"]

#: prb_id of converted results whose output names no probe.
UNKNOWN_PRB_ID = 0
#: The tools :func:`convert_foreign` recognises (the ``origin`` suffix).
TOOLS = ("traceroute", "mtr", "scamper")

_MSM_SPAN = (1 << 32) - LOCAL_MSM_ID_MIN
_SCAMPER_META = {"cycle-start", "cycle-stop", "cycle-def", "list"}
_SCAMPER_TYPES = _SCAMPER_META | {"trace", "tracelb", "ping", "dealias", "neighbourdisc",
                                  "tbit", "sting", "sniff", "host", "http", "udpprobe"}


def convert_foreign(data: bytes, *, name: str) -> list[dict[str, Any]] | None:
    """Atlas results converted from another tool's output, or None if it is not one.

    Parameters
    ----------
    data
        A whole (decompressed) input file.
    name
        The input's name, used in error messages.

    Returns
    -------
    list of dict or None
        Atlas traceroute result dicts; None when ``data`` is not ``traceroute -n``,
        ``mtr --report``, ``mtr --json`` or scamper JSON output (it may be Atlas JSON).

    Raises
    ------
    InputFormatError
        The output of a recognised tool is damaged; the message names the line.

    Examples
    --------
    >>> text = b'''traceroute to 192.0.2.9 (192.0.2.9), 30 hops max, 60 byte packets
    ...  1  192.0.2.1  0.412 ms  0.388 ms *
    ...  2  192.0.2.9  1.201 ms !H  1.187 ms !H  1.180 ms !H
    ... '''
    >>> [r["result"] for r in convert_foreign(text, name="t.txt")]  # doctest: +NORMALIZE_WHITESPACE
    [[{'hop': 1, 'result': [{'from': '192.0.2.1', 'rtt': 0.412}, {'from': '192.0.2.1', 'rtt': 0.388},
       {'x': '*'}]},
      {'hop': 2, 'result': [{'from': '192.0.2.9', 'rtt': 1.201, 'err': 'H'},
       {'from': '192.0.2.9', 'rtt': 1.187, 'err': 'H'}, {'from': '192.0.2.9', 'rtt': 1.18, 'err': 'H'}]}]]
    >>> convert_foreign(b'{"msm_id": 5001, "prb_id": 1}', name="atlas.json") is None
    True
    """
    text = data.lstrip(b"\xef\xbb\xbf")  # UTF-8 BOM
    head = text.lstrip()[:64]
    if head.startswith(b"["):
        return None
    if head.startswith(b"{"):
        return _convert_json(text, name)
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = decoded.splitlines()
    first = next(((i, ln.strip()) for i, ln in enumerate(lines) if ln.strip()), None)
    if first is None:
        return None
    if re.match(r"traceroute6? to \S", first[1]):
        return _traceroute_text(lines, name)
    if first[1].startswith(("Start:", "HOST:")):
        return _mtr_report(lines, name)
    return None


# --- helpers ------------------------------------------------------------------------------


def _fail(name: str, lineno: int, what: str) -> InputFormatError:
    return InputFormatError(f"{name}: line {lineno}: {what}")


def _ip(token: str) -> str | None:
    try:
        return str(ipaddress.ip_address(token))
    except ValueError:
        return None


def _msm_id(tool: str, result: dict[str, Any]) -> int:
    body = orjson.dumps(
        {k: result.get(k) for k in ("dst_addr", "dst_name", "src_addr", "timestamp", "result", "proto")},
        option=orjson.OPT_SORT_KEYS,
    )
    h = int.from_bytes(hashlib.blake2b(tool.encode() + body, digest_size=8).digest(), "big")
    return LOCAL_MSM_ID_MIN + h % _MSM_SPAN


def _finish(tool: str, result: dict[str, Any], *, unknown: list[str], inferred: list[str]) -> dict[str, Any]:
    result.setdefault("prb_id", UNKNOWN_PRB_ID)
    result.setdefault("type", "traceroute")
    result["origin"] = f"converted:{tool}"
    result["pathexp_converted"] = tool
    result["pathexp_unknown"] = sorted(set(unknown))
    if inferred:
        result["pathexp_inferred"] = sorted(set(inferred))
    msm = _msm_id(tool, result)
    result["msm_id"] = msm
    result["group_id"] = msm
    return result


def _af(addr: str | None) -> int | None:
    if addr is None:
        return None
    return ipaddress.ip_address(addr).version


def _public_from(src: str | None) -> str | None:
    if src is None:
        return None
    return src if ipaddress.ip_address(src).is_global else None


# --- traceroute -n --------------------------------------------------------------------------

_TR_HEADER = re.compile(
    r"^traceroute6? to (?P<name>\S+) \((?P<addr>[0-9A-Fa-f:.]+)\)"
    r"(?:, (?P<hops>\d+) hops max)?(?:, (?P<size>\d+) byte packets)?"
)
_TR_HOP = re.compile(r"^\s*(?P<hop>\d+)(?:\s+(?P<rest>.*))?$")
_NUM = re.compile(r"^\d+(?:\.\d+)?$")
_ANNOT: dict[str, str | int] = {"!H": "H", "!N": "N", "!P": "P", "!X": "A", "!A": "A", "!S": 5, "!V": 14, "!C": 15,
          "!U": 6, "!W": 7, "!I": 8, "!Z": 9, "!Q": 10, "!T": 11, "!T?": 12}


def _annotation(token: str) -> str | int | None:
    if token in _ANNOT:
        return _ANNOT[token]
    if token.startswith("!F"):
        return 4  # fragmentation needed (!F-<mtu>)
    if re.fullmatch(r"!\d+", token):
        code = int(token[1:])
        return {0: "N", 1: "H", 2: "P", 3: "p", 13: "A"}.get(code, code)
    if token == "!":
        return None
    return None


def _traceroute_hop(rest: str, name: str, lineno: int) -> list[dict[str, Any]]:
    tokens = rest.split()
    replies: list[dict[str, Any]] = []
    addr: str | None = None
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "*":
            replies.append({"x": "*"})
            i += 1
            continue
        ip = _ip(tok)
        if ip is not None:
            addr = ip
            i += 1
            continue
        if tok.startswith("(") and tok.endswith(")") and _ip(tok[1:-1]) is not None:
            addr = _ip(tok[1:-1])  # "name (addr)" when run without -n
            i += 1
            continue
        if _NUM.match(tok) and i + 1 < len(tokens) and tokens[i + 1] == "ms":
            if addr is None:
                raise _fail(name, lineno, f"round-trip time {tok} ms before any address")
            replies.append({"from": addr, "rtt": float(tok)})
            i += 2
            continue
        if tok.startswith("!") and replies and "from" in replies[-1]:
            err = _annotation(tok)
            if err is None:
                raise _fail(name, lineno, f"unknown traceroute annotation {tok!r}")
            replies[-1]["err"] = err
            i += 1
            continue
        if i + 1 < len(tokens) and tokens[i + 1].startswith("(") and ip is None:
            i += 1  # a host name, its address follows in parentheses
            continue
        raise _fail(name, lineno, f"unexpected {tok!r} in a traceroute hop line")
    if not replies:
        raise _fail(name, lineno, "hop line without replies or '*'")
    return replies


def _traceroute_text(lines: list[str], name: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    last_hop = 0
    for idx, raw in enumerate(lines):
        lineno = idx + 1
        line = raw.rstrip()
        if not line.strip():
            continue
        m = _TR_HEADER.match(line.strip())
        if m:
            if current is not None:
                out.append(_close_traceroute(current))
            dst = _ip(m.group("addr"))
            if dst is None:
                raise _fail(name, lineno, f"bad destination address {m.group('addr')!r}")
            current = {
                "af": _af(dst), "dst_addr": dst, "dst_name": m.group("name"),
                "size": int(m.group("size")) if m.group("size") else None,
                "result": [], "timestamp": 0, "proto": None, "paris_id": None,
                "src_addr": None, "from": None,
            }
            last_hop = 0
            continue
        if line.strip().startswith("traceroute"):
            raise _fail(name, lineno, "damaged traceroute header")
        h = _TR_HOP.match(line)
        if h is None or current is None:
            raise _fail(name, lineno, "not a traceroute hop line")
        hop = int(h.group("hop"))
        if hop <= last_hop or hop > 255:
            raise _fail(name, lineno, f"hop {hop} out of order after hop {last_hop}")
        last_hop = hop
        current["result"].append({"hop": hop, "result": _traceroute_hop(h.group("rest") or "", name, lineno)})
    if current is not None:
        out.append(_close_traceroute(current))
    return out


def _close_traceroute(result: dict[str, Any]) -> dict[str, Any]:
    return _finish(
        "traceroute", result,
        unknown=["timestamp", "prb_id", "src_addr", "from", "proto", "paris_id", "size", "ttl"],
        inferred=[],
    )


# --- mtr --report ---------------------------------------------------------------------------

_MTR_HOP = re.compile(r"^\s*(?P<hop>\d+)\.\s*\|--\s+(?P<host>\S+)\s*(?P<rest>.*)$")
#: another address answering at the previous hop (ECMP): an indented address, alone
_MTR_EXTRA = re.compile(r"^\s+(?:[|`\s]*\|--\s+)?(?P<host>[0-9A-Fa-f:.]+)\s*$")
_MTR_COLS = {"Loss%": "loss_pct", "Snt": "sent", "Last": "last", "Avg": "avg", "Best": "best",
             "Wrst": "worst", "StDev": "stdev", "Rcv": "received", "Drop": "dropped",
             "Gmean": "gmean", "Jttr": "jitter", "Javg": "javg", "Jmax": "jmax", "Jint": "jint"}


def _mtr_time(value: str, name: str, lineno: int) -> tuple[int, bool]:
    """Epoch seconds of mtr's Start: value; True when the zone was assumed to be UTC."""
    value = value.strip()
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"):
        try:
            dt = datetime.strptime(value, fmt)
        except ValueError:
            continue
        if dt.tzinfo is None:
            return calendar.timegm(dt.timetuple()), True
        return int(dt.timestamp()), False
    try:
        dt = datetime.strptime(" ".join(value.split()), "%a %b %d %H:%M:%S %Y")
    except ValueError as exc:
        raise _fail(name, lineno, f"unreadable mtr start time {value!r}") from exc
    return calendar.timegm(dt.timetuple()), True


def _mtr_hop_entry(host: str, stats: dict[str, float]) -> dict[str, Any]:
    if host == "???" or stats.get("loss_pct", 0.0) >= 100.0:
        return {"x": "*"}
    addr = _ip(host)
    entry: dict[str, Any] = {"from": addr if addr is not None else None}
    if "best" in stats:
        entry["rtt"] = stats["best"]
    return entry


def _mtr_report(lines: list[str], name: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    columns: list[str] = []
    utc_assumed = False

    def close() -> None:
        if current is None:
            return
        if not columns:
            raise _fail(name, len(lines), "mtr report without a HOST: header line")
        inferred = ["rtt=best"] + (["timestamp_utc"] if utc_assumed else [])
        unknown = ["prb_id", "dst_addr", "src_addr", "from", "proto", "paris_id", "size", "ttl"]
        if current["timestamp"] is None:
            current["timestamp"] = 0
            unknown.append("timestamp")
        out.append(_finish("mtr", current, unknown=unknown, inferred=inferred))

    for idx, raw in enumerate(lines):
        lineno = idx + 1
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("Start:"):
            close()
            ts, utc_assumed = _mtr_time(stripped[len("Start:"):], name, lineno)
            current = _mtr_new(ts)
            columns = []
            continue
        if stripped.startswith("HOST:"):
            if current is None or columns:
                close()
                current = _mtr_new(None)
            parts = stripped.split()
            # HOST: <hostname> <column names...>
            names = parts[2:] if len(parts) > 2 else []
            if not names or any(c not in _MTR_COLS for c in names):
                raise _fail(name, lineno, f"unknown mtr report columns {names!r}")
            columns = [_MTR_COLS[c] for c in names]
            current["pathexp_mtr_host"] = parts[1] if len(parts) > 1 else None
            continue
        if current is None or not columns:
            raise _fail(name, lineno, "mtr hop line before the HOST: header")
        m = _MTR_HOP.match(line)
        if m:
            values = m.group("rest").split()
            if len(values) != len(columns):
                raise _fail(name, lineno, f"expected {len(columns)} mtr columns, found {len(values)}")
            stats: dict[str, float] = {}
            for col, val in zip(columns, values, strict=True):
                try:
                    stats[col] = float(val.rstrip("%"))
                except ValueError as exc:
                    raise _fail(name, lineno, f"bad mtr value {val!r} for {col}") from exc
            host = m.group("host")
            if host != "???" and _ip(host) is None:
                raise _fail(name, lineno, f"mtr host {host!r} is not an address (run mtr with -n)")
            hop = int(m.group("hop"))
            if current["result"] and hop <= current["result"][-1]["hop"]:
                raise _fail(name, lineno, f"hop {hop} out of order")
            current["result"].append({
                "hop": hop, "result": [_mtr_hop_entry(host, stats)], "pathexp_mtr": stats,
            })
            continue
        e = _MTR_EXTRA.match(line)
        if e and current["result"]:
            addr = _ip(e.group("host"))
            if addr is None:
                raise _fail(name, lineno, f"mtr host {e.group('host')!r} is not an address")
            current["result"][-1]["result"].append({"from": addr})
            continue
        raise _fail(name, lineno, "not an mtr report line")
    close()
    return out


def _mtr_new(ts: int | None) -> dict[str, Any]:
    return {"af": None, "dst_addr": None, "dst_name": None, "timestamp": ts, "result": [],
            "proto": None, "paris_id": None, "src_addr": None, "from": None}


# --- JSON: mtr --json and scamper -------------------------------------------------------------


def _convert_json(text: bytes, name: str) -> list[dict[str, Any]] | None:
    first_line, _, _ = text.lstrip().partition(b"\n")
    try:
        first = orjson.loads(first_line)
    except orjson.JSONDecodeError:
        first = None
    if isinstance(first, dict):
        if first.get("type") in _SCAMPER_TYPES and "msm_id" not in first:
            return _scamper(text, name)
        if "report" in first and isinstance(first["report"], dict) and "hubs" in first["report"]:
            return [_mtr_json(first["report"], name)]
        return None
    # a pretty-printed document: mtr --json is one; Atlas may be one too
    if b'"hubs"' not in text or b'"report"' not in text[:4096]:
        return None
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        lineno = text[: getattr(exc, "pos", 0) or 0].count(b"\n") + 1
        raise _fail(name, lineno, f"damaged mtr JSON: {exc}") from exc
    if not (isinstance(doc, dict) and isinstance(doc.get("report"), dict) and "hubs" in doc["report"]):
        return None
    return [_mtr_json(doc["report"], name)]


def _mtr_json(report: dict[str, Any], name: str) -> dict[str, Any]:
    meta = report.get("mtr") or {}
    hubs = report.get("hubs")
    if not isinstance(meta, dict) or not isinstance(hubs, list):
        raise _fail(name, 1, "mtr JSON: 'report' lacks 'mtr' or 'hubs'")
    dst = meta.get("dst")
    dst_addr = _ip(str(dst)) if dst is not None else None
    unknown = ["timestamp", "prb_id", "src_addr", "from", "paris_id", "ttl"]
    if dst_addr is None:
        unknown.append("dst_addr")
    result: dict[str, Any] = {
        "af": _af(dst_addr), "dst_addr": dst_addr, "dst_name": str(dst) if dst is not None else None,
        "timestamp": 0, "proto": None, "paris_id": None, "src_addr": None, "from": None,
        "result": [], "pathexp_mtr_host": meta.get("src"),
    }
    unknown.append("proto")
    try:
        size = int(meta["psize"]) if meta.get("psize") is not None else None
    except (TypeError, ValueError) as exc:
        raise _fail(name, 1, f"mtr JSON: bad psize {meta.get('psize')!r}") from exc
    result["size"] = size
    last = 0
    for n, hub in enumerate(hubs):
        if not isinstance(hub, dict) or "host" not in hub or "count" not in hub:
            raise _fail(name, 1, f"mtr JSON: hub {n} lacks 'host' or 'count'")
        try:
            hop = int(hub["count"])
            stats = {_MTR_COLS[k]: float(v) for k, v in hub.items() if k in _MTR_COLS}
        except (TypeError, ValueError) as exc:
            raise _fail(name, 1, f"mtr JSON: hub {n} has a non-numeric field") from exc
        host = str(hub["host"])
        if host != "???" and _ip(host) is None:
            raise _fail(name, 1, f"mtr JSON: hub {n} host {host!r} is not an address (use mtr -n)")
        if hop <= last:
            raise _fail(name, 1, f"mtr JSON: hub {n} hop {hop} out of order")
        last = hop
        result["result"].append({"hop": hop, "result": [_mtr_hop_entry(host, stats)], "pathexp_mtr": stats})
    return _finish("mtr", result, unknown=unknown, inferred=["rtt=best"])


def _scamper_lines(text: bytes, name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for idx, line in enumerate(text.split(b"\n")):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise _fail(name, idx + 1, f"damaged scamper JSON: {exc}") from exc
        if not isinstance(obj, dict) or "type" not in obj:
            raise _fail(name, idx + 1, "scamper JSON record without a 'type'")
        yield idx + 1, obj


def _scamper(text: bytes, name: str) -> list[dict[str, Any]]:
    out = []
    for lineno, obj in _scamper_lines(text, name):
        kind = obj["type"]
        if kind in _SCAMPER_META:
            continue
        if kind != "trace":
            raise _fail(name, lineno, f"scamper {kind!r} record is not a traceroute")
        try:
            out.append(_scamper_trace(obj))
        except (KeyError, TypeError, ValueError) as exc:
            raise _fail(name, lineno, f"scamper trace record lacks or mangles a field: {exc!r}") from exc
    return out


_TCP_FLAG_LETTERS = ((0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"), (0x10, "A"), (0x20, "U"))


def _scamper_reply(h: dict[str, Any], dst: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"from": str(ipaddress.ip_address(h["addr"])), "rtt": float(h["rtt"])}
    if "reply_size" in h:
        overhead = 40 if "tcp_flags" in h else 28
        entry["size"] = max(0, int(h["reply_size"]) - overhead)
    if "reply_ttl" in h:
        entry["ttl"] = int(h["reply_ttl"])
    qttl = h.get("icmp_q_ttl")
    if qttl is not None and int(qttl) != 1:
        entry["ittl"] = int(qttl)
    if h.get("icmp_type") == 3:
        code = int(h.get("icmp_code", 0))
        if not (code == 3 and entry["from"] == dst):
            entry["err"] = {0: "N", 1: "H", 2: "P", 3: "p", 13: "A"}.get(code, code)
    if "tcp_flags" in h:
        flags = int(h["tcp_flags"])
        entry["flags"] = "".join(c for bit, c in _TCP_FLAG_LETTERS if flags & bit)
    return entry


def _scamper_trace(obj: dict[str, Any]) -> dict[str, Any]:
    method = str(obj.get("method", "")).lower()
    proto = "ICMP" if method.startswith("icmp") else "TCP" if method.startswith("tcp") else "UDP"
    dst = str(ipaddress.ip_address(obj["dst"]))
    src = str(ipaddress.ip_address(obj["src"])) if obj.get("src") else None
    attempts = int(obj.get("attempts", 1))
    first = int(obj.get("firsthop", 1))
    by_ttl: dict[int, dict[int, dict[str, Any]]] = {}
    for h in obj.get("hops", []):
        by_ttl.setdefault(int(h["probe_ttl"]), {})[int(h.get("probe_id", 1))] = h
    last = max([int(obj.get("hop_count", 0)), *by_ttl]) if by_ttl else int(obj.get("hop_count", 0))
    hops = []
    for ttl in range(first, last + 1):
        got = by_ttl.get(ttl, {})
        n = max([attempts, *got]) if got else attempts
        if got and not obj.get("all_attempts"):
            n = max(got)  # scamper stops a hop at its first reply unless -Q
        hops.append({
            "hop": ttl,
            "result": [_scamper_reply(got[i], dst) if i in got else {"x": "*"} for i in range(1, n + 1)],
        })
    start = obj.get("start") or {}
    unknown = ["prb_id", "paris_id"]
    paris = "paris" in method
    result = {
        "af": _af(dst), "dst_addr": dst, "dst_name": dst, "src_addr": src, "from": _public_from(src),
        "proto": proto, "paris_id": None if paris else 0,
        "size": int(obj["probe_size"]) if "probe_size" in obj else None,
        "timestamp": int(start["sec"]),
        "result": hops,
        "pathexp_scamper": {
            k: obj.get(k) for k in ("method", "sport", "dport", "icmp_sum", "stop_reason", "attempts", "wait")
        },
    }
    if result["from"] is None:
        unknown.append("from")
    if not paris:
        unknown.remove("paris_id")
    return _finish("scamper", result, unknown=unknown, inferred=[])
