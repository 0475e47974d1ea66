"""The IPVS schedulers decide as the kernel's ip_vs_{rr,wrr,lc,wlc,sh,dh,mh}.c do."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from svcsim.netfilter.ipvs_hashing import (
    MH_TAB_SIZE,
    DestinationHashing,
    MaglevHashing,
    SourceHashing,
    hash_32,
    hsiphash_u32,
)
from svcsim.netfilter.ipvs_sched import (
    Destination,
    Flow,
    LeastConnection,
    RoundRobin,
    WeightedLeastConnection,
    WeightedRoundRobin,
    make_scheduler,
)
from tests.netfilter.siphash_ref import siphash

FLOW = Flow("10.1.0.9", 40000, "10.96.0.10", 80)


def dests(
    *weights: int, active: tuple[int, ...] = (), inactive: tuple[int, ...] = ()
) -> list[Destination]:
    return [
        Destination(
            f"10.0.0.{i + 1}",
            80,
            w,
            w,
            active[i] if i < len(active) else 0,
            inactive[i] if i < len(inactive) else 0,
        )
        for i, w in enumerate(weights)
    ]


def picks(sched: object, ds: list[Destination], n: int) -> str:
    out = []
    for _ in range(n):
        i = sched.schedule(ds, FLOW)  # type: ignore[attr-defined]
        out.append("-" if i is None else "ABCDEFGH"[i])
    return "".join(out)


def test_hash_32_is_the_golden_ratio_multiply() -> None:
    assert hash_32(0, 8) == 0
    assert hash_32(1, 8) == 0x61  # top byte of GOLDEN_RATIO_32 0x61C88647
    assert hash_32(0xFFFFFFFF, 32) == (0xFFFFFFFF * 0x61C88647) & 0xFFFFFFFF


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_hsiphash_is_siphash_1_3_with_the_key_in_both_words(value: int, key: int) -> None:
    reference = siphash(key.to_bytes(8, "little") * 2, value.to_bytes(4, "little"), 1, 3)
    assert hsiphash_u32(value, key) == reference & 0xFFFFFFFF


def test_reference_siphash_meets_the_papers_test_vector() -> None:
    assert siphash(bytes(range(16)), b"") == 0x726FDB47DD0E0E31


def test_rr_walks_the_list_skipping_weight_zero() -> None:
    rr = RoundRobin()
    ds = dests(1, 0, 1)
    assert picks(rr, ds, 4) == "ACAC"
    assert picks(RoundRobin(), dests(0, 0), 2) == "--"


def test_rr_pointer_moves_to_the_predecessor_when_its_destination_is_deleted() -> None:
    rr = RoundRobin()
    ds = dests(1, 1, 1)
    assert picks(rr, ds, 2) == "AB"  # the pointer is at B
    del ds[1]
    rr.dests_changed(ds, removed_index=1)
    chosen = [ds[rr.schedule(ds, FLOW) or 0].address for _ in range(2)]
    assert chosen == ["10.0.0.3", "10.0.0.1"]  # on from A, B's predecessor


def test_rr_after_a_destination_is_added_at_the_head() -> None:
    rr = RoundRobin()
    ds = dests(1, 1)
    assert picks(rr, ds, 1) == "A"
    ds.insert(0, Destination("10.0.0.9", 80, 1, 1))
    rr.add_at_head()
    assert rr.last == 1  # still the old A, now second
    assert [ds[i].address for i in (rr.schedule(ds, FLOW), rr.schedule(ds, FLOW))] == [
        "10.0.0.2",
        "10.0.0.9",
    ]


def test_wrr_gives_the_classic_interleaving() -> None:
    wrr = WeightedRoundRobin()
    ds = dests(4, 3, 2)
    wrr.dests_changed(ds)
    assert picks(wrr, ds, 18) == "AABABCABC" * 2


def test_wrr_with_all_weights_zero_has_no_destination() -> None:
    wrr = WeightedRoundRobin()
    ds = dests(0, 0)
    wrr.dests_changed(ds)
    assert picks(wrr, ds, 2) == "--"


@pytest.mark.parametrize(
    ("weights", "active", "inactive", "lc", "wlc"),
    [
        ((1, 1, 1), (2, 1, 1), (0, 0, 0), "B", "B"),  # a tie: the first in list order
        ((1, 1), (1, 0), (0, 255), "B", "B"),  # 0*256+255 < 1*256+0
        ((1, 1), (1, 0), (0, 256), "A", "A"),  # 256 == 256: the first stays
        ((1, 3), (1, 2), (0, 0), "A", "B"),  # wlc: 512/3 < 256/1
        ((0, 1), (0, 5), (0, 0), "B", "B"),  # weight 0 never chosen
    ],
)
def test_least_connection_uses_active_times_256_plus_inactive(
    weights: tuple[int, ...], active: tuple[int, ...], inactive: tuple[int, ...], lc: str, wlc: str
) -> None:
    ds = dests(*weights, active=active, inactive=inactive)
    assert picks(LeastConnection(), ds, 1) == lc
    assert picks(WeightedLeastConnection(), ds, 1) == wlc


def test_sh_table_repeats_each_destination_weight_times() -> None:
    sh = SourceHashing()
    ds = dests(2, 1)
    sh.dests_changed(ds)
    assert sh.buckets[:6] == [0, 0, 1, 0, 0, 1]
    assert Counter(sh.buckets) == {0: 171, 1: 85}


def test_dh_table_is_round_robin_over_the_list() -> None:
    dh = DestinationHashing()
    ds = dests(5, 1, 1)
    dh.dests_changed(ds)
    assert dh.buckets[:4] == [0, 1, 2, 0]


@given(st.lists(st.integers(1, 3), min_size=1, max_size=6), st.ip_addresses(v=4))
def test_hashing_schedulers_send_a_source_to_one_destination(
    weights: list[int], src: object
) -> None:
    ds = dests(*weights)
    for sched in (SourceHashing(), MaglevHashing(use_port=False)):
        sched.dests_changed(ds)
        first = sched.schedule(ds, Flow(str(src), 1, "10.96.0.1", 80))
        again = sched.schedule(ds, Flow(str(src), 2, "10.96.0.1", 80))
        assert first is not None and first == again


def test_sh_weight_zero_destination_answers_nothing() -> None:
    sh = SourceHashing()
    ds = dests(1, 1)
    sh.dests_changed(ds)
    src = next(
        f"10.1.0.{i}" for i in range(256) if sh.schedule(ds, Flow(f"10.1.0.{i}", 1, "x", 1)) == 1
    )
    ds[1] = Destination(ds[1].address, 80, 0, 1)
    sh.dests_changed(ds)
    # Weight 0 still fills one bucket per turn (++d_count >= 0), so the table is unchanged
    # and this source finds an unavailable destination: no fallback without sh-fallback.
    assert sh.schedule(ds, Flow(src, 1, "10.96.0.1", 80)) is None


def test_mh_fills_every_slot_and_shares_them_evenly() -> None:
    mh = MaglevHashing()
    ds = dests(1, 1, 1, 1, 1)
    mh.dests_changed(ds)
    counts = Counter(mh.lookup)
    assert None not in counts
    assert sum(counts.values()) == MH_TAB_SIZE
    # Maglev's round-robin population: shares differ by at most one slot.
    assert max(counts.values()) - min(counts.values()) <= 1


def test_mh_removing_one_destination_moves_few_other_slots() -> None:
    mh = MaglevHashing()
    ds = dests(1, 1, 1, 1, 1)
    mh.dests_changed(ds)
    before = [ds[i].address if i is not None else None for i in mh.lookup]
    kept = ds[:4]
    mh.dests_changed(kept)
    after = [kept[i].address if i is not None else None for i in mh.lookup]
    moved = sum(1 for b, a in zip(before, after, strict=True) if b != "10.0.0.5" and b != a)
    assert moved < MH_TAB_SIZE // 10


def test_mh_weight_zero_keeps_its_slots_and_refuses_flows_hashed_there() -> None:
    mh = MaglevHashing()
    ds = dests(1, 1)
    mh.dests_changed(ds)
    ds[1] = Destination(ds[1].address, 80, 0, 1)  # weight 0, last_weight 1
    mh.dests_changed(ds)
    assert Counter(mh.lookup)[1] > MH_TAB_SIZE // 3
    results = {mh.schedule(ds, Flow("10.1.0.9", port, "10.96.0.1", 80)) for port in range(50)}
    assert results == {0, None}  # the mh-port flag: the source port spreads flows


def test_unknown_scheduler_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown IPVS scheduler 'sed'"):
        make_scheduler("sed")
