"""The iptables rules kube-proxy's IPVS mode writes around its ip sets (``writeIptablesRules``).

IPVS does the load balancing; iptables only marks for masquerade, accepts, filters and
masquerades, one rule per ip set rather than per Service (kubernetes
``pkg/proxy/ipvs/proxier.go``, the v1.33+ line that has ``KUBE-IPVS-OUT-FILTER`` and
``CategorizeEndpoints(…, nodeName, …)``; the stored copy's commit is not named by the search
tool: see docs/ipvs.md). Order of writing, kept here:

1. ``createAndLinkKubeChain``: the chains of ``iptablesChains`` (nat: KUBE-SERVICES,
   KUBE-POSTROUTING, KUBE-NODE-PORT, KUBE-LOAD-BALANCER, KUBE-MARK-MASQ; filter: KUBE-FORWARD,
   KUBE-NODE-PORT, KUBE-PROXY-FIREWALL, KUBE-SOURCE-RANGES-FIREWALL, KUBE-IPVS-FILTER,
   KUBE-IPVS-OUT-FILTER) and the jumps of ``iptablesJumpChain``, each prepended (so in a
   built-in chain the jump listed last comes first);
2. ``-A KUBE-SERVICES -s 127.0.0.0/8 -j RETURN``;
3. one rule per non-empty set of ``ipsetWithIptablesChain``, in that table's order;
4. the KUBE-CLUSTER-IP rule (masquerade-all, local-detector or no-detector form);
5. KUBE-EXTERNAL-IP (mark, then two ACCEPTs) and KUBE-EXTERNAL-IP-LOCAL (two ACCEPTs);
6. ``-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODE-PORT``,
   ``-A KUBE-LOAD-BALANCER -j KUBE-MARK-MASQ``, ``-A KUBE-SOURCE-RANGES-FIREWALL -j DROP``,
   the KUBE-IPVS-OUT-FILTER drops, the ``acceptIPVSTraffic`` ACCEPTs (KUBE-CLUSTER-IP,
   KUBE-LOAD-BALANCER), KUBE-FORWARD, the health-check ACCEPT, KUBE-IPVS-FILTER, and
   KUBE-POSTROUTING / KUBE-MARK-MASQ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from svcsim.netfilter.ipset import SetType
from svcsim.netfilter.model import Ruleset
from svcsim.netfilter.parse import parse_rule
from svcsim.netfilter.text import RulesetBuilder
from svcsim.proxy.context import NodeContext

KUBE_LOOP_BACK: Final = "KUBE-LOOP-BACK"
KUBE_CLUSTER_IP: Final = "KUBE-CLUSTER-IP"
KUBE_EXTERNAL_IP: Final = "KUBE-EXTERNAL-IP"
KUBE_EXTERNAL_IP_LOCAL: Final = "KUBE-EXTERNAL-IP-LOCAL"
KUBE_LOAD_BALANCER: Final = "KUBE-LOAD-BALANCER"
KUBE_LOAD_BALANCER_FW: Final = "KUBE-LOAD-BALANCER-FW"
KUBE_LOAD_BALANCER_LOCAL: Final = "KUBE-LOAD-BALANCER-LOCAL"
KUBE_LOAD_BALANCER_SOURCE_IP: Final = "KUBE-LOAD-BALANCER-SOURCE-IP"
KUBE_LOAD_BALANCER_SOURCE_CIDR: Final = "KUBE-LOAD-BALANCER-SOURCE-CIDR"
KUBE_NODE_PORT_TCP: Final = "KUBE-NODE-PORT-TCP"
KUBE_NODE_PORT_LOCAL_TCP: Final = "KUBE-NODE-PORT-LOCAL-TCP"
KUBE_NODE_PORT_UDP: Final = "KUBE-NODE-PORT-UDP"
KUBE_NODE_PORT_LOCAL_UDP: Final = "KUBE-NODE-PORT-LOCAL-UDP"
KUBE_NODE_PORT_SCTP: Final = "KUBE-NODE-PORT-SCTP-HASH"
KUBE_NODE_PORT_LOCAL_SCTP: Final = "KUBE-NODE-PORT-LOCAL-SCTP-HASH"
KUBE_HEALTH_CHECK_NODE_PORT: Final = "KUBE-HEALTH-CHECK-NODE-PORT"
KUBE_IPVS_IPS: Final = "KUBE-IPVS-IPS"


@dataclass(frozen=True, slots=True)
class IpsetInfo:
    """One entry of kube-proxy's ``ipsetInfo``: name, type, comment (pkg/proxy/ipvs/ipset.go)."""

    name: str
    set_type: SetType
    comment: str


IPSET_INFO: Final = (
    IpsetInfo(
        KUBE_LOOP_BACK,
        "hash:ip,port,ip",
        "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose",
    ),
    IpsetInfo(
        KUBE_CLUSTER_IP,
        "hash:ip,port",
        "Kubernetes service cluster ip + port for masquerade purpose",
    ),
    IpsetInfo(
        KUBE_EXTERNAL_IP,
        "hash:ip,port",
        "Kubernetes service external ip + port for masquerade and filter purpose",
    ),
    IpsetInfo(
        KUBE_EXTERNAL_IP_LOCAL,
        "hash:ip,port",
        "Kubernetes service external ip + port with externalTrafficPolicy=local",
    ),
    IpsetInfo(KUBE_LOAD_BALANCER, "hash:ip,port", "Kubernetes service lb portal"),
    IpsetInfo(
        KUBE_LOAD_BALANCER_FW,
        "hash:ip,port",
        "Kubernetes service load balancer ip + port for load balancer with sourceRange",
    ),
    IpsetInfo(
        KUBE_LOAD_BALANCER_LOCAL,
        "hash:ip,port",
        "Kubernetes service load balancer ip + port with externalTrafficPolicy=local",
    ),
    IpsetInfo(
        KUBE_LOAD_BALANCER_SOURCE_IP,
        "hash:ip,port,ip",
        "Kubernetes service load balancer ip + port + source IP for packet filter purpose",
    ),
    IpsetInfo(
        KUBE_LOAD_BALANCER_SOURCE_CIDR,
        "hash:ip,port,net",
        "Kubernetes service load balancer ip + port + source cidr for packet filter purpose",
    ),
    IpsetInfo(
        KUBE_NODE_PORT_TCP, "bitmap:port", "Kubernetes nodeport TCP port for masquerade purpose"
    ),
    IpsetInfo(
        KUBE_NODE_PORT_LOCAL_TCP,
        "bitmap:port",
        "Kubernetes nodeport TCP port with externalTrafficPolicy=local",
    ),
    IpsetInfo(
        KUBE_NODE_PORT_UDP, "bitmap:port", "Kubernetes nodeport UDP port for masquerade purpose"
    ),
    IpsetInfo(
        KUBE_NODE_PORT_LOCAL_UDP,
        "bitmap:port",
        "Kubernetes nodeport UDP port with externalTrafficPolicy=local",
    ),
    IpsetInfo(
        KUBE_NODE_PORT_SCTP,
        "hash:ip,port",
        "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'",
    ),
    IpsetInfo(
        KUBE_NODE_PORT_LOCAL_SCTP,
        "hash:ip,port",
        "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'",
    ),
    IpsetInfo(KUBE_HEALTH_CHECK_NODE_PORT, "bitmap:port", "Kubernetes health check node port"),
    IpsetInfo(KUBE_IPVS_IPS, "hash:ip", "Addresses on the ipvs interface"),
)
"""kube-proxy's ``ipsetInfo`` in its order (pkg/proxy/ipvs/proxier.go, ipset.go)."""

_COMMENTS: Final = {info.name: info.comment for info in IPSET_INFO}


@dataclass(frozen=True, slots=True)
class _SetRule:
    """One row of ``ipsetWithIptablesChain``: set, table, from-chain, target, flags, protocol."""

    name: str
    table: str
    chain: str
    target: str
    flags: str
    protocol: str = ""


_SET_RULES: Final = (
    _SetRule(KUBE_LOOP_BACK, "nat", "KUBE-POSTROUTING", "MASQUERADE", "dst,dst,src"),
    _SetRule(KUBE_LOAD_BALANCER, "nat", "KUBE-SERVICES", "KUBE-LOAD-BALANCER", "dst,dst"),
    _SetRule(KUBE_LOAD_BALANCER_LOCAL, "nat", "KUBE-LOAD-BALANCER", "RETURN", "dst,dst"),
    _SetRule(KUBE_NODE_PORT_LOCAL_TCP, "nat", "KUBE-NODE-PORT", "RETURN", "dst", "tcp"),
    _SetRule(KUBE_NODE_PORT_TCP, "nat", "KUBE-NODE-PORT", "KUBE-MARK-MASQ", "dst", "tcp"),
    _SetRule(KUBE_NODE_PORT_LOCAL_UDP, "nat", "KUBE-NODE-PORT", "RETURN", "dst", "udp"),
    _SetRule(KUBE_NODE_PORT_UDP, "nat", "KUBE-NODE-PORT", "KUBE-MARK-MASQ", "dst", "udp"),
    _SetRule(KUBE_NODE_PORT_LOCAL_SCTP, "nat", "KUBE-NODE-PORT", "RETURN", "dst,dst", "sctp"),
    _SetRule(KUBE_NODE_PORT_SCTP, "nat", "KUBE-NODE-PORT", "KUBE-MARK-MASQ", "dst,dst", "sctp"),
    _SetRule(
        KUBE_LOAD_BALANCER_FW,
        "filter",
        "KUBE-PROXY-FIREWALL",
        "KUBE-SOURCE-RANGES-FIREWALL",
        "dst,dst",
    ),
    _SetRule(
        KUBE_LOAD_BALANCER_SOURCE_CIDR,
        "filter",
        "KUBE-SOURCE-RANGES-FIREWALL",
        "RETURN",
        "dst,dst,src",
    ),
    _SetRule(
        KUBE_LOAD_BALANCER_SOURCE_IP,
        "filter",
        "KUBE-SOURCE-RANGES-FIREWALL",
        "RETURN",
        "dst,dst,src",
    ),
)
"""``ipsetWithIptablesChain`` in its order."""

_CHAINS: Final = (
    ("nat", ("KUBE-SERVICES", "KUBE-POSTROUTING", "KUBE-NODE-PORT", "KUBE-LOAD-BALANCER")),
    ("nat", ("KUBE-MARK-MASQ",)),
    (
        "filter",
        (
            "KUBE-FORWARD",
            "KUBE-NODE-PORT",
            "KUBE-PROXY-FIREWALL",
            "KUBE-SOURCE-RANGES-FIREWALL",
            "KUBE-IPVS-FILTER",
            "KUBE-IPVS-OUT-FILTER",
        ),
    ),
)
"""``iptablesChains``."""

_JUMPS: Final = (
    ("nat", "OUTPUT", "KUBE-SERVICES", "kubernetes service portals"),
    ("nat", "PREROUTING", "KUBE-SERVICES", "kubernetes service portals"),
    ("nat", "POSTROUTING", "KUBE-POSTROUTING", "kubernetes postrouting rules"),
    ("filter", "FORWARD", "KUBE-FORWARD", "kubernetes forwarding rules"),
    ("filter", "INPUT", "KUBE-NODE-PORT", "kubernetes health check rules"),
    ("filter", "INPUT", "KUBE-PROXY-FIREWALL", "kube-proxy firewall rules"),
    ("filter", "FORWARD", "KUBE-PROXY-FIREWALL", "kube-proxy firewall rules"),
    ("filter", "INPUT", "KUBE-IPVS-FILTER", "kubernetes ipvs access filter"),
    ("filter", "OUTPUT", "KUBE-IPVS-OUT-FILTER", "kubernetes ipvs access filter"),
)
"""``iptablesJumpChain``: (table, from, to, comment), each ``EnsureRule(Prepend, …)``."""


def comment(name: str) -> str:
    """``-m comment --comment "<set comment>"`` as kube-proxy writes it (``getComment``)."""
    return f'-m comment --comment "{_COMMENTS[name]}"'


def match_set(name: str, flags: str) -> str:
    """``-m set --match-set NAME FLAGS``."""
    return f"-m set --match-set {name} {flags}"


@dataclass(frozen=True, slots=True)
class NoNodeAccess:
    """A LoadBalancer IP:port/protocol the node itself must not reach (KUBE-IPVS-OUT-FILTER)."""

    ip: str
    protocol: str
    port: int


def ipvs_ruleset(
    ctx: NodeContext,
    members: Mapping[str, Sequence[str]],
    no_node_access: Sequence[NoNodeAccess] = (),
) -> Ruleset:
    """The nat and filter rules for the sets' ``members`` (empty sets write no rule)."""
    b = RulesetBuilder()
    for table, names in _CHAINS:
        b.chains(table, names)
    for table, src, dst, text in _JUMPS:
        b.insert(table, src, parse_rule(f'-m comment --comment "{text}" -j {dst}'))

    def nonempty(name: str) -> bool:
        return bool(members.get(name))

    def nat(chain: str, text: str) -> None:
        b.rule("nat", chain, text)

    def flt(chain: str, text: str) -> None:
        b.rule("filter", chain, text)

    nat("KUBE-SERVICES", "-s 127.0.0.0/8 -j RETURN")
    for row in _SET_RULES:
        if nonempty(row.name):
            proto = f"-p {row.protocol} " if row.protocol else ""
            b.rule(
                row.table,
                row.chain,
                f"{proto}{comment(row.name)} {match_set(row.name, row.flags)} -j {row.target}",
            )
    if nonempty(KUBE_CLUSTER_IP):
        head = f"{comment(KUBE_CLUSTER_IP)} -m set --match-set {KUBE_CLUSTER_IP}"
        if ctx.masquerade_all:
            nat("KUBE-SERVICES", f"{head} dst,dst -j KUBE-MARK-MASQ")
        elif ctx.local_detector_implemented:
            nat("KUBE-SERVICES", f"{head} dst,dst {' '.join(ctx.if_not_local())} -j KUBE-MARK-MASQ")
        else:
            nat("KUBE-SERVICES", f"{head} src,dst -j KUBE-MARK-MASQ")
    for name, masq in ((KUBE_EXTERNAL_IP, True), (KUBE_EXTERNAL_IP_LOCAL, False)):
        if not nonempty(name):
            continue
        head = f"{comment(name)} {match_set(name, 'dst,dst')}"
        if masq:
            nat("KUBE-SERVICES", f"{head} -j KUBE-MARK-MASQ")
        nat(
            "KUBE-SERVICES",
            f"{head} -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT",
        )
        nat("KUBE-SERVICES", f"{head} -m addrtype --dst-type LOCAL -j ACCEPT")
    nat("KUBE-SERVICES", "-m addrtype --dst-type LOCAL -j KUBE-NODE-PORT")
    nat("KUBE-LOAD-BALANCER", "-j KUBE-MARK-MASQ")
    flt("KUBE-SOURCE-RANGES-FIREWALL", "-j DROP")
    for entry in no_node_access:
        flt(
            "KUBE-IPVS-OUT-FILTER",
            f"-s {entry.ip} -m ipvs --vaddr {entry.ip} --vproto {entry.protocol} "
            f"--vport {entry.port} -j DROP",
        )
    for name in (KUBE_CLUSTER_IP, KUBE_LOAD_BALANCER):
        if nonempty(name):
            nat("KUBE-SERVICES", f"{match_set(name, 'dst,dst')} -j ACCEPT")
    mark = f"{ctx.mark}/{ctx.mark}"
    flt(
        "KUBE-FORWARD",
        f'-m comment --comment "kubernetes forwarding rules" -m mark --mark {mark} -j ACCEPT',
    )
    flt(
        "KUBE-FORWARD",
        '-m comment --comment "kubernetes forwarding conntrack rule" '
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    )
    hc = KUBE_HEALTH_CHECK_NODE_PORT
    flt("KUBE-NODE-PORT", f"{comment(hc)} {match_set(hc, 'dst')} -j ACCEPT")
    for name, flags in (
        (KUBE_LOAD_BALANCER, "dst,dst"),
        (KUBE_CLUSTER_IP, "dst,dst"),
        (KUBE_EXTERNAL_IP, "dst,dst"),
        (KUBE_EXTERNAL_IP_LOCAL, "dst,dst"),
        (hc, "dst"),
    ):
        flt("KUBE-IPVS-FILTER", f"{match_set(name, flags)} -j RETURN")
    flt(
        "KUBE-IPVS-FILTER",
        f"-m conntrack --ctstate NEW {match_set(KUBE_IPVS_IPS, 'dst')} -j REJECT",
    )
    nat("KUBE-POSTROUTING", f"-m mark ! --mark {mark} -j RETURN")
    nat("KUBE-POSTROUTING", f"-j MARK --xor-mark {ctx.mark}")
    snat = '-m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE'
    nat("KUBE-POSTROUTING", snat + (" --random-fully" if ctx.random_fully else ""))
    nat("KUBE-MARK-MASQ", f"-j MARK --or-mark {ctx.mark}")
    return b.build()
