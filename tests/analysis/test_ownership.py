"""Router ownership (analysis.ownership) and the as-rel / as-siblings readers."""

from __future__ import annotations

import bz2
import functools
import gzip
import lzma
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from analysis._readers_rel import read_as_rel, read_as_siblings
from analysis.errors import DatasetFormatError
from analysis.ownership import OWNER_VIAS, OWNERS_SCHEMA, apply_owners, infer_owners
from analysis.paths import build_paths

# hand-made ASes (documentation range) and addresses
A, B, C, D = 64500, 64501, 64502, 64503
REL = pa.table({"provider": [A, A], "customer": [B, D]})  # A-B, A-D adjacent; C adjacent to nobody
SIB = pa.table({"group": [0, 0], "asn": [A, C]})


def _hops(traces: list[list[tuple[str, int | None, str | None, int | None]]], dst: str = "198.51.100.99") -> pa.Table:
    """traces: per traceroute, (addr, asn, ixp_id, member) per hop."""
    cols: dict[str, list] = {k: [] for k in ("msm_id", "prb_id", "timestamp", "hop", "attempt", "reply_from",
                                             "ip_class", "asn", "ixp_id", "member_asn", "dst_addr", "rtt",
                                             "family", "late", "dup")}
    for t, hops in enumerate(traces):
        for h, (addr, asn, ixp, member) in enumerate(hops, 1):
            row = {"msm_id": 1, "prb_id": t, "timestamp": 1_600_000_000, "hop": h, "attempt": 0,
                   "reply_from": addr, "ip_class": "private" if addr.startswith("10.") else "public",
                   "asn": asn, "ixp_id": ixp, "member_asn": member, "dst_addr": dst, "rtt": float(h),
                   "family": None, "late": False, "dup": False}
            for k, v in row.items():
                cols[k].append(v)
    schema = {"timestamp": pa.timestamp("s", tz="UTC"), "asn": pa.int64(), "member_asn": pa.int64(),
              "ixp_id": pa.string(), "family": pa.string(), "hop": pa.int16(), "attempt": pa.int16()}
    return pa.table({k: pa.array(v, schema.get(k)) for k, v in cols.items()})


def _owner(table: pa.Table, addr: str) -> tuple[int | None, str]:
    row = table.filter(pc.equal(table["addr"], addr)).to_pylist()[0]
    return row["owner_asn"], row["owner_via"]


X = "203.0.113.7"  # the address under test
a1, a2, b1, b2, d1 = "192.0.2.1", "192.0.2.2", "198.51.100.1", "198.51.100.2", "198.51.100.50"


# expected owners derived by hand from the rules in the module notes
@pytest.mark.parametrize(
    ("trace", "want"),
    [
        pytest.param([(a1, A, None, None), (X, B, None, None), (a2, A, None, None)], (A, "subsequent-as"),
                     id="sandwich-related-subsequent-as"),
        pytest.param([(b1, B, None, None), (X, C, None, None), (b2, B, None, None)], (B, "third-party"),
                     id="sandwich-unrelated-third-party"),
        pytest.param([(a1, A, None, None), (a2, A, None, None), (X, C, None, None), (b1, B, None, None),
                      (b2, B, None, None)], (A, "sibling"), id="sibling-collapses-to-dominant-path-as"),
        pytest.param([(b1, B, None, None), (X, A, None, None), (d1, D, None, None)], (A, "origin"),
                     id="one-hop-transit-adjacent-to-both-stays"),
        pytest.param([(d1, D, None, None), (X, B, None, None), (a1, A, None, None)], (A, "subsequent-as"),
                     id="border-numbered-from-neighbour"),
        pytest.param([(b1, B, None, None), (X, C, None, None), (d1, D, None, None)], (D, "third-party"),
                     id="unrelated-to-both-neighbours"),
        pytest.param([(a1, A, None, None), (X, B, "ix1", D), (d1, D, None, None)], (D, "ixp-member"),
                     id="ixp-member"),
        pytest.param([(a1, A, None, None), (X, None, "ix1", None), (d1, D, None, None)], (D, "ixp-subsequent"),
                     id="ixp-without-member"),
        pytest.param([(a1, A, None, None), (X, None, None, None), (a2, A, None, None)], (A, "unannounced"),
                     id="unannounced-between-same-as"),
        pytest.param([(a1, A, None, None), (X, None, None, None), (b1, B, None, None)], (None, "unannounced"),
                     id="unannounced-at-border"),
        pytest.param([(a1, A, None, None), (X, D, None, None)], (D, "last-hop"), id="last-hop"),
        pytest.param([(a1, A, None, None), ("198.51.100.99", D, None, None)], (D, "destination"),
                     id="destination"),
        pytest.param([(a1, A, None, None), (X, A, None, None), (a2, A, None, None), (b1, B, None, None)],
                     (A, "origin"), id="inside-origin-run"),
        # the last A address before A's customer B, seen once: B's border router on a
        # provider-numbered link, or A's last router before a B-numbered one -- kept
        pytest.param([(a1, A, None, None), (X, A, None, None), (b1, B, None, None)], (A, "origin"),
                     id="provider-numbered-needs-evidence"),
        # going up from customer B to its provider A: the last B address stays B's
        pytest.param([(b1, B, None, None), (X, B, None, None), (a1, A, None, None)], (B, "origin"),
                     id="customer-side-keeps-origin"),
        # without relationships nobody knows who numbered the link
        pytest.param([(a1, C, None, None), (X, C, None, None), (b1, B, None, None)], (C, "origin"),
                     id="unrelated-keeps-origin"),
        pytest.param([(X, B, None, None), (a1, A, None, None)], (B, "origin"), id="first-hop"),
        pytest.param([("10.0.0.1", None, None, None), (a1, A, None, None)], (None, "non-public"),
                     id="non-public"),
    ],
)
def test_rules(trace, want):
    addr = X if any(h[0] == X for h in trace) else ("198.51.100.99" if want[1] == "destination" else "10.0.0.1")
    owners = infer_owners(_hops([trace]), relationships=REL, siblings=SIB)
    assert owners.schema == OWNERS_SCHEMA
    assert set(owners["owner_via"].to_pylist()) <= set(OWNER_VIAS)
    assert _owner(owners, addr) == want


# A peering link between C and D numbered from C's space: 203.0.113.6 on C's router,
# 203.0.113.7 (X) on D's. From C toward D, D's router answers from X; from D toward C, C's
# router answers from 203.0.113.6 right after a D hop.
C_TO_D = [("203.0.113.1", C, None, None), (X, C, None, None), (d1, D, None, None)]
D_TO_C = [("198.51.100.51", D, None, None), ("203.0.113.6", C, None, None), ("203.0.113.2", C, None, None)]


def test_link_mate_gives_the_far_end_of_a_numbered_link_to_the_far_router():
    owners = infer_owners(_hops([C_TO_D, D_TO_C]))  # needs no relationships
    assert _owner(owners, X) == (D, "link-mate")
    assert _owner(owners, "203.0.113.6") == (C, "origin")  # the mate itself is C's router


# Rule 7c. A and B are adjacent (REL). X, from B's space, ends B's run toward its provider A.
UP = [(b1, B, None, None), (X, B, None, None)]
a3, a4 = "192.0.2.3", "192.0.2.4"


def test_run_end_fanning_out_into_the_next_as_is_its_border():
    # X is followed by two distinct A addresses: A's interior begins after it, so X is A's
    # border router on a link numbered from B's space
    owners = infer_owners(_hops([UP + [(a1, A, None, None)], UP + [(a2, A, None, None)]]), relationships=REL)
    assert _owner(owners, X) == (A, "run-end")


def test_run_end_before_a_border_entered_from_the_origin_only_stays():
    # X is always followed by a1, and a1 also follows another B address, never an A one:
    # a1 is A's border interface facing B, X the last B router (A-numbered link)
    other = [("198.51.100.3", B, None, None), ("198.51.100.4", B, None, None), (a1, A, None, None)]
    owners = infer_owners(_hops([UP + [(a1, A, None, None)]] * 3 + [other]), relationships=REL)
    assert _owner(owners, X) == (B, "origin")


def test_run_end_before_an_interior_address_reached_from_other_ases():
    # the same, but a1 is also reached from D: an interior A interface, X is A's border
    other = [(d1, D, None, None), (a1, A, None, None)]
    owners = infer_owners(_hops([UP + [(a1, A, None, None)]] * 3 + [other]), relationships=REL)
    assert _owner(owners, X) == (A, "run-end")


@pytest.mark.parametrize(("times", "want"), [(2, (B, "origin")), (3, (A, "run-end"))])
def test_run_end_before_a_lone_successor_needs_support(times, want):
    # a1 follows X alone (the far end of a point-to-point link behind X): evidence only
    # when seen often enough, not from a single traceroute
    owners = infer_owners(_hops([UP + [(a1, A, None, None), (a3, A, None, None)]] * times), relationships=REL)
    assert _owner(owners, X) == want


def test_run_end_ignores_what_follows_what_inside_a_forwarding_loop():
    # a1 follows X in two traceroutes; in a third, a forwarding loop also puts a1 after an A
    # address: that is no evidence that a1 is A's interior, so X stays B's
    loop = UP + [(a1, A, None, None), (a2, A, None, None), (a1, A, None, None), (a2, A, None, None)]
    owners = infer_owners(_hops([UP + [(a1, A, None, None)]] * 2 + [loop]), relationships=REL)
    assert _owner(owners, X) == (B, "origin")
    # the same a1 reached from A's own a2 outside a loop: A's interior begins after X
    owners = infer_owners(_hops([UP + [(a1, A, None, None)]] * 2 + [[(a2, A, None, None), (a1, A, None, None)]]),
                          relationships=REL)
    assert _owner(owners, X) == (A, "run-end")


# Rule 7e. X, from A's space, is D's border router (A is D's provider): it ends A's run
# toward D three times, and is seen four times right after B (a third-party reply on a
# B-D path), where rule 11 alone would keep A as a one-hop transit between B and D.
d2 = "198.51.100.52"


def _border_seen_from_b(after_run_end: list[str], after_b: str = d1, run_ends: int = 3) -> pa.Table:
    run_end = [[(a1, A, None, None), (X, A, None, None), (nxt, D if nxt != a3 else A, None, None)]
               for nxt in after_run_end[:run_ends]]
    return _hops(run_end + [[(b1, B, None, None), (X, A, None, None), (after_b, D, None, None)]] * 4)


@pytest.mark.parametrize(
    ("after_run_end", "run_ends", "want"),
    [
        pytest.param([d1, d2, d1], 3, (D, "provider-numbered"), id="d-interior-fans-out-behind-it"),
        pytest.param([d1, d2], 2, (A, "origin"), id="too-few-run-ends"),
        pytest.param([d1, d1, d1], 3, (A, "origin"), id="lone-successor-is-not-enough"),
        pytest.param([d1, d2, a3], 3, (A, "origin"), id="followed-by-its-own-as-once"),
    ],
)
def test_mostly_isolated_border_that_also_ends_its_origins_run(after_run_end, run_ends, want):
    owners = infer_owners(_border_seen_from_b(after_run_end, run_ends=run_ends), relationships=REL)
    assert _owner(owners, X) == want


def test_run_end_needs_adjacent_ases():
    # C and B are not adjacent in REL: nothing says who numbered the link
    trace = [(b1, B, None, None), (X, B, None, None)]
    owners = infer_owners(_hops([trace + [("203.0.113.20", C, None, None)],
                                 trace + [("203.0.113.21", C, None, None)]]), relationships=REL)
    assert _owner(owners, X) == (B, "origin")


def _with_dst_asn(hops: pa.Table, asn: int) -> pa.Table:
    return hops.append_column("dst_asn", pa.array([asn] * hops.num_rows, pa.int64()))


@pytest.mark.parametrize(("dst_asn", "want"), [
    (B, (B, "destination-as")),  # B adjacent to A: B's border answered, then B's host stayed silent
    (A, (A, "origin")),  # the destination is in A itself
    (C, (A, "origin")),  # C is not adjacent to A: A's last router before a silent network
])
def test_last_address_toward_an_adjacent_destination_as(dst_asn, want):
    # every traceroute ends at X, an A address after A hops, toward a destination of dst_asn
    hops = _hops([[(a1, A, None, None), (X, A, None, None)]] * 2)
    assert _owner(infer_owners(_with_dst_asn(hops, dst_asn), relationships=REL), X) == want
    assert _owner(infer_owners(hops, relationships=REL), X) == (A, "origin")  # no dst_asn: no rule 7d


def test_link_mate_needs_the_mate_seen_after_the_next_as():
    # one direction only: X could be C's own last router (D-numbered link): it stays C's
    assert _owner(infer_owners(_hops([C_TO_D])), X) == (C, "origin")
    # the mate seen, but after another AS than the one X leads to: no evidence for D
    other = [("192.0.2.77", A, None, None), ("203.0.113.6", C, None, None), ("203.0.113.2", C, None, None)]
    assert _owner(infer_owners(_hops([C_TO_D, other])), X) == (C, "origin")
    # X followed by D only in part of its occurrences: not a link to D
    elsewhere = [("203.0.113.1", C, None, None), (X, C, None, None), ("192.0.2.78", A, None, None)]
    assert _owner(infer_owners(_hops([C_TO_D, D_TO_C, elsewhere])), X) == (C, "origin")


def test_parallel_hop_takes_the_as_that_answers_the_same_slot_elsewhere():
    """B's router sometimes answers from X, an address of A (adjacent to both B and D, so a
    one-hop transit by the relationships), and sometimes from b2, between the same b1 and
    d1: X is B's (an alias or a parallel router), not a transit through A."""
    via_x = [(b1, B, None, None), (X, A, None, None), (d1, D, None, None)]
    via_b2 = [(b1, B, None, None), (b2, B, None, None), (d1, D, None, None)]
    assert _owner(infer_owners(_hops([via_x]), relationships=REL), X) == (A, "origin")
    assert _owner(infer_owners(_hops([via_x, via_b2]), relationships=REL), X) == (B, "parallel-hop")
    # b2 once against X five times: a rare path change, not load balancing (PARALLEL_SHARE)
    assert _owner(infer_owners(_hops([via_x] * 5 + [via_b2]), relationships=REL), X) == (A, "origin")
    # the slot answered by two other ASes, or by an AS that is neither X's neighbour before
    # nor after (C, a one-hop transit itself: adjacent to both B and D here): no owner from it
    rel_c = pa.table({"provider": [A, A, C, C], "customer": [B, D, B, D]})
    via_c = [(b1, B, None, None), ("192.0.2.9", C, None, None), (d1, D, None, None)]
    assert _owner(infer_owners(_hops([via_x, via_b2, via_c]), relationships=rel_c), X) == (A, "origin")
    assert _owner(infer_owners(_hops([via_x, via_c]), relationships=rel_c), "192.0.2.9") == (C, "origin")
    assert _owner(infer_owners(_hops([via_x, via_c]), relationships=rel_c), X) == (A, "origin")
    # with REL, C is adjacent to nobody: the rules make its address D's router (third-party),
    # and X, in the same slot, is D's router too
    assert _owner(infer_owners(_hops([via_x, via_c]), relationships=REL), X) == (D, "parallel-hop")


def test_parallel_hop_follows_the_owner_of_a_neighbour_numbered_previous_hop():
    """The address before the slot is B's border numbered from its provider A (rule 7a gives
    it to B); B's next router answers from b2, or once third-party from X (D's space): X is
    B's, although the origin AS of the hop before it is A."""
    xb = "192.0.2.66"
    via_b2 = [(a1, A, None, None), (xb, A, None, None), (b2, B, None, None), (b1, B, None, None)]
    via_x = [(a1, A, None, None), (xb, A, None, None), (X, D, None, None), (b1, B, None, None)]
    owners = infer_owners(_hops([via_b2] * 10 + [via_x]), relationships=REL)
    assert _owner(owners, xb) == (B, "provider-numbered")
    assert _owner(owners, X) == (B, "parallel-hop")


def test_a_hop_between_two_ases_of_one_flagged_family_goes_to_the_next_one():
    """A third-party reply between two ASes of one flagged family (B then D, both annotated
    as one family) is the next AS's router, not a one-hop transit through C; without the
    annotation's family column it stays C's (C is adjacent to nobody, so `third-party` only
    when B == D)."""
    t = _hops([[(b1, B, None, None), (X, C, None, None), (d1, D, None, None)]])
    fam = pa.array(["china-telecom" if a in (B, D) else None for a in t["asn"].to_pylist()], pa.string())
    with_family = t.set_column(t.schema.get_field_index("family"), "family", fam)
    assert _owner(infer_owners(with_family, relationships=REL), X) == (D, "third-party")
    assert _owner(infer_owners(t, relationships=REL), X) == (D, "third-party")  # rule 11: adjacent to neither
    rel_c = pa.table({"provider": [A, A, C, C], "customer": [B, D, B, D]})  # C adjacent to both
    assert _owner(infer_owners(t, relationships=rel_c), X) == (C, "origin")
    assert _owner(infer_owners(with_family, relationships=rel_c), X) == (D, "subsequent-as")


def _with_families(hops: pa.Table, family_of_row) -> pa.Table:
    fam = pa.array([family_of_row(r) for r in hops.to_pylist()], pa.string())
    return hops.set_column(hops.schema.get_field_index("family"), "family", fam)


M = 64510  # an IXP member AS


def test_an_as_announcing_an_ixp_lan_does_not_take_a_members_family():
    """On an IXP LAN row the annotation's family is the member's, not that of the AS
    announcing the LAN: B announcing a LAN where a China Telecom AS has a port does not make
    B China Telecom, so B ... D is no "S' x S" sandwich and C (adjacent to both) keeps X."""
    rel_c = pa.table({"provider": [C, C], "customer": [B, D]})
    trace = [(b1, B, None, None), (X, C, None, None), (d1, D, None, None)]
    at_ixp = [(a1, A, None, None), ("192.0.2.200", B, "ix-1", M), (d1, D, None, None)]
    hops = _with_families(_hops([trace, at_ixp]),
                          lambda r: "china-telecom" if M == r["member_asn"] or r["asn"] == D else None)
    assert _owner(infer_owners(hops, relationships=rel_c), X) == (C, "origin")
    # the same B annotated with that family for its own address is the sandwich
    own = _with_families(_hops([trace, at_ixp]), lambda r: "china-telecom" if r["asn"] in (B, D) else None)
    assert _owner(infer_owners(own, relationships=rel_c), X) == (D, "subsequent-as")


def test_an_ixp_member_takes_its_family_from_its_lan_rows():
    """The preceding AS of an address after an IXP LAN is the member; its family is the one
    the annotation gave its LAN rows, so member ... D of one family is an "S' x S" sandwich."""
    rel_c = pa.table({"provider": [C, C], "customer": [M, D]})
    trace = [("192.0.2.200", B, "ix-1", M), (X, C, None, None), (d1, D, None, None)]
    hops = _with_families(_hops([trace]),
                          lambda r: "china-telecom" if M == r["member_asn"] or r["asn"] == D else None)
    assert _owner(infer_owners(hops, relationships=rel_c), X) == (D, "subsequent-as")
    assert _owner(infer_owners(_hops([trace]), relationships=rel_c), X) == (C, "origin")  # without families


@pytest.mark.parametrize("first", ["china-telecom", "zz-other"])
def test_an_as_with_two_families_gets_the_first_whatever_the_chunk_order(first):
    """B annotated with two families (a stale row): the alphabetically first wins, in one
    call and chunk by chunk in either order, so the owners never depend on the row order."""
    trace = [(b1, B, None, None), (X, C, None, None), (d1, D, None, None)]
    other = [(b2, B, None, None), (a1, A, None, None)]
    second = "zz-other" if first == "china-telecom" else "china-telecom"
    hops = _hops([trace, other])
    fam = [None] * hops.num_rows
    fam[0], fam[3], fam[2] = first, second, "china-telecom"  # B's two rows, and D
    hops = hops.set_column(hops.schema.get_field_index("family"), "family", pa.array(fam, pa.string()))
    whole = infer_owners(hops, relationships=REL)
    assert _owner(whole, X) == (D, "third-party")
    assert _chunked_owners(hops, [0, 3, hops.num_rows], relationships=REL).equals(whole)
    rel_c = pa.table({"provider": [C, C], "customer": [B, D]})
    assert _owner(infer_owners(hops, relationships=rel_c), X) == (D, "subsequent-as")
    assert _chunked_owners(hops, [0, 3, hops.num_rows], relationships=rel_c).equals(
        infer_owners(hops, relationships=rel_c))


def _chunked_owners(hops: pa.Table, bounds: list[int], **kw) -> pa.Table:
    """The owners as the campaign stage computes them: attributes over all rows, occurrences
    per chunk of rows ``[bounds[i], bounds[i + 1])`` merged, then the rules."""
    from analysis import ownership

    chunks = (hops.slice(lo, hi - lo) for lo, hi in zip(bounds, bounds[1:], strict=False))
    return ownership.infer_owners_chunked(ownership.address_attributes(hops), chunks, **kw)


def test_chunks_at_traceroute_boundaries_give_the_owners_of_one_call():
    via_x = [(b1, B, None, None), (X, A, None, None), (d1, D, None, None)]
    via_b2 = [(b1, B, None, None), (b2, B, None, None), (d1, D, None, None)]
    hops = _hops([via_x, via_b2, via_x])
    whole = infer_owners(hops, relationships=REL)
    assert _owner(whole, X) == (B, "parallel-hop")
    assert _chunked_owners(hops, [0, 3, 6, 9], relationships=REL).equals(whole)
    # the comparison can fail: a chunk boundary inside a traceroute cuts its neighbours
    assert not _chunked_owners(hops, [0, 1, hops.num_rows], relationships=REL).equals(whole)


def test_chunks_read_by_functions_in_two_threads_give_the_same_owners():
    from analysis import ownership

    via_x = [(b1, B, None, None), (X, A, None, None), (d1, D, None, None)]
    via_b2 = [(b1, B, None, None), (b2, B, None, None), (d1, D, None, None)]
    hops = _hops([via_x, via_b2, via_x, via_b2, via_x])
    whole = infer_owners(hops, relationships=REL)
    read: list[int] = []

    def reader(lo: int) -> pa.Table:
        read.append(lo)
        return hops.slice(lo, 3)

    loaders = [functools.partial(reader, lo) for lo in range(0, hops.num_rows, 3)]
    got = ownership.infer_owners_chunked(ownership.address_attributes(hops), loaders, relationships=REL, threads=2)
    assert got.equals(whole)
    assert sorted(read) == list(range(0, hops.num_rows, 3))  # every chunk read once


def test_without_relationships_a_sandwich_is_third_party():
    owners = infer_owners(_hops([[(a1, A, None, None), (X, B, None, None), (a2, A, None, None)]]))
    assert _owner(owners, X) == (A, "third-party")


def test_apply_owners_keeps_origin_and_adds_columns():
    hops = _hops([[(a1, A, None, None), (X, B, None, None), (a2, A, None, None)]])
    out = apply_owners(hops, infer_owners(hops, relationships=REL))
    assert out["asn"].to_pylist() == [A, B, A]
    assert out["owner_asn"].to_pylist() == [A, A, A]
    # a2: preceded by X's origin B, nothing after it -> last-hop (neighbours are origin ASes)
    assert out["owner_via"].to_pylist() == ["origin", "subsequent-as", "last-hop"]


def _paths(hops: pa.Table):
    tr = hops.group_by(["msm_id", "prb_id", "timestamp", "dst_addr"]).aggregate([])
    return build_paths(hops, tr, pa.table({"prb_id": pa.array([], pa.int64())}))


def test_paths_use_owner_and_count_loop_artefacts():
    hops = _hops([[(a1, A, None, None), (X, B, None, None), (a2, A, None, None), (d1, D, None, None)]])
    before, _ = _paths(hops)
    after, drops = _paths(apply_owners(hops, infer_owners(hops, relationships=REL)))
    assert before["as_path"].to_pylist() == [[f"AS{A}", f"AS{B}", f"AS{A}", f"AS{D}"]]
    assert before["loop"].to_pylist() == [True]
    assert after["as_path"].to_pylist() == [[f"AS{A}", f"AS{D}"]]
    assert after["loop"].to_pylist() == [False]
    assert drops["loop-artefact-subsequent-as"] == 1 and drops["owner-subsequent-as"] == 1


def test_provider_numbered_border_followed_by_the_customers_interior():
    # X, the last A address before A's customer B, is followed by two distinct B addresses:
    # B's interior begins after it, so X is B's border router on the provider-numbered link
    t = [(a1, A, None, None), (X, A, None, None)]
    owners = infer_owners(_hops([t + [(b1, B, None, None)], t + [(b2, B, None, None)]]), relationships=REL)
    assert _owner(owners, X) == (B, "provider-numbered")


def test_real_multi_hop_as_loop_stays_a_loop():
    # A A B B A: B shows two consecutive hops, so neither is isolated (a routing loop); a
    # second traceroute shows a2 before another B address
    loop = [(a1, A, None, None), (a2, A, None, None), (b1, B, None, None), (b2, B, None, None),
            ("192.0.2.9", A, None, None)]
    hops = _hops([loop, [(a1, A, None, None), (a2, A, None, None), ("198.51.100.20", B, None, None)]])
    owners = infer_owners(hops, relationships=REL, siblings=SIB)
    # only a2, the last A address before A's customer B, moves (B's border router)
    moved = {r["addr"]: (r["owner_asn"], r["owner_via"]) for r in owners.to_pylist() if r["owner_asn"] != r["origin_asn"]}
    assert moved == {a2: (B, "provider-numbered")}
    paths, drops = _paths(apply_owners(hops, owners))
    assert paths["loop"].to_pylist() == [True, False]
    assert not any(k.startswith("loop-artefact") for k in drops)


# ---------------------------------------------------------------------------- readers
def test_as_rel_serial_1_and_2_real(test_data: Path):
    f1 = test_data / "caida" / "as-rel-serial-1" / "20180201.as-rel.txt.gz"
    f2 = test_data / "caida" / "as-rel2-2019-12" / "20191201.as-rel2.txt.bz2"
    text1 = gzip.decompress(f1.read_bytes()).decode()
    text2 = bz2.decompress(f2.read_bytes()).decode()
    n1 = sum(1 for ln in text1.splitlines() if ln and not ln.startswith("#"))
    n2 = sum(1 for ln in text2.splitlines() if ln and not ln.startswith("#"))
    counts: Counter = Counter()
    t1 = read_as_rel([(f1.name, f1.read_bytes())], counts)["links"]
    t2 = read_as_rel([(f2.name, f2.read_bytes())], counts)["links"]
    assert t1.num_rows + counts["duplicate-link"] == n1 or t1.num_rows == n1
    assert t2.num_rows == 432_411 == n2  # SOURCES.md
    assert set(t2["source"].unique().to_pylist()) >= {"bgp"}
    assert t1["source"].null_count == t1.num_rows


def test_as_siblings_real_keeps_the_lumped_chinese_group(test_data: Path):
    f = test_data / "other" / "as-siblings-whois-2020-01" / "SiblingASNs_20200111.txt.xz"
    lines = [ln.split() for ln in lzma.decompress(f.read_bytes()).decode().splitlines() if ln.strip()]
    counts: Counter = Counter()
    t = read_as_siblings([(f.name, f.read_bytes())], counts)["groups"]
    assert t.num_rows == sum(len(set(g)) for g in lines if len(set(g)) >= 2)
    g4134 = set(t.filter(pc.equal(t["asn"], 4134))["group"].to_pylist())
    g4837 = set(t.filter(pc.equal(t["asn"], 4837))["group"].to_pylist())
    assert g4134 & g4837  # the pitfall SOURCES.md describes: hence ownership-only use


@pytest.mark.parametrize("reader", [read_as_rel, read_as_siblings])
def test_wrong_file_names_file_and_line(reader):
    with pytest.raises(DatasetFormatError, match=r"bogus\.txt:2: not"):
        reader([("bogus.txt", b"# comment\n<html>hello</html>\n")], Counter())


def test_as_rel_bad_lines_counted():
    counts: Counter = Counter()
    t = read_as_rel([("r.txt", b"1|2|-1\n2|1|-1\n3|3|0\n4|5|7\n5|4|0|bgp\nxx\n")], counts)["links"]
    assert t.to_pylist() == [{"provider": 1, "customer": 2, "rel": -1, "source": None},
                             {"provider": 4, "customer": 5, "rel": 0, "source": "bgp"}]
    assert counts == Counter({"duplicate-link": 1, "bad-asn": 1, "unknown-rel": 1, "bad-line": 1})


# ---------------------------------------------------------------------------- real data
@pytest.mark.slow
def test_real_menog_artefacts_drop(test_data: Path, real_snapshot):
    from analysis.annotate import annotate
    from tests.analysis._hops import atlas_records, hop_table

    hops = hop_table(atlas_records(test_data / "ripe-atlas" / "traceroutes" / "menog_traceroutes_full.ndjson.xz"))
    ann, _ = annotate(hops, real_snapshot)
    rel_f = test_data / "caida" / "as-rel2-2019-12" / "20191201.as-rel2.txt.bz2"
    sib_f = test_data / "other" / "as-siblings-whois-2020-01" / "SiblingASNs_20200111.txt.xz"
    rel = read_as_rel([(rel_f.name, rel_f.read_bytes())], Counter())["links"]
    sib = read_as_siblings([(sib_f.name, sib_f.read_bytes())], Counter())["groups"]
    t0 = time.perf_counter()
    owners = infer_owners(ann, relationships=rel, siblings=sib)
    rate = owners.num_rows / (time.perf_counter() - t0)
    print(f"{owners.num_rows} addresses, {rate:.0f} addresses/s")
    # traceroute-complete chunks (about ten, cut where a traceroute ends) give the same table
    srt = ann.take(pc.sort_indices(ann, [("msm_id", "ascending"), ("prb_id", "ascending"),
                                         ("timestamp", "ascending"), ("hop", "ascending"), ("attempt", "ascending")]))
    cols = [srt.column(c).cast(pa.int64()).to_numpy() for c in ("msm_id", "prb_id", "timestamp")]
    ends = np.flatnonzero((cols[0][1:] != cols[0][:-1]) | (cols[1][1:] != cols[1][:-1])
                          | (cols[2][1:] != cols[2][:-1])) + 1
    bounds = [0, *ends[:: max(len(ends) // 10, 1)][1:].tolist(), srt.num_rows]
    assert len(bounds) > 5
    assert _chunked_owners(srt, bounds, relationships=rel, siblings=sib).equals(
        infer_owners(srt, relationships=rel, siblings=sib))
    assert _owner(owners, "82.178.159.1")[0] in (8529, 28885)  # one canonical AS per sibling pair
    assert _owner(owners, "180.231.217.122")[0] == 6453
    out = apply_owners(ann, owners)

    def aba(col: str) -> tuple[int, int]:  # plain-Python pass over first replies
        d = out.select(["msm_id", "prb_id", "timestamp", "hop", "reply_from", "ip_class", col, "ixp_id"]).to_pydict()
        seqs: dict = {}
        seen = set()
        for m, p, ts, h, r, c, a, ixp in zip(*d.values(), strict=True):
            if r is None or (m, p, ts, h) in seen:
                continue
            seen.add((m, p, ts, h))
            if c == "public" and a is not None and ixp is None:
                s = seqs.setdefault((m, p, ts), [])
                if not s or s[-1] != a:
                    s.append(a)
        n_aba = sum(any(s[i] == s[i + 2] for i in range(len(s) - 2)) for s in seqs.values())
        n_loop = sum(len(set(s)) < len(s) for s in seqs.values())
        return n_aba, n_loop

    out = out.append_column("eff", pc.if_else(pc.is_valid(out["owner_via"]), out["owner_asn"], out["asn"]))
    (aba0, loop0), (aba1, loop1) = aba("asn"), aba("eff")
    print(f"A-B-A {aba0} -> {aba1}, repeated-AS paths {loop0} -> {loop1}")
    assert aba0 > 2000 and aba1 < aba0 / 3
    assert loop1 < loop0 / 2


def test_the_usual_address_before_an_address_does_not_depend_on_the_row_order():
    """Rule 12's "address usually before it" (X follows A once and A2 once): the tie goes
    to the same address whatever order the traceroutes' rows come in, in one call and
    chunk by chunk with the attributes in the campaign's order (it went to whichever
    address the rows met first, so the same hops gave X two owners)."""
    from analysis.ownership import address_attributes, infer_owners_chunked

    a, a2, y = "192.0.2.1", "192.0.2.2", "203.0.113.9"
    tr1 = [(a, 5, None, None), (X, 3, None, None), (b1, 2, None, None)]
    tr2 = [(a2, 1, None, None), (X, 3, None, None), (b1, 2, None, None)]
    tr3 = [(a, 5, None, None), (y, 5, None, None), (b1, 2, None, None)]
    h = _hops([tr1, tr2, tr3])
    orders = [list(range(9)), list(range(9))[::-1], [3, 4, 5, 0, 1, 2, 6, 7, 8], [6, 7, 8, 3, 4, 5, 0, 1, 2]]
    got = {_owner(infer_owners(h.take(pa.array(o))), X) for o in orders}
    sorted_rows = h.sort_by([(k, "ascending") for k in ("msm_id", "prb_id", "timestamp", "hop", "attempt")])
    for o in orders:
        got.add(_owner(infer_owners_chunked(address_attributes(h.take(pa.array(o))),
                                            [h.slice(3, 3), h.take(pa.array([0, 1, 2, 6, 7, 8]))]), X))
        got.add(_owner(infer_owners_chunked(address_attributes(sorted_rows), [h.take(pa.array(o))]), X))
    assert got == {(5, "parallel-hop")}  # A (AS5) is first in text order; Y of AS5 sits in its slot


@pytest.mark.parametrize(("after", "want"), [
    (("206.126.236.50", None, "ix-1", None), (B, "origin")),  # an IXP LAN, member unknown
    (("203.0.113.77", None, None, None), (B, "origin")),  # a public address no one announces
    (("10.0.0.1", None, None, None), (D, "destination-as")),  # a private hop is bridged
])
def test_destination_as_only_where_no_public_hop_follows(after, want):
    """Rule 7d gives an address to the destination AS only when no public hop ever follows
    it: a public hop whose AS is unknown still follows it (the router before a LAN is its
    own AS's); it used to count as nothing following."""
    x = "192.0.2.9"
    trs = [[(b1, B, None, None), (x, B, None, None), after] for _ in range(3)]
    hops = _with_dst_asn(_hops(trs), D)
    assert _owner(infer_owners(hops, relationships=pa.table({"provider": [B], "customer": [D]})), x) == want
