# ruff: noqa: F811 - pytest fixtures imported from tests.probes.atlas_server
"""Crash tests: ``pathexp campaign submit`` / ``fetch`` run as subprocesses and are killed
with SIGKILL at random instants, many times, then resumed.

After the final (unkilled) run: no duplicate measurement on the server, no result lost or
stored twice, and neither the credits committed in the state database nor the cost of the
measurements the server created ever exceeded the budget (checked after every kill). A
kill before a create was sent, or a create refused with a 5xx before it was applied,
leaves an attempt of unknown outcome whose credits stay reserved for good (the unit is
created again as a new attempt), so the budget leaves room for such attempts. The stand-in server runs in this process, so it outlives the
killed clients; it adds latency and random faults (5xx, resets, creates applied but
answered with an error) so kills land inside requests, between create and record, and
during ingest.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from probes import store
from probes.workspace import Campaign
from tests.probes.atlas_server import (  # noqa: F401 - fixtures
    TEST_KEY,
    AtlasStandIn,
    atlas_population,
    atlas_tls,
    atlas_world,
    standin,
)

REPO = Path(__file__).resolve().parents[2]
N_TARGETS = 32
N_PROBES = 8
PLAN_COST = N_TARGETS * N_PROBES * 60
BUDGET = 2 * PLAN_COST  # room for attempts of unknown outcome (kept reserved)
MAX_RUNS = 16  # per phase; a phase ends at its first run that completes
MIN_KILLS = 1  # per phase; sanity that runs were really interrupted (typically 3-8)


def _committed(db: Path) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        row = con.execute("SELECT COALESCE(SUM(CASE kind WHEN 'reserve' THEN credits "
                          "ELSE -credits END), 0) FROM ledger").fetchone()
    except sqlite3.OperationalError:  # killed before the schema was created
        return 0
    finally:
        con.close()
    return int(row[0])


def _unit_tags(srv: AtlasStandIn) -> Counter:
    return Counter(t for m in srv.measurements() for t in m["tags"] if t.count("-") == 2)


def _run_killed(cmd: list[str], env: dict, cwd: Path, rng: random.Random, *,
                delay: tuple[float, float], log: Path) -> int | None:
    """Start ``cmd``; SIGKILL it after a random delay unless it ends first. Returns the
    exit code, or None when it was killed. Its stderr (debug log) goes to ``log``."""
    with open(log, "wb") as err:
        proc = subprocess.Popen([*cmd[:3], "-v", *cmd[3:]], env=env, cwd=cwd,
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            proc.wait(timeout=rng.uniform(*delay))
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return None
    return proc.returncode


@pytest.mark.slow
@pytest.mark.parametrize("seed", [20261121, 7])
def test_submit_and_fetch_survive_random_sigkills(standin, tmp_path, seed):
    rng = random.Random(int(os.environ.get("PATHEXP_CRASH_SEED", seed)))
    targets = ", ".join(f'"24.39.{60 + i // 200}.{i % 200 + 1}"' for i in range(N_TARGETS))
    (tmp_path / "spec.toml").write_text(
        f'[campaign]\nname = "crash"\n\n[[sources]]\ncountry = "US"\nrequested = {N_PROBES}\n'
        f'\n[targets]\naddresses = [{targets}]\n\n[budget]\nmax_credits = {BUDGET}\n')
    cfg = tmp_path / "settings.toml"
    cfg.write_text("[atlas]\ntimeout = 5\nbackoff_base = 0.05\nbackoff_cap = 0.2\n"
                   "max_attempts = 8\nfetch_workers = 2\n\n[limits]\n"
                   "max_definitions_per_request = 1\nfetch_window = 30\ningest_batch = 24\n")
    env = {**os.environ, "RIPE_ATLAS_KEY": TEST_KEY, "PYTHONPATH": str(REPO),
           "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    ws = tmp_path / "ws"
    base = [sys.executable, "-m", "analysis.cli", "campaign"]
    common = ["--atlas-server", standin.server, "--ca-bundle", str(standin.ca_bundle),
              "--config", str(cfg), "--workspace", str(ws)]
    db = Campaign("crash", ws).state_db
    standin.state.latency = 0.03
    standin.random_faults(0.12, ["503", "reset", "slow", "applied_502", "applied_reset"],
                          seed=rng.randrange(1 << 30))

    # -- submit, killed at random points
    submit = [*base, "submit", "spec.toml", "--yes", *common]
    killed = total_killed = 0
    progress = []
    for _ in range(MAX_RUNS):
        code = _run_killed(submit, env, tmp_path, rng, delay=(0.6, 2.5),
                           log=tmp_path / f"submit-{len(progress)}.log")
        killed += code is None
        progress.append((code, len(_unit_tags(standin))))
        assert _committed(db) <= BUDGET
        assert max(_unit_tags(standin).values(), default=0) <= 1, "duplicate measurement"
        assert standin.state.spent <= BUDGET and standin.created_cost() <= BUDGET
        assert _committed(db) >= standin.created_cost()
        if code == 0:
            break
    assert killed >= MIN_KILLS
    standin.clear_faults()  # the final run completes (a fault may stop a run: see above)
    final = subprocess.run(submit, env=env, cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
    assert final.returncode == 0, final.stderr
    assert TEST_KEY not in final.stdout + final.stderr
    tags = _unit_tags(standin)
    assert len(tags) == N_TARGETS and set(tags.values()) == {1}
    assert len(standin.measurements()) == N_TARGETS
    assert standin.state.spent == PLAN_COST == standin.created_cost()
    assert PLAN_COST <= _committed(db) <= BUDGET
    con = sqlite3.connect(db)
    recorded = {r[0] for r in con.execute("SELECT msm_id FROM units WHERE state='created'")}
    con.close()
    assert recorded == {m["id"] for m in standin.measurements()}

    total_killed += killed

    # -- fetch, killed at random points
    standin.clock.t += 3600  # every one-off has run: results visible, status Stopped
    fetch = [*base, "fetch", "--campaign", "crash", "--no-progress", *common]
    killed = 0
    for _ in range(MAX_RUNS):
        code = _run_killed(fetch, env, tmp_path, rng, delay=(1.0, 3.5),
                           log=tmp_path / f"fetch-{len(progress)}.log")
        killed += code is None
        keys = [(r["msm_id"], r["prb_id"], r["timestamp"]) for r in store.iter_raw(
            Campaign("crash", ws))] if (ws / "crash" / "raw").exists() else []
        assert len(keys) == len(set(keys)), "a result was stored twice"
        progress.append((code, len(keys)))
        if code == 0:
            break
    assert killed >= MIN_KILLS and total_killed + killed >= 3
    standin.clear_faults()
    final = subprocess.run(fetch, env=env, cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
    assert final.returncode == 0, final.stderr
    assert TEST_KEY not in final.stdout + final.stderr
    want = {(r["msm_id"], r["prb_id"], r["timestamp"])
            for m in standin.measurements() for r in standin.results_of(m["id"])}
    assert len(want) == N_TARGETS * N_PROBES
    got = [(r["msm_id"], r["prb_id"], r["timestamp"]) for r in store.iter_raw(Campaign("crash", ws))]
    assert len(got) == len(set(got)) and set(got) == want
    print("kills (exit code or None, measurements/results so far):", progress)
    # every output of every run (debug logs included) and the state DB: no API key
    for f in [*tmp_path.glob("*.log"), db]:
        assert TEST_KEY.encode() not in f.read_bytes(), f
