"""The node's state besides the restore input: jump rules, canary chains, flags, consistency."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svcsim.k8s.objects import (
    LoadBalancerIngress,
    Service,
    ServicePort,
    ServiceType,
    SessionAffinity,
    TrafficPolicy,
)
from svcsim.netfilter.model import Ruleset
from svcsim.netfilter.text import apply_restore
from svcsim.proxy.context import NodeContext, go_hex_mark
from svcsim.proxy.iptables import (
    compile_iptables,
    compile_iptables_sync,
    restore_text,
    sync_stats,
)
from svcsim.proxy.probability import chain_probabilities
from tests.proxy.test_iptables_support import (
    chain_rules,
    ep,
    fake_context,
    make_service,
    make_slice,
    port,
    sort_iptables_rules,
)


def _targets(ruleset: Ruleset, table: str, chain: str) -> list[str]:
    c = ruleset.chain(table, chain)
    assert c is not None
    return [r.text.rsplit("-j ", 1)[1] for r in c.rules]


def test_jump_rules_end_up_in_reverse_prepend_order() -> None:
    """EnsureRule(Prepend) inserts at the top, so the jump ensured last is first."""
    rs = compile_iptables([], [], fake_context())
    assert _targets(rs, "filter", "INPUT") == [
        "KUBE-FIREWALL",
        "KUBE-PROXY-FIREWALL",
        "KUBE-NODEPORTS",
        "KUBE-EXTERNAL-SERVICES",
    ]
    assert _targets(rs, "filter", "FORWARD") == [
        "KUBE-PROXY-FIREWALL",
        "KUBE-FORWARD",
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
    ]
    assert _targets(rs, "filter", "OUTPUT") == [
        "KUBE-FIREWALL",
        "KUBE-PROXY-FIREWALL",
        "KUBE-SERVICES",
    ]
    assert _targets(rs, "nat", "PREROUTING") == ["KUBE-SERVICES"]
    assert _targets(rs, "nat", "OUTPUT") == ["KUBE-SERVICES"]
    assert _targets(rs, "nat", "POSTROUTING") == ["KUBE-POSTROUTING"]
    nat_input = rs.chain("nat", "INPUT")
    assert nat_input is not None and nat_input.rules == ()
    first = rs.chain("filter", "FORWARD")
    assert first is not None
    assert first.rules[2].text == (
        "-m conntrack --ctstate NEW -m comment "
        '--comment "kubernetes service portals" -j KUBE-SERVICES'
    )


def test_canary_chains_exist_empty_and_stay_out_of_the_restore_input() -> None:
    sync = compile_iptables_sync([], [], fake_context())
    assert [t.name for t in sync.ruleset.tables] == ["mangle", "nat", "filter"]
    for table in ("mangle", "nat", "filter"):
        canary = sync.ruleset.chain(table, "KUBE-PROXY-CANARY")
        assert canary is not None and canary.rules == ()
    assert "CANARY" not in sync.restore_text
    assert "CANARY" not in restore_text(sync.ruleset)
    assert "*mangle" not in restore_text(sync.ruleset)


def test_without_localhost_nodeports_kube_firewall_is_only_ensured() -> None:
    ctx = fake_context(localhost_nodeports=False)
    sync = compile_iptables_sync([], [], ctx)
    firewall = sync.ruleset.chain("filter", "KUBE-FIREWALL")
    assert firewall is not None and firewall.rules == ()
    assert "KUBE-FIREWALL" not in sync.restore_text
    assert sort_iptables_rules(restore_text(sync.ruleset)) == sort_iptables_rules(sync.restore_text)
    assert chain_rules(sync.restore_text, "nat", "KUBE-SERVICES").endswith(
        "-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS\n"
    )


@pytest.mark.parametrize(
    ("addresses", "localhost", "destinations"),
    [
        (("192.168.0.0/24",), True, ["192.168.0.2"]),  # no loopback: localhost NodePorts off
        (("192.168.0.0/16",), True, ["192.168.0.2", "192.168.1.2", "192.168.99.11"]),
        (("127.0.0.0/8", "192.168.1.0/24"), True, ["127.0.0.1", "192.168.1.2"]),
        (("127.0.0.0/8", "192.168.1.0/24"), False, ["192.168.1.2"]),
        (("2001:db8::/64",), True, None),  # no IPv4 CIDR: match all
        (("0.0.0.0/0", "10.0.0.0/8"), True, None),
    ],
)
def test_nodeport_addresses(
    addresses: tuple[str, ...], localhost: bool, destinations: list[str] | None
) -> None:
    ctx = fake_context(node_port_addresses=addresses, localhost_nodeports=localhost)
    rules = chain_rules(compile_iptables_sync([], [], ctx).restore_text, "nat", "KUBE-SERVICES")
    last = (
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must '
        'be the last rule in this chain"'
    )
    if destinations is None:
        assert rules == f"{last} -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n"
    else:
        assert rules == "".join(f"{last} -d {ip} -j KUBE-NODEPORTS\n" for ip in destinations)


@pytest.mark.parametrize(
    ("bit", "mark"), [(0, "0x00000001"), (14, "0x00004000"), (31, "0x80000000")]
)
def test_mark_is_go_percent_hash_08x(bit: int, mark: str) -> None:
    ctx = fake_context(masquerade_bit=bit)
    assert ctx.mark == go_hex_mark(1 << bit) == mark
    text = compile_iptables_sync([], [], ctx).restore_text
    assert f"-A KUBE-MARK-MASQ -j MARK --or-mark {mark}\n" in text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"masquerade_bit": 32},
        {"masquerade_bit": -1},
        {"local_detector": "ClusterCIDR", "local_detector_value": ""},
        {"local_detector": "ClusterCIDR", "local_detector_value": "10.0.0.0/33"},
        {"local_detector": "Nope", "local_detector_value": "x"},
        {"node_ips": ("fd00::1",)},
        {"node_port_addresses": ("not-a-cidr",)},
    ],
)
def test_context_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        fake_context(**kwargs)


@pytest.mark.parametrize(
    ("detector", "value", "masquerade_all", "masq_rule", "pod_rule"),
    [
        (
            "ClusterCIDR",
            "10.0.0.0/8",
            False,
            "! -s 10.0.0.0/8 -j KUBE-MARK-MASQ",
            "-s 10.0.0.0/8 -j",
        ),
        (
            "NodeCIDR",
            "10.0.3.0/24",
            False,
            "! -s 10.0.3.0/24 -j KUBE-MARK-MASQ",
            "-s 10.0.3.0/24 -j",
        ),
        ("BridgeInterface", "cbr0", False, "! -i cbr0 -j KUBE-MARK-MASQ", "-i cbr0 -j"),
        ("InterfaceNamePrefix", "veth", False, "! -i veth+ -j KUBE-MARK-MASQ", "-i veth+ -j"),
        (None, "", False, None, None),
        (None, "", True, "--dport 80 -j KUBE-MARK-MASQ", None),
        ("ClusterCIDR", "10.0.0.0/8", True, "--dport 80 -j KUBE-MARK-MASQ", "-s 10.0.0.0/8 -j"),
    ],
)
def test_local_detector_and_masquerade_all(
    detector: str | None,
    value: str,
    masquerade_all: bool,
    masq_rule: str | None,
    pod_rule: str | None,
) -> None:
    ctx = fake_context(
        local_detector=detector, local_detector_value=value, masquerade_all=masquerade_all
    )
    svc = make_service(
        "ns1",
        "svc1",
        type=ServiceType.NODE_PORT,
        cluster_ip="172.30.0.41",
        external_traffic_policy=TrafficPolicy.LOCAL,
        ports=(ServicePort(80, name="p80", node_port=3001),),
    )
    spn_chain = "KUBE-SVC-XPGD46QRK7WJZT7O"
    text = compile_iptables_sync(
        [svc],
        [make_slice("ns1", "svc1", (ep("10.180.0.1", "test-node"),), (port(80, "p80"),))],
        ctx,
    ).restore_text
    masq = [r for r in chain_rules(text, "nat", spn_chain).splitlines() if "KUBE-MARK-MASQ" in r]
    if masq_rule is None:
        assert masq == []
    else:
        assert len(masq) == 1 and masq[0].endswith(masq_rule)
    ext = chain_rules(text, "nat", "KUBE-EXT-XPGD46QRK7WJZT7O")
    assert ('"pod traffic for' in ext) == (pod_rule is not None)
    if pod_rule is not None:
        assert f"{pod_rule} {spn_chain}" in ext


@pytest.mark.parametrize("n", [1, 2, 3, 7, 12])
def test_probability_cascade(n: int) -> None:
    svc = make_service("ns", "s", cluster_ip="10.96.0.1", ports=(ServicePort(80),))
    sl = make_slice("ns", "s", tuple(ep(f"10.1.0.{i + 1}") for i in range(n)), (port(80),))
    text = compile_iptables_sync([svc], [sl], fake_context()).restore_text
    probs = re.findall(r"--probability (\S+)", text)
    assert probs == chain_probabilities(n)
    assert text.count("-j DNAT") == n


def test_stats_and_rule_counts() -> None:
    svc = make_service("ns", "s", cluster_ip="10.96.0.1", ports=(ServicePort(80),))
    sl = make_slice("ns", "s", (ep("10.1.0.1"), ep("10.1.0.2")), (port(80),))
    sync = compile_iptables_sync([svc], [sl], fake_context())
    st_ = sync.stats
    assert (st_.service_ports, st_.total_endpoints, st_.large_cluster_mode) == (1, 2, False)
    nat = sync.restore_text.split("*nat", 1)[1]
    assert st_.nat_rules == nat.count("\n-A ") == 4 + 1 + 1 + 2 + 4 + 1
    assert st_.nat_chains == nat.count("\n:") == 4 + 1 + 2
    counts = sync_stats(sync.ruleset)
    assert counts["nat_rules"] == st_.nat_rules + 3  # + PREROUTING/OUTPUT/POSTROUTING jumps
    assert counts["nat_chains"] == st_.nat_chains + 1  # + canary
    assert counts["mangle_rules"] == 0


# --- consistency over random inputs (upstream's checkIPTablesRuleJumps) --------------------

FIXED = {
    "KUBE-SERVICES",
    "KUBE-EXTERNAL-SERVICES",
    "KUBE-NODEPORTS",
    "KUBE-POSTROUTING",
    "KUBE-FORWARD",
    "KUBE-MARK-MASQ",
    "KUBE-PROXY-FIREWALL",
    "KUBE-FIREWALL",
}
TARGETS = {"ACCEPT", "REJECT", "DROP", "MARK", "RETURN", "DNAT", "SNAT", "MASQUERADE"}


def check_rule_jumps(text: str) -> None:
    """checkIPTablesRuleJumps: jumps go to created, filled chains; created chains are used."""
    for section in text.split("COMMIT")[:-1]:
        lines = section.strip().splitlines()
        created = {m.group(1) for line in lines if (m := re.match(r"^:(\S+)", line))}
        filled = {m.group(1) for line in lines if (m := re.match(r"^-A (\S+)", line))}
        jumped = {m.group(1) for line in lines if (m := re.search(r"-j (\S+)", line))} - TARGETS
        assert not (jumped | filled) - created, lines[0]
        assert not jumped - filled - {"KUBE-NODEPORTS"}, lines[0]
        assert not created - jumped - FIXED, lines[0]


@st.composite
def service_and_slice(draw: st.DrawFn, i: int) -> tuple[Service, object]:
    kind = draw(st.sampled_from(list(ServiceType)[:3]))
    node_port = 30000 + i if kind != ServiceType.CLUSTER_IP else 0
    svc = make_service(
        f"ns{i}",
        "svc",
        type=kind,
        cluster_ip=f"172.30.0.{i + 1}",
        external_traffic_policy=draw(st.sampled_from(list(TrafficPolicy))),
        internal_traffic_policy=draw(st.sampled_from(list(TrafficPolicy))),
        session_affinity=draw(st.sampled_from(list(SessionAffinity))),
        external_ips=draw(st.sampled_from([(), (f"192.168.99.{i + 1}",)])),
        load_balancer_ingress=(LoadBalancerIngress(ip=f"5.6.7.{i + 1}"),)
        if kind == ServiceType.LOAD_BALANCER
        else (),
        load_balancer_source_ranges=draw(
            st.sampled_from([(), ("203.0.113.0/25",), ("192.168.0.0/16",)])
        ),
        health_check_node_port=31000 + i,
        ports=(ServicePort(80, name="p", node_port=node_port),),
    )
    eps = draw(
        st.lists(
            st.builds(
                lambda j, local, r, s, t: ep(
                    f"10.{i}.0.{j}",
                    "test-node" if local else "other",
                    ready=r,
                    serving=s,
                    terminating=t,
                ),
                st.integers(1, 20),
                st.booleans(),
                st.booleans(),
                st.booleans(),
                st.booleans(),
            ),
            max_size=5,
        )
    )
    return svc, make_slice(f"ns{i}", "svc", tuple(eps), (port(8080, "p"),))


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(st.integers(0, 4), min_size=1, max_size=4, unique=True).flatmap(
        lambda ids: st.tuples(*(service_and_slice(i) for i in ids))
    )
)
def test_random_syncs_are_consistent_and_restore_to_the_same_tables(
    pairs: tuple[tuple[Service, object], ...],
) -> None:
    services = [s for s, _ in pairs]
    slices = [sl for _, sl in pairs]
    sync = compile_iptables_sync(services, slices, fake_context())  # type: ignore[arg-type]
    check_rule_jumps(sync.restore_text)
    restored = apply_restore(Ruleset(), sync.restore_text)
    regrouped = apply_restore(Ruleset(), restore_text(sync.ruleset))
    assert restored == regrouped
    # Same lines, only grouped differently.
    assert sorted(sync.restore_text.splitlines()) == sorted(restore_text(sync.ruleset).splitlines())


def test_real_binary_context_defaults() -> None:
    ctx = NodeContext(node_name="n")
    assert (ctx.random_fully, ctx.nfacct, ctx.localhost_nodeports, ctx.masquerade_bit) == (
        True,
        True,
        True,
        14,
    )
    assert not ctx.local_detector_implemented and ctx.cluster_cidr is None
    assert NodeContext.with_cluster_cidr("n", "10.0.0.0/8").cluster_cidr == "10.0.0.0/8"
