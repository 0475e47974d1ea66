# ruff: noqa: E501 -- expected outputs hold verbatim iptables lines, which cannot be wrapped.
"""Whole-ruleset comparisons with kubernetes pkg/proxy/iptables/proxier_test.go @531be812.

Each test rebuilds an upstream test's inputs, compiles them with the fake proxier's settings
(:func:`fake_context`) and compares the restore input the way ``assertIPTablesRulesEqual`` does:
``sortIPTablesRules(actual)`` must equal the expected text character for character. The only
edit to our output is the mark spelling (``0x00004000`` -> the fake's ``0x4000``). Expected
texts are upstream's test data, copied verbatim.
"""

from __future__ import annotations

import pytest

from svcsim.k8s.objects import (
    LoadBalancerIngress,
    ServicePort,
    ServiceType,
    SessionAffinity,
    TrafficPolicy,
)
from svcsim.netfilter.model import Ruleset
from svcsim.netfilter.text import apply_restore
from svcsim.proxy.iptables import compile_iptables_sync, restore_text
from tests.proxy.test_iptables_support import (
    TEST_NODE_NAME,
    as_fake_proxier_text,
    chain_rules,
    dedent,
    ep,
    fake_context,
    make_service,
    make_slice,
    port,
    sort_iptables_rules,
)

P80 = (port(80, "p80"),)


def overall_inputs() -> tuple[list, list]:  # type: ignore[type-arg]
    """TestOverallIPTablesRules' six services and five slices."""
    services = [
        make_service("ns1", "svc1", cluster_ip="172.30.0.41", ports=(ServicePort(80, name="p80"),)),
        make_service(
            "ns2",
            "svc2",
            type=ServiceType.LOAD_BALANCER,
            external_traffic_policy=TrafficPolicy.LOCAL,
            cluster_ip="172.30.0.42",
            ports=(ServicePort(80, name="p80", node_port=3001),),
            load_balancer_ingress=(LoadBalancerIngress(ip="1.2.3.4"),),
            external_ips=("192.168.99.22",),
            health_check_node_port=30000,
        ),
        make_service(
            "ns3",
            "svc3",
            type=ServiceType.NODE_PORT,
            cluster_ip="172.30.0.43",
            ports=(ServicePort(80, name="p80", node_port=3003),),
        ),
        make_service(
            "ns4",
            "svc4",
            type=ServiceType.NODE_PORT,
            cluster_ip="172.30.0.44",
            external_ips=("192.168.99.33",),
            ports=(ServicePort(80, name="p80", target_port=80),),
        ),
        make_service(
            "ns5",
            "svc5",
            type=ServiceType.LOAD_BALANCER,
            external_traffic_policy=TrafficPolicy.CLUSTER,
            cluster_ip="172.30.0.45",
            ports=(ServicePort(80, name="p80", node_port=3002),),
            load_balancer_ingress=(LoadBalancerIngress(ip="5.6.7.8"),),
            health_check_node_port=30000,
            load_balancer_source_ranges=(" 203.0.113.0/25",),
            session_affinity=SessionAffinity.CLIENT_IP,
            session_affinity_timeout_s=10800,
        ),
        make_service(
            "ns6",
            "svc6",
            type=ServiceType.CLUSTER_IP,
            cluster_ip="172.30.0.46",
            ports=(ServicePort(80, name="p80", target_port=80),),
        ),
    ]
    slices = [
        make_slice("ns1", "svc1", (ep("10.180.0.1"),), P80),
        make_slice("ns2", "svc2", (ep("10.180.0.2"),), P80),
        make_slice("ns3", "svc3", (ep("10.180.0.3"),), P80),
        make_slice("ns4", "svc4", (ep("10.180.0.4"), ep("10.180.0.5", TEST_NODE_NAME)), P80),
        make_slice("ns5", "svc5", (ep("10.180.0.3"),), P80),
    ]
    return services, slices


OVERALL_EXPECTED = dedent("""
    *filter
    :KUBE-NODEPORTS - [0:0]
    :KUBE-SERVICES - [0:0]
    :KUBE-EXTERNAL-SERVICES - [0:0]
    :KUBE-FIREWALL - [0:0]
    :KUBE-FORWARD - [0:0]
    :KUBE-PROXY-FIREWALL - [0:0]
    -A KUBE-NODEPORTS -m comment --comment "ns2/svc2:p80 health check node port" -m tcp -p tcp --dport 30000 -j ACCEPT
    -A KUBE-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.46 --dport 80 -j REJECT
    -A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j DROP
    -A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j DROP
    -A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j DROP
    -A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
    -A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP
    -A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
    -A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
    -A KUBE-PROXY-FIREWALL -m comment --comment "ns5/svc5:p80 traffic not accepted by KUBE-FW-NUKIZ6OKUXPJNT4C" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j DROP
    COMMIT
    *nat
    :KUBE-NODEPORTS - [0:0]
    :KUBE-SERVICES - [0:0]
    :KUBE-EXT-4SW47YFZTEDKD3PK - [0:0]
    :KUBE-EXT-GNZBNJ2PO5MGZ6GT - [0:0]
    :KUBE-EXT-NUKIZ6OKUXPJNT4C - [0:0]
    :KUBE-EXT-X27LE4BHSL4DOUIK - [0:0]
    :KUBE-FW-NUKIZ6OKUXPJNT4C - [0:0]
    :KUBE-MARK-MASQ - [0:0]
    :KUBE-POSTROUTING - [0:0]
    :KUBE-SEP-C6EBXVWJJZMIWKLZ - [0:0]
    :KUBE-SEP-I77PXRDZVX7PMWMN - [0:0]
    :KUBE-SEP-OYPFS5VJICHGATKP - [0:0]
    :KUBE-SEP-RS4RBKLTHTF2IUXJ - [0:0]
    :KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
    :KUBE-SEP-UKSFD7AGPMPPLUHC - [0:0]
    :KUBE-SVC-4SW47YFZTEDKD3PK - [0:0]
    :KUBE-SVC-GNZBNJ2PO5MGZ6GT - [0:0]
    :KUBE-SVC-NUKIZ6OKUXPJNT4C - [0:0]
    :KUBE-SVC-X27LE4BHSL4DOUIK - [0:0]
    :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
    -A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 3001 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
    -A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
    -A KUBE-NODEPORTS -m comment --comment ns3/svc3:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 3003 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-X27LE4BHSL4DOUIK
    -A KUBE-NODEPORTS -m comment --comment ns3/svc3:p80 -m tcp -p tcp --dport 3003 -j KUBE-EXT-X27LE4BHSL4DOUIK
    -A KUBE-NODEPORTS -m comment --comment ns5/svc5:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 3002 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-NUKIZ6OKUXPJNT4C
    -A KUBE-NODEPORTS -m comment --comment ns5/svc5:p80 -m tcp -p tcp --dport 3002 -j KUBE-EXT-NUKIZ6OKUXPJNT4C
    -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
    -A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
    -A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 external IP" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
    -A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 loadbalancer IP" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
    -A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j KUBE-SVC-X27LE4BHSL4DOUIK
    -A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 -j KUBE-SVC-4SW47YFZTEDKD3PK
    -A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 external IP" -m tcp -p tcp -d 192.168.99.33 --dport 80 -j KUBE-EXT-4SW47YFZTEDKD3PK
    -A KUBE-SERVICES -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 -j KUBE-SVC-NUKIZ6OKUXPJNT4C
    -A KUBE-SERVICES -m comment --comment "ns5/svc5:p80 loadbalancer IP" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j KUBE-FW-NUKIZ6OKUXPJNT4C
    -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
    -A KUBE-EXT-4SW47YFZTEDKD3PK -m comment --comment "masquerade traffic for ns4/svc4:p80 external destinations" -j KUBE-MARK-MASQ
    -A KUBE-EXT-4SW47YFZTEDKD3PK -j KUBE-SVC-4SW47YFZTEDKD3PK
    -A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "pod traffic for ns2/svc2:p80 external destinations" -s 10.0.0.0/8 -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
    -A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "masquerade LOCAL traffic for ns2/svc2:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
    -A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "route LOCAL traffic for ns2/svc2:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
    -A KUBE-EXT-NUKIZ6OKUXPJNT4C -m comment --comment "masquerade traffic for ns5/svc5:p80 external destinations" -j KUBE-MARK-MASQ
    -A KUBE-EXT-NUKIZ6OKUXPJNT4C -j KUBE-SVC-NUKIZ6OKUXPJNT4C
    -A KUBE-EXT-X27LE4BHSL4DOUIK -m comment --comment "masquerade traffic for ns3/svc3:p80 external destinations" -j KUBE-MARK-MASQ
    -A KUBE-EXT-X27LE4BHSL4DOUIK -j KUBE-SVC-X27LE4BHSL4DOUIK
    -A KUBE-FW-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 loadbalancer IP" -s 203.0.113.0/25 -j KUBE-EXT-NUKIZ6OKUXPJNT4C
    -A KUBE-FW-NUKIZ6OKUXPJNT4C -m comment --comment "other traffic to ns5/svc5:p80 will be dropped by KUBE-PROXY-FIREWALL"
    -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
    -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
    -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
    -A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
    -A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -s 10.180.0.5 -j KUBE-MARK-MASQ
    -A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.5:80
    -A KUBE-SEP-I77PXRDZVX7PMWMN -m comment --comment ns5/svc5:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
    -A KUBE-SEP-I77PXRDZVX7PMWMN -m comment --comment ns5/svc5:p80 -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
    -A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
    -A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
    -A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -s 10.180.0.2 -j KUBE-MARK-MASQ
    -A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
    -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
    -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
    -A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -s 10.180.0.4 -j KUBE-MARK-MASQ
    -A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.4:80
    -A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
    -A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.4:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-UKSFD7AGPMPPLUHC
    -A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.5:80" -j KUBE-SEP-C6EBXVWJJZMIWKLZ
    -A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
    -A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 -> 10.180.0.2:80" -j KUBE-SEP-RS4RBKLTHTF2IUXJ
    -A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
    -A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --rcheck --seconds 10800 --reap -j KUBE-SEP-I77PXRDZVX7PMWMN
    -A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -j KUBE-SEP-I77PXRDZVX7PMWMN
    -A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
    -A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.180.0.3:80" -j KUBE-SEP-OYPFS5VJICHGATKP
    -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
    -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ
    COMMIT
    """)


def test_overall_iptables_rules() -> None:
    """TestOverallIPTablesRules: exact after upstream's sort."""
    services, slices = overall_inputs()
    sync = compile_iptables_sync(services, slices, fake_context())
    assert sort_iptables_rules(as_fake_proxier_text(sync.restore_text)) == OVERALL_EXPECTED
    # TestOverallIPTablesRules also checks the nat rule count metric against the data.
    assert sync.stats.nat_rules == OVERALL_EXPECTED.split("*nat", 1)[1].count("\n-A ")


def test_overall_restore_text_of_ruleset_sorts_to_the_same_text() -> None:
    """restore_text(ruleset) groups lines by chain; after upstream's sort it is identical."""
    services, slices = overall_inputs()
    sync = compile_iptables_sync(services, slices, fake_context())
    assert sort_iptables_rules(as_fake_proxier_text(restore_text(sync.ruleset))) == OVERALL_EXPECTED


def test_restoring_either_text_on_a_clean_node_gives_the_compiled_tables() -> None:
    """Both restore texts rebuild the ruleset's filter and nat user chains exactly."""
    services, slices = overall_inputs()
    sync = compile_iptables_sync(services, slices, fake_context())
    for text in (sync.restore_text, restore_text(sync.ruleset)):
        restored = apply_restore(Ruleset(), text)
        for table in ("filter", "nat"):
            got = {
                c.name: [r.text for r in c.rules]
                for c in restored.table(table).chains  # type: ignore[union-attr]
                if not c.is_builtin
            }
            want = {
                c.name: [r.text for r in c.rules]
                for c in sync.ruleset.table(table).chains  # type: ignore[union-attr]
                if not c.is_builtin and c.name != "KUBE-PROXY-CANARY"
            }
            assert got == want


REPEATED_FIRST_EXPECTED = dedent("""
    *filter
    :KUBE-NODEPORTS - [0:0]
    :KUBE-SERVICES - [0:0]
    :KUBE-EXTERNAL-SERVICES - [0:0]
    :KUBE-FIREWALL - [0:0]
    :KUBE-FORWARD - [0:0]
    :KUBE-PROXY-FIREWALL - [0:0]
    -A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
    -A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP
    -A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
    -A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
    COMMIT
    *nat
    :KUBE-NODEPORTS - [0:0]
    :KUBE-SERVICES - [0:0]
    :KUBE-MARK-MASQ - [0:0]
    :KUBE-POSTROUTING - [0:0]
    :KUBE-SEP-SNQ3ZNILQDEJNDQO - [0:0]
    :KUBE-SEP-UHEGFW77JX3KXTOV - [0:0]
    :KUBE-SVC-2VJB64SDSIJUP5T6 - [0:0]
    :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
    -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
    -A KUBE-SERVICES -m comment --comment "ns2/svc2:p8080 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 8080 -j KUBE-SVC-2VJB64SDSIJUP5T6
    -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
    -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
    -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
    -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
    -A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
    -A KUBE-SEP-SNQ3ZNILQDEJNDQO -m comment --comment ns1/svc1:p80 -s 10.0.1.1 -j KUBE-MARK-MASQ
    -A KUBE-SEP-SNQ3ZNILQDEJNDQO -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.1.1:80
    -A KUBE-SEP-UHEGFW77JX3KXTOV -m comment --comment ns2/svc2:p8080 -s 10.0.2.1 -j KUBE-MARK-MASQ
    -A KUBE-SEP-UHEGFW77JX3KXTOV -m comment --comment ns2/svc2:p8080 -m tcp -p tcp -j DNAT --to-destination 10.0.2.1:8080
    -A KUBE-SVC-2VJB64SDSIJUP5T6 -m comment --comment "ns2/svc2:p8080 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 8080 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
    -A KUBE-SVC-2VJB64SDSIJUP5T6 -m comment --comment "ns2/svc2:p8080 -> 10.0.2.1:8080" -j KUBE-SEP-UHEGFW77JX3KXTOV
    -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
    -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.0.1.1:80" -j KUBE-SEP-SNQ3ZNILQDEJNDQO
    COMMIT
    """)


def test_sync_proxy_rules_repeated_first_full_sync() -> None:
    """TestSyncProxyRulesRepeated, first (full) sync; later partial syncs are out of scope."""
    services = [
        make_service("ns1", "svc1", cluster_ip="172.30.0.41", ports=(ServicePort(80, name="p80"),)),
        make_service(
            "ns2", "svc2", cluster_ip="172.30.0.42", ports=(ServicePort(8080, name="p8080"),)
        ),
    ]
    slices = [
        make_slice("ns1", "svc1", (ep("10.0.1.1"),), P80),
        make_slice("ns2", "svc2", (ep("10.0.2.1"),), (port(8080, "p8080"),)),
    ]
    sync = compile_iptables_sync(services, slices, fake_context())
    assert sort_iptables_rules(as_fake_proxier_text(sync.restore_text)) == REPEATED_FIRST_EXPECTED


BAD_IPS_EXPECTED = dedent("""
    *filter
    :KUBE-NODEPORTS - [0:0]
    :KUBE-SERVICES - [0:0]
    :KUBE-EXTERNAL-SERVICES - [0:0]
    :KUBE-FIREWALL - [0:0]
    :KUBE-FORWARD - [0:0]
    :KUBE-PROXY-FIREWALL - [0:0]
    -A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
    -A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP
    -A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
    -A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
    -A KUBE-PROXY-FIREWALL -m comment --comment "ns1/svc1:p80 traffic not accepted by KUBE-FW-XPGD46QRK7WJZT7O" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j DROP
    COMMIT
    *nat
    :KUBE-NODEPORTS - [0:0]
    :KUBE-SERVICES - [0:0]
    :KUBE-EXT-XPGD46QRK7WJZT7O - [0:0]
    :KUBE-FW-XPGD46QRK7WJZT7O - [0:0]
    :KUBE-MARK-MASQ - [0:0]
    :KUBE-POSTROUTING - [0:0]
    :KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
    :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
    -A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 3001 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-XPGD46QRK7WJZT7O
    -A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-XPGD46QRK7WJZT7O
    -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
    -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 external IP" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j KUBE-EXT-XPGD46QRK7WJZT7O
    -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 loadbalancer IP" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j KUBE-FW-XPGD46QRK7WJZT7O
    -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
    -A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "masquerade traffic for ns1/svc1:p80 external destinations" -j KUBE-MARK-MASQ
    -A KUBE-EXT-XPGD46QRK7WJZT7O -j KUBE-SVC-XPGD46QRK7WJZT7O
    -A KUBE-FW-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 loadbalancer IP" -s 203.0.113.0/25 -j KUBE-EXT-XPGD46QRK7WJZT7O
    -A KUBE-FW-XPGD46QRK7WJZT7O -m comment --comment "other traffic to ns1/svc1:p80 will be dropped by KUBE-PROXY-FIREWALL"
    -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
    -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
    -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
    -A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
    -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
    -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
    -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
    -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ
    COMMIT
    """)


def test_bad_ips() -> None:
    """TestBadIPs: sloppy IPs and CIDRs are re-printed canonically."""
    services = [
        make_service(
            "ns1",
            "svc1",
            type=ServiceType.LOAD_BALANCER,
            cluster_ip="172.30.0.041",
            ports=(ServicePort(80, name="p80", node_port=3001),),
            load_balancer_ingress=(LoadBalancerIngress(ip="1.2.3.004"),),
            external_ips=("192.168.099.022",),
            load_balancer_source_ranges=("203.0.113.000/025",),
        )
    ]
    slices = [make_slice("ns1", "svc1", (ep("10.180.00.001"),), P80)]
    sync = compile_iptables_sync(services, slices, fake_context())
    assert sort_iptables_rules(as_fake_proxier_text(sync.restore_text)) == BAD_IPS_EXPECTED


def _large_cluster_sync(with_svc3_endpoints: bool) -> str:
    """TestSyncProxyRulesLargeClusterMode's services; 2 x 499 endpoints (+3 for svc3)."""
    services = [
        make_service("ns1", "svc1", cluster_ip="172.30.0.41", ports=(ServicePort(80, name="p80"),)),
        make_service(
            "ns2", "svc2", cluster_ip="172.30.0.42", ports=(ServicePort(8080, name="p8080"),)
        ),
        make_service(
            "ns3", "svc3", cluster_ip="172.30.0.43", ports=(ServicePort(8081, name="p8081"),)
        ),
    ]
    n = 1000 // 2 - 1
    slices = [
        make_slice("ns1", "svc1", tuple(ep(f"10.0.{i % 256}.{i // 256}") for i in range(n)), P80),
        make_slice(
            "ns2",
            "svc2",
            tuple(ep(f"10.1.{i % 256}.{i // 256}") for i in range(n)),
            (port(8080, "p8080"),),
        ),
    ]
    if with_svc3_endpoints:
        slices.append(
            make_slice(
                "ns3",
                "svc3",
                (ep("203.0.113.4"), ep("203.0.113.8"), ep("203.0.113.12")),
                (port(8081, "p8081"),),
            )
        )
    ctx = fake_context(masquerade_all=True)
    return compile_iptables_sync(services, slices, ctx).restore_text


def _dnat_lines(text: str) -> list[str]:
    """countEndpointsAndComments: the DNAT rules of KUBE-SEP chains."""
    return [
        line for line in text.split("\n") if line.startswith("-A KUBE-SEP-") and "-j DNAT" in line
    ]


@pytest.mark.parametrize(
    ("with_svc3", "endpoints", "comments", "needle", "expected_line"),
    [
        (
            False,
            998,
            998,
            "10.0.0.0:80",
            "-A KUBE-SEP-DKGQUZGBKLTPAR56 -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.0.0:80",
        ),
        (
            True,
            1001,
            0,
            "10.0.0.0:80",
            "-A KUBE-SEP-DKGQUZGBKLTPAR56 -m tcp -p tcp -j DNAT --to-destination 10.0.0.0:80",
        ),
        (
            True,
            1001,
            0,
            "203.0.113.4:8081",
            "-A KUBE-SEP-RUVVH7YV3PHQBDOS -m tcp -p tcp -j DNAT --to-destination 203.0.113.4:8081",
        ),
    ],
)
def test_sync_proxy_rules_large_cluster_mode(
    with_svc3: bool, endpoints: int, comments: int, needle: str, expected_line: str
) -> None:
    """TestSyncProxyRulesLargeClusterMode: the first sync and the forced full resync."""
    lines = _dnat_lines(_large_cluster_sync(with_svc3))
    assert len(lines) == endpoints
    assert sum("--comment" in line for line in lines) == comments
    assert [line for line in lines if line.endswith(needle)] == [expected_line]


def test_large_cluster_mode_keeps_cluster_ip_comments_and_drops_dispatch_comments() -> None:
    text = _large_cluster_sync(True)
    svc_lines = [line for line in text.split("\n") if line.startswith("-A KUBE-SVC-")]
    masq = [line for line in svc_lines if line.endswith("-j KUBE-MARK-MASQ")]
    assert masq and all('cluster IP"' in line for line in masq)
    assert all("--comment" not in line for line in svc_lines if "-j KUBE-SEP-" in line)


@pytest.mark.parametrize("random_fully", [False, True])
def test_masquerade_rule(random_fully: bool) -> None:
    """TestMasqueradeRule."""
    text = compile_iptables_sync([], [], fake_context(random_fully=random_fully)).restore_text
    suffix = " --random-fully" if random_fully else ""
    expected = dedent(f"""
        -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
        -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
        -A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE{suffix}
        """)
    assert chain_rules(as_fake_proxier_text(text), "nat", "KUBE-POSTROUTING") == expected


FORWARD_TAIL = (
    '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT\n'
    '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n'
)


@pytest.mark.parametrize(
    ("nfacct", "tcp_liberal", "drop_rule"),
    [
        (False, False, "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n"),
        (
            True,
            False,
            "-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP\n",
        ),
        (False, True, ""),
    ],
)
def test_drop_invalid_rule(nfacct: bool, tcp_liberal: bool, drop_rule: str) -> None:
    """TestDropInvalidRule."""
    ctx = fake_context(nfacct=nfacct, tcp_be_liberal=tcp_liberal)
    text = as_fake_proxier_text(compile_iptables_sync([], [], ctx).restore_text)
    assert chain_rules(text, "filter", "KUBE-FORWARD") == drop_rule + FORWARD_TAIL


FIREWALL_RULE = (
    '-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 '
    "! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\n"
)


@pytest.mark.parametrize(
    ("localhost", "addresses", "expect_firewall"),
    [
        (True, (), True),
        (False, (), False),
        (False, ("192.168.0.0/24", "127.0.0.1/32"), False),
        (False, ("192.168.0.0/24", "192.168.1.0/24", "2001:db8::/64"), False),
    ],
)
def test_node_ports_firewall_chain(
    localhost: bool, addresses: tuple[str, ...], expect_firewall: bool
) -> None:
    """TestNodePorts (IPv4 cases): the KUBE-FIREWALL anti-martian rule."""
    ctx = fake_context(localhost_nodeports=localhost, node_port_addresses=addresses)
    text = compile_iptables_sync([], [], ctx).restore_text
    assert chain_rules(text, "filter", "KUBE-FIREWALL") == (
        FIREWALL_RULE if expect_firewall else ""
    )
