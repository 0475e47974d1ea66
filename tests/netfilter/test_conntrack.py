"""Tests for svcsim.netfilter.conntrack: kernel conntrack semantics, table-driven."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.netfilter.conntrack import (
    NF_CT_EVICTION_RANGE,
    ConntrackTable,
    kernel_default_buckets,
    kernel_default_max,
    kube_proxy_conntrack_max,
    kube_proxy_hashsize,
)
from svcsim.netfilter.conntrack_states import (
    ConntrackEntry,
    ConntrackTimeouts,
    FlowTuple,
    TcpState,
    UdpState,
    Verdict,
    opens_flow,
)

CLIENT = "10.0.0.1"
VIP = "10.96.0.10"
POD_A = "10.244.1.5"
POD_B = "10.244.2.7"
KERNEL = ConntrackTimeouts()
KUBE = ConntrackTimeouts.kube_proxy_defaults()
GIB = 1 << 30


def flow(
    proto: str = "tcp", sport: int = 40000, pod: str = POD_A, vip: str = VIP, dport: int = 80
) -> tuple[FlowTuple, FlowTuple]:
    """Client -> VIP:dport, DNATed to pod:8080: (original, reply) tuples."""
    return (
        FlowTuple(proto, CLIENT, sport, vip, dport),
        FlowTuple(proto, pod, 8080, CLIENT, sport),
    )


def handshake(table: ConntrackTable, sport: int = 40000, t0: float = 0.0) -> ConntrackEntry:
    orig, reply = flow(sport=sport)
    assert table.create(orig, reply, t0) is not None
    assert table.update(reply, "syn_ack", t0 + 0.001).verdict is Verdict.ACCEPT
    result = table.update(orig, "ack", t0 + 0.002)
    assert result.entry is not None
    return result.entry


# --- TCP -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timeouts", "established_s"),
    [(KERNEL, 432000.0), (KUBE, 86400.0)],
    ids=["kernel-5-days", "kube-proxy-24h"],
)
def test_tcp_handshake_reaches_established_with_its_timeout(
    timeouts: ConntrackTimeouts, established_s: float
) -> None:
    table = ConntrackTable(100, timeouts)
    orig, reply = flow()
    syn = table.create(orig, reply, 10.0)
    assert syn is not None
    assert (syn.state, syn.expires_s, syn.seen_reply, syn.assured) == (
        TcpState.SYN_SENT,
        130.0,
        False,
        False,
    )
    synack = table.update(reply, "syn_ack", 10.5).entry
    assert synack is not None
    assert (synack.state, synack.expires_s, synack.seen_reply, synack.assured) == (
        TcpState.SYN_RECV,
        70.5,
        True,
        False,
    )
    est = table.update(orig, "ack", 11.0).entry
    assert est is not None
    assert est.state is TcpState.ESTABLISHED
    assert est.assured
    assert est.expires_s == pytest.approx(11.0 + established_s)


@pytest.mark.parametrize(
    ("steps", "state", "timeout_s"),
    [
        # client closes first: FIN, ACK, FIN, ACK
        ([("original", "fin")], TcpState.FIN_WAIT, 120.0),
        ([("original", "fin"), ("reply", "ack")], TcpState.CLOSE_WAIT, 3600.0),
        ([("original", "fin"), ("reply", "ack"), ("reply", "fin")], TcpState.LAST_ACK, 30.0),
        (
            [("original", "fin"), ("reply", "ack"), ("reply", "fin"), ("original", "ack")],
            TcpState.TIME_WAIT,
            120.0,
        ),
        # server answers FIN with FIN+ACK at once
        ([("original", "fin"), ("reply", "fin")], TcpState.LAST_ACK, 30.0),
        ([("reply", "rst")], TcpState.CLOSE, 10.0),
        ([("original", "data"), ("reply", "data")], TcpState.ESTABLISHED, 86400.0),
    ],
)
def test_tcp_close_sequences_with_kube_proxy_timeouts(
    steps: list[tuple[str, str]], state: TcpState, timeout_s: float
) -> None:
    table = ConntrackTable(100, KUBE)
    entry = handshake(table)
    now = 1.0
    for direction, event in steps:
        now += 1.0
        tup = entry.original if direction == "original" else entry.reply
        result = table.update(tup, event, now)
        assert result.verdict is Verdict.ACCEPT, (direction, event, result)
    current = table.lookup(entry.original, now)
    assert current is not None
    assert current.state is state
    assert current.expires_s == pytest.approx(now + timeout_s)


def test_close_wait_kernel_default_is_60s() -> None:
    table = ConntrackTable(100, KERNEL)
    entry = handshake(table)
    table.update(entry.original, "fin", 5.0)
    cw = table.update(entry.reply, "ack", 6.0).entry
    assert cw is not None
    assert (cw.state, cw.expires_s) == (TcpState.CLOSE_WAIT, 66.0)


def test_rst_as_first_reply_deletes_entry_at_once() -> None:
    """Connection refused: the only reply is a RST, so the entry goes (proto_tcp.c)."""
    table = ConntrackTable(100)
    orig, reply = flow()
    table.create(orig, reply, 0.0)
    result = table.update(reply, "rst", 0.01)
    assert (result.verdict, result.entry) == (Verdict.DESTROYED, None)
    assert table.lookup(orig, 0.02) is None
    assert len(table) == 0


@pytest.mark.parametrize(
    ("direction", "event", "verdict"),
    [
        ("original", "ack", Verdict.INVALID),  # ACK before any SYN/ACK
        ("original", "fin", Verdict.INVALID),
        ("reply", "ack", Verdict.IGNORED),  # might be a half-open connection
        ("original", "syn", Verdict.ACCEPT),  # retransmitted SYN
    ],
)
def test_packets_in_syn_sent(direction: str, event: str, verdict: Verdict) -> None:
    table = ConntrackTable(100)
    orig, reply = flow()
    created = table.create(orig, reply, 0.0)
    result = table.update(orig if direction == "original" else reply, event, 5.0)
    assert result.verdict is verdict
    after = table.lookup(orig, 5.0)
    assert after is not None
    assert after.state is TcpState.SYN_SENT
    # Only an accepted packet refreshes the timeout.
    assert created is not None
    expected = 125.0 if verdict is Verdict.ACCEPT else created.expires_s
    assert after.expires_s == expected


def test_syn_after_close_reopens_but_stray_syn_in_established_is_ignored() -> None:
    table = ConntrackTable(100)
    entry = handshake(table)
    assert table.update(entry.original, "syn", 1.0).verdict is Verdict.IGNORED
    for tup, event in [(entry.original, "fin"), (entry.reply, "fin"), (entry.original, "ack")]:
        table.update(tup, event, 2.0)
    result = table.update(entry.original, "syn", 3.0)
    assert result.verdict is Verdict.REOPEN
    assert table.lookup(entry.original, 3.0) is None
    # The caller now creates a fresh entry, which may DNAT elsewhere.
    orig, reply = flow(pod=POD_B)
    fresh = table.create(orig, reply, 3.0)
    assert fresh is not None
    assert fresh.dnat_destination == (POD_B, 8080)


def test_loose_pickup_of_midstream_ack_is_capped_at_unack() -> None:
    table = ConntrackTable(100)
    orig, reply = flow()
    entry = table.create(orig, reply, 0.0, event="data")
    assert entry is not None
    assert (entry.state, entry.expires_s, entry.assured) == (TcpState.ESTABLISHED, 300.0, False)
    later = table.update(reply, "ack", 1.0).entry
    assert later is not None
    assert later.seen_reply
    assert not later.assured  # SEEN_REPLY is set only after this packet was handled
    third = table.update(orig, "ack", 2.0).entry
    assert third is not None
    assert third.assured
    assert third.expires_s == 2.0 + 432000.0


@pytest.mark.parametrize(
    ("proto", "event", "opens"),
    [
        ("tcp", "syn", True),
        ("tcp", "data", True),
        ("tcp", "rst", False),
        ("tcp", "syn_ack", False),
        ("tcp", "fin", False),
        ("udp", "original", True),
        ("udp", "reply", False),
        ("sctp", "original", False),
    ],
)
def test_opens_flow_and_create_refuses_non_opening_packets(
    proto: str, event: str, opens: bool
) -> None:
    assert opens_flow(proto, event) is opens
    table = ConntrackTable(10)
    orig, reply = flow(proto=proto)
    if opens:
        assert table.create(orig, reply, 0.0, event=event) is not None
    else:
        with pytest.raises((ValueError, NotImplementedError)):
            table.create(orig, reply, 0.0, event=event)
        assert len(table) == 0


# --- UDP -------------------------------------------------------------------------------


def test_udp_unreplied_keeps_30s_on_every_original_packet() -> None:
    table = ConntrackTable(10)
    orig, reply = flow(proto="udp", dport=53)
    entry = table.create(orig, reply, 0.0)
    assert entry is not None
    assert (entry.state, entry.expires_s) == (UdpState.UNREPLIED, 30.0)
    assert entry.is_live(29.999)
    assert not entry.is_live(30.0)  # nf_ct_is_expired: dead once timeout - now <= 0
    again = table.update(orig, "original", 20.0).entry
    assert again is not None
    assert (again.state, again.expires_s, again.assured) == (UdpState.UNREPLIED, 50.0, False)


@pytest.mark.parametrize(
    ("timeouts", "third_packet_at", "assured_expiry"),
    [
        (KERNEL, 5.0, 125.0),  # > 2 s after creation: stream timeout
        (KERNEL, 1.5, 31.5),  # within 2 s: ASSURED but still 30 s
        (KERNEL, 2.0, 32.0),  # exactly 2 s: time_after() is strict
        (ConntrackTimeouts.older_kernel(), 1.5, 181.5),  # no 2 s rule, 180 s
    ],
)
def test_udp_replied_stream_timeout_and_the_2s_rule(
    timeouts: ConntrackTimeouts, third_packet_at: float, assured_expiry: float
) -> None:
    table = ConntrackTable(10, timeouts)
    orig, reply = flow(proto="udp", dport=53)
    table.create(orig, reply, 0.0)
    replied = table.update(reply, "reply", 0.5).entry
    assert replied is not None
    # The reply itself is handled before SEEN_REPLY is set: 30 s, not assured.
    assert (replied.state, replied.expires_s, replied.assured) == (UdpState.REPLIED, 30.5, False)
    third = table.update(orig, "original", third_packet_at).entry
    assert third is not None
    assert third.state is UdpState.ASSURED
    assert third.assured
    assert third.expires_s == pytest.approx(assured_expiry)


def test_udp_event_must_match_packet_direction() -> None:
    table = ConntrackTable(10)
    orig, reply = flow(proto="udp")
    table.create(orig, reply, 0.0)
    with pytest.raises(ValueError, match="direction"):
        table.update(reply, "original", 1.0)


# --- table ---------------------------------------------------------------------------


def test_lookup_from_reply_direction_finds_the_same_entry() -> None:
    table = ConntrackTable(10)
    orig, reply = flow()
    entry = table.create(orig, reply, 0.0)
    assert entry is not None
    assert table.lookup(reply, 1.0) is entry
    assert table.lookup(orig, 1.0) is entry
    assert entry.direction_of(reply) == "reply"
    assert entry.direction_of(orig) == "original"
    assert table.lookup(orig.inverted(), 1.0) is None  # un-NATed reply is another flow
    assert entry.is_dnat
    assert not entry.is_snat
    assert entry.dnat_destination == (POD_A, 8080)


def test_snat_shows_in_reply_destination() -> None:
    orig = FlowTuple("tcp", CLIENT, 40000, VIP, 80)
    reply = FlowTuple("tcp", POD_A, 8080, "192.168.0.2", 61000)  # masqueraded to node IP
    entry = ConntrackTable(10).create(orig, reply, 0.0)
    assert entry is not None
    assert entry.is_snat
    assert entry.is_dnat


def test_create_rejects_tuple_clash_with_live_entry_but_reuses_expired_one() -> None:
    table = ConntrackTable(10)
    orig, reply = flow(proto="udp")
    table.create(orig, reply, 0.0)
    with pytest.raises(ValueError, match="already tracked"):
        table.create(orig, reply, 10.0)
    assert table.create(orig, reply, 30.0) is not None  # the first one expired at 30 s


def test_table_full_evicts_non_assured_entries_first() -> None:
    # One bucket: early_drop sees every entry and drops all non-ASSURED ones in it.
    table = ConntrackTable(3, htable_size=1)
    assured = handshake(table, sport=1000)
    for sport in (1001, 1002):
        orig, reply = flow(proto="udp", sport=sport)
        assert table.create(orig, reply, 1.0) is not None
    orig, reply = flow(proto="udp", sport=2000)
    newcomer = table.create(orig, reply, 2.0)
    assert newcomer is not None
    assert [e.original.src_port for e in table] == [1000, 2000]
    assert table.lookup(assured.original, 2.0) is not None
    assert table.stats.early_drop == 2
    assert table.stats.drop == 0


def test_table_full_of_assured_entries_drops_the_new_flow() -> None:
    table = ConntrackTable(2, htable_size=1)
    handshake(table, sport=1000)
    handshake(table, sport=1001)
    orig, reply = flow(sport=2000)
    assert table.create(orig, reply, 1.0) is None
    assert len(table) == 2
    assert table.stats.drop == 1
    assert table.early_drop_pending
    # Once an entry expires there is room again (treated as reaped by the gc worker).
    assert table.create(orig, reply, 432001.0) is not None


def test_early_drop_only_looks_at_eight_buckets_from_the_new_tuple() -> None:
    table = ConntrackTable(1, htable_size=1 << 16)
    orig, reply = flow(proto="udp", sport=1)
    victim = table.create(orig, reply, 0.0)
    assert victim is not None
    held = {table.bucket_of(victim.original), table.bucket_of(victim.reply)}

    def reaches(candidate: FlowTuple) -> bool:
        start = table.bucket_of(candidate)
        window = {(start + i) % table.htable_size for i in range(NF_CT_EVICTION_RANGE)}
        return bool(window & held)

    # Far from the victim's buckets is the common case in a big table.
    far = next(t for p in range(2, 5000) if not reaches(t := flow(proto="udp", sport=p)[0]))
    assert table.create(far, None, 1.0) is None
    assert table.lookup(victim.original, 1.0) is not None
    near = next(
        t
        for p in range(2, 200000)
        if reaches(t := FlowTuple("udp", "10.0.9.9", p % 65536, VIP, 80 + p // 65536))
    )
    assert table.create(near, None, 1.0) is not None
    assert table.lookup(victim.original, 1.0) is None


def test_zero_max_entries_means_unlimited() -> None:
    table = ConntrackTable(0)
    for sport in range(50):
        assert table.create(flow(proto="udp", sport=sport)[0], None, 0.0) is not None
    assert len(table) == 50


def test_gc_early_drop_after_overflow_kills_droppable_entries_down_to_95_percent() -> None:
    table = ConntrackTable(100, htable_size=1 << 20)
    entries = [handshake(table, sport=1000 + i) for i in range(100)]
    for e in entries[:10]:  # ten connections in TIME_WAIT: still assured but droppable
        for tup, event in [(e.original, "fin"), (e.reply, "fin"), (e.original, "ack")]:
            table.update(tup, event, 1.0)
    assert table.gc_early_drop(2.0) == 0  # no drop happened yet: nothing to do
    assert table.create(flow(sport=9999)[0], None, 2.0) is None
    killed = table.gc_early_drop(3.0)
    assert killed == 6  # from 100 down to below 95
    assert len(table) == 94
    assert all(e.state is not TcpState.TIME_WAIT for e in list(table)[4:])
    assert not table.early_drop_pending


def test_delete_matching_like_the_conntrack_cli() -> None:
    table = ConntrackTable(100)
    for sport, pod in [(1, POD_A), (2, POD_A), (3, POD_B)]:
        table.create(*flow(proto="udp", sport=sport, pod=pod), 0.0)
    handshake(table, sport=4)  # TCP to the same VIP and pod: never touched by -p udp
    table.create(*flow(proto="udp", sport=5, pod=POD_A, vip="192.168.0.2", dport=30053), 0.0)
    # conntrack -D -p udp --orig-dst VIP --dst-nat POD_A
    assert table.delete_matching(proto="udp", orig_dst=VIP, dst_nat=POD_A) == 2
    assert sorted(e.original.src_port for e in table) == [3, 4, 5]
    # conntrack -D -p udp --orig-port-dst 30053 --dst-nat POD_A (NodePort entries)
    assert table.delete_matching(proto="udp", orig_port_dst=30053, dst_nat=POD_A) == 1
    assert table.delete(lambda e: e.reply.src_ip == POD_B) == 1
    assert [e.original.proto for e in table] == ["tcp"]
    assert table.stats.deleted == 4


def test_dst_nat_filter_ignores_flows_that_were_not_dnated() -> None:
    table = ConntrackTable(10)
    direct = FlowTuple("udp", CLIENT, 1, POD_A, 8080)  # client talks to the Pod IP itself
    table.create(direct, None, 0.0)
    assert table.delete_matching(dst_nat=POD_A) == 0
    assert len(table) == 1


@pytest.mark.parametrize(
    ("proto", "timeouts", "steps", "live_at", "dead_at"),
    [
        ("udp", KERNEL, [], 29.999, 30.0),
        ("tcp", KERNEL, [], 119.999, 120.0),
        ("tcp", KERNEL, [("reply", "syn_ack")], 60.999, 61.0),
        ("tcp", KERNEL, [("reply", "syn_ack"), ("original", "ack")], 432001.999, 432002.0),
        ("tcp", KUBE, [("reply", "syn_ack"), ("original", "ack")], 86401.999, 86402.0),
        ("tcp", KUBE, [("reply", "rst")], None, 1.0),  # RST before any reply: gone at once
        ("udp", KERNEL, [("reply", "reply")], 30.999, 31.0),
        # third packet at exactly 2 s after creation: ASSURED, but still only 30 s
        ("udp", KERNEL, [("reply", "reply"), ("original", "original")], 31.999, 32.0),
        (
            "udp",
            ConntrackTimeouts.older_kernel(),
            [("reply", "reply"), ("original", "original")],
            181.999,
            182.0,
        ),
    ],
)
def test_expiry_boundaries(
    proto: str,
    timeouts: ConntrackTimeouts,
    steps: list[tuple[str, str]],
    live_at: float | None,
    dead_at: float,
) -> None:
    """Steps happen at t = 1, 2, ...; an entry is dead from the instant it expires."""
    table = ConntrackTable(10, timeouts)
    orig, reply = flow(proto=proto)
    table.create(orig, reply, 0.0)
    for i, (direction, event) in enumerate(steps, start=1):
        table.update(orig if direction == "original" else reply, event, float(i))
    if live_at is not None:
        assert table.count(live_at) == 1
        assert table.lookup(reply, live_at) is not None
    assert table.count(dead_at) == 0
    assert table.lookup(orig, dead_at) is None
    table.expire(dead_at)
    assert len(table) == 0


def test_expire_counts_only_timed_out_entries_and_refresh_moves_expiry() -> None:
    table = ConntrackTable(10)
    a, b = flow(proto="udp", sport=1)[0], flow(proto="udp", sport=2)[0]
    table.create(a, None, 0.0)
    table.create(b, None, 0.0)
    table.update(a, "original", 20.0)  # now expires at 50
    assert table.expire(30.0) == 1
    assert [e.original for e in table] == [a]
    assert table.expire(49.9) == 0
    assert table.expire(50.0) == 1
    assert table.stats.expired == 2


# --- sizing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ram_bytes", "is_64bit", "legacy", "buckets", "maximum"),
    [
        (16 * GIB, True, False, 262144, 262144),
        (4 * GIB, True, False, 65536, 65536),  # "> 4 GiB" is strict
        (2 * GIB, True, False, 65536, 65536),
        (512 << 20, True, False, 4096, 4096),
        (64 << 20, True, False, 1024, 1024),  # floor of 1024 buckets
        (8 * GIB, False, False, 65536, 65536),  # 32-bit never gets 262144
        (16 * GIB, True, True, 65536, 262144),  # legacy: factor 4
        (2 * GIB, True, True, 16384, 65536),
        (64 << 20, True, True, 512, 2048),
    ],
)
def test_kernel_default_max(
    ram_bytes: int, is_64bit: bool, legacy: bool, buckets: int, maximum: int
) -> None:
    assert kernel_default_buckets(ram_bytes, is_64bit, legacy=legacy) == buckets
    assert kernel_default_max(ram_bytes, is_64bit, legacy=legacy) == maximum


@pytest.mark.parametrize(
    ("num_cpu", "max_per_core", "min_", "expected"),
    [(1, 32768, 131072, 131072), (4, 32768, 131072, 131072), (8, 32768, 131072, 262144),
     (16, 32768, 131072, 524288), (8, 0, 131072, 0)],
)  # fmt: skip
def test_kube_proxy_conntrack_max(
    num_cpu: int, max_per_core: int, min_: int, expected: int
) -> None:
    assert kube_proxy_conntrack_max(num_cpu, max_per_core, min_) == expected


def test_kube_proxy_hashsize_only_grows() -> None:
    assert kube_proxy_hashsize(524288, 65536) == 131072
    assert kube_proxy_hashsize(131072, 262144) == 262144


def test_kube_proxy_timeouts_override_only_what_kube_proxy_sets() -> None:
    assert (KUBE.tcp_established_s, KUBE.tcp_close_wait_s) == (86400.0, 3600.0)
    assert (KUBE.udp_s, KUBE.udp_stream_s, KUBE.tcp_time_wait_s) == (30.0, 120.0, 120.0)
    custom = ConntrackTimeouts.kube_proxy_defaults(udp_stream_s=60.0, tcp_established_s=0.0)
    assert (custom.tcp_established_s, custom.udp_stream_s) == (432000.0, 60.0)


# --- properties ----------------------------------------------------------------------

SMALL = ConntrackTimeouts(
    tcp_syn_sent_s=4, tcp_syn_recv_s=3, tcp_established_s=9, tcp_fin_wait_s=4,
    tcp_close_wait_s=3, tcp_last_ack_s=2, tcp_time_wait_s=4, tcp_close_s=1,
    tcp_syn_sent2_s=4, tcp_unack_s=6, udp_s=3, udp_stream_s=7, udp_stream_min_age_s=2,
)  # fmt: skip
EVENTS = ["syn", "syn_ack", "ack", "fin", "rst", "data"]
OPS = st.lists(
    st.tuples(
        st.integers(0, 7),  # flow id: even = tcp, odd = udp
        st.sampled_from(["create", "original", "reply"]),
        st.sampled_from(EVENTS),
        st.floats(0.0, 6.0, allow_nan=False),
    ),
    max_size=60,
)


def bound_s(entry: ConntrackEntry) -> float:
    if isinstance(entry.state, TcpState):
        return SMALL.tcp_timeout_s(entry.state)
    return SMALL.udp_stream_s if entry.assured else SMALL.udp_s


@settings(max_examples=200, deadline=None)
@given(ops=OPS, max_entries=st.integers(1, 4), htable_size=st.integers(1, 3))
def test_table_never_exceeds_max_and_entries_never_outlive_their_timeout(
    ops: list[tuple[int, str, str, float]], max_entries: int, htable_size: int
) -> None:
    table = ConntrackTable(max_entries, SMALL, htable_size=htable_size)
    touched: dict[FlowTuple, float] = {}
    now = 0.0
    for flow_id, op, event, dt in ops:
        now += dt
        orig, reply = flow(proto="tcp" if flow_id % 2 == 0 else "udp", sport=1000 + flow_id)
        if op == "create":
            if table.lookup(orig, now) is None:
                first = "syn" if orig.proto == "tcp" else "original"
                if table.create(orig, reply, now, event=first) is not None:
                    touched[orig] = now
        else:
            tup = orig if op == "original" else reply
            ev = event if orig.proto == "tcp" else op
            result = table.update(tup, ev, now)
            if result.verdict is Verdict.ACCEPT:
                touched[orig] = now
        assert len(table) <= max_entries
        assert table.count(now) <= max_entries
        for entry in table:
            # Without traffic, no entry lives longer than its state's timeout.
            assert entry.expires_s <= touched[entry.original] + bound_s(entry) + 1e-9
        for original, at in touched.items():
            if now >= at + SMALL.tcp_established_s:
                assert table.lookup(original, now) is None
