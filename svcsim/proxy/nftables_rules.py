"""kube-proxy's nftables-mode rule writing: the fixed part and each service port's objects.

``setupNFTables`` (:func:`write_setup`) and ``syncProxyRules``' per-port body with
``writeServiceToEndpointRules`` (:func:`write_service_port`), modelled on kubernetes
``pkg/proxy/nftables/proxier.go`` @b0f823e6. :mod:`svcsim.proxy.nftables` assembles a table
from these parts.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from svcsim.netfilter.nftables import NftChain, NftElement, NftRule, NftSet
from svcsim.proxy.context import NodeContext
from svcsim.proxy.endpoints import (
    EndpointInfo,
    ServicePortInfo,
)
from svcsim.proxy.flags import UNSUPPORTED_NFT_DETECTORS
from svcsim.proxy.nftables_names import (
    BASE_CHAINS,
    CLUSTER_IPS_CHECK_CHAIN,
    CLUSTER_IPS_SET,
    FIREWALL_CHECK_CHAIN,
    FIREWALL_IPS_MAP,
    JUMP_CHAINS,
    MARK_MASQ_CHAIN,
    MASQUERADING_CHAIN,
    NO_ENDPOINT_NODEPORTS_MAP,
    NO_ENDPOINT_SERVICES_MAP,
    NO_LOCALHOST,
    NODEPORT_ENDPOINTS_CHECK_CHAIN,
    NODEPORT_IPS_SET,
    NODEPORT_TYPE,
    REJECT_CHAIN,
    SERVICE_ADDR_TYPE,
    SERVICE_ENDPOINTS_CHECK_CHAIN,
    SERVICE_IPS_MAP,
    SERVICE_NODEPORTS_MAP,
    SERVICES_CHAIN,
    endpoint_chain_base,
    hash_and_truncate,
    service_chain_base,
)
from svcsim.proxy.topology import categorize_endpoints_shared


class UnsupportedContextError(ValueError):
    """The node context asks for something this nftables model does not cover."""


@dataclass(slots=True)
class Builder:
    """The objects of one transaction, in the order kube-proxy adds them."""

    chains: dict[str, NftChain] = field(default_factory=dict)
    sets: dict[str, NftSet] = field(default_factory=dict)
    rules: list[NftRule] = field(default_factory=list)
    elements: dict[tuple[str, tuple[str, ...]], NftElement] = field(default_factory=dict)
    hashed: Callable[[str], str] = hash_and_truncate
    """``hashAndTruncate`` (or a run's :class:`~svcsim.proxy.nftables.NameMemo` of it)."""

    def chain(self, name: str, comment: str | None = None) -> None:
        """Add chain ``name`` unless it is there (the first one added stays)."""
        self.chains.setdefault(name, NftChain(name, comment=comment))

    def rule(self, chain: str, rule: str, comment: str | None = None) -> None:
        """Add a rule to ``chain``."""
        self.rules.append(NftRule(chain, rule, comment))

    def element(
        self,
        container: str,
        key: Sequence[str],
        value: Sequence[str] = (),
        comment: str | None = None,
    ) -> None:
        """Add an element to a set or map.

        Adding an element whose key is present replaces it (nft and the fake agree).
        """
        self.elements[(container, tuple(key))] = NftElement(
            container, tuple(key), tuple(value), comment
        )


def _if_local(ctx: NodeContext) -> str:
    """``IfLocalNFT``; only the CIDR detectors are modelled."""
    return f"ip saddr {ctx.local_detector_value}"


def _if_not_local(ctx: NodeContext) -> str:
    """``IfNotLocalNFT``."""
    return f"ip saddr != {ctx.local_detector_value}"


def check_context(ctx: NodeContext) -> None:
    """Raise :class:`UnsupportedContextError` for settings the nftables model cannot compile."""
    if ctx.local_detector in UNSUPPORTED_NFT_DETECTORS:
        raise UnsupportedContextError(
            f"--detect-local-mode {ctx.local_detector} is not modelled in nftables mode yet "
            "(use ClusterCIDR or NodeCIDR)"
        )


def write_setup(b: Builder, ctx: NodeContext, service_cidrs: Sequence[str]) -> None:
    """``setupNFTables`` on a clean node."""
    mark = ctx.mark
    for chain in BASE_CHAINS:
        b.chains[chain.name] = chain
    for target, source, extra in JUMP_CHAINS:
        b.chain(target)
        b.rule(source, f"{extra} jump {target}".strip())
    for name in (SERVICES_CHAIN, CLUSTER_IPS_CHECK_CHAIN, MASQUERADING_CHAIN, MARK_MASQ_CHAIN):
        b.chain(name)
    b.rule(MARK_MASQ_CHAIN, f"mark set mark or {mark}")
    b.rule(MASQUERADING_CHAIN, f"mark and {mark} == 0 return")
    b.rule(MASQUERADING_CHAIN, f"mark set mark xor {mark}")
    b.rule(MASQUERADING_CHAIN, "masquerade fully-random")
    b.sets[CLUSTER_IPS_SET] = NftSet(CLUSTER_IPS_SET, "ipv4_addr", comment="Active ClusterIPs")
    b.rule(
        CLUSTER_IPS_CHECK_CHAIN,
        f"ip daddr @{CLUSTER_IPS_SET} reject",
        "Reject traffic to invalid ports of ClusterIPs",
    )
    if service_cidrs:
        b.rule(
            CLUSTER_IPS_CHECK_CHAIN,
            f"ip daddr {{ {','.join(service_cidrs)} }} drop",
            "Drop traffic to unallocated ClusterIPs",
        )
    match_all = ctx.nodeport_match_all
    if not match_all:
        b.sets[NODEPORT_IPS_SET] = NftSet(
            NODEPORT_IPS_SET, "ipv4_addr", comment="IPs that accept NodePort traffic"
        )
        for ip in ctx.nodeport_ips():
            # kube-proxy logs "localhost NodePorts are not supported" and skips them.
            if not ip.startswith("127."):
                b.element(NODEPORT_IPS_SET, (ip,))
    b.sets[NO_ENDPOINT_SERVICES_MAP] = NftSet(
        NO_ENDPOINT_SERVICES_MAP,
        SERVICE_ADDR_TYPE,
        is_map=True,
        comment="vmap to drop or reject packets to services with no endpoints",
    )
    b.sets[NO_ENDPOINT_NODEPORTS_MAP] = NftSet(
        NO_ENDPOINT_NODEPORTS_MAP,
        NODEPORT_TYPE,
        is_map=True,
        comment="vmap to drop or reject packets to service nodeports with no endpoints",
    )
    b.chain(REJECT_CHAIN, "helper for @no-endpoint-services / @no-endpoint-nodeports")
    b.rule(REJECT_CHAIN, "reject")
    b.rule(
        SERVICE_ENDPOINTS_CHECK_CHAIN,
        f"ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES_MAP}",
    )
    nodeport_match = NO_LOCALHOST if match_all else f"ip daddr @{NODEPORT_IPS_SET}"
    b.rule(
        NODEPORT_ENDPOINTS_CHECK_CHAIN,
        f"{nodeport_match} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS_MAP}",
    )
    b.sets[FIREWALL_IPS_MAP] = NftSet(
        FIREWALL_IPS_MAP,
        SERVICE_ADDR_TYPE,
        is_map=True,
        comment="destinations that are subject to LoadBalancerSourceRanges",
    )
    b.chain(FIREWALL_CHECK_CHAIN)
    b.rule(FIREWALL_CHECK_CHAIN, f"ip daddr . meta l4proto . th dport vmap @{FIREWALL_IPS_MAP}")
    b.sets[SERVICE_IPS_MAP] = NftSet(
        SERVICE_IPS_MAP,
        SERVICE_ADDR_TYPE,
        is_map=True,
        comment="ClusterIP, ExternalIP and LoadBalancer IP traffic",
    )
    b.sets[SERVICE_NODEPORTS_MAP] = NftSet(
        SERVICE_NODEPORTS_MAP, NODEPORT_TYPE, is_map=True, comment="NodePort traffic"
    )
    b.rule(SERVICES_CHAIN, f"ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS_MAP}")
    dispatch = (
        f"fib daddr type local {NO_LOCALHOST}" if match_all else f"ip daddr @{NODEPORT_IPS_SET}"
    )
    b.rule(SERVICES_CHAIN, f"{dispatch} meta l4proto . th dport vmap @{SERVICE_NODEPORTS_MAP}")


def _service_to_endpoints(
    b: Builder,
    svc: ServicePortInfo,
    chain: str,
    endpoints: Sequence[EndpointInfo],
    bases: Mapping[int, str],
) -> None:
    """``writeServiceToEndpointRules``: affinity lookups, then one numgen vmap.

    ``bases``: each endpoint's chain name base by its ``id`` (see :func:`write_service_port`).
    """
    spn = svc.name
    names = [bases.get(id(ep)) or endpoint_chain_base(spn, ep, b.hashed) for ep in endpoints]
    if svc.client_ip_affinity:
        for base in names:
            b.rule(chain, f"ip saddr @affinity-{base} goto endpoint-{base}")
    choices = " , ".join(f"{i} : goto endpoint-{base}" for i, base in enumerate(names))
    b.rule(chain, f"numgen random mod {len(endpoints)} vmap {{ {choices} }}")


def write_service_port(
    b: Builder, svc: ServicePortInfo, endpoints: tuple[EndpointInfo, ...], ctx: NodeContext
) -> None:
    """The ``syncProxyRules`` loop body for one service port (full sync)."""
    spn = svc.name
    proto = spn.protocol_lower
    port = str(svc.port)
    base = service_chain_base(spn, b.hashed)
    cluster_chain, local_chain = f"service-{base}", f"local-{base}"
    external_chain, firewall_chain = f"external-{base}", f"firewall-{base}"
    cat = categorize_endpoints_shared(
        endpoints, svc, ctx.node_name, ctx.node_zone or "", ctx.prefer_same_traffic_distribution
    )
    has_endpoints = cat.has_any_endpoints
    # Each reachable endpoint's chain name base (endpoint_chain_base), made once, by id (they
    # live through the call).
    head = f"{spn.namespace}/{spn.name}/{proto}/{spn.port}__"
    hashed = b.hashed
    bases = {
        id(ep): hashed(f"{head}{ep.ip.replace(':', '.')}/{ep.port}") for ep in cat.all_reachable
    }
    for ep in cat.all_reachable:
        b.chain(f"endpoint-{bases[id(ep)]}")
    uses_cluster = bool(cat.cluster) and svc.uses_cluster_endpoints
    if uses_cluster:
        b.chain(cluster_chain)
    uses_local = bool(cat.local) and svc.uses_local_endpoints
    if uses_local:
        b.chain(local_chain)
    internal_chain, has_internal = cluster_chain, has_endpoints
    if svc.internal_policy_local:
        internal_chain = local_chain
        has_internal = has_internal and bool(cat.local)
    external_policy_chain, has_external = cluster_chain, has_endpoints
    if svc.external_policy_local:
        external_policy_chain = local_chain
        has_external = has_external and bool(cat.local)
    uses_external = has_endpoints and svc.externally_accessible
    if uses_external:
        b.chain(external_chain)
    if not has_endpoints:
        internal_verdict = external_verdict = f"goto {REJECT_CHAIN}"
    else:
        internal_verdict = "" if has_internal else "drop"
        external_verdict = "" if has_external else "drop"

    comment = spn.text
    b.element(CLUSTER_IPS_SET, (svc.cluster_ip,))
    if has_internal:
        b.element(SERVICE_IPS_MAP, (svc.cluster_ip, proto, port), (f"goto {internal_chain}",))
    else:
        b.element(
            NO_ENDPOINT_SERVICES_MAP, (svc.cluster_ip, proto, port), (internal_verdict,), comment
        )
    for ip in svc.external_ips:
        if has_endpoints:
            b.element(SERVICE_IPS_MAP, (ip, proto, port), (f"goto {external_chain}",))
        if not has_external:
            b.element(NO_ENDPOINT_SERVICES_MAP, (ip, proto, port), (external_verdict,), comment)
    uses_firewall = bool(svc.load_balancer_vips) and bool(svc.load_balancer_source_ranges)
    if uses_firewall:
        b.chain(firewall_chain)
    for ip in svc.load_balancer_vips:
        if has_endpoints:
            b.element(SERVICE_IPS_MAP, (ip, proto, port), (f"goto {external_chain}",))
        if uses_firewall:
            b.element(FIREWALL_IPS_MAP, (ip, proto, port), (f"goto {firewall_chain}",))
    if not has_external:
        for ip in svc.load_balancer_vips:
            b.element(NO_ENDPOINT_SERVICES_MAP, (ip, proto, port), (external_verdict,), comment)
    if svc.node_port:
        node_port = str(svc.node_port)
        if has_endpoints:
            b.element(SERVICE_NODEPORTS_MAP, (proto, node_port), (f"goto {external_chain}",))
        if not has_external:
            b.element(NO_ENDPOINT_NODEPORTS_MAP, (proto, node_port), (external_verdict,), comment)

    if has_internal:
        head = f"ip daddr {svc.cluster_ip} {proto} dport {port}"
        if ctx.masquerade_all:
            b.rule(internal_chain, f"{head} jump {MARK_MASQ_CHAIN}")
        elif ctx.local_detector_implemented:
            b.rule(internal_chain, f"{head} {_if_not_local(ctx)} jump {MARK_MASQ_CHAIN}")
    if uses_external:
        if not svc.external_policy_local:
            b.rule(external_chain, f"jump {MARK_MASQ_CHAIN}")
        else:
            if ctx.local_detector_implemented:
                b.rule(
                    external_chain,
                    f"{_if_local(ctx)} goto {cluster_chain}",
                    "short-circuit pod traffic",
                )
            b.rule(
                external_chain,
                f"fib saddr type local jump {MARK_MASQ_CHAIN}",
                "masquerade local traffic",
            )
            b.rule(
                external_chain,
                f"fib saddr type local goto {cluster_chain}",
                "short-circuit local traffic",
            )
        if has_external:
            b.rule(external_chain, f"goto {external_policy_chain}")
    if uses_firewall:
        sources = list(svc.load_balancer_source_ranges)
        if ctx.node_ip is not None and any(
            _contains(cidr, ctx.node_ip) for cidr in svc.load_balancer_source_ranges
        ):
            sources += svc.load_balancer_vips
        b.rule(firewall_chain, f"ip saddr != {{ {' , '.join(sources)} }} drop")
    if svc.client_ip_affinity:
        for ep in cat.all_reachable:
            name = f"affinity-{bases[id(ep)]}"
            b.sets[name] = NftSet(
                name, "ipv4_addr", flags=("dynamic", "timeout"), timeout_s=svc.sticky_max_age_s
            )
    if uses_cluster:
        _service_to_endpoints(b, svc, cluster_chain, cat.cluster, bases)
    if uses_local:
        _service_to_endpoints(b, svc, local_chain, cat.local, bases)
    for ep in cat.all_reachable:
        ep_base = bases[id(ep)]
        chain = f"endpoint-{ep_base}"
        b.rule(chain, f"ip saddr {ep.ip} jump {MARK_MASQ_CHAIN}")
        if svc.client_ip_affinity:
            b.rule(chain, f"update @affinity-{ep_base} {{ ip saddr }}")
        b.rule(chain, f"meta l4proto {proto} dnat to {ep.text}")


def _contains(cidr: str, ip: str) -> bool:
    return ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(cidr, strict=False)
