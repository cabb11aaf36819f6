"""What the command line shows while it works: a progress line on a terminal, nothing extra
when piped, and tables 120 columns wide when piped (not rich's 80).

Real parts: the real ``pathexp ingest`` in a subprocess, its standard error on a real
pseudo-terminal (``pty``), real MENOG results.
"""

from __future__ import annotations

import lzma
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MENOG = "ripe-atlas/traceroutes/menog_traceroutes_full.ndjson.xz"


def _input(test_data: Path, tmp_path: Path, n: int = 25_000) -> Path:
    with lzma.open(test_data / MENOG) as fh:
        lines = [ln for _, ln in zip(range(n), fh, strict=False)]
    src = tmp_path / "m.ndjson"
    src.write_bytes(b"".join(lines))
    return src


def _env() -> dict[str, str]:
    """This environment without the variables that override rich's terminal detection."""
    skip = {"FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES", "TERM"}
    return {**{k: v for k, v in os.environ.items() if k not in skip}, "PYTHONPATH": str(ROOT), "TERM": "xterm"}


def _cmd(tmp_path: Path, src: Path, name: str) -> list[str]:
    return [sys.executable, "-m", "analysis.cli", "ingest", "--campaign", name, "--workspace",
            str(tmp_path / "ws"), "--segment-results", "5000", str(src)]


def test_piped_output_is_120_columns_and_has_no_progress_line(test_data, tmp_path):
    src = _input(test_data, tmp_path, 3000)
    out = subprocess.run(_cmd(tmp_path, src, "piped"), cwd=ROOT, env=_env(), capture_output=True, check=True)
    lines = out.stdout.decode().splitlines()
    assert max(len(ln) for ln in lines) <= 120 and any(len(ln) > 80 for ln in lines)
    assert b"results read" not in out.stderr and b"\x1b[" not in out.stdout


def test_a_terminal_sees_the_steps_of_a_long_ingest(test_data, tmp_path):
    src = _input(test_data, tmp_path)
    master, slave = pty.openpty()
    proc = subprocess.Popen(_cmd(tmp_path, src, "tty"), cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        assert ready, "no output on the terminal within 120 s"
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    proc.wait(timeout=120)
    assert proc.returncode == 0
    text = seen.decode(errors="replace")
    assert "ingest tty: reading m.ndjson" in text
    assert "results read" in text


_QUICK_EXIT = """
import atexit, sys, threading, time
from pathlib import Path
out = Path(sys.argv[1])

def late_write():
    time.sleep(0.3)
    (out / "thread").write_text("done")

class Teardown:
    def __del__(self):  # run by the interpreter's teardown only
        (out / "teardown").write_text("ran")

keep = Teardown()
atexit.register(lambda: (out / "atexit").write_text("ran"))
threading.Thread(target=late_write).start()  # not a daemon: exit must wait for it
sys.argv = ["pathexp", "datasets", "--cache-dir", str(out / "cache"), "list"]
from analysis.cli import console
console()
"""


def test_the_executable_exits_quickly_after_threads_and_exit_handlers(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(_QUICK_EXIT)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], cwd=ROOT, env=_env(), capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout  # the command's output was flushed
    assert (tmp_path / "thread").read_text() == "done"  # a running thread was waited for
    assert (tmp_path / "atexit").read_text() == "ran"  # atexit handlers ran
    assert not (tmp_path / "teardown").exists()  # the one-by-one teardown was skipped


def test_the_executable_keeps_the_exit_code_of_an_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "analysis.cli", "ingest", "--campaign", "x", "--workspace",
                           str(tmp_path), str(tmp_path / "missing.ndjson.xz")], cwd=ROOT, env=_env(), capture_output=True)
    assert proc.returncode == 2 and b"cannot read" in proc.stderr
