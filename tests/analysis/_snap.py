"""Test helper: one snapshot of the real reference files in ../shared/data, built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.datasets import Snapshot, import_files, load_snapshot


def real_sources(root: Path) -> list[tuple[str, list[Path]]]:
    pdb = root / "peeringdb"
    return [
        ("pfx2as", sorted((root / "ip2asn" / "caida-pfx2as-mlab").glob("*.pfx2as.*.gz"))),
        ("peeringdb", sorted((pdb / "traixroute-2017").glob("*.json"))
         + sorted((pdb / "api-samples-beta-2026-04").glob("*.json"))),
        ("caida-ixp", [root / "caida" / "ixp-dataset" / "ixs_202310.jsonl"]),
        ("pch-subnets", [root / "other" / "traixroute-pch-2017" / "ixp_subnets.csv",
                         root / "other" / "traixroute-pch-2017" / "ixp_exchange.csv",
                         root / "other" / "pch-ix-networks" / "ix_ip4.csv",
                         root / "other" / "pch-ix-networks" / "ix_ip6.csv"]),
        ("pch-membership", [root / "other" / "traixroute-pch-2017" / "ixp_membership.csv"]),
        ("rir-delegated", sorted((root / "other" / "rir-delegated").glob("*.gz"))),
    ]


def build(root: Path, cache: Path, snapshot_id: str = "real") -> Snapshot:
    snap = None
    for kind, paths in real_sources(root):
        snap = import_files(kind, paths, snapshot_id=snapshot_id, cache_dir=cache)
    assert snap is not None
    return snap


def shared_snapshot(test_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    """Build the real snapshot once per test session (later callers load it)."""
    cache = tmp_path_factory.getbasetemp() / "refcache-real"
    done = cache / "snapshots" / "real" / "rir-delegated" / "manifest.json"
    if done.is_file():
        return load_snapshot("real", cache_dir=cache)
    return build(test_data, cache)
