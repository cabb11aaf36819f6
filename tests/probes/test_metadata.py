"""Probe metadata files: every shape the Atlas API and its users save, on real probe objects."""

from __future__ import annotations

import gzip

import orjson
import pytest

from probes import store
from probes.errors import ConfigError, InputFormatError
from probes.metadata import local_probe, probe_objects, read_probe_objects
from probes.workspace import Campaign

SAMPLE = "ripe-atlas/api-metadata/probes_v2_sample_starlink_2025-05-05.json"


@pytest.fixture(scope="module")
def objects(test_data):
    """Real Atlas API v2 probe objects (a saved JSON array)."""
    return orjson.loads((test_data / SAMPLE).read_bytes())


@pytest.mark.parametrize(
    ("shape", "wrap"),
    [
        ("saved list", lambda objs: objs),
        ("API page", lambda objs: {"count": len(objs), "next": None, "previous": None, "results": objs}),
        ("bundle", lambda objs: {"meta": {"total_count": len(objs)}, "objects": objs}),
    ],
)
def test_every_shape_gives_the_same_objects(shape, wrap, objects, tmp_path):
    path = tmp_path / f"{shape.replace(' ', '_')}.json.gz"
    path.write_bytes(gzip.compress(orjson.dumps(wrap(objects))))
    assert read_probe_objects(path) == objects
    assert probe_objects(wrap(objects)) == objects


def test_a_page_without_objects_holds_none():
    assert probe_objects({"count": 0, "next": None}) == []


def test_read_objects_go_into_the_store(objects, test_data, tmp_path):
    campaign = Campaign("meta", tmp_path)
    n = store.write_probe_meta(campaign, read_probe_objects(test_data / SAMPLE))
    assert n == len(objects) == 3
    meta = store.read_probe_meta(campaign).to_pylist()
    first = next(p for p in meta if p["prb_id"] == 1240)
    assert (first["country_code"], first["asn_v4"], first["latitude"], first["longitude"]) == (
        "IT", 14593, 45.4975, 8.9395)


def test_a_country_index_is_not_probe_metadata(test_data):
    """The v6-path-inflation file maps countries to probe ids: a dict without objects."""
    assert read_probe_objects(test_data / "ripe-atlas/api-metadata/v6-path-inflation_probes_by_country.json") == []


@pytest.mark.parametrize(("content", "needle"), [
    (b"\x00\xffnot json", "not JSON probe metadata"),
    (b'"a string"', "got a JSON str"),
    (b"42", "got a JSON int"),
])
def test_what_is_not_probe_metadata_is_refused_with_the_file_named(content, needle, tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(InputFormatError, match=needle) as info:
        read_probe_objects(path)
    assert "bad.json" in str(info.value)


def test_local_probe_from_a_settings_file_then_overrides(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("[local_probe]\nprb_id = 2000000007\nlatitude = 52.37\nlongitude = 4.9\ncountry_code = 'NL'\n")
    probe = local_probe(cfg, overrides={"country_code": "DE", "latitude": None})
    assert (probe.prb_id, probe.latitude, probe.longitude, probe.country_code) == (2000000007, 52.37, 4.9, "DE")


def test_local_probe_without_a_settings_file_uses_the_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config-here"))
    probe = local_probe(overrides={"prb_id": 2000000001})
    assert probe.prb_id == 2000000001


def test_local_probe_with_an_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read local probe settings"):
        local_probe(tmp_path / "absent.toml")
