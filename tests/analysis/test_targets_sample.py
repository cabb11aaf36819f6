# ruff: noqa: F811 - pytest fixtures imported from tests.probes.atlas_server
"""Sampled destinations ([targets.sample]): real pfx2as and ip2country, checked independently."""

from __future__ import annotations

import bisect
import gzip
import ipaddress
from collections import Counter

import pytest

from analysis.datasets import import_files
from analysis.errors import AnalysisError
from analysis.targets import planned_sample, sample_targets
from probes import campaign as cp
from probes.atlas import AtlasClient
from probes.campaign.spec import parse_spec
from probes.errors import ConfigError
from tests.probes.atlas_server import (  # noqa: F401 - fixtures
    atlas_population,
    atlas_tls,
    atlas_world,
    standin,
)
from tests.probes.test_campaign import resolver, settings_for, spec_text

PFX2AS = "ip2asn/caida-pfx2as-mlab/routeviews-rv2.pfx2as.ipv4.2020-02.gz"
IP2COUNTRY = "ip2asn/iptoasn/2024-11-07_ip2country-v4.tsv.gz"


@pytest.fixture(scope="module")
def sample_cache(test_data, tmp_path_factory):
    cache = tmp_path_factory.mktemp("sample-cache")
    import_files("pfx2as", [test_data / PFX2AS], snapshot_id="sample", cache_dir=cache)
    import_files("ip2country", [test_data / IP2COUNTRY], snapshot_id="sample", cache_dir=cache)
    return cache


@pytest.fixture(scope="module")
def snap(sample_cache):
    from analysis.datasets import load_snapshot

    return load_snapshot("sample", cache_dir=sample_cache)


@pytest.fixture(scope="module")
def oracle(test_data):
    """Independent reading of the raw files: prefix -> origin field, and the ip2country ranges."""
    origins = {}
    with gzip.open(test_data / PFX2AS, "rt") as f:
        for line in f:
            net, plen, asn = line.split()
            origins[f"{net}/{plen}"] = asn
    ranges = []
    with gzip.open(test_data / IP2COUNTRY, "rt") as f:
        for line in f:
            a, b, cc = line.rstrip("\n").split("\t")
            ranges.append((int(ipaddress.ip_address(a)), int(ipaddress.ip_address(b)), cc))
    ranges.sort()
    starts = [r[0] for r in ranges]

    def country(addr: str) -> str | None:
        x = int(ipaddress.ip_address(addr))
        best = None
        for a, b, cc in ranges[max(0, bisect.bisect_right(starts, x) - 64):bisect.bisect_right(starts, x)]:
            if a <= x <= b and (best is None or b - a < best[1] - best[0]):
                best = (a, b, cc)
        return best[2] if best else None

    return origins, country


def test_sampled_destinations_are_in_their_prefix_their_as_and_the_country(snap, oracle):
    origins, country = oracle
    counts: Counter = Counter()
    t = sample_targets(snap, count=40, country="US", max_per_asn=2, seed=0, counts=counts)
    rows = t.to_pylist()
    assert len(rows) == 40
    for r in rows:
        net = ipaddress.ip_network(r["prefix"])
        addr = ipaddress.ip_address(r["address"])
        assert addr in net and addr not in (net.network_address, net.broadcast_address)
        assert origins[r["prefix"]] == str(r["asn"])  # a single origin (no MOAS '_' or set ',')
        assert country(r["address"]) == "US" and r["country_via"] == "ip2country"
    assert max(Counter(r["asn"] for r in rows).values()) <= 2
    # every prefix of the file is accounted for: eligible, or left out for a named reason
    v4 = sum(1 for p in origins)
    assert counts["eligible"] + sum(v for k, v in counts.items() if k != "eligible") == v4
    # MOAS or AS-set prefixes, once reserved co-origins (AS0, AS_TRANS, 65535, 2^32-1) are removed
    reserved = {"0", "23456", "65535", "4294967295"}
    real = [[x for x in a.replace(",", "_").split("_") if x not in reserved] for a in origins.values()]
    assert counts["moas"] == sum(1 for r in real if len(r) > 1)


def test_the_draw_is_reproducible_and_the_seed_matters(snap):
    a = sample_targets(snap, count=10, seed=7)
    assert a.equals(sample_targets(snap, count=10, seed=7))
    assert a.column("address").to_pylist() != sample_targets(snap, count=10, seed=8).column("address").to_pylist()


def test_space_weighting_prefers_large_prefixes_and_asns_restrict(snap):
    kw = {"count": 200, "max_per_asn": 10_000, "seed": 0}
    space = sorted(int(p.split("/")[1]) for p in sample_targets(snap, weight="space", **kw).column("prefix").to_pylist())
    uniform = sorted(int(p.split("/")[1]) for p in sample_targets(snap, weight="uniform", **kw).column("prefix").to_pylist())
    # US /24s far outnumber shorter prefixes, but cover far less space
    assert space[100] < uniform[100]
    only = sample_targets(snap, count=50, max_per_asn=50, asns=(7018, 701), seed=0)
    assert only.num_rows > 0 and set(only.column("asn").to_pylist()) <= {7018, 701}


def test_bad_arguments_are_one_line_errors(snap, tmp_path):
    with pytest.raises(AnalysisError, match="country must be"):
        sample_targets(snap, count=1, country="usa")
    with pytest.raises(AnalysisError, match="weight must be"):
        sample_targets(snap, count=1, weight="heavy")
    (tmp_path / "p.txt").write_text("8.8.8.0\t24\t15169\n")
    bare = import_files("pfx2as", [tmp_path / "p.txt"], snapshot_id="bare", cache_dir=tmp_path)
    with pytest.raises(AnalysisError, match="import ip2country"):
        sample_targets(bare, count=1)


@pytest.mark.parametrize(("body", "key", "fragment"), [
    ('[targets.sample]\ncountry = "US"\n', None, "[targets.sample].count: missing"),
    ('[targets.sample]\ncount = 5\ncountry = "usa"\n', "country", "[targets.sample].country"),
    ('[targets.sample]\ncount = 5\nweight = "heavy"\n', "weight", "[targets.sample].weight"),
    ('[targets.sample]\ncount = 5\nasns = [0]\n', "asns", "[targets.sample].asns"),
])
def test_sample_spec_errors_name_line_and_field(body, key, fragment):
    text = spec_text(targets=f'addresses = ["24.39.56.10"]\n{body}')
    lines = text.splitlines()
    header = lines.index("[targets.sample]")
    line = 1 + (header if key is None else next(i for i in range(header, len(lines))
                                                if lines[i].startswith(f"{key} =")))
    with pytest.raises(ConfigError) as e:
        parse_spec(text, origin="s.toml")
    assert str(e.value).startswith(f"s.toml:{line}: ") and fragment in str(e.value)


def test_campaign_plan_draws_shows_and_records_sampled_targets(standin, sample_cache, snap, oracle):
    _, country = oracle
    spec = parse_spec(spec_text(targets='[targets.sample]\ncount = 4\nseed = 3\nsnapshot = "sample"\n'),
                      origin="s.toml")
    s = settings_for(standin)
    with pytest.raises(ConfigError, match=r"s.toml:\d+: \[targets.sample\] needs reference data"):
        cp.plan(spec, client=AtlasClient(s), settings=s, resolver=resolver)
    p = cp.plan(spec, client=AtlasClient(s), settings=s, resolver=resolver,
                sampler=planned_sample(cache_dir=str(sample_cache)))
    want = sample_targets(snap, count=4, seed=3)
    assert [t.name for t in p.targets] == want.column("address").to_pylist()
    assert all(t.origin == "sample" and country(t.name) == "US" for t in p.targets)
    out = cp.render_plan(p)
    for t in p.targets:
        assert f"{t.name}  AS{t.asn}, located by ip2country (US, prefix " in out
    assert "sampled targets (4): " in out and "seed 3, snapshot sample" in out
    recorded = p.summary()["target_list"]
    assert [r["why"] for r in recorded] == want.column("why").to_pylist()
