# ruff: noqa: F811 - pytest fixtures imported from tests.probes.atlas_server
"""Adversarial tests: one standing test per fault mode of the stand-in Atlas API, through
the real cousteau client, plus a property test over random fault schedules.

Each asserts what must hold whatever the server does: the measurements the *server*
created cost no more than the budget (counted on the server side), no result is lost or
stored twice (after a clean re-run), every failure is one line of a ``ProbeError`` (no
traceback), and the time taken is bounded.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from probes import campaign as cp
from probes import store
from probes.atlas import AtlasClient, CreateOutcomeUnknown, scrub_secret
from probes.campaign.spec import parse_spec
from probes.campaign.state import CampaignState
from probes.config import ApiKey, AtlasLimits, Settings
from probes.errors import AtlasAPIError, BudgetExceeded, ProbeError
from tests.probes.atlas_server import (  # noqa: F401 - fixtures
    TEST_KEY,
    AtlasStandIn,
    Fault,
    FixtureResults,
    WorldResults,
    _Clock,
    atlas_population,
    atlas_tls,
    atlas_world,
    standin,
)

REPO = Path(__file__).resolve().parents[2]
N_TARGETS = 3
COST = N_TARGETS * 4 * 60  # 4 US probes x 3 targets x 60 credits (one-off traceroute)
TARGETS = "addresses = [" + ", ".join(f'"24.39.58.{i}"' for i in range(1, N_TARGETS + 1)) + "]\n"


def nosleep(_: float) -> None:
    pass


def settings_for(srv: AtlasStandIn, **kw) -> Settings:
    base = dict(server=srv.server, ca_bundle=srv.ca_bundle, key=ApiKey(TEST_KEY),
                backoff_base=0.01, backoff_cap=0.05, resolve_window=0.3, max_attempts=3,
                limits=AtlasLimits(max_definitions_per_request=1))
    return Settings(**{**base, **kw})


def spec_for(tmp_path: Path, budget: int = COST, name: str = "adv") -> cp.CampaignSpec:
    text = (f'[campaign]\nname = "{name}"\n\n[measurement]\nprotocol = "ICMP"\n\n'
            f'[[sources]]\ncountry = "US"\nrequested = 4\n\n[targets]\n{TARGETS}\n'
            f'[budget]\nmax_credits = {budget}\n')
    spec = parse_spec(text)
    return spec.__class__(**{**spec.__dict__, "workspace": tmp_path / "ws"})


def resolver(host: str, af: int) -> list[str]:
    return []


def submit(srv: AtlasStandIn, spec: cp.CampaignSpec, **kw) -> cp.SubmitReport:
    s = settings_for(srv, **kw)
    return cp.submit(spec, client=AtlasClient(s, sleep=nosleep), settings=s,
                     resolver=resolver, sleep=nosleep)


def fetch(srv: AtlasStandIn, spec: cp.CampaignSpec, **kw) -> cp.FetchReport:
    s = settings_for(srv, **kw)
    return cp.fetch(spec.campaign, client=AtlasClient(s, sleep=nosleep), settings=s,
                    now=lambda: srv.clock.t)


def one_line(exc: BaseException) -> str:
    """The error is ours (the CLI prints it as one line), with no line break."""
    assert isinstance(exc, ProbeError), repr(exc)
    msg = str(exc)
    assert "\n" not in msg and "Traceback" not in msg and msg
    return msg


def unit_tags(srv: AtlasStandIn) -> Counter:
    return Counter(t for m in srv.measurements() for t in m["tags"] if t.count("-") == 2)


def stored(spec: cp.CampaignSpec) -> list[tuple[int, int, int]]:
    if not spec.campaign.raw_dir.exists():
        return []
    return [(r["msm_id"], r["prb_id"], r["timestamp"]) for r in store.iter_raw(spec.campaign)]


def on_server(srv: AtlasStandIn) -> set[tuple[int, int, int]]:
    return {(r["msm_id"], r["prb_id"], r["timestamp"])
            for m in srv.measurements() for r in srv.results_of(m["id"])}


def committed(spec: cp.CampaignSpec) -> tuple[int, int]:
    with CampaignState.open(spec.campaign, create=False) as s:
        return s.committed(), s.charged()


# ---------------------------------------------------------------------------- credits
@pytest.mark.parametrize("kind", ["applied_502", "applied_reset"])
def test_lost_create_answer_with_lagging_listing_is_adopted_not_recreated(standin, tmp_path,
                                                                        kind):
    """Regression (issue 14): the create succeeded, the answer was lost, and the tag
    listing lagged: main retried the create 6 times (6x the budget)."""
    standin.state.listing_lag = 3  # a new measurement is missing from its first 3 listings
    standin.add_fault(Fault(kind, method="POST", times=1))
    spec = spec_for(tmp_path)
    t0 = time.monotonic()
    rep = submit(standin, spec)
    assert time.monotonic() - t0 < 30
    assert standin.created_cost() == COST <= spec.budget  # counted on the server
    assert len(standin.measurements()) == N_TARGETS and set(unit_tags(standin).values()) == {1}
    assert (rep.created, rep.adopted, rep.duplicates_stopped) == (N_TARGETS - 1, 1, 0)
    assert committed(spec) == (COST, COST)


def test_create_never_listed_stops_the_run_and_keeps_its_reservation(standin, tmp_path):
    standin.state.listing_lag = 10**6  # the listing never shows what was created
    standin.add_fault(Fault("applied_502", method="POST", times=1))
    spec = spec_for(tmp_path)
    with pytest.raises(CreateOutcomeUnknown) as ei:
        submit(standin, spec)
    msg = one_line(ei.value)
    assert "stay reserved" in msg and "re-run submit later" in msg
    assert standin.created_cost() == 240 and committed(spec)[0] == 240
    # the next run looks again first; creating u00001 again would pass the budget
    with pytest.raises(BudgetExceeded) as ei:
        submit(standin, spec)
    assert "earlier attempt of unknown outcome" in one_line(ei.value)
    assert standin.created_cost() <= spec.budget
    assert committed(spec)[0] <= spec.budget


def test_create_not_applied_is_created_again_only_within_the_budget(standin, tmp_path):
    """A 502 before the create was applied: the run stops (unknown outcome); the next run
    does not find it and creates it again as a new attempt, reserved on its own."""
    standin.add_fault(Fault("502", method="POST", times=1, retry_after=None))
    spec = spec_for(tmp_path, budget=COST + 240)
    with pytest.raises(CreateOutcomeUnknown):
        submit(standin, spec)
    assert standin.created_cost() == 0 and committed(spec)[0] == 240
    rep = submit(standin, spec)
    assert rep.created == N_TARGETS and set(unit_tags(standin).values()) == {1}
    assert standin.created_cost() == COST
    assert committed(spec) == (COST + 240, COST)  # the unresolved attempt stays reserved


def test_late_appearing_first_attempt_is_stopped_and_both_are_paid_for(standin, tmp_path):
    standin.state.listing_lag = 10**6
    standin.add_fault(Fault("applied_502", method="POST", times=1))
    spec = spec_for(tmp_path, budget=COST + 240)
    with pytest.raises(CreateOutcomeUnknown):
        submit(standin, spec)
    submit(standin, spec)  # not found: attempt 2 of u00001, within the budget
    for m in standin.state.measurements.values():
        m["_hidden"] = 0  # the first attempt shows up after all
    standin.state.listing_lag = 0
    with CampaignState.open(spec.campaign) as s:  # make the next run look for u00001 again
        s._conn.execute("UPDATE units SET state='intent', msm_id=NULL WHERE unit='u00001'")
    rep = submit(standin, spec)
    assert rep.duplicates_stopped == 1
    assert standin.created_cost() == COST + 240 <= spec.budget
    assert committed(spec) == (COST + 240, COST + 240)


def test_balance_null_is_one_line(standin, tmp_path):
    standin.add_fault(Fault("mangle_balance", path="credits", times=9))
    with pytest.raises(AtlasAPIError) as ei:
        submit(standin, spec_for(tmp_path))
    assert "get credits: field 'current_balance' is null" in one_line(ei.value)
    assert standin.created_cost() == 0


def test_id_null_in_tag_listing_is_one_line_and_creates_nothing_more(standin, tmp_path):
    standin.add_fault(Fault("applied_502", method="POST", times=1))
    standin.add_fault(Fault("mangle_id", path=r"measurements/\?", method="GET", times=99))
    spec = spec_for(tmp_path)
    with pytest.raises(AtlasAPIError) as ei:
        submit(standin, spec)
    assert "list measurements: field 'id' is null" in one_line(ei.value)
    assert standin.created_cost() == 240 <= spec.budget
    standin.clear_faults()
    rep = submit(standin, spec)
    assert rep.adopted == 1 and standin.created_cost() == COST


def test_huge_retry_after_fails_at_once_saying_when(standin, tmp_path):
    standin.add_fault(Fault("429", path="credits", retry_after=590, times=99))
    slept: list[float] = []
    s = settings_for(standin)
    t0 = time.monotonic()
    with pytest.raises(AtlasAPIError) as ei:
        AtlasClient(s, sleep=slept.append).credits()
    msg = one_line(ei.value)
    assert "asks to wait 590 s" in msg and "retry after 20" in msg and msg.endswith("UTC")
    assert slept == [] and time.monotonic() - t0 < 10


def test_long_retry_after_is_announced_once(standin, caplog):
    standin.add_fault(Fault("429", path="credits", retry_after=30, times=1))
    slept: list[float] = []
    with caplog.at_level(logging.WARNING, logger="probes.atlas"):
        AtlasClient(settings_for(standin), sleep=slept.append).credits()
    assert slept == [30.0]
    warned = [r for r in caplog.records if "waiting 30 s" in r.getMessage()]
    assert len(warned) == 1


# ---------------------------------------------------------------------------- deadlines
@pytest.mark.parametrize("kind", ["drip", "endless"])
def test_endless_or_dripping_body_is_cut_off(standin, kind):
    standin.add_fault(Fault(kind, path="credits", times=99, delay=0.2))
    s = settings_for(standin, deadline=1.0, timeout=0.5, max_attempts=2,
                     max_body_bytes=2_000_000)
    t0 = time.monotonic()
    with pytest.raises(AtlasAPIError) as ei:
        AtlasClient(s, sleep=nosleep).credits()
    took = time.monotonic() - t0
    msg = one_line(ei.value)
    assert ("deadline" in msg) if kind == "drip" else ("deadline" in msg or "larger" in msg)
    assert took < 2 * 1.0 + 3  # two attempts of at most the deadline each (+ slack)


def test_fetch_with_dripping_results_ends_then_a_clean_run_gets_everything(standin, tmp_path):
    spec = spec_for(tmp_path, budget=10 * COST)
    submit(standin, spec)
    standin.clock.t += 3600
    standin.add_fault(Fault("drip", path="results", times=2, delay=0.3))
    t0 = time.monotonic()
    f = fetch(standin, spec, deadline=1.0, timeout=0.5, max_attempts=1)
    assert time.monotonic() - t0 < 15
    assert f.errors and all("deadline" in e and "\n" not in e for e in f.errors)
    standin.clear_faults()
    fetch(standin, spec)
    got = stored(spec)
    assert len(got) == len(set(got)) and set(got) == on_server(standin)


# ---------------------------------------------------------------------------- fetch
@pytest.mark.parametrize("kind", ["empty_results", "foreign_results"])
def test_empty_or_foreign_window_does_not_finish_a_measurement(standin, tmp_path, kind):
    """Regression (issue 14): one empty (or other-msm) window marked it done for good."""
    spec = spec_for(tmp_path, budget=10 * COST)
    submit(standin, spec)
    standin.clock.t += 3600  # stopped, results visible
    standin.add_fault(Fault(kind, path="results", times=N_TARGETS))
    f1 = fetch(standin, spec)
    assert f1.done < N_TARGETS
    if kind == "foreign_results":
        assert f1.drops["msm_id mismatch"] > 0 and f1.suspect_windows > 0
    f2 = fetch(standin, spec)
    got = stored(spec)
    assert len(got) == len(set(got)) and set(got) == on_server(standin)
    assert len(got) == N_TARGETS * 4
    rows = cp.status(spec.campaign)
    assert all(r["fetch_done"] for r in rows), (f1.as_dict(), f2.as_dict())


def test_stopped_measurement_with_no_results_waits_for_the_grace(standin, tmp_path):
    spec = spec_for(tmp_path, budget=10 * COST)
    submit(standin, spec)
    for m in standin.state.measurements.values():
        standin.state.msm_probes[m["id"]] = []  # it ran, and no probe sent anything
    standin.clock.t += 3600
    f1 = fetch(standin, spec)
    assert f1.done == 0 and f1.unconfirmed == N_TARGETS
    standin.clock.t += 86_400 + 60
    f2 = fetch(standin, spec)
    assert f2.done == N_TARGETS


@pytest.mark.parametrize("field", ["status", "start_time", "id"])
def test_wrong_typed_measurement_field_is_one_line(standin, tmp_path, field):
    spec = spec_for(tmp_path, budget=10 * COST)
    submit(standin, spec)
    standin.clock.t += 3600
    standin.add_fault(Fault(f"mangle_{field}", path=r"measurements/\d+/$", times=99))
    f = fetch(standin, spec)
    assert len(f.errors) == N_TARGETS and f.records == 0
    assert all(f"field '{field}'" in e and "\n" not in e for e in f.errors), f.errors
    standin.clear_faults()
    fetch(standin, spec)
    assert set(stored(spec)) == on_server(standin)


# ---------------------------------------------------------------------------- secrets
def test_echoed_key_upper_cased_and_truncated_is_scrubbed(standin):
    standin.add_fault(Fault("echo_key", path="credits"))
    with pytest.raises(AtlasAPIError) as ei:
        AtlasClient(settings_for(standin), sleep=nosleep).credits()
    msg = one_line(ei.value)
    assert "HTTP 400" in msg and "***" in msg
    norm = "".join(c for c in TEST_KEY.lower() if c.isalnum())
    flat = "".join(c for c in msg.lower() if c.isalnum())
    assert not any(norm[i:i + 8] in flat for i in range(len(norm) - 7))


@pytest.mark.parametrize("echo", [
    "6F1D2C9E8B7A", "key=6f1d2c9e-8b7a-4c3d", "...D-6F1D2C9E8B", "%2D6f1d2c9e8b7a4c3d%20",
])
def test_scrub_secret_variants(echo):
    key = "6f1d2c9e-8b7a-4c3d-9e0f-123456789abc"
    out = scrub_secret(f"error: {echo} rejected", key)
    flat = "".join(c for c in out.lower() if c.isalnum())
    norm = key.replace("-", "")
    assert not any(norm[i:i + 8] in flat for i in range(len(norm) - 7)), out
    assert out.startswith("error: ") and out.endswith(" rejected")


def test_tag_with_trailing_newline_is_refused():
    from probes.config import parse_server
    from probes.errors import ConfigError

    with pytest.raises(ConfigError):
        parse_spec('[campaign]\nname = "x"\ntags = ["ok\\n"]\n[[sources]]\ncountry = "DE"\n'
                   'requested = 1\n[targets]\naddresses = ["8.8.8.8"]\n[budget]\n'
                   'max_credits = 1\n')
    assert parse_server("127.0.0.1:8443") == "127.0.0.1:8443"


# ---------------------------------------------------------------------------- CLI
@pytest.mark.parametrize(("fault", "fragment"), [
    (Fault("mangle_balance", path="credits", times=99), "field 'current_balance' is null"),
    (Fault("429", path="credits", retry_after=590, times=99), "asks to wait 590 s"),
])
def test_cli_prints_one_line_no_traceback(standin, tmp_path, fault, fragment):
    (tmp_path / "spec.toml").write_text(
        f'[campaign]\nname = "cli"\n\n[[sources]]\ncountry = "US"\nrequested = 4\n\n'
        f'[targets]\n{TARGETS}\n[budget]\nmax_credits = {COST}\n')
    standin.add_fault(fault)
    env = {**os.environ, "RIPE_ATLAS_KEY": TEST_KEY, "PYTHONPATH": str(REPO),
           "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    p = subprocess.run([sys.executable, "-m", "analysis.cli", "campaign", "submit", "spec.toml",
                        "--yes", "--atlas-server", standin.server, "--ca-bundle",
                        str(standin.ca_bundle), "--workspace", str(tmp_path / "ws")],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert fragment in p.stderr and TEST_KEY not in p.stderr
    assert standin.created_cost() == 0


# ---------------------------------------------------------------------------- property
_KINDS = ["ok", "applied_502", "applied_reset", "502", "503", "reset", "400", "429"]


@pytest.mark.slow
@hsettings(max_examples=12, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture,
                                  HealthCheck.too_slow])
@given(schedule=st.lists(st.sampled_from(_KINDS), min_size=1, max_size=6),
       lag=st.integers(0, 25), headroom=st.integers(0, 2))
def test_property_server_created_cost_never_exceeds_the_budget(
        atlas_tls, atlas_population, atlas_world, test_data, tmp_path_factory,
        schedule, lag, headroom):
    probes, anchors = atlas_population
    fixture = FixtureResults.from_bundle(
        test_data / "ripe-atlas" / "pierky-ripe-atlas-monitor-fixtures" / "1033154.json")
    srv = AtlasStandIn(tls=atlas_tls, probes=probes, anchors=anchors, key=TEST_KEY,
                       source=WorldResults(atlas_world, fallback=fixture),
                       now=_Clock(time.time()))
    tmp = tmp_path_factory.mktemp("prop")
    spec = spec_for(tmp, budget=COST + 240 * headroom)
    with srv:
        srv.state.listing_lag = lag
        for kind in schedule:  # the POSTs, in order; "ok" lets one through
            if kind != "ok":
                srv.add_fault(Fault(kind, method="POST", times=1, retry_after=0))
            else:
                srv.add_fault(Fault("slow", method="POST", times=1, delay=0.0))
        for _ in range(len(schedule) + 2):
            try:
                submit(srv, spec)
            except ProbeError as exc:
                one_line(exc)
            assert srv.created_cost() <= spec.budget
            assert committed(spec)[0] <= spec.budget
            assert committed(spec)[0] >= srv.created_cost()
