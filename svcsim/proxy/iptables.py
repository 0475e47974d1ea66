"""kube-proxy's iptables-mode rule compiler: the kernel state after a full sync on a clean node.

A pure function from (Services, EndpointSlices, :class:`NodeContext`) to a
:class:`~svcsim.netfilter.model.Ruleset`, modelled on ``syncProxyRules`` in kubernetes
``pkg/proxy/iptables/proxier.go`` @531be812 (v1.34 development line). What the node holds
afterwards comes from three writers:

1. the iptables Monitor, started by ``NewProxier``, which creates the empty canary chain
   ``KUBE-PROXY-CANARY`` in mangle, nat and filter (in that order);
2. the full sync's ``EnsureChain``/``EnsureRule(Prepend, ...)`` calls for the jump rules from
   built-in chains (``iptablesJumpChains`` then ``iptablesKubeletJumpChains``): each is inserted
   at position 1, so in a built-in chain the jump written *last* ends up *first*;
3. one ``iptables-restore --noflush`` of the filter and nat tables.

Service ports are visited in ServicePortName order (text, then protocol). kube-proxy iterates a
Go map, so its order is random; the order changes only how lines of *different* service ports
interleave in KUBE-SERVICES/KUBE-NODEPORTS and the filter chains, never a rule's meaning, and is
what upstream's own tests normalise away (``sortIPTablesRules``).

Every node compiles the whole state at every sync, so the compile is memoised (results are
unchanged): per service port on exactly what its rules depend on
(:func:`~svcsim.proxy.iptables_service.service_port_block`), the fixed head and tail on the
context facts they read, and the assembled ruleset and text on the identities of those parts.

Out of scope: partial syncs and stale-chain deletion (a clean node has no stale chains), IPv6.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from svcsim.k8s.objects import EndpointSlice, Service
from svcsim.netfilter.model import Rule, Ruleset
from svcsim.netfilter.text import RulesetBuilder, parse_rule, render_restore
from svcsim.proxy.context import NodeContext
from svcsim.proxy.endpoints import (
    EndpointsMap,
    ServicePortInfo,
    build_endpoints_map,
    build_service_port_map,
    categorize_endpoints,
    total_endpoints,
)
from svcsim.proxy.iptables_service import (
    INVALID_DROPPED_COUNTER,
    KUBE_EXTERNAL_SERVICES,
    KUBE_FIREWALL,
    KUBE_FORWARD,
    KUBE_MARK_MASQ,
    KUBE_NODEPORTS,
    KUBE_POSTROUTING,
    KUBE_PROXY_CANARY,
    KUBE_PROXY_FIREWALL,
    KUBE_SERVICES,
    RestoreBuffers,
    ServicePortBlock,
    ServicePortOutcome,
    Words,
    quoted,
    service_port_block,
)
from svcsim.proxy.names import ServicePortName

LARGE_CLUSTER_ENDPOINTS_THRESHOLD: Final = 1000
"""Above this many endpoints kube-proxy drops per-endpoint comments (``largeClusterMode``)."""

CANARY_TABLES: Final = ("mangle", "nat", "filter")
"""Tables the iptables Monitor puts the canary chain in, in its order."""


@dataclass(frozen=True, slots=True)
class JumpRule:
    """One ``iptablesJumpChain``: a rule in a built-in chain that jumps to a kube-proxy chain."""

    table: str
    dst_chain: str
    src_chain: str
    comment: str
    extra: tuple[str, ...] = ()

    def words(self) -> tuple[str, ...]:
        """The rule arguments ``EnsureRule`` receives: extra args, comment, ``-j``."""
        comment = ("-m", "comment", "--comment", quoted(self.comment)) if self.comment else ()
        return (*self.extra, *comment, "-j", self.dst_chain)


_NEW = ("-m", "conntrack", "--ctstate", "NEW")
JUMP_RULES: Final = (
    JumpRule(
        "filter",
        KUBE_EXTERNAL_SERVICES,
        "INPUT",
        "kubernetes externally-visible service portals",
        _NEW,
    ),
    JumpRule(
        "filter",
        KUBE_EXTERNAL_SERVICES,
        "FORWARD",
        "kubernetes externally-visible service portals",
        _NEW,
    ),
    JumpRule("filter", KUBE_NODEPORTS, "INPUT", "kubernetes health check service ports"),
    JumpRule("filter", KUBE_SERVICES, "FORWARD", "kubernetes service portals", _NEW),
    JumpRule("filter", KUBE_SERVICES, "OUTPUT", "kubernetes service portals", _NEW),
    JumpRule("filter", KUBE_FORWARD, "FORWARD", "kubernetes forwarding rules"),
    JumpRule("filter", KUBE_PROXY_FIREWALL, "INPUT", "kubernetes load balancer firewall", _NEW),
    JumpRule("filter", KUBE_PROXY_FIREWALL, "OUTPUT", "kubernetes load balancer firewall", _NEW),
    JumpRule("filter", KUBE_PROXY_FIREWALL, "FORWARD", "kubernetes load balancer firewall", _NEW),
    JumpRule("nat", KUBE_SERVICES, "OUTPUT", "kubernetes service portals"),
    JumpRule("nat", KUBE_SERVICES, "PREROUTING", "kubernetes service portals"),
    JumpRule("nat", KUBE_POSTROUTING, "POSTROUTING", "kubernetes postrouting rules"),
    # iptablesKubeletJumpChains: duplicates of kubelet's, no comment.
    JumpRule("filter", KUBE_FIREWALL, "INPUT", ""),
    JumpRule("filter", KUBE_FIREWALL, "OUTPUT", ""),
)
"""``iptablesJumpChains`` + ``iptablesKubeletJumpChains``, in the order a full sync ensures them."""


@dataclass(frozen=True, slots=True)
class SyncStats:
    """Sizes of one sync, as kube-proxy counts them (log line "Reloading service iptables data")."""

    service_ports: int
    total_endpoints: int
    large_cluster_mode: bool
    filter_chains: int
    filter_rules: int
    """Also the ``sync_proxy_rules_iptables_total{table="filter"}`` metric."""
    nat_chains: int
    nat_rules: int
    """Also ``sync_proxy_rules_iptables_total{table="nat"}`` on a clean full sync."""
    no_local_endpoints_internal: int
    """``sync_proxy_rules_no_local_endpoints_total{traffic_policy="internal"}``."""
    no_local_endpoints_external: int
    """``sync_proxy_rules_no_local_endpoints_total{traffic_policy="external"}``."""


@dataclass(frozen=True, slots=True)
class IptablesSync:
    """Everything one full sync produces: the kernel state, the restore input, statistics."""

    ruleset: Ruleset
    restore_text: str
    """The iptables-restore input in kube-proxy's exact line order (for the visiting order
    described in the module docstring)."""
    stats: SyncStats


def _service_order(spn: ServicePortName) -> tuple[str, str]:
    return spn.text, str(spn.protocol)


def _write_fixed_head(buf: RestoreBuffers, ctx: NodeContext) -> None:
    """Chain lines of the top-level chains, POSTROUTING/MARK-MASQ rules, KUBE-FIREWALL."""
    buf.filter_chains += [
        KUBE_SERVICES,
        KUBE_EXTERNAL_SERVICES,
        KUBE_FORWARD,
        KUBE_NODEPORTS,
        KUBE_PROXY_FIREWALL,
    ]
    buf.nat_chains += [KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ]
    mark = ctx.mark
    buf.nat(KUBE_POSTROUTING, "-m", "mark", "!", "--mark", f"{mark}/{mark}", "-j", "RETURN")
    # Clearing the bit keeps a packet that re-traverses the stack from being masqueraded twice.
    buf.nat(KUBE_POSTROUTING, "-j", "MARK", "--xor-mark", mark)
    masq = (
        "-m",
        "comment",
        "--comment",
        quoted("kubernetes service traffic requiring SNAT"),
        "-j",
        "MASQUERADE",
    )
    buf.nat(KUBE_POSTROUTING, *masq, *(("--random-fully",) if ctx.random_fully else ()))
    buf.nat(KUBE_MARK_MASQ, "-j", "MARK", "--or-mark", mark)
    if ctx.effective_localhost_nodeports:
        # route_localnet opens NodePorts on 127/8 to the outside (issue 90259); block that.
        buf.filter_chains.append(KUBE_FIREWALL)
        buf.filter(
            KUBE_FIREWALL,
            "-m",
            "comment",
            "--comment",
            quoted("block incoming localnet connections"),
            "-d",
            "127.0.0.0/8",
            "!",
            "-s",
            "127.0.0.0/8",
            "-m",
            "conntrack",
            "!",
            "--ctstate",
            "RELATED,ESTABLISHED,DNAT",
            "-j",
            "DROP",
        )


def _write_fixed_tail(buf: RestoreBuffers, ctx: NodeContext) -> None:
    """The must-be-last KUBE-SERVICES rule(s) and the KUBE-FORWARD rules."""
    last = quoted("kubernetes service nodeports; NOTE: this must be the last rule in this chain")
    if ctx.nodeport_match_all:
        not_localhost = () if ctx.effective_localhost_nodeports else ("!", "-d", "127.0.0.0/8")
        buf.nat(
            KUBE_SERVICES,
            "-m",
            "comment",
            "--comment",
            last,
            "-m",
            "addrtype",
            "--dst-type",
            "LOCAL",
            *not_localhost,
            "-j",
            KUBE_NODEPORTS,
        )
    else:
        for ip in ctx.nodeport_ips():
            if ip.startswith("127.") and not ctx.effective_localhost_nodeports:
                continue  # kube-proxy logs an error and skips loopback addresses
            buf.nat(
                KUBE_SERVICES, "-m", "comment", "--comment", last, "-d", ip, "-j", KUBE_NODEPORTS
            )
    if not ctx.tcp_be_liberal:
        counter = ("-m", "nfacct", "--nfacct-name", INVALID_DROPPED_COUNTER) if ctx.nfacct else ()
        buf.filter(KUBE_FORWARD, "-m", "conntrack", "--ctstate", "INVALID", *counter, "-j", "DROP")
    mark = ctx.mark
    buf.filter(
        KUBE_FORWARD,
        "-m",
        "comment",
        "--comment",
        quoted("kubernetes forwarding rules"),
        "-m",
        "mark",
        "--mark",
        f"{mark}/{mark}",
        "-j",
        "ACCEPT",
    )
    buf.filter(
        KUBE_FORWARD,
        "-m",
        "comment",
        "--comment",
        quoted("kubernetes forwarding conntrack rule"),
        "-m",
        "conntrack",
        "--ctstate",
        "RELATED,ESTABLISHED",
        "-j",
        "ACCEPT",
    )


def _kernel_state(buf: RestoreBuffers) -> Ruleset:
    """What a clean node holds after the Monitor, the jump rules and the restore."""
    b = RulesetBuilder()
    for table in CANARY_TABLES:
        b.chain(table, KUBE_PROXY_CANARY)
    for name in buf.nat_chains:
        b.chain("nat", name)
    for name in buf.filter_chains:
        b.chain("filter", name)
    for chain, words in buf.nat_rules:
        b.append("nat", chain, _rule_of(words))
    for chain, words in buf.filter_rules:
        b.append("filter", chain, _rule_of(words))
    for jump in JUMP_RULES:
        b.chain(jump.table, jump.dst_chain)
        b.insert(jump.table, jump.src_chain, parse_rule(" ".join(jump.words())), 0)
    return b.build()


_CACHE_LIMIT: Final = 1 << 16
_rules_by_words: dict[Words, Rule] = {}


def _rule_of(words: Words) -> Rule:
    """``parse_rule`` of the line kube-proxy joins from ``words``, memoised on the words."""
    rule = _rules_by_words.get(words)
    if rule is None:
        if len(_rules_by_words) >= _CACHE_LIMIT:
            del _rules_by_words[next(iter(_rules_by_words))]  # oldest first
        rule = _rules_by_words[words] = parse_rule(" ".join(words))
    return rule


def _fragment(buf: RestoreBuffers) -> ServicePortBlock:
    return ServicePortBlock(
        tuple(buf.filter_chains),
        tuple(buf.filter_rules),
        tuple(buf.nat_chains),
        tuple(buf.nat_rules),
        ServicePortOutcome(no_local_internal=False, no_local_external=False),
    )


@functools.lru_cache(maxsize=256)
def _fixed_key(ctx: NodeContext) -> tuple[object, ...]:
    """Every :class:`NodeContext` fact the fixed head and tail read (not the node's name)."""
    match_all = ctx.nodeport_match_all
    return (
        ctx.mark,
        ctx.random_fully,
        ctx.effective_localhost_nodeports,
        match_all,
        () if match_all else tuple(ctx.nodeport_ips()),
        ctx.tcp_be_liberal,
        ctx.nfacct,
    )


_fixed_parts: dict[tuple[object, ...], tuple[ServicePortBlock, ServicePortBlock]] = {}


def _fixed_head_tail(ctx: NodeContext) -> tuple[ServicePortBlock, ServicePortBlock]:
    """The fixed head and tail as fragments, one pair per distinct :func:`_fixed_key`."""
    key = _fixed_key(ctx)
    parts = _fixed_parts.get(key)
    if parts is None:
        head, tail = RestoreBuffers(), RestoreBuffers()
        _write_fixed_head(head, ctx)
        _write_fixed_tail(tail, ctx)
        if len(_fixed_parts) >= 256:
            del _fixed_parts[next(iter(_fixed_parts))]  # oldest first
        parts = _fixed_parts[key] = (_fragment(head), _fragment(tail))
    return parts


_Assembled = tuple[Ruleset, str, RestoreBuffers]
_assembled: dict[tuple[int, ...], tuple[tuple[ServicePortBlock, ...], _Assembled]] = {}


def _assemble(parts: tuple[ServicePortBlock, ...]) -> _Assembled:
    """Kernel state, restore text and buffers of the concatenated fragments, memoised.

    Keyed by the fragments' identities (the entry holds them, so the ids stay theirs): nodes
    that compile the same informer state get the very same fragment objects from the caches
    above, hence one ruleset object and one restore text between them.
    """
    key = tuple(map(id, parts))
    hit = _assembled.get(key)
    if hit is not None:
        return hit[1]
    buf = RestoreBuffers()
    for part in parts:
        part.replay(buf)
    built = (_kernel_state(buf), buf.restore_text(), buf)
    if len(_assembled) >= 64:  # each holds a whole restore text
        del _assembled[next(iter(_assembled))]  # oldest first
    _assembled[key] = (parts, built)
    return built


def sync_from_maps(
    service_ports: Mapping[ServicePortName, ServicePortInfo],
    endpoints_map: EndpointsMap,
    ctx: NodeContext,
) -> IptablesSync:
    """A full sync from kube-proxy's own maps (``svcPortMap``, ``endpointsMap``).

    Written as fragments (fixed head, one block per service port, fixed tail) that are
    memoised on exactly what they depend on, then assembled (also memoised): the result is
    the same as writing every line afresh into one set of buffers.
    """
    head, tail = _fixed_head_tail(ctx)
    n_endpoints = total_endpoints(service_ports, endpoints_map)
    large = n_endpoints > LARGE_CLUSTER_ENDPOINTS_THRESHOLD
    no_local_internal = no_local_external = 0
    parts = [head]
    for spn in sorted(service_ports, key=_service_order):
        svc = service_ports[spn]
        cat = categorize_endpoints(
            endpoints_map.get(spn, ()),
            svc,
            ctx.node_name,
            ctx.topology_labels,
            ctx.prefer_same_traffic_distribution,
        )
        block = service_port_block(svc, cat, ctx, large)
        parts.append(block)
        no_local_internal += block.outcome.no_local_internal
        no_local_external += block.outcome.no_local_external
    parts.append(tail)
    ruleset, text, buf = _assemble(tuple(parts))
    stats = SyncStats(
        service_ports=len(service_ports),
        total_endpoints=n_endpoints,
        large_cluster_mode=large,
        filter_chains=len(buf.filter_chains),
        filter_rules=len(buf.filter_rules),
        nat_chains=len(buf.nat_chains),
        nat_rules=len(buf.nat_rules),
        no_local_endpoints_internal=no_local_internal,
        no_local_endpoints_external=no_local_external,
    )
    return IptablesSync(ruleset, text, stats)


def compile_iptables_sync(
    services: Iterable[Service], endpoint_slices: Iterable[EndpointSlice], ctx: NodeContext
) -> IptablesSync:
    """A full sync on a clean node: kernel state, exact restore input and statistics."""
    return sync_from_maps(
        build_service_port_map(services), build_endpoints_map(endpoint_slices, ctx.node_name), ctx
    )


def compile_iptables(
    services: Iterable[Service], endpoint_slices: Iterable[EndpointSlice], ctx: NodeContext
) -> Ruleset:
    """The iptables state (mangle, nat, filter) of a clean node after kube-proxy's full sync."""
    return compile_iptables_sync(services, endpoint_slices, ctx).ruleset


def restore_text(ruleset: Ruleset) -> str:
    """The iptables-restore input kube-proxy sends for ``ruleset`` (filter, then nat).

    Built-in chains (set up by ``EnsureRule``), the canary chains (the Monitor's) and an empty
    KUBE-FIREWALL (only ensured, never restored, when localhost NodePorts are off) are left out.
    Every line is kube-proxy's, and lines of one chain keep their order; lines are grouped chain
    by chain, whereas kube-proxy interleaves chains (see :attr:`IptablesSync.restore_text` for
    that order). iptables-restore builds the same tables either way.
    """
    skip = [KUBE_PROXY_CANARY]
    firewall = ruleset.chain("filter", KUBE_FIREWALL)
    if firewall is not None and not firewall.rules:
        skip.append(KUBE_FIREWALL)
    return render_restore(ruleset, tables=("filter", "nat"), skip_chains=skip)


def sync_stats(ruleset: Ruleset) -> dict[str, int]:
    """Chain and rule counts per table of a compiled ruleset (user chains; built-ins' rules too)."""
    out: dict[str, int] = {}
    for table in ruleset.tables:
        out[f"{table.name}_chains"] = sum(1 for c in table.chains if not c.is_builtin)
        out[f"{table.name}_rules"] = sum(len(c.rules) for c in table.chains)
    return out
