"""The IPVS connection table: timeouts, persistence, port reuse, weight 0 and deleted servers."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svcsim.netfilter.ipvs import RealServer, VirtualServer, _sort_key, render_ipvsadm
from svcsim.netfilter.ipvs_kernel import ConnKey, ConnState, IpvsKernel, IpvsSysctls, Verdict

VIP = "10.96.0.10"


def vs(
    *servers: tuple[str, int], scheduler: str = "rr", persistent: int | None = None
) -> VirtualServer:
    return VirtualServer(
        "TCP",
        VIP,
        80,
        scheduler,
        tuple(RealServer(ip, 8080, w) for ip, w in servers),
        persistent_timeout_s=persistent,
    )


def kernel(*servers: tuple[str, int], **kw: object) -> IpvsKernel:
    sysctls = kw.pop("sysctls", IpvsSysctls())
    k = IpvsKernel(sysctls=sysctls)  # type: ignore[arg-type]
    k.install([vs(*servers, **kw)])  # type: ignore[arg-type]
    return k


def key(sport: int, src: str = "10.1.0.9") -> ConnKey:
    return ConnKey("TCP", src, sport, VIP, 80)


def test_rr_in_list_order_and_counts_move_from_inactive_to_active() -> None:
    k = kernel(("10.0.0.1", 1), ("10.0.0.2", 1))
    got = [k.connect("tcp", "10.1.0.9", p, VIP, 80, 0.0).real_server for p in (1, 2, 3)]
    assert [g[0] if g else None for g in got] == ["10.0.0.1", "10.0.0.2", "10.0.0.1"]
    counts = k.connection_counts()
    assert counts[("TCP", VIP, "80", "10.0.0.1", "8080")] == (0, 2)
    k.established(key(1), 0.1)
    assert k.connection_counts()[("TCP", VIP, "80", "10.0.0.1", "8080")] == (1, 1)


@pytest.mark.parametrize(
    ("state_change", "timeout_s"),
    [(None, 60.0), ("established", 900.0), ("closed", 120.0), ("finished", 120.0)],
)
def test_entries_expire_after_their_states_timeout(
    state_change: str | None, timeout_s: float
) -> None:
    k = kernel(("10.0.0.1", 1))
    k.connect("tcp", "10.1.0.9", 1, VIP, 80, 0.0)
    if state_change:
        getattr(k, state_change)(key(1), 0.0)
    k.expire(timeout_s - 0.001)
    assert key(1) in k.conns
    k.expire(timeout_s)
    assert key(1) not in k.conns


def test_udp_entries_live_300_s_and_are_reused_by_the_same_flow() -> None:
    k = IpvsKernel()
    k.install(
        [
            VirtualServer(
                "UDP", VIP, 53, "rr", (RealServer("10.0.0.1", 53), RealServer("10.0.0.2", 53))
            )
        ]
    )
    first = k.connect("udp", "10.1.0.9", 5000, VIP, 53, 0.0)
    again = k.connect("udp", "10.1.0.9", 5000, VIP, 53, 299.0)
    assert again.real_server == first.real_server and "existing" in again.reason
    k.expire(299.0 + 300.0)
    assert not k.conns


def test_no_destination_is_refused_with_icmp() -> None:
    k = kernel(("10.0.0.1", 0))
    d = k.connect("tcp", "10.1.0.9", 1, VIP, 80, 0.0)
    assert d.verdict is Verdict.REFUSED and "ICMP port unreachable" in d.reason


def test_no_service_lets_the_packet_through() -> None:
    k = kernel(("10.0.0.1", 1))
    assert k.connect("tcp", "10.1.0.9", 1, VIP, 81, 0.0).verdict is Verdict.NO_SERVICE


def test_persistence_keeps_a_client_on_its_server_until_the_template_expires() -> None:
    k = kernel(("10.0.0.1", 1), ("10.0.0.2", 1), persistent=10)
    first = k.connect("tcp", "10.1.0.9", 1, VIP, 80, 0.0).real_server
    assert all(
        k.connect("tcp", "10.1.0.9", p, VIP, 80, 1.0).real_server == first for p in range(2, 6)
    )
    other = k.connect("tcp", "10.1.0.8", 1, VIP, 80, 1.0).real_server
    assert other != first
    # The template outlives its connections by the timeout after its last use, then goes.
    for p in range(1, 6):
        k.conns.pop(key(p), None)
    for t in k.templates.values():
        t.n_control = 0
    k.expire(1.0 + 10.0)
    assert not any(t.src == "10.1.0.9" for t in k.templates)


def test_quiescent_template_is_expired_so_weight_zero_gets_no_new_persistent_client() -> None:
    k = kernel(("10.0.0.1", 1), ("10.0.0.2", 1), persistent=100)
    first = k.connect("tcp", "10.1.0.9", 1, VIP, 80, 0.0).real_server
    assert first is not None
    k.install(
        [
            vs(
                (first[0], 0),
                *[(ip, 1) for ip in ("10.0.0.1", "10.0.0.2") if ip != first[0]],
                persistent=100,
            )
        ]
    )
    moved = k.connect("tcp", "10.1.0.9", 2, VIP, 80, 1.0).real_server
    assert moved is not None and moved != first


def test_weight_zero_keeps_persistent_clients_without_expire_quiescent_template() -> None:
    sysctls = IpvsSysctls(expire_quiescent_template=0)
    k = kernel(("10.0.0.1", 1), ("10.0.0.2", 1), persistent=100, sysctls=sysctls)
    first = k.connect("tcp", "10.1.0.9", 1, VIP, 80, 0.0).real_server
    assert first is not None
    k.install(
        [
            vs(
                (first[0], 0),
                *[(ip, 1) for ip in ("10.0.0.1", "10.0.0.2") if ip != first[0]],
                persistent=100,
            )
        ]
    )
    assert k.connect("tcp", "10.1.0.9", 2, VIP, 80, 1.0).real_server == first


@pytest.mark.parametrize(
    ("sysctls", "verdict", "same_server"),
    [
        (IpvsSysctls(), Verdict.FORWARDED, False),  # rescheduled (rr moves on)
        (IpvsSysctls(old_conntrack_drops=True), Verdict.DROPPED, False),  # kernel < 5.9
        (IpvsSysctls(conn_reuse_mode=0), Verdict.FORWARDED, True),  # same server as before
    ],
)
def test_a_reused_source_port_in_time_wait(
    sysctls: IpvsSysctls, verdict: Verdict, same_server: bool
) -> None:
    k = kernel(("10.0.0.1", 1), ("10.0.0.2", 1), sysctls=sysctls)
    first = k.connect("tcp", "10.1.0.9", 1, VIP, 80, 0.0).real_server
    k.finished(key(1), 1.0)
    again = k.connect("tcp", "10.1.0.9", 1, VIP, 80, 2.0)
    assert again.verdict is verdict
    assert (again.real_server == first) is same_server


def test_an_entry_to_a_deleted_server_is_expired_and_its_packet_dropped() -> None:
    k = kernel(("10.0.0.1", 1), ("10.0.0.2", 1))
    first = k.connect("tcp", "10.1.0.9", 1, VIP, 80, 0.0).real_server
    assert first is not None
    k.install([vs(*[(ip, 1) for ip in ("10.0.0.1", "10.0.0.2") if ip != first[0]])])
    d = k.connect("tcp", "10.1.0.9", 1, VIP, 80, 1.0)
    assert d.verdict is Verdict.DROPPED and key(1) not in k.conns
    retry = k.connect("tcp", "10.1.0.9", 1, VIP, 80, 2.0)
    assert retry.verdict is Verdict.FORWARDED and retry.real_server != first


def test_weight_zero_server_reschedules_a_reused_port_with_expire_nodest_conn() -> None:
    k = kernel(("10.0.0.1", 1), ("10.0.0.2", 1))
    first = k.connect("tcp", "10.1.0.9", 1, VIP, 80, 0.0).real_server
    k.established(key(1), 0.1)
    assert first is not None
    k.install([vs((first[0], 0), *[(ip, 1) for ip in ("10.0.0.1", "10.0.0.2") if ip != first[0]])])
    again = k.connect("tcp", "10.1.0.9", 1, VIP, 80, 1.0)
    assert again.verdict is Verdict.FORWARDED and again.real_server != first


def test_install_adds_new_servers_at_the_head_and_ipvsadm_sorts() -> None:
    k = kernel(("10.0.0.2", 1), ("10.0.0.10", 1))
    assert [d.address for d in k.real_servers(("TCP", VIP, 80))] == ["10.0.0.2", "10.0.0.10"]
    k.install([vs(("10.0.0.5", 1), ("10.0.0.2", 1), ("10.0.0.10", 1))])
    assert [d.address for d in k.real_servers(("TCP", VIP, 80))] == [
        "10.0.0.5",
        "10.0.0.2",
        "10.0.0.10",
    ]
    k.connect("tcp", "10.1.0.9", 1, VIP, 80, 0.0)
    text = render_ipvsadm([vs(("10.0.0.10", 1), ("10.0.0.2", 0))], k.connection_counts())
    assert text.splitlines() == [
        "IP Virtual Server version 1.2.1 (size=4096)",
        "Prot LocalAddress:Port Scheduler Flags",
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn",
        "TCP  10.96.0.10:80 rr",
        # ipvsadm's "  -> %-28s %-7s %-6d %-10u %-10u", trailing spaces and all
        "  -> 10.0.0.2:8080" + " " * 16 + "Masq    0      0          0         ",
        "  -> 10.0.0.10:8080" + " " * 15 + "Masq    1      0          0         ",
    ]


def test_persistent_and_flagged_services_print_as_ipvsadm_does() -> None:
    server = VirtualServer(
        "UDP", VIP, 53, "mh", persistent_timeout_s=10800, sched_flags=("mh-port",)
    )
    assert render_ipvsadm([server], {}).splitlines()[3] == (
        "UDP  10.96.0.10:53 mh (mh-port) persistent 10800"
    )


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["connect", "established", "closed", "finished", "tick"]),
            st.integers(1, 6),
        ),
        max_size=60,
    )
)
def test_counters_always_equal_a_recount_of_the_table(ops: list[tuple[str, int]]) -> None:
    k = kernel(("10.0.0.1", 1), ("10.0.0.2", 2), scheduler="wlc")
    now = 0.0
    for op, sport in ops:
        now += 1.0
        if op == "connect":
            k.connect("tcp", "10.1.0.9", sport, VIP, 80, now)
        elif op == "tick":
            k.expire(now + 100.0 * sport)
        elif key(sport) in k.conns:
            getattr(k, op)(key(sport), now)
        recount: dict[str, list[int]] = {"10.0.0.1": [0, 0], "10.0.0.2": [0, 0]}
        for conn in k.conns.values():
            recount[conn.dest[0]][0 if conn.state is ConnState.ESTABLISHED else 1] += 1
        live = {d.address: [d.active, d.inactive] for d in k.real_servers(("TCP", VIP, 80))}
        assert live == recount


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.ip_addresses(v=4), st.integers(0, 65535)), min_size=2, max_size=8))
def test_ipvsadm_sorts_addresses_as_numbers(pairs: list[tuple[IPv4Address, int]]) -> None:
    # ipvsadm sorts by the address as a number, then the port (not as text).
    got = sorted(pairs, key=lambda p: _sort_key(str(p[0]), p[1]))
    assert got == sorted(pairs, key=lambda p: (int(p[0]), p[1]))


@pytest.mark.parametrize(
    "address",
    ["10.0.0.1", "0.0.0.0", "255.255.255.255", "010.0.0.1", "10.0.0", "10.0.0.256", "", "::1",
     "1.2.3.4 ", "١.2.3.4", "10.0.0.01", "a.b.c.d"],
)  # fmt: skip
def test_server_addresses_are_checked_as_ipaddress_checks_them(address: str) -> None:
    try:
        IPv4Address(address)
        valid = True
    except ValueError:
        valid = False
    try:
        RealServer(address, 80)
        VirtualServer("TCP", address, 80, "rr")
        accepted = True
    except ValueError:
        accepted = False
    assert accepted is valid
