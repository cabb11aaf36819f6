"""Bad input on the command line gives one clear line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

KINDS = ["pfx2as", "peeringdb", "caida-ixp", "pch-subnets", "pch-membership", "as2org", "rir-delegated",
         "ip2country", "ipmap", "as-rel", "as-siblings", "asnames", "mrt", "bgpdump", "vrp"]


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis.cli", *args], capture_output=True, text=True, cwd=cwd)


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pathexp "), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def garbage(tmp_path_factory):
    f = tmp_path_factory.mktemp("bad") / "garbage.bin"
    f.write_bytes(bytes(range(256)) * 12 + b"\n\x00\xff\n")
    return f


@pytest.mark.parametrize("kind", KINDS)
def test_datasets_import_of_garbage(kind, garbage, tmp_path):
    one_line_error(run("datasets", "--cache-dir", str(tmp_path), "import", "--kind", kind, str(garbage)), "garbage.bin")


def test_campaign_spec_that_is_not_text(garbage):
    one_line_error(run("campaign", "plan", str(garbage)), "garbage.bin", "UTF-8")


def test_registry_that_is_not_text(garbage, tmp_path):
    one_line_error(run("analyze", "--campaign", "x", "--workspace", str(tmp_path), "--registry", str(garbage)), "garbage.bin")


def test_workspace_that_is_a_file(tmp_path, test_data):
    ws = tmp_path / "file"
    ws.write_text("not a folder")
    src = test_data / "ripe-atlas/traceroutes/sagan_test_traceroutes.ndjson"
    one_line_error(run("ingest", str(src), "--campaign", "c", "--workspace", str(ws)), str(ws))


def test_missing_input_file(tmp_path):
    one_line_error(run("ingest", str(tmp_path / "absent.json"), "--campaign", "c", "--workspace", str(tmp_path)), "absent.json")


def test_annotate_a_campaign_that_was_never_ingested(tmp_path):
    proc = run("annotate", "--campaign", "typo", "--workspace", str(tmp_path))
    one_line_error(proc, "typo", "no hop table", "pathexp ingest")
    assert not (tmp_path / "typo").exists()  # nothing created for a misspelled name


def test_unknown_text_input_is_refused_with_its_line(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("hello\nworld\n")
    one_line_error(run("ingest", str(f), "--campaign", "c", "--workspace", str(tmp_path)), "notes.txt:1")


def test_the_cli_kinds_are_the_library_kinds():
    from analysis.cli.datasets import _KINDS
    from analysis.datasets import KINDS

    assert _KINDS == KINDS == tuple(globals()["KINDS"])


def test_the_cli_fetch_kinds_are_the_ones_fetch_downloads():
    from analysis._download import FETCH_KINDS
    from analysis.cli.datasets import _FETCH_KINDS

    assert _FETCH_KINDS == FETCH_KINDS and set(FETCH_KINDS) < set(KINDS)


def test_probe_metadata_that_is_not_json(garbage, tmp_path, test_data):
    src = test_data / "ripe-atlas/traceroutes/sagan_test_traceroutes.ndjson"
    proc = run("ingest", str(src), "--campaign", "c", "--workspace", str(tmp_path), "--probes", str(garbage))
    one_line_error(proc, "garbage.bin", "not JSON probe metadata")


def test_targets_file_that_is_missing_or_not_text(garbage, tmp_path):
    absent = tmp_path / "absent.txt"
    one_line_error(run("trace", "--targets-file", str(absent), "--campaign", "c", "--workspace", str(tmp_path)),
                   "cannot read targets file", "absent.txt")
    one_line_error(run("trace", "--targets-file", str(garbage), "--campaign", "c", "--workspace", str(tmp_path)),
                   "cannot read targets file", "garbage.bin")


def test_trace_without_targets(tmp_path):
    one_line_error(run("trace", "--campaign", "c", "--workspace", str(tmp_path)), "no targets")


def test_campaign_status_needs_a_spec_or_a_name(tmp_path):
    one_line_error(run("campaign", "status", "--offline", "--workspace", str(tmp_path)),
                   "give a campaign spec or --campaign NAME")
