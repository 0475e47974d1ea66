"""xt_recent lists: the comparisons of linux net/netfilter/xt_recent.c recent_mt."""

from __future__ import annotations

import pytest

from svcsim.netfilter.model import RecentMatch
from svcsim.netfilter.recent import RecentTable, stamp_capacity

A, B, C, D = "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"


def test_set_then_rcheck_matches_and_unknown_does_not() -> None:
    table = RecentTable()
    assert not table.rcheck("L", A, 0.0)
    table.set("L", A, 1.0)
    assert table.rcheck("L", A, 2.0)
    assert not table.rcheck("L", B, 2.0)
    assert not table.rcheck("OTHER", A, 2.0)


@pytest.mark.parametrize(
    ("age_s", "hit"),
    [
        (0.0, True),
        (9.999, True),
        (10.0, True),  # time_after(now - seconds, stamp) is strict: exactly T old still counts
        (10.001, False),
        (100.0, False),
    ],
)
def test_seconds_window_is_inclusive(age_s: float, hit: bool) -> None:
    table = RecentTable()
    table.set("L", A, 5.0)
    assert table.rcheck("L", A, 5.0 + age_s, seconds=10) is hit


@pytest.mark.parametrize(
    ("stamps", "hitcount", "seconds", "hit"),
    [
        ([0.0], 0, 0, True),
        ([0.0], 1, 0, True),
        ([0.0], 2, 0, False),
        ([0.0, 1.0], 2, 0, True),
        ([0.0, 1.0, 2.0], 3, 0, True),
        ([0.0, 1.0, 2.0], 3, 5, False),  # now=6: the stamp at 0 is outside the window
        ([0.0, 1.0, 2.0], 2, 5, True),
    ],
)
def test_hitcount_counts_stamps_in_window(
    stamps: list[float], hitcount: int, seconds: int, hit: bool
) -> None:
    table = RecentTable()
    for stamp in stamps:
        table.set("L", A, stamp)
    assert table.rcheck("L", A, 6.0, seconds=seconds, hitcount=hitcount) is hit


def test_update_stamps_only_when_it_matches() -> None:
    table = RecentTable()
    assert not table.update("L", A, 0.0)  # unknown address: no entry created
    assert table.entries("L") == ()
    table.set("L", A, 0.0)
    assert table.update("L", A, 5.0, seconds=10)
    assert table.entries("L")[0].stamps_s == (0.0, 5.0)
    assert not table.update("L", A, 100.0, seconds=10)  # no fresh stamp: no update
    assert table.entries("L")[0].stamps_s == (0.0, 5.0)


def test_rcheck_never_stamps() -> None:
    table = RecentTable()
    table.set("L", A, 0.0)
    assert table.rcheck("L", A, 1.0)
    assert table.entries("L")[0].stamps_s == (0.0,)


def test_list_full_evicts_least_recently_updated() -> None:
    table = RecentTable(ip_list_tot=3)
    for i, address in enumerate((A, B, C)):
        table.set("L", address, float(i))
    table.set("L", A, 3.0)  # A becomes most recent; B is now the LRU head
    table.set("L", D, 4.0)
    assert [e.address for e in table.entries("L")] == [C, A, D]
    assert not table.rcheck("L", B, 4.0)


def test_default_list_holds_100_addresses() -> None:
    table = RecentTable()
    for i in range(101):
        table.set("L", f"10.1.{i // 256}.{i % 256}", float(i))
    entries = table.entries("L")
    assert len(entries) == 100
    assert entries[0].address == "10.1.0.1"


@pytest.mark.parametrize(
    ("ip_pkt_list_tot", "hitcount", "capacity"),
    [(0, 0, 32), (0, 3, 4), (0, 5, 8), (20, 0, 32), (20, 25, 32), (4, 0, 4), (4, 9, 16)],
)
def test_stamp_capacity(ip_pkt_list_tot: int, hitcount: int, capacity: int) -> None:
    assert stamp_capacity(ip_pkt_list_tot, hitcount) == capacity


def test_stamp_ring_keeps_newest() -> None:
    table = RecentTable(ip_pkt_list_tot=4)
    for t in range(6):
        table.set("L", A, float(t))
    assert table.entries("L")[0].stamps_s == (2.0, 3.0, 4.0, 5.0)
    assert table.rcheck("L", A, 5.0, hitcount=4)
    assert [e.stamps_s for e in table.entries("L")] == [(2.0, 3.0, 4.0, 5.0)]


def test_list_is_flushed_when_a_rule_needs_more_stamps() -> None:
    table = RecentTable()
    table.set("L", A, 0.0)
    assert not table.rcheck("L", A, 0.0, hitcount=40)  # ring grows 32 -> 64: list flushed
    assert table.entries("L") == ()


def test_reap_removes_only_the_stale_lru_head() -> None:
    table = RecentTable()
    table.set("L", A, 0.0)
    table.set("L", B, 1.0)
    table.set("L", C, 50.0)
    # C is checked: fresh; the LRU head A is stale (older than 10 s) and is reaped; B stays.
    assert table.rcheck("L", C, 55.0, seconds=10, reap=True)
    assert [e.address for e in table.entries("L")] == [B, C]


def test_reap_needs_a_found_entry() -> None:
    table = RecentTable()
    table.set("L", A, 0.0)
    assert not table.rcheck("L", B, 100.0, seconds=10, reap=True)
    assert [e.address for e in table.entries("L")] == [A]


def test_reap_can_remove_the_checked_entry() -> None:
    table = RecentTable()
    table.set("L", A, 0.0)
    assert not table.rcheck("L", A, 100.0, seconds=10, reap=True)
    assert table.entries("L") == ()


def test_reap_spares_the_entry_about_to_be_updated() -> None:
    # "netfilter: xt_recent: Fix attempt to update deleted entry": with `! --update` a stale
    # entry yields true and is updated, so reap must not free it.
    table = RecentTable()
    table.set("L", A, 0.0)
    match = RecentMatch("L", "update", seconds=10, reap=True, negated=True)
    assert table.evaluate(match, A, B, 100.0)
    assert table.entries("L")[0].stamps_s == (0.0, 100.0)


def test_remove() -> None:
    table = RecentTable()
    assert not table.remove("L", A)
    table.set("L", A, 0.0)
    assert table.remove("L", A)
    assert not table.rcheck("L", A, 0.0)


@pytest.mark.parametrize(
    ("command", "listed", "result"),
    [
        ("rcheck", False, True),
        ("rcheck", True, False),
        ("set", False, False),
        ("set", True, False),
        ("remove", False, True),
        ("remove", True, False),
        ("update", False, True),
    ],
)
def test_negation_inverts_the_result(command: str, listed: bool, result: bool) -> None:
    table = RecentTable()
    if listed:
        table.set("L", A, 0.0)
    assert table.evaluate(RecentMatch("L", command, negated=True), A, B, 1.0) is result


def test_negated_set_still_sets() -> None:
    table = RecentTable()
    table.evaluate(RecentMatch("L", "set", negated=True), A, B, 1.0)
    assert table.rcheck("L", A, 1.0)


def test_rdest_keys_on_destination() -> None:
    table = RecentTable()
    table.evaluate(RecentMatch("L", "set", rsource=False), A, B, 0.0)
    assert table.rcheck("L", B, 0.0)
    assert not table.rcheck("L", A, 0.0)


def test_mask_groups_addresses_and_list_keeps_first_mask() -> None:
    table = RecentTable()
    table.evaluate(RecentMatch("L", "set", mask="255.255.255.0"), "10.0.0.77", B, 0.0)
    assert table.entries("L")[0].address == "10.0.0.0"
    assert table.rcheck("L", "10.0.0.200", 0.0)  # the list's mask applies to later rules
    assert not table.rcheck("L", "10.0.1.1", 0.0)


@pytest.mark.parametrize(
    "match",
    [
        RecentMatch("L", "set", seconds=5),
        RecentMatch("L", "remove", hitcount=2),
        RecentMatch("L", "rcheck", reap=True),
        RecentMatch("L", "rcheck", hitcount=256),
        RecentMatch("L", "bogus"),
    ],
)
def test_kernel_refuses_bad_options(match: RecentMatch) -> None:
    with pytest.raises(ValueError):
        RecentTable().evaluate(match, A, B, 0.0)


def test_copy_is_independent_and_snapshot_compares() -> None:
    table = RecentTable()
    table.set("L", A, 0.0)
    twin = table.copy()
    assert twin.snapshot() == table.snapshot()
    twin.set("L", B, 1.0)
    assert twin.snapshot() != table.snapshot()
    table.flush("L")
    assert table.entries("L") == () and len(twin.entries("L")) == 2


def test_constructor_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="ip_list_tot"):
        RecentTable(ip_list_tot=0)
    with pytest.raises(ValueError, match="ip_pkt_list_tot"):
        RecentTable(ip_pkt_list_tot=256)
