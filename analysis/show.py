"""One traceroute, hop by hop: the text and JSON behind ``pathexp show``.

The layout follows ``ripe-atlas report`` (one line per hop and replying address, the
address's AS, then the round-trip times) and adds what pathexp knows about each hop: the
AS that operates the router when router-ownership inference moved it away from the
address's origin AS, the IXP whose peering LAN the address is on and the member it
belongs to, the flagged carrier family, MPLS labels and ICMP errors; under the hops, the
path's verdicts (AS path, flagged transit, PoP crossings with their city and evidence, AS
loops, detours) when ``pathexp analyze`` has run. Pure functions over rows; the command
(:mod:`analysis.cli.show`) reads the campaign's tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

__all__ = ["render_trace", "trace_record"]

#: ICMP errors of an Atlas reply (``err``), as ``traceroute`` prints them.
_ERR = {"N": "!N", "H": "!H", "A": "!A", "P": "!P", "p": "!p"}


def _when(ts: Any) -> str:
    if isinstance(ts, datetime):
        t = ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    else:
        t = datetime.fromtimestamp(int(ts), tz=timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S UTC")


def trace_record(trace: Mapping[str, Any], hops: Iterable[Mapping[str, Any]],
                 owners: Mapping[str, Mapping[str, Any]] | None = None,
                 path: Mapping[str, Any] | None = None,
                 probe: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One traceroute as a JSON-ready dict: header, hops (replies grouped by address), verdicts.

    Parameters
    ----------
    trace : mapping
        A row of the traceroute table (:data:`probes.schema.TRACE_SCHEMA`).
    hops : iterable of mapping
        Its rows of the hop table, annotated (``asn``, ``ixp_name``, ``member_asn``,
        ``family`` ...) or not.
    owners : mapping, optional
        Reply address -> row of ``paths/owners.parquet`` (``owner_asn``, ``owner_via``).
    path : mapping, optional
        Its row of ``paths/paths.parquet``.
    probe : mapping, optional
        Its probe's metadata row (``asn_v4``, ``country_code``, ``origin``).

    Examples
    --------
    >>> t = {"msm_id": 1, "prb_id": 7, "timestamp": 0, "src_addr": "192.0.2.1",
    ...      "dst_addr": "198.51.100.9", "dst_name": None, "proto": "ICMP", "paris_id": 1}
    >>> hops = [{"hop": 1, "reply_from": "192.0.2.254", "rtt": 1.5, "asn": 64500},
    ...         {"hop": 2, "reply_from": None, "rtt": None},
    ...         {"hop": 3, "reply_from": "198.51.100.9", "rtt": 9.25, "asn": 64501, "family": "x"}]
    >>> r = trace_record(t, hops, owners={"192.0.2.254": {"owner_asn": 64501, "owner_via": "last-hop"}})
    >>> [(h["hop"], [(a["address"], a["asn"], a["origin_asn"]) for a in h["replies"]]) for h in r["hops"]]
    [(1, [('192.0.2.254', 64501, 64500)]), (2, []), (3, [('198.51.100.9', 64501, 64501)])]
    """
    owners = owners or {}
    by_hop: dict[int, dict[str, dict[str, Any]]] = {}
    timeouts: dict[int, int] = {}
    problems: list[str] = []
    for h in sorted(hops, key=lambda h: (h["hop"] is None, h["hop"] or 0, h.get("attempt") or 0)):
        if h["hop"] is None:  # a result without hops: the error the probe reported instead
            if h.get("hop_error"):
                problems.append(str(h["hop_error"]))
            continue
        n = int(h["hop"])
        by_hop.setdefault(n, {})
        addr = h.get("reply_from")
        if addr is None:
            timeouts[n] = timeouts.get(n, 0) + 1
            continue
        origin = h.get("asn")
        own = owners.get(addr) or {}
        owner = own.get("owner_asn") if own.get("owner_via") and own.get("owner_asn") != origin else None
        a = by_hop[n].setdefault(addr, {
            "address": addr, "asn": owner if owner is not None else origin, "origin_asn": origin,
            "owner_via": own.get("owner_via") if owner is not None else None,
            "ixp": h.get("ixp_name"), "member_asn": h.get("member_asn"), "family": h.get("family"),
            "ip_class": h.get("ip_class"), "mpls": h.get("mpls") or None, "rtts": [], "errors": [],
        })
        if h.get("rtt") is not None:
            a["rtts"].append(round(float(h["rtt"]), 3))
        if h.get("err"):
            a["errors"].append(_ERR.get(str(h["err"]), f"!<{h['err']}>"))
    rec: dict[str, Any] = {
        "msm_id": trace["msm_id"], "prb_id": trace["prb_id"], "time": _when(trace["timestamp"]),
        "from": trace.get("src_addr"), "to": trace.get("dst_addr"), "dst_name": trace.get("dst_name"),
        "proto": trace.get("proto"), "paris_id": trace.get("paris_id"),
        "probe": None if probe is None else {k: probe.get(k) for k in ("asn_v4", "asn_v6", "country_code", "origin")},
        "hops": [{"hop": n, "replies": list(by_hop[n].values()), "timeouts": timeouts.get(n, 0)}
                 for n in sorted(by_hop)],
        "errors": problems,
    }
    if path is not None:
        rec["verdicts"] = {k: path.get(k) for k in (
            "as_path", "destination_reached", "transits_flagged", "flagged_families", "pop_crossings",
            "loop", "detour", "dst_country") if k in path}
    return rec


def render_trace(rec: Mapping[str, Any], *, names: Mapping[int, str] | None = None) -> str:
    """The text of :func:`trace_record`'s dict, in the layout of ``ripe-atlas report``.

    ``names`` maps AS numbers to names (e.g. from the snapshot's as2org or the registry).

    Examples
    --------
    >>> t = {"msm_id": 1, "prb_id": 7, "timestamp": 0, "src_addr": "192.0.2.1",
    ...      "dst_addr": "198.51.100.9", "dst_name": None, "proto": "ICMP", "paris_id": 1}
    >>> hops = [{"hop": 1, "reply_from": "192.0.2.254", "rtt": 1.5, "asn": 64500},
    ...         {"hop": 2, "reply_from": None, "rtt": None}]
    >>> print(render_trace(trace_record(t, hops), names={64500: "Example"}))
    Probe #7  msm 1  1970-01-01 00:00:00 UTC  ICMP paris 1
      192.0.2.1 -> 198.51.100.9
       1  AS64500   192.0.2.254                1.500 ms  Example
       2  *
    """
    names = names or {}
    probe = rec.get("probe") or {}
    who = ", ".join(x for x in (f"AS{probe['asn_v4']}" if probe.get("asn_v4") else "",
                                probe.get("country_code") or "",
                                "derived" if str(probe.get("origin") or "").startswith("derived") else "") if x)
    head = (f"Probe #{rec['prb_id']}" + (f" ({who})" if who else "")
            + f"  msm {rec['msm_id']}  {rec['time']}  {rec.get('proto') or ''} paris {rec.get('paris_id')}")
    dst = (rec["to"] or "?") + (f" ({rec['dst_name']})" if rec.get("dst_name") and rec["dst_name"] != rec["to"] else "")
    lines = [head, f"  {rec.get('from') or '?'} -> {dst}"]
    lines += [f"  error: {msg}" for msg in rec.get("errors") or []]
    for h in rec["hops"]:
        if not h["replies"]:
            lines.append(f"  {h['hop']:>2}  *")
            continue
        for i, a in enumerate(h["replies"]):
            num = f"{h['hop']:>2}" if i == 0 else "  "
            asn = f"AS{a['asn']}" if a["asn"] is not None else ("private" if a.get("ip_class") not in (None, "public")
                                                                 else "-")
            rtts = "  ".join(f"{r:.3f} ms" for r in a["rtts"]) or "-"
            notes = []
            if a["asn"] is not None and names.get(a["asn"]):
                notes.append(names[a["asn"]])
            if a.get("owner_via"):
                notes.append(f"address from AS{a['origin_asn']}; router owner by rule {a['owner_via']}")
            if a.get("ixp"):
                notes.append(f"IXP {a['ixp']}" + (f" member AS{a['member_asn']}" if a.get("member_asn") else ""))
            if a.get("family"):
                notes.append(f"[{a['family']}]")
            if a.get("mpls"):
                notes.append("MPLS " + ",".join(map(str, a["mpls"])))
            notes.extend(a["errors"])
            stars = "  *" * h["timeouts"] if i == len(h["replies"]) - 1 else ""
            lines.append(f"  {num}  {asn:<9} {a['address']:<26} {rtts}{stars}"
                         + (f"  {'; '.join(notes)}" if notes else ""))
    v = rec.get("verdicts")
    if v is not None:
        lines.append("  " + _verdicts(v))
    return "\n".join(lines)


def _verdicts(v: Mapping[str, Any]) -> str:
    parts = [f"AS path {' '.join(_as_list(v.get('as_path')))}" if v.get("as_path") is not None else "no AS path"]
    if v.get("transits_flagged"):
        parts.append("transits " + ", ".join(v.get("flagged_families") or []))
    for c in v.get("pop_crossings") or []:
        where = ", ".join(x for x in (c.get("pop_city"), c.get("pop_country")) if x)
        conf = c.get("location_confidence")
        how = ", ".join(x for x in (c.get("kind"), c.get("ixp_name"), c.get("location_evidence"),
                                    conf is not None and f"confidence {conf:.2f}",
                                    c.get("verdict") and f"speed of light: {c['verdict']}") if x)
        parts.append(f"enters {c.get('family')} AS{c.get('asn')} from AS{c.get('from_asn')} at hop {c.get('hop')} "
                     f"({c.get('address')})" + (f" in {where}" if where else " (city unknown)")
                     + (f" [{how}]" if how else ""))
    if v.get("loop"):
        parts.append("AS loop")
    if v.get("detour"):
        parts.append("detour")
    if v.get("destination_reached") is False:
        parts.append("destination not reached")
    return "; ".join(parts)


def _as_list(p: Any) -> Sequence[str]:
    if isinstance(p, str):
        return p.split()
    return [str(x) if str(x).startswith(("AS", "IXP")) else f"AS{x}" for x in (p or [])]
