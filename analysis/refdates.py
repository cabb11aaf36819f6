"""Reference data against the time of the measurements: how far apart, and the closest data.

A PeeringDB snapshot from 2022 says who held an IXP port in 2022, not in 2019; a prefix
table from 2026 misses routes withdrawn since. :func:`reference_dates` compares the data's
own dates (each kind's ``date`` in the snapshot, read from the files at import: see
:mod:`analysis.datasets`) with the campaign's measurement period and marks every kind more
than :data:`STALE_DAYS` away; :func:`stale_lines` says it in one line per kind with the
remedy. :func:`closest_choices` picks, per kind, the snapshot whose data are closest in
time to the middle of the measurements (for :func:`analysis.datasets.compose_snapshot`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

__all__ = ["STALE_DAYS", "closer_than_current", "closest_choices", "parse_data_date", "reference_dates", "stale_lines"]

#: Reference data this many days or more before the first or after the last measurement is stale.
STALE_DAYS = 365


def parse_data_date(text: str | None) -> dt.date | None:
    """A snapshot kind's date (``YYYY-MM-DD``, ``YYYY-MM`` = the 15th) as a date, else None.

    >>> parse_data_date("2020-02"), parse_data_date("2019-09-11"), parse_data_date(None)
    (datetime.date(2020, 2, 15), datetime.date(2019, 9, 11), None)
    """
    if not text:
        return None
    try:
        parts = [int(x) for x in str(text).split("-")]
        return dt.date(parts[0], parts[1], parts[2] if len(parts) > 2 else 15)
    except (ValueError, IndexError):
        return None


def _gap_days(date: dt.date, first: dt.date, last: dt.date) -> int:
    """Days from ``date`` to the period [first, last]; negative before it, 0 inside."""
    if date < first:
        return (date - first).days
    if date > last:
        return (date - last).days
    return 0


def reference_dates(kinds: dict[str, Any], first: dt.datetime | None, last: dt.datetime | None, *,
                    stale_days: int = STALE_DAYS, closest: dict[str, str] | None = None) -> dict[str, Any]:
    """Per kind of a snapshot: its data's date, the gap to the measurements, stale or not.

    ``kinds`` is ``snapshot.json``'s ``kinds`` (each with ``date``); ``first``/``last`` the
    campaign's first and last measurement (None: no traceroute, nothing compared).
    ``gap_days`` is negative for data older than the first measurement, positive for
    data newer than the last, 0 inside the period; null without a date. With ``closest``
    (:func:`closer_than_current`), each kind also gets ``closer``: the snapshot ``--closest``
    would take it from instead, or null.

    >>> r = reference_dates({"peeringdb": {"date": "2022-10-06"}, "pfx2as": {"date": "2020-02"}},
    ...                     dt.datetime(2019, 5, 12), dt.datetime(2020, 2, 28))
    >>> r["kinds"]["peeringdb"], r["kinds"]["pfx2as"]["gap_days"]
    ({'date': '2022-10-06', 'gap_days': 951, 'stale': True}, 0)
    """
    out: dict[str, Any] = {"measurements": None, "stale_after_days": stale_days, "kinds": {}}
    if first is None or last is None:
        return out
    f, la = first.date(), last.date()
    out["measurements"] = {"first": f.isoformat(), "last": la.isoformat()}
    for kind, info in sorted(kinds.items()):
        date = parse_data_date((info or {}).get("date"))
        gap = None if date is None else _gap_days(date, f, la)
        out["kinds"][kind] = {"date": (info or {}).get("date"), "gap_days": gap,
                              "stale": gap is not None and abs(gap) >= stale_days}
        if closest is not None:
            out["kinds"][kind]["closer"] = closest.get(kind)
    return out


def stale_lines(ref: dict[str, Any], *, command: str = "pathexp annotate") -> list[str]:
    """One warning line per stale kind, with the remedy; [] when none is stale.

    >>> stale_lines(reference_dates({"peeringdb": {"date": "2022-10-06"}},
    ...                             dt.datetime(2019, 5, 12), dt.datetime(2020, 2, 28)))[0]
    'reference data peeringdb of 2022-10-06 is 951 days after the last measurement (2020-02-28): what it says (IXP members, prefixes, relationships) may have changed since; import data of the measurement period, or `pathexp annotate --closest` to take each kind from the snapshot closest in time'
    """
    m = ref.get("measurements")
    if not m:
        return []
    lines = []
    for kind, k in (ref.get("kinds") or {}).items():
        if not k.get("stale"):
            continue
        gap = k["gap_days"]
        where = (f"{gap:,} days after the last measurement ({m['last']})" if gap > 0
                 else f"{-gap:,} days before the first measurement ({m['first']})")
        if "closer" not in k:  # recorded before the other snapshots were compared
            remedy = f", or `{command} --closest` to take each kind from the snapshot closest in time"
        elif k["closer"]:
            remedy = f", or `{command} --closest` (snapshot {k['closer']} has closer {kind} data)"
        else:
            remedy = " (no local snapshot has closer data)"
        lines.append(f"reference data {kind} of {k['date']} is {where}: what it says (IXP members, prefixes, "
                     f"relationships) may have changed since; import data of the measurement period{remedy}")
    return lines


def closer_than_current(snapshots: Sequence[Any], current: Any, first: dt.datetime,
                        last: dt.datetime) -> dict[str, str]:
    """Per kind of the ``current`` snapshot, the snapshot :func:`closest_choices` would take
    instead (``--closest``), where that is another one (a composed snapshot's kind counts as
    coming from the snapshot it was taken from)."""
    source = current.info.get("composed_from") or {}
    choices = closest_choices(snapshots, first, last)
    return {kind: sid for kind, sid in choices.items()
            if kind in (current.info.get("kinds") or {}) and sid != source.get(kind, current.id)}


def closest_choices(snapshots: Sequence[Any], first: dt.datetime, last: dt.datetime) -> dict[str, str]:
    """Per kind, the snapshot whose data's date is closest to the middle of the measurements.

    ``snapshots`` are :class:`analysis.datasets.Snapshot` objects (composed ones are
    skipped). A kind no snapshot dates comes from the newest snapshot holding it. Ties go
    to the newer data.
    """
    mid = (first + (last - first) / 2).date()
    best: dict[str, tuple[tuple[int, int, int], str]] = {}
    for snap in snapshots:  # oldest update first: on a full tie the later snapshot wins
        if snap.info.get("composed_from"):
            continue
        for kind, info in (snap.info.get("kinds") or {}).items():
            date = parse_data_date((info or {}).get("date"))
            # dated before undated; then distance in days; then newer data first
            key = (0, abs((date - mid).days), -date.toordinal()) if date is not None else (1, 0, 0)
            if kind not in best or key <= best[kind][0]:
                best[kind] = (key, snap.id)
    return {kind: sid for kind, (_, sid) in sorted(best.items())}
