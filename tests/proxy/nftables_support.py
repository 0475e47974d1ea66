# ruff: noqa: E501 -- expected outputs hold verbatim nft lines, which cannot be wrapped.
"""Helpers mirroring kubernetes pkg/proxy/nftables/proxier_test.go and helpers_test.go.

* :func:`nft_fake_context` is ``NewFakeProxier(v1.IPv4Protocol)``'s configuration: node
  test-node, nodeIP 192.168.0.2, pod CIDR 10.0.0.0/8 as the local detector,
  ``nodePortAddresses`` 192.168.0.2/32; the Service CIDR 172.30.0.0/16 is :data:`FAKE_SERVICE_CIDRS`.
* :func:`sort_nftables_transaction` re-implements helpers_test.go's
  ``sortNFTablesTransaction``: blank and ``#`` lines dropped, lines ordered by object type,
  then object name; rules keep their order, other lines of one object sort by the whole line.
  ``assertNFTablesTransactionEqual`` compares the two sorted texts; so do the tests here.
* :func:`as_fake_proxier_text`: the real binary writes the mark ``0x00004000``
  (``%#08x``); the fake proxier hard-codes ``0x4000``.
"""

from __future__ import annotations

import difflib
from typing import Any

from svcsim.netfilter.interpreter import Trace
from svcsim.netfilter.nft_eval import trace_nft
from svcsim.netfilter.nft_parse import parse_table
from svcsim.netfilter.nftables import NftTable
from svcsim.netfilter.numgen import first_draw
from svcsim.netfilter.packet import NodeNetwork, Origin, Packet, VerdictKind, hostport
from svcsim.proxy.context import NodeContext
from tests.proxy.test_iptables_support import TEST_NODE_IPS, TEST_NODE_NAME, Flow

FAKE_SERVICE_CIDRS = ("172.30.0.0/16",)

_OBJECT_ORDER = {"table": 1, "chain": 2, "set": 3, "map": 4, "rule": 5, "element": 6}


def nft_fake_context(**overrides: Any) -> NodeContext:
    """``NewFakeProxier(v1.IPv4Protocol)`` as a :class:`NodeContext`."""
    values: dict[str, Any] = {
        "node_name": TEST_NODE_NAME,
        "node_ips": TEST_NODE_IPS,
        "local_detector": "ClusterCIDR",
        "local_detector_value": "10.0.0.0/8",
        "node_port_addresses": ("192.168.0.2/32",),
    }
    values.update(overrides)
    return NodeContext(**values)


def as_fake_proxier_text(text: str) -> str:
    """Replace the real mark spelling with the fake proxier's ``masqueradeMark: "0x4000"``."""
    return text.replace("0x00004000", "0x4000")


def sort_nftables_transaction(text: str) -> str:
    """``sortNFTablesTransaction``: a canonical order for comparing two dumps."""
    lines = [ln.strip() for ln in text.strip().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]

    def key(item: tuple[int, str]) -> tuple[int, str, int, str]:
        index, line = item
        words = line.split()
        kind = words[1] if len(words) > 1 else ""
        name = words[4] if len(words) > 4 else ""
        if kind == "rule":
            return (_OBJECT_ORDER.get(kind, 0), name, index, "")
        return (_OBJECT_ORDER.get(kind, 0), name, 0, line)

    return "\n".join(line for _, line in sorted(enumerate(lines), key=key))


def assert_nftables_equal(expected: str, actual: str) -> None:
    """Assert two transactions are equal after sorting; on failure show a unified diff."""
    want = sort_nftables_transaction(expected)
    got = sort_nftables_transaction(as_fake_proxier_text(actual))
    if want != got:
        diff = "\n".join(
            difflib.unified_diff(
                want.splitlines(), got.splitlines(), "upstream", "svcsim", lineterm=""
            )
        )
        raise AssertionError(f"nftables dumps differ:\n{diff}")


BASE_RULES = """
add table ip kube-proxy { comment "rules for kube-proxy" ; }

add chain ip kube-proxy cluster-ips-check
add chain ip kube-proxy filter-prerouting { type filter hook prerouting priority -110 ; }
add chain ip kube-proxy filter-forward { type filter hook forward priority -110 ; }
add chain ip kube-proxy filter-input { type filter hook input priority -110 ; }
add chain ip kube-proxy filter-output { type filter hook output priority -110 ; }
add chain ip kube-proxy filter-output-post-dnat { type filter hook output priority -90 ; }
add chain ip kube-proxy firewall-check
add chain ip kube-proxy mark-for-masquerade
add chain ip kube-proxy masquerading
add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }
add chain ip kube-proxy nat-postrouting { type nat hook postrouting priority 100 ; }
add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }
add chain ip kube-proxy nodeport-endpoints-check
add chain ip kube-proxy reject-chain { comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }
add chain ip kube-proxy services
add chain ip kube-proxy service-endpoints-check

add rule ip kube-proxy cluster-ips-check ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"
add rule ip kube-proxy cluster-ips-check ip daddr { 172.30.0.0/16 } drop comment "Drop traffic to unallocated ClusterIPs"
add rule ip kube-proxy filter-prerouting ct state new jump firewall-check
add rule ip kube-proxy filter-forward ct state new jump service-endpoints-check
add rule ip kube-proxy filter-forward ct state new jump cluster-ips-check
add rule ip kube-proxy filter-input ct state new jump nodeport-endpoints-check
add rule ip kube-proxy filter-input ct state new jump service-endpoints-check
add rule ip kube-proxy filter-output ct state new jump service-endpoints-check
add rule ip kube-proxy filter-output ct state new jump firewall-check
add rule ip kube-proxy filter-output-post-dnat ct state new jump cluster-ips-check
add rule ip kube-proxy firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips
add rule ip kube-proxy mark-for-masquerade mark set mark or 0x4000
add rule ip kube-proxy masquerading mark and 0x4000 == 0 return
add rule ip kube-proxy masquerading mark set mark xor 0x4000
add rule ip kube-proxy masquerading masquerade fully-random
add rule ip kube-proxy nat-output jump services
add rule ip kube-proxy nat-postrouting jump masquerading
add rule ip kube-proxy nat-prerouting jump services
add rule ip kube-proxy nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports
add rule ip kube-proxy reject-chain reject
add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips
add rule ip kube-proxy services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
add rule ip kube-proxy service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services

add set ip kube-proxy cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }
add set ip kube-proxy nodeport-ips { type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }

add map ip kube-proxy firewall-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "destinations that are subject to LoadBalancerSourceRanges" ; }
add map ip kube-proxy no-endpoint-nodeports { type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }
add map ip kube-proxy no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }
add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }
add map ip kube-proxy service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }

add element ip kube-proxy nodeport-ips { 192.168.0.2 }
"""
"""``baseRules`` for proxier.go @b0f823e6: upstream's stored proxier_test.go is from a later
commit whose base chains differ (``filter-prerouting-pre-dnat`` ...), so the table/chain/jump
lines here are written from b0f823e6's ``setupNFTables`` (``nftablesBaseChains``,
``nftablesJumpChains``); the other lines are the later test's, unchanged."""


# --- runPacketFlowTests over the nf_tables evaluator ---------------------------------------

PROBE_MODULI = range(1, 9)
"""Every endpoint of a numgen with up to this many choices is reached by :data:`PROBE_DRAWS`."""
PROBE_DRAWS = sorted({first_draw(k, n) for n in PROBE_MODULI for k in range(n)})
"""One 32-bit draw per (N, k): the smallest r numgen maps to k (``ceil(k * 2^32 / N)``)."""


def _origin(src: str, node_ips: tuple[str, ...]) -> Origin:
    """Upstream's tracer tells node traffic by ``fib saddr type local``; pods by 10.0.0.0/8."""
    if src in node_ips or src.startswith("127."):
        return "host"
    return "pod" if src.startswith("10.") else "external"


def flow_paths(
    table: NftTable, flow: Flow, node_ips: tuple[str, ...] = TEST_NODE_IPS
) -> list[Trace]:
    """The flow's walk once per probe draw (each numgen choice is taken by some probe)."""
    parsed = parse_table(table)
    packet = Packet(flow.src, flow.dst, flow.proto, flow.dport, origin=_origin(flow.src, node_ips))
    network = NodeNetwork(node_ips=node_ips)
    return [trace_nft(parsed, packet, network, draw=lambda r=r: r) for r in PROBE_DRAWS]


def flow_result(traces: list[Trace]) -> tuple[str, bool]:
    """``tracePacket``'s (output, masq): endpoints reached joined by ", ", or DROP/REJECT."""
    outputs: list[str] = []
    masq = False
    for trace in traces:
        outcome = trace.outcome
        if outcome.verdict is not VerdictKind.ACCEPT:
            text = outcome.verdict.value
        elif outcome.dnat is not None:
            text = hostport(*outcome.dnat)
        else:
            text = ""
        masq = masq or outcome.masquerade
        if text not in outputs:
            outputs.append(text)
    return ", ".join(sorted(o for o in outputs)), masq


def assert_nft_flows(table: NftTable, flows: list[Flow]) -> None:
    """``runPacketFlowTests``: each flow's output and masquerade flag; failures show the trace."""
    failures = []
    for flow in flows:
        traces = flow_paths(table, flow)
        output, masq = flow_result(traces)
        if output != flow.output or masq != flow.masq:
            failures.append(
                f"{flow.name}: {flow.proto} {flow.src} -> {flow.dst}:{flow.dport} gave "
                f"{output!r} masq {masq} (want {flow.output!r} masq {flow.masq}); first walk:\n"
                + traces[0].format()
            )
    assert not failures, "\n\n".join(failures)
