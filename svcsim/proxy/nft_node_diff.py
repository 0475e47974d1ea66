"""A nftables-mode node's ``ip kube-proxy`` table against what kube-proxy should have written.

The same comparison as :mod:`svcsim.proxy.node_diff` does for iptables nodes, on nf_tables:
each Service port's frontends are probed (cluster IP from a local Pod and from the host,
NodePort, external and load-balancer IPs from outside) through both tables, every way
through each table is enumerated with its exact probability (:mod:`svcsim.netfilter.nft_index`:
numgen's k/2^32 shares; a client not yet in an affinity set), and what differs is said in the
same words: stale and missing endpoints, Services without rules, verdicts, probability,
masquerade.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from fractions import Fraction

from svcsim.k8s.objects import Service
from svcsim.netfilter.nft_index import MemberQuery, build_nft_dispatch
from svcsim.netfilter.nft_statements import ParsedTable
from svcsim.netfilter.packet import NodeNetwork, Packet
from svcsim.proxy.node_diff import NodeDiff, ServiceDiff, _differences, _Key, _probes, _unique
from svcsim.proxy.node_findings import Finding


def _distribution(table: ParsedTable, packet: Packet, network: NodeNetwork) -> dict[_Key, Fraction]:
    """Probability of each (verdict, endpoint, masquerade) for a new client (no affinity yet)."""
    dispatch = build_nft_dispatch(table, packet, network)
    dist: dict[_Key, Fraction] = defaultdict(Fraction)
    for path in dispatch.paths:
        if any(isinstance(q, MemberQuery) and answer for q, answer in path.answers):
            continue  # the client is in an affinity set: not a new client's path
        outcome = dispatch.outcomes[path.outcome]
        endpoint = f"{outcome.dnat[0]}:{outcome.dnat[1]}" if outcome.dnat else None
        dist[outcome.verdict.value, endpoint, outcome.masquerade] += path.probability()
    return dict(dist)


def diff_nft_node(
    services: Sequence[Service],
    expected: ParsedTable,
    node: ParsedTable,
    network: NodeNetwork,
    *,
    pod_source: str | None,
) -> NodeDiff:
    """Compare the node's table with ``expected`` (compiled for the same node), per Service port."""
    results: list[ServiceDiff] = []
    for service in services:
        if service.cluster_ip in ("", "None") or service.type.value == "ExternalName":
            continue
        for port in service.ports:
            name = f"{service.meta.namespace}/{service.meta.name}:{port.name or port.port}"
            probes = _probes(
                service, port.port, port.node_port, port.protocol.value.lower(), network, pod_source
            )
            findings: list[Finding] = []
            for probe in probes:
                want = _distribution(expected, probe.packet, network)
                have = _distribution(node, probe.packet, network)
                findings += _differences(probe, want, have, [], None)
            frontends = tuple(dict.fromkeys(p.frontend for p in probes))
            results.append(ServiceDiff(name, frontends, tuple(_unique(findings))))
    notes = (
        ()
        if pod_source is not None
        else ("no Pod on the node: traffic from local Pods was not compared",)
    )
    return NodeDiff(tuple(results), (), notes)
