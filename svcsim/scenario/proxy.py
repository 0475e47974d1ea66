"""kube-proxy's configuration in a scenario: ``cluster.proxy``.

Field names are those of ``KubeProxyConfiguration`` (kubernetes/kubernetes
staging/src/k8s.io/kube-proxy/config/v1alpha1/types.go), flattened: ``iptables.minSyncPeriod``
is ``proxy.minSyncPeriod`` here. Checks follow pkg/proxy/apis/config/validation/validation.go
(masqueradeBit in [0, 31], syncPeriod > 0, minSyncPeriod >= 0 and <= syncPeriod, conntrack
values >= 0, detectLocalMode and its interface, nodePortAddresses CIDRs or a lone
``primary``). ``nodes`` overrides any field on named nodes; :meth:`ProxyConfig.for_node` gives
the merged result.

Besides ``KubeProxyConfiguration``, two switches describe the node rather than the
configuration, because they change the rules kube-proxy writes there: ``randomFully`` (the
host's iptables supports ``MASQUERADE --random-fully``) and ``nfacct`` (the kernel has the
nfacct counters kube-proxy's metrics use).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from svcsim.netfilter.ipvs_sched import SCHEDULERS
from svcsim.proxy.context import (
    NODE_PORT_ADDRESSES_PRIMARY,
    interface_name_problem,
    node_port_address_problems,
)
from svcsim.proxy.flags import LocalDetectorMode, parse_port_range
from svcsim.scenario.base import (
    IPv4CIDR,
    Loc,
    NodeName,
    OmitNoneModel,
    SchemaModel,
    problem,
    problems_at,
)
from svcsim.scenario.durations import Duration, PositiveDuration, format_duration
from svcsim.sim.ipvs_cost import (
    DEFAULT_IPVS_BASE_S,
    DEFAULT_IPVS_PER_CHANGE_S,
    DEFAULT_IPVS_PER_OBJECT_S,
)
from svcsim.sim.synccost import (
    DEFAULT_BASE_S,
    DEFAULT_NFT_BASE_S,
    DEFAULT_NFT_PER_OBJECT_S,
    DEFAULT_PER_RULE_S,
)

ProxyMode = Literal["iptables", "ipvs", "nftables", "userspace"]
"""kube-proxy ``mode``. The schema takes all four; a builder may support fewer."""

# kube-proxy defaults: pkg/proxy/apis/config/v1alpha1/defaults.go (see the facts file §3.2, §4.2).
DEFAULT_MIN_SYNC_PERIOD_S: Final = 1.0
DEFAULT_SYNC_PERIOD_S: Final = 30.0
DEFAULT_MASQUERADE_BIT: Final = 14
DEFAULT_CONNTRACK_MAX_PER_CORE: Final = 32768
DEFAULT_CONNTRACK_MIN: Final = 131072
DEFAULT_TCP_ESTABLISHED_TIMEOUT_S: Final = 24 * 3600.0
DEFAULT_TCP_CLOSE_WAIT_TIMEOUT_S: Final = 3600.0
# kube-proxy leaves the UDP timeouts alone by default (0); these are the kernel's values
# (nf_conntrack_udp_timeout, nf_conntrack_udp_timeout_stream on current kernels).
DEFAULT_UDP_TIMEOUT_S: Final = 30.0
DEFAULT_UDP_STREAM_TIMEOUT_S: Final = 120.0
# userspace mode (kube-proxy <= v1.25): KubeProxyConfiguration ``udpIdleTimeout`` (default 250ms,
# v1alpha1 defaults.go; must be > 0) and ``portRange`` ("" or 0-0: the kernel picks).
DEFAULT_UDP_IDLE_TIMEOUT_S: Final = 0.25

SYNC_COST_BASE_S: Final = DEFAULT_BASE_S
"""Fixed cost of one sync (compile + one iptables-restore): the two-point calibration of
:mod:`svcsim.sim.synccost` (897 rules ~ 176 ms; a 696k-line restore ~ 12.8 s)."""
SYNC_COST_PER_RULE_S: Final = DEFAULT_PER_RULE_S
"""Cost per rule written in one sync (same calibration)."""


class SyncCost(SchemaModel):
    """How long one kube-proxy sync takes: ``base + perRule x rules written``."""

    base_s: Duration = SYNC_COST_BASE_S
    """Fixed part of every sync."""
    per_rule_s: Duration = SYNC_COST_PER_RULE_S
    """Added per rule in the iptables-restore input of that sync."""


NFT_SYNC_COST_BASE_S: Final = DEFAULT_NFT_BASE_S
"""Fixed cost of one nftables-mode sync: the two-point calibration of
:mod:`svcsim.sim.synccost` (one Service added to 10,000 ~ 141 ms; a first sync of 10,000
Services ~ 3 min 14 s)."""
NFT_SYNC_COST_PER_OBJECT_S: Final = DEFAULT_NFT_PER_OBJECT_S
"""Cost per object (add, flush, delete) in one nftables-mode sync's transaction."""


class NftSyncCost(SchemaModel):
    """How long one nftables-mode sync takes: ``base + perObject x objects written``."""

    base_s: Duration = NFT_SYNC_COST_BASE_S
    """Fixed part of every sync."""
    per_object_s: Duration = NFT_SYNC_COST_PER_OBJECT_S
    """Added per object (one ``nft -f`` line: add, flush or delete) in that sync's transaction."""


class IpvsSyncCost(SchemaModel):
    """How long one IPVS-mode sync takes (:mod:`svcsim.sim.ipvs_cost`)."""

    base_s: Duration = DEFAULT_IPVS_BASE_S
    """Fixed part of every sync (UNVERIFIED: iptables mode's)."""
    per_object_s: Duration = DEFAULT_IPVS_PER_OBJECT_S
    """Per virtual server, real server and ip-set entry of the wanted state."""
    per_change_s: Duration = DEFAULT_IPVS_PER_CHANGE_S
    """Per kernel change: a server added, re-weighted or deleted, an ip-set entry added or
    deleted (UNVERIFIED)."""


def _scheduler(value: str) -> str:
    if value not in SCHEDULERS:
        raise problem(
            f"{value!r} is not an IPVS scheduler svcsim models (one of {', '.join(SCHEDULERS)})"
        )
    return value


IpvsScheduler = Annotated[StrictStr, AfterValidator(_scheduler)]
"""``ipvs.scheduler``: one of :data:`svcsim.netfilter.ipvs_sched.SCHEDULERS`."""


class Ipvs(SchemaModel):
    """``ipvs``: kube-proxy's ``KubeProxyIPVSConfiguration``.

    Its ``syncPeriod`` and ``minSyncPeriod`` are the flattened ``proxy.syncPeriod`` /
    ``proxy.minSyncPeriod``. A timeout of 0 leaves the kernel's (tcp 900 s, tcpfin 120 s,
    udp 300 s), as kube-proxy does (``ipvsadm --set`` only for non-zero values).
    """

    scheduler: IpvsScheduler = "rr"
    """``--ipvs-scheduler`` (an empty value means rr upstream; here write rr)."""
    tcp_timeout_s: Duration = Field(default=0.0, ge=0)
    """``--ipvs-tcp-timeout``: idle timeout of ESTABLISHED IPVS entries (0: kernel's 900 s)."""
    tcp_fin_timeout_s: Duration = Field(default=0.0, ge=0)
    """``--ipvs-tcpfin-timeout``: FIN_WAIT timeout (0: kernel's 120 s)."""
    udp_timeout_s: Duration = Field(default=0.0, ge=0)
    """``--ipvs-udp-timeout``: UDP entry timeout (0: kernel's 300 s)."""
    strict_arp: StrictBool = Field(default=False, alias="strictARP")
    """``--ipvs-strict-arp``: ARP only (arp_ignore/arp_announce): no effect on the data path
    svcsim simulates."""
    exclude_cidrs: list[IPv4CIDR] = Field(default_factory=list, alias="excludeCIDRs")
    """``--ipvs-exclude-cidrs``: virtual servers kube-proxy's clean-up leaves alone; svcsim's
    nodes hold no foreign virtual servers, so it changes nothing here."""


class Conntrack(SchemaModel):
    """kube-proxy's ``conntrack`` settings; a timeout of 0 leaves the kernel's value."""

    max_per_core: StrictInt = Field(default=DEFAULT_CONNTRACK_MAX_PER_CORE, ge=0)
    """nf_conntrack_max = max(maxPerCore x cpus, min); 0 leaves the kernel's limit."""
    min: StrictInt = Field(default=DEFAULT_CONNTRACK_MIN, ge=0)
    """Lower bound of nf_conntrack_max when maxPerCore > 0."""
    tcp_established_timeout_s: Duration = DEFAULT_TCP_ESTABLISHED_TIMEOUT_S
    """nf_conntrack_tcp_timeout_established."""
    tcp_close_wait_timeout_s: Duration = DEFAULT_TCP_CLOSE_WAIT_TIMEOUT_S
    """nf_conntrack_tcp_timeout_close_wait."""
    tcp_be_liberal: StrictBool = False
    """nf_conntrack_tcp_be_liberal; when true kube-proxy omits its INVALID-drop rule."""
    udp_timeout_s: Duration = DEFAULT_UDP_TIMEOUT_S
    """nf_conntrack_udp_timeout (unreplied flows)."""
    udp_stream_timeout_s: Duration = DEFAULT_UDP_STREAM_TIMEOUT_S
    """nf_conntrack_udp_timeout_stream (flows that saw a reply)."""

    def max_entries(self, cpus: int) -> int | None:
        """nf_conntrack_max kube-proxy sets on a node with ``cpus`` CPUs, None if left alone.

        cmd/kube-proxy/app/server_linux.go ``getConntrackMax``.
        """
        if self.max_per_core <= 0:
            return None
        return max(self.max_per_core * cpus, self.min)


def _node_port_address(value: str) -> str:
    for _, why in node_port_address_problems((value,)):
        raise problem(why)
    return value


def _port_range(value: str) -> str:
    try:
        parse_port_range(value)
    except ValueError as exc:
        raise problem(f"must be a port range BEGIN-END (e.g. 30000-30999): {exc}") from None
    return value


PortRange = Annotated[StrictStr, AfterValidator(_port_range)]
"""``portRange``: ``beginPort-endPort`` inclusive, one port, or ``""`` / ``0-0`` (unset)."""

NodePortAddress = Annotated[StrictStr, AfterValidator(_node_port_address)]
"""One ``nodePortAddresses`` entry: an IPv4 CIDR (host bits allowed, as kube-proxy's
``ParseCIDRSloppy``) or ``primary``."""


def _interface_check(*, wildcard: bool) -> AfterValidator:
    def check(value: str) -> str:
        why = interface_name_problem(value, wildcard=wildcard)
        if why is not None:
            raise problem(why)
        return value

    return AfterValidator(check)


InterfaceName = Annotated[StrictStr, _interface_check(wildcard=False)]
"""A Linux interface name as iptables ``-i`` takes it (empty: not set)."""

InterfacePrefix = Annotated[StrictStr, _interface_check(wildcard=True)]
"""An interface name prefix, which kube-proxy writes as ``-i <prefix>+`` (empty: not set)."""


class DetectLocal(SchemaModel):
    """``detectLocal``: the interface settings of the interface-based local-traffic detectors."""

    bridge_interface: InterfaceName = ""
    """The Pods' bridge (``--pod-bridge-interface``); needed by ``detectLocalMode:
    BridgeInterface``."""
    interface_name_prefix: InterfacePrefix = ""
    """Prefix of the Pods' host-side interfaces (``--pod-interface-name-prefix``); needed by
    ``detectLocalMode: InterfaceNamePrefix``."""


@dataclass(frozen=True, slots=True)
class _DetectorInput:
    """The ``detectLocal`` field an interface-based detector reads."""

    attribute: str
    yaml_path: str


_DETECTOR_NEEDS: Final = {
    "BridgeInterface": _DetectorInput("bridge_interface", "detectLocal.bridgeInterface"),
    "InterfaceNamePrefix": _DetectorInput(
        "interface_name_prefix", "detectLocal.interfaceNamePrefix"
    ),
}
"""The ``detectLocal`` field each interface-based detector mode needs."""


class ProxySettings(SchemaModel):
    """One node's effective kube-proxy configuration."""

    mode: ProxyMode = "iptables"
    """iptables | ipvs | nftables | userspace."""
    min_sync_period_s: Duration = DEFAULT_MIN_SYNC_PERIOD_S
    """Minimum time from the end of one sync to the start of the next."""
    sync_period_s: PositiveDuration = DEFAULT_SYNC_PERIOD_S
    """Periodic resync interval (and retry interval after a failed sync)."""
    masquerade_bit: StrictInt = Field(default=DEFAULT_MASQUERADE_BIT, ge=0, le=31)
    """Bit of the fwmark used to flag packets for SNAT (mark = 1 << bit)."""
    masquerade_all: StrictBool = False
    """SNAT all traffic sent to Service cluster IPs."""
    localhost_node_ports: StrictBool = True
    """Accept NodePort connections on 127.0.0.1 (iptables mode, IPv4); off whenever
    ``nodePortAddresses`` leaves out 127.0.0.0/8."""
    node_port_addresses: list[NodePortAddress] = Field(default_factory=list)
    """CIDRs whose node addresses accept NodePorts, or ``[primary]`` (the node IP); empty: all."""
    detect_local_mode: LocalDetectorMode = "ClusterCIDR"
    """How kube-proxy tells Pod traffic from other traffic: ClusterCIDR (``! -s clusterCIDR``),
    NodeCIDR (``! -s`` the node's podCIDR), BridgeInterface or InterfaceNamePrefix
    (``! -i ...``)."""
    detect_local: DetectLocal = Field(default_factory=DetectLocal)
    """The interface the interface-based detectors match."""
    random_fully: StrictBool = True
    """The node's iptables supports ``--random-fully`` (>= 1.6.2): MASQUERADE uses it."""
    nfacct: StrictBool = True
    """The kernel has nfacct: kube-proxy's counter matches appear in two of its rules."""
    sync_cost: SyncCost = Field(default_factory=SyncCost)
    """Sync duration model (iptables mode)."""
    nft_sync_cost: NftSyncCost = Field(default_factory=NftSyncCost)
    """Sync duration model (nftables mode)."""
    ipvs_sync_cost: IpvsSyncCost = Field(default_factory=IpvsSyncCost)
    """Sync duration model (IPVS mode)."""
    ipvs: Ipvs = Field(default_factory=Ipvs)
    """IPVS mode's settings (``KubeProxyIPVSConfiguration``); refused under other modes."""
    conntrack: Conntrack = Field(default_factory=Conntrack)
    """Conntrack limits and timeouts kube-proxy writes to the node's sysctls."""
    port_range: PortRange = ""
    """userspace mode: host ports the proxy sockets may take (``--proxy-port-range``); unset:
    the kernel picks free ephemeral ports."""
    udp_idle_timeout_s: PositiveDuration = DEFAULT_UDP_IDLE_TIMEOUT_S
    """userspace mode: how long an idle UDP client's backend socket stays open
    (``--udp-timeout``)."""

    @property
    def proxy_port_range(self) -> tuple[int, int] | None:
        """``portRange`` parsed: (first, last), or None when unset."""
        return parse_port_range(self.port_range)

    @model_validator(mode="after")
    def _cross_checks(self) -> ProxySettings:
        found: list[tuple[Loc, str]] = []
        if self.min_sync_period_s > self.sync_period_s:
            found.append(
                (
                    ("minSyncPeriod",),
                    f"must be <= syncPeriod ({format_duration(self.sync_period_s)}), "
                    f"got {format_duration(self.min_sync_period_s)}",
                )
            )
        needs = _DETECTOR_NEEDS.get(self.detect_local_mode)
        if needs is not None and not getattr(self.detect_local, needs.attribute):
            message = f"{self.detect_local_mode} needs {needs.yaml_path}"
            found.append((("detectLocalMode",), message))
        addresses = tuple(self.node_port_addresses)
        if NODE_PORT_ADDRESSES_PRIMARY in addresses:  # alone; each entry is checked on its own
            found += [
                (("nodePortAddresses", i), why) for i, why in node_port_address_problems(addresses)
            ]
        if found:
            raise problems_at("proxy", found)
        return self


class DetectLocalPatch(OmitNoneModel):
    """Per-node override of some :class:`DetectLocal` fields."""

    bridge_interface: InterfaceName | None = None
    interface_name_prefix: InterfacePrefix | None = None


class SyncCostPatch(OmitNoneModel):
    """Per-node override of some :class:`SyncCost` fields."""

    base_s: Duration | None = None
    per_rule_s: Duration | None = None


class NftSyncCostPatch(OmitNoneModel):
    """Per-node override of some :class:`NftSyncCost` fields."""

    base_s: Duration | None = None
    per_object_s: Duration | None = None


class IpvsSyncCostPatch(OmitNoneModel):
    """Per-node override of some :class:`IpvsSyncCost` fields."""

    base_s: Duration | None = None
    per_object_s: Duration | None = None
    per_change_s: Duration | None = None


class IpvsPatch(OmitNoneModel):
    """Per-node override of some :class:`Ipvs` fields."""

    scheduler: IpvsScheduler | None = None
    tcp_timeout_s: Duration | None = Field(default=None, ge=0)
    tcp_fin_timeout_s: Duration | None = Field(default=None, ge=0)
    udp_timeout_s: Duration | None = Field(default=None, ge=0)
    strict_arp: StrictBool | None = Field(default=None, alias="strictARP")
    exclude_cidrs: list[IPv4CIDR] | None = Field(default=None, alias="excludeCIDRs")


class ConntrackPatch(OmitNoneModel):
    """Per-node override of some :class:`Conntrack` fields."""

    max_per_core: StrictInt | None = Field(default=None, ge=0)
    min: StrictInt | None = Field(default=None, ge=0)
    tcp_established_timeout_s: Duration | None = None
    tcp_close_wait_timeout_s: Duration | None = None
    tcp_be_liberal: StrictBool | None = None
    udp_timeout_s: Duration | None = None
    udp_stream_timeout_s: Duration | None = None


class ProxyOverride(OmitNoneModel):
    """Per-node override of any kube-proxy field; unset fields keep the cluster-wide value."""

    mode: ProxyMode | None = None
    min_sync_period_s: Duration | None = None
    sync_period_s: PositiveDuration | None = None
    masquerade_bit: StrictInt | None = Field(default=None, ge=0, le=31)
    masquerade_all: StrictBool | None = None
    localhost_node_ports: StrictBool | None = None
    node_port_addresses: list[NodePortAddress] | None = None
    detect_local_mode: LocalDetectorMode | None = None
    detect_local: DetectLocalPatch | None = None
    random_fully: StrictBool | None = None
    nfacct: StrictBool | None = None
    sync_cost: SyncCostPatch | None = None
    nft_sync_cost: NftSyncCostPatch | None = None
    ipvs_sync_cost: IpvsSyncCostPatch | None = None
    ipvs: IpvsPatch | None = None
    conntrack: ConntrackPatch | None = None
    port_range: PortRange | None = None
    udp_idle_timeout_s: PositiveDuration | None = None


def _merge(base: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in patch.items():
        old = out.get(key)
        if isinstance(old, dict) and isinstance(value, Mapping):
            out[key] = _merge(old, value)
        else:
            out[key] = value
    return out


class ProxyConfig(ProxySettings):
    """Cluster-wide kube-proxy configuration plus per-node overrides (``nodes``)."""

    nodes: dict[NodeName, ProxyOverride] = Field(default_factory=dict)
    """Overrides by node name, e.g. ``{node-3: {minSyncPeriod: 5s}}``."""

    def for_node(self, node: str) -> ProxySettings:
        """The configuration kube-proxy runs with on ``node`` (overrides applied)."""
        base = self.model_dump(exclude={"nodes"})
        override = self.nodes.get(node)
        merged = _merge(base, override.model_dump()) if override is not None else base
        return ProxySettings.model_validate(merged)

    @model_validator(mode="after")
    def _overrides(self) -> ProxyConfig:
        found: list[tuple[Loc, str]] = []
        for name in self.nodes:
            try:
                self.for_node(name)
            except ValidationError as exc:
                found.extend((("nodes", name, *e["loc"]), e["msg"]) for e in exc.errors())
        if found:
            raise problems_at("proxy", found)
        return self
