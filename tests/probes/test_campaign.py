# ruff: noqa: F811 - pytest fixtures imported from tests.probes.atlas_server
"""Campaigns: spec errors, planner (with a budget property), submit/fetch/import against the
stand-in Atlas API, orphan adoption, and a search of every output for the API key."""

from __future__ import annotations

import json
import lzma
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from probes import campaign as cp
from probes import store
from probes.atlas import AtlasClient
from probes.campaign import run
from probes.campaign.planner import PlannedTarget, build_plan, check_target_address
from probes.campaign.spec import parse_spec
from probes.config import ApiKey, AtlasLimits, CreditRates, Settings
from probes.errors import (
    AuthenticationError,
    BudgetExceeded,
    ConfigError,
    InsufficientCredits,
    TargetRefused,
)
from tests.probes.atlas_server import (  # noqa: F401 - fixtures
    TEST_KEY,
    AtlasStandIn,
    Fault,
    atlas_population,
    atlas_tls,
    atlas_world,
    standin,
    v2_measurement_from_v1,
)

REPO = Path(__file__).resolve().parents[2]


def settings_for(srv: AtlasStandIn, key: str | None = TEST_KEY, **kw) -> Settings:
    return Settings(server=srv.server, ca_bundle=srv.ca_bundle,
                    key=ApiKey(key) if key else None, backoff_base=0.01, backoff_cap=0.05, **kw)


def spec_text(*, name="t1", sources=None, targets=None, budget=100000, extra="") -> str:
    sources = sources or '[[sources]]\ncountry = "US"\nrequested = 4\n'
    targets = targets or 'addresses = ["24.39.56.10"]\n'
    return (f'[campaign]\nname = "{name}"\n\n[measurement]\nprotocol = "ICMP"\n{extra}\n'
            f'{sources}\n[targets]\n{targets}\n[budget]\nmax_credits = {budget}\n')


RESOLVE = {"ok.example": ["24.39.56.10"], "priv.example": ["10.1.2.3"], "localhost": ["127.0.0.1"]}


def resolver(host: str, af: int) -> list[str]:
    return RESOLVE.get(host, [])


# ---------------------------------------------------------------------------- spec errors
BAD_SPECS = [
    # (text, line, expected fragment)
    ('[campaign]\nname = "x"\n[[sources]]\ncountry = "QQ"\nrequested = 1\n[targets]\n'
     'addresses = ["8.8.8.8"]\n[budget]\nmax_credits = 1\n', 4,
     "[[sources]] #1.country: unknown country code 'QQ'"),
    ('[campaign]\nname = "x"\n[[sources]]\ncountry = "DE"\nrequested = 1\n[[sources]]\n'
     'asn = 3320\nrequested = 0\n[targets]\naddresses = ["8.8.8.8"]\n[budget]\nmax_credits = 1\n',
     8, "[[sources]] #2.requested: must be an integer in [1, 100000]"),
    ('[campaign]\nname = "x"\n[measurement]\nprotocol = "SCTP"\n[[sources]]\ncountry = "DE"\n'
     'requested = 1\n[targets]\naddresses = ["8.8.8.8"]\n[budget]\nmax_credits = 1\n', 4,
     "[measurement].protocol: must be ICMP, UDP or TCP"),
    ('[campaign]\nname = "x"\ncolour = 1\n[[sources]]\ncountry = "DE"\nrequested = 1\n'
     '[targets]\naddresses = ["8.8.8.8"]\n[budget]\nmax_credits = 1\n', 3,
     "[campaign].colour: unknown field"),
    ('[campaign]\nname = "x"\n[[sources]]\ncountry = "DE"\nrequested = 1\n[targets]\n'
     'addresses = ["8.8.8.300"]\n[budget]\nmax_credits = 1\n', 7,
     "[targets].addresses: not an IP address: '8.8.8.300'"),
    ('[campaign]\nname = "x"\n[[sources]]\ncountry = "DE"\nrequested = 1\n[targets]\n'
     'addresses = ["8.8.8.8"]\n[schedule]\ntype = "interval"\ninterval = 600\nstart = 100\n'
     '[budget]\nmax_credits = 1\n', 8, "[schedule].stop: an interval schedule needs start and stop"),
    ('[campaign]\nname = "x"\n[[sources]]\ncountry = "DE"\nrequested = 1\n[targets]\n'
     'addresses = ["8.8.8.8"]\n[budget]\nmax_credit = 1\n', 9, "[budget].max_credit: unknown field"),
    ('[campaign]\nname = "x"\n[[sources]]\ncountry = "DE"\nasn = 1\nrequested = 1\n[targets]\n'
     'addresses = ["8.8.8.8"]\n[budget]\nmax_credits = 1\n', 3, "give exactly one of"),
    ('[campaign]\nname = "x y"\n[[sources]]\ncountry = "DE"\nrequested = 1\n[targets]\n'
     'addresses = ["8.8.8.8"]\n[budget]\nmax_credits = 1\n', 2, "[campaign].name: invalid campaign"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), BAD_SPECS)
def test_bad_spec_names_line_and_field(text, line, fragment):
    with pytest.raises(ConfigError) as ei:
        parse_spec(text, origin="spec.toml")
    msg = str(ei.value)
    assert msg.startswith(f"spec.toml:{line}: "), msg
    assert fragment in msg, msg


def test_toml_syntax_error_names_line():
    with pytest.raises(ConfigError, match=r"spec.toml: invalid TOML: .*line 3"):
        parse_spec('[campaign]\nname = "x"\nbudget = = 3\n', origin="spec.toml")


def test_example_spec_is_valid():
    spec = cp.load_spec(REPO / "probes" / "campaign_example.toml")
    assert spec.measurement.paris == 16 and spec.budget == 20000
    assert [s.kind for s in spec.sources] == ["country", "asn", "area"]


def test_targets_file_errors_name_its_line(tmp_path):
    (tmp_path / "t.txt").write_text("# comment\n8.8.8.8\nok.example\nbad host name\n")
    text = spec_text(targets='file = "t.txt"\n')
    with pytest.raises(ConfigError, match=r"t.txt:4: one target per line"):
        parse_spec(text, origin="s.toml", base=tmp_path)


# ---------------------------------------------------------------------------- targets
@pytest.mark.parametrize(("targets", "fragment"), [
    ('addresses = ["10.0.0.1"]', "'10.0.0.1' is a private address"),
    ('addresses = ["127.0.0.1"]', "loopback"),
    ('addresses = ["224.0.0.5"]', "multicast"),
    ('hostnames = ["localhost"]', "'localhost' is a loopback address (localhost resolves to"),
    ('hostnames = ["priv.example"]', "priv.example resolves to 10.1.2.3"),
    ('hostnames = ["nowhere.example"]', "'nowhere.example' does not resolve"),
    # special-purpose space Python may call global, and IPv6 forms that carry private IPv4
    ('addresses = ["192.0.0.8"]', "'192.0.0.8' is a reserved address"),
    ('addresses = ["198.18.0.1"]', "'198.18.0.1' is a private address"),
])
def test_refused_targets(targets, fragment):
    spec = parse_spec(spec_text(targets=targets + "\n"))
    with pytest.raises(TargetRefused) as ei:
        cp.resolve_targets(spec, client=None, resolver=resolver)
    assert fragment in str(ei.value)


@pytest.mark.parametrize(("address", "carried"), [("2002:a00:1::1", "10.0.0.1"),
                                                  ("::ffff:192.168.1.1", "192.168.1.1"),
                                                  ("2002:c000:204::1", "192.0.2.4")])
def test_ipv6_forms_carrying_private_ipv4_are_refused(address, carried):
    with pytest.raises(TargetRefused, match=re.escape(f"({address} carries {carried})")):
        check_target_address(address, address)


def test_check_target_address_accepts_public():
    assert check_target_address("x", "24.39.56.10") == "24.39.56.10"
    assert check_target_address("x", "192.0.0.9") == "192.0.0.9"  # PCP anycast: global
    assert check_target_address("x", "2002:1827:380a::1") == "2002:1827:380a::1"  # 6to4 of 24.39.56.10


# ---------------------------------------------------------------------------- planner
def test_plan_selects_diverse_probes_and_prices_the_matrix(standin, test_data):
    text = spec_text(sources='[[sources]]\ncountry = "DE"\nrequested = 50\nmax_per_asn = 1\n',
                     targets='addresses = ["24.39.56.10"]\nhostnames = ["ok.example"]\n'
                             'us_anchors = 2\n')
    spec = parse_spec(text)
    s = settings_for(standin)
    p = cp.plan(spec, client=AtlasClient(s), settings=s, resolver=resolver)
    # oracle: connected DE probes of the stand-in population, one per AS
    de = [q for q in standin.state.probes.values()
          if q["country_code"] == "DE" and q["status"]["id"] == 1]
    assert len(p.probes) == len({q["asn_v4"] for q in de})
    assert len({q["asn_v4"] for q in p.probes}) == len(p.probes)
    us_anchors = sorted((a for a in standin.state.anchors
                         if a["country"] == "US" and not a["is_disabled"]), key=lambda a: a["id"])
    assert [t.name for t in p.targets] == ["24.39.56.10", "ok.example"] + [
        a["ip_v4"] for a in us_anchors[:2] if a["ip_v4"] != "24.39.56.10"]
    assert p.credits_per_result == 60  # default one-off traceroute
    assert p.total_credits == len(p.probes) * len(p.targets) * 60
    out = cp.render_plan(p, balance=5)
    assert "NOT ENOUGH" in out and f"{p.total_credits} credits" in out
    assert {method for method, _, _ in standin.log} == {"GET"}  # plan writes nothing remote


@pytest.mark.parametrize(("source", "oracle"), [
    ('asn = 6830\nrequested = 100', lambda p: p.get("asn_v4") == 6830),
    ('prefix = "24.0.0.0/8"\nrequested = 1000',
     lambda p: (p.get("address_v4") or "").startswith("24.")),
    ('area = "South-East"\nrequested = 500',
     lambda p: p["geometry"]["coordinates"][0] >= 60 and p["geometry"]["coordinates"][1] < 35),
    ('probes = [2060, 2101, 10743]', lambda p: p["id"] in (2060, 2101, 10743)),
    ('country = "US"\nrequested = 500\nanchors = "only"', lambda p: p["country_code"] == "US"
     and p.get("is_anchor")),
    ('country = "US"\nrequested = 500\nanchors = "exclude"\ntags_exclude = ["nat"]',
     lambda p: p["country_code"] == "US" and not p.get("is_anchor")
     and "nat" not in {t["slug"] for t in p["tags"]}),
])
def test_each_source_kind_selects_what_it_says(standin, source, oracle):
    spec = parse_spec(spec_text(sources=f"[[sources]]\n{source}\n"))
    s = settings_for(standin)
    p = cp.plan(spec, client=AtlasClient(s), settings=s, resolver=resolver)
    want = {q["id"] for q in standin.state.probes.values()
            if q["status"]["id"] == 1 and oracle(q)}
    assert want and {q["id"] for q in p.probes} == want


def test_no_probes_matching_names_the_source(standin):
    spec = parse_spec(spec_text(sources='[[sources]]\ncountry = "IS"\nrequested = 3\n'),
                      origin="s.toml")
    s = settings_for(standin)
    with pytest.raises(ConfigError, match=r"s.toml:7: no probes match source #1 \(country IS\)"):
        cp.plan(spec, client=AtlasClient(s), settings=s, resolver=resolver)


def test_plan_over_budget_is_refused_and_submit_creates_nothing(standin, tmp_path):
    spec = parse_spec(spec_text(budget=239))  # 4 probes x 1 target x 60 = 240
    spec = spec.__class__(**{**spec.__dict__, "workspace": tmp_path})
    s = settings_for(standin)
    c = AtlasClient(s)
    with pytest.raises(BudgetExceeded, match="costs 240 credits"):
        cp.plan(spec, client=c, settings=s, resolver=resolver)
    with pytest.raises(BudgetExceeded):
        cp.submit(spec, client=c, settings=s, resolver=resolver)
    assert standin.measurements() == []


def _pool(n: int, n_as: int) -> list[dict]:
    return [{"id": i + 1, "asn_v4": 100 + i % n_as, "address_v4": f"24.0.{i // 250}.{i % 250 + 1}",
             "status": {"id": 1}, "tags": [], "is_anchor": False, "country_code": "DE"}
            for i in range(n)]


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_probes=st.integers(1, 60), n_as=st.integers(1, 10), requested=st.integers(1, 80),
    max_per_asn=st.one_of(st.none(), st.integers(1, 5)), n_targets=st.integers(1, 6),
    packets=st.integers(1, 16), size=st.integers(0, 2048), oneoff=st.booleans(),
    interval=st.integers(60, 7200), span=st.integers(0, 3 * 86400),
    budget=st.integers(0, 400_000), chunk=st.integers(1, 20),
)
def test_property_no_accepted_plan_exceeds_its_budget(n_probes, n_as, requested, max_per_asn,
                                                      n_targets, packets, size, oneoff,
                                                      interval, span, budget, chunk):
    sched = ('[schedule]\ntype = "oneoff"\n' if oneoff else
             f'[schedule]\ntype = "interval"\ninterval = {interval}\nstart = 1000\n'
             f'stop = {1001 + span}\n')
    mpa = f"max_per_asn = {max_per_asn}\n" if max_per_asn else ""
    text = (f'[campaign]\nname = "p"\n[measurement]\npackets = {packets}\nsize = {size}\n'
            f'[[sources]]\ncountry = "DE"\nrequested = {requested}\n{mpa}'
            f'[targets]\naddresses = ["8.8.8.8"]\n{sched}[budget]\nmax_credits = {budget}\n')
    spec = parse_spec(text)
    targets = [PlannedTarget(f"24.1.0.{i + 1}", (f"24.1.0.{i + 1}",), "address")
               for i in range(n_targets)]
    try:
        p = build_plan(spec, [_pool(n_probes, n_as)], targets, rates=CreditRates(),
                       limits=AtlasLimits(max_probes_per_measurement=chunk))
    except BudgetExceeded:
        # refused: then the independent price is above the budget
        per_as = max_per_asn or n_probes
        n_sel = min(requested, sum(min(per_as, len(range(a, n_probes, n_as)))
                                   for a in range(n_as)))
        rpp = 1 if oneoff else (1 + span) // interval + 1
        cpr = 10 * packets * max(1, -(-size // 1500)) * (2 if oneoff else 1)
        assert n_sel * n_targets * rpp * cpr > budget
        return
    assert p.total_credits <= budget
    assert sum(u.cost for u in p.units) == p.total_credits
    assert all(len(u.probe_ids) <= chunk for u in p.units)
    covered = Counter((pid, u.target.name) for u in p.units for pid in u.probe_ids)
    assert set(covered.values()) == {1} and len(covered) == len(p.probes) * n_targets


# ---------------------------------------------------------------------------- submit/fetch
def _spec(tmp_path: Path, **kw) -> cp.CampaignSpec:
    spec = parse_spec(spec_text(**kw))
    return spec.__class__(**{**spec.__dict__, "workspace": tmp_path / "ws"})


def _stored_keys(campaign) -> list[tuple[int, int, int]]:
    return [(r["msm_id"], r["prb_id"], r["timestamp"]) for r in store.iter_raw(campaign)]


def _server_keys(srv: AtlasStandIn, ids) -> set[tuple[int, int, int]]:
    return {(r["msm_id"], r["prb_id"], r["timestamp"]) for m in ids for r in srv.results_of(m)}


def test_submit_fetch_roundtrip_with_world_results(standin, tmp_path, atlas_world):
    spec = _spec(tmp_path, targets='addresses = ["24.39.56.10", "24.39.56.11"]\n'
                                   'hostnames = ["ok.example"]\n')
    s = settings_for(standin)
    c = AtlasClient(s)
    rep = cp.submit(spec, client=c, settings=s, resolver=resolver)
    assert (rep.planned, rep.created, rep.failed) == (3, 3, 0)
    assert rep.committed_credits == 3 * 4 * 60 <= spec.budget
    msms = standin.measurements()
    assert len(msms) == 3 and all(m["paris"] == 16 and m["protocol"] == "ICMP" for m in msms)
    assert standin.state.spent == 3 * 4 * 60
    # a second submit creates nothing
    again = cp.submit(spec, client=c, settings=s, resolver=resolver)
    assert (again.created, again.already) == (0, 3) and len(standin.measurements()) == 3
    standin.clock.t += 3600
    f = cp.fetch(spec.campaign, client=c, settings=s)
    ids = [m["id"] for m in msms]
    want = _server_keys(standin, ids)
    assert len(want) == 12
    got = _stored_keys(spec.campaign)
    assert len(got) == len(set(got)) and set(got) == want
    assert (f.records, f.added, f.done) == (12, 12, 3)
    # results are the world's traceroutes for (probe, target, time)
    r = next(store.iter_raw(spec.campaign))
    m = next(m for m in msms if m["id"] == r["msm_id"])
    expect = atlas_world.traceroute(r["prb_id"], m["target_ip"], r["timestamp"],
                                    msm_id=m["id"], proto="ICMP", paris_id=r["paris_id"])
    assert r["result"] == expect["result"]
    meta = store.read_probe_meta(spec.campaign)
    assert sorted(meta.column("prb_id").to_pylist()) == sorted({k[1] for k in want})
    # nothing new: a second fetch does no work (progress bar on: rich renders to stderr)
    f2 = cp.fetch(spec.campaign, client=c, settings=s, progress=True)
    assert (f2.measurements, f2.records) == (0, 0)
    rows = cp.status(spec.campaign, client=c)
    assert {r["status"] for r in rows} == {"Stopped"} and all(r["fetch_done"] for r in rows)


def test_changed_spec_after_submit_is_refused(standin, tmp_path):
    spec = _spec(tmp_path)
    s = settings_for(standin)
    cp.submit(spec, client=AtlasClient(s), settings=s, resolver=resolver)
    changed = _spec(tmp_path, budget=99999)
    with pytest.raises(ConfigError, match="spec changed since campaign 't1' was first submitted"):
        cp.submit(changed, client=AtlasClient(s), settings=s, resolver=resolver)
    rows = cp.status(spec.campaign)  # offline: recorded state only
    assert [(r["state"], r["committed_credits"], r["budget"]) for r in rows] == [
        ("created", 240, 100000)]


def test_rejected_create_releases_its_credits(standin, tmp_path):
    # 3 targets, one definition per request: the first create is rejected (HTTP 400)
    spec = _spec(tmp_path, targets='addresses = ["24.39.56.10", "24.39.56.11", "24.39.56.12"]\n')
    s = settings_for(standin, limits=AtlasLimits(max_definitions_per_request=1))
    standin.add_fault(Fault("400", method="POST", path=".*"))
    rep = cp.submit(spec, client=AtlasClient(s), settings=s, resolver=resolver)
    assert (rep.created, rep.failed) == (2, 1) and "HTTP 400" in rep.failures[0]
    assert rep.committed_credits == 2 * 240 and len(standin.measurements()) == 2
    states = sorted(r["state"] for r in cp.status(spec.campaign))
    assert states == ["created", "created", "failed"]


def test_one_process_per_campaign(standin, tmp_path):
    from probes.campaign.state import CampaignState
    from probes.errors import StoreError

    spec = _spec(tmp_path)
    s = settings_for(standin)
    cp.submit(spec, client=AtlasClient(s), settings=s, resolver=resolver)
    with CampaignState.open(spec.campaign):
        r = subprocess.run([sys.executable, "-c", (
            "import sys; from probes import campaign as cp; from probes.workspace import Campaign;"
            f"cp.status(Campaign('t1', {str(tmp_path / 'ws')!r}))")],
            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
            timeout=60)
        assert r.returncode != 0 and "another pathexp process is working on campaign" in r.stderr
    assert StoreError.__name__ in r.stderr


def test_progress_bar_shows_fetch(standin, tmp_path, capsys):
    spec = _spec(tmp_path)
    s = settings_for(standin)
    c = AtlasClient(s)
    cp.submit(spec, client=c, settings=s, resolver=resolver)
    standin.clock.t += 3600
    capsys.readouterr()
    f = cp.fetch(spec.campaign, client=c, settings=s, progress=True)
    err = capsys.readouterr().err
    assert f.records == 4 and "fetch t1" in err and "4 records" in err


@pytest.mark.parametrize("kind", ["applied_502", "applied_reset"])
def test_create_lost_in_transit_is_adopted_not_duplicated(standin, tmp_path, kind):
    spec = _spec(tmp_path, targets='addresses = ["24.39.56.10", "24.39.56.11", "24.39.56.12"]\n')
    s = settings_for(standin)
    standin.add_fault(Fault(kind, method="POST", times=1))
    rep = cp.submit(spec, client=AtlasClient(s), settings=s, resolver=resolver)
    assert rep.created + rep.adopted == 3 and rep.adopted >= 1
    tags = Counter(t for m in standin.measurements() for t in m["tags"] if t.count("-") == 2)
    assert len(standin.measurements()) == 3 and set(tags.values()) == {1}


def test_rerun_after_crash_between_create_and_record_adopts_the_orphan(standin, tmp_path):
    """Rebuild exactly what a process killed after its create request left behind: units
    in state 'intent' with credits reserved, and on the server the measurement it created."""
    from probes.campaign.state import CampaignState

    spec = _spec(tmp_path, targets='addresses = ["24.39.56.10", "24.39.56.11"]\n')
    s = settings_for(standin)
    c = AtlasClient(s)
    p = cp.plan(spec, client=c, settings=s, resolver=resolver)
    with CampaignState.open(spec.campaign) as st:
        run._freeze(st, spec, p)
        units = st.units()
        st.reserve(units[:1], budget=spec.budget)
        (orphan,) = c.create_traceroutes([units[0].definition], probe_ids=units[0].probe_ids,
                                         is_oneoff=True)
        assert st.committed() == units[0].cost
    rep = cp.submit(spec, client=c, settings=s, resolver=resolver)
    assert (rep.adopted, rep.created, rep.duplicates_stopped) == (1, 1, 0)
    assert len(standin.measurements()) == 2
    rows = cp.status(spec.campaign)
    assert rows[0]["msm_id"] == orphan and rows[0]["committed_credits"] == 2 * 240


def test_two_measurements_for_one_unit_keep_the_first_and_stop_the_other(standin, tmp_path):
    from probes.campaign.state import CampaignState

    spec = _spec(tmp_path)
    s = settings_for(standin)
    c = AtlasClient(s)
    p = cp.plan(spec, client=c, settings=s, resolver=resolver)
    with CampaignState.open(spec.campaign) as st:
        run._freeze(st, spec, p)
        (u,) = st.units()
        st.reserve([u], budget=spec.budget)
        ids = [c.create_traceroutes([u.definition], probe_ids=u.probe_ids, is_oneoff=True)[0]
               for _ in range(2)]
    rep = cp.submit(spec, client=c, settings=s, resolver=resolver)
    assert (rep.adopted, rep.created, rep.duplicates_stopped) == (1, 0, 1)
    assert cp.status(spec.campaign)[0]["msm_id"] == min(ids)
    stopped = {m["id"] for m in standin.measurements() if m.get("_stopped_at") is not None}
    assert stopped == {max(ids)}


def test_insufficient_credits_refuses_before_creating(standin, tmp_path):
    standin.state.balance = 200
    spec = _spec(tmp_path)
    s = settings_for(standin)
    with pytest.raises(InsufficientCredits, match="holds 200 credits .* cost 240"):
        cp.submit(spec, client=AtlasClient(s), settings=s, resolver=resolver)
    assert standin.measurements() == []


def test_invalid_key_is_authentication_error(standin, tmp_path):
    spec = _spec(tmp_path)
    s = settings_for(standin, key="wrong-key-123")
    with pytest.raises(AuthenticationError) as ei:
        cp.submit(spec, client=AtlasClient(s), settings=s, resolver=resolver)
    assert ei.value.status == 403 and "wrong-key-123" not in str(ei.value)


def test_incremental_fetch_of_interval_measurement(standin, tmp_path):
    t0 = int(standin.clock.t) + 10
    spec = _spec(tmp_path, extra="", sources='[[sources]]\ncountry = "US"\nrequested = 3\n')
    text = spec_text(sources='[[sources]]\ncountry = "US"\nrequested = 3\n') + (
        f'[schedule]\ntype = "interval"\ninterval = 600\nstart = {t0}\nstop = {t0 + 6000}\n')
    spec = parse_spec(text)
    spec = spec.__class__(**{**spec.__dict__, "workspace": tmp_path / "ws"})
    s = settings_for(standin, limits=AtlasLimits(fetch_window=1800, fetch_overlap=700))
    c = AtlasClient(s)
    rep = cp.submit(spec, client=c, settings=s, resolver=resolver)
    assert rep.committed_credits == 3 * 11 * 30  # 11 rounds, 30 credits each (not one-off)
    (mid,) = [m["id"] for m in standin.measurements()]
    standin.clock.t = t0 + 2500
    f1 = cp.fetch(spec.campaign, client=c, settings=s, now=lambda: standin.clock.t)
    first = set(_stored_keys(spec.campaign))
    assert first == _server_keys(standin, [mid]) and f1.done == 0
    assert len(first) == 3 * 5  # rounds at t0+o, +600, ..., +2400
    standin.clock.t = t0 + 9000
    f2 = cp.fetch(spec.campaign, client=c, settings=s, now=lambda: standin.clock.t)
    got = _stored_keys(spec.campaign)
    # the stand-in runs probe p at t0 + (p % 37 + 1) + 600 k <= t0 + 6000: 10 rounds each
    # (the reservation above priced 11, an upper bound)
    assert len(got) == len(set(got)) == 30 and set(got) == _server_keys(standin, [mid])
    assert f2.duplicates >= 1 and f2.done == 1  # the overlap re-read was deduplicated


def test_fetch_survives_random_faults(standin, tmp_path):
    spec = _spec(tmp_path, targets="addresses = [" + ", ".join(
        f'"24.39.57.{i}"' for i in range(1, 9)) + "]\n")
    s = settings_for(standin, max_attempts=12)
    c = AtlasClient(s)
    cp.submit(spec, client=c, settings=s, resolver=resolver)
    standin.clock.t += 3600
    standin.random_faults(0.35, ["429", "500", "502", "503", "reset", "truncate", "badjson",
                                 "repeat_page"], seed=11)
    f = cp.fetch(spec.campaign, client=c, settings=s)
    standin.clear_faults()
    ids = [m["id"] for m in standin.measurements()]
    got = _stored_keys(spec.campaign)
    assert f.errors == [] and len(got) == len(set(got)) and set(got) == _server_keys(standin, ids)
    assert c.stats.retries > 0


def test_import_public_measurement_without_key(standin, tmp_path, test_data):
    bundle = json.loads((test_data / "ripe-atlas" / "pierky-ripe-atlas-monitor-fixtures" /
                         "1033154.json").read_text())
    standin.preload(v2_measurement_from_v1(bundle["meta_data"]), bundle["results"])
    s = settings_for(standin, key=None)
    c = AtlasClient(s)
    from probes.workspace import Campaign

    campaign = Campaign("imported", tmp_path / "ws")
    assert cp.import_measurements(campaign, [1033154], client=c) == [1033154]
    assert cp.import_measurements(campaign, [1033154], client=c) == []
    f = cp.fetch(campaign, client=c, settings=s)
    want = {(r["msm_id"], r["prb_id"], r["timestamp"]) for r in bundle["results"]}
    # regression: probe 10616's result is stamped 1382002334, two days after the
    # measurement's stop_time (1381826104); a fetch bounded by stop_time lost it
    assert (1033154, 10616, 1382002334) in want
    got = _stored_keys(campaign)
    assert len(want) == 87 and set(got) == want and len(got) == 87
    assert f.added == 87
    assert standin.state.seen_auth and not any(standin.state.seen_auth)  # no key was sent


def test_import_running_measurement_starts_at_since(standin, tmp_path, atlas_world):
    from probes.workspace import Campaign

    c = AtlasClient(settings_for(standin))
    t0 = int(standin.clock.t)
    pids = [p["id"] for p in atlas_world.probes()[:2]]
    (mid,) = c.create_traceroutes(
        [{"af": 4, "target": "24.39.56.10", "description": "long", "protocol": "ICMP",
          "interval": 900}], probe_ids=pids, is_oneoff=False, start_time=t0,
        stop_time=t0 + 100 * 900)
    standin.clock.t = t0 + 20 * 900 + 100  # running: rounds 0..20 have happened
    s = settings_for(standin, key=None, limits=AtlasLimits(fetch_overlap=0))
    camp = Campaign("since", tmp_path / "ws")
    since = t0 + 15 * 900
    cp.import_measurements(camp, [mid], client=AtlasClient(s), since=since)
    cp.fetch(camp, client=AtlasClient(s), settings=s, now=lambda: standin.clock.t)
    got = _stored_keys(camp)
    want = {k for k in _server_keys(standin, [mid]) if k[2] >= since}
    assert set(got) == want and len(got) == 2 * 6  # rounds 15..20, two probes


def test_import_refuses_non_traceroute(standin, tmp_path):
    meta = {"id": 42, "type": "ping", "af": 4, "status": {"id": 4, "name": "Stopped"}}
    standin.preload(meta, [])
    from probes.workspace import Campaign

    with pytest.raises(ConfigError, match="42 is a ping measurement"):
        cp.import_measurements(Campaign("i", tmp_path), [42],
                               client=AtlasClient(settings_for(standin)))


# ---------------------------------------------------------------------------- CLI, key
def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis.cli", "-v", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_cli_end_to_end_never_reveals_the_key(standin, tmp_path, test_data):
    (tmp_path / "spec.toml").write_text(spec_text(
        name="clikey", targets='addresses = ["24.39.56.10", "24.39.56.11"]\n'))
    env = {**os.environ, "RIPE_ATLAS_KEY": TEST_KEY, "PATHEXP_ATLAS_SERVER": standin.server,
           "PYTHONPATH": str(REPO), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    common = ["--ca-bundle", str(standin.ca_bundle), "--workspace", str(tmp_path / "ws")]
    outs = []
    p = _cli(["campaign", "plan", "spec.toml", *common], env, tmp_path)
    outs.append(p)
    assert p.returncode == 0, p.stderr
    assert "cost: 480 credits" in p.stdout and "account balance: 1000000" in p.stdout
    p = _cli(["campaign", "submit", "spec.toml", *common], env, tmp_path)
    outs.append(p)
    assert p.returncode == 2 and "pass --yes" in p.stderr
    standin.add_fault(Fault("429", path="credits", retry_after=0))
    p = _cli(["campaign", "submit", "spec.toml", "--yes", *common], env, tmp_path)
    outs.append(p)
    assert p.returncode == 0, p.stderr
    assert "2 created now" in p.stdout
    standin.clock.t += 3600
    for args in (["campaign", "fetch", "spec.toml"], ["campaign", "status", "--campaign",
                                                       "clikey", "--json"]):
        p = _cli([*args, *common], env, tmp_path)
        outs.append(p)
        assert p.returncode == 0, p.stderr
    rows = json.loads(outs[-1].stdout)
    assert [r["records_fetched"] for r in rows] == [4, 4]
    # import a recorded public measurement (TCP, 8 real results) without any key
    bundle = json.loads((test_data / "ripe-atlas" / "pierky-ripe-atlas-monitor-fixtures" /
                         "3082698.json").read_text())
    standin.preload(v2_measurement_from_v1(bundle["meta_data"]), bundle["results"])
    nokey = {k: v for k, v in env.items() if k != "RIPE_ATLAS_KEY"}
    p = _cli(["campaign", "import", "3082698", "--campaign", "imp", *common], nokey, tmp_path)
    outs.append(p)
    assert p.returncode == 0, p.stderr
    assert "8 records received, 8 new" in p.stdout
    from probes.workspace import Campaign

    assert sorted(_stored_keys(Campaign("imp", tmp_path / "ws"))) == sorted(
        (r["msm_id"], r["prb_id"], r["timestamp"]) for r in bundle["results"])
    # invalid key: one-line error, status 403, no key
    bad = {**env, "RIPE_ATLAS_KEY": TEST_KEY + "-wrong"}
    p = _cli(["campaign", "plan", "spec.toml", *common], bad, tmp_path)
    outs.append(p)
    assert p.returncode == 2 and "HTTP 403" in p.stderr and TEST_KEY not in p.stderr
    # a spec error
    (tmp_path / "bad.toml").write_text(spec_text(sources='[[sources]]\ncountry = "ZZ"\n'
                                                         'requested = 1\n'))
    p = _cli(["campaign", "plan", "bad.toml", *common], env, tmp_path)
    outs.append(p)
    assert p.returncode == 2 and "bad.toml:8: [[sources]] #1.country: unknown country" in p.stderr
    # every output: stdout, stderr (debug logging on), every file in the workspace
    for proc in outs:
        assert TEST_KEY not in proc.stdout and TEST_KEY not in proc.stderr
    files = [f for f in (tmp_path / "ws").rglob("*") if f.is_file()]
    assert any(f.name == "state.sqlite" for f in files)
    for f in files:
        data = f.read_bytes()
        if f.suffix in (".xz",):
            data = lzma.decompress(data)
        elif f.suffix == ".zst":  # raw result segments
            import pyarrow as pa

            with pa.CompressedInputStream(pa.OSFile(str(f)), "zstd") as zf:
                data = zf.read()
        assert TEST_KEY.encode() not in data, f
    assert any(f.suffix == ".zst" for f in files)  # the raw segments were searched, decompressed
    # the server did receive it (the search is not vacuous)
    assert f"Key {TEST_KEY}" in standin.state.seen_auth


def test_reprs_and_exceptions_never_show_the_key(standin, tmp_path):
    s = settings_for(standin)
    c = AtlasClient(s)
    texts = [repr(s), str(s), repr(c), repr(s.key)]
    spec = _spec(tmp_path)
    standin.state.key = "another"  # the server now rejects ours
    for call in (lambda: c.credits(),
                 lambda: cp.submit(spec, client=c, settings=s, resolver=resolver)):
        with pytest.raises(Exception) as ei:
            call()
        e = ei.value
        while e is not None:
            texts += [str(e), repr(e)]
            e = e.__cause__ or e.__context__
    assert all(TEST_KEY not in t for t in texts)
