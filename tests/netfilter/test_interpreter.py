"""The interpreter on rulesets in kube-proxy's shape, written as iptables-save text."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from svcsim.netfilter.interpreter import Trace, draws_from, trace
from svcsim.netfilter.packet import NodeNetwork, Packet, VerdictKind
from svcsim.netfilter.recent import RecentTable
from svcsim.netfilter.text import parse_save
from svcsim.netfilter.walk import TraceError

NODE_IP = "192.168.0.10"
NETWORK = NodeNetwork((NODE_IP,), pod_cidr="10.244.1.0/24")

T3 = 715827883  # stored threshold of --probability 0.3333333333 (0.33333333349)
T2 = 1073741824  # 0.5
TOP = (1 << 31) - 1

# One node of a cluster with Pod CIDR 10.244.0.0/16 (this node: 10.244.1.0/24):
#   web     10.96.0.10:80   3 endpoints, NodePort 30080 (eTP Cluster)
#   empty   10.96.0.99:80   no endpoints, NodePort 30099
#   local   10.96.0.20:8080 eTP Local, NodePort 30020, one local + one remote endpoint
#   nolocal 10.96.0.40:80   eTP Local, NodePort 30040, only a remote endpoint
#   sticky  10.96.0.30:443  sessionAffinity ClientIP (10800 s), 2 endpoints
#   hostnet 10.96.0.50:443  one endpoint on this node's own IP (a host-network Pod)
KUBE_PROXY_SAVE = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-SERVICES - [0:0]
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS
-A INPUT -j KUBE-FIREWALL
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -j KUBE-FIREWALL
-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "default/empty:http has no endpoints" -m addrtype --dst-type LOCAL -m tcp --dport 30099 -j REJECT --reject-with icmp-port-unreachable
-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "default/nolocal:http has no local endpoints" -m addrtype --dst-type LOCAL -m tcp --dport 30040 -j DROP
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A KUBE-SERVICES -d 10.96.0.99/32 -p tcp -m comment --comment "default/empty:http has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-EXT-LOCAL - [0:0]
:KUBE-EXT-NOLOCAL - [0:0]
:KUBE-EXT-WEB - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-A - [0:0]
:KUBE-SEP-B - [0:0]
:KUBE-SEP-C - [0:0]
:KUBE-SEP-H - [0:0]
:KUBE-SEP-L1 - [0:0]
:KUBE-SEP-L2 - [0:0]
:KUBE-SEP-N1 - [0:0]
:KUBE-SEP-S1 - [0:0]
:KUBE-SEP-S2 - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-HOSTNET - [0:0]
:KUBE-SVC-LOCAL - [0:0]
:KUBE-SVC-NOLOCAL - [0:0]
:KUBE-SVC-STICKY - [0:0]
:KUBE-SVC-WEB - [0:0]
:KUBE-SVL-LOCAL - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-EXT-LOCAL -s 10.244.0.0/16 -m comment --comment "pod traffic for default/local:http external destinations" -j KUBE-SVC-LOCAL
-A KUBE-EXT-LOCAL -m comment --comment "masquerade LOCAL traffic for default/local:http external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
-A KUBE-EXT-LOCAL -m comment --comment "route LOCAL traffic for default/local:http external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-LOCAL
-A KUBE-EXT-LOCAL -j KUBE-SVL-LOCAL
-A KUBE-EXT-NOLOCAL -s 10.244.0.0/16 -m comment --comment "pod traffic for default/nolocal:http external destinations" -j KUBE-SVC-NOLOCAL
-A KUBE-EXT-NOLOCAL -m comment --comment "masquerade LOCAL traffic for default/nolocal:http external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
-A KUBE-EXT-NOLOCAL -m comment --comment "route LOCAL traffic for default/nolocal:http external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-NOLOCAL
-A KUBE-EXT-WEB -m comment --comment "masquerade traffic for default/web:http external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-WEB -j KUBE-SVC-WEB
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-NODEPORTS -d 127.0.0.0/8 -p tcp -m comment --comment "default/web:http" -m tcp --dport 30080 -m nfacct --nfacct-name  localhost_nps_accepted_pkts -j KUBE-EXT-WEB
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web:http" -m tcp --dport 30080 -j KUBE-EXT-WEB
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/local:http" -m tcp --dport 30020 -j KUBE-EXT-LOCAL
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/nolocal:http" -m tcp --dport 30040 -j KUBE-EXT-NOLOCAL
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SEP-A -s 10.244.1.5/32 -m comment --comment "default/web:http" -j KUBE-MARK-MASQ
-A KUBE-SEP-A -p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination 10.244.1.5:8080
-A KUBE-SEP-B -s 10.244.2.6/32 -m comment --comment "default/web:http" -j KUBE-MARK-MASQ
-A KUBE-SEP-B -p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination 10.244.2.6:8080
-A KUBE-SEP-C -s 10.244.3.7/32 -m comment --comment "default/web:http" -j KUBE-MARK-MASQ
-A KUBE-SEP-C -p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination 10.244.3.7:8080
-A KUBE-SEP-H -s 192.168.0.10/32 -m comment --comment "default/hostnet:https" -j KUBE-MARK-MASQ
-A KUBE-SEP-H -p tcp -m comment --comment "default/hostnet:https" -m tcp -j DNAT --to-destination 192.168.0.10:10250
-A KUBE-SEP-L1 -s 10.244.1.8/32 -m comment --comment "default/local:http" -j KUBE-MARK-MASQ
-A KUBE-SEP-L1 -p tcp -m comment --comment "default/local:http" -m tcp -j DNAT --to-destination 10.244.1.8:8080
-A KUBE-SEP-L2 -s 10.244.2.9/32 -m comment --comment "default/local:http" -j KUBE-MARK-MASQ
-A KUBE-SEP-L2 -p tcp -m comment --comment "default/local:http" -m tcp -j DNAT --to-destination 10.244.2.9:8080
-A KUBE-SEP-N1 -s 10.244.2.12/32 -m comment --comment "default/nolocal:http" -j KUBE-MARK-MASQ
-A KUBE-SEP-N1 -p tcp -m comment --comment "default/nolocal:http" -m tcp -j DNAT --to-destination 10.244.2.12:80
-A KUBE-SEP-S1 -s 10.244.1.10/32 -m comment --comment "default/sticky:https" -j KUBE-MARK-MASQ
-A KUBE-SEP-S1 -p tcp -m comment --comment "default/sticky:https" -m recent --set --name KUBE-SEP-S1 --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 10.244.1.10:8443
-A KUBE-SEP-S2 -s 10.244.2.11/32 -m comment --comment "default/sticky:https" -j KUBE-MARK-MASQ
-A KUBE-SEP-S2 -p tcp -m comment --comment "default/sticky:https" -m recent --set --name KUBE-SEP-S2 --mask 255.255.255.255 --rsource -m tcp -j DNAT --to-destination 10.244.2.11:8443
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-WEB
-A KUBE-SERVICES -d 10.96.0.20/32 -p tcp -m comment --comment "default/local:http cluster IP" -m tcp --dport 8080 -j KUBE-SVC-LOCAL
-A KUBE-SERVICES -d 10.96.0.30/32 -p tcp -m comment --comment "default/sticky:https cluster IP" -m tcp --dport 443 -j KUBE-SVC-STICKY
-A KUBE-SERVICES -d 10.96.0.40/32 -p tcp -m comment --comment "default/nolocal:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-NOLOCAL
-A KUBE-SERVICES -d 10.96.0.50/32 -p tcp -m comment --comment "default/hostnet:https cluster IP" -m tcp --dport 443 -j KUBE-SVC-HOSTNET
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-HOSTNET ! -s 10.244.0.0/16 -d 10.96.0.50/32 -p tcp -m comment --comment "default/hostnet:https cluster IP" -m tcp --dport 443 -j KUBE-MARK-MASQ
-A KUBE-SVC-HOSTNET -m comment --comment "default/hostnet:https -> 192.168.0.10:10250" -j KUBE-SEP-H
-A KUBE-SVC-LOCAL ! -s 10.244.0.0/16 -d 10.96.0.20/32 -p tcp -m comment --comment "default/local:http cluster IP" -m tcp --dport 8080 -j KUBE-MARK-MASQ
-A KUBE-SVC-LOCAL -m comment --comment "default/local:http -> 10.244.1.8:8080" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-L1
-A KUBE-SVC-LOCAL -m comment --comment "default/local:http -> 10.244.2.9:8080" -j KUBE-SEP-L2
-A KUBE-SVC-NOLOCAL ! -s 10.244.0.0/16 -d 10.96.0.40/32 -p tcp -m comment --comment "default/nolocal:http cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-NOLOCAL -m comment --comment "default/nolocal:http -> 10.244.2.12:80" -j KUBE-SEP-N1
-A KUBE-SVC-STICKY ! -s 10.244.0.0/16 -d 10.96.0.30/32 -p tcp -m comment --comment "default/sticky:https cluster IP" -m tcp --dport 443 -j KUBE-MARK-MASQ
-A KUBE-SVC-STICKY -m comment --comment "default/sticky:https -> 10.244.1.10:8443" -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-S1 --mask 255.255.255.255 --rsource -j KUBE-SEP-S1
-A KUBE-SVC-STICKY -m comment --comment "default/sticky:https -> 10.244.2.11:8443" -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-S2 --mask 255.255.255.255 --rsource -j KUBE-SEP-S2
-A KUBE-SVC-STICKY -m comment --comment "default/sticky:https -> 10.244.1.10:8443" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-S1
-A KUBE-SVC-STICKY -m comment --comment "default/sticky:https -> 10.244.2.11:8443" -j KUBE-SEP-S2
-A KUBE-SVC-WEB ! -s 10.244.0.0/16 -d 10.96.0.10/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-WEB -m comment --comment "default/web:http -> 10.244.1.5:8080" -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-A
-A KUBE-SVC-WEB -m comment --comment "default/web:http -> 10.244.2.6:8080" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-B
-A KUBE-SVC-WEB -m comment --comment "default/web:http -> 10.244.3.7:8080" -j KUBE-SEP-C
-A KUBE-SVL-LOCAL -m comment --comment "default/local:http -> 10.244.1.8:8080" -j KUBE-SEP-L1
COMMIT
"""  # noqa: E501 - iptables-save lines are as long as they are
RULES = parse_save(KUBE_PROXY_SAVE)
POD = "10.244.1.20"  # a client Pod on this node
EXTERNAL = "203.0.113.7"


def run(
    src: str,
    dst: str,
    dport: int,
    origin: str = "pod",
    draws: tuple[int, ...] = (),
    recent: RecentTable | None = None,
    now_s: float = 0.0,
) -> Trace:
    packet = Packet(src, dst, "tcp", dport, origin=origin)  # type: ignore[arg-type]
    return trace(RULES, packet, NETWORK, draw=iter(draws), recent=recent, now_s=now_s)


def chains_entered(result: Trace) -> list[tuple[str, str, str]]:
    seen: list[tuple[str, str, str]] = []
    for step in result.steps:
        key = (step.hook, step.table, step.chain)
        if step.kind == "rule" and key not in seen:
            seen.append(key)
    return seen


@pytest.mark.parametrize(
    ("draws", "endpoint"),
    [
        ((0,), "10.244.1.5"),
        ((T3 - 1,), "10.244.1.5"),  # just below the stored threshold 715827883
        ((T3, 0), "10.244.2.6"),  # exactly the threshold does not match
        ((T3, T2 - 1), "10.244.2.6"),
        ((T3, T2), "10.244.3.7"),
        ((TOP, TOP), "10.244.3.7"),
    ],
)
def test_cluster_ip_dnat_follows_the_draws(draws: tuple[int, ...], endpoint: str) -> None:
    result = run(POD, "10.96.0.10", 80, draws=draws)
    assert result.verdict is VerdictKind.ACCEPT
    assert result.dnat == (endpoint, 8080)
    assert result.outcome.destination == (endpoint, 8080)
    assert not result.masquerade  # a Pod source inside the cluster CIDR keeps its address
    assert result.mark == 0


def test_statistic_draws_only_when_reached() -> None:
    calls: list[int] = []

    def draw() -> int:
        calls.append(0)
        return 0

    run_packet = Packet(POD, "10.96.0.10", "tcp", 80)
    trace(RULES, run_packet, NETWORK, draw=draw)
    assert len(calls) == 1  # the first statistic rule matched; the second was never reached
    result = run(POD, "10.96.0.20", 8080, draws=(0,))
    assert result.dnat == ("10.244.1.8", 8080)


def test_draw_source_running_out_is_an_error() -> None:
    with pytest.raises(TraceError, match="ran out"):
        run(POD, "10.96.0.10", 80, draws=(T3,))


def test_host_traffic_to_cluster_ip_is_masqueraded() -> None:
    result = run(NODE_IP, "10.96.0.10", 80, origin="host", draws=(0,))
    assert result.dnat == ("10.244.1.5", 8080)
    assert result.masquerade
    assert result.mark == 0  # KUBE-POSTROUTING clears the bit before MASQUERADE
    assert ("OUTPUT", "nat", "KUBE-SVC-WEB") in chains_entered(result)
    assert ("POSTROUTING", "nat", "KUBE-POSTROUTING") in chains_entered(result)


def test_no_endpoints_rejects_in_filter_forward() -> None:
    result = run(POD, "10.96.0.99", 80)
    assert result.verdict is VerdictKind.REJECT
    assert result.outcome.reject_with == "icmp-port-unreachable"
    assert result.dnat is None
    last = result.steps[-1]
    assert (last.hook, last.table, last.chain) == ("FORWARD", "filter", "KUBE-SERVICES")
    assert "has no endpoints" in last.rule
    nat_matches = [s for s in result.steps if s.table == "nat" and s.matched and s.kind == "rule"]
    assert [s.chain for s in nat_matches] == ["PREROUTING"]  # only the jump to KUBE-SERVICES


def test_no_endpoints_rejects_host_traffic_in_filter_output() -> None:
    result = run(NODE_IP, "10.96.0.99", 80, origin="host")
    assert result.verdict is VerdictKind.REJECT
    assert (result.steps[-1].hook, result.steps[-1].table) == ("OUTPUT", "filter")


def test_hairpin_is_masqueraded() -> None:
    result = run("10.244.1.5", "10.96.0.10", 80, draws=(0,))
    assert result.dnat == ("10.244.1.5", 8080)
    assert result.masquerade
    marks = [s.action for s in result.steps if s.action.startswith("mark")]
    assert marks == ["mark 0x4000", "mark 0x0"]


def test_other_pod_of_the_service_is_not_masqueraded() -> None:
    result = run("10.244.1.5", "10.96.0.10", 80, draws=(T3, 0))
    assert result.dnat == ("10.244.2.6", 8080)
    assert not result.masquerade


def test_external_nodeport_via_addrtype_local() -> None:
    result = run(EXTERNAL, NODE_IP, 30080, origin="external", draws=(T3, T2))
    assert result.verdict is VerdictKind.ACCEPT
    assert result.dnat == ("10.244.3.7", 8080)
    assert result.masquerade
    chains = [c for _, table, c in chains_entered(result) if table == "nat"]
    assert chains[:4] == ["PREROUTING", "KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-EXT-WEB"]


def test_nodeport_on_a_foreign_address_is_not_dnated() -> None:
    result = run(EXTERNAL, "198.51.100.1", 30080, origin="external")
    assert result.verdict is VerdictKind.ACCEPT
    assert result.dnat is None
    assert not result.outcome.local


def test_localhost_nodeport_from_the_host() -> None:
    result = run("127.0.0.1", "127.0.0.1", 30080, origin="host", draws=(0,))
    assert result.dnat == ("10.244.1.5", 8080)
    assert result.masquerade
    nodeport_rule = next(s for s in result.steps if s.chain == "KUBE-NODEPORTS" and s.matched)
    assert nodeport_rule.rule_number == 1  # the 127.0.0.0/8 + nfacct rule


def test_etp_local_external_goes_to_local_endpoint_without_masquerade() -> None:
    result = run(EXTERNAL, NODE_IP, 30020, origin="external")
    assert result.dnat == ("10.244.1.8", 8080)
    assert not result.masquerade  # the client source address is preserved


@pytest.mark.parametrize(
    ("src", "origin", "draws", "endpoint", "masquerade"),
    [
        (POD, "pod", (T2,), "10.244.2.9", False),  # pod traffic short-circuits to KUBE-SVC
        (NODE_IP, "host", (T2,), "10.244.2.9", True),  # LOCAL source: masquerade + KUBE-SVC
        (NODE_IP, "host", (0,), "10.244.1.8", True),
    ],
)
def test_etp_local_short_circuits_pods_and_the_node(
    src: str, origin: str, draws: tuple[int, ...], endpoint: str, masquerade: bool
) -> None:
    result = run(src, NODE_IP, 30020, origin=origin, draws=draws)
    assert result.dnat == (endpoint, 8080)
    assert result.masquerade is masquerade
    assert not any(c == "KUBE-SVL-LOCAL" for _, _, c in chains_entered(result))


def test_etp_local_without_local_endpoints_drops_external_traffic() -> None:
    result = run(EXTERNAL, NODE_IP, 30040, origin="external")
    assert result.verdict is VerdictKind.DROP
    last = result.steps[-1]
    assert (last.hook, last.chain) == ("INPUT", "KUBE-EXTERNAL-SERVICES")
    assert "has no local endpoints" in last.rule


def test_external_nodeport_without_endpoints_is_rejected_in_input() -> None:
    result = run(EXTERNAL, NODE_IP, 30099, origin="external")
    assert result.verdict is VerdictKind.REJECT
    assert result.steps[-1].hook == "INPUT"


def test_service_on_the_node_itself_goes_through_input() -> None:
    result = run(POD, "10.96.0.50", 443)
    assert result.dnat == (NODE_IP, 10250)
    assert result.outcome.local
    hooks = {s.hook for s in result.steps}
    assert "INPUT" in hooks and "FORWARD" not in hooks and "POSTROUTING" not in hooks
    assert any(s.kind == "route" and "INPUT" in s.action for s in result.steps)


def test_host_to_own_address_comes_back_through_input() -> None:
    result = run(NODE_IP, NODE_IP, 22, origin="host")
    assert result.verdict is VerdictKind.ACCEPT and result.outcome.local
    assert [s.hook for s in result.steps if s.kind == "policy"][-1] == "INPUT"


def test_martian_localnet_from_outside_is_dropped() -> None:
    result = run(EXTERNAL, "127.0.0.1", 9999, origin="external")
    assert result.verdict is VerdictKind.DROP
    assert result.steps[-1].chain == "KUBE-FIREWALL"


def test_affinity_sticks_within_timeout_and_redraws_after() -> None:
    recent = RecentTable()
    first = run(POD, "10.96.0.30", 443, draws=(0,), recent=recent, now_s=0.0)
    assert first.dnat == ("10.244.1.10", 8443)
    assert first.outcome.recent_sets == (("KUBE-SEP-S1", POD),)
    # No draws available: a second connection must be decided by the recent list alone.
    second = run(POD, "10.96.0.30", 443, recent=recent, now_s=100.0)
    assert second.dnat == ("10.244.1.10", 8443)
    hit = next(s for s in second.steps if s.matched and "rcheck" in s.rule)
    assert "hit" in hit.detail
    # Exactly the timeout after the last connection still counts (xt_recent is inclusive).
    third = run(POD, "10.96.0.30", 443, recent=recent, now_s=100.0 + 10800)
    assert third.dnat == ("10.244.1.10", 8443)
    later = 100.0 + 2 * 10800 + 0.5
    fourth = run(POD, "10.96.0.30", 443, draws=(TOP,), recent=recent, now_s=later)
    assert fourth.dnat == ("10.244.2.11", 8443)
    assert recent.entries("KUBE-SEP-S1") == ()  # the stale entry was reaped
    assert [e.address for e in recent.entries("KUBE-SEP-S2")] == [POD]


def test_affinity_is_per_source() -> None:
    recent = RecentTable()
    run(POD, "10.96.0.30", 443, draws=(0,), recent=recent)
    other = run("10.244.1.21", "10.96.0.30", 443, draws=(TOP,), recent=recent, now_s=1.0)
    assert other.dnat == ("10.244.2.11", 8443)


def test_format_reads_like_a_troubleshooting_walk() -> None:
    text = run(POD, "10.96.0.10", 80, draws=(T3, 0)).format()
    assert text.splitlines()[0] == f"tcp {POD}:32768 -> 10.96.0.10:80 from pod"
    for expected in (
        "PREROUTING / nat",
        "KUBE-SVC-WEB",
        f"draw {T3} >= {T3}",
        "jump KUBE-SEP-B",
        "DNAT 10.244.2.6:8080",
        "routing: 10.244.2.6 is not local -> FORWARD via eth0",
        "rule not matched",
        "verdict: ACCEPT: forwarded to 10.244.2.6:8080 (DNAT), mark 0x0",
    ):
        assert expected in text, expected
    verbose = run(POD, "10.96.0.10", 80, draws=(T3, 0)).format(verbose=True)
    assert "not matched)" not in verbose and "-- no match" in verbose


# --- semantics on small hand-written rulesets ------------------------------------------------


def small(filter_rules: str, nat_rules: str = "", mangle_rules: str = "") -> Callable[..., Trace]:
    text = f"*filter\n{filter_rules}\nCOMMIT\n*nat\n{nat_rules}\nCOMMIT\n"
    if mangle_rules:
        text += f"*mangle\n{mangle_rules}\nCOMMIT\n"
    ruleset = parse_save(text)

    def go(src: str = POD, dst: str = "10.244.2.6", dport: int = 80, **kw: object) -> Trace:
        packet = Packet(src, dst, "tcp", dport)
        return trace(ruleset, packet, NETWORK, **kw)  # type: ignore[arg-type]

    return go


def test_goto_returns_to_the_caller_of_the_chain_that_jumped() -> None:
    go = small(
        "-A FORWARD -j A\n-A FORWARD -j MARK --or-mark 0x1\n"
        "-A A -g B\n-A A -j MARK --or-mark 0x2\n-A B -j MARK --or-mark 0x4"
    )
    assert go().mark == 0x5


def test_return_and_rules_without_target() -> None:
    go = small(
        "-A FORWARD -j A\n-A FORWARD -j MARK --or-mark 0x1\n-A FORWARD -j RETURN\n"
        "-A FORWARD -j MARK --or-mark 0x8\n"
        "-A A -m comment --comment counting-only\n-A A -j RETURN\n-A A -j MARK --or-mark 0x2"
    )
    result = go()
    assert result.mark == 0x1
    assert result.steps[-1].kind == "policy"


@pytest.mark.parametrize(
    ("filter_rules", "verdict"),
    [
        (":FORWARD DROP [0:0]", VerdictKind.DROP),
        (":FORWARD DROP [0:0]\n-A FORWARD -d 10.244.2.6/32 -j ACCEPT", VerdictKind.ACCEPT),
        ("-A FORWARD -p tcp -m tcp --dport 80 -j DROP", VerdictKind.DROP),
        ("-A FORWARD -p tcp -m tcp --dport 81 -j DROP", VerdictKind.ACCEPT),
        ("-A FORWARD -j REJECT --reject-with tcp-reset", VerdictKind.REJECT),
    ],
)
def test_drop_and_policies(filter_rules: str, verdict: VerdictKind) -> None:
    assert small(filter_rules)().verdict is verdict


def test_accept_ends_only_the_table() -> None:
    go = small("-A FORWARD -j DROP", mangle_rules="-A FORWARD -j ACCEPT")
    result = go()
    assert result.verdict is VerdictKind.DROP
    assert [s.table for s in result.steps if s.hook == "FORWARD"] == ["mangle", "filter"]


def test_dnat_sets_ctstate_dnat_and_interfaces_are_matched() -> None:
    go = small(
        "-A FORWARD -m conntrack --ctstate DNAT -j MARK --or-mark 0x1\n"
        "-A FORWARD -i veth0 -o veth0 -j MARK --or-mark 0x2\n"
        "-A FORWARD ! -i veth+ -j MARK --or-mark 0x4",
        "-A PREROUTING -d 10.96.0.1/32 -p tcp -j DNAT --to-destination 10.244.1.9:8080\n"
        "-A POSTROUTING -o eth0 -j MASQUERADE",
    )
    to_local_pod = go(dst="10.96.0.1")
    assert to_local_pod.mark == 0x3 and not to_local_pod.masquerade
    direct = go(dst="10.244.2.6")
    assert direct.mark == 0 and direct.masquerade  # leaves via the uplink


def test_extensions_short_circuit_in_order() -> None:
    go = small(
        "-A FORWARD -m mark --mark 0x1 -m statistic --mode random --probability 0.5 -j DROP\n"
        "-A FORWARD -s 10.9.9.9/32 -m statistic --mode random --probability 0.5 -j DROP\n"
        "-A FORWARD -m statistic --mode random ! --probability 0.5 -m mark --mark 0x1 -j DROP"
    )
    calls: list[int] = []

    def draw() -> int:
        calls.append(T2)
        return T2  # not below 0.5: the negated match holds

    assert go(draw=draw).verdict is VerdictKind.ACCEPT
    assert len(calls) == 1  # only the third rule reached its statistic match


def test_rulesets_the_kernel_would_refuse() -> None:
    with pytest.raises(TraceError, match="missing chain"):
        small("-A FORWARD -j NOWHERE")()
    with pytest.raises(TraceError, match="loop"):
        small("-A FORWARD -j A\n-A A -j B\n-A B -j A")()
    with pytest.raises(TraceError, match="no draw source"):
        small("-A FORWARD -m statistic --mode random --probability 0.5 -j DROP")()
    with pytest.raises(TraceError, match="outside"):
        small("-A FORWARD -m statistic --mode random --probability 0.5 -j DROP")(
            draw=iter([1 << 31])
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"protocol": "icmp"},
        {"origin": "space"},
        {"dport": 70000},
        {"dst": "fd00::1"},
    ],
)
def test_packet_validation(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"src": POD, "dst": "10.96.0.10", "protocol": "tcp", "dport": 80}
    fields.update(kwargs)
    with pytest.raises(ValueError):
        Packet(**fields)  # type: ignore[arg-type]


def test_draws_from_generator_is_reproducible_and_31_bit() -> None:
    a = draws_from(np.random.default_rng(7), block=4)
    b = draws_from(np.random.default_rng(7), block=4)
    values = [a() for _ in range(10)]
    assert values == [b() for _ in range(10)]
    assert all(0 <= v < (1 << 31) for v in values)
    assert len(set(values)) == 10
