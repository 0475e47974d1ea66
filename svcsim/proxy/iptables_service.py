"""The rules kube-proxy (iptables mode) writes for one service port, in the order it writes them.

A line-for-line model of the body of the per-service loop of ``syncProxyRules`` and of
``writeServiceToEndpointRules`` in kubernetes ``pkg/proxy/iptables/proxier.go`` @531be812.
Rules are built as data (:mod:`svcsim.proxy.iptables_rules`): each keeps, as its text, the line
kube-proxy joins into its iptables-restore input (comments therefore carry literal double quotes,
``"ns1/svc1:p80 cluster IP"``, except the bare per-endpoint comment ``ns1/svc1:p80``) and, as its
structure, what the kernel stores for that line.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from typing import NamedTuple

from svcsim.netfilter.model import Rule
from svcsim.proxy.caches import BlockContext, BlockKey, CompileCaches
from svcsim.proxy.context import NodeContext
from svcsim.proxy.endpoints import EndpointInfo, ServicePortInfo
from svcsim.proxy.iptables_rules import (
    NOTHING,
    Part,
    addrtype,
    comment,
    detector,
    dnat_head,
    dnat_rule,
    joined,
    jump,
    matched_jump,
    nfacct,
    protocol_port,
    quoted,
    recent_rcheck,
    recent_set,
    rule,
    source,
    sourced,
    statistic,
    verdict,
)
from svcsim.proxy.names import ServicePortName
from svcsim.proxy.probability import compute_probability
from svcsim.proxy.topology import CategorizedEndpoints

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_PROXY_CANARY = "KUBE-PROXY-CANARY"
KUBE_FIREWALL = "KUBE-FIREWALL"

LOCALHOST_NODEPORT_COUNTER = "localhost_nps_accepted_pkts"
"""nfacct counter name (``metrics.LocalhostNodePortAcceptedNFAcctCounter``)."""
INVALID_DROPPED_COUNTER = "ct_state_invalid_dropped_pkts"
"""nfacct counter name (``metrics.IPTablesCTStateInvalidDroppedNFAcctCounter``)."""

__all__ = [
    "INVALID_DROPPED_COUNTER",
    "KUBE_EXTERNAL_SERVICES",
    "KUBE_FIREWALL",
    "KUBE_FORWARD",
    "KUBE_MARK_MASQ",
    "KUBE_NODEPORTS",
    "KUBE_POSTROUTING",
    "KUBE_PROXY_CANARY",
    "KUBE_PROXY_FIREWALL",
    "KUBE_SERVICES",
    "LOCALHOST_NODEPORT_COUNTER",
    "ChainRule",
    "RestoreBuffers",
    "ServicePortBlock",
    "ServicePortOutcome",
    "quoted",
    "service_port_block",
    "write_service_port",
]

ChainRule = tuple[str, Rule]
"""A rule and the chain it is appended to; its restore line is ``-A chain rule.text``."""


@dataclass(slots=True)
class RestoreBuffers:
    """kube-proxy's four line buffers: filter/nat chain lines and filter/nat rule lines.

    Each rule is kept as ``(chain, rule)``; its restore line is ``-A chain rule.text``.
    """

    filter_chains: list[str] = field(default_factory=list)
    filter_rules: list[ChainRule] = field(default_factory=list)
    nat_chains: list[str] = field(default_factory=list)
    nat_rules: list[ChainRule] = field(default_factory=list)

    def filter(self, chain: str, *parts: Part) -> None:
        """Write a filter rule made of ``parts``."""
        self.filter_rules.append((chain, rule(*parts)))

    def nat(self, chain: str, *parts: Part) -> None:
        """Write a nat rule made of ``parts``."""
        self.nat_rules.append((chain, rule(*parts)))

    def restore_text(self) -> str:
        """The iptables-restore input: ``*filter``, chains, rules, ``COMMIT``, then ``*nat``."""
        lines = ["*filter"]
        lines += [f":{c} - [0:0]" for c in self.filter_chains]
        lines += [f"-A {c} {r.text}" for c, r in self.filter_rules]
        lines += ["COMMIT", "*nat"]
        lines += [f":{c} - [0:0]" for c in self.nat_chains]
        lines += [f"-A {c} {r.text}" for c, r in self.nat_rules]
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class ServicePortOutcome:
    """What one service port contributed, for sync statistics and metrics."""

    no_local_internal: bool
    """Counted in ``sync_proxy_rules_no_local_endpoints_total{traffic_policy="internal"}``."""
    no_local_external: bool
    """Counted in ``sync_proxy_rules_no_local_endpoints_total{traffic_policy="external"}``."""


_TO_MARK_MASQ = jump(KUBE_MARK_MASQ)
"""``-j KUBE-MARK-MASQ``: one part for every rule that writes it (parts are frozen values)."""


@functools.lru_cache(maxsize=1024)
def _draw(remaining: int) -> Part:
    """``-m statistic --mode random --probability P`` taking one in ``remaining``.

    The same few parts serve every Service (a rule of an N-endpoint chain takes 1/(N-i));
    module-level: a pure function of an int, frozen values out, bounded.
    """
    return statistic(compute_probability(remaining))


@functools.lru_cache(maxsize=8)
def _dnat_match(proto: str) -> Part:
    """``-m PROTO -p PROTO``: what a DNAT rule matches before its target (one per protocol).

    Module-level like :func:`_draw`: a pure function of a string, frozen value out, bounded.
    """
    return protocol_port(proto, None)


@functools.lru_cache(maxsize=64)
def _detector(words: tuple[str, ...]) -> Part:
    """:func:`detector` of ``words``: one part for every Service of a node.

    Module-level like :func:`_draw`: a pure function of strings, frozen value out, bounded.
    """
    return detector(words)


def _comment(large_cluster_mode: bool, text: str, *, quote: bool = True) -> Part:
    """``appendServiceCommentLocked``: no comment at all in large-cluster mode."""
    return NOTHING if large_cluster_mode else comment(text, quote=quote)


@dataclass(frozen=True, slots=True)
class _Policy:
    """The chain decisions ``syncProxyRules`` makes for a service port before writing rules."""

    cluster_chain: str
    """The port's KUBE-SVC chain (its name, hashed once here)."""
    local_chain: str
    """Its KUBE-SVL chain."""
    internal_chain: str
    has_internal: bool
    external_policy_chain: str
    has_external: bool
    uses_ext_chain: bool
    uses_fw_chain: bool
    filter_comment: Part
    """The comment of the filter rules refusing the port's traffic (:data:`NOTHING` if it
    has both internal and external endpoints: no such rule is written then)."""
    filter_target: Part
    """Their target (:data:`NOTHING` likewise)."""


def _policy(svc: ServicePortInfo, cat: CategorizedEndpoints) -> _Policy:
    spn = svc.name
    cluster_chain, local_chain = spn.cluster_chain, spn.local_chain
    has_endpoints = cat.has_any_endpoints
    internal_chain, has_internal = cluster_chain, has_endpoints
    if svc.internal_policy_local:
        internal_chain, has_internal = local_chain, has_endpoints and bool(cat.local)
    external_chain, has_external = cluster_chain, has_endpoints
    if svc.external_policy_local:
        external_chain, has_external = local_chain, has_endpoints and bool(cat.local)
    filter_comment = filter_target = NOTHING
    if not (has_internal and has_external):
        if has_endpoints:
            text, target = f"{spn.text} has no local endpoints", "DROP"
        else:
            text, target = f"{spn.text} has no endpoints", "REJECT"
        filter_comment, filter_target = comment(text), verdict(target)
    return _Policy(
        cluster_chain=cluster_chain,
        local_chain=local_chain,
        internal_chain=internal_chain,
        has_internal=has_internal,
        external_policy_chain=external_chain,
        has_external=has_external,
        # Built even without externally-usable endpoints: the short-circuit rules still apply.
        uses_ext_chain=has_endpoints and svc.externally_accessible,
        uses_fw_chain=has_endpoints
        and bool(svc.load_balancer_vips)
        and bool(svc.load_balancer_source_ranges),
        filter_comment=filter_comment,
        filter_target=filter_target,
    )


def write_service_port(
    buf: RestoreBuffers,
    svc: ServicePortInfo,
    cat: CategorizedEndpoints,
    ctx: NodeContext,
    large_cluster_mode: bool,
) -> ServicePortOutcome:
    """Append the rules and chains of one service port to ``buf``, in kube-proxy's order."""
    spn, pol = svc.name, _policy(svc, cat)
    name, proto, has_endpoints = spn.text, spn.protocol_lower, cat.has_any_endpoints
    ext_chain = fw_chain = lb_chain = ""  # (hashed below only if the port uses them)
    if svc.externally_accessible:
        ext_chain, fw_chain = spn.external_chain, spn.firewall_chain
        lb_chain = fw_chain if pol.uses_fw_chain else ext_chain
    no_eps, refuse = pol.filter_comment, pol.filter_target

    def to(ip: str) -> Part:
        return protocol_port(proto, svc.port, dst=ip)

    # Capture the ClusterIP, external IPs and load-balancer IPs.
    to_cluster_ip = to(svc.cluster_ip)
    # One comment part for both rules that write it (the masquerade rule below shares it).
    cluster_ip = comment(f"{name} cluster IP")
    if pol.has_internal:
        buf.nat(KUBE_SERVICES, cluster_ip, to_cluster_ip, jump(pol.internal_chain))
    else:
        buf.filter(KUBE_SERVICES, no_eps, to_cluster_ip, refuse)
    for ip in svc.external_ips:
        if has_endpoints:
            buf.nat(KUBE_SERVICES, comment(f"{name} external IP"), to(ip), jump(ext_chain))
        if not pol.has_external:
            buf.filter(KUBE_EXTERNAL_SERVICES, no_eps, to(ip), refuse)
    for ip in svc.load_balancer_vips:
        if has_endpoints:
            buf.nat(KUBE_SERVICES, comment(f"{name} loadbalancer IP"), to(ip), jump(lb_chain))
        if pol.uses_fw_chain:
            drop = comment(f"{name} traffic not accepted by {fw_chain}")
            buf.filter(KUBE_PROXY_FIREWALL, drop, to(ip), jump("DROP"))
    if not pol.has_external:
        for ip in svc.load_balancer_vips:
            buf.filter(KUBE_EXTERNAL_SERVICES, no_eps, to(ip), refuse)

    # NodePorts (not subject to loadBalancerSourceRanges) and the health-check port.
    if svc.node_port:
        node_port = protocol_port(proto, svc.node_port)
        if has_endpoints:
            bare = comment(name, quote=False)
            if ctx.effective_localhost_nodeports and ctx.nfacct:
                localhost = protocol_port(proto, svc.node_port, dst="127.0.0.0/8")
                counter = nfacct(LOCALHOST_NODEPORT_COUNTER)
                buf.nat(KUBE_NODEPORTS, bare, localhost, counter, jump(ext_chain))
            buf.nat(KUBE_NODEPORTS, bare, node_port, jump(ext_chain))
        if not pol.has_external:
            local_dst = addrtype(dst_type="LOCAL")
            buf.filter(KUBE_EXTERNAL_SERVICES, no_eps, local_dst, node_port, refuse)
    if svc.health_check_node_port:
        # Accepted whether or not this node has local endpoints.
        hc = comment(f"{name} health check node port")
        hc_port = protocol_port("tcp", svc.health_check_node_port)
        buf.filter(KUBE_NODEPORTS, hc, hc_port, jump("ACCEPT"))

    # Masquerade off-cluster sources of ClusterIP traffic (written before the chain's own line).
    if pol.has_internal:
        to_mark_masq = _TO_MARK_MASQ
        if ctx.masquerade_all:
            buf.nat(pol.internal_chain, cluster_ip, to_cluster_ip, to_mark_masq)
        elif ctx.local_detector_implemented:
            not_local = _detector(ctx.if_not_local())
            buf.nat(pol.internal_chain, cluster_ip, to_cluster_ip, not_local, to_mark_masq)

    if pol.uses_ext_chain:
        _write_external_chain(buf, svc, pol, ctx)
    if pol.uses_fw_chain:
        _write_firewall_chain(buf, svc, ctx)
    # Each endpoint's KUBE-SEP name (a hash) is made once and shared by every rule naming it.
    seps: dict[str, _Sep] = {}
    if cat.cluster and svc.uses_cluster_endpoints:
        buf.nat_chains.append(pol.cluster_chain)
        _write_endpoint_dispatch(buf, svc, pol.cluster_chain, cat.cluster, large_cluster_mode, seps)
    if cat.local and svc.uses_local_endpoints:
        buf.nat_chains.append(pol.local_chain)
        _write_endpoint_dispatch(buf, svc, pol.local_chain, cat.local, large_cluster_mode, seps)
    head = _comment(large_cluster_mode, name, quote=False)
    _write_endpoint_chains(buf, svc, cat.all_reachable, head, _dnat_match(proto), seps)

    return ServicePortOutcome(
        no_local_internal=has_endpoints and not pol.has_internal,
        no_local_external=has_endpoints and not pol.has_external,
    )


@dataclass(frozen=True, slots=True)
class ServicePortBlock:
    """What :func:`write_service_port` appends to each of the four buffers, and its outcome."""

    filter_chains: tuple[str, ...]
    filter_rules: tuple[ChainRule, ...]
    nat_chains: tuple[str, ...]
    nat_rules: tuple[ChainRule, ...]
    outcome: ServicePortOutcome

    def replay(self, buf: RestoreBuffers) -> ServicePortOutcome:
        """Append the block to ``buf`` (exactly what writing it afresh would append)."""
        buf.filter_chains.extend(self.filter_chains)
        buf.filter_rules.extend(self.filter_rules)
        buf.nat_chains.extend(self.nat_chains)
        buf.nat_rules.extend(self.nat_rules)
        return self.outcome


@functools.lru_cache(maxsize=256)
def _context_key(ctx: NodeContext) -> BlockContext:
    """Every :class:`NodeContext` fact :func:`write_service_port` reads, except ``node_ip``.

    Module-level: a pure function of a frozen value, keyed by value (no identity), bounded.
    """
    return BlockContext(
        ctx.effective_localhost_nodeports,
        ctx.nfacct,
        ctx.masquerade_all,
        ctx.local_detector_implemented,
        ctx.if_local(),
        ctx.if_not_local(),
    )


def _endpoints_key(endpoints: tuple[EndpointInfo, ...]) -> tuple[tuple[str, int], ...]:
    return tuple([(ep.ip, ep.port) for ep in endpoints])


def service_port_block(
    svc: ServicePortInfo,
    cat: CategorizedEndpoints,
    ctx: NodeContext,
    large_cluster_mode: bool,
    caches: CompileCaches | None = None,
) -> ServicePortBlock:
    """:func:`write_service_port`'s output for one service port, memoised.

    Every node compiles every service port at every sync, though a sync changes only a few of
    them and nodes mostly agree; the block is a pure function of its :class:`BlockKey` (exactly
    what the writer reads), so nodes and syncs of a run share one compile. ``caches``: the
    run's; None computes afresh.
    """
    caches = caches if caches is not None else CompileCaches()
    key = BlockKey(
        svc,
        cat.has_any_endpoints,
        _endpoints_key(cat.cluster),
        _endpoints_key(cat.local),
        _endpoints_key(cat.all_reachable),
        _context_key(ctx),
        ctx.node_ip if svc.load_balancer_source_ranges else None,
        large_cluster_mode,
    )
    block = caches.service_blocks.get(key)
    if block is None:
        buf = RestoreBuffers()
        outcome = write_service_port(buf, svc, cat, ctx, large_cluster_mode)
        same = _rules_by_text(caches.latest_blocks.get(svc.name))
        block = ServicePortBlock(
            tuple(buf.filter_chains),
            _canonical(buf.filter_rules, same),
            tuple(buf.nat_chains),
            _canonical(buf.nat_rules, same),
            outcome,
        )
        caches.service_blocks.put(key, block)
        caches.latest_blocks.put(svc.name, block)
    return block


def _rules_by_text(block: ServicePortBlock | None) -> dict[str, Rule]:
    """The rules of ``block`` (none: no block) by their text."""
    if block is None:
        return {}
    return {r.text: r for _, r in (*block.filter_rules, *block.nat_rules)}


def _canonical(rules: list[ChainRule], same: dict[str, Rule]) -> tuple[ChainRule, ...]:
    """``rules`` with each rule replaced by the rule of ``same`` with that text, if any.

    A rule's text determines it, so this changes no value; but a block written again (one
    endpoint of its Service changed) then shares the very rule objects of the lines it
    writes unchanged (``KUBE-SERVICES``' line for it, its other endpoints' rules) with the
    port's previous block (``same``), so the chains holding them stay the same objects
    (interned by rule identity) and whatever is keyed by chain identity (the traffic engine's
    dispatches) stays valid. Only the port's own previous block is asked (a full compile on
    a fresh cache asks nothing): another port's rule of the same text (large-cluster mode
    drops the comments naming the port) is an equal value, only another object.
    """
    if not same:
        return tuple(rules)
    return tuple([(chain, same.get(written.text, written)) for chain, written in rules])


def _write_external_chain(
    buf: RestoreBuffers, svc: ServicePortInfo, pol: _Policy, ctx: NodeContext
) -> None:
    """KUBE-EXT: masquerade (eTP Cluster) or the eTP=Local short-circuits, then the policy chain."""
    spn = svc.name
    name, ext = spn.text, spn.external_chain
    buf.nat_chains.append(ext)
    if not svc.external_policy_local:
        # Non-local endpoints may be on another node: masquerade so replies come back here.
        masq = comment(f"masquerade traffic for {name} external destinations")
        buf.nat(ext, masq, jump(KUBE_MARK_MASQ))
    else:
        if ctx.local_detector_implemented:
            # Pods reaching an external IP act as if they went out to the LB and back.
            pods = comment(f"pod traffic for {name} external destinations")
            buf.nat(ext, pods, detector(ctx.if_local()), jump(spn.cluster_chain))
        # The node itself (source LOCAL) is masqueraded and may use any endpoint.
        local_src = addrtype(src_type="LOCAL")
        masq = comment(f"masquerade LOCAL traffic for {name} external destinations")
        buf.nat(ext, masq, local_src, jump(KUBE_MARK_MASQ))
        route = comment(f"route LOCAL traffic for {name} external destinations")
        buf.nat(ext, route, local_src, jump(spn.cluster_chain))
    if pol.has_external:
        buf.nat(ext, jump(pol.external_policy_chain))


def _write_firewall_chain(buf: RestoreBuffers, svc: ServicePortInfo, ctx: NodeContext) -> None:
    """KUBE-FW: accept loadBalancerSourceRanges; what falls through is dropped in filter."""
    spn = svc.name
    fw, ext = spn.firewall_chain, spn.external_chain
    buf.nat_chains.append(fw)
    lb_comment = comment(f"{spn.text} loadbalancer IP")
    allow_from_node = False
    for cidr in svc.load_balancer_source_ranges:
        buf.nat(fw, lb_comment, source(cidr), jump(ext))
        if ctx.node_ip is not None and _cidr_contains(cidr, ctx.node_ip):
            allow_from_node = True
    if allow_from_node:
        # A node reaching a VIP-style LB IP loops back with the LB IP as its source.
        for vip in svc.load_balancer_vips:
            buf.nat(fw, lb_comment, source(vip), jump(ext))
    other = f"other traffic to {spn.text} will be dropped by KUBE-PROXY-FIREWALL"
    buf.nat(fw, comment(other))


class _Sep(NamedTuple):
    """An endpoint's KUBE-SEP chain: its name and the part jumping to it (shared)."""

    name: str
    to: Part
    """``-j KUBE-SEP-...``: one part (one target object) for every rule jumping there."""


def _sep(spn: ServicePortName, ep: EndpointInfo, seps: dict[str, _Sep]) -> _Sep:
    """``ep``'s KUBE-SEP chain, made once per service port (``seps`` keeps them)."""
    sep = seps.get(ep.text)
    if sep is None:
        name = spn.endpoint_chain(ep.text)
        # (Made without the NamedTuple's Python-level __new__: one per endpoint.)
        sep = seps[ep.text] = _new_tuple(_Sep, (name, jump(name)))
    return sep


_new_tuple = tuple.__new__


def _write_endpoint_chains(
    buf: RestoreBuffers,
    svc: ServicePortInfo,
    endpoints: tuple[EndpointInfo, ...],
    head: Part,
    dnat_match: Part,
    seps: dict[str, _Sep],
) -> None:
    """Each endpoint's KUBE-SEP chain: hairpin masquerade, then DNAT (+ affinity ``--set``).

    The hairpin rule masquerades a pod reaching itself. ``head`` is the per-endpoint comment
    (nothing in large-cluster mode), ``dnat_match`` the ``-m PROTO -p PROTO`` of the DNAT rule.
    """
    spn = svc.name
    nat_chains, nat_rules = buf.nat_chains, buf.nat_rules
    # Without affinity every DNAT rule writes the same words before its target: joined once.
    shared = None if svc.client_ip_affinity else dnat_head(head, dnat_match)
    known = seps.get
    for ep in endpoints:
        # (The dispatch named every endpoint it writes a rule for already.)
        sep = (known(ep.text) or _sep(spn, ep, seps)).name
        nat_chains.append(sep)
        nat_rules.append((sep, sourced(head, ep.ip, _TO_MARK_MASQ)))
        words = shared
        if words is None:
            words = dnat_head(joined(head, recent_set(sep)), dnat_match)
        nat_rules.append((sep, dnat_rule(words, ep.ip, ep.port)))


def _write_endpoint_dispatch(
    buf: RestoreBuffers,
    svc: ServicePortInfo,
    chain: str,
    endpoints: tuple[EndpointInfo, ...],
    large_cluster_mode: bool,
    seps: dict[str, _Sep],
) -> None:
    """``writeServiceToEndpointRules``: affinity checks, then the probability cascade."""
    spn = svc.name
    nat_rules = buf.nat_rules
    if svc.client_ip_affinity:
        for ep in endpoints:
            sep = _sep(spn, ep, seps)
            head = _comment(large_cluster_mode, f"{spn.text} -> {ep.text}")
            check = recent_rcheck(sep.name, svc.sticky_max_age_s)
            nat_rules.append((chain, matched_jump(head, check, sep.to)))
    n = len(endpoints)
    last = n - 1
    for i, ep in enumerate(endpoints):
        head = NOTHING if large_cluster_mode else comment(f"{spn.text} -> {ep.text}")
        # Rule i takes 1/(n-i) of what reaches it; the last rule always matches.
        draw = _draw(n - i) if i < last else NOTHING
        nat_rules.append((chain, matched_jump(head, draw, _sep(spn, ep, seps).to)))


def _cidr_contains(cidr: str, ip: str) -> bool:
    return ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(cidr)
