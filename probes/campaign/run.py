"""The campaign steps that talk to the Atlas API and the campaign state.

* :func:`plan` resolves probe candidates through the probes API, applies the diversity
  rules, resolves targets (with an injected resolver) and prices the probe x target matrix
  (the pure part is :func:`probes.campaign.planner.build_plan`). It writes nothing.
* :func:`submit` freezes the plan in the campaign's SQLite state at its first run, then
  creates the measurements in batches. Before each create it reserves the credits and
  records the intent (one transaction); after it, the measurement ids (one transaction).
  Every measurement carries the campaign tag and a per-measurement tag, so a re-run after
  a crash between create and record adopts the orphan (listing measurements by tag)
  instead of creating a duplicate. Reserved credits never exceed the budget.
* :func:`status` refreshes the measurements' status from the API.
* :func:`fetch` pulls results incrementally (a cursor per measurement, start/stop windows),
  in parallel across measurements, and hands them to :func:`probes.store.ingest_results`
  (which deduplicates); a cursor advances only after its window is ingested.
* :func:`import_measurements` adds existing public measurements to a campaign.

State changes are transactions in ``<campaign>/state.sqlite`` (WAL, see
:mod:`probes.campaign.state`); a process can be killed at any point and the next run
resumes.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from probes.campaign.planner import (
    Plan,
    PlannedTarget,
    build_plan,
    check_target_address,
)
from probes.campaign.spec import CampaignSpec, SampleSpec
from probes.campaign.state import CampaignState, UnitRow
from probes.config import Settings
from probes.errors import (
    AtlasAPIError,
    AuthenticationError,
    BudgetExceeded,
    ConfigError,
    InsufficientCredits,
    NetworkUnavailable,
    TargetRefused,
)
from probes.workspace import Campaign

if TYPE_CHECKING:
    from probes.atlas import AtlasClient

__all__ = [
    "FetchReport",
    "Resolver",
    "Sampler",
    "SubmitReport",
    "fetch",
    "import_measurements",
    "plan",
    "render_plan",
    "resolve_targets",
    "status",
    "submit",
    "system_resolver",
]

log = logging.getLogger(__name__)

#: ``resolver(hostname, af) -> addresses``; an empty list means "does not resolve".
Resolver = Callable[[str, int], Sequence[str]]
#: ``sampler(sample spec, af) -> targets``: draws ``[targets.sample]`` from reference data.
Sampler = Callable[[SampleSpec, int], Sequence[PlannedTarget]]


def system_resolver(host: str, af: int) -> list[str]:
    """Resolve with the system resolver (``getaddrinfo``); [] when it does not resolve."""
    family = socket.AF_INET if af == 4 else socket.AF_INET6
    try:
        infos = socket.getaddrinfo(host, None, family, socket.SOCK_STREAM)
    except socket.gaierror:
        return []
    return sorted({str(i[4][0]) for i in infos})


# ---------------------------------------------------------------------------- plan
def resolve_targets(spec: CampaignSpec, *, client: AtlasClient | None,
                    resolver: Resolver, sampler: Sampler | None = None) -> list[PlannedTarget]:
    """Targets of the spec: addresses checked, hostnames resolved, US anchors listed, and
    ``[targets.sample]`` drawn by ``sampler`` (which needs reference data: the ``pathexp``
    command passes :func:`analysis.targets.planned_sample`)."""
    af = spec.measurement.af
    out: list[PlannedTarget] = []
    for a in spec.targets.addresses:
        if (":" in a) != (af == 6):
            raise TargetRefused(f"target {a!r} is not an IPv{af} address ([measurement].af = {af})")
        out.append(PlannedTarget(a, (check_target_address(a, a),), "address"))
    for h in spec.targets.hostnames:
        addrs = [str(x) for x in resolver(h, af)]
        if not addrs:
            raise TargetRefused(f"target {h!r} does not resolve to any IPv{af} address")
        out.append(PlannedTarget(h, tuple(check_target_address(h, x) for x in addrs),
                                 "hostname"))
    if spec.targets.us_anchors:
        if client is None:
            raise ConfigError("targets.us_anchors needs the anchors API (no client given)")
        anchors = [x for x in client.anchors(country="US")
                   if not x.get("is_disabled") and x.get(f"ip_v{af}")]
        anchors.sort(key=lambda x: int(x["id"]))
        if not anchors:
            raise TargetRefused(f"the anchors API lists no enabled US anchor with IPv{af}")
        for x in anchors[: spec.targets.us_anchors]:
            addr = check_target_address(str(x.get("fqdn") or x[f"ip_v{af}"]), x[f"ip_v{af}"])
            out.append(PlannedTarget(addr, (addr,), "anchor"))
    if spec.targets.sample is not None:
        if sampler is None:
            raise ConfigError(f"{spec.origin}:{spec.targets.sample.line}: [targets.sample] needs "
                              "reference data (a snapshot with pfx2as and ip2country); plan it with "
                              "`pathexp campaign plan`")
        drawn = sampler(spec.targets.sample, af)
        if not drawn:
            raise TargetRefused(f"{spec.origin}:{spec.targets.sample.line}: [targets.sample] drew "
                                "no destination (no announced prefix located in "
                                f"{spec.targets.sample.country} matches)")
        for t in drawn:
            check_target_address(t.name, t.addresses[0])
        out.extend(drawn)
    seen: dict[str, PlannedTarget] = {}
    for t in out:
        seen.setdefault(t.name, t)
    return list(seen.values())


def _candidates(spec: CampaignSpec, client: AtlasClient) -> list[list[dict]]:
    af = spec.measurement.af
    out = []
    for src in spec.sources:
        filters: dict[str, Any] = {"status": 1}
        if src.tags_include:
            filters["tags"] = ",".join(src.tags_include)
        if src.anchors == "only":
            filters["is_anchor"] = "true"
        if src.kind == "country":
            filters["country_code"] = src.value
        elif src.kind == "asn":
            filters[f"asn_v{af}"] = src.value
        elif src.kind == "prefix":
            filters["prefix_v6" if ":" in src.value else "prefix_v4"] = src.value
        if src.kind == "probes":
            out.append(client.probes_by_id(src.value))
        else:
            out.append(client.probes(**filters))
    return out


def plan(spec: CampaignSpec, *, client: AtlasClient, settings: Settings,
         resolver: Resolver, sampler: Sampler | None = None) -> Plan:
    """Resolve candidates and targets, and price the plan (reads only)."""
    targets = resolve_targets(spec, client=client, resolver=resolver, sampler=sampler)
    return build_plan(spec, _candidates(spec, client), targets, rates=settings.rates,
                      limits=settings.limits)


def render_plan(p: Plan, *, balance: int | None = None, max_cols: int = 12) -> str:
    """A text rendering: per-source counts, the probe x target matrix, the cost."""
    lines = [f"campaign {p.spec.name}: {len(p.probes)} probes x {len(p.targets)} targets "
             f"= {len(p.probes) * len(p.targets)} traceroutes per round, "
             f"{len(p.units)} measurement(s)"]
    for label, n_cand, n_sel in p.per_source:
        lines.append(f"  {label}: {n_cand} candidates, {n_sel} selected")
    if p.set_aside:
        lines.append("  set aside: " + ", ".join(f"{k} {v}" for k, v in sorted(p.set_aside.items())))
    names = [t.name for t in p.targets]
    shown = names[:max_cols]
    lines.append("")
    lines.append("probe    asn      cc | " + " ".join(f"T{i + 1}" for i in range(len(shown)))
                 + (" ..." if len(names) > len(shown) else ""))
    in_unit = {(pid, u.target.name) for u in p.units for pid in u.probe_ids}
    af = p.spec.measurement.af
    for pr in p.probes:
        pid = int(pr["id"])
        row = " ".join(f"{'x':>{len(str(i + 1)) + 1}}" if (pid, n) in in_unit else
                       f"{'.':>{len(str(i + 1)) + 1}}" for i, n in enumerate(shown))
        lines.append(f"{pid:<8} {str(pr.get(f'asn_v{af}') or '-'):<8} "
                     f"{str(pr.get('country_code') or '--'):<2} | {row}")
    for i, t in enumerate(shown):
        pt = p.targets[i]
        extra = (f" -> {', '.join(pt.addresses)}" if pt.origin == "hostname" else
                 f"  AS{pt.asn}, located by {pt.evidence}" if pt.origin == "sample" else "")
        lines.append(f"  T{i + 1} = {t}{extra}")
    sampled = [t for t in p.targets if t.origin == "sample"]
    if sampled:
        lines.append(f"  sampled targets ({len(sampled)}): {sampled[0].why.split(': ', 1)[-1]}")
    lines.append("")
    lines.append(f"cost: {p.total_credits} credits = {len(p.probes)} probes x {len(p.targets)} "
                 f"targets x {p.results_per_probe} result(s) x {p.credits_per_result} credits "
                 f"per result; budget {p.spec.budget}")
    if balance is not None:
        lines.append(f"account balance: {balance} credits"
                     + ("" if balance >= p.total_credits else "  (NOT ENOUGH)"))
    return "\n".join(lines)


# ---------------------------------------------------------------------------- submit
@dataclass
class SubmitReport:
    planned: int = 0
    created: int = 0
    adopted: int = 0
    already: int = 0
    failed: int = 0
    duplicates_stopped: int = 0
    committed_credits: int = 0
    charged_credits: int = 0
    budget: int = 0
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _tags(token: str, seq: int | None = None) -> str:
    return f"pathexp-{token}" if seq is None else f"pathexp-{token}-{seq}"


def _definition(spec: CampaignSpec, target: PlannedTarget, token: str, seq: int) -> dict:
    m = spec.measurement
    d: dict[str, Any] = {
        "af": m.af, "target": target.name, "protocol": m.protocol, "paris": m.paris,
        "packets": m.packets, "max_hops": m.max_hops, "first_hop": m.first_hop,
        "size": m.size, "is_public": True,
        "description": f"{spec.description} [pathexp {spec.name} #{seq}]",
        "tags": [_tags(token), _tags(token, seq)],
    }
    if m.port is not None:
        d["port"] = m.port
    if target.origin == "hostname":
        d["resolve_on_probe"] = True
    if not spec.schedule.oneoff:
        d["interval"] = spec.schedule.interval
    return d


def _freeze(st: CampaignState, spec: CampaignSpec, p: Plan) -> None:
    token = st.token()
    units = [{"unit": f"u{u.seq:05d}", "seq": u.seq, "target": u.target.name,
              "probe_ids": u.probe_ids, "cost": u.cost, "tag": _tags(token, u.seq),
              "definition": _definition(spec, u.target, token, u.seq)} for u in p.units]
    st.freeze(digest=spec.digest, budget=spec.budget, units=units, probes=p.probes,
              summary=p.summary())


def _charge(meta: dict, unit: UnitRow) -> int | None:
    """Credits the server charges for a measurement, from its API object: credits per
    result x probes x results per probe (1 for a one-off; one per interval of
    ``[start_time, stop_time]`` otherwise). ``None`` when the object does not say."""
    cpr = meta.get("credits_per_result")
    if not isinstance(cpr, int):
        return None
    n = meta.get("probes_requested") or meta.get("participant_count") or len(unit.probe_ids)
    if meta.get("is_oneoff"):
        rounds = 1
    else:
        a, b, step = meta.get("start_time"), meta.get("stop_time"), meta.get("interval")
        if not (isinstance(a, int) and isinstance(b, int) and isinstance(step, int)) or not step:
            return None
        rounds = (b - a) // step + 1
    return int(cpr) * int(n) * rounds


def _adopt_orphans(st: CampaignState, client: AtlasClient, token: str,
                   units: Sequence[UnitRow], report: SubmitReport) -> set[str]:
    """Find measurements created for ``units`` but not recorded; record them."""
    by_tag = {u.tag: u for u in units}
    found: dict[str, list[dict]] = {}
    for m in client.measurements(tags=_tags(token)):
        for tag in m.get("tags") or []:
            if tag in by_tag:
                found.setdefault(tag, []).append(m)
    pairs = []
    for tag, msms in found.items():
        msms.sort(key=lambda m: int(m["id"]))
        unit = by_tag[tag]
        pairs.append((unit.unit, int(msms[0]["id"])))
        for m in msms:  # the server charged each of them: the ledger says so
            cost = _charge(m, unit)
            st.record_charge(unit.unit, int(m["id"]), unit.cost if cost is None else cost)
        for extra in msms[1:]:  # an unresolved attempt that appeared late: never keep both
            log.warning("measurement %d duplicates %d (unit %s); stopping it", extra["id"],
                        msms[0]["id"], tag)
            client.stop_measurement(int(extra["id"]))
            report.duplicates_stopped += 1
    if pairs:
        st.record_created(pairs)
        st.event("adopted", {"pairs": pairs})
    report.adopted += len(pairs)
    return {u for u, _ in pairs}


#: Most tag listings spent resolving one unknown create outcome (within resolve_window).
RESOLVE_MAX_LISTINGS = 20


def _resolve(st: CampaignState, client: AtlasClient, token: str, units: Sequence[UnitRow],
             report: SubmitReport, settings: Settings,
             sleep: Callable[[float], None]) -> tuple[list[UnitRow], float]:
    """Look for the measurements of ``units`` by tag, patiently: the tag listing of Atlas
    may lag behind a create. Up to :data:`RESOLVE_MAX_LISTINGS` listings, spaced by
    exponential backoff (``backoff_base`` doubling, at most ``backoff_cap``), within
    ``settings.resolve_window`` seconds of waiting (defaults: 8 listings over 120 s).
    Returns the units still not found and the seconds waited."""
    left = list(units)
    waited = 0.0
    for attempt in range(RESOLVE_MAX_LISTINGS):
        done = _adopt_orphans(st, client, token, left, report)
        left = [u for u in left if u.unit not in done]
        if not left:
            break
        delay = min(settings.backoff_cap, settings.backoff_base * 2 ** attempt,
                    settings.resolve_window - waited)
        if delay <= 0:
            break
        if attempt == 0:
            log.warning("looking for %d measurement(s) whose create outcome is unknown, by "
                        "tag, for up to %g s", len(left), settings.resolve_window)
        sleep(delay)
        waited += delay
    return left, waited


def _unresolved_message(units: Sequence[UnitRow], exc: BaseException | None,
                        waited: float, st: CampaignState) -> str:
    names = ", ".join(u.unit for u in units[:5]) + (" ..." if len(units) > 5 else "")
    why = f"{exc}; " if exc is not None else ""
    return (f"{why}the outcome of creating {len(units)} measurement(s) ({names}) is unknown "
            f"and no measurement carries their tags after {waited:.1f} s of looking; "
            f"their credits stay reserved (committed {st.committed()}); re-run submit later: "
            "it looks for them first and creates nothing twice")


def submit(spec: CampaignSpec, *, client: AtlasClient, settings: Settings,
           resolver: Resolver, confirm: Callable[[Plan], bool] | None = None,
           sampler: Sampler | None = None,
           sleep: Callable[[float], None] = time.sleep) -> SubmitReport:
    """Create the campaign's measurements, resuming where an earlier run stopped.

    The budget is a hard invariant: the credits of every create attempt are reserved in
    the ledger before it is sent, and released only when the server refused it. A create
    whose outcome is unknown (timeout, connection lost, 5xx after sending) is resolved by
    tag (:func:`_resolve`) before any further create and never retried blind; when it
    cannot be resolved the run stops (:class:`probes.atlas.CreateOutcomeUnknown`) and the
    reservation stays. The next run looks for it again first; a unit still not found then
    is created again only as a new attempt with its own reservation, within the budget
    (the earlier attempt keeps its reservation in case it shows up late; if it does, the
    later one is stopped).

    Raises :class:`BudgetExceeded` if the plan exceeds the budget (before creating
    anything) or a new attempt would pass it, :class:`InsufficientCredits` if the account
    cannot pay for what is left.
    """
    from probes.atlas import CreateOutcomeUnknown

    if not client.has_key:
        raise AuthenticationError("submitting measurements needs an API key: set RIPE_ATLAS_KEY "
                                  "or put key in a 0600 settings file")
    camp = spec.campaign
    report = SubmitReport(budget=spec.budget)
    with CampaignState.open(camp) as st:
        if st.frozen:
            if st.get("plan_digest") != spec.digest:
                raise ConfigError(
                    f"{spec.origin}: the spec changed since campaign {spec.name!r} was first "
                    "submitted (its plan is frozen); use a new campaign name for a new plan")
        else:
            p = plan(spec, client=client, settings=settings, resolver=resolver, sampler=sampler)
            if confirm is not None and not confirm(p):
                raise ConfigError("submission cancelled")
            _freeze(st, spec, p)
        token = st.token()
        units = st.units()
        report.planned = len(units)
        total = sum(u.cost for u in units if u.state != "imported")
        if total > spec.budget:
            raise BudgetExceeded(f"frozen plan costs {total} > budget {spec.budget}")
        report.already = sum(u.state == "created" for u in units)
        intent = [u for u in units if u.state == "intent"]
        retry: set[str] = set()
        if intent:  # an earlier run stopped with creates of unknown outcome: resolve first
            left, _ = _resolve(st, client, token, intent, report, settings, sleep)
            retry = {u.unit for u in left}
            for u in left:
                log.warning("unit %s: its earlier create is still not found by tag; it is "
                            "created again as a new attempt (the earlier one keeps its %d "
                            "reserved credits)", u.unit, u.cost)
            units = st.units()
        # first attempts first: a unit created again waits for whatever budget is left
        pending = sorted((u for u in units if u.state in ("planned", "intent")),
                         key=lambda u: (u.unit in retry, u.seq))
        if pending:
            need = sum(u.cost for u in pending)
            balance = client.credits()["current_balance"]
            if balance < need:
                raise InsufficientCredits(
                    f"the Atlas account holds {balance} credits but the remaining "
                    f"{len(pending)} measurement(s) of campaign {spec.name!r} cost {need}")
        batches: list[list[UnitRow]] = []
        for u in pending:
            last = batches[-1] if batches else None
            if (last and last[0].probe_ids == u.probe_ids and (u.unit in retry) == (
                    last[0].unit in retry)
                    and len(last) < settings.limits.max_definitions_per_request):
                last.append(u)
            else:
                batches.append([u])
        sch = spec.schedule
        for batch in batches:
            again = batch[0].unit in retry
            try:
                st.reserve(batch, budget=spec.budget, again=again)
            except BudgetExceeded as exc:
                if not retry:
                    raise
                raise BudgetExceeded(
                    f"{exc}: unit(s) {', '.join(sorted(retry))} must be created again but an "
                    "earlier attempt of unknown outcome still holds its credits; re-run "
                    "submit later (the earlier measurement may yet appear)") from exc
            try:
                ids = client.create_traceroutes(
                    [u.definition for u in batch], probe_ids=batch[0].probe_ids,
                    is_oneoff=sch.oneoff, start_time=sch.start, stop_time=sch.stop)
            except CreateOutcomeUnknown as exc:
                left, waited = _resolve(st, client, token, batch, report, settings, sleep)
                if left:
                    msg = _unresolved_message(left, exc, waited, st)
                    st.note_unresolved([u.unit for u in left], msg)
                    report.committed_credits = st.committed()
                    st.event("submit", {**report.as_dict(), "stopped": msg})
                    raise CreateOutcomeUnknown(msg, status=exc.status) from exc
                continue
            except AtlasAPIError as exc:  # refused by the server: nothing was created
                if isinstance(exc, (AuthenticationError, InsufficientCredits, NetworkUnavailable)):
                    st.release_attempt([u.unit for u in batch], state="planned", error=str(exc))
                    raise
                st.record_failed([u.unit for u in batch], str(exc))
                report.failed += len(batch)
                report.failures.append(str(exc))
                continue
            st.record_created([(u.unit, i) for u, i in zip(batch, ids, strict=True)])
            for u, i in zip(batch, ids, strict=True):
                st.record_charge(u.unit, i, u.cost)  # until the measurement object says
            report.created += len(batch)
        report.committed_credits = st.committed()
        report.charged_credits = st.charged()
        st.event("submit", report.as_dict())
    return report


# ---------------------------------------------------------------------------- status
def status(campaign: Campaign, *, client: AtlasClient | None = None) -> list[dict[str, Any]]:
    """One row per measurement unit; refreshed from the API when a client is given."""
    rows = []
    with CampaignState.open(campaign, create=False) as st:
        for u in st.units():
            if client is not None and u.msm_id is not None:
                meta = client.measurement(u.msm_id)
                s = meta.get("status") or {}
                st.record_status(u.msm_id, status_id=s.get("id"), status_name=s.get("name"),
                                 credits_per_result=meta.get("credits_per_result"))
                cost = _charge(meta, u) if u.state == "created" else None
                if cost is not None:
                    st.record_charge(u.unit, u.msm_id, cost)
        for u in st.units():
            cur, done, n = st.cursor(u.msm_id) if u.msm_id is not None else (None, False, 0)
            rows.append({"unit": u.unit, "target": u.target, "probes": len(u.probe_ids),
                         "state": u.state, "msm_id": u.msm_id, "status": u.status_name,
                         "cost": u.cost, "credits_per_result": u.credits_per_result,
                         "records_fetched": n, "fetched_to": cur, "fetch_done": done,
                         "error": u.error})
        committed = st.committed()
        charged = st.charged()
        budget = st.get("budget")
    for r in rows:
        r["committed_credits"] = committed
        r["charged_credits"] = charged
        r["budget"] = None if budget is None else int(budget)
    return rows


# ---------------------------------------------------------------------------- fetch
@dataclass
class FetchReport:
    measurements: int = 0
    done: int = 0
    windows: int = 0
    records: int = 0
    added: int = 0
    duplicates: int = 0
    suspect_windows: int = 0
    unconfirmed: int = 0
    drops: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    client: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["drops"] = dict(self.drops)
        return d


def _windows(meta: dict, cursor: int | None, now: float, limits: Any, *,
             cursor_final: bool = False) -> tuple[list[tuple[int, int | None]], bool]:
    """Result windows ``[a, b]`` still to read; the last one of a finished measurement is
    open-ended (``b = None``): real Atlas results can carry timestamps after ``stop_time``.

    A cursor set while the measurement was running is moved back by ``fetch_overlap``
    (results reach Atlas late); one set after it finished is exact."""
    from probes.atlas import STATUS_FINAL

    s = meta.get("status") or {}
    final = s.get("id") in STATUS_FINAL
    start = int(meta.get("start_time") or 0)
    end_candidates = [meta.get("stop_time"), s.get("when")] if final else []
    end = next((int(x) for x in end_candidates if x), None)
    if end is None:
        end = int(now)
    if not final and meta.get("stop_time"):
        end = min(end, int(meta["stop_time"]))
    back = 0 if (final and cursor_final) else limits.fetch_overlap
    lo = start if cursor is None else max(start, cursor - back)
    out: list[tuple[int, int | None]] = []
    a = lo
    while a <= end:
        b = min(end, a + limits.fetch_window - 1)
        out.append((a, b))
        a = b + 1
    if final:
        if out:
            out[-1] = (out[-1][0], None)
        else:
            out.append((lo, None))
    return out, final


#: Status ids after which a measurement may have no result at all (6 No suitable probes,
#: 7 Failed): an empty final window ends them at once.
_STATUS_NO_RESULTS = frozenset({6, 7})


def _empty_may_end(meta: dict, now: float, settings: Settings) -> bool:
    """Whether an empty final window (read twice) may finish a stopped measurement that
    gave no result: at once for "No suitable probes"/"Failed", else once it has been stopped
    for ``settings.empty_final_grace`` seconds (results reach Atlas late)."""
    s = meta.get("status") or {}
    if s.get("id") in _STATUS_NO_RESULTS:
        return True
    when = s.get("when") or meta.get("stop_time")
    return isinstance(when, int) and now - when >= settings.empty_final_grace


def fetch(campaign: Campaign, *, client: AtlasClient, settings: Settings,
          sink: Callable[[list[dict]], Any] | None = None,
          probe_sink: Callable[[list[dict]], Any] | None = None,
          now: Callable[[], float] = time.time, progress: bool = False,
          msm_ids: Iterable[int] | None = None) -> FetchReport:
    """Fetch new results of the campaign's measurements and hand them to ``sink``.

    ``sink(records)`` defaults to :func:`probes.store.ingest_results` (origin ``"atlas"``),
    ``probe_sink(probe_objects)`` to :func:`probes.store.write_probe_meta`. Both must be
    idempotent: a window is re-read after a crash before its cursor moved.
    """
    if sink is None:
        from probes.store import ingest_results

        def sink(records: list[dict]) -> Any:
            return ingest_results(campaign, records, origin="atlas")
    if probe_sink is None:
        from probes.store import write_probe_meta

        def probe_sink(probes: list[dict]) -> Any:
            return write_probe_meta(campaign, probes)

    report = FetchReport()
    with CampaignState.open(campaign, create=False) as st:
        wanted = None if msm_ids is None else {int(x) for x in msm_ids}
        todo: dict[int, tuple[int | None, bool]] = {}
        for u in st.units(states=("created", "imported")):
            assert u.msm_id is not None
            if wanted is not None and u.msm_id not in wanted:
                continue
            cur, done, _, cur_final = st.cursor_full(u.msm_id)
            if not done:
                todo[u.msm_id] = (cur, cur_final)
        report.measurements = len(todo)
        q: queue.Queue = queue.Queue(maxsize=4 * max(1, settings.fetch_workers))
        stop = threading.Event()
        t_now = now()

        def put(item: tuple) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def work(mid: int, cur: tuple[int | None, bool]) -> None:
            meta = client.measurement(mid)
            windows, final = _windows(meta, cur[0], t_now, settings.limits,
                                      cursor_final=cur[1])
            if not put(("meta", mid, meta, windows, final)):
                return
            for i, (a, b) in enumerate(windows):
                recs = client.results(mid, start=a, stop=b)
                if not put(("window", mid, a, b, recs, final, i == len(windows) - 1)):
                    return
            if final:  # read the final window once more: a stopped measurement is finished
                a = windows[-1][0]  # only when two reads of it agree
                if not put(("confirm", mid, a, client.results(mid, start=a, stop=None))):
                    return

        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        seen_probes: set[int] = set()
        batch: list[dict] = []
        moves: list[tuple[int, int, int, bool, bool]] = []
        hold: dict[int, int] = {}  # msm -> start of a suspect window: the cursor stays there
        first_read: dict[int, tuple[int, set[tuple[int, int]], int]] = {}
        metas: dict[int, dict] = {}
        had = {m: st.cursor(m)[2] for m in todo}  # results fetched in earlier runs
        ours = {u.msm_id: u for u in st.units(states=("created",))}

        def sort_out(mid: int, recs: Any) -> tuple[list[dict], bool]:
            """This measurement's results; others are set aside and counted (suspect)."""
            good = []
            suspect = not isinstance(recs, list)
            for r in recs if isinstance(recs, list) else []:
                if not isinstance(r, dict):
                    report.drops["not an object"] += 1
                    suspect = True
                elif r.get("msm_id") != mid:
                    report.drops["msm_id mismatch"] += 1
                    suspect = True
                else:
                    good.append(r)
                    if isinstance(r.get("prb_id"), int):
                        seen_probes.add(r["prb_id"])
            return good, suspect

        def key(r: dict) -> tuple[int, int]:
            p, t = r.get("prb_id"), r.get("timestamp")
            return (p if isinstance(p, int) else -1, t if isinstance(t, int) else -1)

        def move(mid: int, to: int, n: int, done: bool, final: bool) -> None:
            if mid in hold:
                to, done = min(to, hold[mid]), False
            moves.append((mid, to, n, done, final))

        def flush() -> None:
            if batch:
                ing = sink(list(batch))
                if ing is not None and hasattr(ing, "added"):
                    report.added += int(ing.added)
                    report.duplicates += int(getattr(ing, "duplicates", 0))
                    for k, v in (getattr(ing, "drops", None) or {}).items():
                        report.drops[k] += int(v)
            if moves:
                st.advance_many(moves)  # only after the windows' results are ingested
            batch.clear()
            moves.clear()

        bar = Progress(TextColumn("fetch {task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[records]} records"),
                       console=Console(stderr=True), disable=not progress, transient=False)
        with bar, ThreadPoolExecutor(max_workers=max(1, settings.fetch_workers)) as pool:
            task = bar.add_task(campaign.name, total=len(todo), records=0)
            futures: dict[Future, int] = {pool.submit(work, m, c): m for m, c in todo.items()}
            remaining = set(futures)
            try:
                while remaining or not q.empty():
                    try:
                        item = q.get(timeout=0.05)
                    except queue.Empty:
                        for f in [f for f in remaining if f.done()]:
                            remaining.discard(f)
                            exc = f.exception()
                            if exc is not None:
                                if not isinstance(exc, AtlasAPIError):
                                    f.result()  # re-raise the worker's unexpected error
                                report.errors.append(f"measurement {futures[f]}: {exc}")
                                bar.advance(task)
                        continue
                    if item[0] == "meta":
                        _, mid, meta, windows, final = item
                        metas[mid] = meta
                        s = meta.get("status") or {}
                        st.record_status(mid, status_id=s.get("id"), status_name=s.get("name"),
                                         credits_per_result=meta.get("credits_per_result"))
                        if mid in ours:
                            cost = _charge(meta, ours[mid])
                            if cost is not None:
                                st.record_charge(ours[mid].unit, mid, cost)
                        continue
                    if item[0] == "confirm":
                        _, mid, a, recs = item
                        good, suspect = sort_out(mid, recs)
                        a0, keys, n0 = first_read.pop(mid)
                        again = {key(r) for r in good}
                        fresh = [r for r in good if key(r) not in keys]
                        batch.extend(fresh)
                        report.records += len(fresh)
                        stamps = [k[1] for k in keys | again if k[1] >= 0]
                        done = (not suspect and again == keys
                                and (bool(keys) or had.get(mid, 0) > 0
                                     or _empty_may_end(metas[mid], t_now, settings)))
                        if not done:
                            report.unconfirmed += 1
                        move(mid, max([a0 - 1, *stamps]) + 1 if done else a0,
                             n0 + len(fresh), done, True)
                        if len(batch) >= settings.limits.ingest_batch:
                            flush()
                        if done:
                            report.done += 1
                        bar.advance(task)
                        continue
                    _, mid, a, b, recs, final, end = item
                    last = final and end
                    good, suspect = sort_out(mid, recs)
                    if suspect:
                        report.suspect_windows += 1
                        hold[mid] = min(hold.get(mid, a), a)
                    had[mid] = had.get(mid, 0) + len(good)
                    batch.extend(good)
                    if last:  # the final window of a stopped measurement: confirm it first
                        first_read[mid] = (a, {key(r) for r in good}, len(good))
                    else:
                        if b is None:  # pragma: no cover - only the last window is open
                            b = a
                        move(mid, b + 1, len(good), False, final)
                    if len(batch) >= settings.limits.ingest_batch:
                        flush()
                    report.windows += 1
                    report.records += len(good)
                    bar.update(task, records=report.records)
                    if end and not final:
                        bar.advance(task)
                flush()
            finally:
                stop.set()
        missing = seen_probes - st.known_probes()
        if missing:
            try:
                st.add_probes(client.probes_by_id(missing))
            except AtlasAPIError as exc:
                report.errors.append(f"probe metadata: {exc}")
        if report.records or missing:
            objs = st.probe_objects()
            if objs:
                probe_sink(objs)
        report.client = client.stats.as_dict()
        st.event("fetch", report.as_dict())
    return report


# ---------------------------------------------------------------------------- import
def import_measurements(campaign: Campaign, msm_ids: Iterable[int], *,
                        client: AtlasClient, since: int | None = None,
                        now: Callable[[], float] = time.time,
                        lookback: int = 86_400) -> list[int]:
    """Add existing (public) traceroute measurements to a campaign; returns the new ids.

    Their results are fetched from ``since`` (Unix seconds) on. Without ``since``, a
    finished measurement is fetched whole and a running one (built-in and anchoring
    measurements run for years) from ``lookback`` seconds ago.
    """
    from probes.atlas import STATUS_FINAL

    added = []
    metas = []
    for mid in msm_ids:
        meta = client.measurement(int(mid))
        kind = meta.get("type")
        kind = kind.get("name") if isinstance(kind, dict) else kind
        if kind != "traceroute":
            raise ConfigError(f"measurement {mid} is a {kind} measurement, not a traceroute")
        metas.append(meta)
    with CampaignState.open(campaign) as st:
        for meta in metas:
            start = since
            if start is None and (meta.get("status") or {}).get("id") not in STATUS_FINAL:
                start = int(now()) - lookback
            if st.record_imported(meta, since=start):
                added.append(int(meta["id"]))
    return added

