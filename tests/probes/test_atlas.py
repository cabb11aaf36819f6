# ruff: noqa: F811 - pytest fixtures imported from tests.probes.atlas_server
"""The cousteau boundary (probes.atlas) and settings (probes.config) against the stand-in API."""

from __future__ import annotations

import json
import os
import random
from dataclasses import replace
from pathlib import Path

import pytest

from probes._backoff import Backoff, parse_retry_after
from probes.atlas import AtlasClient, CreateOutcomeUnknown
from probes.config import ApiKey, Settings, load_settings, parse_server
from probes.errors import AtlasAPIError, AuthenticationError, ConfigError, InsufficientCredits
from tests.probes.atlas_server import (  # noqa: F401 - fixtures
    TEST_KEY,
    AtlasStandIn,
    Fault,
    atlas_population,
    atlas_tls,
    atlas_world,
    standin,
)


class FakeSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, s: float) -> None:
        self.calls.append(s)


def client_for(srv: AtlasStandIn, *, key: str | None = TEST_KEY, sleep=None, **kw) -> AtlasClient:
    s = Settings(server=srv.server, ca_bundle=srv.ca_bundle,
                 key=ApiKey(key) if key else None, **kw)
    return AtlasClient(s, sleep=sleep or FakeSleep(), rng=random.Random(7))


def fixture_probes(test_data: Path) -> list[dict]:
    out = {}
    for name in ("1033154.json", "3082698.json"):
        d = json.loads((test_data / "ripe-atlas" / "pierky-ripe-atlas-monitor-fixtures" / name)
                       .read_text())
        for p in d["probes"]["results"]:
            out[p["id"]] = p
    return list(out.values())


# ---------------------------------------------------------------------------- listings
def test_probe_listing_filters_match_the_recorded_probes(standin, test_data):
    c = client_for(standin, key=None)
    recorded = fixture_probes(test_data)
    want_de = sorted(p["id"] for p in recorded
                     if p["country_code"] == "DE" and p["status"]["name"] == "Connected")
    got = c.probes(country_code="DE", status=1)
    real = [p for p in got if p["id"] < 1_000_000]  # the world's probe ids start at 1e6
    assert sorted(p["id"] for p in real) == want_de
    assert len(want_de) == 13  # connected DE probes in 1033154.json + 3082698.json
    want_asn = sorted(p["id"] for p in recorded if p["asn_v4"] == 6830)
    assert sorted(p["id"] for p in c.probes(asn_v4=6830) if p["id"] < 1_000_000) == want_asn


def test_pagination_with_repeated_pages_loses_and_duplicates_nothing(standin):
    c = client_for(standin, key=None)
    c._page_size = 7
    standin.add_fault(Fault("repeat_page", path=r"probes/.*page=3", times=2))
    got = c.probes()
    ids = [p["id"] for p in got]
    assert len(ids) == len(set(ids)) == len(standin.state.probes)
    assert c.stats.repeated_pages >= 1


def test_429_honours_retry_after(standin):
    sleep = FakeSleep()
    c = client_for(standin, sleep=sleep)
    standin.add_fault(Fault("429", path="anchors", retry_after=7, times=2))
    anchors = c.anchors(country="US")
    assert anchors and all(a["country"] == "US" for a in anchors)
    assert len(sleep.calls) == 2 and all(s >= 7 for s in sleep.calls)
    assert c.stats.throttled == 2


@pytest.mark.parametrize("kind", ["500", "502", "503", "reset", "truncate", "badjson", "slow"])
def test_transient_faults_are_retried_with_jittered_backoff(standin, kind):
    sleep = FakeSleep()
    c = client_for(standin, sleep=sleep, timeout=0.3, backoff_base=0.5, backoff_cap=60)
    standin.add_fault(Fault(kind, path=r"/api/v2/probes/\d+", times=2, retry_after=None,
                            delay=1.0))
    pid = next(iter(standin.state.probes))
    body = c._get(f"/api/v2/probes/{pid}/")
    assert body["id"] == pid
    assert len(sleep.calls) == 2
    for attempt, s in enumerate(sleep.calls):  # full jitter: U(0, base * 2**attempt)
        assert 0 <= s <= 0.5 * 2 ** attempt


def test_persistent_5xx_gives_up_with_status(standin):
    sleep = FakeSleep()
    c = client_for(standin, sleep=sleep, max_attempts=4)
    standin.add_fault(Fault("503", path="credits", times=99, retry_after=None))
    with pytest.raises(AtlasAPIError) as ei:
        c.credits()
    assert ei.value.status == 503
    assert "gave up after 4 attempts" in str(ei.value)
    assert len(sleep.calls) == 3
    assert sum(1 for m, p, s in standin.log if "credits" in p) == 4


def test_retry_after_beyond_limit_stops_early(standin):
    sleep = FakeSleep()
    c = client_for(standin, sleep=sleep, max_retry_after=10)
    standin.add_fault(Fault("429", path="credits", times=99, retry_after=3600))
    with pytest.raises(AtlasAPIError) as ei:
        c.credits()
    assert ei.value.status == 429 and sleep.calls == []


def test_a_name_that_does_not_resolve_is_one_line_at_once_not_retried(standin, monkeypatch, capsys):
    """Offline: the resolver fails (faked at the socket API, so no packet leaves the machine).
    One error naming the cause and the remedies, no retry and no wait; the CLI exits 3."""
    import socket

    from analysis.cli import main
    from probes.errors import EXIT_NETWORK, NetworkUnavailable

    calls = []

    def no_dns(host, *a, **kw):
        calls.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    sleep = FakeSleep()
    c = client_for(standin, sleep=sleep)
    with pytest.raises(NetworkUnavailable, match="does not resolve .*offline.*HTTPS_PROXY"):
        c.credits()
    assert sleep.calls == [] and len(calls) == 1
    # the command line: `campaign plan` of the shipped example (its US anchors need the API)
    spec = Path(__file__).resolve().parents[2] / "probes" / "campaign_example.toml"
    assert main(["campaign", "plan", str(spec)]) == EXIT_NETWORK == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not resolve" in err and "Traceback" not in err
    assert "waiting" not in err and "gave up after" not in err


# ---------------------------------------------------------------------------- auth, TLS
def test_wrong_key_is_authentication_error_403(standin):
    c = client_for(standin, key="not-the-key")
    with pytest.raises(AuthenticationError) as ei:
        c.credits()
    assert ei.value.status == 403
    assert "not-the-key" not in str(ei.value)


def test_missing_key_is_refused_before_any_request(standin):
    c = client_for(standin, key=None)
    with pytest.raises(AuthenticationError):
        c.credits()
    with pytest.raises(AuthenticationError):
        c.create_traceroutes([{"af": 4, "target": "8.8.8.8", "description": "x",
                               "protocol": "ICMP"}], probe_ids=[1], is_oneoff=True)
    assert standin.log == []


def test_server_401_without_authorization_header(standin):
    c = client_for(standin, key=None)
    # stop needs a key on the server side; call the boundary without one
    with pytest.raises(AuthenticationError) as ei:
        c.stop_measurement(1)
    assert ei.value.status == 401


def test_untrusted_certificate_names_the_ca_bundle_option(standin):
    s = Settings(server=standin.server, ca_bundle=None)
    with pytest.raises(AtlasAPIError, match="--ca-bundle"):
        AtlasClient(s, sleep=FakeSleep()).probes_by_id([1])


# ---------------------------------------------------------------------------- create
def _defn(target: str = "24.39.56.10", tag: str = "t1") -> dict:
    return {"af": 4, "target": target, "description": "test", "protocol": "ICMP",
            "paris": 16, "tags": [tag]}


def test_create_applied_then_reset_is_outcome_unknown(standin, atlas_world):
    c = client_for(standin)
    pid = atlas_world.probes()[0]["id"]
    standin.add_fault(Fault("applied_reset", method="POST"))
    with pytest.raises(CreateOutcomeUnknown):
        c.create_traceroutes([_defn(tag="orphan")], probe_ids=[pid], is_oneoff=True)
    # it exists on the server and can be found by its tag
    found = c.measurements(tags="orphan")
    assert [m["tags"] for m in found] == [["orphan"]]
    assert len(standin.measurements()) == 1


def test_create_429_is_retried_not_ambiguous(standin, atlas_world):
    c = client_for(standin)
    pid = atlas_world.probes()[0]["id"]
    standin.add_fault(Fault("429", method="POST", retry_after=2))
    ids = c.create_traceroutes([_defn(), _defn("24.39.56.11", "t2")], probe_ids=[pid],
                               is_oneoff=True)
    assert len(ids) == 2 and len(standin.measurements()) == 2


def test_insufficient_credits_on_create(standin, atlas_world):
    standin.state.balance = 100  # one result costs 60; two probes x 60 = 120
    c = client_for(standin)
    pids = [p["id"] for p in atlas_world.probes()[:2]]
    with pytest.raises(InsufficientCredits, match="enough credits"):
        c.create_traceroutes([_defn()], probe_ids=pids, is_oneoff=True)
    assert standin.measurements() == []


def test_results_filters_start_stop_probe_ids(standin, atlas_world):
    c = client_for(standin)
    pids = [p["id"] for p in atlas_world.probes()[:6]]
    t0 = int(standin.clock.t)
    (mid,) = c.create_traceroutes([_defn()], probe_ids=pids, is_oneoff=True, start_time=t0)
    standin.clock.t = t0 + 1000
    every = c.results(mid)
    assert sorted(r["prb_id"] for r in every) == sorted(pids)
    # oracle: the stand-in schedules probe p at start + p % 37 + 1
    ts = {p: t0 + p % 37 + 1 for p in pids}
    lo, hi = sorted(ts.values())[1], sorted(ts.values())[4]
    window = c.results(mid, start=lo, stop=hi)
    assert sorted(r["prb_id"] for r in window) == sorted(p for p in pids if lo <= ts[p] <= hi)
    some = c.results(mid, probe_ids=pids[:2])
    assert sorted(r["prb_id"] for r in some) == sorted(pids[:2])
    assert all(r["msm_id"] == mid and r["type"] == "traceroute" for r in every)
    assert c.measurement(mid)["status"]["name"] == "Stopped"
    c.stop_measurement(mid)  # DELETE -> 204, empty body accepted


# ---------------------------------------------------------------------------- backoff
def test_backoff_full_jitter_bounds_and_retry_after_floor():
    b = Backoff(base=0.5, cap=4.0)
    rng = random.Random(3)
    draws = [b.delay(a, rng=rng) for a in range(8) for _ in range(50)]
    assert max(draws) <= 4.0 and min(draws) >= 0
    assert max(b.delay(0, rng=rng) for _ in range(200)) <= 0.5
    assert b.delay(5, retry_after=120.0, rng=rng) == 120.0
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(None) is None


# ---------------------------------------------------------------------------- settings
def test_key_from_env_and_reprs_hide_it(tmp_path):
    s = load_settings(env={"RIPE_ATLAS_KEY": TEST_KEY}, search_default=False)
    assert s.key is not None and s.key.reveal() == TEST_KEY
    for text in (repr(s), str(s), repr(s.key), f"{s.key}", repr(AtlasClient(s))):
        assert TEST_KEY not in text


def test_key_in_world_readable_settings_file_is_refused(tmp_path):
    f = tmp_path / "config.toml"
    f.write_text(f'[atlas]\nkey = "{TEST_KEY}"\nserver = "127.0.0.1:9"\n')
    os.chmod(f, 0o644)
    with pytest.raises(ConfigError, match="chmod 600") as ei:
        load_settings(path=f, env={})
    assert TEST_KEY not in str(ei.value)
    os.chmod(f, 0o600)
    s = load_settings(path=f, env={})
    assert s.key == ApiKey(TEST_KEY) and s.server == "127.0.0.1:9"


def test_settings_precedence_and_errors(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[atlas]\nserver = "a.example:1"\n\n[credits]\ntraceroute_per_packet = 20\n'
                 '[limits]\nmax_probes_per_measurement = 50\n')
    s = load_settings(path=f, env={"PATHEXP_ATLAS_SERVER": "b.example:2"})
    assert s.server == "b.example:2" and s.rates.traceroute_per_packet == 20
    assert s.limits.max_probes_per_measurement == 50
    assert load_settings(path=f, env={}, server="c.example").server == "c.example"
    f.write_text('[atlas]\nserver = "x"\ncolour = "blue"\n')
    with pytest.raises(ConfigError, match=r"c.toml:3: unknown setting atlas.colour"):
        load_settings(path=f, env={})
    with pytest.raises(ConfigError, match="HOST"):
        parse_server("https://x/y")
    assert replace(Settings(), server="z").server == "z"


def test_one_settings_file_holds_the_local_probe_too(tmp_path):
    """[local_probe] belongs to pathexp trace; the Atlas settings loader leaves it alone."""
    from probes.local import load_local_probe

    f = tmp_path / "c.toml"
    f.write_text('[atlas]\nserver = "a.example:1"\n\n[local_probe]\nprb_id = 2000000007\nlatitude = 1.5\n')
    assert load_settings(path=f, env={}).server == "a.example:1"
    assert load_local_probe(f).prb_id == 2000000007
    f.write_text('[local_probes]\nprb_id = 1\n')
    with pytest.raises(ConfigError, match="unknown section"):
        load_settings(path=f, env={})


# ---------------------------------------------------------------------------- boundary
def test_cousteau_and_requests_only_at_the_boundary():
    """probes.atlas is the one module of probes that talks to Atlas (cousteau/requests);
    probes.bounded_http, the bounded body reader it shares with the reference-data downloads, knows
    requests but nothing of Atlas."""
    import ast

    root = Path(__file__).resolve().parents[2] / "probes"
    offenders = []
    for f in sorted(root.rglob("*.py")):
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.startswith("ripe.atlas.cousteau") for n in names):
                offenders.append(f.name)
            if any(n.startswith("requests") for n in names) and f.name != "bounded_http.py":
                offenders.append(f.name)
            if f.name == "bounded_http.py" and any(n.startswith("ripe") or n.startswith("probes.atlas") for n in names):
                offenders.append(f.name)
    assert sorted(set(offenders)) == ["atlas.py"]


def test_public_api_is_what_the_modules_declare():
    import probes.atlas as atlas
    import probes.campaign as campaign
    import probes.config as config

    for mod in (atlas, campaign, config):
        for name in mod.__all__:
            assert hasattr(mod, name), f"{mod.__name__}.{name}"
    assert {"plan", "submit", "status", "fetch", "import_measurements"} <= set(campaign.__all__)
    assert {"AtlasClient", "CreateOutcomeUnknown"} <= set(atlas.__all__)


def test_probes_fetch_fills_in_the_metadata_a_file_ingest_lacks(standin, test_data, tmp_path, monkeypatch, capsys):
    """Results ingested without their probes: `probes fetch` fills in what the server knows."""
    import orjson

    from analysis.cli import main
    from probes import store
    from probes.workspace import Campaign

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    bundle = orjson.loads((test_data / "ripe-atlas" / "pierky-ripe-atlas-monitor-fixtures" / "1033154.json").read_bytes())
    results = [*bundle["results"], {**bundle["results"][0], "prb_id": 4_000_000}]  # a probe Atlas never had
    src = tmp_path / "results.ndjson"
    src.write_bytes(b"\n".join(orjson.dumps(r) for r in results))
    c = Campaign("bare", tmp_path / "ws")
    store.ingest_files(c, [src])
    seen = {r["prb_id"] for r in results}
    served = {p["id"] for p in fixture_probes(test_data)}
    assert store.probes_without_meta(c) == (len(seen), sorted(seen))
    args = ["probes", "fetch", "--campaign", "bare", "--workspace", str(tmp_path / "ws"),
            "--atlas-server", standin.server, "--ca-bundle", str(standin.ca_bundle), "--json"]
    assert main(args) == 0
    rep = orjson.loads(capsys.readouterr().out)
    assert set(store.read_probe_meta(c).column("prb_id").to_pylist()) == seen & served
    assert rep["unknown_to_atlas"] == sorted(seen - served) and rep["stored"] == len(seen & served)
    assert seen - served == {4_000_000}
    assert main(args) == 0  # again: only the unknown probe is asked for
    assert orjson.loads(capsys.readouterr().out)["missing_before"] == 1
    # a campaign without traceroutes has nothing to fetch for: a clear error, not "0 probes"
    Campaign("empty", tmp_path / "ws").root.mkdir(parents=True)
    assert main([a if a != "bare" else "empty" for a in args]) != 0
    err = capsys.readouterr().err
    assert "'empty' has no traceroutes" in err and "pathexp ingest" in err
