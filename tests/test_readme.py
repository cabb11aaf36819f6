"""The README's offline walk-through runs as written, in an empty folder (no network)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADING = "### Every step by hand, on a synthetic world"


def _block() -> str:
    text = (ROOT / "README.md").read_text()
    assert HEADING in text, "the README lost its offline walk-through"
    m = re.search(r"```sh\n(.*?)```", text[text.index(HEADING):], re.S)
    assert m, "no sh block under the walk-through heading"
    return m.group(1)


def test_readme_walkthrough_runs_as_written(tmp_path: Path):
    script = _block()
    assert "pathexp report" in script and "pathexp demo" not in script  # every step by hand
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATHEXP_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["NO_COLOR"] = "1"
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    # each step left what it promises
    snaps = list((tmp_path / "cache").rglob("manifest.json"))
    assert snaps, "datasets import wrote no snapshot into PATHEXP_CACHE_DIR"
    for kind in ("pfx2as", "peeringdb", "caida-ixp", "as2org", "as-rel", "rir-delegated"):
        assert kind in proc.stdout, f"datasets list does not show {kind}"
    camp = tmp_path / "results" / "mine"
    assert json.loads((camp / "exposure.json").read_text())["traceroutes"] > 0
    assert (camp / "report" / "index.html").stat().st_size > 10_000
    assert (camp / "report" / "figures" / "probe-map.svg").is_file()
    rec = json.loads((tmp_path / "one-traceroute.json").read_text())
    assert rec["hops"] and rec["as_names"], "show --format json: hops and AS names"
    assert "AS path" in proc.stdout  # the text form of pathexp show
