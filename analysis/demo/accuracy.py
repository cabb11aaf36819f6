"""Accuracy of the pipeline against the synthetic world's ground truth (pure functions).

Every function takes Arrow tables (the world's ``truth/*.parquet`` and the pipeline's
``paths.parquet`` / ``change_events.parquet``) and returns tables or plain dicts; nothing
here reads or writes files.

Units that are compared (sets, so a crossing repeated inside a forwarding loop counts once):

* **flagged crossing** -- the entry of a traceroute into a flagged *family* (the first AS of
  a run of that family's ASes on the path), keyed by ``(msm_id, prb_id, timestamp, family,
  asn)``. A truth crossing into AS23764 right after AS4134 is a hand-over inside China
  Telecom, not an entry, and the pipeline (one crossing per family entry) does not report it.
* **crossing location** -- the same plus where it happened: ``via`` (``ixp`` or
  ``private``) and ``ixp_id``. A truth crossing at an IXP whose peering-LAN hop did not
  answer has an *unobservable location*: no traceroute can tell that an IXP was there.
* **IXP crossing** -- ``(msm_id, prb_id, timestamp, ixp_id, member_asn)``; truth crossings
  whose LAN hop did not answer are *unobservable* and left out of the recall denominator.
* **router owner** -- one responding public router hop ``(msm_id, prb_id, timestamp, hop,
  addr)``: is the AS the pipeline gives it (``owner_asn`` when the pipeline has an
  ownership stage, else the address' origin ``asn``) the AS operating the router?
* **change event** -- a flip of "transits family F" between consecutive traceroutes of a
  (probe, destination) pair, computed from the truth traces independently of
  :func:`analysis.metrics.change_events`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "TRACE_KEY",
    "Score",
    "score",
    "epoch_seconds",
    "detected_crossings",
    "location_calibration",
    "true_entries",
    "detected_ixp_crossings",
    "true_ixp_crossings",
    "in_scope_truth",
    "truth_exposure",
    "exposure_checks",
    "truth_change_events",
    "episodes",
    "diversion_check",
    "PUBLIC_ROUTER_KINDS",
    "router_owner",
    "leak_signals",
]

#: Truth hop kinds that are public router interfaces (the probe's gateway, its access
#: network's private hop and the destination host are left out of router ownership).
PUBLIC_ROUTER_KINDS = ("router", "border", "ixp")

TRACE_KEY = ("msm_id", "prb_id", "timestamp")
_EXAMPLES = 5


@dataclass(frozen=True)
class Score:
    """Set comparison of detected items against true items.

    ``recall`` is over the true items that are observable (``truth_observable``);
    ``recall_all`` over every true item. ``precision`` is over every detected item.
    """

    truth: int
    truth_observable: int
    detected: int
    true_positives: int
    missed: int
    false: int
    missed_examples: list[dict] = field(default_factory=list)
    false_examples: list[dict] = field(default_factory=list)
    false_by_cause: dict[str, int] = field(default_factory=dict)

    @property
    def precision(self) -> float | None:
        return self.true_positives / self.detected if self.detected else None

    @property
    def recall(self) -> float | None:
        tp_obs = self.truth_observable - self.missed
        return tp_obs / self.truth_observable if self.truth_observable else None

    @property
    def recall_all(self) -> float | None:
        return self.true_positives / self.truth if self.truth else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "truth": self.truth,
            "truth_observable": self.truth_observable,
            "detected": self.detected,
            "true_positives": self.true_positives,
            "missed_observable": self.missed,
            "false": self.false,
            "precision": self.precision,
            "recall": self.recall,
            "recall_all": self.recall_all,
            "false_by_cause": dict(sorted(self.false_by_cause.items())),
            "missed_examples": self.missed_examples,
            "false_examples": self.false_examples,
        }


def epoch_seconds(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Integer Unix seconds from a timestamp or integer column.

    >>> import datetime as dt
    >>> epoch_seconds(pa.array([dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc)])).to_pylist()
    [1772409600]
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], col.type)
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.timestamp("s", tz=col.type.tz)).cast(pa.int64())
    return col.cast(pa.int64())


def _fill(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    """Nulls in string key columns become ``""`` so that joins match them."""
    for k in keys:
        c = table.column(k)
        if pa.types.is_string(c.type):
            table = table.set_column(table.schema.get_field_index(k), k, pc.fill_null(c, ""))
    return table


def _distinct(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    """Distinct rows over ``keys`` (string nulls as ``""``)."""
    t = _fill(table.select(list(keys)), keys)
    return t.group_by(list(keys), use_threads=False).aggregate([]).select(list(keys))


def score(
    truth: pa.Table,
    detected: pa.Table,
    *,
    keys: Sequence[str],
    observable: str | None = None,
    cause: str | None = None,
) -> Score:
    """Compare ``detected`` against ``truth`` as sets of ``keys`` rows.

    Parameters
    ----------
    truth, detected : pyarrow.Table
        Tables holding at least ``keys``.
    keys : sequence of str
        The identity of one item.
    observable : str, optional
        Boolean column of ``truth``: items a traceroute can reveal. Unobservable true items
        are left out of the recall denominator (but a detection matching one is a true
        positive).
    cause : str, optional
        String column of ``truth`` explaining an item; a false detection whose trace key
        matches a true item with a cause is counted under it in ``false_by_cause``
        (otherwise under ``"unexplained"``).

    Examples
    --------
    >>> t = pa.table({"k": [1, 2, 3], "obs": [True, True, False]})
    >>> d = pa.table({"k": [1, 4]})
    >>> s = score(t, d, keys=["k"], observable="obs")
    >>> (s.true_positives, s.missed, s.false, s.precision, s.recall)
    (1, 1, 1, 0.5, 0.5)
    """
    keys = list(keys)
    extra = [c for c in (observable, cause) if c]
    t = _fill(truth.select(keys + extra), keys)
    agg = [(c, "max") for c in extra]
    t = t.group_by(keys, use_threads=False).aggregate(agg)
    ren = {f"{observable}_max": "__obs", f"{cause}_max": "__cause"}
    t = t.rename_columns([ren.get(c, c) for c in t.column_names])
    d = _distinct(detected.select(keys), keys)
    tp = t.join(d, keys=keys, join_type="left semi", use_threads=False)
    missed = t.join(d, keys=keys, join_type="left anti", use_threads=False)
    false = d.join(t.select(keys), keys=keys, join_type="left anti", use_threads=False)
    if observable:
        obs = pc.fill_null(t.column("__obs"), False)
        n_obs = int(pc.sum(obs).as_py() or 0)
        missed = missed.filter(pc.fill_null(missed.column("__obs"), False))
    else:
        n_obs = t.num_rows
    by_cause: dict[str, int] = {}
    if false.num_rows:
        trace_keys = [k for k in TRACE_KEY if k in keys]
        if cause and trace_keys:
            why = t.filter(pc.not_equal(pc.fill_null(t.column("__cause"), ""), ""))
            why = why.group_by(trace_keys, use_threads=False).aggregate([("__cause", "max")])
            f = false.join(why, keys=trace_keys, join_type="left outer", use_threads=False)
            labels = pc.fill_null(f.column("__cause_max"), "unexplained").to_pylist()
        else:
            labels = ["unexplained"] * false.num_rows
        for lab in labels:
            by_cause[lab] = by_cause.get(lab, 0) + 1
    return Score(
        truth=t.num_rows,
        truth_observable=n_obs,
        detected=d.num_rows,
        true_positives=tp.num_rows,
        missed=missed.num_rows,
        false=false.num_rows,
        missed_examples=_examples(missed.select(keys)),
        false_examples=_examples(false),
        false_by_cause=by_cause,
    )


def _examples(table: pa.Table) -> list[dict]:
    if not table.num_rows:
        return []
    return table.sort_by([(c, "ascending") for c in table.column_names]).slice(0, _EXAMPLES).to_pylist()


# ---------------------------------------------------------------------------- crossings
def detected_crossings(paths: pa.Table) -> pa.Table:
    """The pipeline's flagged crossings, one row each: trace key, family, asn, via, ixp_id, hop.

    ``via`` is ``"ixp"`` (located at an IXP), ``"private"`` (the pipeline says private
    interconnect) or ``"unknown"`` (any other ``kind``: no claim about the place).
    ``city`` / ``country`` are the located PoP (``pop_city`` / ``pop_country``; null when
    the pipeline did not locate it).
    """
    from analysis.paths import PRIVATE_INTERCONNECT

    lists = paths.column("pop_crossings").combine_chunks()
    flat = pc.list_flatten(lists)
    parent = pa.array(pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64))
    keys = {k: (epoch_seconds(paths.column(k)) if k == "timestamp" else paths.column(k).combine_chunks())
            for k in TRACE_KEY}
    kind = flat.field("kind")
    names = {f.name for f in flat.type}

    def opt(name: str) -> pa.Array:
        return flat.field(name) if name in names else pa.nulls(len(flat), pa.string())

    return pa.table(
        {
            **{k: v.take(parent) for k, v in keys.items()},
            "family": flat.field("family"),
            "asn": flat.field("asn"),
            "via": pc.if_else(pc.equal(kind, "ixp"), "ixp",
                              pc.if_else(pc.equal(kind, PRIVATE_INTERCONNECT), "private", "unknown")),
            "ixp_id": pc.fill_null(flat.field("ixp_id"), ""),
            "hop": flat.field("hop"),
            "city": opt("pop_city"),
            "country": opt("pop_country"),
            "evidence": opt("location_evidence"),
            "confidence": flat.field("location_confidence") if "location_confidence" in names
            else pa.nulls(len(flat), pa.float64()),
        }
    )


def location_calibration(entries: pa.Table, found: pa.Table) -> dict[str, dict[str, Any]]:
    """Per location evidence (the first part of ``location_evidence``): how often the place
    the pipeline gave was right, beside the confidence it gave it.

    ``found`` is :func:`detected_crossings`; a located crossing that matches no true entry
    (a false crossing) counts as a wrong place. Per evidence: ``crossings`` located,
    ``cities`` of them with a city, ``city_precision`` (right city / cities),
    ``country_precision`` (right country / crossings) and ``mean_confidence``.
    """
    key = [*TRACE_KEY, "family", "asn"]
    truth: dict[tuple[Any, ...], tuple[Any, Any]] = {}
    for r in entries.select([*key, "city", "country"]).to_pylist():
        truth.setdefault(tuple(r[k] for k in key), (r["city"], r["country"]))
    out: dict[str, dict[str, Any]] = {}
    for r in found.filter(pc.is_valid(found.column("country"))).to_pylist():
        t_city, t_country = truth.get(tuple(r[k] for k in key), (None, None))
        ev = (r["evidence"] or "none").split("+", 1)[0]
        e = out.setdefault(ev, {"crossings": 0, "cities": 0, "right_city": 0, "right_country": 0, "conf": 0.0})
        e["crossings"] += 1
        e["right_country"] += r["country"] == t_country
        e["conf"] += r["confidence"] or 0.0
        if r["city"] is not None:
            e["cities"] += 1
            e["right_city"] += r["city"] == t_city
    return {ev: {"crossings": e["crossings"], "cities": e["cities"],
                 "city_precision": e["right_city"] / e["cities"] if e["cities"] else None,
                 "country_precision": e["right_country"] / e["crossings"],
                 "mean_confidence": round(e["conf"] / e["crossings"], 4)}
            for ev, e in sorted(out.items())}


def true_entries(
    flagged: pa.Table,
    traces: pa.Table,
    families: Mapping[str, Sequence[int]],
    hops: pa.Table,
) -> pa.Table:
    """Truth flagged crossings that are family entries, with ``location_observable``.

    A crossing into AS ``a`` of family F is an entry when the AS before ``a`` on the true AS
    path is not in F. Where it happened can be seen in a traceroute only when the hops that
    show it answered: for a crossing at an IXP, the peering-LAN hop (else ``cause`` is
    ``"ixp-lan-hop-unresponsive"``); for a private interconnect, the entering hop and the
    hop right before it (else ``"hop-at-boundary-silent"``: a silent hop there could have
    been an IXP). ``location_observable`` is False in those cases. On a traceroute caught
    in a forwarding loop (truth ``loop``) ``cause`` is ``"forwarding-loop"`` otherwise: a
    loop re-enters the family again and again, which the truth counts once.
    """
    fam_of = {int(a): f for f, asns in families.items() for a in asns}
    tk = traces.select([*TRACE_KEY, "as_path", "loop"])
    idx = {(m, p, t): i for i, (m, p, t) in enumerate(zip(*(tk.column(k).to_pylist() for k in TRACE_KEY), strict=True))}
    as_paths = tk.column("as_path").to_pylist()
    keys = zip(*(flagged.column(k).to_pylist() for k in TRACE_KEY), strict=True)
    loops = tk.column("loop").to_pylist()
    entry, looped = [], []
    for key, asn, fam in zip(keys, flagged.column("asn").to_pylist(), flagged.column("family").to_pylist(), strict=True):
        path = as_paths[idx[key]]
        pos = path.index(asn) if asn in path else -1
        entry.append(pos <= 0 or fam_of.get(path[pos - 1]) != fam)
        looped.append(bool(loops[idx[key]]))
    cols = [*TRACE_KEY, "family", "asn", "via", "ixp_id", "city", "country", "hop", "addr", "observable"]
    out = flagged.select(cols).append_column("__loop", pa.array(looped, pa.bool_()))
    out = out.filter(pa.array(entry, pa.bool_()))
    out = out.set_column(out.schema.get_field_index("ixp_id"), "ixp_id", pc.fill_null(out.column("ixp_id"), ""))
    # did the hops that reveal the place answer?
    h = hops.select([*TRACE_KEY, "hop", "responded"])
    h = h.set_column(h.schema.get_field_index("hop"), "hop", h.column("hop").cast(pa.int64()))
    out = out.append_column("__hop", out.column("hop").cast(pa.int64()))
    out = out.append_column("__prev", pc.subtract(out.column("__hop"), 1))
    at = h.rename_columns([*TRACE_KEY, "__hop", "__at_ok"])
    before = h.rename_columns([*TRACE_KEY, "__prev", "__before_ok"])
    out = out.join(at, keys=[*TRACE_KEY, "__hop"], join_type="left outer", use_threads=False)
    out = out.join(before, keys=[*TRACE_KEY, "__prev"], join_type="left outer", use_threads=False)
    at_ok = pc.fill_null(out.column("__at_ok"), False)
    before_ok = pc.fill_null(out.column("__before_ok"), False)
    at_ixp = pc.equal(out.column("via"), "ixp")
    seen = pc.if_else(at_ixp, at_ok, pc.and_(at_ok, before_ok))
    loc_obs = pc.and_(pc.fill_null(out.column("observable"), False), seen)
    cause = pc.if_else(
        seen,
        pc.if_else(out.column("__loop"), pa.scalar("forwarding-loop"), pa.scalar(None, pa.string())),
        pc.if_else(at_ixp, pa.scalar("ixp-lan-hop-unresponsive"), pa.scalar("hop-at-boundary-silent")),
    )
    out = out.drop_columns(["__hop", "__prev", "__at_ok", "__before_ok", "__loop"])
    out = out.append_column("location_observable", loc_obs).append_column("cause", cause)
    return out.sort_by([(k, "ascending") for k in (*TRACE_KEY, "hop")])


def detected_ixp_crossings(paths: pa.Table) -> pa.Table:
    """IXP crossings on the pipeline's AS paths: trace key, ``ixp_id``, ``member_asn``.

    The member is the AS node right after the IXP node (null when the path ends there).
    """
    lists = paths.column("as_path").combine_chunks()
    flat = pc.list_flatten(lists)
    parent = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    is_ixp = pc.starts_with(flat, "IXP:").to_numpy(zero_copy_only=False)
    pos = np.flatnonzero(is_ixp)
    nxt = pos + 1
    ok = nxt < len(flat)
    ok[ok] &= parent[nxt[ok]] == parent[pos[ok]]
    nv = flat.take(pa.array(np.where(ok, nxt, 0), pa.int64())) if len(pos) else pa.array([], pa.string())
    is_as = pc.and_(pa.array(ok, pa.bool_()), pc.match_substring_regex(nv, r"^AS[0-9]+$"))
    digits = pc.utf8_slice_codeunits(pc.if_else(is_as, nv, pa.scalar("AS-1")), 2)
    member = pc.cast(digits, pa.int64()).to_numpy(zero_copy_only=False)
    keys = {k: (epoch_seconds(paths.column(k)) if k == "timestamp" else paths.column(k).combine_chunks())
            for k in TRACE_KEY}
    take = pa.array(parent[pos])
    return pa.table(
        {
            **{k: v.take(take) for k, v in keys.items()},
            "ixp_id": pc.utf8_slice_codeunits(flat.filter(pa.array(is_ixp)), 4),
            "member_asn": pa.array(member, pa.int64(), mask=member < 0),
        }
    )


def true_ixp_crossings(ixp_crossings: pa.Table) -> pa.Table:
    """Truth IXP crossings in the comparison shape (``far_asn`` is the member)."""
    t = ixp_crossings.select([*TRACE_KEY, "ixp_id", "far_asn", "observable", "city", "country"])
    return t.rename_columns([*TRACE_KEY, "ixp_id", "member_asn", "observable", "city", "country"])


# ---------------------------------------------------------------------------- exposure
def in_scope_truth(traces: pa.Table, paths: pa.Table) -> pa.Table:
    """The truth's traceroutes that the analysis kept in scope (``paths.in_scope``).

    Figures are computed over the traceroutes toward the scope's country; the truth they are
    scored against must cover the same traceroutes. Without an ``in_scope`` column, all.
    """
    if "in_scope" not in paths.column_names:
        return traces
    kept = paths.filter(pc.fill_null(paths["in_scope"], False))
    keys = set(zip(kept["msm_id"].to_pylist(), kept["prb_id"].to_pylist(),
                   epoch_seconds(kept["timestamp"]).to_pylist(), strict=True))
    mask = [k in keys for k in zip(traces["msm_id"].to_pylist(), traces["prb_id"].to_pylist(),
                                   epoch_seconds(traces["timestamp"]).to_pylist(), strict=True)]
    return traces.filter(pa.array(mask, pa.bool_()))


def truth_exposure(
    traces: pa.Table, entries: pa.Table, families: Sequence[str], *, pop_country: str = "US"
) -> dict[str, dict[str, float]]:
    """True exposure over the measured traceroutes, per family and ``"any"``.

    ``path``: share of traceroutes whose true path transits the family (truth
    ``families``). ``pop``: share entering the family at a PoP in ``pop_country`` (truth
    family entries whose entry city is in that country, at an IXP or a private
    interconnect) -- the quantity :func:`analysis.metrics.pop_exposure` estimates, from
    below (it counts only the crossings it can locate).
    """
    n = traces.num_rows
    fl = traces.column("families").combine_chunks()
    flat = pc.list_flatten(fl)
    parent = pc.list_parent_indices(fl).to_numpy(zero_copy_only=False)
    key = [traces.column(k).to_numpy() for k in TRACE_KEY]
    at_pop = entries.filter(pc.equal(entries.column("country"), pop_country))
    out = {}
    for fam in [None, *families]:
        if fam is None:
            path_hit = pc.greater(pc.list_value_length(fl), 0).to_numpy(zero_copy_only=False)
            pop_rows = at_pop
        else:
            hit = pc.fill_null(pc.equal(flat, fam), False).to_numpy(zero_copy_only=False)
            path_hit = np.zeros(n, bool)
            path_hit[parent[hit]] = True
            pop_rows = at_pop.filter(pc.equal(at_pop.column("family"), fam))
        pop_keys = set(zip(*(pop_rows.column(k).to_pylist() for k in TRACE_KEY), strict=True))
        k_pop = sum(1 for t in zip(*(c.tolist() for c in key), strict=True) if t in pop_keys) if pop_keys else 0
        out[fam or "any"] = {
            "path": float(path_hit.sum()) / n if n else float("nan"),
            "pop": k_pop / n if n else float("nan"),
            "path_traceroutes": int(path_hit.sum()),
            "pop_traceroutes": k_pop,
        }
    return out


def exposure_checks(report_families: Mapping[str, Any], truth: Mapping[str, Mapping[str, float]]) -> list[dict]:
    """Does each true exposure lie inside the reported 95% interval? One row per family/kind."""
    rows = []
    for fam, t in truth.items():
        entry = report_families.get(fam)
        if entry is None:
            continue
        for kind, tkey in (("path_exposure", "path"), ("pop_exposure", "pop")):
            e = entry[kind]
            lo, hi, est = e["ci_low"], e["ci_high"], e["estimate"]
            true = t[tkey]
            rows.append(
                {
                    "family": fam,
                    "kind": kind,
                    "true": true,
                    "estimate": est,
                    "ci_low": lo,
                    "ci_high": hi,
                    "inside": bool(lo is not None and hi is not None and lo <= true <= hi),
                    "wilson_inside": bool(e["wilson"]["ci_low"] <= true <= e["wilson"]["ci_high"]),
                }
            )
            upper = e.get("possibly")
            if kind == "pop_exposure" and upper and upper.get("ci_high") is not None:
                # the upper bound brackets the truth from above (its interval's upper end)
                rows[-1]["upper_estimate"] = upper["estimate"]
                rows[-1]["below_upper"] = bool(true <= upper["ci_high"])
            bounds = e.get("bounds")
            if kind == "pop_exposure" and bounds and bounds.get("ci_low") is not None \
                    and bounds.get("ci_high") is not None:
                # the partly identified exposure: [located, possibly] with both intervals' ends
                rows[-1]["bounds_inside"] = bool(bounds["ci_low"] <= true <= bounds["ci_high"])
    return rows


# ---------------------------------------------------------------------------- change events
def truth_change_events(traces: pa.Table, *, family: str) -> pa.Table:
    """Flips of "transits ``family``" per (prb_id, dst_addr), from the truth traces.

    Returns ``prb_id, dst_addr, family, event, timestamp, previous_timestamp`` (Unix
    seconds), ``start`` for 0 -> 1 and ``stop`` for 1 -> 0.

    Examples
    --------
    >>> t = pa.table({"prb_id": [1, 1, 1], "dst_addr": ["a"] * 3, "timestamp": [10, 20, 30],
    ...               "families": [[], ["f"], ["f"]]})
    >>> truth_change_events(t, family="f").to_pylist()[0]["event"]
    'start'
    """
    fl = traces.column("families").combine_chunks()
    flat = pc.list_flatten(fl)
    parent = pc.list_parent_indices(fl).to_numpy(zero_copy_only=False)
    x = np.zeros(traces.num_rows, bool)
    x[parent[pc.fill_null(pc.equal(flat, family), False).to_numpy(zero_copy_only=False)]] = True
    prb = traces.column("prb_id").to_numpy()
    dst = pc.dictionary_encode(traces.column("dst_addr").combine_chunks())
    dcode = dst.indices.to_numpy(zero_copy_only=False)
    ts = epoch_seconds(traces.column("timestamp")).to_numpy()
    order = np.lexsort((ts, dcode, prb))
    prb, dcode, ts, x = prb[order], dcode[order], ts[order], x[order]
    same = np.zeros(len(order), bool)
    same[1:] = (prb[1:] == prb[:-1]) & (dcode[1:] == dcode[:-1])
    flip = np.zeros(len(order), bool)
    flip[1:] = same[1:] & (x[1:] != x[:-1])
    j = np.flatnonzero(flip)
    return pa.table(
        {
            "prb_id": pa.array(prb[j], pa.int64()),
            "dst_addr": dst.dictionary.take(pa.array(dcode[j])),
            "family": pa.array([family] * len(j), pa.string()),
            "event": pa.array(np.where(x[j], "start", "stop").tolist(), pa.string()),
            "timestamp": pa.array(ts[j], pa.int64()),
            "previous_timestamp": pa.array(ts[j - 1], pa.int64()),
        }
    )


def episodes(events: pa.Table, *, gap_s: int = 3600, min_pairs: int = 5) -> list[dict]:
    """Group change events into episodes: a burst of starts and the burst of stops ending it.

    A *burst* is a run of events of one family and kind whose successive timestamps are at
    most ``gap_s`` apart and that touches at least ``min_pairs`` (probe, destination) pairs.
    A start burst is closed by the first later stop burst that stops at least half of its
    pairs. For an episode, ``onset`` is bracketed by the last observation before it
    (``onset_after``, max previous_timestamp) and the first diverted one (``onset_by``, min
    timestamp); ``end`` likewise by ``last_seen`` (max previous_timestamp of the stops) and
    ``cleared_by`` (min timestamp of the stops). Times are Unix seconds.

    Examples
    --------
    >>> ev = pa.table({"prb_id": [1, 2, 1, 2], "dst_addr": ["a"] * 4, "family": ["f"] * 4,
    ...                "event": ["start", "start", "stop", "stop"], "timestamp": [100, 110, 900, 905],
    ...                "previous_timestamp": [0, 5, 800, 810]})
    >>> [(e["onset_after"], e["onset_by"], e["last_seen"], e["cleared_by"], e["pairs"]) for e in episodes(ev, gap_s=60, min_pairs=2)]
    [(5, 100, 810, 900, 2)]
    """
    if not events.num_rows:
        return []
    ts_all = epoch_seconds(events.column("timestamp")).to_numpy()
    prev_all = epoch_seconds(events.column("previous_timestamp")).to_numpy()
    fams = events.column("family").to_pylist()
    kinds = events.column("event").to_pylist()
    pairs_all = list(zip(events.column("prb_id").to_pylist(), events.column("dst_addr").to_pylist(), strict=True))
    out = []
    for fam in sorted(set(fams)):
        bursts: dict[str, list[dict]] = {}
        for kind in ("start", "stop"):
            idx = np.array([i for i, (f, k) in enumerate(zip(fams, kinds, strict=True)) if f == fam and k == kind], np.int64)
            bursts[kind] = []
            if not idx.size:
                continue
            idx = idx[np.argsort(ts_all[idx], kind="stable")]
            cut = np.flatnonzero(np.diff(ts_all[idx]) > gap_s) + 1
            for grp in np.split(idx, cut):
                pairs = {pairs_all[i] for i in grp}
                if len(pairs) >= min_pairs:
                    bursts[kind].append(
                        {"pairs": pairs, "first": int(ts_all[grp].min()), "prev_max": int(prev_all[grp].max())}
                    )
        for s in bursts["start"]:
            stop = next(
                (b for b in bursts["stop"] if b["first"] > s["first"] and len(b["pairs"] & s["pairs"]) * 2 >= len(s["pairs"])),
                None,
            )
            out.append(
                {
                    "family": fam,
                    "pairs": len(s["pairs"]),
                    "onset_after": s["prev_max"],
                    "onset_by": s["first"],
                    "last_seen": stop["prev_max"] if stop else None,
                    "cleared_by": stop["first"] if stop else None,
                    "pairs_cleared": len(stop["pairs"] & s["pairs"]) if stop else 0,
                }
            )
    out.sort(key=lambda e: (-e["pairs"], e["onset_by"], e["family"]))
    return out


def diversion_check(found: Sequence[Mapping[str, Any]], *, family: str, start: int, end: int) -> dict:
    """Match the true diversion ``[start, end)`` of ``family`` with the largest detected episode.

    ``detected`` is True when an episode of ``family`` brackets both true boundaries:
    ``onset_after < start <= onset_by`` and ``last_seen < end <= cleared_by`` -- the diversion
    was seen starting and ending exactly in the measurement rounds where it truly did.
    """
    cands = [e for e in found if e["family"] == family]
    best = max(cands, key=lambda e: e["pairs"]) if cands else None
    res: dict[str, Any] = {"family": family, "true_start": start, "true_end": end, "episode": best}
    if best is None:
        res.update(detected=False, onset_ok=False, end_ok=False)
        return res
    onset_ok = best["onset_after"] < start <= best["onset_by"]
    end_ok = best["last_seen"] is not None and best["last_seen"] < end <= best["cleared_by"]
    res.update(
        detected=bool(onset_ok and end_ok),
        onset_ok=bool(onset_ok),
        end_ok=bool(end_ok),
        onset_lag_s=best["onset_by"] - start,
        end_lag_s=(best["cleared_by"] - end) if best["cleared_by"] is not None else None,
    )
    return res


# ---------------------------------------------------------------------------- router owner
def router_owner(truth_hops: pa.Table, annotated: pa.Table) -> dict[str, Any]:
    """Share of responding public router hops whose pipeline AS is the true operator.

    Parameters
    ----------
    truth_hops : pyarrow.Table
        The world's ``truth/hops.parquet`` (trace key, ``hop``, ``addr``, ``responded``,
        ``kind``, ``owner_asn``, ``artefact``).
    annotated : pyarrow.Table
        The pipeline's annotated hops (trace key, ``hop``, ``reply_from``, and
        ``owner_asn`` if the pipeline infers router ownership, else the origin ``asn``).

    Returns
    -------
    dict
        ``scored`` ("owner_asn" or "origin_asn"), ``hops`` (responding public router hops
        found in the annotated table), ``correct``, ``accuracy`` (correct / hops),
        ``unmatched`` (truth hops with no annotated reply), and ``by_artefact``: the same
        per truth artefact label ("none" for clean hops).

    Examples
    --------
    >>> t = pa.table({"msm_id": [1, 1], "prb_id": [2, 2], "timestamp": [3, 3], "hop": [1, 2],
    ...               "addr": ["a", "b"], "responded": [True, True], "kind": ["router", "border"],
    ...               "owner_asn": [10, 20], "artefact": [None, "neighbour-numbered"]})
    >>> a = pa.table({"msm_id": [1, 1], "prb_id": [2, 2], "timestamp": [3, 3], "hop": [1, 2],
    ...               "reply_from": ["a", "b"], "asn": [10, 10]})
    >>> r = router_owner(t, a)
    >>> (r["scored"], r["hops"], r["correct"], r["by_artefact"]["neighbour-numbered"]["accuracy"])
    ('origin_asn', 2, 1, 0.0)
    """
    col = "owner_asn" if "owner_asn" in annotated.column_names else "asn"
    t = truth_hops.filter(
        pc.and_(
            pc.fill_null(truth_hops.column("responded"), False),
            pc.is_in(truth_hops.column("kind"), pa.array(PUBLIC_ROUTER_KINDS)),
        )
    )
    t = t.select([*TRACE_KEY, "hop", "addr", "owner_asn", "artefact"])
    t = t.set_column(t.schema.get_field_index("timestamp"), "timestamp", epoch_seconds(t.column("timestamp")))
    t = t.set_column(t.schema.get_field_index("hop"), "hop", t.column("hop").cast(pa.int64()))
    t = t.set_column(t.schema.get_field_index("artefact"), "artefact",
                     pc.fill_null(t.column("artefact"), "none"))
    a = annotated.select([*TRACE_KEY, "hop", "reply_from", col])
    a = a.filter(pc.is_valid(a.column("reply_from")))
    a = a.set_column(a.schema.get_field_index("timestamp"), "timestamp", epoch_seconds(a.column("timestamp")))
    a = a.set_column(a.schema.get_field_index("hop"), "hop", a.column("hop").cast(pa.int64()))
    a = a.rename_columns([*TRACE_KEY, "hop", "addr", "__got"])
    # one verdict per (hop, address): replies of one hop from one address agree
    a = a.group_by([*TRACE_KEY, "hop", "addr"], use_threads=False).aggregate([("__got", "max")])
    j = t.join(a, keys=[*TRACE_KEY, "hop", "addr"], join_type="inner", use_threads=False)
    ok = pc.fill_null(pc.equal(j.column("__got_max"), j.column("owner_asn")), False)
    j = j.append_column("__ok", ok)

    def summary(rows: pa.Table) -> dict[str, Any]:
        n = rows.num_rows
        k = int(pc.sum(rows.column("__ok")).as_py() or 0) if n else 0
        return {"hops": n, "correct": k, "accuracy": k / n if n else None}

    by = {lab: summary(j.filter(pc.equal(j.column("artefact"), lab)))
          for lab in sorted(set(j.column("artefact").to_pylist()))}
    return {
        "scored": "owner_asn" if col == "owner_asn" else "origin_asn",
        **summary(j),
        "unmatched": t.num_rows - j.num_rows,
        "by_artefact": by,
    }


# ---------------------------------------------------------------------------- BGP leak signals
def leak_signals(valleys: pa.Table, *, leaked_prefixes: Sequence[str], leaker: int, start: int) -> dict[str, Any]:
    """The BGP route-leak signals (:func:`analysis.bgp.valley_signals`) against the leak.

    A prefix is signalled when some signal names it (a flagged AS in a valley, or a new
    more-specific through a flagged AS). True: the leaked more-specifics. Precision is over
    the signalled prefixes (a signal on a prefix that was not leaked is false), recall over
    the leaked ones; ``right`` counts leaked prefixes signalled with the leaker's AS.
    ``other_as`` lists signals on leaked prefixes that name another flagged AS (one the
    leaked paths also cross, not the leaker). ``onset_ok``: the leaker's first signal is
    at the leak's start.

    >>> v = pa.table({"asn": [4134, 4134, 4809], "prefix": ["192.0.2.0/24", "192.0.2.0/24", "198.51.100.0/24"],
    ...               "first_seen": [10, 20, 30]})
    >>> r = leak_signals(v, leaked_prefixes=["192.0.2.0/24", "203.0.113.0/24"], leaker=4134, start=10)
    >>> (r["true"], r["found"], r["precision"], r["recall"], r["onset_ok"])
    (2, 2, 0.5, 0.5, True)
    """
    found = {(a, p) for a, p in zip(valleys.column("asn").to_pylist(), valleys.column("prefix").to_pylist(),
                                    strict=True)}
    leaked = set(leaked_prefixes)
    signalled = {p for _, p in found}
    right = {p for a, p in found if a == leaker and p in leaked}
    times = [epoch for a, epoch in zip(valleys.column("asn").to_pylist(),
                                       epoch_seconds(valleys.column("first_seen")).to_pylist(), strict=True)
             if a == leaker]
    return {
        "true": len(set(leaked_prefixes)), "found": len(signalled), "right": len(right),
        "precision": len(signalled & leaked) / len(signalled) if signalled else None,
        "recall": len(right) / len(leaked) if leaked else None,
        "first_signal": min(times) if times else None, "leak_start": start,
        "onset_ok": bool(times) and min(times) == start,
        "false_examples": sorted(signalled - leaked)[:_EXAMPLES],
        "other_as": sorted(f"AS{a} {p}" for a, p in found if a != leaker and p in leaked)[:_EXAMPLES],
    }
