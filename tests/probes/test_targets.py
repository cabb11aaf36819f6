"""Targets files of ``pathexp trace``: one address or name per line, '#' comments."""

from __future__ import annotations

import pytest

from probes.errors import ConfigError
from probes.targets import parse_targets, read_targets


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("192.0.2.1\n", ["192.0.2.1"]),
        ("# only a comment\n\n   \n", []),
        ("192.0.2.1  # a comment after\n2001:db8::1\r\nexample.net\n", ["192.0.2.1", "2001:db8::1", "example.net"]),
        ("  padded.example  \n#192.0.2.9\n", ["padded.example"]),
        ("192.0.2.1\n192.0.2.1\n", ["192.0.2.1", "192.0.2.1"]),  # kept as written, in order
    ],
)
def test_parse_targets(text, expected):
    assert parse_targets(text) == expected


def test_targets_of_a_real_traceroute_file(test_data, tmp_path):
    """The destinations of real Atlas traceroutes, written as a targets file, read back."""
    import orjson

    src = test_data / "ripe-atlas/traceroutes/sagan_test_traceroutes.ndjson"
    dsts = sorted({orjson.loads(line)["dst_addr"] for line in src.read_bytes().splitlines() if line.strip()})
    path = tmp_path / "targets.txt"
    path.write_text("# from sagan_test_traceroutes\n" + "".join(f"{d}   # dst\n" for d in dsts), encoding="utf-8")
    assert read_targets(path) == dsts
    assert dsts


@pytest.mark.parametrize("content", [None, b"\xff\xfe\x00bad"])
def test_a_file_that_cannot_be_read(content, tmp_path):
    path = tmp_path / "targets.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match="cannot read targets file .*targets.txt"):
        read_targets(path)
