"""The flagged-carrier registry: shipped defaults, validation, as2org siblings."""

from __future__ import annotations

import pyarrow as pa
import pytest

from analysis.errors import RegistryError
from analysis.registry import default_registry_path, load_registry, with_siblings


def test_default_registry_has_the_required_families_and_sources():
    reg = load_registry()
    assert reg.path == str(default_registry_path())
    want = {
        "china-telecom": {4134, 4809, 23764, 36678},
        "china-unicom": {4837, 9929, 10099, 19174},
        "china-mobile": {9808, 58453, 58807, 9231},
    }
    for fam, asns in want.items():
        for a in asns:
            e = reg.family_of(a)
            assert e is not None and e.family == fam and e.via == "registry", a
    assert all(e.source.startswith("https://") for e in reg.asns)
    cn2 = [p for p in reg.prefixes if p.prefix == "59.43.0.0/16"]
    assert cn2 and cn2[0].family == "china-telecom" and cn2[0].rir == "apnic" and cn2[0].country == "CN"
    assert reg.family_of(3356) is None


def test_vectorized_lookup_matches_family_of():
    reg = load_registry()
    fam, via = reg.lookup(pa.array([4134, 3356, None, 9808], pa.int64()))
    assert fam.to_pylist() == ["china-telecom", None, None, "china-mobile"]
    assert via.to_pylist() == ["registry", None, None, "registry"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("schema = 2\n", "unsupported registry schema"),
        ("schema = 1\n", "no \\[\\[family\\]\\]"),
        ("schema = 1\n[[family]]\nname='x'\n", "has no 'id'"),
        ("schema = 1\n[[family]]\nid='a'\n[[family.asn]]\nasn=1\n", "'source' is required"),
        ("schema = 1\n[[family]]\nid='a'\n[[family.asn]]\nasn=1\nsource='s'\n"
         "[[family]]\nid='b'\n[[family.asn]]\nasn=1\nsource='s'\n", "already listed under 'a'"),
        ("schema = 1\n[[family]]\nid='a'\n[[family.prefix]]\nprefix='1.0.0.0/8'\n", "missing asn, rir"),
        ("schema = [\n", "not valid TOML"),
    ],
)
def test_invalid_registry_files_name_the_problem(tmp_path, text, message):
    p = tmp_path / "reg.toml"
    p.write_text(text)
    with pytest.raises(RegistryError, match=message):
        load_registry(p)


def test_missing_registry_file(tmp_path):
    with pytest.raises(RegistryError, match="not found"):
        load_registry(tmp_path / "nope.toml")


def test_as2org_siblings_are_added_with_a_flag():
    reg = load_registry()
    asns = pa.table({
        "asn": pa.array([4134, 4812, 64500, 4837, 64501, 64502, 9808], pa.int64()),
        "org_id": pa.array(["CT", "CT", "CT", "CU", "CU", "MIX", "MIX"]),
    })
    out = with_siblings(reg, asns)
    assert out.family_of(64500).family == "china-telecom"
    assert out.family_of(64500).via == "as2org-sibling"
    assert out.family_of(64500).source == "as2org:CT"
    assert out.family_of(64501).family == "china-unicom"
    assert out.family_of(4812).via == "registry"  # listed entries keep their own source
    # MIX holds only 9808 (mobile) -> 64502 is a mobile sibling
    assert out.family_of(64502).family == "china-mobile"
    assert reg.family_of(64500) is None  # the input registry is unchanged


def test_org_spanning_two_families_adds_no_sibling():
    reg = load_registry()
    asns = pa.table({"asn": pa.array([4134, 4837, 64510], pa.int64()), "org_id": pa.array(["X", "X", "X"])})
    assert with_siblings(reg, asns).family_of(64510) is None


@pytest.mark.parametrize("module", ["analysis.datasets", "analysis.annotate", "analysis.registry"])
def test_public_api_is_what_the_module_says(module):
    import importlib
    import inspect

    mod = importlib.import_module(module)
    for name in mod.__all__:
        assert hasattr(mod, name), name
    defined = {n for n, obj in vars(mod).items()
               if not n.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
               and getattr(obj, "__module__", None) == module}
    assert defined <= set(mod.__all__), defined - set(mod.__all__)
